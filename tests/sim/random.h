/*
 * tests/sim/random.h -- randomized fault schedules and the throughput
 * benchmark.
 */
#ifndef CRAFT_SIM_RANDOM_H
#define CRAFT_SIM_RANDOM_H

#include <stdbool.h>
#include <stdint.h>

/* Totals over random runs, for the summary line. */
struct sim_random_totals {
    uint64_t runs, failures;
    uint64_t sim_ms, events, commits, reads_served;
    uint64_t digest; /* of every run in order: equal for equal seeds */
};

struct sim_random_opts {
    unsigned nodes; /* 3, 5 or 7; 0 lets the seed choose */
    bool verbose;   /* stream the trace */
    /* In about a third of the runs, tiny core limits: snapshot chunks of a
     * few bytes, 1-4 entries per append, 1-3 appends in flight. */
    bool small_limits;
    /* Core allocations fail now and then during the fault phase. */
    bool alloc_failures;
};

/* One randomized run: a random fault phase, then every fault healed and
 * progress required.  Returns 0 or -1 (after printing the reason, trace
 * and replay command).  tot may be NULL. */
int sim_random_run(uint64_t seed, const struct sim_random_opts *opts,
                   struct sim_random_totals *tot);

/* Check the checkers: random runs with a deliberate runtime bug (enum
 * sim_inject bits) must end in a reported violation within `runs` runs.
 * Returns 0 when one was reported, -1 when the bug went unnoticed.  The
 * trace of the failure is printed only with show_trace. */
int sim_selftest(const char *name, unsigned inject, uint64_t seed,
                 uint64_t runs, bool show_trace);

/* 5 nodes, steady proposals and reads, an unreliable network with
 * partitions and crashes, for sim_seconds of simulated time; prints
 * simulated seconds per wall-clock second.  Returns 0 or -1. */
int sim_bench(unsigned sim_seconds, uint64_t seed);

#endif /* CRAFT_SIM_RANDOM_H */
