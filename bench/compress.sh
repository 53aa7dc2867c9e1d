#!/usr/bin/env bash
# Compression benchmark: a 64 KiB HTML page asked for with
# `Accept-Encoding: gzip`, from iolite and from nginx, on loopback.
#
#   bench/compress.sh [--rounds N] [--duration S] [--connections N]
#                     [--workers N] [--no-build] [--out DIR]
#
# Two workloads, the same file under two folders of one document root:
#
#   on-the-fly  /gz/page.html    nginx `gzip on` (compresses every answer,
#                                at its default level 1); iolite makes the
#                                variant once (level 9) and sends it from
#                                its cache
#   static      /gzs/page.html   a page.html.gz beside it (gzip -9): nginx
#                                `gzip_static on`, iolite its siblings
#
# Both servers get --workers workers (default 2); wrk 2 threads,
# --connections keep-alive connections (default 16), every request with
# `Accept-Encoding: gzip`. Before measuring, every answer is checked: gzip,
# `Vary: Accept-Encoding`, and the page's bytes once decompressed. Rounds
# interleave the servers (the order alternating); the report gives each
# side's median req/s, the ratio with the issue's goals (on-the-fly >= 3x
# nginx, static >= 1.0x), the bytes per answer, and the whole machine's
# CPU time per request (server and wrk). The Markdown report is printed
# and saved as bench/out/compress-DATE.md. Every process it starts is
# stopped by pid however it exits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rounds=5 duration=5 connections=16 workers=2 build=1 out=$here/out

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}
die() { echo "compress.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compress.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "compress.sh: installing ${need[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
fi
if [ "$build" = 1 ]; then
  (cd "$repo" && cargo build --release --bin iolite >&2)
fi
iolite=$repo/target/release/iolite
[ -x "$iolite" ] || die "$iolite is missing (cargo build --release)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run=$out/compress-run-$stamp
site=$run/site
mkdir -p "$site/gz" "$site/gzs" "$run/nginx/logs" "$run/nginx/tmp"

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The page: 64 KiB of deterministic HTML, text that compresses about 4:1.
python3 - "$site/gz/page.html" <<'PY'
import random, sys
rng = random.Random(64)
words = ("the a server cache buffer page request answer file module node "
         "cluster memory copy zero send socket kernel read write list item").split()
out = ["<!doctype html>\n<html><head><title>page</title></head><body>\n"]
size = sum(map(len, out))
while size < 65536 - 200:
    line = "<p>" + " ".join(rng.choice(words) for _ in range(rng.randint(8, 20))) + \
        f" {rng.randint(0, 1 << 20)}</p>\n"
    out.append(line)
    size += len(line)
out.append("</body></html>\n")
text = "".join(out)
text += " " * (65536 - len(text) - 1) + "\n"
open(sys.argv[1], "w").write(text)
PY
cp "$site/gz/page.html" "$site/gzs/page.html"
gzip -9 -k -n "$site/gzs/page.html"
touch -r "$site/gzs/page.html" "$site/gzs/page.html.gz"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nginx_port=$(free_port)
user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user root root;"
cat >"$run/nginx/nginx.conf" <<CONF
$user_line
daemon off;
worker_processes $workers;
pid $run/nginx/nginx.pid;
error_log $run/nginx/logs/error.log warn;
events { worker_connections 4096; use epoll; multi_accept on; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    server_tokens off;
    types { text/html html; }
    client_body_temp_path $run/nginx/tmp;
    gzip_vary on;
    server {
        listen 127.0.0.1:$nginx_port;
        root $site;
        location /gz/ { gzip on; gzip_types text/html; }
        location /gzs/ { gzip_static on; }
    }
}
CONF
nginx -p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/logs/error.log" &
pids+=($!)

"$iolite" serve --listen 127.0.0.1:0 --root "$site" --workers "$workers" --admin none \
  --access-log off >"$run/iolite.stdout" 2>"$run/iolite.stderr" &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -q '^listening on' "$run/iolite.stdout"; do
  [ "$SECONDS" -lt "$deadline" ] || die "iolite did not start: $(head -c 500 "$run/iolite.stderr")"
  sleep 0.05
done
iolite_url=$(sed -n 's/^listening on //p' "$run/iolite.stdout" | head -1)
nginx_url=http://127.0.0.1:$nginx_port

declare -A path=([on-the-fly]=/gz/page.html [static]=/gzs/page.html)
declare -A size
for url in "$iolite_url" "$nginx_url"; do
  for w in on-the-fly static; do
    deadline=$((SECONDS + 30))
    # iolite answers the first requests as the file is while it makes the
    # variant: ask until the answer is gzip.
    until curl -sf -D "$run/head" -o "$run/body.gz" -H 'Accept-Encoding: gzip' "$url${path[$w]}" &&
      grep -qi '^content-encoding: gzip' "$run/head"; do
      [ "$SECONDS" -lt "$deadline" ] || die "$url${path[$w]}: no gzip answer"
      sleep 0.1
    done
    grep -qi '^vary: accept-encoding' "$run/head" || die "$url${path[$w]}: no Vary"
    gzip -dc "$run/body.gz" | cmp -s - "$site/gz/page.html" || die "$url${path[$w]}: wrong bytes"
    side=iolite; [ "$url" = "$nginx_url" ] && side=nginx
    size[$side-$w]=$(stat -c %s "$run/body.gz")
  done
done

ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
hz=$(getconf CLK_TCK)
results=$run/results.tsv
: >"$results"
load_start=$(cut -d' ' -f1 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  for w in on-the-fly static; do
    sides=(iolite nginx)
    ((r % 2 == 0)) && sides=(nginx iolite)
    for side in "${sides[@]}"; do
      url=$iolite_url; [ "$side" = nginx ] && url=$nginx_url
      t0=$(ticks)
      rps=$(wrk -t 2 -c "$connections" -d "${duration}s" -H 'Accept-Encoding: gzip' \
        "$url${path[$w]}" 2>/dev/null | awk '/^Requests\/sec:/ {print $2}')
      t1=$(ticks)
      printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$w" "$side" "$rps" "$((t1 - t0))" >>"$results"
      echo "compress.sh: round $r $w $side $rps req/s" >&2
    done
  done
done
load_end=$(cut -d' ' -f1 /proc/loadavg)

report=$out/compress-$stamp.md
python3 - "$results" "$rounds" "$duration" "$connections" "$workers" "$load_start" \
  "$load_end" "$(git -C "$repo" rev-parse --short HEAD)" "$hz" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" "$(nproc)" "$(uname -r)" \
  "${size[iolite-on-the-fly]}" "${size[nginx-on-the-fly]}" "${size[iolite-static]}" \
  "${size[nginx-static]}" >"$report" <<'PY'
import statistics, sys, time
(path, rounds, duration, conns, workers, l0, l1, rev, hz, cpu, nproc, kernel,
 s_io_fly, s_ng_fly, s_io_st, s_ng_st) = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().splitlines()]
goal = {"on-the-fly": 3.0, "static": 1.0}
sizes = {("iolite", "on-the-fly"): s_io_fly, ("nginx", "on-the-fly"): s_ng_fly,
         ("iolite", "static"): s_io_st, ("nginx", "static"): s_ng_st}
def runs(w, s):
    return [(float(r[3]), int(r[4])) for r in rows if r[1] == w and r[2] == s and r[3]]
def cpu_us(xs):
    return statistics.median(
        c / int(hz) * 1e6 / (rps * float(duration)) for rps, c in xs if rps > 0)
print(f"### Measured ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, git {rev}, "
      f"{nproc}-CPU {cpu}, kernel {kernel}, load average {l0} before, {l1} after)\n")
print(f"`bench/compress.sh --rounds {rounds} --duration {duration}`, wrk 2 threads x "
      f"{conns} connections, {workers} workers each, `Accept-Encoding: gzip`:\n")
print("| workload | iolite req/s | nginx req/s | iolite/nginx | goal | bytes per answer "
      "iolite / nginx | CPU µs/req iolite / nginx | rounds iolite/nginx |")
print("|---|---:|---:|---:|---|---|---|---|")
for w in ["on-the-fly", "static"]:
    a, b = runs(w, "iolite"), runs(w, "nginx")
    ma = statistics.median(x for x, _ in a)
    mb = statistics.median(x for x, _ in b)
    ratio = ma / mb
    met = "met" if ratio >= goal[w] else "not met"
    per = ", ".join(f"{x / y:.2f}" for (x, _), (y, _) in zip(a, b))
    print(f"| {w} | {ma:,.0f} | {mb:,.0f} | {ratio:.2f} | >= {goal[w]}: {met} | "
          f"{sizes[('iolite', w)]} / {sizes[('nginx', w)]} | "
          f"{cpu_us(a):.0f} / {cpu_us(b):.0f} | {per} |")
PY
cat "$report"
