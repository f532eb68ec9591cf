#!/bin/sh
# craft-cli log check / dump on real directories: exit 0 when clean, 1 for
# a torn tail (cut by --repair, then 0), 2 for corruption naming the file;
# dump ranges; bad usage is an error, not a crash.
# Usage: storage_cli.sh BUILD_DIR
set -eu
build=${1:?usage: storage_cli.sh BUILD_DIR}
bench="$build/bin/craft-bench-storage"
cli="$build/bin/craft-cli"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/craft-storage-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() { echo "storage_cli: $*" >&2; exit 1; }
expect_rc() { # expect_rc WANT CMD...
    want=$1; shift
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq "$want" ] || {
        cat "$tmp/out" "$tmp/err" >&2
        fail "'$*' exited $rc, expected $want"
    }
}

d="$tmp/data"
"$bench" --dir "$d" --entries 3000 --size 200 --batch 7 \
    --segment-bytes 65536 >/dev/null
expect_rc 0 "$cli" log check "$d"
grep -q "index 1\.\." "$tmp/out" || fail "check does not list segments"
grep -q "result: clean" "$tmp/out" || fail "check is not clean"

# dump: one line per entry, ranges inclusive.
expect_rc 0 "$cli" log dump "$d" --from 10 --to 19
[ "$(wc -l <"$tmp/out")" -eq 10 ] || fail "dump --from 10 --to 19"
head -n 1 "$tmp/out" | grep -Eq '^10 1 command 200 [0-9a-f]{8}$' ||
    fail "dump line format: $(head -n 1 "$tmp/out")"
expect_rc 0 "$cli" log dump "$d"
[ "$(wc -l <"$tmp/out")" -eq 3000 ] || fail "dump has not 3000 lines"

# A torn tail: garbage right after the last record of the open segment.
end=$("$cli" log check "$d" | sed -n 's/^  open .*records, \([0-9]*\) bytes$/\1/p')
[ -n "$end" ] || fail "no open segment end found"
printf 'RCRDgarbage-from-a-torn-write' |
    dd of="$d/open" bs=1 seek="$end" conv=notrunc 2>/dev/null
expect_rc 1 "$cli" log check "$d"
grep -q "torn tail" "$tmp/out" || fail "torn tail not reported"
expect_rc 1 "$cli" log check --repair "$d"
expect_rc 0 "$cli" log check "$d"
expect_rc 0 "$cli" log dump "$d"
[ "$(wc -l <"$tmp/out")" -eq 3000 ] || fail "repair lost entries"

# Corruption: one flipped byte in a closed segment.
seg=$(ls "$d" | grep -E '^[0-9]{20}-[0-9]{20}$' | head -n 1)
printf '\377' | dd of="$d/$seg" bs=1 seek=1000 conv=notrunc 2>/dev/null
expect_rc 2 "$cli" log check "$d"
grep -q "$seg: offset" "$tmp/err" || fail "corruption message: $(cat "$tmp/err")"
expect_rc 2 "$cli" log dump "$d"
expect_rc 2 "$cli" log check --repair "$d"

# While a writer has the directory, --repair and a second writer are
# refused (a plain check still reads).
w="$tmp/busy"
"$bench" --dir "$w" --entries 100000000 --size 100 --report-durable \
    >"$tmp/busy.out" 2>&1 &
bpid=$!
deadline=$(( $(date +%s) + 30 ))
until grep -q '^durable' "$tmp/busy.out"; do
    [ "$(date +%s)" -le "$deadline" ] || { kill -9 $bpid; fail "writer did not start"; }
    sleep 0.01
done
rc=0; "$cli" log check --repair "$w" >/dev/null 2>"$tmp/err" || rc=$?
rc2=0; "$bench" --dir "$w" --entries 1 --size 1 >/dev/null 2>"$tmp/err2" || rc2=$?
kill -9 $bpid
wait $bpid 2>/dev/null || true
[ "$rc" -eq 75 ] || fail "--repair on a directory in use exited $rc"
grep -q "in use" "$tmp/err" || fail "no 'in use' message: $(cat "$tmp/err")"
[ "$rc2" -ne 0 ] && grep -q "in use" "$tmp/err2" ||
    fail "a second writer was not refused: $(cat "$tmp/err2")"
# After the writer is gone (killed: the kernel dropped its lock) it works.
rc=0; "$cli" log check --repair "$w" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || fail "--repair after the writer died: $rc"

# Bad usage and missing directories.
expect_rc 64 "$cli" log check
expect_rc 64 "$cli" log dump "$d" --from x
expect_rc 64 "$cli" nosuchcommand
expect_rc 0 "$cli" log check --help
expect_rc 74 "$cli" log check "$tmp/nonexistent"
expect_rc 64 "$bench" --dir "$tmp/b" --entries 0 --size 1
echo "storage_cli: passed"
