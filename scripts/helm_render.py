#!/usr/bin/env python3
"""Render a Helm chart offline with Helm's own engine, as `helm template` does.

The engine is Helm's Go SDK (the PyPI package helm-python-sdk, a bundled shared library:
no helm binary). Values are composed as Helm composes them: the chart's values.yaml, then
each -f file in order, then each --set / --set-string / --set-file in order (Helm's own
parser); the result is checked against the chart's values.schema.json. `.Capabilities`
are Helm's offline defaults (no cluster: `lookup` finds nothing and no extra API version
is served).

Usage:
  helm_render.py CHART_DIR [-f VALUES.yaml ...] [--set a.b=v ...] [--set-string a=v ...]
                 [--set-file a=path ...] [--name RELEASE] [--namespace NS]
                 [--notes FILE] [--lint]
Prints the manifests as one multi-document YAML stream (`# Source:` comments as Helm
writes them; templates rendering to nothing are left out). --notes writes the rendered
NOTES.txt to FILE. --lint also lints the chart strictly with the same values and fails on
any error or warning (informational messages are printed to stderr). Exits non-zero, with
Helm's message, when values or a template are wrong.
"""
import argparse
import sys

import helm_python
import yaml


def merge(base, over):
    """Deep merge as Helm merges values files: maps merge, anything else replaces."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


class Collect(argparse.Action):
    """Keeps --set, --set-string and --set-file in their command-line order."""

    def __call__(self, parser, namespace, value, option=None):
        namespace.sets.append((self.dest, value))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("chart")
    p.add_argument("-f", "--values", action="append", default=[], metavar="FILE")
    p.set_defaults(sets=[])
    for opt in ("set", "set_string", "set_file"):
        p.add_argument("--" + opt.replace("_", "-"), dest=opt, action=Collect, metavar="KEY=VALUE")
    p.add_argument("--name", default="sse-bridge", help="release name (default sse-bridge)")
    p.add_argument("--namespace", default="default")
    p.add_argument("--notes", metavar="FILE", help="write the rendered NOTES.txt here")
    p.add_argument("--lint", action="store_true", help="also lint strictly with these values")
    args = p.parse_args()

    values = {}
    for path in args.values:
        with open(path) as f:
            merge(values, yaml.safe_load(f) or {})
    parsers = {"set": helm_python.parse_set_string, "set_string": helm_python.parse_set_string_values,
               "set_file": helm_python.parse_set_file}
    try:
        for kind, expr in args.sets:
            merge(values, parsers[kind](expr))
        chart = helm_python.Chart.load(args.chart)
        # Rendering checks the values against the chart's values.schema.json.
        manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    except helm_python.HelmError as e:
        sys.exit(f"helm_render: {args.chart}: {e}")

    out = []
    for path in sorted(manifests):
        text = manifests[path].strip()
        if path.endswith("NOTES.txt"):
            if args.notes:
                with open(args.notes, "w") as f:
                    f.write(text + "\n")
            continue
        if not text or path.endswith(".tpl"):
            continue
        # A template holding several documents keeps its separators; each gets its source.
        for doc in text.split("\n---\n"):
            doc = doc.strip().removeprefix("---").strip()
            if doc and any(l.strip() and not l.lstrip().startswith("#") for l in doc.splitlines()):
                out.append(f"---\n# Source: {path}\n{doc}\n")
    sys.stdout.write("".join(out))

    if args.lint:
        report = helm_python.lint(args.chart, values, strict=True, namespace=args.namespace)
        failed = list(report.get("errors") or [])
        for m in report.get("messages") or []:
            line = f"lint [{ {1: 'INFO', 2: 'WARNING', 3: 'ERROR'}.get(m['severity'], 'UNKNOWN') }] {m['path']}: {m['error']}"
            print(line, file=sys.stderr)
            if m["severity"] != 1:
                failed.append(line)
        if failed:
            sys.exit("helm_render: lint failed:\n  " + "\n  ".join(map(str, failed)))


if __name__ == "__main__":
    main()
