/*
 * A small seeded pseudo-random generator (splitmix64).  Deterministic for a
 * given seed on every platform, so a simulation replays from its seed.  Not
 * for cryptography.
 */
#ifndef CRAFT_UTIL_RNG_H
#define CRAFT_UTIL_RNG_H

#include <stdint.h>

struct rng {
    uint64_t state;
};

static inline void rng_init(struct rng *r, uint64_t seed)
{
    r->state = seed;
}

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A value in [lo, hi); lo when hi <= lo.  The modulo bias is below 2^-32 for
 * every range used here (all far below 2^32). */
static inline uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
    if (hi <= lo) {
        return lo;
    }
    return lo + rng_next(r) % (hi - lo);
}

/* True with probability per_mille / 1000. */
static inline int rng_chance(struct rng *r, unsigned per_mille)
{
    return rng_next(r) % 1000u < per_mille;
}

#endif /* CRAFT_UTIL_RNG_H */
