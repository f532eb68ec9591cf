/*
 * tests/sim/random.c -- randomized fault schedules.
 *
 * A run is a pure function of its seed: the seed picks the cluster size
 * (unless given), the options (snapshot interval and trailing entries,
 * fsync delay, pre-vote and check-quorum), and a schedule of actions:
 * client proposals and ReadIndex reads, partitions (two random groups, an
 * isolated node, one-way links), crashes and restarts, link faults (loss,
 * duplication, delay, long reordering) and leadership transfers.  The
 * cluster checks its invariants after every event throughout.
 *
 * After the fault phase every fault is healed -- crashed nodes restart,
 * partitions close, the network turns reliable -- and the run must make
 * progress: a new command committed and applied on every node within the
 * classic 10 s, and a ReadIndex read served within 2 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "random.h"
#include "util/assert.h"
#include "util/encoding.h"

#define U(x) ((unsigned long long)(x))

/* How long a read may take to be served once the cluster is healthy: a
 * heartbeat round plus an election's worth of slack. */
#define READ_DEADLINE_MS 2000

static raft_id find_leader(struct sim_test *t)
{
    raft_id best = 0;
    raft_term best_term = 0;
    for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
        raft_term term;
        if (st_is_leader(t, i, &term) && term >= best_term) {
            best = i;
            best_term = term;
        }
    }
    return best;
}

/* A node to send a client request to: usually the leader, as a client
 * that follows redirects would, sometimes anyone. */
static raft_id pick_target(struct sim_test *t)
{
    raft_id leader = find_leader(t);
    if (leader != 0 && st_rand(t, 0, 100) < 75) {
        return leader;
    }
    return st_rand(t, 1, sim_n_nodes(t->c) + 1);
}

static void partition_random(struct sim_test *t)
{
    unsigned n = sim_n_nodes(t->c);
    uint64_t side = st_rand(t, 0, 1ull << n);
    for (raft_id i = 1; i <= n; i++) {
        for (raft_id j = 1; j <= n; j++) {
            bool same = ((side >> (i - 1)) & 1) == ((side >> (j - 1)) & 1);
            sim_link_set(t->c, i, j, same);
        }
    }
    sim_note(t->c, 0, "PARTITION %#llx", U(side));
}

static void heal_links(struct sim_test *t)
{
    unsigned n = sim_n_nodes(t->c);
    for (raft_id i = 1; i <= n; i++) {
        sim_connect(t->c, i);
        for (raft_id j = 1; j <= n; j++) {
            sim_link_set(t->c, i, j, true);
        }
    }
    sim_note(t->c, 0, "HEAL links");
}

static void random_link_faults(struct sim_test *t)
{
    struct sim_link_faults f;
    memset(&f, 0, sizeof f);
    f.drop_pm = (unsigned)st_rand(t, 0, 300);
    f.dup_pm = (unsigned)st_rand(t, 0, 200);
    f.delay_min_ms = (unsigned)st_rand(t, 0, 5);
    f.delay_max_ms = f.delay_min_ms + (unsigned)st_rand(t, 0, 60);
    f.long_reorder_pm = (unsigned)st_rand(t, 0, 300);
    if (st_rand(t, 0, 2) == 0) {
        sim_set_faults(t->c, &f);
        sim_note(t->c, 0, "faults: drop %u dup %u delay %u-%u reorder %u",
                 f.drop_pm, f.dup_pm, f.delay_min_ms, f.delay_max_ms,
                 f.long_reorder_pm);
    } else {
        unsigned n = sim_n_nodes(t->c);
        raft_id from = st_rand(t, 1, n + 1), to = st_rand(t, 1, n + 1);
        sim_set_link_faults(t->c, from, to, &f);
        sim_note(t->c, 0, "faults %llu->%llu: drop %u dup %u", U(from), U(to),
                 f.drop_pm, f.dup_pm);
    }
    sim_set_long_reordering(t->c, st_rand(t, 0, 3) == 0);
}

static void propose_some(struct sim_test *t)
{
    raft_id id = pick_target(t);
    unsigned k = (unsigned)st_rand(t, 1, 4);
    for (unsigned i = 0; i < k; i++) {
        sim_propose_u64(t->c, id, st_rand(t, 1, UINT64_MAX), NULL, NULL);
    }
}

