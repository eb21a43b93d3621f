#!/usr/bin/env python3
"""Runs `ballast sim` on every example scenario and prints the headline
comparison as a Markdown table; with --write, replaces the table between the
markers in docs/simulator.md.

    scripts/sim_headlines.py [--bin build/ballast] [--write]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- headlines:begin (scripts/sim_headlines.py --write) -->"
END = "<!-- headlines:end -->"


def pct(v):
    return "-" if v is None else "%.1f %%" % (100 * v)


def table(binary):
    rows = ["| scenario | policy | done / total | failed | dropped | p95 s | SLO | 429s "
            "| quota mean | replica-h |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(glob.glob(os.path.join(ROOT, "examples", "scenarios", "*.yaml"))):
            out = os.path.join(tmp, os.path.basename(path))
            subprocess.run([binary, "sim", path, "--out", out], check=True,
                           stdout=subprocess.DEVNULL)
            with open(os.path.join(out, "summary.json")) as f:
                s = json.load(f)
            for name, p in s["policies"].items():
                rows.append("| %s | %s | %d / %d | %d | %d | %.1f | %s | %d | %s | %.1f |" % (
                    s["scenario"], name, p["tasks_done"], p["tasks_total"], p["tasks_failed"],
                    p["tasks_dropped"], p["latency_ms"]["p95"] / 1000, pct(p["slo_attainment"]),
                    p["provider_429s"], pct(p["quota_utilization"]["mean"]),
                    p["replica_seconds"] / 3600))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "ballast"))
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    t = table(a.bin)
    if not a.write:
        print(t)
        return 0
    doc = os.path.join(ROOT, "docs", "simulator.md")
    with open(doc) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        sys.exit("docs/simulator.md has no headline markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(doc, "w") as f:
        f.write(head + BEGIN + "\n" + t + "\n" + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
