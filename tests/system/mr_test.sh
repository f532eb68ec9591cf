#!/usr/bin/env bash
# craft-mr system tests: real coordinator and worker processes on 127.0.0.1,
# each worker in its own work dir, in a fresh temporary directory.
#
#   mr_test.sh CASE      run one case (see the list at the bottom)
#
# Ports: the coordinator listens on port 0 and writes the port it got to a
# file (--port-file), so cases run in parallel.  Every process a case starts
# is recorded and killed by PID on exit; every wait has a deadline.
# Environment: CRAFT_BUILD_DIR, CRAFT_SOURCE_DIR (set by ctest), MR_DATA
# (default: ../shared/data/gutenberg next to the source tree).
set -u
set -o pipefail

B=${CRAFT_BUILD_DIR:?CRAFT_BUILD_DIR not set}
S=${CRAFT_SOURCE_DIR:?CRAFT_SOURCE_DIR not set}
MR=$B/bin/craft-mr
PL=$B/apps/mr
DATA=${MR_DATA:-$S/../shared/data/gutenberg}
T=$(mktemp -d "${TMPDIR:-/tmp}/mr_test.XXXXXX")
PIDS=()
PORT=
CPID=

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null
    done
    if [ -f "$T/loop-pids" ]; then
        while read -r p; do kill -9 "$p" 2>/dev/null; done <"$T/loop-pids"
    fi
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $(basename "$f") (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
    exit 1
}

now_ms() { date +%s%3N; }