/* One client action: proposals, or a ReadIndex read. */
static void client_action(struct sim_test *t)
{
    if (st_rand(t, 0, 100) < 75) {
        propose_some(t);
    } else {
        sim_read(t->c, pick_target(t), NULL);
    }
}

/* One fault action. */
static void fault_action(struct sim_test *t)
{
    unsigned n = sim_n_nodes(t->c);
    raft_id who = st_rand(t, 1, n + 1);
    uint64_t dice = st_rand(t, 0, 1000);
    if (dice < 150) {
        partition_random(t);
    } else if (dice < 250) {
        sim_disconnect(t->c, who);
    } else if (dice < 300) {
        raft_id to = st_rand(t, 1, n + 1);
        sim_link_set(t->c, who, to, false);
        sim_note(t->c, 0, "CUT %llu->%llu", U(who), U(to));
    } else if (dice < 480) {
        heal_links(t);
    } else if (dice < 600) {
        sim_crash(t->c, who);
    } else if (dice < 760) {
        if (!sim_is_up(t->c, who)) {
            sim_restart(t->c, who);
        }
    } else if (dice < 860) {
        random_link_faults(t);
    } else if (dice < 910) {
        sim_set_unreliable(t->c, st_rand(t, 0, 2) == 0);
    } else if (dice < 960) {
        raft_id leader = find_leader(t);
        if (leader != 0) {
            sim_transfer(t->c, leader, st_rand(t, 1, n + 1));
        }
    }
    /* else: a quiet spell. */
}

static void heal_all(struct sim_test *t)
{
    unsigned n = sim_n_nodes(t->c);
    for (raft_id i = 1; i <= n; i++) {
        if (!sim_is_up(t->c, i)) {
            sim_restart(t->c, i);
        }
    }
    heal_links(t);
    sim_set_unreliable(t->c, false);
    sim_set_long_reordering(t->c, false);
    sim_set_alloc_failures(t->c, 0);
}

struct read_wait {
    uint64_t served_before;
};

static bool read_served(struct sim_cluster *c, void *data)
{
    struct read_wait *w = data;
    struct sim_read_stats rs;
    sim_read_stats(c, &rs);
    return rs.served > w->served_before;
}

/* Every read issued before the faults healed at healed_at is answered by
 * now -- served, or refused so that the client can try elsewhere: a client
 * must never hang on a read once the cluster is healthy. */
static void check_reads_answered(struct sim_test *t, uint64_t healed_at)
{
    struct sim_read_stats rs;
    sim_read_stats(t->c, &rs);
    if (rs.oldest_pending < healed_at) {
        st_fail(t,
                "a read issued at %llu ms, before the faults healed at "
                "%llu ms, is still unanswered",
                U(rs.oldest_pending), U(healed_at));
    }
}

/* After healing: progress on every node and a fresh read. */
static void check_progress(struct sim_test *t)
{
    uint64_t healed_at = sim_now(t->c);
    unsigned n = sim_n_nodes(t->c);
    st_one(t, st_rand(t, 1, UINT64_MAX), n, true);
    for (int tries = 0; tries < 5; tries++) {
        raft_id leader = find_leader(t);
        if (leader == 0) {
            st_sleep(t, 200);
            continue;
        }
        struct read_wait w;
        struct sim_read_stats rs;
        sim_read_stats(t->c, &rs);
        w.served_before = rs.served;
        sim_read(t->c, leader, NULL);
        if (sim_run_until(t->c, read_served, &w, READ_DEADLINE_MS)) {
            check_reads_answered(t, healed_at);
            return;
        }
    }
    st_fail(t, "no ReadIndex read served after the faults healed");
}

/* What a random run's schedule function gets through t->user. */
struct random_ctx {
    struct sim_random_totals *tot;
    bool small_limits;
    bool alloc_failures;
};

/* ---- a small replicated state machine ----------------------------------
 *
 * Random runs host a ledger on every node through struct sim_app_ops, the
 * hook the KV scenarios use: a count, sum and xor of the commands applied,
 * snapshotted and restored with the register.  At the end, every node that
 * applied the same index must hold the same ledger. */

