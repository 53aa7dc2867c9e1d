#!/usr/bin/env python3
"""A hostile module's requests, in a loop, beside a measurement
(bench/modules.sh --attack). Usage:

  attack.py URL OUT PATH...

Asks for each PATH in turn, one at a time, on new connections, until it
gets SIGTERM; then writes {"statuses": {status: count}, "requests": n} to
OUT. A PATH starting with "slow:" is asked by a client that sends the
request and never reads (held 5 s, then closed): a stream for a client
that does not read. Every request has a 30 s limit; one that gets no
answer counts as "none". Only loopback URLs are accepted.
"""

import http.client
import json
import signal
import socket
import sys
import time
import urllib.parse

stop = False


def on_term(*_):
    global stop
    stop = True


def ask(host, port, path):
    if path.startswith("slow:"):
        s = socket.create_connection((host, port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path[5:]} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while not stop and time.monotonic() < deadline:
            time.sleep(0.05)
        s.close()
        return "held"
    c = http.client.HTTPConnection(host, port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return str(r.status)
    except (OSError, http.client.HTTPException):
        return "none"
    finally:
        c.close()


def main():
    url, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    u = urllib.parse.urlsplit(url)
    if not (u.hostname.startswith("127.") or u.hostname == "::1"):
        sys.exit(f"attack: refusing non-loopback target {u.hostname}")
    signal.signal(signal.SIGTERM, on_term)
    statuses = {}
    n = 0
    while not stop:
        got = ask(u.hostname, u.port, paths[n % len(paths)])
        statuses[got] = statuses.get(got, 0) + 1
        n += 1
    with open(out, "w") as f:
        json.dump({"statuses": statuses, "requests": n}, f)


if __name__ == "__main__":
    main()
