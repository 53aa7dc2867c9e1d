#!/usr/bin/env bash
# CGI benchmark: the same programs through iolite (its own CGI handler),
# through nginx + fcgiwrap, and started bare (the floor), on loopback.
#
#   bench/cgi.sh [--rounds N] [--duration S] [--connections N]
#                [--processes N] [--workers N] [--no-build] [--out DIR]
#
# Starts one iolite (--workers workers; [[cgi]] mounts with max_processes
# = --processes, default 8), one nginx (--workers worker processes)
# passing to one fcgiwrap with --processes preforked children, one Apache
# (mpm_event, mod_cgid; its programs run as www-data, Apache refusing
# root), and measures with wrk (2 threads, --connections keep-alive
# connections, default 8, as many as processes):
#
#   hello-sh  GET /cgi-bin/hello.sh   a shell script, a few bytes
#   hello-c   GET /cgi-bin/hello      a compiled program, a few bytes
#   16MiB     GET /cgi-bin/big.sh     16 MiB of output
#   gitweb    GET /gitweb/            gitweb's project list (Perl)
#
# The floor (hello-sh and hello-c): bench/lib/cgi_floor.c starts the same
# program with posix_spawn from --connections threads, reads its output
# to the end and waits for it, in a loop, for the same duration.
#
# Each round runs every workload against every side back to back, the
# order alternating by round; the report gives each side's median over the
# rounds, the ratios with the issue's goals (hello >= 0.85x the floor and
# >= 1.1x nginx + fcgiwrap; 16 MiB >= 1.5x; gitweb >= 1.1x) and the whole
# machine's CPU time per request (server, programs and wrk; the same
# client for every server). Apache is reported beside, without a goal.
# The Markdown report is
# printed and saved as bench/out/cgi-DATE.md. Every process it starts is
# stopped by pid (fcgiwrap by its process group) however it exits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
rounds=5 duration=5 connections=8 processes=8 workers=2 build=1 out=$here/out

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --processes) processes=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "cgi.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done
die() { echo "cgi.sh: $*" >&2; exit 1; }
for v in "$rounds" "$duration" "$connections" "$processes" "$workers"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "options take positive integers (got $v)"
done

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v fcgiwrap >/dev/null || need+=(fcgiwrap)
command -v wrk >/dev/null || need+=(wrk)
command -v cc >/dev/null || need+=(gcc)
[ -x /usr/sbin/apache2 ] && [ -f /usr/lib/apache2/modules/mod_cgid.so ] || need+=(apache2)
[ -x /usr/share/gitweb/gitweb.cgi ] && perl -MCGI -e1 2>/dev/null || need+=(gitweb)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "cgi.sh: installing ${need[*]} from Debian" >&2
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
run=$out/cgi-run-$stamp
mkdir -p "$run/cgi-bin" "$run/site" "$run/repos" "$run/tmp" "$run/nginx/logs" "$run/nginx/tmp" \
  "$run/apache"

