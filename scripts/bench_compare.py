"""Summarise scripts/bench compare-1k (or sources-1k): per server (or source), the highest event rate whose fan-out kept
p99 latency under 50 ms with nothing lost or duplicated (the knee), deliveries per second
there, and deliveries per server CPU-second; writes <dir name>.json beside the runs."""
import glob
import json
import os
import sys

d = sys.argv[1]
runs = {}
for f in glob.glob(os.path.join(d, "*.json")):
    r = json.load(open(f))
    runs.setdefault(r["label"], []).append(r)

summary = {}
print(f"{'server':<12} {'rate/s':>7} {'deliv/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'dup':>5} {'deliv/CPU-s':>12}")
for label, rs in sorted(runs.items()):
    rs.sort(key=lambda r: r["rate_events_per_s"])
    knee = None
    for r in rs:
        p99 = r["latency_ms"]["p99"] if r["latency_ms"]["p99"] is not None else float("inf")
        eff = r["deliveries_per_server_cpu_second"] or 0
        r["deliveries_per_server_cpu_second"] = eff
        kept_up = r.get("achieved_rate_events_per_s", r["rate_events_per_s"]) >= 0.95 * r["rate_events_per_s"]
        ok = p99 < 50 and r["missing"] == 0 and r["duplicated"] == 0 and kept_up
        print(f"{label:<12} {r['rate_events_per_s']:>7} {r['deliveries_per_second']:>10.0f} "
              f"{r['latency_ms']['p50'] or 0:>8.1f} {p99:>8.1f} {r['missing']:>6} "
              f"{r['duplicated']:>5} {eff:>12.0f}{'' if ok else '  (over: p99, loss or publisher fell behind)'}")
        if ok:
            knee = r
    best_eff = max((r["deliveries_per_server_cpu_second"] for r in rs), default=0)
    summary[label] = {
        "knee_rate_events_per_s": knee["rate_events_per_s"] if knee else 0,
        "knee_deliveries_per_second": knee["deliveries_per_second"] if knee else 0,
        "best_deliveries_per_cpu_second": best_eff,
        "machine": rs[0]["machine"],
    }
print()
for label, s in summary.items():
    print(f"{label}: knee {s['knee_rate_events_per_s']} events/s x 1000 clients = "
          f"{s['knee_deliveries_per_second']:.0f} deliveries/s; best {s['best_deliveries_per_cpu_second']:.0f} deliveries per CPU-second")
if "sse-bridge" in summary and "nginx+nchan" in summary:
    a, b = summary["sse-bridge"], summary["nginx+nchan"]
    if b["knee_deliveries_per_second"]:
        print(f"knee ratio sse-bridge / nchan: {a['knee_deliveries_per_second'] / b['knee_deliveries_per_second']:.2f}x")
    if b["best_deliveries_per_cpu_second"]:
        print(f"efficiency ratio: {a['best_deliveries_per_cpu_second'] / b['best_deliveries_per_cpu_second']:.2f}x")
name = os.path.basename(d.rstrip('/'))
json.dump(summary, open(os.path.join(os.path.dirname(d.rstrip('/')), f"{name}.json"), "w"), indent=2)
