#!/bin/sh
# A 3-member etcd cluster on 127.0.0.1 for benchmarks and tests.
#
#   etcd-cluster.sh start DIR   start members m1..m3 with their data under
#                               DIR (created; must not hold a cluster yet),
#                               wait until every member is healthy and a
#                               leader is elected, then print the client
#                               endpoints "127.0.0.1:P1,127.0.0.1:P2,..."
#                               (also kept in DIR/endpoints)
#   etcd-cluster.sh stop DIR    stop every member by the PID recorded in
#                               DIR/pids (TERM, then KILL after 5 s), then
#                               delete the members' data
#
# Ports are picked free by the kernel (bind to port 0), so several clusters
# and tests run side by side; a start that loses a port race is retried.
# Members run with etcd's defaults (fsync on every commit, heartbeat 100 ms,
# election timeout 1 s): the durability that craftd is compared against.
# Environment: ETCD (default: etcd on PATH), ETCD_START_TIMEOUT (s, 30).
set -eu

ETCD=${ETCD:-etcd}
timeout_s=${ETCD_START_TIMEOUT:-30}

die() {
    echo "etcd-cluster.sh: $*" >&2
    exit 1
}

# Print n free TCP ports on 127.0.0.1, all held open together while they
# are chosen so that they differ.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Whether the member with client port $1 reports itself healthy, which in
# etcd 3.4 means it has a leader and can serve a linearizable read.
healthy() {
    python3 - "$1" <<'PY' 2>/dev/null
import json, sys, urllib.request
url = "http://127.0.0.1:%s/health" % sys.argv[1]
with urllib.request.urlopen(url, timeout=1) as r:
    sys.exit(0 if json.load(r).get("health") == "true" else 1)
PY
}

# Whether PID $1 is still the etcd started for directory $2 (guards
# against a PID reused by an unrelated process after the member exited).
is_member() {
    [ -r "/proc/$1/cmdline" ] &&
        tr "\0" " " <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "--data-dir $2/"
}

stop() {
    dir=$1
    [ -f "$dir/pids" ] || return 0
    for pid in $(cat "$dir/pids"); do
        if is_member "$pid" "$dir"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in $(cat "$dir/pids"); do
        i=0
        while is_member "$pid" "$dir" && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if is_member "$pid" "$dir"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$dir/pids" "$dir/endpoints" "$dir"/m1 "$dir"/m2 "$dir"/m3
}

# One attempt at starting the three members.  0 when all are healthy.
try_start() {
    dir=$1
    set -- $(free_ports 6)
    c1=$1 c2=$2 c3=$3 p1=$4 p2=$5 p3=$6
    cluster="m1=http://127.0.0.1:$p1,m2=http://127.0.0.1:$p2"
    cluster="$cluster,m3=http://127.0.0.1:$p3"
    : >"$dir/pids"
    for m in 1 2 3; do
        eval c=\$c$m p=\$p$m
        "$ETCD" --name "m$m" --data-dir "$dir/m$m/" \
            --listen-client-urls "http://127.0.0.1:$c" \
            --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" \
            --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "$cluster" \
            --initial-cluster-token "craft-bench-$$-$c1" \
            --initial-cluster-state new \
            --logger zap --log-outputs stderr \
            >"$dir/m$m.log" 2>&1 &
        echo $! >>"$dir/pids"
    done
    deadline=$(($(date +%s) + timeout_s))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        ok=0
        for c in $c1 $c2 $c3; do
            if healthy "$c"; then ok=$((ok + 1)); fi
        done
        if [ $ok -eq 3 ]; then
            echo "127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3" >"$dir/endpoints"
            return 0
        fi
        # A member that died (e.g. its port was taken meanwhile) fails
        # this attempt at once.
        for pid in $(cat "$dir/pids"); do
            is_member "$pid" "$dir" || return 1
        done
        sleep 0.1
    done
    return 1
}

start() {
    dir=$1
    command -v "$ETCD" >/dev/null 2>&1 || die "no etcd binary ($ETCD); apt-get install etcd-server"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ ! -e "$dir/pids" ] || die "$dir already holds a cluster (stop it first)"
    for attempt in 1 2 3; do
        if try_start "$dir"; then
            cat "$dir/endpoints"
            return 0
        fi
        echo "etcd-cluster.sh: attempt $attempt failed; last log lines:" >&2
        tail -n 3 "$dir"/m*.log >&2 || true
        stop "$dir"
    done
    die "could not start a 3-member etcd in $dir"
}

case "${1:-}" in
start) start "${2:?usage: etcd-cluster.sh start DIR}" ;;
stop) stop "${2:?usage: etcd-cluster.sh stop DIR}" ;;
*) die "usage: etcd-cluster.sh start|stop DIR" ;;
esac
