#!/usr/bin/env python3
"""Turns bench/modules.sh's runs into its Markdown report.

  modules_report.py --runs RUNS.jsonl --rtt "RTT ..." --version V --wrk W
                    --workers N --connections N --rounds N --duration S
                    --warmup S --check C --loadavg A/B --config FILE
                    [--label-a L --label-b L --bin-a P --bin-b P
                     --version-a V --version-b V --config-b FILE
                     --mem-a JSON --mem-b JSON --workloads LIST --rerun CMD]

Each pair (module vs its baseline) gets medians over rounds of req/s and of
server CPU per request (the whole process tree: iolite and its runner
processes), the ratio of the medians, the per-round ratios (median, lowest,
highest) and the issue's target.

With --label-b (modules.sh --against), the runs are every workload on two
builds of iolite, and the report is ab.py's table: CPU per request of the
two sides compared within 3%.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import ab  # noqa: E402  (bench/lib/ab.py, beside this file)

# (label, measured, baseline, what the target is, target ratio measured/baseline)
PAIRS = [
    ("(a) hello module vs static 1 KiB file", "hello", "static-1KiB", 0.75),
    ("(b) 1 MiB module answer: zero-copy vs copy mode", "blob", "blob-copy", 3.0),
    ("(b) 1 MiB echo (POST): zero-copy vs copy mode", "echo", "echo-copy", 3.0),
]
RTT_TARGET = 1.5


def machine():
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{nproc} CPUs (`nproc`), {model}, Linux {platform.release()}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def fmt_rps(x):
    return f"{x:,.0f}"


def fmt_us(x):
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def ab_report(a, runs):
    """The A/B report: every workload on two builds, CPU per request."""
    A, B = a.label_a, a.label_b
    out = [f"# Process modules: A/B, {A} vs {B}", ""]
    out.append(f"- Machine: {machine()}")
    out.append(f"- Load average (1 min) before / after: {a.loadavg} "
               "(above 0 = other work shared the CPUs)")
    for label, binary, version, config in ((A, a.bin_a, a.version_a, a.config),
                                           (B, a.bin_b, a.version_b, a.config_b)):
        out.append(f"- {label}: `{binary} serve --config {os.path.basename(config)} --workers "
                   f"{a.workers} --cache-size 64M --access-log off` "
                   f"({version}), loading its own build's module libraries "
                   "(configs below)")
    out.append(f"- Client: {a.wrk}, 2 threads, {a.connections} keep-alive "
               f"connections; {a.rounds} rounds of {a.duration} s per run after "
               f"a {a.warmup} s warm-up; each workload on the two servers back "
               f"to back, {A} first in odd rounds and {B} first in even ones; "
               f"response check `{a.check}` for hello and static-1KiB, `light` "
               "for the 1 MiB workloads (bodies checked byte for byte on both "
               "servers before the rounds)")
    out.append(ab.explain(A, B))
    procs = []
    for label, mem in ((A, a.mem_a), (B, a.mem_b)):
        if mem:
            procs.append(f"{label} {json.loads(mem)['pids']}")
    out.append("- CPU = utime+stime of iolite and every runner process "
               "(/proc/PID/stat of the process tree, plus the time of reaped "
               "children) over the run ÷ requests, the same definition on "
               "both sides"
               + (f"; processes in each tree at the end: {', '.join(procs)}"
                  if procs else "") + ".")
    out.append("")
    names = [w for w in a.workloads.split(",") if w]
    lines, outside = ab.table(runs, A, B, names)
    out.extend(lines)
    out.append("")
    out.extend(ab.summary(len(lines) - 2, outside,
                          lambda ws: a.rerun and
                          f"{a.rerun} --workloads {','.join(ws)}"))
    out.append("")
    out.append("(c), the round trip (`cargo bench --bench module_rtt`), is "
               "skipped with --against: it builds and runs the current tree "
               "only. Run bench/modules.sh without --against for it.")
    out.append("")
    for label, config in ((A, a.config), (B, a.config_b)):
        with open(config) as f:
            out.append(f"Config of {label} (`--config`):")
            out.append("")
            out.append("```toml")
            out.append(f.read().strip())
            out.append("```")
            out.append("")
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser()
    for k in ("runs", "rtt", "version", "wrk", "workers", "connections", "rounds",
              "duration", "warmup", "check", "loadavg", "config",
              "label-a", "label-b", "bin-a", "bin-b", "version-a", "version-b",
              "config-b", "mem-a", "mem-b", "workloads", "rerun"):
        p.add_argument("--" + k, default="")
    a = p.parse_args()
    with open(a.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    if a.label_b:
        ab_report(a, runs)
        return
    by = {}
    for r in runs:
        by.setdefault(r["target"], []).append(r)

    out = ["# Process modules: the data path against its baselines", ""]
    out.append(f"- Machine: {machine()}")
    out.append(f"- Load average (1 min) before / after: {a.loadavg} "
               "(above 0 = other work shared the CPUs)")
    out.append(f"- iolite {a.version}: one server, `--workers {a.workers} "
               "--cache-size 64M --access-log off`, the corpus of "
               "bench/static.sh as root, modules mounted as in the config "
               "below")
    out.append(f"- Client: {a.wrk}, 2 threads, {a.connections} keep-alive "
               f"connections; {a.rounds} rounds of {a.duration} s per run after "
               f"a {a.warmup} s warm-up; the two runs of a pair back to back, "
               f"their order alternating by round; response check `{a.check}` "
               "for (a), `light` for the 1 MiB pairs (bodies checked byte for "
               "byte before the rounds)")
    out.append("- req/s and CPU µs/req are medians over rounds; CPU = "
               "utime+stime of iolite and every runner process "
               "(/proc/PID/stat of the process tree) over the run ÷ requests. "
               "Per-round ratio: median (lowest–highest) of the ratios of "
               "the two runs of each round.")
    out.append("")
    out.append("| comparison | measured req/s | baseline req/s | ratio | per-round ratio "
               "| measured CPU µs/req | baseline CPU µs/req | CPU-bound ratio | target |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, m, b, target in PAIRS:
        rm, rb = by.get(m, []), by.get(b, [])
        if not rm or not rb:
            continue
        med = lambda rows, k: statistics.median(x[k] for x in rows)
        rps_m, rps_b = med(rm, "rps"), med(rb, "rps")
        cpu_m, cpu_b = med(rm, "cpu_us_per_req"), med(rb, "cpu_us_per_req")
        cl_m, cl_b = med(rm, "client_cpu_us_per_req"), med(rb, "client_cpu_us_per_req")
        ratio = rps_m / rps_b
        bound = (cpu_b + cl_b) / (cpu_m + cl_m) if cpu_m + cl_m else float("nan")
        rb_round = {x["round"]: x["rps"] for x in rb}
        per = [x["rps"] / rb_round[x["round"]] for x in rm if x["round"] in rb_round]
        rng = (f"{statistics.median(per):.2f} ({min(per):.2f}–{max(per):.2f})"
               if len(per) > 1 else "–")
        ok = "✓" if ratio >= target else "✗"
        out.append(f"| {label} (`{m}` / `{b}`) | {fmt_rps(rps_m)} | {fmt_rps(rps_b)} "
                   f"| {ratio:.2f} | {rng} | {fmt_us(cpu_m)} | {fmt_us(cpu_b)} "
                   f"| {bound:.2f} | ≥ {target:g}× {ok} |")
    out.append("")
    out.append("CPU-bound ratio = (baseline server + wrk CPU per request) / "
               "(measured server + wrk CPU per request): the req/s ratio to "
               "expect when the benchmark has the CPUs to itself.")
    out.append("")
    if a.rtt:
        kv = dict(x.split("=", 1) for x in a.rtt.split()[1:])
        ratio = float(kv["ratio"])
        ok = "✓" if ratio <= RTT_TARGET else "✗"
        pratio = float(kv["polling_ratio"])
        pok = "✓" if pratio <= RTT_TARGET else "✗"
        out.append("| (c) round trip of an empty request | module (server → runner → server) "
                   "| bare unix-socket ping-pong (64 B, two processes) | ratio "
                   "| ping-pong, both ends polling before they block | ratio | target |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        out.append(f"| median of {kv['rounds']} interleaved rounds (`cargo bench --bench module_rtt`) "
                   f"| {kv['module_us']} µs | {kv['pingpong_us']} µs | {ratio:.2f} {ok} "
                   f"| {kv['polling_us']} µs | {pratio:.2f} {pok} | ≤ {RTT_TARGET:g}× |")
        out.append("")
        out.append("Both ends of a module link poll their socket a few times before "
                   "they sleep; the polling ping-pong does the same, and is the "
                   "like-for-like floor (a blocked reader on an idle virtual CPU "
                   "is slow to wake). Per round: see `rtt.txt` in the run's folder.")
        out.append("")
    if a.config:
        with open(a.config) as f:
            out.append("Config (`--config`):")
            out.append("")
            out.append("```toml")
            out.append(f.read().strip())
            out.append("```")
            out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
