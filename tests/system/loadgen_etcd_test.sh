#!/bin/sh
# System test of craft-loadgen's etcd target and of bench/lib/etcd-cluster.sh:
# start a 3-member etcd on 127.0.0.1, put and get (linearizable and
# serializable) with --check, catch a value changed behind the generator's
# back, then stop every member by PID.  Exits 77 (skipped) without etcd.
# Usage: loadgen_etcd_test.sh BUILD_DIR SOURCE_DIR
set -eu

build=${1:?usage: loadgen_etcd_test.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: loadgen_etcd_test.sh BUILD_DIR SOURCE_DIR}
lg="$build/bin/craft-loadgen"
cluster="$src/bench/lib/etcd-cluster.sh"

if ! command -v "${ETCD:-etcd}" >/dev/null 2>&1; then
    echo "SKIP: no etcd binary; apt-get install etcd-server to run this test"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/craft-loadgen-etcd.XXXXXX")
cleanup() {
    "$cluster" stop "$tmp/etcd" || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

field() {
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

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

endpoints=$("$cluster" start "$tmp/etcd")
echo "etcd at $endpoints (pids $(cat "$tmp/etcd/pids" | tr '\n' ' '))"
common="--target etcd --addr $endpoints --clients 6 --key-space 200 --value-size 40 --seed 5"

expect_status 0 "$lg" $common --requests 200 --sequential
echo "$out"
[ "$(field ops "$out")" = 200 ] || fail "put: $out"

for mode in "" --serializable; do
    expect_status 0 "$lg" $common --requests 600 --op get --check $mode
    echo "$out"
    [ "$(field ops "$out")" = 600 ] || fail "get $mode: $out"
    [ "$(field misses "$out")" = 0 ] || fail "get $mode: $out"
    [ "$(field mismatches "$out")" = 0 ] || fail "get $mode: $out"
done

# Another writer changes key 0 through the gateway (not through
# craft-loadgen): --check notices, and a missing key is a miss.
first=${endpoints%%,*}
python3 - "$first" <<'PY'
import base64, json, sys, urllib.request
b64 = lambda s: base64.b64encode(s.encode()).decode()
body = json.dumps({"key": b64("key:000000000000"), "value": b64("changed")})
req = urllib.request.Request("http://%s/v3/kv/put" % sys.argv[1],
                             data=body.encode(), method="POST")
urllib.request.urlopen(req, timeout=5).read()
PY
expect_status 1 "$lg" $common --requests 5 --key-space 1 --op get --check
[ "$(field mismatches "$out")" = 5 ] || fail "mismatch not caught: $out"
grep -q '"changed"' "$tmp/err" || fail "$(cat "$tmp/err")"
expect_status 0 "$lg" $common --requests 50 --op get --key-space 1000000000
[ "$(field misses "$out")" -gt 40 ] || fail "misses: $out"

pids=$(cat "$tmp/etcd/pids")
"$cluster" stop "$tmp/etcd"
for pid in $pids; do
    # Gone, or a zombie waiting for its (re)parent to reap it.
    if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status"; then
        fail "member $pid still running"
    fi
done
[ ! -e "$tmp/etcd/m1" ] || fail "member data left behind"
echo "PASS"
