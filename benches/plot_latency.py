#!/usr/bin/env python3
"""Plots latency against offered load from the CSV that
`routing-engine loadgen --curve ... --curve-csv FILE` writes: p50 and p99 of
the service and of the no-op baseline measured in the same run.

Usage: python3 benches/plot_latency.py CURVE_CSV OUT.svg [TITLE]
Needs matplotlib (pip install matplotlib).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1])))
    title = sys.argv[3] if len(sys.argv) > 3 else "latency against offered load"
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"service": "tab:blue", "no-op": "tab:gray"}
    for server, colour in styles.items():
        points = sorted((float(r["offered_per_s"]), r) for r in rows if r["server"] == server)
        if not points:
            continue
        offered = [p[0] for p in points]
        for quantile, dash in (("p50_us", "-"), ("p99_us", "--")):
            ms = [int(p[1][quantile]) / 1000 for p in points]
            label = f"{server} {quantile.split('_')[0]}"
            ax.plot(offered, ms, dash, color=colour, marker="o", label=label)
    ax.axhline(2.0, color="tab:red", linewidth=0.8, linestyle=":", label="p99 target 2 ms")
    ax.set_xlabel("offered load (requests per second, open loop)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(title)
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2])
    if sys.argv[2].endswith(".svg"):
        fig.savefig(sys.argv[2][:-4] + ".png", dpi=80)


if __name__ == "__main__":
    main()
