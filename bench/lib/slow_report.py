#!/usr/bin/env python3
"""The report of bench/modules.sh --slow: (d) the rate of a module handler
that sleeps 20 ms against processes_max x in_flight / 20 ms, and (e) the
p99 of the same module's quick answer beside slow requests against the
same measured unloaded in the same rounds (medians over rounds).

  slow_report.py RUNS.jsonl VERSION ROUNDS DURATION PROCESSES IN_FLIGHT

RUNS holds measure.py rows: target "nap20" (workload nap20), and
"quick-unloaded" / "quick-beside-slow" (workload quick).
"""

import json
import os
import platform
import statistics
import sys

from machine import cpu_model

runs_path, version, rounds, duration, procs, in_flight = sys.argv[1:7]
procs, in_flight = int(procs), int(in_flight)
rows = [json.loads(line) for line in open(runs_path) if line.strip()]


def figures(target, key):
    return [r[key] for r in rows if r["target"] == target]


def span(vals, scale=1.0, fmt="{:.0f}"):
    return "–".join(fmt.format(v / scale) for v in (min(vals), max(vals)))


print(f"# Slow module handlers ({version})\n")
print(f"{os.cpu_count()} CPUs ({cpu_model()}), kernel {platform.release()}; "
      f"{rounds} rounds of {duration} s per run, wrk 2 threads; faulty "
      f"fixture at /nap, processes_min = 1, processes_max = {procs}, "
      f"in_flight = {in_flight}, default lane settings.\n")

ideal = procs * in_flight / 0.020
rps = figures("nap20", "rps")
print("| run | connections | median | rounds | goal | |")
print("| --- | ---: | ---: | ---: | --- | --- |")
if rps:
    med = statistics.median(rps)
    ok = "met" if med >= 0.9 * ideal else "missed"
    print(f"| (d) 20 ms handler, req/s | {procs * in_flight} | {med:.0f} "
          f"({med / ideal:.2f} of {ideal:.0f}) | {span(rps)} | "
          f">= 0.9 x {ideal:.0f} | {ok} |")
base = figures("quick-unloaded", "p99_us")
loaded = figures("quick-beside-slow", "p99_us")
if base and loaded:
    b, l = statistics.median(base), statistics.median(loaded)
    ratio = l / b if b else float("inf")
    ok = "met" if ratio <= 2 else "missed"
    print(f"| (e) quick answer p99, unloaded | 8 | {b / 1000:.2f} ms | "
          f"{span(base, 1000, '{:.2f}')} ms | | |")
    print(f"| (e) quick answer p99, beside 4 connections of 200 ms requests "
          f"| 8 | {l / 1000:.2f} ms ({ratio:.2f}x) | "
          f"{span(loaded, 1000, '{:.2f}')} ms | within 2x | {ok} |")
    qb, ql = figures("quick-unloaded", "rps"), figures("quick-beside-slow", "rps")
    print(f"\nQuick answers: {statistics.median(qb):.0f} req/s unloaded, "
          f"{statistics.median(ql):.0f} req/s beside the slow ones (medians).")
