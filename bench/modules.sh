#!/usr/bin/env bash
# Process-module benchmark: the module data path against its own baselines,
# in one iolite, on loopback; or, with --against, the same workloads on two
# builds of iolite (A/B).
#
#   bench/modules.sh [--rounds N] [--duration S] [--warmup S] [--quick]
#                    [--connections N] [--workers N] [--in-flight N]
#                    [--check lua|light]
#                    [--rtt-iters N] [--no-rtt] [--no-build] [--out DIR]
#                    [--against DIR [--workloads LIST]]
#                    [--attack NAME[,NAME...]] [--slow]
#
# See bench/README.md ("Process modules"). In short: it builds iolite and the
# example modules (cargo build --release --workspace), starts ONE iolite on a
# free 127.0.0.1 port serving the bench corpus with these mounts
#
#   /hello       hello module                (transfer = "shared")
#   /blob        blob module, 1 MiB answers  (transfer = "shared")
#   /blob-copy   the same library            (transfer = "copy")
#   /echo        echo module                 (transfer = "shared")
#   /echo-copy   the same library            (transfer = "copy")
#
# and measures three pairs with wrk (2 threads, 64 keep-alive connections),
# each pair's two runs back to back, their order alternating by round:
#
#   (a) GET /hello/x               vs GET /f/1KiB.bin (static, same server)
#   (b) GET /blob?kib=1024         vs GET /blob-copy?kib=1024
#       POST 1 MiB to /echo        vs POST 1 MiB to /echo-copy
#
# then (c) `cargo bench --bench module_rtt`: an empty request's round trip
# server -> runner -> server against a bare unix-socket ping-pong between
# two processes (blocking, and with both ends polling before they block),
# in the same run. Every module is mounted with processes_max = 1 and
# in_flight = 64 (--in-flight). It prints a Markdown report (also saved as
# bench/out/modules-DATE.md) with the issue's targets:
# hello >= 0.75x static 1 KiB; zero-copy >= 3x copy mode; RTT <= 1.5x.
#
# --against DIR: DIR holds another build's iolite and its example module
# libraries (libhello.so, libblob.so, libecho.so), as `cargo build --release
# --workspace` leaves them in target/release; see bench/README.md "A/B
# against another build". Then TWO iolites run, the same config each but
# each loading its own build's libraries, and every workload above
# (hello, static-1KiB, blob, blob-copy, echo, echo-copy; --workloads picks
# some) is measured on both, A then B or B then A by round. The report
# compares the two sides' server CPU per request (iolite and its runners)
# and says, per workload, whether it is within 3%. (c) is skipped: the RTT
# bench builds only the current tree.
#
# --attack NAME[,NAME...]: a hostile module (a fixture of
# fixtures/modules, built with the workspace) is mounted beside the others,
# and only (a) is measured: hello and static 1 KiB, each round unloaded and
# then while each attack runs (bench/lib/attack.py asks for the attack's
# paths in a loop, one at a time). The report gives each one's p99 under
# each attack beside the unloaded run (goal: within 2x), what the
# attacker's requests got and how often its runner was replaced. Attacks
# (issue 14): sharer (pool shares on a link and the control socket),
# flooder (cache lookups, frames that do nothing), hoarder (stream parts
# for a client that does not read, unwritten pages), impostor (a pool
# under the server's id, descriptors on a link), hostile (F_SETOWN
# signals, memfd memory, descriptors parked in flight, a stderr flood),
# ctor-fork (a library constructor that reads and forks before the
# module's code: refused at its check), ctor-sleep (a constructor that
# never returns: refused when its check times out). One more is one line
# in attack_spec below.
#
# --slow (issue 15): the faulty fixture is mounted at /nap with
# processes_min = 1, processes_max = 4, in_flight = 4 and default lane
# settings, and only two things are measured: (d) a handler that sleeps
# 20 ms (GET /nap/nap?ms=20, a call to a database, say) with 16 = 4 x 4
# connections: goal >= 0.9 x 4 x 4 / 20 ms = 720 req/s; (e) the module's
# quick answer (GET /nap/x) with 8 connections, unloaded and then while 4
# more connections keep slow requests (GET /nap/nap?ms=200) going on the
# same module: goal, its p99 within 2x the unloaded p99 (a quick request
# does not wait behind a slow one).
#
# Every process it starts is stopped by pid when it exits, however it exits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
lib=$here/lib
# shellcheck source=bench/lib/ab.sh
. "$lib/ab.sh"

