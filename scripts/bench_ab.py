"""Print the figures of two scripts/bench runs (baseline and current) side by side with the
change in percent; used by scripts/bench-ab."""
import glob
import json
import os
import sys

base_dir, cur_dir = sys.argv[1], sys.argv[2]

# (file, label, key path, higher is better)
FIGURES = [
    ("idle-19k.json", "idle-19k KiB/connection", ("server_kib_per_connection",), False),
    ("fanout-1k.json", "fanout-1k deliveries/s", ("deliveries_per_second",), True),
    ("fanout-1k.json", "fanout-1k p50 ms", ("latency_ms", "p50"), False),
    ("fanout-1k.json", "fanout-1k p99 ms", ("latency_ms", "p99"), False),
    ("fanout-1k.json", "fanout-1k deliveries/CPU-s", ("deliveries_per_server_cpu_second",), True),
    ("fanout-1k.json", "fanout-1k lost", ("missing",), False),
    ("storm-10k.json", "storm-10k s until all caught up", ("seconds_until_all_caught_up",), False),
    ("storm-10k.json", "storm-10k lost", ("missing",), False),
    ("storm-10k.json", "storm-10k duplicated", ("duplicated",), False),
]


def get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def load(d, f):
    p = os.path.join(d, f)
    return json.load(open(p)) if os.path.exists(p) else None


def knee(d):
    """compare-1k: the highest rate with p99 < 50 ms, nothing lost, publisher kept up."""
    best = None
    for f in sorted(glob.glob(os.path.join(d, "compare-1k", "sse-bridge-*.json"))):
        r = json.load(open(f))
        p99 = r["latency_ms"]["p99"]
        kept = r.get("achieved_rate_events_per_s", r["rate_events_per_s"]) >= 0.95 * r["rate_events_per_s"]
        if p99 is not None and p99 < 50 and r["missing"] == 0 and r["duplicated"] == 0 and kept:
            if best is None or r["rate_events_per_s"] > best["rate_events_per_s"]:
                best = r
    return best


rows = []
for f, label, path, _ in FIGURES:
    b, c = load(base_dir, f), load(cur_dir, f)
    if b is None and c is None:
        continue
    rows.append((label, get(b, path) if b else None, get(c, path) if c else None))
kb, kc = knee(base_dir), knee(cur_dir)
if kb or kc:
    rows.append(("compare-1k knee events/s", kb and kb["rate_events_per_s"], kc and kc["rate_events_per_s"]))
    rows.append(("compare-1k deliveries/CPU-s at knee", kb and kb["deliveries_per_server_cpu_second"],
                 kc and kc["deliveries_per_server_cpu_second"]))
    rows.append(("compare-1k p99 ms at knee", kb and kb["latency_ms"]["p99"], kc and kc["latency_ms"]["p99"]))

print(f"{'figure':<38} {'baseline':>12} {'current':>12} {'change':>8}")
for label, b, c in rows:
    def fmt(v):
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    ch = ""
    if isinstance(b, (int, float)) and isinstance(c, (int, float)) and b:
        ch = f"{(c - b) / b * 100:+.1f}%"
    print(f"{label:<38} {fmt(b):>12} {fmt(c):>12} {ch:>8}")