struct ledger {
    raft_index applied;
    uint64_t count, sum, xor;
};

#define LEDGER_BYTES 32

static void *ledger_open(void *data, raft_id id)
{
    (void)data;
    (void)id;
    return calloc(1, sizeof(struct ledger));
}

static void ledger_close(void *data, void *state)
{
    (void)data;
    free(state);
}

static void ledger_apply(void *data, void *state, const struct raft_entry *e)
{
    (void)data;
    struct ledger *l = state;
    l->applied = e->index;
    if (e->type == RAFT_ENTRY_COMMAND && e->buf.len >= 8) {
        uint64_t v = get_u64(e->buf.base);
        l->count++;
        l->sum += v;
        l->xor ^= v;
    }
}

static int ledger_snapshot(void *data, void *state, struct raft_buffer *out)
{
    (void)data;
    const struct ledger *l = state;
    uint8_t *b = malloc(LEDGER_BYTES);
    if (b == NULL) {
        return CRAFT_ENOMEM;
    }
    put_u64(b, l->applied);
    put_u64(b + 8, l->count);
    put_u64(b + 16, l->sum);
    put_u64(b + 24, l->xor);
    out->base = b;
    out->len = LEDGER_BYTES;
    return 0;
}

static int ledger_restore(void *data, void *state, const void *buf, size_t len)
{
    (void)data;
    struct ledger *l = state;
    if (len != LEDGER_BYTES) {
        return CRAFT_ECORRUPT;
    }
    const uint8_t *b = buf;
    l->applied = get_u64(b);
    l->count = get_u64(b + 8);
    l->sum = get_u64(b + 16);
    l->xor = get_u64(b + 24);
    return 0;
}

static const struct sim_app_ops ledger_ops = {
    .open = ledger_open,
    .close = ledger_close,
    .apply = ledger_apply,
    .snapshot = ledger_snapshot,
    .restore = ledger_restore,
};

static void check_ledgers(struct sim_test *t)
{
    const struct ledger *ref = NULL;
    for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
        const struct ledger *l = sim_app_state(t->c, i);
        if (l == NULL || l->applied != sim_applied(t->c, i)) {
            st_fail(t, "n%llu: ledger at %llu, register at %llu", U(i),
                    U(l ? l->applied : 0), U(sim_applied(t->c, i)));
        }
        if (ref != NULL && ref->applied == l->applied &&
            (ref->count != l->count || ref->sum != l->sum ||
             ref->xor != l->xor)) {
            st_fail(t, "ledgers differ at index %llu", U(l->applied));
        }
        if (ref == NULL || l->applied > ref->applied) {
            ref = l;
        }
    }
}

/* A served read sees the ledger at the index the cluster says it is at. */
static void ledger_read_cb(void *data, raft_id node, uint64_t ctx, int status,
                           raft_index applied)
{
    struct sim_test *t = data;
    if (status != 0) {
        return;
    }
    const struct ledger *l = sim_app_state(t->c, node);
    if (l == NULL || l->applied != applied) {
        st_fail(t,
                "n%llu: read #%llu served at %llu but the ledger is at "
                "%llu",
                U(node), U(ctx), U(applied), U(l ? l->applied : 0));
    }
}