rounds=5 duration=5 warmup=1 connections=64 workers=2 check=lua
rtt_iters=5000 rtt=1 build=1 out=$here/out in_flight=64
attacks="" against="" slow=0 ab_workloads=hello,static-1KiB,blob,blob-copy,echo,echo-copy
argv=("$@")  # for the rerun command an A/B report prints

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --quick) rounds=1 duration=1 warmup=1 rtt_iters=1000; shift ;;
    --connections) connections=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --check) check=$2; shift 2 ;;
    --rtt-iters) rtt_iters=$2; shift 2 ;;
    --no-rtt) rtt=0; shift ;;
    --no-build) build=0; shift ;;
    --out) out=$2; shift 2 ;;
    --against) against=$2; shift 2 ;;
    --attack) attacks=$2; shift 2 ;;
    --slow) slow=1; shift ;;
    --workloads) ab_workloads=$2; workloads_given=1; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "modules.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
done

die() { echo "modules.sh: $*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$rounds" && [ "$rounds" -ge 1 ] || die "--rounds must be a positive integer"
is_uint "$duration" && [ "$duration" -ge 1 ] || die "--duration must be a whole number of seconds >= 1"
is_uint "$warmup" || die "--warmup must be a whole number of seconds"
is_uint "$connections" && [ "$connections" -ge 2 ] || die "--connections must be at least 2"
is_uint "$workers" && [ "$workers" -ge 1 ] || die "--workers must be a positive integer"
is_uint "$rtt_iters" && [ "$rtt_iters" -ge 100 ] || die "--rtt-iters must be at least 100"
is_uint "$in_flight" && [ "$in_flight" -ge 1 ] || die "--in-flight must be a positive integer"
case $check in lua|light) ;; *) die "--check must be lua or light" ;; esac
if [ -n "$against" ]; then
  [ -d "$against" ] || die "--against $against is not a directory"
  against=$(cd "$against" && pwd)
  for f in iolite libhello.so libblob.so libecho.so; do
    [ -e "$against/$f" ] || die "$against/$f is missing (--against takes another build's target/release)"
  done
  rtt=0 # the RTT bench builds only the current tree
  IFS=, read -r -a ab_list <<<"$ab_workloads"
  for w in "${ab_list[@]}"; do
    case $w in hello|static-1KiB|blob|blob-copy|echo|echo-copy) ;;
      *) die "unknown workload $w (hello,static-1KiB,blob,blob-copy,echo,echo-copy)" ;;
    esac
  done
elif [ -n "${workloads_given:-}" ]; then
  die "--workloads goes with --against"
fi

