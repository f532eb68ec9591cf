/*
 * tests/sim/kv_random.h -- randomized KV workloads with faults, and the
 * self-test of the KV checks (see kv_random.c).
 */
#ifndef CRAFT_SIM_KV_RANDOM_H
#define CRAFT_SIM_KV_RANDOM_H

#include <stdbool.h>
#include <stdint.h>

struct kv_random_totals {
    uint64_t runs, failures;
    uint64_t sim_ms, events;
    uint64_t ops, unknown; /* operations checked; with unknown outcome */
    uint64_t digest;       /* of every run in order: equal for equal seeds */
};

struct kv_random_opts {
    unsigned nodes;          /* 3, 5 or 7; 0 lets the seed choose */
    bool verbose;            /* stream the trace */
    bool quiet;              /* on failure print only the reason */
    unsigned inject;         /* enum kv_inject / sim_inject bits */
    const char *inject_name; /* for the replay line of a self-test */
};

/* One randomized KV run.  Returns 0 or -1 (after printing the reason, the
 * trace and the replay command).  tot may be NULL. */
int kv_random_run(uint64_t seed, const struct kv_random_opts *opts,
                  struct kv_random_totals *tot);

/* Random KV runs with a deliberate bug (enum kv_inject bits) must end in a
 * reported violation within `runs` runs: 0 when one was, -1 otherwise. */
int kv_selftest(const char *name, unsigned inject, uint64_t seed, uint64_t runs,
                bool show_trace);

#endif /* CRAFT_SIM_KV_RANDOM_H */
