#!/usr/bin/env bash
# Cluster benchmark: LARD/R against WRR and bounded-load consistent hashing
# on a live 4-node cluster of this machine, and `iolite sim` given the same
# workload and costs.
#
#   bench/cluster.sh [--rounds N] [--duration S] [--warmup S] [--nodes N]
#                    [--connections C] [--delay D] [--policies LIST]
#                    [--quick] [--no-build] [--out DIR]
#
# What it does (bench/README.md "Cluster" has the results and why):
# - the corpus and Zipf walk of bench/static.sh (bench/lib/corpus.py, same
#   parameters: 2,000 files, log-normal sizes, Zipf 0.9, 200,000 requests);
# - N nodes (default 4) on 127.0.0.2... started by examples/cluster/cluster.sh,
#   one worker each, each with a unified cache of 1/8 of the Zipf files'
#   bytes;
# - misses cost time that is not CPU: every node runs with
#   IOLITE_BENCH_DISK_DELAY=D (default 10ms), one simulated disk per node
#   (one miss read at a time, D each; core/src/cache/mod.rs, SlowDisk); with
#   D = 10 ms one node alone is disk-bound on this walk (the script measures
#   it: the "1 node" row, disk busy ~100%);
# - the same client load for every policy: one wrk per node, C/N connections
#   each (default C = 65 per node, T_high, as `iolite sim` does), every wrk
#   walking the same Zipf walk from its own offset; interleaved rounds
#   (each round runs every policy once, a fresh cluster each time), a
#   warm-up then a measured window; medians over rounds;
# - per run: throughput, total hit ratio (the nodes' cache hits over hits
#   and misses), disk busy share per node, forwards and decisions per
#   request, the decision's mean time, server CPU per request;
# - `iolite sim` with the same trace, cache size, disk (D per miss, one
#   queue per node), clients, and a CPU cost per request measured in this
#   run (server CPU per request with the local policy, times the nodes per
#   core: the nodes share this machine's cores);
# - at half load (C/2 connections, LARD/R), the median latency of a hit
#   served by the node asked against the same target asked of another node
#   (forwarded), measured one request at a time by a probe.
#
# Results: bench/out/cluster-DATE.md (and the raw JSON lines beside it).
# Every process it starts is stopped by pid when it exits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rounds=3 duration=15 warmup=15 nodes=4 connections="" delay=10ms
policies=lard-r,wrr,chash-bl build=1 out=$here/out

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}
die() { echo "cluster.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --quick) rounds=1 duration=5 warmup=5; shift ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "cluster.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$rounds" && [ "$rounds" -ge 1 ] || die "--rounds must be a positive integer"
is_uint "$duration" && [ "$duration" -ge 1 ] || die "--duration must be whole seconds >= 1"
is_uint "$warmup" || die "--warmup must be whole seconds"
is_uint "$nodes" && [ "$nodes" -ge 2 ] && [ "$nodes" -le 8 ] || die "--nodes must be 2 to 8"
[ -z "$connections" ] || { is_uint "$connections" && [ "$connections" -ge "$nodes" ]; } ||
  die "--connections must be at least --nodes"
[[ $delay =~ ^[0-9]+ms$ ]] || die "--delay takes milliseconds, like 10ms"
[[ $policies =~ ^[a-z-]+(,[a-z-]+)*$ ]] || die "--policies takes a list like lard-r,wrr,chash-bl"
connections=${connections:-$((65 * nodes))}

command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 is needed"
if [ "$build" = 1 ]; then
  echo "cluster.sh: cargo build --release (iolite)" >&2
  (cd "$repo" && cargo build --release --bin iolite >&2)
fi
bin=${IOLITE:-$repo/target/release/iolite}
[ -x "$bin" ] || die "$bin is not an executable"
mkdir -p "$out"
python3 "$here/lib/corpus.py" "$out"

exec python3 "$here/lib/cluster_bench.py" --repo "$repo" --bin "$bin" --out "$out" \
  --rounds "$rounds" --duration "$duration" --warmup "$warmup" --nodes "$nodes" \
  --connections "$connections" --delay-ms "${delay%ms}" --policies "$policies"