# An attack: "library prefix timeout paths...", the paths its attacker asks
# for in turn ("slow:" first: a client that never reads the answer).
attack_spec() { # NAME
  case $1 in
    sharer) echo "sharer /sharer 10s /sharer/link /sharer/control" ;;
    flooder) echo "flooder /flooder 2s /flooder/lookups /flooder/noop" ;;
    hoarder) echo "hoarder /hoarder 5s slow:/hoarder/parts /hoarder/hole" ;;
    impostor) echo "impostor /impostor 3s /impostor/reshare /impostor/fds" ;;
    hostile) echo "hostile /hostile 5s /hostile/setown /hostile/memfd /hostile/park /hostile/stderr" ;;
    ctor-fork) echo "ctor_fork /ctor-fork 5s /ctor-fork/x" ;;
    ctor-sleep) echo "ctor_sleep /ctor-sleep 5s /ctor-sleep/x" ;;
    *) return 1 ;;
  esac
}
# Keys after an attacking module's own: the fixtures that craft pools by
# hand need memfd_create, which the sandbox's seccomp filter refuses a
# module; without the filter their attacks reach the server's own bounds
# (as in tests/hostile_runner.rs).
attack_extra() { # NAME
  case $1 in
    sharer|hoarder|impostor) printf '[module.sandbox]\nseccomp = false\n' ;;
  esac
}
attack_list=()
if [ -n "$attacks" ]; then
  [ -z "$against" ] || die "--attack does not go with --against"
  IFS=, read -r -a attack_list <<<"$attacks"
  for a in "${attack_list[@]}"; do
    attack_spec "$a" >/dev/null ||
      die "unknown attack $a (sharer,flooder,hoarder,impostor,hostile,ctor-fork,ctor-sleep)"
  done
  rtt=0
fi

if [ "$slow" = 1 ]; then
  [ -z "$against" ] && [ -z "$attacks" ] || die "--slow goes alone (not with --against or --attack)"
  rtt=0
fi
slow_procs=4 slow_in_flight=4

# ------------------------------------------------------------------ tools
command -v python3 >/dev/null || die "python3 is needed"
if ! command -v wrk >/dev/null; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "modules.sh: installing wrk from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >&2
fi

bin=$repo/target/release
if [ "$build" = 1 ]; then
  echo "modules.sh: cargo build --release --workspace" >&2
  (cd "$repo" && cargo build --release --workspace >&2)
fi
for f in iolite libhello.so libblob.so libecho.so; do
  [ -e "$bin/$f" ] || die "$bin/$f is missing (cargo build --release --workspace)"
done
for a in "${attack_list[@]}"; do
  read -r alib _ <<<"$(attack_spec "$a")"
  [ -e "$bin/lib$alib.so" ] || die "$bin/lib$alib.so is missing (cargo build --release --workspace)"
done
if [ "$slow" = 1 ]; then
  [ -e "$bin/libfaulty.so" ] || die "$bin/libfaulty.so is missing (cargo build --release --workspace)"
fi

# ------------------------------------------------------------------ processes
started=()  # root pids of the servers, stopped by pid on exit
helper=""   # pid of the measurement running now, if any

stop_all() {
  local pid tree deadline
  if [ -n "${attacker:-}" ]; then
    kill -TERM "$attacker" 2>/dev/null || true
    wait "$attacker" 2>/dev/null || true
    attacker=""
  fi
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
    for p in $tree; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
  done
  started=()
}
trap 'stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ corpus, config
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
run=$out/modules-run-$stamp
mkdir -p "$run"
python3 "$lib/corpus.py" "$out"
corpus=$out/corpus

mib=$((1 << 20))
walks=$run/walks
mkdir -p "$walks"
walk() { # name path size
  printf '1 1\n%s %s\n1\n' "$2" "$3" >"$walks/$1.walk"
}
walk static-1KiB /f/1KiB.bin 1024
walk hello /hello/x 10
walk blob '/blob?kib=1024' "$mib"
walk blob-copy '/blob-copy?kib=1024' "$mib"
walk echo /echo "$mib"
walk echo-copy /echo-copy "$mib"
# The faulty module's answers ("ok pid N", "napped pid N") vary in length:
# 8 bytes is a floor (checked light).
walk nap20 '/nap/nap?ms=20' 8
walk quick /nap/x 8

