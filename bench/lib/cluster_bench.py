#!/usr/bin/env python3
"""The body of bench/cluster.sh (see its header): live cluster runs per
policy in interleaved rounds, the one-node floor, the half-load latency
probe, `iolite sim` with the same workload and costs, and the report.

Clusters are started and stopped with examples/cluster/cluster.sh (it stops
nodes by the pids it wrote); wrk processes are ours and stopped by pid.
Only loopback addresses are used.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_model  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_args():
    p = argparse.ArgumentParser()
    for name in ("repo", "bin", "out", "policies"):
        p.add_argument("--" + name, required=True)
    for name in ("rounds", "duration", "warmup", "nodes", "connections", "delay-ms"):
        p.add_argument("--" + name, type=int, required=True)
    return p.parse_args()


class Cluster:
    """N nodes started by examples/cluster/cluster.sh."""

    def __init__(self, a, n, policy, cache_bytes):
        self.a = a
        self.state = os.path.join(a.out, "cluster-state")
        env = dict(os.environ, IOLITE=a.bin,
                   IOLITE_BENCH_DISK_DELAY=f"{a.delay_ms}ms")
        script = os.path.join(a.repo, "examples/cluster/cluster.sh")
        self.script = script
        res = subprocess.run(
            [script, "start", str(n), "--root", os.path.join(a.out, "corpus"),
             "--policy", policy, "--cache-size", str(cache_bytes),
             "--state", self.state],
            env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"cluster_bench: cluster.sh start failed:\n{res.stderr}")
        self.nodes = []
        for line in res.stdout.splitlines():
            m = re.match(r"node (\S+) http://(\S+) admin http://(\S+) pid (\d+)", line)
            if m:
                self.nodes.append({"name": m[1], "client": m[2], "admin": m[3],
                                   "pid": int(m[4])})
        if len(self.nodes) != n:
            self.stop()
            sys.exit(f"cluster_bench: expected {n} nodes, got:\n{res.stdout}")

    def stop(self):
        subprocess.run([self.script, "stop", "--state", self.state],
                       capture_output=True, text=True)


def get(addr, path, timeout=10):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def metrics(node):
    _, body = get(node["admin"], "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def snapshot(cluster):
    return [{"m": metrics(n), "cpu": cpu_seconds(n["pid"])} for n in cluster.nodes]


def load(a, targets, connections, seconds):
    """One wrk per target address, connections split among them, each
    walking the Zipf walk from its own offset. Returns the summed WALK
    counters."""
    walk = os.path.join(a.out, "walks/zipf.walk")
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "walk.lua")
    procs = []
    parts = len(targets)
    for i, t in enumerate(targets):
        c = max(1, connections // parts + (1 if i < connections % parts else 0))
        procs.append(subprocess.Popen(
            ["wrk", "-t1", f"-c{c}", f"-d{seconds}s", "--timeout", "30s",
             "-s", lua, f"http://{t}", "--", walk, "1", "light", str(i), str(parts)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    total = {}
    try:
        for p in procs:
            text, _ = p.communicate(timeout=seconds + 60)
            m = re.search(r"^WALK (.*)$", text, re.M)
            if not m:
                sys.exit(f"cluster_bench: wrk printed no WALK line:\n{text}")
            for kv in m[1].split():
                k, _, v = kv.partition("=")
                if not v.lstrip("-").isdigit():
                    continue
                if k == "duration_us":  # the longest wrk's window
                    total[k] = max(total.get(k, 0), int(v))
                else:
                    total[k] = total.get(k, 0) + int(v)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return total


def delta(before, after, key):
    return sum(a_["m"].get(key, 0) - b["m"].get(key, 0) for a_, b in zip(after, before))


def run_once(a, n, policy, cache_bytes, connections, tag):
    cl = Cluster(a, n, policy, cache_bytes)
    try:
        # The same client load whatever the node count: one wrk per
        # original node slot, all on this cluster's nodes.
        targets = [cl.nodes[i % n]["client"] for i in range(a.nodes)]
        warm = load(a, targets, connections, a.warmup) if a.warmup else {"requests": 0}
        before = snapshot(cl)
        t0 = time.monotonic()
        w = load(a, targets, connections, a.duration)
        wall = time.monotonic() - t0
        after = snapshot(cl)
    finally:
        cl.stop()
    secs = w["duration_us"] / 1e6
    hits = delta(before, after, "iolite_cache_hits_total")
    misses = delta(before, after, "iolite_cache_misses_total")
    decisions = delta(before, after, "iolite_cluster_decisions_total")
    dns = delta(before, after, "iolite_cluster_decision_nanoseconds_total")
    busy = [(a_["m"].get("iolite_cache_misses_total", 0) - b["m"].get("iolite_cache_misses_total", 0))
            * a.delay_ms / 1000 / secs for a_, b in zip(after, before)]
    cpu = sum(a_["cpu"] - b["cpu"] for a_, b in zip(after, before))
    r = {
        "tag": tag, "policy": policy, "nodes": n, "connections": connections,
        "warmup_requests": warm["requests"], "requests": w["requests"], "seconds": round(secs, 3), "wall": round(wall, 3),
        "throughput": round(w["requests"] / secs, 1),
        "hit_ratio": round(hits / max(1, hits + misses), 4),
        "disk_busy": [round(x, 3) for x in busy],
        "bad": w.get("status_gt399", 0) + w.get("connect", 0) + w.get("read", 0)
        + w.get("write", 0) + w.get("timeout", 0),
        "forwarded_per_request": round(delta(before, after, "iolite_cluster_forwarded_total")
                                       / max(1, w["requests"]), 3),
        "queued": delta(before, after, "iolite_cluster_queued_total"),
        "decisions": decisions,
        "decision_mean_us": round(dns / decisions / 1000, 3) if decisions else None,
        "cpu_us_per_request": round(cpu / max(1, w["requests"]) * 1e6, 1),
        # The bytes the caches hold at the end over their budgets: below 1
        # when page-rounded allocations and fragmentation leave room unused.
        "cache_fill": round(sum(x["m"].get("iolite_cache_bytes", 0) for x in after)
                            / (n * cache_bytes), 3),
    }
    print(json.dumps(r), flush=True)
    return r


def probe(a, cache_bytes, connections):
    """At half load under LARD/R: the median latency of a hit answered by
    the node asked, against the same target asked of another node."""
    walk = os.path.join(a.out, "walks/zipf.walk")
    with open(walk) as f:
        n, m = map(int, f.readline().split())
        paths = [f.readline().split()[0] for _ in range(n)]
        counts = {}
        for line in f:
            if line.strip():
                counts[int(line)] = counts.get(int(line), 0) + 1
    hot = paths[max(counts, key=counts.get) - 1]
    cl = Cluster(a, a.nodes, "lard-r", cache_bytes)
    bg = None
    try:
        targets = [x["client"] for x in cl.nodes]
        if a.warmup:
            load(a, targets, connections, a.warmup)
        lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "walk.lua")
        bg = [subprocess.Popen(
            ["wrk", "-t1", f"-c{max(1, connections // len(targets))}", "-d3600s",
             "-s", lua, f"http://{t}", "--", walk, "1", "light", str(i), str(len(targets))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, t in enumerate(targets)]
        time.sleep(2)  # the background load running (not a synchronisation)
        r, _ = get(cl.nodes[0]["client"], hot)
        server = r.getheader("X-Iolite-Node") or cl.nodes[0]["name"]
        local = next(x for x in cl.nodes if x["name"] == server)
        other = next(x for x in cl.nodes if x["name"] != server)

        def conn(node):
            host, port = node["client"].rsplit(":", 1)
            return http.client.HTTPConnection(host, int(port), timeout=10)

        cs = {"local": conn(local), "forwarded": conn(other)}
        times = {"local": [], "forwarded": []}
        served = {"local": set(), "forwarded": set()}
        for i in range(2 * 400):
            kind = ("local", "forwarded")[i % 2]
            t0 = time.perf_counter()
            cs[kind].request("GET", hot)
            resp = cs[kind].getresponse()
            resp.read()
            times[kind].append(time.perf_counter() - t0)
            served[kind].add(resp.getheader("X-Iolite-Node") or
                             (local if kind == "local" else other)["name"])
        res = {k: round(statistics.median(v) * 1e6, 1) for k, v in times.items()}
        res.update(target=hot, server=server, asked_forwarded=other["name"],
                   served_local=sorted(served["local"]),
                   served_forwarded=sorted(served["forwarded"]),
                   ratio=round(res["forwarded"] / res["local"], 2))
    finally:
        for p in bg or []:
            p.kill()
            p.wait()
        cl.stop()
    print(json.dumps({"probe": res}), flush=True)
    return res


def sim(a, cache_of, cpu_of, clients, warm):
    """`iolite sim` per policy with the live runs' warm-up and measured
    request counts (`warm`: (nodes, policy) -> (warm-up, measured))."""
    trace = os.path.join(a.out, "zipf.trace")
    walk = os.path.join(a.out, "walks/zipf.walk")
    with open(walk) as f, open(trace + ".tmp", "w") as t:
        n, _ = map(int, f.readline().split())
        ents = [f.readline().strip() for _ in range(n)]
        for line in f:
            if line.strip():
                t.write(ents[int(line) - 1] + "\n")
    os.replace(trace + ".tmp", trace)
    out = {}
    cmds = []
    for (nodes, pol), (warmup, requests) in warm.items():
        cpu_us = cpu_of[nodes]
        cache_bytes = cache_of[(nodes, pol)]
        cmd = [a.bin, "sim", "--nodes", str(nodes), "--policy", pol, "--trace", trace,
               "--cache-size", str(cache_bytes), "--clients", str(clients),
               "--disk-first-ms", str(a.delay_ms), "--disk-per-4k-us", "0",
               "--disk-per-44k-ms", "0", "--cpu-connect-us", str(round(cpu_us, 1)),
               "--cpu-teardown-us", "0", "--cpu-per-512b-us", "0",
               "--requests", str(max(1, requests)), "--warmup", str(warmup), "--json"]
        cmds.append(" ".join(cmd[1:]))
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"cluster_bench: sim failed: {' '.join(cmd)}\n{res.stderr}")
        for line in res.stdout.splitlines():
            j = json.loads(line)
            if j["policy"] == pol:
                out[(j["nodes"], j["policy"])] = j
    return out, cmds


def main():
    a = parse_args()
    with open(os.path.join(a.out, "manifest.json")) as f:
        manifest = json.load(f)
    cache_bytes = manifest["zipf"]["bytes"] // 8
    policies = a.policies.split(",")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    raw = os.path.join(a.out, f"cluster-{stamp}.jsonl")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    runs = []
    for rnd in range(a.rounds):
        for pol in policies:
            runs.append(run_once(a, a.nodes, pol, cache_bytes, a.connections, f"round{rnd}"))
        # The floor: the same load on one node alone.
        runs.append(run_once(a, 1, "local", cache_bytes, a.connections, f"round{rnd}"))
    probed = probe(a, cache_bytes, a.connections // 2)
    load_after = os.getloadavg()
    with open(raw, "w") as f:
        for r in runs:
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"probe": probed}) + "\n")

    def med(pol, n, key):
        xs = [r[key] for r in runs if r["policy"] == pol and r["nodes"] == n
              and r[key] is not None]
        return statistics.median(xs) if xs else None

    cores = os.cpu_count() or 1
    cluster_cpu = statistics.median(
        [r["cpu_us_per_request"] for r in runs if r["nodes"] == a.nodes])
    sim_cpu = cluster_cpu * a.nodes / cores
    warm = {(n, "wrr" if p == "local" else p): (int(med(p, n, "warmup_requests")),
                                                 int(med(p, n, "requests")))
            for p, n in [(p, a.nodes) for p in policies] + [("local", 1)]}
    # One node alone has every core to itself.
    one_cpu = med("local", 1, "cpu_us_per_request") / cores
    cpus = {a.nodes: sim_cpu, 1: one_cpu}
    simmed, sim_cmd = sim(a, {k: cache_bytes for k in warm}, cpus, a.connections, warm)
    # The same, each policy's cache the bytes its live caches held at the
    # end (median fill times the budget).
    fill = {(n, "wrr" if p == "local" else p): med(p, n, "cache_fill")
            for p, n in [(p, a.nodes) for p in policies] + [("local", 1)]}
    simfill, _ = sim(a, {k: int(cache_bytes * fill[k]) for k in warm}, cpus,
                     a.connections, warm)

    lines = []
    w = lines.append
    w(f"# Cluster benchmark, {started:%Y-%m-%d %H:%M} UTC\n")
    w(f"Machine: {cpu_model()}, {cores} cores, shared with other builds "
      f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after). "
      f"{a.nodes} nodes on 127.0.0.2-{1 + a.nodes}, one worker each; "
      f"cache {cache_bytes} B per node (1/8 of the Zipf files' "
      f"{manifest['zipf']['bytes']} B); one simulated disk per node, "
      f"{a.delay_ms} ms per miss; {a.connections} connections "
      f"({a.connections // a.nodes} per node, one wrk each); "
      f"{a.rounds} interleaved rounds of {a.warmup} s warm-up + {a.duration} s.\n")
    w("| policy | nodes | req/s (median) | vs WRR | hit ratio | disk busy (max node) "
      "| forwards/req | queued | decision mean µs | server CPU µs/req | bad |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    wrr = med("wrr", a.nodes, "throughput")
    for pol, n in [(p, a.nodes) for p in policies] + [("local", 1)]:
        tp = med(pol, n, "throughput")
        rs = [r for r in runs if r["policy"] == pol and r["nodes"] == n]
        busy = statistics.median([max(r["disk_busy"]) for r in rs])
        dm = med(pol, n, "decision_mean_us")
        w(f"| {pol if n > 1 else 'one node alone'} | {n} | {tp:.0f} | "
          f"{tp / wrr:.2f} | {med(pol, n, 'hit_ratio'):.3f} | {busy:.2f} | "
          f"{med(pol, n, 'forwarded_per_request'):.2f} | {med(pol, n, 'queued'):.0f} | "
          f"{'-' if dm is None else f'{dm:.2f}'} | {med(pol, n, 'cpu_us_per_request'):.0f} | "
          f"{sum(r['bad'] for r in rs)} |")
    w("")
    w(f"Per round (req/s): " + "; ".join(
        f"{r['tag']} {r['policy']}/{r['nodes']} {r['throughput']:.0f}" for r in runs) + "\n")
    w(f"`iolite sim`, same trace, cache, disk ({a.delay_ms} ms per miss, one queue per node), "
      f"{a.connections} clients, each policy's live warm-up and measured request counts (medians), CPU {sim_cpu:.0f} µs per request (the live clusters' median "
      f"server CPU per request, {cluster_cpu:.0f} µs, times {a.nodes} nodes / {cores} cores; one node alone: its own, {one_cpu:.0f} µs, over {cores} cores):\n")
    w("| policy | nodes | sim req/s | sim vs WRR | live vs WRR | live/sim ratio | sim hit | live hit "
      "| live cache fill | sim at that fill: vs WRR, hit |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    fwrr = simfill[(a.nodes, "wrr")]["throughput"] if (a.nodes, "wrr") in simfill else None
    swrr = simmed[(a.nodes, "wrr")]["throughput"] if (a.nodes, "wrr") in simmed else None
    for pol in policies:
        s = simmed.get((a.nodes, pol))
        if not s:
            continue
        live = med(pol, a.nodes, "throughput") / wrr
        pred = s["throughput"] / swrr if swrr else float("nan")
        sf = simfill[(a.nodes, pol)]
        w(f"| {pol} | {a.nodes} | {s['throughput']:.0f} | {pred:.2f} | {live:.2f} | "
          f"{live / pred:.2f} | {s['hit_ratio']:.3f} | {med(pol, a.nodes, 'hit_ratio'):.3f} | "
          f"{fill[(a.nodes, pol)]:.2f} | {sf['throughput'] / fwrr:.2f}, {sf['hit_ratio']:.3f} |")
    s1 = simmed[(1, "wrr")]
    w(f"| one node | 1 | {s1['throughput']:.0f} | | | | {s1['hit_ratio']:.3f} | "
      f"{med('local', 1, 'hit_ratio'):.3f} | {fill[(1, 'wrr')]:.2f} | "
      f"{simfill[(1, 'wrr')]['hit_ratio']:.3f} |")
    w("")
    w(f"Half load ({a.connections // 2} connections, LARD/R), {probed['target']} "
      f"served by {probed['server']}: median latency of a local hit {probed['local']} µs, "
      f"asked of {probed['asked_forwarded']} (forwarded) {probed['forwarded']} µs: "
      f"{probed['ratio']}x (one request at a time from a Python probe, "
      f"keep-alive; served by {probed['served_local']} and {probed['served_forwarded']}).\n")
    w(f"Raw: {os.path.relpath(raw, a.repo)}; sim runs (`iolite sim ...`):\n")
    for c in sim_cmd:
        w(f"    {c}")
    w("")
    report = "\n".join(lines)
    path = os.path.join(a.out, f"cluster-{stamp}.md")
    with open(path, "w") as f:
        f.write(report)
    print(report)
    print(f"report: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
