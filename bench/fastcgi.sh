#!/usr/bin/env bash
# FastCGI benchmark: PHP pages through iolite and through nginx, each in
# front of its own php-fpm pool with the same settings, on loopback.
#
#   bench/fastcgi.sh [--rounds N] [--duration S] [--connections N]
#                    [--children N] [--workers N] [--no-build] [--out DIR]
#
# Starts two php-fpm pools (pm = static, --children children each, default
# 4) on unix sockets, one nginx (--workers worker processes, fastcgi_pass
# to the first over an upstream keeping children/workers connections per
# worker) and one iolite (--workers workers, a [[fastcgi]] mount on the
# second with connections = children). One pool each: a kept connection
# holds a php-fpm child, so two servers on one pool would starve each
# other of children between runs. Then it measures with wrk
# (2 threads, --connections keep-alive connections, default 16) two pages:
#
#   hello   GET /php/hello.php         a few bytes
#   1MiB    GET /php/big.php?n=1048576 a 1 MiB answer
#
# Each round runs every page against both servers back to back, the order
# alternating by round; the report gives each side's median requests/s over
# the rounds and the ratio iolite/nginx, with the issue's goals (hello
# >= 1.0x, 1 MiB >= 1.1x). It prints a Markdown report (also saved as
# bench/out/fastcgi-DATE.md). Every process it starts is stopped by pid
# when it exits, however it exits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rounds=5 duration=5 connections=16 children=4 workers=2 build=1 out=$here/out

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --children) children=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "fastcgi.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done
die() { echo "fastcgi.sh: $*" >&2; exit 1; }
for v in "$rounds" "$duration" "$connections" "$children" "$workers"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "options take positive integers (got $v)"
done

fpm=/usr/sbin/php-fpm8.2
need=()
[ -x "$fpm" ] || need+=(php8.2-fpm)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "fastcgi.sh: installing ${need[*]} from Debian" >&2
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
run=$out/fastcgi-run-$stamp
mkdir -p "$run/site/php" "$run/nginx/logs" "$run/nginx/tmp"

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

cat >"$run/site/php/hello.php" <<'PHP'
<?php echo "hello from php\n";
PHP
cat >"$run/site/php/big.php" <<'PHP'
<?php $n = (int)$_GET["n"]; header("Content-Type: application/octet-stream");
$chunk = str_repeat("abcdefgh", 1024);
for ($i = 0; $i < intdiv($n, 8192); $i++) echo $chunk;
echo str_repeat("z", $n % 8192);
PHP

user_lines=""
[ "$(id -u)" -eq 0 ] && user_lines=$'user = root\ngroup = root'
start_pool() { # NAME
  cat >"$run/$1.conf" <<CONF
[global]
error_log = $run/$1.log
daemonize = no
[www]
$user_lines
listen = $run/$1.sock
listen.backlog = 1024
pm = static
pm.max_children = $children
pm.max_requests = 0
CONF
  "$fpm" -R -F -y "$run/$1.conf" >/dev/null 2>&1 &
  pids+=($!)
}
start_pool fpm-nginx
start_pool fpm-iolite
keep=$((children / workers)); [ "$keep" -ge 1 ] || keep=1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root root;"
cat >"$run/nginx/nginx.conf" <<CONF
$user_line
daemon off;
worker_processes $workers;
pid $run/nginx/nginx.pid;
error_log $run/nginx/logs/error.log warn;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    client_body_temp_path $run/nginx/tmp;
    fastcgi_temp_path $run/nginx/tmp;
    proxy_temp_path $run/nginx/tmp;
    uwsgi_temp_path $run/nginx/tmp;
    scgi_temp_path $run/nginx/tmp;
    keepalive_requests 1000000000;
    upstream php { server unix:$run/fpm-nginx.sock; keepalive $keep; }
    server {
        listen 127.0.0.1:$nginx_port;
        root $run/site;
        location ~ \.php\$ {
            fastcgi_pass php;
            fastcgi_keep_conn on;
            fastcgi_buffers 16 64k;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
        }
    }
}
CONF
nginx -c "$run/nginx/nginx.conf" -p "$run/nginx" &
pids+=($!)