# One runner process per module, taking all the requests the 64
# connections can have in flight: on 2 CPUs more processes only add wake-ups
# (each runner already serves every worker thread on a thread of its own).
module() { # libdir prefix library transfer
  cat <<EOF

[[module]]
prefix = "$2"
path = "$1/lib$3.so"
transfer = "$4"
processes_max = 1
in_flight = $in_flight
EOF
}
# A build's libraries are loaded by that build's binary only (their ABI may
# differ between builds): each side of an A/B run has its own config.
write_config() { # LIBDIR FILE
  {
    echo "root = \"$corpus\""
    module "$1" /hello hello shared
    module "$1" /blob blob shared
    module "$1" /blob-copy blob copy
    module "$1" /echo echo shared
    module "$1" /echo-copy echo copy
    for a in "${attack_list[@]}"; do
      read -r alib aprefix atimeout _ <<<"$(attack_spec "$a")"
      module "$1" "$aprefix" "$alib" shared
      echo "timeout = \"$atimeout\""
      attack_extra "$a"
    done
    if [ "$slow" = 1 ]; then
      printf '\n[[module]]\nprefix = "/nap"\npath = "%s/libfaulty.so"\n' "$1"
      printf 'processes_min = 1\nprocesses_max = %s\nin_flight = %s\n' "$slow_procs" "$slow_in_flight"
    fi
  } >"$2"
}
config=$run/iolite.toml
write_config "$bin" "$config"
if [ -n "$against" ]; then
  config_b=$run/baseline.toml
  write_config "$against" "$config_b"
fi

# ------------------------------------------------------------------ server
# Starts BIN with CONFIG; its output goes to $run/NAME.stdout and .stderr.
# Sets srv_pid, srv_url and srv_admin.
start_iolite() { # BIN CONFIG NAME
  local bin=$1 config=$2 name=$3 line="" deadline
  # Made first, so that the wait below never reads a file the redirection
  # of the background process has not created yet.
  : >"$run/$name.stdout"
  "$bin" serve --config "$config" --listen 127.0.0.1:0 --workers "$workers" \
    --admin 127.0.0.1:0 --cache-size 64M --access-log off \
    </dev/null >"$run/$name.stdout" 2>"$run/$name.stderr" &
  srv_pid=$!
  started+=("$srv_pid")
  deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(wc -l <"$run/$name.stdout")" -ge 2 ]; then
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
  srv_admin=$(sed -n 's/^admin on //p' "$run/$name.stdout")
  python3 "$lib/measure.py" wait-port "$host" "$port" 15 ||
    die "$bin announced $srv_url but nothing accepts there"
  python3 "$lib/measure.py" owner "$port" "$srv_pid" ||
    die "port $port is not served by $bin (pid $srv_pid)"
}

load_start=$(cut -d' ' -f1 /proc/loadavg)
start_iolite "$bin/iolite" "$config" iolite
iolite_pid=$srv_pid url=$srv_url admin=$srv_admin
echo "modules.sh: iolite on $url (pid $iolite_pid), admin $admin" >&2
if [ -n "$against" ]; then
  start_iolite "$against/iolite" "$config_b" baseline
  b_pid=$srv_pid b_url=$srv_url b_admin=$srv_admin
  echo "modules.sh: baseline ($against) on $b_url (pid $b_pid), admin $b_admin" >&2
fi

