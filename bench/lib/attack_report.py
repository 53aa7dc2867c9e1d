#!/usr/bin/env python3
"""The report of bench/modules.sh --attack: per attack, the p99 latency of
the hello module and of a static 1 KiB file while the attack runs, beside
the same measured unloaded in the same rounds (median over rounds), their
ratio against the goal (within 2x), and what the attacker's requests got.

  attack_report.py RUNS.jsonl RUNDIR VERSION ROUNDS DURATION ATTACK...

RUNS holds measure.py rows whose target is "unloaded" or "attack-NAME";
RUNDIR/attack-NAME-rROUND.json the attacker's statuses (attack.py), and
RUNDIR/attack-NAME-restarts the module's runner restarts during it.
"""

import glob
import json
import os
import platform
import statistics
import sys

from machine import cpu_model

runs_path, rundir, version, rounds, duration = sys.argv[1:6]
attacks = sys.argv[6:]
rows = [json.loads(line) for line in open(runs_path) if line.strip()]


def p99(target, workload):
    vals = [r["p99_us"] for r in rows
            if r["target"] == target and r["workload"] == workload]
    return statistics.median(vals) if vals else None


print(f"# Process modules under attack ({version})\n")
print(f"{os.cpu_count()} CPUs ({cpu_model()}), kernel {platform.release()}; "
      f"{rounds} rounds of {duration} s per run, wrk 2 threads; the goal: "
      "each p99 under attack within 2x of the unloaded one.\n")
print("| attack | workload | p99 unloaded | p99 under attack | ratio | goal |")
print("| --- | --- | ---: | ---: | ---: | --- |")
for name in attacks:
    for w in ("hello", "static-1KiB"):
        base, hit = p99("unloaded", w), p99(f"attack-{name}", w)
        if base is None or hit is None:
            print(f"| {name} | {w} | - | - | - | no runs |")
            continue
        ratio = hit / base if base else float("inf")
        ok = "met" if ratio <= 2 else "missed"
        print(f"| {name} | {w} | {base / 1000:.2f} ms | {hit / 1000:.2f} ms | "
              f"{ratio:.2f}x | {ok} |")
print()
print("| attack | attacker's requests | runner restarts |")
print("| --- | --- | ---: |")
for name in attacks:
    total = {}
    for path in sorted(glob.glob(f"{rundir}/attack-{name}-r*.json")):
        for status, n in json.load(open(path))["statuses"].items():
            total[status] = total.get(status, 0) + n
    seen = ", ".join(f"{s}: {n}" for s, n in sorted(total.items())) or "none"
    try:
        restarts = open(f"{rundir}/attack-{name}-restarts").read().strip()
    except OSError:
        restarts = "?"
    print(f"| {name} | {seen} | {restarts} |")
