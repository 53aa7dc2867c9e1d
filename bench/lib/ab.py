"""The A/B table of `bench/static.sh --against` and `bench/modules.sh --against`.

Two builds of iolite serve the same workloads, their runs interleaved by
round. The figure compared is the server's CPU per request (utime+stime of
the server's process tree over the run, divided by the requests wrk
completed), not req/s: wrk shares the machine's CPUs with the server, so
req/s moves with the client and with whatever else runs, while the CPU a
server spends per request moves far less.

Verdict per workload: within TOLERANCE when |median CPU of A / median CPU
of B - 1| <= TOLERANCE. Imported by report.py and modules_report.py.

/proc gives CPU time in clock ticks (utime and stime, each truncated), so a
run's server CPU is good to 2 ticks; the table shows what that is against
the smaller side's CPU per run, so that a verdict finer than the figures
can be told apart (a longer --duration is the cure).
"""

import os
import statistics
from collections import defaultdict

TOLERANCE = 0.03
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def fmt_rps(x):
    return f"{x:,.0f}"


def fmt_us(x):
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def verdict(ratio):
    """The verdict cell for a CPU ratio A/B: within the tolerance or not,
    with the signed difference (+ = A spends more CPU per request)."""
    diff = f"{(ratio - 1) * 100:+.1f}%"
    if abs(ratio - 1) <= TOLERANCE:
        return f"✓ within {TOLERANCE:.0%} ({diff})"
    return f"✗ {diff}"


def table(runs, a, b, workloads):
    """Markdown lines of one A/B table over `runs` (already filtered to one
    client setting), rows in the order of `workloads`; and, for each row
    whose CPU ratio is outside the tolerance, (workload, whether its tick
    resolution is coarser than the tolerance). A workload with no run on
    either side is left out."""
    by = defaultdict(list)  # (workload, target) -> runs
    for r in runs:
        by[(r["workload"], r["target"])].append(r)
    lines = [
        f"| workload | {a} req/s | {b} req/s | req/s ratio "
        f"| {a} CPU µs/req | {b} CPU µs/req | CPU ratio | per-round CPU ratio "
        f"| tick resolution | CPU within {TOLERANCE:.0%} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    outside = []
    for w in workloads:
        ra, rb = by.get((w, a), []), by.get((w, b), [])
        if not ra or not rb:
            continue
        med = lambda rows, k: statistics.median(x[k] for x in rows)
        rps_a, rps_b = med(ra, "rps"), med(rb, "rps")
        cpu_a, cpu_b = med(ra, "cpu_us_per_req"), med(rb, "cpu_us_per_req")
        ratio = cpu_a / cpu_b if cpu_b else float("nan")
        per_run = min(med(ra, "server_cpu_s"), med(rb, "server_cpu_s"))
        coarse = not per_run or 2 * TICK_S / per_run > TOLERANCE
        res = f"±{2 * TICK_S / per_run:.1%}" if per_run else "–"
        b_round = {x["round"]: x["cpu_us_per_req"] for x in rb}
        per_round = [x["cpu_us_per_req"] / b_round[x["round"]] for x in ra
                     if b_round.get(x["round"])]
        rng = (f"{statistics.median(per_round):.3f} "
               f"({min(per_round):.3f}–{max(per_round):.3f})"
               if len(per_round) > 1 else "–")
        lines.append(
            f"| {w} | {fmt_rps(rps_a)} | {fmt_rps(rps_b)} | {rps_a / rps_b:.2f} "
            f"| {fmt_us(cpu_a)} | {fmt_us(cpu_b)} | {ratio:.3f} | {rng} "
            f"| {res} | {verdict(ratio)} |")
        if not abs(ratio - 1) <= TOLERANCE:
            outside.append((w, coarse))
    return lines, outside


def explain(a, b):
    """The report's line on how the A/B columns are computed."""
    return (f"- req/s and CPU µs/req are medians over rounds. CPU ratio = "
            f"median CPU µs/req of {a} / that of {b}: the figure compared "
            "(req/s is shown, not judged: wrk shares the CPUs with the "
            "server, so req/s moves with the client and with other work). "
            f"Within {TOLERANCE:.0%}: |CPU ratio − 1| ≤ {TOLERANCE}; the "
            "percentage is CPU ratio − 1 (+ = "
            f"{a} spends more per request). Per-round CPU ratio = the median "
            "(lowest–highest) of the ratios of the two runs of each round, "
            "made back to back. Tick resolution = 2 clock ticks (/proc counts "
            "CPU in ticks of "
            f"{TICK_S * 1000:.0f} ms) over the smaller side's median server CPU "
            "per run: a CPU figure is no finer than that (raise --duration "
            "where it is near the tolerance).")


def summary(n_rows, outside, rerun):
    """The closing lines: how many rows are within the tolerance and, when
    some are not, the command that reruns just those (`rerun` takes the
    list of workloads and returns the command, or None). `outside` is what
    table() returned, over all tables."""
    if not n_rows:
        return []
    lines = [f"CPU per request within {TOLERANCE:.0%} on "
             f"{n_rows - len(outside)} of {n_rows} rows."]
    if outside:
        names = []
        for w, _coarse in outside:
            if w not in names:
                names.append(w)
        lines[0] += f" Not within: {', '.join(names)}."
        coarse = sum(1 for _w, c in outside if c)
        if coarse:
            rows = "row has" if coarse == 1 else "rows have"
            lines[0] += (f" Of these, {coarse} {rows} a tick resolution "
                         f"coarser than {TOLERANCE:.0%}: a verdict finer "
                         "than the figures says little; a longer --duration "
                         "resolves it.")
        cmd = rerun(names) if rerun else None
        if cmd:
            lines.append(f"Rerun those once and report both runs: `{cmd}`")
    return lines