# Before any timing: every mount answers exactly what it should, and copy
# mode copies (the counter grows by the body bytes) while zero-copy does not.
# With STRICT 0 (the other build of an A/B run, which may count copies
# differently or not at all) a counter that does not match is a warning;
# the bytes must match on both sides.
verify_mounts() { # URL ADMIN STRICT
python3 - "$1" "$2" "$corpus" "$3" <<'PY'
import http.client, sys, urllib.parse
url, admin, corpus, strict = sys.argv[1:5]
strict = strict == "1"
u = urllib.parse.urlsplit(url)
a = urllib.parse.urlsplit(admin)
pattern = bytes(i % 251 for i in range(1 << 20))

def ask(method, path, body=None):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data

def copied():
    c = http.client.HTTPConnection(a.hostname, a.port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith("iolite_body_bytes_copied_total "):
            return int(line.split()[1])
    if strict:
        sys.exit("verify: no iolite_body_bytes_copied_total on /metrics")
    return None

def check(what, got, want):
    if got != want:
        sys.exit(f"verify: {what}: got {got!r:.80} want {want!r:.80}")

def warn_or_exit(msg):
    if strict:
        sys.exit(f"verify: {msg}")
    print(f"verify: {url}: warning: {msg}", file=sys.stderr)

def grew(before):
    after = copied()
    return None if before is None or after is None else after - before

with open(f"{corpus}/f/1KiB.bin", "rb") as f:
    check("static 1 KiB", ask("GET", "/f/1KiB.bin"), (200, f.read()))
check("hello", ask("GET", "/hello/x"), (200, b"Hello, x!\n"))
# Copy mode counts each request byte twice (out of the request pool, into
# the frame) and each answer byte once when decoded, again when gathered
# (all chunks after the first, 256 KiB each).
answer_copies = (1 << 20) + (1 << 20) - (256 << 10)
for prefix, per_request in (("/blob", 0), ("/blob-copy", answer_copies)):
    ask("GET", f"{prefix}?kib=1024")  # the first answer writes the buffer
    before = copied()
    check(prefix, ask("GET", f"{prefix}?kib=1024"), (200, pattern))
    n = grew(before)
    if n != per_request:
        warn_or_exit(f"{prefix} bytes copied: got {n} want {per_request}")
for prefix, per_request in (("/echo", 0), ("/echo-copy", (2 << 20) + answer_copies)):
    before = copied()
    check(prefix, ask("POST", prefix, pattern), (200, pattern))
    n = grew(before)
    # The body bytes that came with the head are copied into the request
    # pool in both modes (at most one 64 KiB read).
    if n is None or not per_request <= n <= per_request + (64 << 10):
        warn_or_exit(f"{prefix} copied {n} bytes, want {per_request} (+ up to 64 KiB)")
print(f"verify: {url}: every mount answers byte for byte; copy mode copies, "
      "zero-copy does not", file=sys.stderr)
PY
}
verify_mounts "$url" "$admin" 1
if [ -n "$against" ]; then verify_mounts "$b_url" "$b_admin" 0; fi

# ------------------------------------------------------------------ rounds
runs=$run/runs.jsonl
: >"$runs"
# pair: workload-label script walk / ...
# name:script:check. The 1 MiB pairs use wrk's light check: with `lua`,
# wrk copies every body into a Lua string, and that client-side copy (the
# same in both modes) would cap both sides of the comparison; their bytes
# were checked above, and measure.py still checks status and bytes read.
pairs=(
  "hello:walk:$check static-1KiB:walk:$check"
  "blob:walk:light blob-copy:walk:light"
  "echo:post:light echo-copy:post:light"
)
spec() { # workload -> name:script:check, as in the pairs above
  case $1 in
    hello|static-1KiB) echo "$1:walk:$check" ;;
    blob|blob-copy) echo "$1:walk:light" ;;
    echo|echo-copy) echo "$1:post:light" ;;
  esac
}
if [ "$slow" = 1 ]; then
  total=$((rounds * 3)) after="no RTT bench (--slow)"