# wait_exit PID SECONDS: waits for PID to exit; its status in $RC.
wait_exit() {
    local pid=$1 deadline=$(($(now_ms) + $2 * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        # A zombie of ours still answers kill -0; wait reaps it below.
        if [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then
            break
        fi
        [ "$(now_ms)" -lt "$deadline" ] || fail "pid $pid still running after $2 s"
        sleep 0.05
    done
    wait "$pid"
    RC=$?
}

# wait_for CMD SECONDS: polls until CMD succeeds.
wait_for() {
    local deadline=$(($(now_ms) + $2 * 1000))
    until eval "$1"; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "timed out waiting for: $1"
        sleep 0.05
    done
}

INPUTS=("$DATA"/pg-*.txt)
[ -f "${INPUTS[0]}" ] || { echo "no inputs in $DATA" >&2; exit 1; }

# start_coord PLUGIN [coordinator options...]
start_coord() {
    local plugin=$1
    shift
    rm -f "$T/port"
    "$MR" coordinator --plugin "$PL/$plugin.so" --listen 127.0.0.1:0 \
        --port-file "$T/port" --output-dir "$T/out" "$@" "${INPUTS[@]}" \
        >"$T/coord.log" 2>&1 &
    CPID=$!
    PIDS+=("$CPID")
    wait_for "[ -s '$T/port' ]" 10
    PORT=$(cat "$T/port")
}

# start_worker NAME [worker options...]: the PID in $WPID.
start_worker() {
    local name=$1
    shift
    mkdir -p "$T/w-$name"
    "$MR" worker --coordinator "127.0.0.1:$PORT" --work-dir "$T/w-$name" \
        "$@" >"$T/worker-$name.log" 2>&1 &
    WPID=$!
    PIDS+=("$WPID")
}

# The sorted, non-empty output lines of the job.
outputs() { (cd "$T/out" && cat mr-out-* 2>/dev/null) | LC_ALL=C sort | grep . ; }

# reference PLUGIN [--arg ...]: the sorted `craft-mr seq` output.
reference() {
    local plugin=$1
    shift
    "$MR" seq --plugin "$PL/$plugin.so" --output "$T/ref.out" "$@" \
        "${INPUTS[@]}" || fail "seq $plugin failed"
    LC_ALL=C sort "$T/ref.out" | grep . >"$T/ref.sorted"
}

compare_with() {
    outputs >"$T/got.sorted" || fail "no output"
    cmp -s "$T/got.sorted" "$1" ||
        fail "output differs from the reference ($(wc -l <"$T/got.sorted") vs $(wc -l <"$1") lines)"
}

mkdir -p "$T/out"

# ---- the classic test-mr.sh checks ------------------------------------------

case_wc() {
    reference wc
    start_coord wc
    # Garbage on the coordinator's port must close that connection only.
    python3 - "$PORT" <<'EOF' || fail "could not send junk"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 64)
s.close()
EOF
    for i in 1 2 3; do start_worker "$i"; done
    wait_exit "$CPID" 45
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    # Compared right after the coordinator exits: outputs must be final.
    compare_with "$T/ref.sorted"
    [ -z "$(ls -A "$T/out" | grep -v '^mr-out-[0-9]*$')" ] || fail "stray files in the output dir"
}

case_indexer() {
    reference indexer
    start_coord indexer
    start_worker 1
    start_worker 2
    wait_exit "$WPID" 45 # the "foreground" worker
    [ "$RC" -eq 0 ] || fail "worker exited $RC"
    compare_with "$T/ref.sorted"
    wait_exit "$CPID" 10
}

case_map_parallelism() {
    start_coord mtiming --arg "dir=$T"
    start_worker 1
    start_worker 2
    wait_exit "$CPID" 45
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    local times
    times=$(outputs | grep -c '^times-')
    [ "$times" -eq 2 ] || fail "saw $times workers rather than 2"
    outputs | grep -q '^parallel.* 2' || fail "map workers did not run in parallel"
}

case_reduce_parallelism() {
    start_coord rtiming --arg "dir=$T"
    start_worker 1
    start_worker 2
    wait_exit "$CPID" 45
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    local n
    n=$(outputs | grep -c '^[a-z] 2')
    [ "$n" -ge 2 ] || fail "too few parallel reduces ($n)"
}

case_job_count() {
    start_coord jobcount --arg "dir=$T"
    start_worker 1
    start_worker 2
    wait_exit "$WPID" 60
    [ "$RC" -eq 0 ] || fail "worker exited $RC"
    # Two more workers after the job: they must exit promptly, running
    # nothing (0 when the coordinator was still there to say so, 1 with a
    # clear message when it was gone).
    start_worker 3 --connect-timeout 2
    local late=$WPID
    start_worker 4 --connect-timeout 2
    wait_exit "$WPID" 15
    [ "$RC" -eq 0 ] || grep -q "coordinator" "$T/worker-4.log" || fail "late worker: $RC"
    wait_exit "$late" 15
    wait_exit "$CPID" 10
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    [ "$(outputs)" = "a 8" ] || fail "map jobs ran an incorrect number of times: $(outputs)"
}

case_early_exit() {
    start_coord early_exit
    local all=("$CPID")
    for i in 1 2 3; do
        start_worker "$i"
        all+=("$WPID")
    done
    # Capture the outputs when the first process exits (wait -n).
    local deadline=$(($(now_ms) + 45000)) first=
    while [ -z "$first" ]; do
        for p in "${all[@]}"; do
            if ! kill -0 "$p" 2>/dev/null ||
                [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" = Z ]; then
                first=$p
                break
            fi
        done
        [ "$(now_ms)" -lt "$deadline" ] || fail "nothing exited in 45 s"
        [ -n "$first" ] || sleep 0.02
    done
    outputs >"$T/initial.sorted"
    for p in "${all[@]}"; do wait_exit "$p" 45; done
    outputs >"$T/final.sorted"
    cmp -s "$T/initial.sorted" "$T/final.sorted" ||
        fail "output changed after the first process exited"
    [ -s "$T/final.sorted" ] || fail "no output"
}

case_crash() {
    reference nocrash
    # The classic test: workers die (exit) in a third of the calls and stall
    # up to max_sleep_ms in another third.  Sleeps and the task timeout are
    # scaled down together (10 s -> 3 s) to keep the suite short.
    start_coord crash --task-timeout 3 --arg max_sleep_ms=2500
    start_worker 0
    : >"$T/loop-pids"
    # Three loops restart workers while the coordinator is alive.
    for i in 1 2 3; do
        (
            n=0
            while kill -0 "$CPID" 2>/dev/null; do
                n=$((n + 1))
                mkdir -p "$T/w-$i-$n"
                "$MR" worker --coordinator "127.0.0.1:$PORT" --work-dir \
                    "$T/w-$i-$n" --connect-timeout 2 >>"$T/worker-loop$i.log" 2>&1 &
                echo $! >>"$T/loop-pids"
                wait $!
                sleep 0.2
            done
        ) &
        PIDS+=("$!")
    done
    wait_exit "$CPID" 120
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

# ---- faults past the classic suite -------------------------------------------

# The work dir of a worker started as start_worker NAME (one subdirectory).
wdir() { echo "$T/w-$1"/craft-mr-worker-*; }

case_kill_mid_map() {
    reference wc
    start_coord slowwc --arg map_sleep_ms=800
    start_worker a
    local a=$WPID
    start_worker b
    # Both are inside their first map (0.8 s each) once they registered.
    wait_for "grep -q registered '$T/worker-a.log' && grep -q registered '$T/worker-b.log'" 10
    sleep 0.2
    [ -z "$(ls "$(wdir a)" | grep '^map-')" ] || fail "worker a finished a map already"
    kill -9 "$a"
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

case_kill_mid_reduce() {
    reference wc
    start_coord slowwc --arg reduce_sleep_ms=600
    start_worker a
    local a=$WPID
    start_worker b
    # A reduce starts by fetching: kill a as soon as it has fetched files.
    wait_for "ls $T/w-a/craft-mr-worker-*/ 2>/dev/null | grep -q '^fetch-'" 30
    kill -9 "$a"
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

case_kill_before_fetch() {
    reference wc
    # Reduces are slow, so most of them fetch long after the maps are done.
    start_coord slowwc --arg reduce_sleep_ms=400
    start_worker a
    local a=$WPID
    start_worker b
    # a holds finished map output, and the reduce phase has begun (on b),
    # so later reduces will find a gone when they fetch from it.
    wait_for "ls $T/w-a/craft-mr-worker-*/ 2>/dev/null | grep -q '^map-'" 30
    wait_for "ls $T/w-b/craft-mr-worker-*/ 2>/dev/null | grep -q '^fetch-'" 30
    kill -9 "$a"
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

# bad_plugin NAME PATTERN: the job fails with a message naming the plugin,
# the task and matching PATTERN.
bad_plugin() {
    local name=$1 pattern=$2
    start_coord "$name" --max-attempts 3
    # One worker at a time, restarted when it exits (a crashing plugin
    # takes its worker down), until the coordinator gives up.
    local i
    for i in 1 2 3 4 5; do
        kill -0 "$CPID" 2>/dev/null || break
        start_worker "$i" --connect-timeout 2
        wait_exit "$WPID" 20
    done
    wait_exit "$CPID" 10
    [ "$RC" -eq 1 ] || fail "coordinator exited $RC, wanted 1"
    grep -q "FAILED" "$T/coord.log" || fail "no failure summary"
    grep "FAILED" "$T/coord.log" | grep -q "$name.so" || fail "failure does not name the plugin"
    grep "FAILED" "$T/coord.log" | grep -q "map" || fail "failure does not name the task"
    grep "FAILED" "$T/coord.log" | grep -Eq "$pattern" || fail "failure does not say: $pattern"
    [ -z "$(ls "$T/out")" ] || fail "a failed job left output"
}

case_bad_abi() { bad_plugin bad_abi "ABI version 99"; }
case_no_symbol() { bad_plugin no_symbol "no symbol mr_plugin_v1"; }
case_segv() { bad_plugin segv "crashed with signal 11"; }
case_toobig() { bad_plugin toobig "oversized record"; }
case_fail() { bad_plugin fail "map returned -1"; }

case_refused() {
    # A port nobody listens on: bind one, then close it.
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    PORT=$port
    local t0
    t0=$(now_ms)
    start_worker 1 --connect-timeout 2
    wait_exit "$WPID" 15
    [ "$RC" -eq 1 ] || fail "worker exited $RC, wanted 1"
    [ $(($(now_ms) - t0)) -ge 1500 ] || fail "worker gave up without retrying"
    grep -q "cannot reach the coordinator at 127.0.0.1:$port" "$T/worker-1.log" ||
        fail "no clear message"
}

case_usage() {
    "$MR" >/dev/null 2>&1
    [ $? -eq 2 ] || fail "no arguments: want exit 2"
    "$MR" coordinator "${INPUTS[0]}" >/dev/null 2>"$T/e"
    [ $? -eq 2 ] && grep -q -- "--plugin" "$T/e" || fail "coordinator without --plugin"
    "$MR" worker --memory-mb lots >/dev/null 2>"$T/e"
    [ $? -eq 2 ] && grep -q "memory-mb" "$T/e" || fail "bad --memory-mb"
    "$MR" coordinator --plugin "$PL/wc.so" --reduce 0 x >/dev/null 2>&1
    [ $? -eq 2 ] || fail "--reduce 0 accepted"
    "$MR" coordinator --plugin "$PL/wc.so" --listen nonsense --quiet "${INPUTS[0]}" 2>"$T/e"
    [ $? -eq 1 ] && grep -q "nonsense" "$T/e" || fail "bad --listen"
    "$MR" seq --plugin "$PL/wc.so" --output "$T/x" /nonexistent 2>"$T/e"
    [ $? -eq 1 ] && grep -q "/nonexistent" "$T/e" || fail "missing input"
    "$MR" seq --plugin /nonexistent.so --output "$T/x" "${INPUTS[0]}" 2>"$T/e"
    [ $? -eq 1 ] && grep -q "nonexistent.so" "$T/e" || fail "missing plugin"
}

case_grep() {
    reference grep --arg "pattern=Sherlock Holmes"
    start_coord grep --reduce 3 --arg "pattern=Sherlock Holmes"
    start_worker 1
    start_worker 2
    wait_exit "$CPID" 45
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    [ "$(ls "$T/out" | wc -l)" -eq 3 ] || fail "want 3 outputs for --reduce 3"
    compare_with "$T/ref.sorted"
}

# No process may report a sanitizer error (test builds), whatever the case.
check_logs() {
    if cat "$T"/*.log 2>/dev/null |
        grep -Eq "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:"; then
        fail "a sanitizer reported an error"
    fi
}

case "${1:-}" in
wc | indexer | map_parallelism | reduce_parallelism | job_count | early_exit | \
    crash | kill_mid_map | kill_mid_reduce | kill_before_fetch | bad_abi | \
    no_symbol | segv | toobig | fail | refused | usage | grep)
    "case_$1"
    check_logs
    echo "PASS: $1"
    ;;
*)
    echo "usage: $0 CASE" >&2
    exit 2
    ;;
esac
