#!/bin/sh
# Measure bench/kv's peers on this machine, with the same tools and
# parameters bench/kv uses for craftd:
#   - the raw fdatasync latency of the disk (fsync-p50);
#   - redis-server --appendonly yes --appendfsync always: SET and GET at
#     c=1, c=50 and c=50 -P 16, with redis-benchmark and with craft-loadgen;
#   - a 3-member etcd (if installed): puts at c=1 and c=50, linearizable and
#     serializable range reads at c=50, with craft-loadgen.
# Prints one table row per measurement:
#   peer tool test ops_per_s p50_us p99_us
# and, before it, every raw craft-loadgen / redis-benchmark line (prefixed
# with "#").  Data lives in a temporary directory under $TMPDIR (the disk
# measured), removed at the end; every server is stopped by PID.
# Usage: peers.sh [SCALE]   SCALE multiplies the request counts (default 1).
# Environment: CRAFT_LOADGEN (default: build/bin/craft-loadgen of this tree).
set -eu

scale=${1:-1}
here=$(cd "$(dirname "$0")" && pwd)
lg=${CRAFT_LOADGEN:-$here/../../build/bin/craft-loadgen}
[ -x "$lg" ] || { echo "peers.sh: no $lg (make build first)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/craft-peers.XXXXXX")
cleanup() {
    "$here/redis-server.sh" stop "$tmp/redis" || true
    "$here/etcd-cluster.sh" stop "$tmp/etcd" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

rows="$tmp/rows"
: >"$rows"
n() { echo $(($1 * scale)); }
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# loadgen PEER TEST ARGS...: one craft-loadgen run, one row.
loadgen() {
    peer=$1 test=$2
    shift 2
    line=$("$lg" "$@") || echo "# ($peer $test: craft-loadgen failed)" >&2
    echo "# $line"
    printf '%-14s %-15s %-22s %9s %8s %8s\n' "$peer" craft-loadgen "$test" \
        "$(field ops_per_s "$line")" "$(field p50_us "$line")" \
        "$(field p99_us "$line")" >>"$rows"
}

# benchmark TEST ARGS...: one redis-benchmark run (--csv), one row.
benchmark() {
    test=$1
    shift
    csv=$(redis-benchmark "$@" --csv | tail -n 1)
    echo "# redis-benchmark $*: $csv"
    # "SET","rps","avg","min","p50","p95","p99","max" (ms)
    echo "$csv" | tr -d '"' | awk -F, -v t="$test" '{
        printf "%-14s %-15s %-22s %9.0f %8.0f %8.0f\n", "redis-always",
            "redis-benchmark", t, $2, $5 * 1000, $7 * 1000 }' >>"$rows"
}

fs=$("$here/fsync-p50" "$tmp" "$(n 500)" 100)
echo "# $fs"
printf '%-14s %-15s %-22s %9s %8s %8s\n' disk craft-loadgen fdatasync-100B \
    - "$(field fsync_p50_us "$fs")" "$(field fsync_p99_us "$fs")" >>"$rows"

addr=$("$here/redis-server.sh" start "$tmp/redis")
port=${addr##*:}
keys=100000
for t in set get; do
    benchmark "$(echo $t | tr a-z A-Z) c=1" -p "$port" -t $t -r $keys \
        -c 1 -n "$(n 3000)"
    benchmark "$(echo $t | tr a-z A-Z) c=50" -p "$port" -t $t -r $keys \
        -c 50 -n "$(n 50000)"
    benchmark "$(echo $t | tr a-z A-Z) c=50 P=16" -p "$port" -t $t \
        -r $keys -c 50 -P 16 -n "$(n 300000)"
done
r="--target resp --addr $addr --key-space $keys"
# Fill every key first, so that every GET below is a hit.
"$lg" $r --op put --clients 50 --pipeline 16 --requests $keys --sequential \
    >/dev/null
for op in put get; do
    loadgen redis-always "$op c=1" $r --op $op --clients 1 --requests "$(n 3000)"
    loadgen redis-always "$op c=50" $r --op $op --clients 50 \
        --requests "$(n 50000)"
    loadgen redis-always "$op c=50 P=16" $r --op $op --clients 50 \
        --pipeline 16 --requests "$(n 300000)"
done
"$here/redis-server.sh" stop "$tmp/redis"

if command -v etcd >/dev/null 2>&1; then
    eps=$("$here/etcd-cluster.sh" start "$tmp/etcd")
    e="--target etcd --addr $eps --key-space 10000"
    "$lg" $e --op put --clients 50 --requests 10000 --sequential >/dev/null
    loadgen etcd-3 "put c=1" $e --op put --clients 1 --requests "$(n 1000)"
    loadgen etcd-3 "put c=50" $e --op put --clients 50 --requests "$(n 20000)"
    loadgen etcd-3 "get c=50 linearizable" $e --op get --clients 50 \
        --requests "$(n 20000)"
    loadgen etcd-3 "get c=50 serializable" $e --op get --clients 50 \
        --requests "$(n 20000)" --serializable
    "$here/etcd-cluster.sh" stop "$tmp/etcd"
else
    echo "# etcd not installed (apt-get install etcd-server): skipped"
fi

printf '%-14s %-15s %-22s %9s %8s %8s\n' peer tool test ops_per_s p50_us \
    p99_us
cat "$rows"
