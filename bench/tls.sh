#!/usr/bin/env bash
# HTTPS benchmark: iolite against nginx from Debian, both with the same
# certificate (ECDSA P-256, made here with openssl), TLS 1.3 only, on
# loopback; wrk drives both in interleaved rounds.
#
#   bench/tls.sh [--rounds N] [--duration S] [--warmup S] [--connections N]
#                [--threads N] [--workers N] [--workloads LIST] [--no-build]
#                [--out DIR]
#
# Workloads (--workloads, default all):
#   1KiB, 16KiB   keep-alive GETs of one file
#   new-1KiB      `Connection: close` on every request: one new connection,
#                 so one full TLS 1.3 handshake (ECDHE + ECDSA P-256), per
#                 request (wrk does not resume sessions)
# Printed: requests per second and server CPU per request (utime+stime of
# the server's processes, from /proc), medians over the rounds, and the
# ratio iolite/nginx of each; the report is saved as bench/out/tls-DATE.md.
# Both servers run the given number of workers, with access logs off.
#
# Environment: IOLITE_BIN (default target/release/iolite, built unless
# --no-build or set). Every process it starts is stopped by pid on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
lib=$here/lib

rounds=5 duration=5 warmup=1 connections=32 threads=1 workers=2
workloads=1KiB,16KiB,new-1KiB build=1 out=$here/out

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "tls.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done
die() { echo "tls.sh: $*" >&2; exit 1; }
for n in "$rounds" "$duration" "$connections" "$threads" "$workers"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "counts and durations are positive whole numbers"
done
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup is a whole number of seconds"
IFS=, read -r -a workload_list <<<"$workloads"
for w in "${workload_list[@]}"; do
  case $w in 1KiB|16KiB|new-1KiB) ;; *) die "unknown workload $w (1KiB,16KiB,new-1KiB)" ;; esac
done
for tool in nginx wrk openssl curl python3; do
  command -v "$tool" >/dev/null || die "$tool is needed (nginx and wrk: apt-get install nginx-light wrk)"
done

IOLITE_BIN=${IOLITE_BIN:-}
if [ -z "$IOLITE_BIN" ]; then
  IOLITE_BIN=$repo/target/release/iolite
  if [ "$build" = 1 ]; then
    (cd "$repo" && cargo build --release --bin iolite >&2)
  fi
fi
[ -x "$IOLITE_BIN" ] || die "IOLITE_BIN=$IOLITE_BIN is not an executable"

started=() helper=""
stop_all() {
  local pid
  if [ -n "$helper" ]; then kill -TERM "$helper" 2>/dev/null || true; wait "$helper" 2>/dev/null || true; fi
  for pid in "${started[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  started=()
}
trap 'stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run=$out/tls-run-$stamp
mkdir -p "$run/nginx/logs" "$run/nginx/tmp"
python3 "$lib/corpus.py" "$out" >/dev/null
corpus=$out/corpus

# One certificate for both.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$run/key.pem" -out "$run/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost" 2>/dev/null

nginx_port=$(python3 "$lib/measure.py" freeport)
user_line=""
if [ "$(id -u)" -eq 0 ]; then user_line="user root root;"; fi
cat >"$run/nginx/nginx.conf" <<CONF
$user_line
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 65536;
pid $run/nginx/nginx.pid;
error_log $run/nginx/logs/error.log warn;
events { worker_connections 4096; use epoll; multi_accept on; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    open_file_cache max=10000 inactive=60s;
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path $run/nginx/tmp;
    proxy_temp_path $run/nginx/tmp;
    fastcgi_temp_path $run/nginx/tmp;
    uwsgi_temp_path $run/nginx/tmp;
    scgi_temp_path $run/nginx/tmp;
    ssl_protocols TLSv1.3;
    ssl_certificate $run/cert.pem;
    ssl_certificate_key $run/key.pem;
    ssl_session_cache shared:SSL:10m;
    server {
        listen 127.0.0.1:$nginx_port ssl;
        root $corpus;
        location / { }
    }
}
CONF
nginx -p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/logs/error.log" \
  </dev/null >"$run/nginx/stdout" 2>&1 &
nginx_pid=$!
started+=("$nginx_pid")
python3 "$lib/measure.py" wait-port 127.0.0.1 "$nginx_port" 15 || die "nginx did not start"

