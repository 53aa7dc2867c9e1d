#!/usr/bin/env bash
# examples/cluster/cluster.sh start 3     # then: examples/cluster/cluster.sh stop
#
# Starts an N-node iolite cluster on this machine, node i on loopback
# address 127.0.0.(i+1) (127.0.0.2, 127.0.0.3, ...): clients and admin on
# free ports of that address, gossip (UDP) and the peer listener (TCP) on
# port 7946, one generated cluster key. Waits until every node sees every other alive (each node's admin
# /metrics), then prints one line per node:
#
#   node NAME http://CLIENT-ADDR admin http://ADMIN-ADDR pid PID
#
# Usage:
#   cluster.sh start N [--root DIR] [--policy P] [--cache-size SIZE] [--state DIR]
#   cluster.sh stop [--state DIR]
#
#   --root DIR     the site every node serves (default: examples/site)
#   --policy P     lard-r (default), wrr, chash, chash-bl, or local (no
#                  dispatch: each node serves what it receives)
#   --cache-size SIZE  each node's unified cache ([cache] size; default
#                  the server's, 256M)
#   --state DIR    configurations, key, logs and the pid file
#                  (default: target/cluster)
#
# IOLITE=path/to/iolite picks the binary (default: target/release/iolite
# if built, else target/debug/iolite, built if missing). `stop` sends
# SIGTERM to the pids in the pid file (never by name) and waits for them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
shift || true
n=
root=$repo/examples/site
policy=lard-r
cache_size=
state=$repo/target/cluster
peer_port=7946
if [[ $cmd == start ]]; then
    n=${1:-}
    shift || true
fi
while [[ $# -gt 0 ]]; do
    case $1 in
        --root) root=$(cd "$2" && pwd); shift 2 ;;
        --policy) policy=$2; shift 2 ;;
        --cache-size) cache_size=$2; shift 2 ;;
        --state) mkdir -p "$2"; state=$(cd "$2" && pwd); shift 2 ;;
        *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
pids=$state/pids

# The body of GET http://$1$2 (bash's /dev/tcp: no curl needed).
http_get() {
    local host=${1%:*} port=${1##*:}
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
    sed '1,/^\r$/d' <&3
    exec 3<&-
}

stop() {
    [[ -f $pids ]] || { echo "cluster.sh: no cluster running from $state"; return 0; }
    local left=()
    while read -r pid; do
        # Only our own nodes: the pid must still be an iolite process.
        if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'iolite serve'; then
            kill -TERM "$pid" && left+=("$pid")
        fi
    done < "$pids"
    local deadline=$((SECONDS + 20))
    for pid in "${left[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS > deadline)); then
                echo "cluster.sh: pid $pid still running after 20 s; SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
    rm -f "$pids"
    echo "stopped ${#left[@]} node(s)"
}

start() {
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 250 ]] || { echo "usage: cluster.sh start N (1..250)" >&2; exit 2; }
    if [[ -f $pids ]]; then
        echo "cluster.sh: a cluster from $state is running; cluster.sh stop first" >&2
        exit 1
    fi
    local bin=${IOLITE:-}
    if [[ -z $bin ]]; then
        if [[ -x $repo/target/release/iolite ]]; then
            bin=$repo/target/release/iolite
        else
            bin=$repo/target/debug/iolite
            [[ -x $bin ]] || (cd "$repo" && cargo build --bin iolite >&2)
        fi
    fi
    mkdir -p "$state"
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$state/cluster.key")
    local seeds=() i
    for ((i = 1; i <= n; i++)); do
        seeds+=("\"127.0.0.$((i + 1)):$peer_port\"")
    done
    local seed_list
    seed_list=$(IFS=,; echo "${seeds[*]}")
    : > "$pids"
    local cache_toml=""
    if [[ -n $cache_size ]]; then
        cache_toml=$'\n[cache]\n'"size = \"$cache_size\""
    fi
    for ((i = 1; i <= n; i++)); do
        local ip=127.0.0.$((i + 1))
        cat > "$state/node$i.toml" <<TOML
listen = "$ip:0"
admin = "$ip:0"
root = "$root"
workers = 1

[log]
access = "off"
$cache_toml
[cluster]
name = "node$i"
peer = "$ip:$peer_port"
seeds = [$seed_list]
key_file = "cluster.key"
policy = "$policy"
TOML
        "$bin" check-config "$state/node$i.toml" > /dev/null
        "$bin" serve --config "$state/node$i.toml" > "$state/node$i.out" 2> "$state/node$i.log" &
        echo $! >> "$pids"
    done
    # Each node's addresses, from the first two lines it prints.
    local clients=() admins=() deadline=$((SECONDS + 30))
    for ((i = 1; i <= n; i++)); do
        while [[ $(wc -l < "$state/node$i.out") -lt 2 ]]; do
            if ((SECONDS > deadline)) || ! kill -0 "$(sed -n "${i}p" "$pids")" 2>/dev/null; then
                echo "cluster.sh: node$i did not start; its log:" >&2
                cat "$state/node$i.log" >&2
                stop >&2
                exit 1
            fi
            sleep 0.05
        done
        clients+=("$(sed -n 's#^listening on http://##p' "$state/node$i.out" | head -1)")
        admins+=("$(sed -n 's#^admin on http://##p' "$state/node$i.out")")
    done
    # Every node sees every other alive.
    for ((i = 1; i <= n; i++)); do
        until http_get "${admins[i - 1]}" /metrics 2>/dev/null \
                | grep -qx "iolite_cluster_members{state=\"alive\"} $n"; do
            if ((SECONDS > deadline)); then
                echo "cluster.sh: node$i does not see all $n nodes after 30 s; its log:" >&2
                cat "$state/node$i.log" >&2
                stop >&2
                exit 1
            fi
            sleep 0.1
        done
    done
    for ((i = 1; i <= n; i++)); do
        echo "node node$i http://${clients[i - 1]} admin http://${admins[i - 1]} pid $(sed -n "${i}p" "$pids")"
    done
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
