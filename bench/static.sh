#!/usr/bin/env bash
# Static-file benchmark: iolite against a tuned nginx from Debian, on loopback;
# or, with --against, against another build of iolite (A/B).
#
#   bench/static.sh [--rounds N] [--duration S] [--warmup S] [--quick]
#                   [--client-threads LIST] [--connections N] [--workers N]
#                   [--cache-size SIZE] [--check lua|light] [--workloads LIST]
#                   [--nice N] [--self-check | --against PATH] [--no-build]
#                   [--out DIR]
#
# See bench/README.md. In short: it installs nginx and wrk from Debian when
# they are missing, builds iolite (cargo build --release) unless IOLITE_BIN
# names another binary, writes a deterministic corpus under bench/out/corpus,
# starts both servers on free 127.0.0.1 ports with the same number of
# workers, drives them with wrk in interleaved rounds, and prints a Markdown
# report (also saved as bench/out/static-DATE.md).
#
# --against PATH: PATH is another iolite binary (say the previous main's
# target/release/iolite, see bench/README.md "A/B against another build").
# It takes nginx's place as side B, started with side A's command line; the
# report compares the two sides' server CPU per request and says, per
# workload, whether it is within 3% (|CPU ratio - 1| <= 0.03).
#
# Environment:
#   IOLITE_BIN         the binary to run as iolite (default target/release/iolite,
#                      built if IOLITE_BIN is unset); it is started as
#                      `$IOLITE_BIN serve --listen 127.0.0.1:0 --root CORPUS
#                      --workers N --admin none --cache-size SIZE --access-log off`
#                      and must print `listening on http://HOST:PORT` first.
#   IOLITE_EXTRA_ARGS  more arguments for that command line (word-split).
#
# Every process it starts is stopped by pid when it exits, however it exits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
lib=$here/lib
# shellcheck source=bench/lib/nginx.sh
. "$lib/nginx.sh"
# shellcheck source=bench/lib/ab.sh
. "$lib/ab.sh"

rounds=5 duration=5 warmup=1 client_threads=2,1 connections=64 workers=2
cache_size=64M check=lua workloads=100B,1KiB,16KiB,256KiB,4MiB,zipf
self_check=0 build=1 out=$here/out nice_level=0 against=""
argv=("$@")  # for the rerun command an A/B report prints
user_bin=${IOLITE_BIN:-}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --quick) rounds=1 duration=1 warmup=1; shift ;;
    --client-threads) client_threads=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --cache-size) cache_size=$2; shift 2 ;;
    --check) check=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --nice) nice_level=$2; shift 2 ;;
    --self-check) self_check=1; shift ;;
    --against) against=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "static.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done

die() { echo "static.sh: $*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$rounds" && [ "$rounds" -ge 1 ] || die "--rounds must be a positive integer"
is_uint "$duration" && [ "$duration" -ge 1 ] || die "--duration must be a whole number of seconds >= 1"
is_uint "$warmup" || die "--warmup must be a whole number of seconds"
is_uint "$connections" && [ "$connections" -ge 1 ] || die "--connections must be a positive integer"
is_uint "$workers" && [ "$workers" -ge 1 ] || die "--workers must be a positive integer"
[[ $client_threads =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--client-threads takes a list like 2,1"
case $check in lua|light) ;; *) die "--check must be lua or light" ;; esac
[[ $nice_level =~ ^-?[0-9]+$ ]] && [ "$nice_level" -ge -20 ] && [ "$nice_level" -le 19 ] ||
  die "--nice takes a niceness from -20 to 19"
cache_bytes=$(python3 - "$cache_size" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+)([KMG]?)i?B?", sys.argv[1], re.I)
if not m:
    sys.exit(1)
print(int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()])
PY
) || die "--cache-size takes a size like 64M"
IFS=, read -r -a threads_list <<<"$client_threads"
IFS=, read -r -a workload_list <<<"$workloads"
for w in "${workload_list[@]}"; do
  case $w in 100B|1KiB|16KiB|256KiB|4MiB|zipf) ;; *) die "unknown workload $w (100B,1KiB,16KiB,256KiB,4MiB,zipf)" ;; esac