cat >"$run/iolite.toml" <<CONF
root = "$corpus"
workers = $workers
admin = "none"
[cache]
size = "64M"
[log]
access = "off"
[[listener]]
address = "127.0.0.1:0"
tls_versions = ["1.3"]
[[listener.certificate]]
cert = "$run/cert.pem"
key = "$run/key.pem"
CONF
: >"$run/iolite.stdout"
"$IOLITE_BIN" serve --config "$run/iolite.toml" </dev/null >"$run/iolite.stdout" 2>"$run/iolite.stderr" &
iolite_pid=$!
started+=("$iolite_pid")
line=""
for _ in $(seq 1 600); do
  if [ "$(wc -l <"$run/iolite.stdout")" -ge 1 ]; then line=$(head -n 1 "$run/iolite.stdout"); break; fi
  kill -0 "$iolite_pid" 2>/dev/null || break
  sleep 0.05
done
[[ $line =~ ^listening\ on\ https://127\.0\.0\.1:([0-9]+)$ ]] ||
  die "iolite did not announce https (got '$line'; see $run/iolite.stderr)"
iolite_port=${BASH_REMATCH[1]}

# Both must serve the files byte for byte over TLS 1.3 with that certificate.
for port in "$iolite_port" "$nginx_port"; do
  for w in 1KiB 16KiB; do
    curl -sS --tlsv1.3 --cacert "$run/cert.pem" --resolve "localhost:$port:127.0.0.1" \
      "https://localhost:$port/f/$w.bin" -o "$run/check.bin"
    cmp -s "$run/check.bin" "$corpus/f/$w.bin" || die "port $port served /f/$w.bin wrong"
  done
done
echo "tls.sh: iolite on :$iolite_port (pid $iolite_pid), nginx on :$nginx_port (pid $nginx_pid)" >&2

runs=$run/runs.jsonl
: >"$runs"
measure() { # label port pid workload round
  local walk=${4#new-} close=() rc=0
  if [ "$4" != "$walk" ]; then close=(--close); fi
  python3 "$lib/measure.py" run --url "https://127.0.0.1:$2" --pid "$3" --target "$1" \
    --workload "$4" --walk "$out/walks/$walk.walk" --script "$lib/walk.lua" \
    --threads "$threads" --connections "$connections" --duration "$duration" \
    --warmup "$warmup" --round "$5" --check light "${close[@]}" --out "$runs" &
  helper=$!
  wait "$helper" || rc=$?
  helper=""
  [ "$rc" = 0 ] || die "run $1/$4/r$5 failed"
}
load_start=$(cut -d' ' -f1 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  echo "tls.sh: round $r of $rounds" >&2
  for w in "${workload_list[@]}"; do
    if ((r % 2)); then
      measure iolite "$iolite_port" "$iolite_pid" "$w" "$r"
      measure nginx "$nginx_port" "$nginx_pid" "$w" "$r"
    else
      measure nginx "$nginx_port" "$nginx_pid" "$w" "$r"
      measure iolite "$iolite_port" "$iolite_pid" "$w" "$r"
    fi
  done
done
load_end=$(cut -d' ' -f1 /proc/loadavg)
stop_all

report=$out/tls-$stamp.md
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
machine="$(nproc)-core $(python3 -c "import sys; sys.path.insert(0, '$lib'); import machine; print(machine.cpu_model())"), Linux $(uname -r)"
python3 - "$runs" "$machine" "$rev" \
  "$nginx_version" "$load_start" "$load_end" "$workers" "$connections" "$threads" \
  "$rounds" "$duration" >"$report" <<'PY'
import json, statistics, sys, datetime
runs_file, machine, rev, nginx, l0, l1, workers, conns, threads, rounds, dur = sys.argv[1:]
rows = [json.loads(l) for l in open(runs_file)]
work = []
for r in rows:
    if r["workload"] not in work:
        work.append(r["workload"])
def med(w, t, k):
    return statistics.median(r[k] for r in rows if r["workload"] == w and r["target"] == t)
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"### HTTPS against nginx (`bench/tls.sh`; {machine}; {now}; git {rev}; "
      f"{nginx}; TLS 1.3, ECDSA P-256, the same certificate; {workers} workers each, "
      f"wrk {threads} thread(s) x {conns} connections, {rounds} interleaved rounds of {dur} s, medians; "
      f"load average {l0} before, {l1} after; the machine is shared with other builds)")
print()
print("| workload | iolite req/s | nginx req/s | req/s ratio | iolite CPU us/req | nginx CPU us/req | CPU ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for w in work:
    a, b = med(w, "iolite", "rps"), med(w, "nginx", "rps")
    ca, cb = med(w, "iolite", "cpu_us_per_req"), med(w, "nginx", "cpu_us_per_req")
    print(f"| {w} | {a:.0f} | {b:.0f} | {a / b:.2f} | {ca:.1f} | {cb:.1f} | {ca / cb:.2f} |")
PY
cat "$report"
echo "tls.sh: report saved as ${report#"$repo"/}; raw runs in ${runs#"$repo"/}" >&2
