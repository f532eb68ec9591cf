/*
 * tests/sim/main.c -- craft-sim, the command line of the simulator.
 *
 *   craft-sim --list                      scenario names, one per line
 *   craft-sim --scenario NAME [--seed S] [--inject BUG]
 *                                         run one scenario (with one of
 *                                         the --selftest bugs: it should
 *                                         fail)
 *   craft-sim --all [--seed S]            run every scenario, timing each
 *   craft-sim --random --seed S --runs N [--nodes 3|5|7] [--small-limits]
 *             [--alloc-failures]
 *                                         N random fault schedules from S
 *   craft-sim --random --kv --seed S --runs N [--nodes 3|5|7]
 *                                         N random KV workloads with faults
 *   craft-sim --soak SECONDS [--seed S] [--nodes N] [--kv]
 *                                         random runs for a wall-clock time
 *   craft-sim --bench SIM_SECONDS [--seed S]
 *                                         simulated time per wall second
 *   --verbose prints every trace line as it happens.
 *
 * Exit status: 0 pass, 1 a run failed, 2 bad usage.  A failure prints its
 * reason, the last events as a trace and a command line that replays it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_random.h"
#include "kv_world.h"
#include "random.h"
#include "scenarios.h"
#include "util/assert.h"

#define U(x) ((unsigned long long)(x))

#define SIM__ENTRY(name) {#name, sc_##name},
const struct sim_scenario sim_scenarios[] = {SIM_SCENARIOS(SIM__ENTRY)
                                                 SIM_KV_SCENARIOS(SIM__ENTRY)};
#undef SIM__ENTRY
const size_t sim_n_scenarios = sizeof sim_scenarios / sizeof sim_scenarios[0];

enum mode {
    MODE_NONE,
    MODE_LIST,
    MODE_SCENARIO,
    MODE_ALL,
    MODE_RANDOM,
    MODE_SOAK,
    MODE_BENCH,
    MODE_SELFTEST
};

/* The deliberate bugs of --selftest. */
static const struct {
    const char *name;
    unsigned inject;
} injections[] = {
    {"forget-vote", SIM_INJECT_FORGET_VOTE},
    {"lose-tail", SIM_INJECT_LOSE_TAIL},
    {"corrupt", SIM_INJECT_CORRUPT},
    {"early-ack", SIM_INJECT_EARLY_ACK},
    {"local-read", SIM_INJECT_LOCAL_READ},
    {"kv-no-session", KV_INJECT_NO_SESSION},
    {"kv-local-read", KV_INJECT_LOCAL_READ},
    {"kv-early-reply", KV_INJECT_EARLY_REPLY},
};

struct args {
    enum mode mode;
    const char *scenario;
    uint64_t seed;
    uint64_t runs;
    uint64_t seconds;
    unsigned nodes;
    bool verbose;
    unsigned inject;
    const char *inject_name;
    bool small_limits;
    bool alloc_failures;
    bool kv;
    bool inject_given; /* --inject, for --scenario */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: craft-sim --list\n"
               "       craft-sim --scenario NAME [--seed S] [--inject BUG] "
               "[--verbose]\n"
               "       craft-sim --all [--seed S]\n"
               "       craft-sim --random --seed S --runs N [--nodes 3|5|7] "
               "[--small-limits] [--alloc-failures] [--verbose]\n"
               "       craft-sim --random --kv --seed S --runs N "
               "[--nodes 3|5|7] [--verbose]\n"
               "       craft-sim --soak SECONDS [--seed S] [--nodes 3|5|7] "
               "[--small-limits | --kv]\n"
               "       craft-sim --bench SIM_SECONDS [--seed S]\n"
               "       craft-sim --selftest "
               "forget-vote|lose-tail|corrupt|early-ack|local-read|"
               "kv-no-session|kv-local-read|kv-early-reply "
               "[--seed S] [--runs N]\n");
}

