#!/usr/bin/env bash
# Static-file benchmark: iolite against a tuned nginx on loopback.
#
#   bench/static.sh            # 3 interleaved rounds of 10 s per target
#   ROUNDS=5 SECS=20 THREADS=1 bench/static.sh
#
# It builds iolite (release), generates a deterministic corpus (100 B, 1 KiB,
# 16 KiB, 256 KiB, 4 MiB, and 2,000 files with log-normal sizes of median
# 8 KiB requested in Zipf(0.9) order), starts both servers with 2 workers
# each, drives them with wrk (THREADS threads, 64 keep-alive connections) in
# interleaved rounds and prints, per target: the median req/s of each, the
# ratio iolite/nginx, and each server's CPU time per request (utime + stime
# from /proc over the run, divided by the requests wrk completed). Finally
# iolite's copy counter and RSS. Needs nginx, wrk, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DIR=${BENCH_DIR:-/tmp/iolite-bench}
NGINX_PORT=${NGINX_PORT:-18480}
IOLITE_PORT=${IOLITE_PORT:-18481}
ADMIN_PORT=${ADMIN_PORT:-18482}

for tool in nginx wrk python3 curl; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "bench: $tool is missing" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
mkdir -p "$DIR/corpus/z" "$DIR/nginx"

python3 - "$DIR" <<'PY'
import math, os, random, sys
d = sys.argv[1]
rng = random.Random(20261127)
def write(path, size):
    data = rng.randbytes(size)
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as f:
        f.write(data)
for name, size in [("100b", 100), ("1k", 1024), ("16k", 16384), ("256k", 262144), ("4m", 4 << 20)]:
    write(f"{d}/corpus/{name}.bin", size)
sizes = [max(1, int(rng.lognormvariate(math.log(8192), 1.0))) for _ in range(2000)]
for i, size in enumerate(sizes):
    write(f"{d}/corpus/z/{i:04}.bin", size)
# Zipf(0.9) over the 2,000 ranks, 200,000 requests.
weights = [1 / (r ** 0.9) for r in range(1, 2001)]
walk = rng.choices(range(2000), weights=weights, k=200_000)
with open(f"{d}/zipf.txt", "w") as f:
    f.writelines(f"/z/{i:04}.bin\n" for i in walk)
PY

cat > "$DIR/zipf.lua" <<LUA
local paths = {}
for line in io.lines("$DIR/zipf.txt") do paths[#paths + 1] = line end
local i = 0
init = function(args) i = math.random(#paths) end
request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
end
LUA

cat > "$DIR/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 1s;
    client_body_temp_path $DIR/nginx/body;
    proxy_temp_path $DIR/nginx/proxy;
    fastcgi_temp_path $DIR/nginx/fastcgi;
    uwsgi_temp_path $DIR/nginx/uwsgi;
    scgi_temp_path $DIR/nginx/scgi;
    types { application/octet-stream bin; }
    server { listen 127.0.0.1:$NGINX_PORT; root $DIR/corpus; }
}
CONF

"$NGINX" -c "$DIR/nginx/nginx.conf" -p "$DIR/nginx" &
NGINX_PID=$!
target/release/iolite serve --listen "127.0.0.1:$IOLITE_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
    --workers 2 --cache-size 64M --root "$DIR/corpus" > "$DIR/iolite.out" 2> "$DIR/iolite.err" &
IOLITE_PID=$!
cleanup() { kill "$IOLITE_PID" 2>/dev/null || true; kill "$NGINX_PID" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for port in "$NGINX_PORT" "$IOLITE_PORT"; do
    for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/100b.bin" && break; sleep 0.1; done
done

# CPU ticks (utime + stime) of the given processes, all threads included.
ticks() {
    local total=0 p
    for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$total"
}
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }
HZ=$(getconf CLK_TCK)

# One wrk run; prints "req/s requests cpu_ticks".
run() { # server port path-or-script
    local server=$1 port=$2 what=$3 pids out t0 t1 args
    if [ "$server" = nginx ]; then pids=$(nginx_pids); else pids=$IOLITE_PID; fi
    if [[ $what == *.lua ]]; then args=(-s "$what" "http://127.0.0.1:$port/"); else args=("http://127.0.0.1:$port$what"); fi
    t0=$(ticks $pids)
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" "${args[@]}")
    t1=$(ticks $pids)
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '/requests in/ {print $1}') $((t1 - t0))"
}

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

printf '%-6s %11s %11s %7s %13s %13s\n' target nginx_rps iolite_rps ratio nginx_us/req iolite_us/req
for target in /100b.bin /1k.bin /16k.bin /256k.bin /4m.bin "$DIR/zipf.lua"; do
    : > "$DIR/n.txt"; : > "$DIR/i.txt"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then order="nginx iolite"; else order="iolite nginx"; fi
        for server in $order; do
            if [ "$server" = nginx ]; then port=$NGINX_PORT; file="$DIR/n.txt"; else port=$IOLITE_PORT; file="$DIR/i.txt"; fi
            run "$server" "$port" "$target" >> "$file"
        done
    done
    nr=$(awk '{print $1}' "$DIR/n.txt" | median); ir=$(awk '{print $1}' "$DIR/i.txt" | median)
    ncpu=$(awk -v hz="$HZ" '{print $3 / hz * 1e6 / $2}' "$DIR/n.txt" | median)
    icpu=$(awk -v hz="$HZ" '{print $3 / hz * 1e6 / $2}' "$DIR/i.txt" | median)
    name=$(basename "$target"); name=${name%.bin}; name=${name%.lua}
    printf '%-6s %11.0f %11.0f %7.2f %13.2f %13.2f\n' "$name" "$nr" "$ir" "$(echo "$ir $nr" | awk '{print $1 / $2}')" "$ncpu" "$icpu"
done
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%F); wrk -t$THREADS -c$CONNS -d${SECS}s, $ROUNDS interleaved rounds, medians"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^iolite_body_bytes_copied_total'
echo "iolite RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$IOLITE_PID/status")"
