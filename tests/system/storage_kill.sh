#!/bin/sh
# Real-process crash test for the storage: run craft-bench-storage
# --report-durable, kill -9 it at random moments several times over (each
# run appends after what the previous ones left), and after every kill
# check with craft-cli that:
#   - `log check` finds no corruption (exit 0, or 1 for a torn tail);
#   - `log dump` holds every index reported durable (or the snapshot
#     covers it) -- less what a truncation reported durable later removed
#     --, contiguous from 1 or from at most the snapshot index + 1, and
#     every entry is exactly what the benchmark writes (its index and term
#     in the first bytes, zeros after: the CRC is recomputed here);
#   - terms never decrease along the log, and no entry older than a
#     truncation reported durable reappears: at and after the index of a
#     truncation "truncated F term T", every entry has a term >= T;
#   - every snapshot reported durable is there (or a newer one).
# Half of the rounds take snapshots and compact as they go; half truncate
# a few entries back every so often and rewrite them in a new term.
# Usage: storage_kill.sh BUILD_DIR [ROUNDS] [SEED]
set -eu

build=${1:?usage: storage_kill.sh BUILD_DIR [ROUNDS] [SEED]}
rounds=${2:-8}
seed=${3:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
bench="$build/bin/craft-bench-storage"
cli="$build/bin/craft-cli"
echo "storage_kill: seed $seed, $rounds rounds (replay: $0 $build $rounds $seed)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/craft-storage-kill.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# A small deterministic generator: `rand N` sets R to a number in [0, N).
# (Not $(rand N): a command substitution would run it in a subshell and
# the state would never advance.)  High bits: the low ones of an LCG cycle.
state=$seed
rand() {
    state=$(( (state * 1103515245 + 12345) % 2147483648 ))
    R=$(( (state / 65536) % $1 ))
}

dir="$tmp/data"
max_snap=0
round=1
while [ "$round" -le "$rounds" ]; do
    rand 1000; size=$(( 1 + R ))
    rand 64; batch=$(( 1 + R ))
    rand 4; inflight=$(( 1 + R ))
    rand 200; target=$(( 1 + R ))
    snap=""
    rand 2
    if [ "$R" -eq 1 ]; then
        rand 2000
        snap="--snapshot-every $(( 50 + R ))"
    fi
    trunc=""
    rand 2
    if [ "$R" -eq 1 ]; then
        rand 300
        trunc="--truncate-every $(( 20 + R ))"
    fi
    out="$tmp/out.$round"
    # Created here: the redirection below happens in the background child,
    # which may not have opened the file when the loop first reads it.
    : >"$out"
    # Small segments so that kills also land in segment turnover.
    "$bench" --dir "$dir" --entries 100000000 --size "$size" --batch "$batch" \
        --inflight "$inflight" --segment-bytes 1048576 --report-durable \
        $snap $trunc \
        >"$out" 2>"$tmp/err.$round" &
    pid=$!
    # Wait (with a deadline) until `target` batches were reported durable,
    # then kill at that moment: the kill lands at a random point of the
    # write / fsync / rename cycle.
    deadline=$(( $(date +%s) + 30 ))
    while [ "$(grep -c '^durable' "$out" || true)" -lt "$target" ]; do
        if [ "$(date +%s)" -gt "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "storage_kill: round $round: benchmark stalled or died" >&2
            cat "$tmp/err.$round" >&2
            exit 1
        fi
        sleep 0.01
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    s=$(grep '^snapshot' "$out" | tail -n 1 | cut -d' ' -f2)
    if [ -n "$s" ] && [ "$s" -gt "$max_snap" ]; then max_snap=$s; fi

    rc=0
    "$cli" log check "$dir" >"$tmp/check.$round" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        echo "storage_kill: round $round: log check exit $rc" >&2
        cat "$tmp/check.$round" >&2
        exit 1
    fi
    "$cli" log dump "$dir" >"$tmp/dump.$round"
    have_snap=$(sed -n 's/^snapshot: snap-[0-9-]* index \([0-9]*\) .*/\1/p' \
        "$tmp/check.$round")
    have_snap=${have_snap:-0}
    if [ "$have_snap" -lt "$max_snap" ]; then
        echo "storage_kill: round $round: snapshot $max_snap was reported" \
            "durable, found ${have_snap}" >&2
        exit 1
    fi
    python3 - "$tmp/dump.$round" "$tmp" "$round" "$rc" "$have_snap" \
        <<'PY'
import sys
def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t
T = crc32c_table()
def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
def zeros_crc(crc_in_state, n):
    c = crc_in_state
    for _ in range(n):
        c = T[c & 0xFF] ^ (c >> 8)
    return c
path, tmp, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
check_rc, snap = sys.argv[4], int(sys.argv[5])
# Replay every round's reports in order: what must be in the log.
max_durable = 0
truncations = []  # (from, term) reported durable
for r in range(1, int(rnd) + 1):
    with open(f"{tmp}/out.{r}") as f:
        for line in f:
            w = line.split()
            if len(w) == 2 and w[0] == "durable":
                max_durable = max(max_durable, int(w[1]))
            elif len(w) == 4 and w[0] == "truncated" and w[2] == "term":
                truncations.append((int(w[1]), int(w[3])))
                max_durable = min(max_durable, int(w[1]) - 1)
expect = None
prev_term = 0
with open(path) as f:
    for line in f:
        idx, term, typ, size, crc = line.split()
        idx, size = int(idx), int(size)
        if expect is None:
            if idx > snap + 1:
                sys.exit(f"round {rnd}: log starts at {idx}, snapshot {snap}")
            expect = idx
        if idx != expect:
            sys.exit(f"round {rnd}: index {idx} where {expect} was expected")
        expect += 1
        term = int(term)
        if term < prev_term:
            sys.exit(f"round {rnd}: entry {idx} has term {term} after term {prev_term}")
        prev_term = term
        for f_idx, f_term in truncations:
            if idx >= f_idx and term < f_term:
                sys.exit(f"round {rnd}: entry {idx} term {term} reappeared after "
                         f"the truncation at {f_idx} in term {f_term}")
        # The tail, where a kill lands, is recomputed in full; elsewhere a
        # sample (the storage verifies every CRC itself on load).
        if idx <= max_durable - 300 and idx % 31 != 0:
            continue
        head = (idx.to_bytes(8, "little") + term.to_bytes(8, "little"))[:min(size, 16)]
        c = 0xFFFFFFFF
        for b in head:
            c = T[(c ^ b) & 0xFF] ^ (c >> 8)
        c = zeros_crc(c, size - len(head)) ^ 0xFFFFFFFF
        if f"{c:08x}" != crc or typ != "command":
            sys.exit(f"round {rnd}: entry {idx} is not what was written")
last = expect - 1 if expect is not None else snap
if last < snap:
    last = snap
if last < max_durable:
    sys.exit(f"round {rnd}: log ends at {last}, but {max_durable} was reported durable")
what = "torn tail" if check_rc == "1" else "clean"
print(f"round {rnd}: ok, log ..{last} (last term {prev_term}), snapshot "
      f"{snap}, durable {max_durable}, {len(truncations)} truncations, {what}",
      file=sys.stderr)
PY
    round=$((round + 1))
done

# A final repair leaves a clean directory.
"$cli" log check --repair "$dir" >/dev/null 2>&1 || true
"$cli" log check "$dir" >"$tmp/final" 2>&1 || {
    echo "storage_kill: not clean after --repair" >&2
    cat "$tmp/final" >&2
    exit 1
}
echo "storage_kill: passed"