static int parse_u64(const char *flag, const char *s, uint64_t *out)
{
    if (s == NULL) {
        fprintf(stderr, "craft-sim: %s needs a value\n", flag);
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        fprintf(stderr, "craft-sim: %s: not a number: '%s'\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int set_mode(struct args *a, enum mode m, const char *flag)
{
    if (a->mode != MODE_NONE) {
        fprintf(stderr, "craft-sim: %s conflicts with an earlier mode\n", flag);
        return -1;
    }
    a->mode = m;
    return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->seed = 1;
    bool seed_given = false, runs_given = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x;
        int rv = 0;
        if (strcmp(f, "--list") == 0) {
            rv = set_mode(a, MODE_LIST, f);
        } else if (strcmp(f, "--all") == 0) {
            rv = set_mode(a, MODE_ALL, f);
        } else if (strcmp(f, "--random") == 0) {
            rv = set_mode(a, MODE_RANDOM, f);
        } else if (strcmp(f, "--verbose") == 0) {
            a->verbose = true;
        } else if (strcmp(f, "--small-limits") == 0) {
            a->small_limits = true;
        } else if (strcmp(f, "--alloc-failures") == 0) {
            a->alloc_failures = true;
        } else if (strcmp(f, "--kv") == 0) {
            a->kv = true;
        } else if (strcmp(f, "--scenario") == 0) {
            rv = set_mode(a, MODE_SCENARIO, f);
            if (rv == 0 && v == NULL) {
                fprintf(stderr, "craft-sim: --scenario needs a name\n");
                rv = -1;
            }
            a->scenario = v;
            i++;
        } else if (strcmp(f, "--seed") == 0) {
            rv = parse_u64(f, v, &a->seed);
            seed_given = true;
            i++;
        } else if (strcmp(f, "--runs") == 0) {
            rv = parse_u64(f, v, &a->runs);
            runs_given = true;
            i++;
        } else if (strcmp(f, "--nodes") == 0) {
            rv = parse_u64(f, v, &x);
            if (rv == 0 && x != 3 && x != 5 && x != 7) {
                fprintf(stderr, "craft-sim: --nodes must be 3, 5 or 7\n");
                rv = -1;
            }
            a->nodes = (unsigned)x;
            i++;
        } else if (strcmp(f, "--soak") == 0 || strcmp(f, "--bench") == 0) {
            rv = set_mode(a, f[2] == 's' ? MODE_SOAK : MODE_BENCH, f);
            if (rv == 0) {
                rv = parse_u64(f, v, &a->seconds);
            }
            if (rv == 0 && (a->seconds == 0 || a->seconds > 1000000)) {
                fprintf(stderr, "craft-sim: %s: 1 to 1000000 seconds\n", f);
                rv = -1;
            }
            i++;
        } else if (strcmp(f, "--selftest") == 0 || strcmp(f, "--inject") == 0) {
            if (f[2] == 's') {
                rv = set_mode(a, MODE_SELFTEST, f);
            } else {
                a->inject_given = true;
            }
            for (size_t k = 0; rv == 0 && k < CRAFT_ARRAY_LEN(injections);
                 k++) {
                if (v != NULL && strcmp(v, injections[k].name) == 0) {
                    a->inject = injections[k].inject;
                    a->inject_name = injections[k].name;
                }
            }
            if (rv == 0 && a->inject == 0) {
                fprintf(stderr,
                        "craft-sim: %s needs forget-vote, lose-tail, "
                        "corrupt, early-ack, local-read, kv-no-session, "
                        "kv-local-read or kv-early-reply\n",
                        f);
                rv = -1;
            }
            i++;
        } else if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "craft-sim: unknown argument '%s'\n", f);
            rv = -1;
        }
        if (rv != 0) {
            return -1;
        }
    }
    if (a->mode == MODE_NONE) {
        fprintf(stderr, "craft-sim: no mode given\n");
        return -1;
    }
    if (a->mode == MODE_RANDOM && (!seed_given || !runs_given)) {
        fprintf(stderr, "craft-sim: --random needs --seed and --runs\n");
        return -1;
    }
    if (a->inject_given && a->mode != MODE_SCENARIO) {
        fprintf(stderr, "craft-sim: --inject goes with --scenario only\n");
        return -1;
    }
    if (a->kv && ((a->mode != MODE_RANDOM && a->mode != MODE_SOAK) ||
                  a->small_limits || a->alloc_failures)) {
        fprintf(stderr, "craft-sim: --kv goes with --random or --soak only "
                        "(without --small-limits and --alloc-failures)\n");
        return -1;
    }
    return 0;
}