cat >"$run/iolite.toml" <<CONF
[[fastcgi]]
prefix = "/php"
address = "unix:$run/fpm-iolite.sock"
connections = $children
CONF
: >"$run/iolite.stdout"
"$iolite" serve --listen 127.0.0.1:0 --admin none --workers "$workers" \
  --root "$run/site/php" --access-log off --config "$run/iolite.toml" \
  >"$run/iolite.stdout" 2>"$run/iolite.stderr" &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -q '^listening on' "$run/iolite.stdout"; do
  [ "$SECONDS" -lt "$deadline" ] || die "iolite did not start: $(head -c 500 "$run/iolite.stderr")"
  sleep 0.05
done
iolite_url=$(sed -n 's/^listening on //p' "$run/iolite.stdout" | head -1)
nginx_url=http://127.0.0.1:$nginx_port
for url in "$iolite_url" "$nginx_url"; do
  deadline=$((SECONDS + 30))
  until curl -sf -o /dev/null "$url/php/hello.php"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$url/php/hello.php does not answer"
    sleep 0.1
  done
  [ "$(curl -s "$url/php/big.php?n=1048576" | wc -c)" = 1048576 ] || die "$url: big.php is not 1 MiB"
done

declare -A path=([hello]=/php/hello.php [1MiB]='/php/big.php?n=1048576')
measure() { # URL PATH -> requests/s
  wrk -t 2 -c "$connections" -d "${duration}s" "$1$2" 2>/dev/null |
    awk '/^Requests\/sec:/ {print $2}'
}
results=$run/results.tsv
: >"$results"
load_start=$(cut -d' ' -f1 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  for w in hello 1MiB; do
    if ((r % 2)); then order=(iolite nginx); else order=(nginx iolite); fi
    for side in "${order[@]}"; do
      if [ "$side" = iolite ]; then url=$iolite_url; else url=$nginx_url; fi
      rps=$(measure "$url" "${path[$w]}")
      printf '%s\t%s\t%s\t%s\n' "$r" "$w" "$side" "$rps" >>"$results"
      echo "fastcgi.sh: round $r $w $side $rps req/s" >&2
    done
  done
done
load_end=$(cut -d' ' -f1 /proc/loadavg)

report=$out/fastcgi-$stamp.md
python3 - "$results" "$rounds" "$duration" "$connections" "$children" "$workers" \
  "$load_start" "$load_end" "$(git -C "$repo" rev-parse --short HEAD)" >"$report" <<'PY'
import statistics, sys
path, rounds, duration, conns, children, workers, l0, l1, rev = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().splitlines()]
goal = {"hello": 1.0, "1MiB": 1.1}
print(f"### FastCGI: iolite and nginx, each in front of a php-fpm pool of {children} children ("
      f"git {rev}; {rounds} rounds x {duration} s, wrk 2 threads x {conns} connections, "
      f"{workers} workers each; load average {l0} before, {l1} after)\n")
print("| page | iolite req/s | nginx req/s | iolite/nginx | goal | rounds (iolite/nginx) |")
print("|---|---|---|---|---|---|")
for w in ["hello", "1MiB"]:
    i = [float(r[3]) for r in rows if r[1] == w and r[2] == "iolite" and r[3]]
    n = [float(r[3]) for r in rows if r[1] == w and r[2] == "nginx" and r[3]]
    mi, mn = statistics.median(i), statistics.median(n)
    per = ", ".join(f"{a / b:.2f}" for a, b in zip(i, n))
    ok = "met" if mi / mn >= goal[w] else "not met"
    print(f"| {w} | {mi:,.0f} | {mn:,.0f} | {mi / mn:.2f} | >= {goal[w]} ({ok}) | {per} |")
PY
cat "$report"
