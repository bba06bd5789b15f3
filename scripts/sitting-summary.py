#!/usr/bin/env python3
"""sitting-summary.py DIR CASE... - the table of one sitting (scripts/sitting.sh): medians, pagewire / QEMU.

CASE is "name|qemu config|MigrationBench case|demo arguments", as sitting.sh lists them."""
import glob
import json
import os
import re
import statistics
import sys

out, cases = sys.argv[1], [c.split("|") for c in sys.argv[2:]]


def median(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def fmt(v, unit=" ms"):
    return "-" if v is None else f"{v:.0f}{unit}"


def ratio(a, b):
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}"


def qemu_total(config):
    f = os.path.join(out, "qemu", config + ".json")
    if not os.path.exists(f):
        return None, 0
    runs = json.load(open(f))["runs"]
    ok = [r for r in runs if r.get("status") == "completed"]
    return median([r.get("total_ms") for r in ok]), len(ok)


def bench_totals(backing, case):
    rows = []
    for f in glob.glob(os.path.join(out, f"mb-{backing}", "migration-bench-runs.jsonl")):
        for line in open(f):
            d = json.loads(line)
            if d.get("case") == case and d.get("status") == "completed":
                rows.append(d)
    return rows


def demo_runs(name, aot):
    rows = []
    for f in sorted(glob.glob(os.path.join(out, f"demo-{name}-aot-{aot}-*.json"))):
        txt = open(f).read()
        try:
            d = json.loads(txt[txt.index("{"):txt.rindex("}") + 1])
        except ValueError:
            continue
        if d.get("status") == "completed":
            rows.append(d)
    return rows


transport, iperf = [], []
tf = os.path.join(out, "transport.txt")
if os.path.exists(tf):
    text = open(tf).read()
    transport = [float(m) for m in re.findall(r"run \d+: [\d.]+ s, ([\d.]+) GB/s", text)]
    iperf = re.findall(r"iperf3 to .*", text)

print(f"# One sitting: {os.path.basename(out)}\n")
print("Load (uptime) along the sitting:\n")
for line in open(os.path.join(out, "load.txt")):
    print(f"- {line.strip()}")
print()
print("| case | QEMU 7.2 (TCG, multifd 2) | MigrationBench, memfd source | MigrationBench, anonymous + THP source | demo, AOT cache | demo, no AOT cache | best bench / QEMU | demo (AOT) / bench (memfd, as the demo) |")
print("|---|---|---|---|---|---|---|---|")
for name, config, case, demo in cases:
    q, qn = qemu_total(config)
    mf = [r["total-time"] for r in bench_totals("memfd", case)]
    an = [r["total-time"] for r in bench_totals("anonymous", case)]
    da = [r["total-time"] for r in demo_runs(name, "on")] if demo else []
    dn = [r["total-time"] for r in demo_runs(name, "off")] if demo else []
    best = min([v for v in (median(mf), median(an)) if v is not None], default=None)
    print(f"| {name} | {fmt(q)} (n={qn}) | {fmt(median(mf))} {sorted(mf)} | {fmt(median(an))} {sorted(an)} | "
          f"{fmt(median(da))} {sorted(da)} | {fmt(median(dn))} {sorted(dn)} | {ratio(best, q)} | {ratio(median(da), median(mf))} |")
print()
if transport:
    print(f"Bare transport (TransportBench, 2 GiB, tcp two channels): {', '.join(f'{g:.2f}' for g in transport)} GB/s "
          f"(median {statistics.median(transport):.2f}, best {max(transport):.2f}); " + ("; ".join(iperf) or "no iperf3 figure") + ".")
    for name, config, case, demo in cases:
        if case == "nonzero-2g-prepopulated":
            for backing in ("memfd", "anonymous"):
                t = median([r["total-time"] for r in bench_totals(backing, case)])
                if t:
                    gbps = 2 * 2**30 / (t / 1000) / 1e9
                    print(f"- 2 GiB pre-populated, {backing} source: {gbps:.2f} GB/s end to end (setup and completion included) = "
                          f"{100 * gbps / statistics.median(transport):.0f} % of the bare transport's median")
print()
print("Demo phases (median of each part, ms):\n")
for name, config, case, demo in cases:
    for aot in ("on", "off"):
        rows = demo_runs(name, aot) if demo else []
        if rows:
            keys = list(rows[0].get("phases", {}).keys())
            parts = ", ".join(f"{k} {median([r['phases'].get(k) for r in rows]):.0f}" for k in keys)
            print(f"- {name}, AOT {aot}: {parts}")