static void random_schedule(struct sim_test *t)
{
    static const unsigned sizes[] = {3, 5, 7};
    static const unsigned snap_every[] = {0, 3, 10, 40};
    const struct random_ctx *ctx = t->user;
    struct sim_random_totals *tot = ctx != NULL ? ctx->tot : NULL;
    struct sim_options o;
    sim_options_init(&o);
    o.n_nodes = t->nodes ? t->nodes : sizes[st_rand(t, 0, 3)];
    o.seed = t->seed;
    o.verbose = t->verbose;
    o.inject = t->inject;
    o.fsync_min_ms = 0;
    o.fsync_max_ms = (unsigned)st_rand(t, 0, 10);
    o.snapshot_every = snap_every[st_rand(t, 0, 4)];
    o.snapshot_trailing = (unsigned)st_rand(t, 0, 6);
    o.raft.pre_vote = st_rand(t, 0, 5) != 0;
    o.raft.check_quorum = st_rand(t, 0, 5) != 0;
    /* Small limits in some runs: snapshots of many chunks (the ledger's
     * snapshot is 48 bytes), appends of a few entries, a short pipeline. */
    if (ctx != NULL && ctx->small_limits && st_rand(t, 0, 3) == 0) {
        o.raft.snapshot_chunk_bytes = st_rand(t, 1, 20);
        o.raft.max_msg_entries = (unsigned)st_rand(t, 1, 5);
        o.raft.max_inflight = (unsigned)st_rand(t, 1, 4);
    }
    o.app = &ledger_ops;
    o.read_cb = ledger_read_cb;
    o.apply_cb_data = t;
    int rv = sim_cluster_new(&o, &t->c);
    if (rv != 0) {
        st_fail(t, "sim_cluster_new: %s", craft_strerror(rv));
    }
    sim_set_fail_jump(t->c, &t->jb);
    sim_note(t->c, 0,
             "random run: %u nodes, snapshot every %u (+%u, chunks of %zu), "
             "fsync <= %u ms, pre-vote %d, check-quorum %d, %u entries "
             "per append, %u in flight",
             o.n_nodes, o.snapshot_every, o.snapshot_trailing,
             o.raft.snapshot_chunk_bytes, o.fsync_max_ms, o.raft.pre_vote,
             o.raft.check_quorum, o.raft.max_msg_entries, o.raft.max_inflight);
    if (st_rand(t, 0, 2) == 0) {
        sim_set_unreliable(t->c, true);
    }
    if (ctx != NULL && ctx->alloc_failures) {
        sim_set_alloc_failures(t->c, (unsigned)st_rand(t, 1, 30));
    }

    /* Clients act every 1-40 ms; faults strike every 20-400 ms. */
    uint64_t end = sim_now(t->c) + st_rand(t, 2000, 12000);
    uint64_t next_client = sim_now(t->c), next_fault = sim_now(t->c);
    while (sim_now(t->c) < end) {
        if (sim_now(t->c) >= next_client) {
            client_action(t);
            next_client = sim_now(t->c) + st_rand(t, 1, 41);
        }
        if (sim_now(t->c) >= next_fault) {
            fault_action(t);
            next_fault = sim_now(t->c) + st_rand(t, 20, 401);
        }
        uint64_t next = next_client < next_fault ? next_client : next_fault;
        st_sleep(t, next - sim_now(t->c));
    }
    heal_all(t);
    check_progress(t);
    check_ledgers(t);

    if (tot != NULL) {
        struct sim_read_stats rs;
        sim_read_stats(t->c, &rs);
        tot->sim_ms += sim_now(t->c);
        tot->events += sim_events(t->c);
        tot->commits += sim_commit_max(t->c);
        tot->reads_served += rs.served;
        tot->digest = tot->digest * 0x100000001B3ull ^ sim_digest(t->c);
    }
}

int sim_random_run(uint64_t seed, const struct sim_random_opts *opts,
                   struct sim_random_totals *tot)
{
    char replay[160];
    int len = snprintf(replay, sizeof replay,
                       "craft-sim --random --seed %llu --runs 1", U(seed));
    if (opts->nodes != 0) {
        len += snprintf(replay + len, sizeof replay - (size_t)len,
                        " --nodes %u", opts->nodes);
    }
    if (opts->small_limits) {
        len += snprintf(replay + len, sizeof replay - (size_t)len,
                        " --small-limits");
    }
    if (opts->alloc_failures) {
        snprintf(replay + len, sizeof replay - (size_t)len,
                 " --alloc-failures");
    }
    struct random_ctx ctx = {.tot = tot,
                             .small_limits = opts->small_limits,
                             .alloc_failures = opts->alloc_failures};
    struct sim_test proto;
    memset(&proto, 0, sizeof proto);
    proto.name = "random";
    proto.seed = seed;
    proto.nodes = opts->nodes;
    proto.verbose = opts->verbose;
    proto.replay = replay;
    proto.user = &ctx;
    int rv = sim_test_run(&proto, random_schedule, NULL);
    if (tot != NULL) {
        tot->runs++;
        tot->failures += rv != 0;
    }
    return rv;
}