elif [ -n "$attacks" ]; then
  total=$((rounds * 2 * (1 + ${#attack_list[@]}))) after="no RTT bench (--attack)"
elif [ -n "$against" ]; then
  total=$((rounds * ${#ab_list[@]} * 2)) after="no RTT bench (--against)"
else
  total=$((rounds * ${#pairs[@]} * 2)) after="then the RTT bench"
fi
echo "modules.sh: $total runs of ${duration}s (+${warmup}s warm-up) each," \
  "about $(((total * (duration + warmup + 1) + 59) / 60)) min, $after" >&2
# One measured run of a workload. The target (the label in the runs) is the
# workload's name on the one server, the side's label in an A/B run.
measure() { # name:script:check round [target url pid]
  local rc=0 name script chk
  IFS=: read -r name script chk <<<"$1"
  local target=${3:-$name} to=${4:-$url} pid=${5:-$iolite_pid}
  python3 "$lib/measure.py" run --url "$to" --pid "$pid" --target "$target" \
    --workload "$name" --walk "$walks/$name.walk" --script "$lib/$script.lua" \
    --threads 2 --connections "$connections" --duration "$duration" \
    --warmup "$warmup" --round "$2" --check "$chk" --out "$runs" &
  helper=$!
  wait "$helper" || rc=$?
  helper=""
  [ "$rc" = 0 ] || die "run $target/$name/r$2 failed (see above); no report"
}
if [ -n "$against" ]; then
  label_a=$(ab_label iolite "$bin/iolite")
  label_b=$(ab_label baseline "$against/iolite")
fi
attacker=""  # pid of the attack running now, if any
restarts() { # PREFIX: the module's runner restarts so far
  local n
  n=$(curl -s "$admin/metrics" | sed -n "s/^iolite_module_restarts_total{module=\"${1//\//\\/}\"} //p")
  echo "${n:-0}"
}
# Hello and static 1 KiB, unloaded, then under each attack in turn.
attack_round() { # ROUND
  local a w paths alib aprefix before
  for w in hello static-1KiB; do measure "$(spec "$w")" "$1" unloaded; done
  for a in "${attack_list[@]}"; do
    read -r alib aprefix _ paths <<<"$(attack_spec "$a")"
    before=$(restarts "$aprefix")
    # shellcheck disable=SC2086 # the paths are words
    python3 "$lib/attack.py" "$url" "$run/attack-$a-r$1.json" $paths &
    attacker=$!
    for w in hello static-1KiB; do measure "$(spec "$w")" "$1" "attack-$a"; done
    kill -TERM "$attacker" 2>/dev/null || true
    wait "$attacker" 2>/dev/null || true
    attacker=""
    echo $(($(cat "$run/attack-$a-restarts" 2>/dev/null || echo 0) + $(restarts "$aprefix") - before)) \
      >"$run/attack-$a-restarts"
  done
}
# (d) the 20 ms handler at 4 x 4 connections; (e) the quick answer alone,
# then beside 4 connections of 200 ms requests (a wrk of its own, stopped
# by pid).
slow_round() { # ROUND
  connections=$((slow_procs * slow_in_flight)) measure nap20:walk:light "$1"
  connections=8 measure quick:walk:light "$1" quick-unloaded
  wrk -t 1 -c 4 -d $((duration + warmup + 5))s --timeout 10s "$url/nap/nap?ms=200" \
    >"$run/slow-load-r$1.txt" 2>&1 &
  attacker=$!
  connections=8 measure quick:walk:light "$1" quick-beside-slow
  kill -TERM "$attacker" 2>/dev/null || true
  wait "$attacker" 2>/dev/null || true
  attacker=""
}
for ((r = 1; r <= rounds; r++)); do
  echo "modules.sh: round $r of $rounds" >&2
  if [ "$slow" = 1 ]; then
    slow_round "$r"
    continue
  fi
  if [ -n "$attacks" ]; then
    attack_round "$r"
    continue
  fi
  if [ -n "$against" ]; then
    # Each workload on both servers back to back, A first in odd rounds.
    for w in "${ab_list[@]}"; do
      if ((r % 2)); then
        measure "$(spec "$w")" "$r" "$label_a" "$url" "$iolite_pid"
        measure "$(spec "$w")" "$r" "$label_b" "$b_url" "$b_pid"
      else
        measure "$(spec "$w")" "$r" "$label_b" "$b_url" "$b_pid"
        measure "$(spec "$w")" "$r" "$label_a" "$url" "$iolite_pid"
      fi
    done
    continue
  fi
  for p in "${pairs[@]}"; do
    read -r a b <<<"$p"
    if ((r % 2)); then
      measure "$a" "$r"
      measure "$b" "$r"
    else
      measure "$b" "$r"
      measure "$a" "$r"
    fi
  done
done
load_end=$(cut -d' ' -f1 /proc/loadavg)
curl -s "$admin/metrics" >"$run/metrics.txt" 2>/dev/null || true
if [ -n "$against" ]; then
  curl -s "$b_admin/metrics" >"$run/baseline-metrics.txt" 2>/dev/null || true
  # Processes and memory of each side's tree (iolite and its runners) at the
  # end: the report shows that both sides' CPU covers the same processes.
  mem_a=$(python3 "$lib/measure.py" mem "$iolite_pid")
  mem_b=$(python3 "$lib/measure.py" mem "$b_pid")
fi
stop_all

# ------------------------------------------------------------------ RTT
rtt_line=""
if [ "$rtt" = 1 ]; then
  echo "modules.sh: cargo bench --bench module_rtt -- --rounds $rounds --iters $rtt_iters" >&2
  (cd "$repo" && cargo bench --bench module_rtt -- --rounds "$rounds" --iters "$rtt_iters") \
    >"$run/rtt.txt" 2>"$run/rtt.stderr" || {
    cat "$run/rtt.stderr" >&2
    die "the RTT bench failed"
  }
  rtt_line=$(grep '^RTT ' "$run/rtt.txt" || true)
  [ -n "$rtt_line" ] || die "no RTT line from the RTT bench (see $run/rtt.txt)"
fi

# ------------------------------------------------------------------ report
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | head -c1)
wrk_version=$( (wrk -v 2>&1 || true) | head -n 1 | awk '{print $1, $2}')
report=$out/modules-$stamp.md
ab_args=()
if [ -n "$against" ]; then
  rerun=$(ab_rerun bench/modules.sh "${argv[@]}")
  rev_a=$(ab_rev "$bin/iolite") rev_b=$(ab_rev "$against/iolite")
  ab_args=(--label-a "$label_a" --label-b "$label_b"
    --bin-a "${bin#"$repo"/}/iolite" --bin-b "$against/iolite"
    --version-a "git ${rev_a:-unknown}, sha256 $(ab_sha "$bin/iolite")"
    --version-b "git ${rev_b:-unknown}, sha256 $(ab_sha "$against/iolite")"
    --config-b "$config_b" --mem-a "$mem_a" --mem-b "$mem_b"
    --workloads "$ab_workloads" --rerun "$rerun")
fi
if [ "$slow" = 1 ]; then
  python3 "$lib/slow_report.py" "$runs" "git $rev${dirty:+ + local changes}" \
    "$rounds" "$duration" "$slow_procs" "$slow_in_flight" >"$report"
  cat "$report"
  echo "modules.sh: report saved as ${report#"$repo"/}; raw runs in ${runs#"$repo"/}" >&2
  exit 0
fi
if [ -n "$attacks" ]; then
  python3 "$lib/attack_report.py" "$runs" "$run" "git $rev${dirty:+ + local changes}" \
    "$rounds" "$duration" "${attack_list[@]}" >"$report"
  cat "$report"
  echo "modules.sh: report saved as ${report#"$repo"/}; raw runs in ${runs#"$repo"/}" >&2
  exit 0
fi
python3 "$lib/modules_report.py" --runs "$runs" --rtt "$rtt_line" \
  --version "git $rev${dirty:+ + local changes}" --wrk "$wrk_version" \
  --workers "$workers" --connections "$connections" --rounds "$rounds" \
  --duration "$duration" --warmup "$warmup" --check "$check" \
  --loadavg "$load_start/$load_end" --config "$config" "${ab_args[@]}" >"$report"
cat "$report"
echo "modules.sh: report saved as ${report#"$repo"/}; raw runs in ${runs#"$repo"/}" >&2
