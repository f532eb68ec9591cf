/*
 * Log-linear latency histogram; see hist.h for the error bound.
 */
#include "hist.h"

#include <string.h>

#include "util/assert.h"

_Static_assert(HIST_LINEAR == 2 * HIST_SUB, "a linear range of two octaves");

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min_ns = UINT64_MAX;
}

static unsigned msb(uint64_t v)
{
    CRAFT_ASSERT(v != 0);
    return 63u - (unsigned)__builtin_clzll(v);
}

unsigned hist_bucket(uint64_t ns)
{
    if (ns < HIST_LINEAR) {
        return (unsigned)ns;
    }
    /* shift >= 1 because msb(ns) >= 7; ns >> shift is in [64, 128). */
    unsigned shift = msb(ns) - 6u;
    if (shift > HIST_SHIFT_MAX) {
        return HIST_BUCKETS - 1;
    }
    unsigned mant = (unsigned)(ns >> shift);
    CRAFT_DASSERT(mant >= HIST_SUB && mant < 2 * HIST_SUB);
    unsigned idx = HIST_LINEAR + (shift - 1u) * HIST_SUB + (mant - HIST_SUB);
    CRAFT_ASSERT(idx < HIST_BUCKETS);
    return idx;
}

uint64_t hist_bucket_low(unsigned idx)
{
    CRAFT_ASSERT(idx < HIST_BUCKETS);
    if (idx < HIST_LINEAR) {
        return idx;
    }
    unsigned shift = (idx - HIST_LINEAR) / HIST_SUB + 1u;
    uint64_t mant = (idx - HIST_LINEAR) % HIST_SUB + HIST_SUB;
    return mant << shift;
}

uint64_t hist_bucket_high(unsigned idx)
{
    CRAFT_ASSERT(idx < HIST_BUCKETS);
    if (idx < HIST_LINEAR) {
        return idx;
    }
    unsigned shift = (idx - HIST_LINEAR) / HIST_SUB + 1u;
    return hist_bucket_low(idx) + (UINT64_C(1) << shift) - 1u;
}

void hist_record(struct hist *h, uint64_t ns)
{
    h->buckets[hist_bucket(ns)]++;
    h->count++;
    if (ns < h->min_ns) {
        h->min_ns = ns;
    }
    if (ns > h->max_ns) {
        h->max_ns = ns;
    }
    CRAFT_ASSERT(h->min_ns <= h->max_ns);
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    CRAFT_ASSERT(dst != src);
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    if (src->count > 0) {
        dst->min_ns = src->min_ns < dst->min_ns ? src->min_ns : dst->min_ns;
        dst->max_ns = src->max_ns > dst->max_ns ? src->max_ns : dst->max_ns;
    }
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    CRAFT_ASSERT(p > 0.0 && p <= 100.0);
    if (h->count == 0) {
        return 0;
    }
    /* The rank of the wanted value, 1-based: ceil(p% of count). */
    double exact = (double)h->count * p / 100.0;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact) {
        rank++;
    }
    if (rank == 0) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            v = v > h->max_ns ? h->max_ns : v;
            return v < h->min_ns ? h->min_ns : v;
        }
    }
    CRAFT_UNREACHABLE();
    return h->max_ns;
}
