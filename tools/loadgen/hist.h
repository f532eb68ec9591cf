/*
 * A latency histogram with bounded relative error (the HdrHistogram idea,
 * reduced to what a load generator needs).
 *
 * Values are nanoseconds.  Below 128 ns every value has its own bucket;
 * above, each power of two is split into 64 buckets, so a reported
 * percentile is within 1/64 (1.6 %) of the true value.  Values up to 2^41 ns
 * (about 37 minutes) are kept; larger ones land in the last bucket.  The
 * exact minimum and maximum are kept besides.
 *
 * Invariants:
 *   1. count == the sum of buckets[].
 *   2. count == 0, or min <= every recorded value <= max.
 */
#ifndef CRAFT_LOADGEN_HIST_H
#define CRAFT_LOADGEN_HIST_H

#include <stdint.h>

/* 128 exact buckets, then 64 per power of two for 2^7 .. 2^40. */
#define HIST_LINEAR 128u
#define HIST_SUB 64u
#define HIST_SHIFT_MAX 35u
#define HIST_BUCKETS (HIST_LINEAR + HIST_SHIFT_MAX * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t min_ns;
    uint64_t max_ns;
    uint64_t buckets[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t ns);

/* Add every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile p (0 < p <= 100): the smallest bucket value v such
 * that at least p % of the recorded values are <= v (the bucket's upper
 * bound, clamped to [min, max]).  0 when the histogram is empty. */
uint64_t hist_percentile(const struct hist *h, double p);

/* Exposed for tests: the bucket of a value and a bucket's value range. */
unsigned hist_bucket(uint64_t ns);
uint64_t hist_bucket_low(unsigned idx);
uint64_t hist_bucket_high(unsigned idx);

#endif /* CRAFT_LOADGEN_HIST_H */
