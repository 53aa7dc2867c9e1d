#!/usr/bin/env python3
"""Measurement helpers for bench/static.sh.

Subcommands:
  freeport                      print a free TCP port on 127.0.0.1
  wait-port HOST PORT SECS      wait until HOST:PORT accepts a connection
  verify URL CORPUS WALK...     GET every path of the walk files, compare bytes
  run ...                       one wrk run (after a warm-up) with the server's
                                CPU time sampled from /proc; appends a JSON line
  mem PID                       print VmRSS/VmHWM (KiB) of PID and descendants
  tree PID                      print PID and its live descendants
  owner PORT PID                check that PID or a descendant owns the socket
                                listening on PORT (not some other server)

A server is named by the pid the harness started; its CPU time is the sum of
utime+stime (+cutime+cstime, the time of children it has reaped) over that
process and all its live descendants (nginx: master and workers; iolite: its
one process, whose /proc/PID/stat counts all of its threads). Only loopback
addresses are accepted as targets.
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg, code=1):
    print(f"measure: {msg}", file=sys.stderr)
    sys.exit(code)


def check_loopback(host):
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as e:
        die(f"cannot resolve {host}: {e}")
    for info in infos:
        addr = info[4][0]
        if not (addr.startswith("127.") or addr == "::1"):
            die(f"refusing non-loopback target {host} ({addr})")


# ---------------------------------------------------------------- /proc

def read_stat(pid):
    """(ppid, ticks) of one process, ticks = utime+stime+cutime+cstime."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field k is rest[k-3].
    ppid = int(rest[1])
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return ppid, ticks


def process_tree(root):
    """root and every live descendant, with their tick counts."""
    parent, ticks = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            ppid, t = read_stat(pid)
        except (OSError, ValueError, IndexError):
            continue
        parent[pid] = ppid
        ticks[pid] = t
    if root not in ticks:
        die(f"server process {root} is gone")
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return {pid: ticks[pid] for pid in tree}


def tree_ticks(root):
    return sum(process_tree(root).values())


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_mem(root):
    pids = list(process_tree(root))
    return {
        "pids": len(pids),
        "rss_kib": sum(status_kib(p, "VmRSS") for p in pids),
        "hwm_kib": sum(status_kib(p, "VmHWM") for p in pids),
        "root_rss_kib": status_kib(root, "VmRSS"),
        "root_hwm_kib": status_kib(root, "VmHWM"),
    }


class RssSampler(threading.Thread):
    def __init__(self, root, interval=0.1):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.max_kib, self.samples = 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                pids = list(process_tree(self.root))
            except SystemExit:
                return
            rss = sum(status_kib(p, "VmRSS") for p in pids)
            self.max_kib = max(self.max_kib, rss)
            self.samples += 1
            self.stop.wait(self.interval)


# ---------------------------------------------------------------- wrk

WALK_RE = re.compile(r"^WALK (.*)$", re.M)


def run_wrk(a, duration, tag):
    cmd = ["wrk", "-t", str(a.threads), "-c", str(a.connections),
           "-d", f"{duration}s", "--timeout", "10s", "--latency",
           "-s", a.script, a.url, "--", a.walk, str(a.threads), a.check]
    if a.close:
        cmd.append("close")
    bound = duration + 30
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def on_term(signum, _frame):
        proc.kill()  # never leave a wrk behind
        proc.wait()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    timer = threading.Timer(bound, proc.kill)
    timer.start()
    try:
        out, err = proc.communicate()
    finally:
        timer.cancel()
    # communicate() reaped wrk; its rusage is in our children's totals.
    wall = time.monotonic() - started
    if proc.returncode != 0:
        die(f"{tag}: wrk exited {proc.returncode} after {wall:.1f}s\n"
            f"{out}\n{err}")
    m = WALK_RE.search(out)
    if not m:
        die(f"{tag}: no WALK line from wrk\n{out}\n{err}")
    res = {}
    for kv in m.group(1).split():
        k, v = kv.split("=", 1)
        res[k] = v if k == "first_bad" else int(v)
    return res, out


def min_bytes_per_response(walk):
    """A floor under wrk's bytes read / responses for a correct server.

    The smallest possible head, "HTTP/1.1 200 OK\r\n\r\n" (19 bytes), plus
    the body: exact for a one-file walk; for a walk over many files, 0.8 of
    the mean body size along the walk (each wrk thread reads a long stretch
    of it from its own offset). A server that answers 304, a redirect or an
    empty 200 falls far below it.
    """
    with open(walk) as f:
        n, m = (int(x) for x in f.readline().split())
        sizes = [int(f.readline().split()[1]) for _ in range(n)]
        if n == 1:
            return 19 + sizes[0]
        total = sum(sizes[int(f.readline()) - 1] for _ in range(m))
    return 19 + 0.8 * total / m


def check_result(res, tag, out, floor):
    problems = []
    if res["requests"] <= 0:
        problems.append("no request completed")
    for k in ("non2xx", "badlen", "status_gt399", "connect", "read", "write"):
        if res[k]:
            problems.append(f"{k}={res[k]}")
    if res["requests"] > 0 and res["bytes"] / res["requests"] < floor:
        problems.append(f"bytes/response={res['bytes'] / res['requests']:.0f}"
                        f" < floor {floor:.0f}")
    if problems:
        die(f"{tag}: BAD RESPONSES: {', '.join(problems)} "
            f"(first bad: {res['first_bad']}); wrk said:\n{out}", code=3)


