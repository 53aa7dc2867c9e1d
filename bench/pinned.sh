#!/usr/bin/env bash
# Two iolite builds, one URL, pinned: each server on CPU 0 with one worker,
# wrk (1 thread, 32 connections) on CPU 1, runs alternating A/B by round;
# prints each run's server CPU µs per request and the ratio A/B. A finer
# look than `static.sh --against` at a per-request cost on a 2-CPU machine,
# where the client and the server otherwise share both CPUs.
#
#   bench/pinned.sh NEW_BIN BASE_BIN [PATH] [ROUNDS]   # PATH default /f/1KiB.bin, ROUNDS 8
#
# It serves bench/out/corpus (run bench/static.sh once to write it). Every
# server it starts is stopped by pid.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
new=$1 base=$2 path=${3:-/f/1KiB.bin} rounds=${4:-8}
corpus=$here/out/corpus
[ -d "$corpus" ] || { echo "pinned.sh: no $corpus: run bench/static.sh --quick once" >&2; exit 1; }
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# One run of `$1`: its server CPU µs per request over 5 s (after 2 s of warm-up).
run() {
  taskset -c 0 "$1" serve --listen 127.0.0.1:0 --root "$corpus" --workers 1 \
    --admin none --cache-size 64M --access-log off >"$tmp/out" 2>/dev/null &
  pid=$!
  local deadline=$((SECONDS + 30))
  until grep -q '^listening on .*:[0-9]*$' "$tmp/out" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "pinned.sh: $1 did not start" >&2; exit 1; }
    sleep 0.05
  done
  local port t0 t1 reqs
  port=$(head -n 1 "$tmp/out" | sed 's/.*://')
  taskset -c 1 wrk -t1 -c32 -d2s "http://127.0.0.1:$port$path" >/dev/null
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  reqs=$(taskset -c 1 wrk -t1 -c32 -d5s "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  python3 -c "print('%.3f' % (($t1 - $t0) * 1e6 / 100 / $reqs))"
}

for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then a=$(run "$new"); b=$(run "$base"); else b=$(run "$base"); a=$(run "$new"); fi
  echo "round $r: new $a µs/req, base $b µs/req, ratio $(python3 -c "print('%.3f' % ($a / $b))")"
done