pids=() groups=()
stop_all() {
  local pid
  for pid in "${groups[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" "${groups[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=() groups=()
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The programs, the same files for every side.
cc -O2 -o "$run/cgi-bin/hello" "$here/lib/cgi_hello.c"
cc -O2 -Wall -pthread -o "$run/cgi_floor" "$here/lib/cgi_floor.c"
cat >"$run/cgi-bin/hello.sh" <<'SH'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nhello from sh\n'
SH
cat >"$run/cgi-bin/big.sh" <<'SH'
#!/bin/sh
printf 'Content-Type: application/octet-stream\r\n\r\n'
exec head -c 16777216 /dev/zero
SH
chmod 755 "$run/cgi-bin/hello.sh" "$run/cgi-bin/big.sh"
# A repository with 50 commits for gitweb.
git init -q --bare -b main "$run/repos/project.git"
echo "the benchmark's project" >"$run/repos/project.git/description"
for i in $(seq 1 50); do
  msg="commit $i"
  printf 'commit refs/heads/main\ncommitter B <b@example.com> %d +0000\ndata %d\n%s\n' \
    $((1700000000 + i)) ${#msg} "$msg"
  printf 'M 644 inline f%d.txt\ndata %d\n%s\n' $((i % 5)) ${#msg} "$msg"
done | git -C "$run/repos/project.git" fast-import --quiet
cat >"$run/gitweb.conf" <<CONF
our \$projectroot = "$run/repos";
our \$git_temp = "$run/tmp";
CONF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx + fcgiwrap.
setsid fcgiwrap -c "$processes" -s "unix:$run/fcgiwrap.sock" >/dev/null 2>&1 &
groups+=($!)
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
    server {
        listen 127.0.0.1:$nginx_port;
        root $run;
        location /cgi-bin/ {
            fastcgi_pass unix:$run/fcgiwrap.sock;
            fastcgi_buffers 16 64k;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
        }
        location /gitweb/ {
            fastcgi_pass unix:$run/fcgiwrap.sock;
            fastcgi_buffers 16 64k;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME /usr/share/gitweb/gitweb.cgi;
            fastcgi_param SCRIPT_NAME /gitweb/;
            fastcgi_param GITWEB_CONFIG $run/gitweb.conf;
        }
    }
}
CONF
nginx -c "$run/nginx/nginx.conf" -p "$run/nginx" &
pids+=($!)

# Apache with mod_cgid, in the foreground; as root it runs its programs
# as www-data (git would call the root-owned repository dubious: allowed).
apache_port=$(free_port)
mods=/usr/lib/apache2/modules
cat >"$run/apache/apache.conf" <<CONF
ServerRoot $run/apache
DefaultRuntimeDir $run/apache
PidFile $run/apache/apache.pid
ServerName localhost
Listen 127.0.0.1:$apache_port
ErrorLog $run/apache/error.log
LogLevel warn
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule alias_module $mods/mod_alias.so
LoadModule env_module $mods/mod_env.so
LoadModule cgid_module $mods/mod_cgid.so
User www-data
Group www-data
ScriptSock $run/apache/cgid.sock
KeepAlive On
MaxKeepAliveRequests 0
StartServers $workers
<Directory />
    Require all granted
</Directory>
ScriptAlias /cgi-bin/ $run/cgi-bin/
ScriptAlias /gitweb $run/gitweb.cgi
SetEnv GITWEB_CONFIG $run/gitweb.conf
SetEnv GIT_CONFIG_PARAMETERS "'safe.directory'='*'"
CONF
ln -s /usr/share/gitweb/gitweb.cgi "$run/gitweb.cgi"
chmod 755 "$run"
/usr/sbin/apache2 -f "$run/apache/apache.conf" -DFOREGROUND &
pids+=($!)

# iolite.
cat >"$run/iolite.toml" <<CONF
[[cgi]]
prefix = "/cgi-bin"
dir = "$run/cgi-bin"
max_processes = $processes
[[cgi]]
prefix = "/gitweb"
program = "/usr/share/gitweb/gitweb.cgi"
max_processes = $processes
env = { GITWEB_CONFIG = "$run/gitweb.conf" }
CONF
"$iolite" serve --listen 127.0.0.1:0 --admin none --workers "$workers" \
  --root "$run/site" --access-log off --config "$run/iolite.toml" \
  >"$run/iolite.stdout" 2>"$run/iolite.stderr" &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -q '^listening on' "$run/iolite.stdout"; do
  [ "$SECONDS" -lt "$deadline" ] || die "iolite did not start: $(head -c 500 "$run/iolite.stderr")"
  sleep 0.05
done
iolite_url=$(sed -n 's/^listening on //p' "$run/iolite.stdout" | head -1)
nginx_url=http://127.0.0.1:$nginx_port
apache_url=http://127.0.0.1:$apache_port

declare -A path=([hello-sh]=/cgi-bin/hello.sh [hello-c]=/cgi-bin/hello
                 [16MiB]=/cgi-bin/big.sh [gitweb]=/gitweb/)
for url in "$iolite_url" "$nginx_url" "$apache_url"; do
  deadline=$((SECONDS + 30))
  until curl -sf -o /dev/null "$url/cgi-bin/hello"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$url/cgi-bin/hello does not answer"
    sleep 0.1
  done
  [ "$(curl -s "$url/cgi-bin/big.sh" | wc -c)" = 16777216 ] || die "$url: big.sh is not 16 MiB"
  curl -s "$url/gitweb/" | grep -q project.git || die "$url: gitweb lists no project"
done

# Busy CPU ticks of the whole machine (user, nice, system, irq, softirq).
ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
hz=$(getconf CLK_TCK)
measure() { # SIDE WORKLOAD -> "req/s cpu-ticks"
  local t0 t1 rps
  t0=$(ticks)
  case $1 in
    floor)
      rps=$("$run/cgi_floor" "$connections" "$duration" "$run/cgi-bin/${path[$2]#/cgi-bin/}") ;;
    iolite|nginx|apache)
      local url=$iolite_url
      [ "$1" = nginx ] && url=$nginx_url
      [ "$1" = apache ] && url=$apache_url
      rps=$(wrk -t 2 -c "$connections" -d "${duration}s" "$url${path[$2]}" 2>/dev/null |
        awk '/^Requests\/sec:/ {print $2}') ;;
  esac
  t1=$(ticks)
  echo "$rps $((t1 - t0))"
}
results=$run/results.tsv
: >"$results"
load_start=$(cut -d' ' -f1 /proc/loadavg)
for ((r = 1; r <= rounds; r++)); do
  for w in hello-sh hello-c 16MiB gitweb; do
    sides=(iolite nginx apache)
    case $w in hello-*) sides+=(floor) ;; esac
    if ((r % 2 == 0)); then
      for ((i = 0, j = ${#sides[@]} - 1; i < j; i++, j--)); do
        s=${sides[i]}; sides[i]=${sides[j]}; sides[j]=$s
      done
    fi
    for side in "${sides[@]}"; do
      read -r rps cpu < <(measure "$side" "$w")
      printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$w" "$side" "$rps" "$cpu" >>"$results"
      echo "cgi.sh: round $r $w $side $rps req/s" >&2
    done
  done
done
load_end=$(cut -d' ' -f1 /proc/loadavg)

report=$out/cgi-$stamp.md
python3 - "$results" "$rounds" "$duration" "$connections" "$processes" "$workers" \
  "$load_start" "$load_end" "$(git -C "$repo" rev-parse --short HEAD)" "$hz" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" "$(nproc)" \
  "$(uname -r)" >"$report" <<'PY'
import statistics, sys, time
(path, rounds, duration, conns, procs, workers, l0, l1, rev, hz, cpu, nproc,
 kernel) = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().splitlines()]
goal_nginx = {"hello-sh": 1.1, "hello-c": 1.1, "16MiB": 1.5, "gitweb": 1.1}
goal_floor = {"hello-sh": 0.85, "hello-c": 0.85}
def side(w, s):
    return [(float(r[3]), int(r[4])) for r in rows if r[1] == w and r[2] == s and r[3]]
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def cpu_us(xs):
    # Busy CPU of the whole machine per request, in µs.
    return med([c / int(hz) * 1e6 / (rps * int(duration)) for rps, c in xs if rps])
print(f"### CGI: iolite, nginx + fcgiwrap, Apache mod_cgid and the bare floor ({nproc}-core {cpu}, "
      f"Linux {kernel}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, git {rev}; "
      f"{rounds} rounds x {duration} s, wrk 2 threads x {conns} connections, "
      f"{procs} processes, {workers} workers each; load average {l0} before, {l1} after)\n")
print("| workload | iolite req/s | nginx+fcgiwrap req/s | Apache mod_cgid req/s | floor runs/s "
      "| iolite/nginx | goal | iolite/floor | goal | iolite/Apache "
      "| CPU µs/req iolite / nginx / Apache / floor | rounds iolite/nginx |")
print("|---|---:|---:|---:|---:|---:|---|---:|---|---:|---|---|")
for w in ["hello-sh", "hello-c", "16MiB", "gitweb"]:
    i, n, a, f = side(w, "iolite"), side(w, "nginx"), side(w, "apache"), side(w, "floor")
    mi, mn, ma = med([x for x, _ in i]), med([x for x, _ in n]), med([x for x, _ in a])
    mf = med([x for x, _ in f])
    per = ", ".join(f"{x[0] / y[0]:.2f}" for x, y in zip(i, n))
    gn = goal_nginx[w]
    ok_n = "met" if mi / mn >= gn else "not met"
    if f:
        gf = goal_floor[w]
        ok_f = "met" if mi / mf >= gf else "not met"
        floor = (f"{mf:,.0f}", f"{mi / mf:.2f}", f">= {gf} ({ok_f})", f"{cpu_us(f):.0f}")
    else:
        floor = ("–", "–", "–", "–")
    print(f"| {w} | {mi:,.0f} | {mn:,.0f} | {ma:,.0f} | {floor[0]} | {mi / mn:.2f} | "
          f">= {gn} ({ok_n}) | {floor[1]} | {floor[2]} | {mi / ma:.2f} | "
          f"{cpu_us(i):.0f} / {cpu_us(n):.0f} / {cpu_us(a):.0f} / {floor[3]} | {per} |")
PY
cat "$report"