done
for t in "${threads_list[@]}"; do
  [ "$t" -le "$connections" ] || die "wrk needs at least as many connections as threads"
done
if [ -n "$against" ]; then
  [ "$self_check" = 0 ] || die "--against and --self-check exclude each other"
  [ -f "$against" ] && [ -x "$against" ] || die "--against $against is not an executable"
  against=$(cd "$(dirname "$against")" && pwd)/$(basename "$against")
fi

# ------------------------------------------------------------------ tools
need_apt=()
command -v python3 >/dev/null || die "python3 is needed"
if [ -z "$against" ]; then
  command -v nginx >/dev/null || need_apt+=(nginx-light)
fi
command -v wrk >/dev/null || need_apt+=(wrk)
if [ "${#need_apt[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "static.sh: installing ${need_apt[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >&2
fi

if [ "$self_check" = 1 ]; then
  IOLITE_BIN=$lib/nginx-as-iolite
  label_a="nginx-A"
  label_b="nginx-B"
elif [ -z "${IOLITE_BIN:-}" ]; then
  IOLITE_BIN=$repo/target/release/iolite
  if [ "$build" = 1 ]; then
    echo "static.sh: cargo build --release (iolite)" >&2
    (cd "$repo" && cargo build --release --bin iolite >&2)
  fi
  label_a="iolite"
  label_b="nginx"
else
  label_a="iolite"
  label_b="nginx"
fi
[ -x "$IOLITE_BIN" ] || die "IOLITE_BIN=$IOLITE_BIN is not an executable"
if [ -n "$against" ]; then
  label_a=$(ab_label iolite "$IOLITE_BIN")
  label_b=$(ab_label baseline "$against")
fi

# Servers and wrk inherit this shell's niceness: a negative one (root only)
# keeps other work on a shared machine from taking their CPU mid-run.
if [ "$nice_level" != 0 ]; then
  python3 -c 'import os, sys; os.setpriority(os.PRIO_PROCESS, int(sys.argv[1]), int(sys.argv[2]))' \
    "$$" "$nice_level" || die "cannot set niceness $nice_level (negative needs root)"
fi

# ------------------------------------------------------------------ processes
started=()  # root pids of the servers, stopped by pid on exit
helper=""   # pid of the measurement running now, if any

stop_all() {
  local pid tree deadline
  if [ -n "$helper" ]; then
    kill -TERM "$helper" 2>/dev/null || true # it stops its wrk, see measure.py
    wait "$helper" 2>/dev/null || true
    helper=""
  fi
  for pid in "${started[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    tree=$(python3 "$lib/measure.py" tree "$pid" 2>/dev/null || echo "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    # Whatever of that tree is still there after 10 s is killed, by pid.
    for p in $tree; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
  done
  started=()
}
trap 'stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ corpus
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run=$out/run-$stamp
mkdir -p "$run"
python3 "$lib/corpus.py" "$out"
corpus=$out/corpus

# ------------------------------------------------------------------ servers
start_nginx() {
  local port
  port=$(python3 "$lib/measure.py" freeport)
  nginx_write_conf "$run/nginx" "127.0.0.1:$port" "$corpus" "$workers"
  nginx_run "$run/nginx" </dev/null >"$run/nginx/stdout" 2>&1 &
  nginx_pid=$!
  started+=("$nginx_pid")
  python3 "$lib/measure.py" wait-port 127.0.0.1 "$port" 15 ||
    die "nginx did not start; see $run/nginx/logs/error.log"
  kill -0 "$nginx_pid" 2>/dev/null || die "nginx exited; see $run/nginx/logs/error.log"
  python3 "$lib/measure.py" owner "$port" "$nginx_pid" || die "port $port is not nginx's"
  nginx_url=http://127.0.0.1:$port
}

# Starts BIN with iolite's command line; its output goes to $run/NAME.stdout
# and .stderr. Sets srv_pid and srv_url.
start_iolite() { # BIN NAME
  local bin=$1 name=$2 line="" deadline
  # Made first, so that the wait below never reads a file the redirection
  # of the background process has not created yet.
  : >"$run/$name.stdout"
  # shellcheck disable=SC2086
  NGINX_STANDIN_DIR=$run/nginx-as-$name \
    "$bin" serve --listen 127.0.0.1:0 --root "$corpus" --workers "$workers" \
    --admin none --cache-size "$cache_size" --access-log off ${IOLITE_EXTRA_ARGS:-} \
    </dev/null >"$run/$name.stdout" 2>"$run/$name.stderr" &
  srv_pid=$!
  started+=("$srv_pid")
  deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    # wc -l counts newlines: 1 means the first line is complete.
    if [ "$(wc -l <"$run/$name.stdout")" -ge 1 ]; then
      line=$(head -n 1 "$run/$name.stdout")
      break
    fi
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ $line =~ ^listening\ on\ http://(127\.[0-9.]+):([0-9]+)$ ]] || {
    echo "--- $run/$name.stdout"; head -c 2000 "$run/$name.stdout"
    echo "--- $run/$name.stderr"; head -c 2000 "$run/$name.stderr"
    die "$bin did not print 'listening on http://127.0.0.1:PORT' (got: '${line}')"
  } >&2
  local host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  srv_url=http://$host:$port
  python3 "$lib/measure.py" wait-port "$host" "$port" 15 ||
    die "$bin announced $srv_url but nothing accepts there"
  kill -0 "$srv_pid" 2>/dev/null || die "$bin exited; see $run/$name.stderr"
  python3 "$lib/measure.py" owner "$port" "$srv_pid" ||
    die "port $port is not served by $bin (pid $srv_pid)"
}

load_start=$(cut -d' ' -f1 /proc/loadavg)
# Side B: nginx, or in A/B mode the other iolite build.
if [ -n "$against" ]; then
  start_iolite "$against" baseline
  b_pid=$srv_pid b_url=$srv_url
else
  start_nginx
  b_pid=$nginx_pid b_url=$nginx_url
fi
start_iolite "$IOLITE_BIN" iolite
iolite_pid=$srv_pid iolite_url=$srv_url
echo "static.sh: $label_a on $iolite_url (pid $iolite_pid), $label_b on $b_url (pid $b_pid)" >&2

# Before any timing: both must serve every file of every walk byte for byte.
walks=()
for w in "${workload_list[@]}"; do walks+=("$out/walks/$w.walk"); done
python3 "$lib/measure.py" verify "$iolite_url" "$corpus" "${walks[@]}"
python3 "$lib/measure.py" verify "$b_url" "$corpus" "${walks[@]}"

# ------------------------------------------------------------------ rounds
runs=$run/runs.jsonl
: >"$runs"
total=$((rounds * ${#threads_list[@]} * ${#workload_list[@]} * 2))
echo "static.sh: $total runs of ${duration}s (+${warmup}s warm-up) each," \
  "about $(((total * (duration + warmup + 1) + 59) / 60)) min" >&2
measure() { # target-label url pid workload threads round
  local rss=() rc=0
  if [ "$4" = zipf ]; then rss=(--rss); fi
  # In the background and waited for, so that a signal to this script is
  # handled at once (bash runs traps only between foreground commands).
  python3 "$lib/measure.py" run --url "$2" --pid "$3" --target "$1" \
    --workload "$4" --walk "$out/walks/$4.walk" --script "$lib/walk.lua" \
    --threads "$5" --connections "$connections" --duration "$duration" \
    --warmup "$warmup" --round "$6" --check "$check" "${rss[@]}" --out "$runs" &
  helper=$!
  wait "$helper" || rc=$?
  helper=""
  [ "$rc" = 0 ] || die "run $1/$4/t$5/r$6 failed (see above); no report"
}
for ((r = 1; r <= rounds; r++)); do
  echo "static.sh: round $r of $rounds" >&2
  for t in "${threads_list[@]}"; do
    for w in "${workload_list[@]}"; do
      if ((r % 2)); then
        measure "$label_a" "$iolite_url" "$iolite_pid" "$w" "$t" "$r"
        measure "$label_b" "$b_url" "$b_pid" "$w" "$t" "$r"
      else
        measure "$label_b" "$b_url" "$b_pid" "$w" "$t" "$r"
        measure "$label_a" "$iolite_url" "$iolite_pid" "$w" "$t" "$r"
      fi
    done
  done
done

# ------------------------------------------------------------------ report
load_end=$(cut -d' ' -f1 /proc/loadavg)
mem_a=$(python3 "$lib/measure.py" mem "$iolite_pid")
mem_b=$(python3 "$lib/measure.py" mem "$b_pid")
stop_all

if [ "$self_check" = 1 ]; then
  version_a="the same nginx through bench/lib/nginx-as-iolite"
  cmd_a="bench/lib/nginx-as-iolite serve --workers $workers"
else
  rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | head -c1)
  version_a="git $rev${dirty:+ + local changes}"
  cmd_a="${IOLITE_BIN#"$repo"/} serve --workers $workers --cache-size $cache_size --admin none --access-log off ${IOLITE_EXTRA_ARGS:-}"
  cmd_a=${cmd_a% }
fi
cmd_b="" rerun=""
if [ -n "$against" ]; then
  rev_a=$(ab_rev "$IOLITE_BIN") rev_b=$(ab_rev "$against")
  version_a="git ${rev_a:-unknown}, sha256 $(ab_sha "$IOLITE_BIN")"
  version_b="git ${rev_b:-unknown}, sha256 $(ab_sha "$against")"
  cmd_b="$against serve --workers $workers --cache-size $cache_size --admin none --access-log off ${IOLITE_EXTRA_ARGS:-}"
  cmd_b=${cmd_b% }
  rerun=$(ab_rerun bench/static.sh "${argv[@]}")
  if [ -n "${IOLITE_EXTRA_ARGS:-}" ]; then rerun="IOLITE_EXTRA_ARGS=$(printf '%q' "$IOLITE_EXTRA_ARGS") $rerun"; fi
  if [ -n "$user_bin" ]; then rerun="IOLITE_BIN=$(printf '%q' "$user_bin") $rerun"; fi
else
  nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
  version_b="$nginx_version (Debian)"
fi
wrk_version=$( (wrk -v 2>&1 || true) | head -n 1 | awk '{print $1, $2}')

label_a=$label_a label_b=$label_b self_check=$self_check cmd_a=$cmd_a \
  against=$against cmd_b=$cmd_b rerun=$rerun \
  version_a=$version_a version_b=$version_b wrk_version=$wrk_version \
  workers=$workers connections=$connections rounds=$rounds duration=$duration \
  warmup=$warmup check=$check client_threads=$client_threads nice=$nice_level \
  cache_size=$cache_size cache_bytes=$cache_bytes manifest=$out/manifest.json \
  load_start=$load_start load_end=$load_end mem_a=$mem_a mem_b=$mem_b python3 - "$run/meta.json" <<'PY'
import json, os, sys
e = os.environ
meta = {k: e[k] for k in ("label_a", "label_b", "cmd_a", "version_a",
                          "version_b", "wrk_version", "check", "cache_size")}
meta.update({k: int(e[k]) for k in ("workers", "connections", "rounds",
                                    "duration", "warmup", "cache_bytes",
                                    "nice")})
meta["self_check"] = e["self_check"] == "1"
if e["against"]:
    meta.update({k: e[k] for k in ("against", "cmd_b", "rerun")})
meta["loadavg"] = [e["load_start"], e["load_end"]]
meta["client_threads"] = [int(t) for t in e["client_threads"].split(",")]
with open(e["manifest"]) as f:
    meta["corpus"] = json.load(f)
meta["memory"] = {"a": json.loads(e["mem_a"]), "b": json.loads(e["mem_b"])}
with open(sys.argv[1], "w") as f:
    json.dump(meta, f, indent=1)
PY

report=$out/static-$stamp.md
python3 "$lib/report.py" --runs "$runs" --meta "$run/meta.json" >"$report"
cat "$report"
echo "static.sh: report saved as ${report#"$repo"/}; raw runs in ${runs#"$repo"/}" >&2