int sim_selftest(const char *name, unsigned inject, uint64_t seed,
                 uint64_t runs, bool show_trace)
{
    for (uint64_t k = 0; k < runs; k++) {
        char replay[128];
        snprintf(replay, sizeof replay,
                 "craft-sim --selftest %s --seed %llu --runs 1", name,
                 U(seed + k));
        struct sim_test proto;
        memset(&proto, 0, sizeof proto);
        proto.name = "selftest";
        proto.seed = seed + k;
        proto.replay = replay;
        proto.inject = inject;
        proto.quiet = !show_trace;
        if (sim_test_run(&proto, random_schedule, NULL) != 0) {
            printf("selftest: the injected bug was caught in run %llu of "
                   "%llu (seed %llu)\n",
                   U(k + 1), U(runs), U(seed + k));
            return 0;
        }
    }
    printf("selftest: the injected bug went unnoticed in %llu runs\n", U(runs));
    return -1;
}

/* ---- the benchmark ------------------------------------------------------ */

struct bench {
    unsigned sim_seconds;
    uint64_t commits, events;
};

static void bench_schedule(struct sim_test *t)
{
    struct bench *b = t->user;
    /* Snapshots keep the logs short, as in any long-running deployment
     * (and keep the core's O(log) debug invariant checks cheap). */
    st_make(t, 5, false, true);
    struct sim_link_faults f;
    sim_faults_unreliable(&f);
    f.drop_pm = 20; /* 2% loss: faults, but a cluster that gets work done */
    sim_set_faults(t->c, &f);
    uint64_t end = (uint64_t)b->sim_seconds * 1000;
    uint64_t next_fault = 2000;
    bool faulty = false;
    while (sim_now(t->c) < end) {
        /* A client at the leader: one command every 10 ms, a read every
         * 50 ms. */
        raft_id leader = find_leader(t);
        if (leader != 0) {
            sim_propose_u64(t->c, leader, st_rand(t, 1, UINT64_MAX), NULL,
                            NULL);
            if (sim_now(t->c) % 50 < 10) {
                sim_read(t->c, leader, NULL);
            }
        }
        if (sim_now(t->c) >= next_fault) {
            if (faulty) {
                heal_all(t);
            } else if (st_rand(t, 0, 2) == 0) {
                sim_crash(t->c, st_rand(t, 1, 6));
            } else {
                sim_disconnect(t->c, st_rand(t, 1, 6));
            }
            faulty = !faulty;
            next_fault = sim_now(t->c) + st_rand(t, 1000, 3000);
        }
        st_sleep(t, 10);
    }
    heal_all(t);
    check_progress(t);
    b->commits = sim_commit_max(t->c);
    b->events = sim_events(t->c);
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int sim_bench(unsigned sim_seconds, uint64_t seed)
{
    char replay[128];
    snprintf(replay, sizeof replay, "craft-sim --bench %u --seed %llu",
             sim_seconds, U(seed));
    struct bench b = {.sim_seconds = sim_seconds};
    struct sim_test proto;
    memset(&proto, 0, sizeof proto);
    proto.name = "bench";
    proto.seed = seed;
    proto.replay = replay;
    proto.user = &b;
    double t0 = clock_seconds(CLOCK_MONOTONIC);
    double c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    int rv = sim_test_run(&proto, bench_schedule, NULL);
    double wall = clock_seconds(CLOCK_MONOTONIC) - t0;
    double cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (rv != 0) {
        return rv;
    }
    /* CPU time too: on a shared machine the wall clock also measures the
     * neighbours. */
    printf("bench: 5 nodes, %u simulated s in %.3f wall s (%.3f CPU s) = "
           "%.0fx real time (%.0fx per CPU second); %llu events, %llu "
           "entries committed\n",
           sim_seconds, wall, cpu, (double)sim_seconds / wall,
           (double)sim_seconds / cpu, U(b.events), U(b.commits));
    return 0;
}