def cmd_run(a):
    u = urllib.parse.urlsplit(a.url)
    check_loopback(u.hostname)
    tag = f"{a.target}/{a.workload}/t{a.threads}/r{a.round}"
    floor = min_bytes_per_response(a.walk)
    if a.warmup > 0:
        res, out = run_wrk(a, a.warmup, tag + "/warmup")
        check_result(res, tag + "/warmup", out, floor)

    sampler = RssSampler(a.pid) if a.rss else None
    before_self = os.times()
    before = tree_ticks(a.pid)
    if sampler:
        sampler.start()
    res, out = run_wrk(a, a.duration, tag)
    after = tree_ticks(a.pid)
    after_self = os.times()
    if sampler:
        sampler.stop.set()
        sampler.join()
    check_result(res, tag, out, floor)

    secs = res["duration_us"] / 1e6
    server_cpu = (after - before) / CLK_TCK
    client_cpu = ((after_self.children_user - before_self.children_user) +
                  (after_self.children_system - before_self.children_system))
    row = {
        "target": a.target, "workload": a.workload, "threads": a.threads,
        "connections": a.connections, "round": a.round, "check": a.check,
        "requests": res["requests"], "bytes": res["bytes"],
        "seconds": round(secs, 4),
        "rps": round(res["requests"] / secs, 2),
        "server_cpu_s": round(server_cpu, 3),
        "cpu_us_per_req": round(server_cpu / res["requests"] * 1e6, 3),
        "client_cpu_us_per_req": round(client_cpu / res["requests"] * 1e6, 3),
        "p50_us": res["p50_us"], "p99_us": res["p99_us"],
        "timeouts": res["timeout"],
    }
    if sampler:
        row["rss_max_kib"] = sampler.max_kib
        row["rss_samples"] = sampler.samples
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {tag:<28} {row['rps']:>10.0f} req/s  "
          f"{row['cpu_us_per_req']:>7.2f} us/req server  "
          f"{row['client_cpu_us_per_req']:>7.2f} us/req client"
          + (f"  rss max {sampler.max_kib / 1024:.1f} MiB" if sampler else ""),
          file=sys.stderr)


# ---------------------------------------------------------------- others

def cmd_freeport(_a):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cmd_wait_port(a):
    check_loopback(a.host)
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((a.host, a.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{a.host}:{a.port} did not accept a connection in {a.seconds}s")


def walk_paths(walk):
    with open(walk) as f:
        n, _m = (int(x) for x in f.readline().split())
        return [tuple(f.readline().split()) for _ in range(n)]


def cmd_verify(a):
    u = urllib.parse.urlsplit(a.url)
    check_loopback(u.hostname)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    checked = 0
    for walk in a.walks:
        for path, size in walk_paths(walk):
            with open(os.path.join(a.corpus, path.lstrip("/")), "rb") as f:
                want = f.read()
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or body != want or len(want) != int(size):
                die(f"verify {a.url}{path}: status {r.status}, "
                    f"{len(body)} bytes, want 200 and {len(want)} "
                    f"identical bytes", code=3)
            checked += 1
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port,
                                                  timeout=10)
    conn.close()
    print(f"verify: {a.url}: {checked} files byte-identical", file=sys.stderr)


def listening_inodes(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            pass
    return inodes


def cmd_owner(a):
    want = listening_inodes(a.port)
    if not want:
        die(f"nothing listens on port {a.port}")
    for pid in process_tree(a.pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in want:
                    return
            except OSError:
                continue
    die(f"port {a.port} is not served by process {a.pid} or its children")


def cmd_tree(a):
    print(" ".join(str(p) for p in process_tree(a.pid)))


def cmd_mem(a):
    print(json.dumps(tree_mem(a.pid)))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport").set_defaults(fn=cmd_freeport)

    w = sub.add_parser("wait-port")
    w.add_argument("host")
    w.add_argument("port", type=int)
    w.add_argument("seconds", type=float)
    w.set_defaults(fn=cmd_wait_port)

    v = sub.add_parser("verify")
    v.add_argument("url")
    v.add_argument("corpus")
    v.add_argument("walks", nargs="+")
    v.set_defaults(fn=cmd_verify)

    m = sub.add_parser("mem")
    m.add_argument("pid", type=int)
    m.set_defaults(fn=cmd_mem)

    t = sub.add_parser("tree")
    t.add_argument("pid", type=int)
    t.set_defaults(fn=cmd_tree)

    o = sub.add_parser("owner")
    o.add_argument("port", type=int)
    o.add_argument("pid", type=int)
    o.set_defaults(fn=cmd_owner)

    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--pid", type=int, required=True,
                   help="the server's root process")
    r.add_argument("--target", required=True)
    r.add_argument("--workload", required=True)
    r.add_argument("--walk", required=True)
    r.add_argument("--script", required=True)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--connections", type=int, default=64)
    r.add_argument("--duration", type=int, default=5)
    r.add_argument("--warmup", type=int, default=1)
    r.add_argument("--round", type=int, default=1)
    r.add_argument("--check", choices=("lua", "light"), default="lua",
                   help="per-response check in Lua, or wrk's own (see walk.lua)")
    r.add_argument("--close", action="store_true",
                   help="Connection: close on every request (a new connection each)")
    r.add_argument("--rss", action="store_true",
                   help="sample the server's RSS during the run")
    r.add_argument("--out", required=True, help="JSON lines file to append")
    r.set_defaults(fn=cmd_run)

    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main(sys.argv[1:])
