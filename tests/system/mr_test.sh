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
try:
    s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 64)
except OSError:
    pass  # the coordinator hung up on the junk: fine
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
    outputs | grep '^parallel.* 2' >/dev/null || fail "map workers did not run in parallel"
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

case_kill_mid_map() {
    reference wc
    start_coord slowwc --arg map_sleep_ms=800 --arg "dir=$T"
    start_worker a
    local a=$WPID
    start_worker b
    # slowwc announces each map's pause with a marker file.
    wait_for "[ -e '$T/slowwc-map-$a' ]" 20
    kill -9 "$a"
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

case_kill_mid_reduce() {
    reference wc
    start_coord slowwc --arg reduce_sleep_ms=600 --arg "dir=$T"
    start_worker a
    local a=$WPID
    start_worker b
    # Inside reduce(): slowwc's marker file exists during its pause.
    wait_for "[ -e '$T/slowwc-reduce-$a' ]" 30
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
    wait_for "ls $T/w-a/craft-mr-worker-*/map-* >/dev/null 2>&1" 30
    wait_for "ls $T/w-b/craft-mr-worker-*/fetch-* >/dev/null 2>&1" 30
    kill -9 "$a"
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

case_junk_frames() {
    reference wc
    # Junk on a worker's fetch port, while the job runs (maps take 0.5 s
    # each), closes that connection only: the job completes.
    start_coord slowwc --arg map_sleep_ms=500
    start_worker 1
    start_worker 2
    wait_for "grep -q 'serving map output on port' '$T/worker-1.log'" 10
    local fport
    fport=$(sed -n 's/.*serving map output on port \([0-9]*\).*/\1/p' "$T/worker-1.log")
    python3 - "$fport" "$PORT" <<'EOF' || fail "could not send junk"
import socket, sys
junk = [b"CRFT" + bytes(28) + b"\xff" * 4096,   # a header with a bad crc
        b"CRFT\x01\x02" + b"\xff" * 26,          # a huge length
        bytes(range(256)) * 16]                   # not craft at all
for port in sys.argv[1:]:
    for j in junk:
        s = socket.create_connection(("127.0.0.1", int(port)))
        try:
            s.sendall(j)
            s.recv(1)  # wait for the hang-up
        except OSError:
            pass  # hung up on us: fine
        s.close()
EOF
    wait_exit "$CPID" 45
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
}

case_stopped_worker() {
    reference wc
    # A worker that stops answering (SIGSTOP: a hung machine, a partition)
    # is declared lost after --worker-timeout; its tasks run elsewhere.
    # When it comes back its stale completions are refused and it
    # registers again as a new worker.
    start_coord slowwc --worker-timeout 1 --arg map_sleep_ms=300
    start_worker a
    local a=$WPID
    wait_for "grep -q registered '$T/worker-a.log'" 10
    kill -STOP "$a"
    start_worker b
    wait_for "grep -q 'worker 1 .*lost\|disconnected' '$T/coord.log' || [ -n \"\$(ls '$T/out')\" ]" 30
    sleep 1.5
    kill -CONT "$a"
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
    wait_exit "$a" 15
}

case_bounded_memory() {
    # A 33 MB input cut into 4 MiB splits, grep emitting most lines: the
    # map output of each split (~7 MiB) overflows the 4 MiB sort buffer of
    # a --memory-mb 16 worker, so maps spill and merge.  The output must
    # match seq, and the worker's peak RSS must stay under 16 MiB (checked
    # without sanitizers, whose shadow memory does not count).
    for i in $(seq 10); do cat "${INPUTS[@]}"; done >"$T/big.txt"
    INPUTS=("$T/big.txt")
    reference grep --arg "pattern=[aeiou]"
    start_coord grep --split-mb 4 --reduce 4 --arg "pattern=[aeiou]"
    mkdir -p "$T/w-m"
    python3 - "$MR" "$PORT" "$T/w-m" >"$T/rss" 2>"$T/worker-m.log" <<'EOF2' || fail "worker failed"
import os, subprocess, sys
p = subprocess.Popen([sys.argv[1], "worker", "--coordinator",
                      "127.0.0.1:" + sys.argv[2], "--work-dir", sys.argv[3],
                      "--memory-mb", "16", "--log-level", "info"])
_, status, ru = os.wait4(p.pid, 0)
print(ru.ru_maxrss // 1024)
sys.exit(os.waitstatus_to_exitcode(status))
EOF2
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
    local rss
    rss=$(cat "$T/rss")
    echo "worker peak RSS: $rss MiB (limit 16)"
    grep -q "spills" "$T/worker-m.log" || fail "no map statistics logged"
    grep -q " 0 spills" "$T/worker-m.log" && fail "some map did not spill"
    if ! ldd "$MR" 2>/dev/null | grep libasan >/dev/null; then
        [ "$rss" -lt 16 ] || fail "worker peak RSS $rss MiB over its 16 MiB limit"
    fi
}

case_corrupt_map_output() {
    reference wc
    # Map output that rots on the holder's disk after the map finished is
    # caught by the reducer's crc32c check (against the crc the map reported
    # to the coordinator), the holder is reported, and the maps run again.
    start_coord slowwc --arg reduce_sleep_ms=400 --arg "dir=$T"
    start_worker a
    local a=$WPID
    start_worker b
    wait_for "[ -e '$T/slowwc-reduce-$WPID' ] || [ -e '$T/slowwc-reduce-$a' ]" 30
    # Flip a byte in the middle of every partition of every map output a
    # holds (run.h: the index of n_partitions 32-byte entries sits before a
    # 16-byte footer).
    python3 - "$T"/w-a/craft-mr-worker-*/ <<'EOF2' || fail "cannot corrupt"
import glob, os, struct, sys
n = 0
for path in glob.glob(os.path.join(sys.argv[1], "map-*.run")):
    with open(path, "r+b") as f:
        data = f.read()
        parts = struct.unpack_from("<I", data, len(data) - 16)[0]
        base = len(data) - 16 - 32 * parts
        for p in range(parts):
            off, length = struct.unpack_from("<QQ", data, base + 32 * p)
            if length:
                f.seek(off + length // 2)
                f.write(bytes([data[off + length // 2] ^ 0xff]))
                n += 1
print(n, "segments corrupted")
EOF2
    wait_exit "$CPID" 60
    [ "$RC" -eq 0 ] || fail "coordinator exited $RC"
    compare_with "$T/ref.sorted"
    grep -q "cannot fetch map" "$T"/worker-*.log ||
        fail "no reducer noticed the corruption"
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
    local summary
    summary=$(grep "FAILED" "$T/coord.log")
    [[ "$summary" == *"$name.so"* ]] || fail "failure does not name the plugin"
    [[ "$summary" == *"map "* ]] || fail "failure does not name the task"
    [[ "$summary" =~ $pattern ]] || fail "failure does not say: $pattern"
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
    "$MR" coordinator --plugin "$PL/wc.so" --output-dir /proc/no/such --quiet \
        --listen 127.0.0.1:0 "${INPUTS[0]}" 2>"$T/e"
    [ $? -eq 1 ] && grep -q "/proc/no/such" "$T/e" || fail "bad --output-dir"
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
    # (No "cat | grep -q": under pipefail, grep -q's early exit makes the
    # pipeline fail by SIGPIPE exactly when it found something.)
    if grep -Eqs "(ERROR|WARNING): (Address|Leak|Thread)Sanitizer|runtime error:" \
        "$T"/*.log; then
        grep -Es -A12 "(ERROR|WARNING): (Address|Leak|Thread)Sanitizer|runtime error:" \
            "$T"/*.log | head -60 >&2
        fail "a sanitizer reported an error"
    fi
}

case "${1:-}" in
wc | indexer | map_parallelism | reduce_parallelism | job_count | early_exit | \
    crash | kill_mid_map | kill_mid_reduce | kill_before_fetch | bad_abi | \
    no_symbol | segv | toobig | fail | refused | usage | grep | \
    stopped_worker | bounded_memory | corrupt_map_output | junk_frames)
    "case_$1"
    check_logs
    echo "PASS: $1"
    ;;
*)
    echo "usage: $0 CASE" >&2
    exit 2
    ;;
esac