static const struct sim_scenario *find_scenario(const char *name)
{
    for (size_t i = 0; i < sim_n_scenarios; i++) {
        if (strcmp(sim_scenarios[i].name, name) == 0) {
            return &sim_scenarios[i];
        }
    }
    return NULL;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_scenario(const struct sim_scenario *s, uint64_t seed,
                        const struct args *a, double *wall,
                        struct sim_run_stats *stats)
{
    char replay[200];
    snprintf(replay, sizeof replay, "craft-sim --scenario %s --seed %llu%s%s",
             s->name, U(seed), a->inject_given ? " --inject " : "",
             a->inject_given ? a->inject_name : "");
    struct sim_test proto;
    memset(&proto, 0, sizeof proto);
    proto.name = s->name;
    proto.seed = seed;
    proto.verbose = a->verbose;
    proto.replay = replay;
    proto.inject = a->inject_given ? a->inject : 0;
    double t0 = wall_now();
    int rv = sim_test_run(&proto, s->fn, stats);
    *wall = wall_now() - t0;
    return rv;
}

static int cmd_all(const struct args *a)
{
    double total = 0;
    unsigned failed = 0;
    for (size_t i = 0; i < sim_n_scenarios; i++) {
        double wall;
        struct sim_run_stats st = {0, 0};
        int rv = run_scenario(&sim_scenarios[i], a->seed, a, &wall, &st);
        total += wall;
        failed += rv != 0;
        printf("%-32s %s %7.3f s wall %8.1f s simulated %9llu events\n",
               sim_scenarios[i].name, rv == 0 ? "ok  " : "FAIL", wall,
               (double)st.sim_ms / 1000.0, U(st.events));
        fflush(stdout);
    }
    printf("%zu scenarios, %u failed, %.3f s wall\n", sim_n_scenarios, failed,
           total);
    return failed == 0 ? 0 : 1;
}

static void print_totals(const struct sim_random_totals *tot, double wall)
{
    printf("%llu runs, %llu failed; %.1f simulated s in %.2f wall s (%.0fx); "
           "%llu events, %llu entries committed, %llu reads served\n",
           U(tot->runs), U(tot->failures), (double)tot->sim_ms / 1000.0, wall,
           wall > 0 ? (double)tot->sim_ms / 1000.0 / wall : 0.0, U(tot->events),
           U(tot->commits), U(tot->reads_served));
    printf("digest %016llx\n", U(tot->digest));
}

static void print_kv_totals(const struct kv_random_totals *tot, double wall)
{
    printf("%llu KV runs, %llu failed; %.1f simulated s in %.2f wall s; "
           "%llu events; %llu operations checked, %llu with unknown "
           "outcome\n",
           U(tot->runs), U(tot->failures), (double)tot->sim_ms / 1000.0, wall,
           U(tot->events), U(tot->ops), U(tot->unknown));
    printf("digest %016llx\n", U(tot->digest));
}

static int cmd_random_kv(const struct args *a)
{
    struct kv_random_opts o = {a->nodes, a->verbose, false, 0, NULL};
    struct kv_random_totals tot;
    memset(&tot, 0, sizeof tot);
    double t0 = wall_now();
    for (uint64_t k = 0; k < a->runs; k++) {
        kv_random_run(a->seed + k, &o, &tot);
    }
    print_kv_totals(&tot, wall_now() - t0);
    return tot.failures == 0 ? 0 : 1;
}

static int cmd_soak_kv(const struct args *a)
{
    struct kv_random_opts o = {a->nodes, a->verbose, false, 0, NULL};
    struct kv_random_totals tot;
    memset(&tot, 0, sizeof tot);
    double t0 = wall_now(), last = t0;
    uint64_t seed = a->seed;
    while (wall_now() - t0 < (double)a->seconds) {
        kv_random_run(seed++, &o, &tot);
        if (wall_now() - last >= 10.0) {
            last = wall_now();
            print_kv_totals(&tot, last - t0);
            fflush(stdout);
        }
    }
    print_kv_totals(&tot, wall_now() - t0);
    printf("seeds %llu..%llu\n", U(a->seed), U(seed - 1));
    return tot.failures == 0 ? 0 : 1;
}

static int cmd_random(const struct args *a)
{
    if (a->kv) {
        return cmd_random_kv(a);
    }
    struct sim_random_opts ro = {a->nodes, a->verbose, a->small_limits,
                                 a->alloc_failures};
    struct sim_random_totals tot;
    memset(&tot, 0, sizeof tot);
    double t0 = wall_now();
    for (uint64_t k = 0; k < a->runs; k++) {
        sim_random_run(a->seed + k, &ro, &tot);
    }
    print_totals(&tot, wall_now() - t0);
    return tot.failures == 0 ? 0 : 1;
}

static int cmd_soak(const struct args *a)
{
    if (a->kv) {
        return cmd_soak_kv(a);
    }
    struct sim_random_opts ro = {a->nodes, a->verbose, a->small_limits,
                                 a->alloc_failures};
    struct sim_random_totals tot;
    memset(&tot, 0, sizeof tot);
    double t0 = wall_now(), last = t0;
    uint64_t seed = a->seed;
    while (wall_now() - t0 < (double)a->seconds) {
        sim_random_run(seed++, &ro, &tot);
        if (wall_now() - last >= 10.0) {
            last = wall_now();
            print_totals(&tot, last - t0);
            fflush(stdout);
        }
    }
    print_totals(&tot, wall_now() - t0);
    printf("seeds %llu..%llu\n", U(a->seed), U(seed - 1));
    return tot.failures == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct args a;
    if (parse_args(argc, argv, &a) != 0) {
        usage(stderr);
        return 2;
    }
    switch (a.mode) {
    case MODE_NONE:
        return 2;
    case MODE_LIST:
        for (size_t i = 0; i < sim_n_scenarios; i++) {
            printf("%s\n", sim_scenarios[i].name);
        }
        return 0;
    case MODE_SCENARIO: {
        const struct sim_scenario *s = find_scenario(a.scenario);
        if (s == NULL) {
            fprintf(stderr, "craft-sim: no scenario '%s' (see --list)\n",
                    a.scenario);
            return 2;
        }
        double wall;
        struct sim_run_stats st = {0, 0};
        int rv = run_scenario(s, a.seed, &a, &wall, &st);
        printf("%s: %s (seed %llu, %.3f s wall, %.1f s simulated, %llu "
               "events)\n",
               s->name, rv == 0 ? "ok" : "FAIL", U(a.seed), wall,
               (double)st.sim_ms / 1000.0, U(st.events));
        return rv == 0 ? 0 : 1;
    }
    case MODE_ALL:
        return cmd_all(&a);
    case MODE_RANDOM:
        return cmd_random(&a);
    case MODE_SOAK:
        return cmd_soak(&a);
    case MODE_BENCH:
        return sim_bench((unsigned)a.seconds, a.seed) == 0 ? 0 : 1;
    case MODE_SELFTEST:
        if (a.inject & KV_INJECT_MASK) {
            return kv_selftest(a.inject_name, a.inject, a.seed,
                               a.runs ? a.runs : 200, a.verbose) == 0
                       ? 0
                       : 1;
        }
        return sim_selftest(a.inject_name, a.inject, a.seed,
                            a.runs ? a.runs : 200, a.verbose) == 0
                   ? 0
                   : 1;
    }
    return 2;
}
