#!/usr/bin/env python3
"""Turns the JSON lines of bench/lib/measure.py into the Markdown report.

  report.py --runs RUNS.jsonl --meta META.json

META.json (written by bench/static.sh) holds the parameters, the versions,
the corpus manifest and the memory readings. The report goes to stdout.
With "against" in META.json (static.sh --against), side B is another build
of iolite and the tables are ab.py's: CPU per request compared within 3%.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import ab  # noqa: E402  (bench/lib/ab.py, beside this file)

WORKLOAD_ORDER = ["100B", "1KiB", "16KiB", "256KiB", "4MiB", "zipf"]
# The targets for iolite / nginx req/s with 2 client threads.
RPS_TARGET = {"100B": 1.10, "1KiB": 1.10, "16KiB": 1.10, "zipf": 1.10,
              "256KiB": 1.00, "4MiB": 1.00}


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
    return {"nproc": nproc, "cpu": model, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def fmt_rps(x):
    return f"{x:,.0f}"


def fmt_us(x):
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def table(runs, a, b, threads, with_targets):
    by = defaultdict(list)  # (workload, target) -> rows
    for r in runs:
        if r["threads"] == threads:
            by[(r["workload"], r["target"])].append(r)
    workloads = [w for w in WORKLOAD_ORDER if (w, a) in by or (w, b) in by]
    workloads += sorted({w for (w, _t) in by} - set(workloads))
    head = (f"| workload | {a} req/s | {b} req/s | ratio | per-round ratio "
            f"| {a} CPU µs/req | {b} CPU µs/req | CPU ratio "
            f"| wrk CPU µs/req ({a} / {b}) | CPU-bound ratio |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if with_targets:
        head += " target |"
        sep += "---|"
    lines = [head, sep]
    verdicts = []
    for w in workloads:
        ra, rb = by.get((w, a), []), by.get((w, b), [])
        if not ra or not rb:
            continue
        med = lambda rows, k: statistics.median(x[k] for x in rows)
        rps_a, rps_b = med(ra, "rps"), med(rb, "rps")
        cpu_a, cpu_b = med(ra, "cpu_us_per_req"), med(rb, "cpu_us_per_req")
        cl_a, cl_b = med(ra, "client_cpu_us_per_req"), med(rb, "client_cpu_us_per_req")
        ratio = rps_a / rps_b
        # What the req/s ratio would be if the benchmark had the CPUs to
        # itself: the inverse ratio of all CPU (server + wrk) per request.
        bound = (cpu_b + cl_b) / (cpu_a + cl_a) if cpu_a + cl_a else float("nan")
        cpu_ratio = cpu_a / cpu_b if cpu_b else float("nan")
        rb_round = {x["round"]: x["rps"] for x in rb}
        per_round = [x["rps"] / rb_round[x["round"]] for x in ra
                     if x["round"] in rb_round]
        rng = (f"{statistics.median(per_round):.2f} "
               f"({min(per_round):.2f}–{max(per_round):.2f})"
               if len(per_round) > 1 else "–")
        line = (f"| {w} | {fmt_rps(rps_a)} | {fmt_rps(rps_b)} | {ratio:.2f} "
                f"| {rng} | {fmt_us(cpu_a)} | {fmt_us(cpu_b)} "
                f"| {cpu_ratio:.2f} | {fmt_us(cl_a)} / {fmt_us(cl_b)} "
                f"| {bound:.2f} |")
        if with_targets:
            want = RPS_TARGET.get(w)
            ok_rps = want is None or ratio >= want
            ok_cpu = cpu_a <= cpu_b
            mark = lambda ok: "✓" if ok else "✗"
            want_s = f"≥{want:.2f}" if want else "–"
            line += f" req/s {want_s} {mark(ok_rps)}, CPU ≤ {mark(ok_cpu)} |"
            verdicts.append(ok_rps and ok_cpu)
        lines.append(line)
    n = {t: len({x["round"] for x in runs if x["threads"] == threads
                 and x["target"] == t}) for t in (a, b)}
    return lines, verdicts, n


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--runs", required=True)
    p.add_argument("--meta", required=True)
    a = p.parse_args(argv)
    with open(a.meta) as f:
        meta = json.load(f)
    with open(a.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]

    m = machine()
    A, B = meta["label_a"], meta["label_b"]
    self_check = meta.get("self_check", False)
    against = meta.get("against")  # side B is another iolite build
    z = meta["corpus"]["zipf"]
    cp = meta["corpus"]["params"]
    out = []
    title = "harness self-check (nginx against nginx)" if self_check \
        else f"A/B, {A} vs {B}" if against else f"{A} vs {B}"
    out.append(f"# Static files: {title}")
    out.append("")
    out.append(f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, "
               f"Linux {m['kernel']}, {m['date']}")
    if meta.get("loadavg"):
        out.append(f"- Load average (1 min) of the whole machine before and "
                   f"after: {meta['loadavg'][0]} / {meta['loadavg'][1]} "
                   f"(above 0 = other work shared the CPUs)")
    out.append(f"- {A}: `{meta['cmd_a']}` ({meta['version_a']})")
    if against:
        out.append(f"- {B}: `{meta['cmd_b']}` ({meta['version_b']}), the same "
                   "command line")
    else:
        out.append(f"- {B}: {meta['version_b']}, {meta['workers']} workers, "
                   "sendfile, tcp_nopush, tcp_nodelay, open_file_cache "
                   "max=10000, keepalive_requests 1e9, access_log off")
    out.append(f"- Client: {meta['wrk_version']}, {meta['connections']} "
               f"keep-alive connections; {meta['rounds']} interleaved rounds "
               f"of {meta['duration']} s per run after a {meta['warmup']} s "
               f"warm-up, the order of the two servers alternating by round; "
               f"response check `{meta['check']}`"
               + (f"; servers and wrk at niceness {meta['nice']}"
                  if meta.get("nice") else ""))
    out.append(f"- Corpus (seed {cp['seed']}): 100 B, 1 KiB, 16 KiB, 256 KiB, "
               f"4 MiB; and {z['files']} files, log-normal sizes (median "
               f"{cp['median']} B, sigma {cp['sigma']}: {z['size_min']} B to "
               f"{z['size_max']} B, {mib(z['bytes'] / 1024)} in all) walked in "
               f"Zipf({cp['alpha']}) order, {cp['requests']} entries, mean "
               f"response body {z['mean_request_bytes'] / 1024:.1f} KiB")
    if against:
        out.append(ab.explain(A, B))
        out.append("- CPU = utime+stime of the server's process tree "
                   "(/proc/PID/stat: iolite's one process counts all its "
                   "threads) over the run ÷ requests wrk completed, the same "
                   "definition on both sides.")
    else:
        out.append("- req/s and CPU µs/req are medians over rounds; ratio = "
                   f"{A} / {B} of the medians; per-round ratio = the median "
                   "(lowest–highest) of the ratios of the two runs of each round, "
                   "which were made back to back. CPU = utime+stime of all the server's "
                   "processes (/proc/PID/stat) over the run ÷ requests wrk "
                   "completed. wrk CPU = the client's own CPU per request. "
                   f"CPU-bound ratio = ({B} CPU + its wrk CPU) / ({A} CPU + its "
                   "wrk CPU) per request: the req/s ratio to expect when server "
                   "and client have the CPUs to themselves, and far steadier "
                   "than req/s when other work shares them.")
    out.append("")
    all_ok = []
    ab_rows, ab_outside = 0, []
    for t in meta["client_threads"]:
        if against:
            note = " (client-bound: req/s is wrk's limit)" if t == 1 else ""
            names = WORKLOAD_ORDER + sorted({r["workload"] for r in runs}
                                            - set(WORKLOAD_ORDER))
            lines, outside = ab.table([r for r in runs if r["threads"] == t],
                                      A, B, names)
            ab_rows += len(lines) - 2
            ab_outside += outside
        else:
            note = " (the targets)" if t == 2 else \
                " (client-bound: ratios collapse toward 1)" if t == 1 else ""
            lines, verdicts, n = table(runs, A, B, t,
                                       with_targets=(t == 2 and not self_check))
            all_ok += verdicts
        if len(lines) <= 2:
            continue
        out.append(f"## wrk {t} thread{'s' if t != 1 else ''}{note}")
        out.append("")
        out.extend(lines)
        out.append("")

    mem = meta.get("memory")
    if mem:
        limit_kib = meta["cache_bytes"] / 1024 + 32 * 1024
        out.append(f"## Memory while serving the Zipf walk "
                   f"(cache {meta['cache_size']})")
        out.append("")
        out.append("| server | max VmRSS in Zipf runs | VmRSS at end "
                   "| VmHWM at end | limit (cache + 32 MiB) | within |")
        out.append("|---|---:|---:|---:|---:|---|")
        for label, key in ((A, "a"), (B, "b")):
            mm = mem.get(key)
            if not mm:
                continue
            zr = [x.get("rss_max_kib", 0) for x in runs
                  if x["target"] == label and x["workload"] == "zipf"]
            peak = max(zr) if zr else 0
            # The limit is iolite's: side A's, or both sides' in A/B mode.
            limited = key == "a" or bool(against)
            lim = mib(limit_kib) if limited else "–"
            within = ("✓" if max(peak, mm["hwm_kib"]) <= limit_kib else "✗") \
                if limited else "–"
            procs = f" ({mm['pids']} processes)" if mm["pids"] > 1 else ""
            out.append(f"| {label}{procs} | {mib(peak)} | {mib(mm['rss_kib'])} "
                       f"| {mib(mm['hwm_kib'])} | {lim} | {within} |")
        out.append("")
        out.append("RSS is summed over the server's processes; VmHWM is each "
                   "process's peak over the whole benchmark, summed.")
        out.append("")
    if against:
        rerun = meta.get("rerun")
        out.extend(ab.summary(
            ab_rows, ab_outside,
            lambda names: rerun and f"{rerun} --workloads {','.join(names)}"))
        out.append("")
    if all_ok:
        met = sum(all_ok)
        out.append(f"Targets met on {met} of {len(all_ok)} workloads "
                   "(2 client threads).")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1:])
