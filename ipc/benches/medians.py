#!/usr/bin/env python3
"""Prints the handoff bench's medians as the Markdown table of ipc/README.md.

Run after `cargo bench -p iolite-ipc --bench handoff`; reads criterion's
estimates under the workspace's target/criterion (or the folder given)."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")

def median(*parts):
    est = json.loads((root.joinpath(*parts) / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]  # nanoseconds

def fmt(ns):
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.1f} µs"

print("| size | aggregate by descriptor | same bytes through the socket | speed-up |")
print("|---|---|---|---|")
for size in ["4KiB", "64KiB", "1MiB", "16MiB"]:
    a, s = median("handoff", "aggregate", size), median("handoff", "socket", size)
    print(f"| {size} | {fmt(a)} | {fmt(s)} | {s / a:.1f}x |")
print()
print("| round trip | median | vs ping-pong |")
print("|---|---|---|")
pp = median("roundtrip", "ping-pong-64B")
print(f"| bare 64-byte unix-socket ping-pong | {fmt(pp)} | 1.00x |")
for size in ["4KiB", "16MiB"]:
    d = median("roundtrip", "descriptor", size)
    print(f"| descriptor round trip, {size} aggregate | {fmt(d)} | {d / pp:.2f}x |")
