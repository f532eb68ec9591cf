#!/bin/sh
# System test of craft-loadgen against a real redis-server and a fake
# misbehaving server, all on 127.0.0.1 in a temporary directory:
#   - bad command lines exit 2 with a message, an unreachable address
#     exits 1 after --retry-ms;
#   - put then get --check: every request succeeds and every value read is
#     the one written (and a value changed behind its back is caught);
#   - pipelining and --duration;
#   - -CLUSTERDOWN is retried and -MOVED followed to the real server;
#   - a server that speaks garbage gets a clear error, not a crash;
#   - the fsync timer reports a latency.
# Usage: loadgen_test.sh BUILD_DIR SOURCE_DIR
set -eu

build=${1:?usage: loadgen_test.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: loadgen_test.sh BUILD_DIR SOURCE_DIR}
lg="$build/bin/craft-loadgen"
fake="$src/tests/system/loadgen_fake.py"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/craft-loadgen-test.XXXXXX")
pids=
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# field NAME LINE: the value of NAME=... in a craft-loadgen result line.
field() {
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# expect_status WANT CMD...: run CMD, check its exit status, keep stdout in
# $out and stderr in $tmp/err.
expect_status() {
    want=$1
    shift
    set +e
    out=$("$@" 2>"$tmp/err")
    got=$?
    set -e
    [ "$got" -eq "$want" ] ||
        fail "exit $got, not $want: $* -- $(cat "$tmp/err") $out"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for CMD...: poll CMD for up to 10 s.
wait_for() {
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 100 ] || return 1
        sleep 0.1
    done
}

echo "== command line"
expect_status 2 "$lg" --target nope --addr 127.0.0.1:1
grep -q -- "--target must be" "$tmp/err" || fail "no --target message"
expect_status 2 "$lg" --target resp
grep -q -- "--addr is required" "$tmp/err" || fail "no --addr message"
expect_status 2 "$lg" --target resp --addr 127.0.0.1:1 --clients 0
expect_status 2 "$lg" --target resp --addr 127.0.0.1:1 --pipeline 5000
expect_status 2 "$lg" --target resp --addr 127.0.0.1:1 --op put --check
expect_status 2 "$lg" --target resp --addr nohost --requests 1
expect_status 1 "$lg" --target resp --addr no.such.host.invalid:1
grep -q "cannot resolve" "$tmp/err" || fail "no resolve message"
expect_status 0 "$lg" --help

echo "== unreachable address"
dead=$(free_port)
expect_status 1 "$lg" --target resp --addr "127.0.0.1:$dead" --clients 2 \
    --requests 10 --retry-ms 300
grep -q "no reply within --retry-ms" "$tmp/err" || fail "$(cat "$tmp/err")"

echo "== redis-server"
started=
for attempt in 1 2 3; do
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
    rpid=$!
    pids="$pids $rpid"
    if wait_for redis-cli -p "$port" ping; then
        started=1
        break
    fi
    kill -9 "$rpid" 2>/dev/null || true
done
[ -n "$started" ] || fail "redis-server did not start: $(cat "$tmp/redis.log")"
addr="127.0.0.1:$port"
common="--target resp --addr $addr --clients 8 --key-space 500 --value-size 32 --seed 7"

expect_status 0 "$lg" $common --requests 4000
echo "$out"
[ "$(field ops "$out")" = 4000 ] || fail "put: $out"
[ "$(field errors "$out")" = 0 ] || fail "put: $out"
n=$(redis-cli -p "$port" dbsize)
[ "$n" -gt 0 ] && [ "$n" -le 500 ] || fail "dbsize $n after puts"
# --sequential fills the whole key space.
expect_status 0 "$lg" $common --requests 500 --sequential
[ "$(redis-cli -p "$port" dbsize)" = 500 ] || fail "sequential fill"

# Every key exists now, each with the value of the seed.
expect_status 0 "$lg" $common --requests 4000 --op get --check
echo "$out"
[ "$(field ops "$out")" = 4000 ] || fail "get: $out"
[ "$(field misses "$out")" = 0 ] || fail "get misses: $out"
[ "$(field mismatches "$out")" = 0 ] || fail "get: $out"
# Keys outside what was written are misses, not errors.
expect_status 0 "$lg" $common --requests 100 --op get --key-space 100000000
[ "$(field misses "$out")" -gt 90 ] || fail "misses: $out"

# A value changed behind the generator's back is reported.
expect_status 0 "$lg" $common --requests 10 --key-space 1
redis-cli -p "$port" set key:000000000000 not-what-was-written >/dev/null
expect_status 1 "$lg" $common --requests 10 --key-space 1 --op get --check
[ "$(field mismatches "$out")" = 10 ] || fail "mismatch not caught: $out"
grep -q "not-what-was-written" "$tmp/err" || fail "$(cat "$tmp/err")"

expect_status 0 "$lg" $common --requests 3200 --pipeline 16
echo "$out"
[ "$(field ops "$out")" = 3200 ] || fail "pipeline: $out"
[ "$(field pipeline "$out")" = 16 ] || fail "pipeline: $out"

expect_status 0 "$lg" $common --duration 0.3
echo "$out"
[ "$(field ops "$out")" -gt 0 ] || fail "duration: $out"

echo "== CLUSTERDOWN, then MOVED to the real server"
python3 "$fake" "$tmp/fake.port" moved "$addr" 5 &
pids="$pids $!"
wait_for test -s "$tmp/fake.port" || fail "fake server did not start"
fport=$(cat "$tmp/fake.port")
expect_status 0 "$lg" --target resp --addr "127.0.0.1:$fport" --clients 2 \
    --requests 200 --key-space 3 --seed 11 --value-size 5
echo "$out"
[ "$(field ops "$out")" = 200 ] || fail "redirect: $out"
[ "$(field redirects "$out")" -ge 2 ] || fail "redirect: $out"
[ "$(field retries "$out")" -ge 5 ] || fail "clusterdown: $out"
# The writes landed on the real server, with the seed's values.
expect_status 0 "$lg" --target resp --addr "$addr" --clients 2 \
    --requests 200 --key-space 3 --seed 11 --value-size 5 --op get --check

echo "== lost connections are retried; a dead address is skipped"
python3 "$fake" "$tmp/drop.port" drop "$addr" &
pids="$pids $!"
wait_for test -s "$tmp/drop.port" || fail "fake server did not start"
expect_status 0 "$lg" --target resp \
    --addr "127.0.0.1:$dead,127.0.0.1:$(cat "$tmp/drop.port")" --clients 4 \
    --requests 300 --key-space 50 --seed 12
echo "$out"
[ "$(field ops "$out")" = 300 ] || fail "drop: $out"
[ "$(field errors "$out")" = 0 ] || fail "drop: $out"
# Two clients start on the dead address, all four lose a connection.
[ "$(field reconnects "$out")" -ge 6 ] || fail "drop: $out"

echo "== a server that never answers"
python3 "$fake" "$tmp/silent.port" silent &
pids="$pids $!"
wait_for test -s "$tmp/silent.port" || fail "fake server did not start"
expect_status 1 "$lg" --target resp --addr "127.0.0.1:$(cat "$tmp/silent.port")" \
    --clients 2 --requests 10 --timeout-ms 100 --retry-ms 500
grep -q "no reply within --retry-ms.*reply timeout" "$tmp/err" ||
    fail "$(cat "$tmp/err")"
[ "$(field errors "$out")" -ge 1 ] || fail "silent: $out"

echo "== an HTTP server that closes after each response"
python3 "$fake" "$tmp/close.port" http-close &
pids="$pids $!"
wait_for test -s "$tmp/close.port" || fail "fake server did not start"
expect_status 0 "$lg" --target etcd --addr "127.0.0.1:$(cat "$tmp/close.port")" \
    --clients 3 --requests 60
echo "$out"
[ "$(field ops "$out")" = 60 ] || fail "http-close: $out"
[ "$(field reconnects "$out")" = 0 ] || fail "http-close: $out"

echo "== a server that does not speak RESP"
python3 "$fake" "$tmp/garbage.port" garbage &
pids="$pids $!"
wait_for test -s "$tmp/garbage.port" || fail "fake server did not start"
expect_status 1 "$lg" --target resp --addr "127.0.0.1:$(cat "$tmp/garbage.port")" \
    --clients 3 --requests 100
grep -q "protocol error" "$tmp/err" || fail "$(cat "$tmp/err")"

echo "== fsync timer"
expect_status 0 "$lg" --target fsync --dir "$tmp" --requests 20 --value-size 100
echo "$out"
[ "$(field ops "$out")" = 20 ] || fail "fsync: $out"
[ "$(field p50_us "$out")" -gt 0 ] || fail "fsync: $out"
expect_status 1 "$lg" --target fsync --dir "$tmp/nonexistent" --requests 1
grep -q "nonexistent" "$tmp/err" || fail "$(cat "$tmp/err")"
[ -z "$(ls "$tmp" | grep craft-fsync || true)" ] || fail "fsync file left"

echo "PASS"
