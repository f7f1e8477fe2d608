#!/usr/bin/env python3
"""Render deploy/helm/sse-bridge offline, as `helm template` would, for validation.

No helm binary is installable from this project's reachable registries (PyPI, npm, Debian,
crates.io: the npm wrappers download it from get.helm.sh at install time), so this renders
the subset of Go templates the chart uses, and fails loudly on anything else:
  {{ .Values.a.b }} {{ .Release.Name }} {{ .Release.Namespace }} {{ .Chart.Name }}
  {{ .Chart.Version }} {{ .Chart.AppVersion }} {{ include "name" . }}
  {{ .Files.Get "path" }} {{ toYaml X }}, pipes | quote | toYaml | indent N | nindent N
  {{ if X }} {{ else }} {{ end }} {{ define "name" }} {{ end }}, with {{- -}} trimming.
Usage: render_chart.py CHART_DIR [--set a.b=value ...] > rendered.yaml
"""
import json
import os
import re
import sys

import yaml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def tokens(src):
    out, pos = [], 0
    for m in ACTION.finditer(src):
        out.append(("text", src[pos:m.start()]))
        out.append(("act", m.group(2), m.group(1) == "-", m.group(3) == "-"))
        pos = m.end()
    out.append(("text", src[pos:]))
    # Trimming: `{{-` eats whitespace before, `-}}` after.
    for i, t in enumerate(out):
        if t[0] == "act":
            if t[2] and i > 0:
                out[i - 1] = ("text", out[i - 1][1].rstrip())
            if t[3] and i + 1 < len(out):
                out[i + 1] = ("text", out[i + 1][1].lstrip())
    return out


def parse(toks, i=0, stop=("end",)):
    """A list of nodes until one of `stop`; returns (nodes, index, stopper)."""
    nodes = []
    while i < len(toks):
        t = toks[i]
        if t[0] == "text":
            nodes.append(("text", t[1]))
            i += 1
            continue
        a = t[1]
        word = a.split()[0] if a else ""
        if word in stop:
            return nodes, i + 1, word
        if word == "if":
            body, i, end = parse(toks, i + 1, ("else", "end"))
            other = []
            if end == "else":
                other, i, _ = parse(toks, i, ("end",))
            nodes.append(("if", a[2:].strip(), body, other))
        elif word == "define":
            body, i, _ = parse(toks, i + 1, ("end",))
            nodes.append(("define", json.loads(a.split(None, 1)[1]), body))
        else:
            nodes.append(("expr", a))
            i += 1
    return nodes, i, None


class Chart:
    def __init__(self, root, values, release):
        self.root, self.values, self.release = root, values, release
        self.meta = yaml.safe_load(open(os.path.join(root, "Chart.yaml")))
        self.defines = {}

    def lookup(self, path):
        scopes = {".Values": self.values, ".Release": self.release,
                  ".Chart": {"Name": self.meta["name"], "Version": self.meta["version"],
                             "AppVersion": self.meta.get("appVersion", "")}}
        for prefix, scope in scopes.items():
            if path == prefix or path.startswith(prefix + "."):
                v = scope
                for part in path[len(prefix) + 1:].split(".") if path != prefix else []:
                    v = v.get(part) if isinstance(v, dict) else None
                return v
        raise SystemExit(f"render_chart: unsupported reference {path!r}")

    def term(self, s):
        s = s.strip()
        words = s.split()
        if s.startswith('"'):
            return json.loads(s)
        if re.fullmatch(r"\d+", s):
            return int(s)
        if words[0] == "include":
            return self.run(self.defines[json.loads(words[1])]).strip("\n") if words[2:] == ["."] else self.fail(s)
        if words[0] == "toYaml":
            return to_yaml(self.term(" ".join(words[1:])))
        if words[0] == ".Files.Get":
            return open(os.path.join(self.root, json.loads(words[1]))).read()
        if s.startswith("."):
            return self.lookup(s)
        return self.fail(s)

    def fail(self, s):
        raise SystemExit(f"render_chart: unsupported expression {s!r}")

    def expr(self, a):
        parts = [p.strip() for p in a.split("|")]
        v = self.term(parts[0])
        for f in parts[1:]:
            w = f.split()
            if w[0] == "quote":
                v = json.dumps("" if v is None else str(v))
            elif w[0] == "toYaml":
                v = to_yaml(v)
            elif w[0] in ("indent", "nindent"):
                pad = " " * int(w[1])
                v = "\n".join(pad + line if line else line for line in str(v).split("\n"))
                v = ("\n" + v) if w[0] == "nindent" else v
            else:
                self.fail(f)
        if v is None:
            raise SystemExit(f"render_chart: {a!r} has no value")
        return v if isinstance(v, str) else json.dumps(v) if isinstance(v, bool) else str(v)

    def run(self, nodes):
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                out.append(self.expr(n[1]))
            elif n[0] == "if":
                out.append(self.run(n[2] if truthy(self.term(n[1])) else n[3]))
            elif n[0] == "define":
                self.defines[n[1]] = n[2]
        return "".join(out)


def truthy(v):
    return v not in (None, False, 0, "", [], {})


def to_yaml(v):
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=False).rstrip("\n")


def main():
    root = sys.argv[1]
    values = yaml.safe_load(open(os.path.join(root, "values.yaml")))
    args = sys.argv[2:]
    while args:
        if args[0] != "--set":
            raise SystemExit("usage: render_chart.py CHART [--set a.b=value ...]")
        key, val = args[1].split("=", 1)
        d = values
        for k in key.split(".")[:-1]:
            d = d.setdefault(k, {})
        d[key.split(".")[-1]] = yaml.safe_load(val)
        args = args[2:]
    chart = Chart(root, values, {"Name": "sse-bridge", "Namespace": "default", "Service": "Helm"})
    tdir = os.path.join(root, "templates")
    names = sorted(os.listdir(tdir))
    for name in [n for n in names if n.startswith("_")]:
        chart.run(parse(tokens(open(os.path.join(tdir, name)).read()))[0])
    for name in [n for n in names if not n.startswith("_") and n.endswith(".yaml")]:
        text = chart.run(parse(tokens(open(os.path.join(tdir, name)).read()))[0]).strip()
        if text:
            print(f"---\n# Source: sse-bridge/templates/{name}\n{text}")


if __name__ == "__main__":
    main()
