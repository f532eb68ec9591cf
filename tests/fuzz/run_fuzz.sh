#!/bin/sh
# run_fuzz.sh BINARY WORKDIR SECONDS: run one libFuzzer target for SECONDS.
# WORKDIR/<target>/ keeps the corpus it grows (kept between runs), the
# seeds the target writes itself (fuzz.h) and any crashing input, whose
# path libFuzzer prints; replay one with `BINARY FILE`.
set -eu
bin=$1
work=$2/$(basename "$bin")
secs=$3
mkdir -p "$work/corpus" "$work/seeds" "$work/crashes"
CRAFT_FUZZ_SEEDS="$work/seeds" "$bin"
# -timeout: one input taking over 10 s is a finding (a hang).
# -rss_limit_mb: the decoders must not allocate what a length field claims.
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/" \
    "$work/corpus" "$work/seeds"
