/*
 * tests/sim/kv_scenarios.c -- the classic KV service scenarios (reference
 * §4, Lab 3A/3B), one function each, named after the original in snake
 * case, on the simulated KV store of kv_world.h.
 *
 * GenericTest and its variants keep the original's shape: 3 rounds of 5 s
 * of client load (new clerks each round), with partitions every 1-1.2 s
 * after 1 s of quiet, or a crash of every server at the end of a round;
 * then each client's key must hold all its appends exactly once and in
 * order, the Raft state must stay under 8 x maxraftstate (or no snapshot
 * may exist without one), and the whole history must be linearizable.
 * The special tests (Speed, UnreliableOneKey, OnePartition, SnapshotRPC,
 * SnapshotSize) keep their steps and bounds, in simulated time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_world.h"
#include "scenarios.h"
#include "util/assert.h"

/* config.go's electionTimeout: the pause between the test's steps. */
#define KV_ELECTION_MS 1000
/* The classic tests' maxraftstate for 3B. */
#define KV_MAXRAFTSTATE 1000
/* How long the end of a round may wait for the clients' last operations
 * (the original has only the 120 s test limit). */
#define KV_DRAIN_MS 60000

/* ---- checks on appended values ------------------------------------------ */

/* checkClntAppends: "x <clnt> <j> y" for every j < count, each exactly
 * once, in order. */
static void check_appends(struct kv_world *w, unsigned clnt, const char *v,
                          unsigned count)
{
    const char *last = NULL;
    for (unsigned j = 0; j < count; j++) {
        char wanted[48];
        snprintf(wanted, sizeof wanted, "x %u %u y", clnt, j);
        const char *at = strstr(v, wanted);
        if (at == NULL) {
            sim_fail(kv_cluster(w), "client %u: missing element %s", clnt,
                     wanted);
        }
        if (strstr(at + 1, wanted) != NULL) {
            sim_fail(kv_cluster(w), "client %u: duplicate element %s", clnt,
                     wanted);
        }
        if (last != NULL && at <= last) {
            sim_fail(kv_cluster(w), "client %u: %s out of order", clnt, wanted);
        }
        last = at;
    }
}

/* ---- GenericTest -------------------------------------------------------- */

struct generic {
    unsigned nclients, nservers;
    bool unreliable, crash, partitions, randomkeys;
    size_t maxraftstate; /* 0: -1 in the original */
};

struct gen_client {
    struct kv_world *w;
    struct sim_test *t;
    const struct generic *g;
    unsigned cli;
    unsigned j;    /* appends (and puts) done */
    bool last_get; /* the operation that just completed was a Get */
    char key[16];
    char *last; /* expected value of key (not randomkeys) */
    size_t last_len;
    bool *done; /* the round is over: start nothing new */
};

static void gen_next(struct kv_clerk *ck, void *data)
{
    struct gen_client *gc = data;
    const struct generic *g = gc->g;
    if (gc->last_get && !g->randomkeys &&
        strcmp(kv_result(ck), gc->last) != 0) {
        sim_fail(kv_cluster(gc->w),
                 "get wrong value, key %s: wanted %zu bytes \"%.60s...\", "
                 "got %zu bytes \"%.60s...\"",
                 gc->key, strlen(gc->last), gc->last, strlen(kv_result(ck)),
                 kv_result(ck));
    }
    gc->last_get = false;
    if (*gc->done) {
        return;
    }
    if (g->randomkeys) {
        snprintf(gc->key, sizeof gc->key, "%u",
                 (unsigned)st_rand(gc->t, 0, g->nclients));
    }
    char nv[48];
    snprintf(nv, sizeof nv, "x %u %u y", gc->cli, gc->j);
    if (st_rand(gc->t, 0, 1000) < 500) {
        kv_start(ck, KV_APPEND, gc->key, nv, gen_next, gc);
        if (!g->randomkeys) {
            size_t n = strlen(nv);
            gc->last = realloc(gc->last, gc->last_len + n + 1);
            CRAFT_ASSERT(gc->last != NULL);
            memcpy(gc->last + gc->last_len, nv, n + 1);
            gc->last_len += n;
        }
        gc->j++;
    } else if (g->randomkeys && st_rand(gc->t, 0, 1000) < 100) {
        kv_start(ck, KV_PUT, gc->key, nv, gen_next, gc);
        gc->j++;
    } else {
        gc->last_get = true;
        kv_start(ck, KV_GET, gc->key, NULL, gen_next, gc);
    }
}

/* The partitioner: every 1 s + 0-199 ms each server joins one of two
 * random groups, for `ms` in all. */
static void partitioner(struct sim_test *t, struct kv_world *w,
                        unsigned nservers, uint64_t ms)
{
    uint64_t end = sim_now(kv_cluster(w)) + ms;
    while (sim_now(kv_cluster(w)) < end) {
        unsigned group[SIM_NODES_MAX];
        for (unsigned i = 0; i < nservers; i++) {
            group[i] = (unsigned)st_rand(t, 0, 2);
        }
        kv_partition(w, group);
        uint64_t pause = KV_ELECTION_MS + st_rand(t, 0, 200);
        uint64_t left = end - sim_now(kv_cluster(w));
        kv_run_for(w, pause < left ? pause : left);
    }
}

struct gen_round {
    unsigned n;
    struct gen_client *gcs;
    bool done; /* the round is over: clients start nothing new */
};

static void gen_round_free(void *arg)
{
    struct gen_round *r = arg;
    for (unsigned i = 0; i < r->n; i++) {
        free(r->gcs[i].last);
    }
    free(r->gcs);
    free(r);
}

static void generic_round(struct sim_test *t, struct kv_world *w,
                          const struct generic *g, struct kv_clerk *ck)
{
    /* Freed with the world: a failed check unwinds past this function.
     * The clients' callbacks may still run after it returns. */
    struct gen_round *r = calloc(1, sizeof *r);
    CRAFT_ASSERT(r != NULL);
    r->gcs = calloc(g->nclients, sizeof *r->gcs);
    CRAFT_ASSERT(r->gcs != NULL);
    r->n = g->nclients;
    kv_defer(w, gen_round_free, r);
    struct gen_client *gcs = r->gcs;
    bool *done = &r->done;
    for (unsigned i = 0; i < g->nclients; i++) {
        struct gen_client *gc = &gcs[i];
        *gc = (struct gen_client){.w = w, .t = t, .g = g, .cli = i};
        gc->done = done;
        gc->last = calloc(1, 1);
        CRAFT_ASSERT(gc->last != NULL);
        snprintf(gc->key, sizeof gc->key, "%u", i);
        struct kv_clerk *my = kv_clerk_new(w);
        if (!g->randomkeys) {
            kv_start(my, KV_PUT, gc->key, "", gen_next, gc);
        } else {
            gen_next(my, gc);
        }
    }
    if (g->partitions) {
        kv_run_for(w, 1000);
        partitioner(t, w, g->nservers, 5000);
    } else {
        kv_run_for(w, 5000);
    }
    *done = true;
    if (g->partitions) {
        kv_connect_all(w);
        kv_run_for(w, KV_ELECTION_MS);
    }
    if (g->crash) {
        for (raft_id id = 1; id <= g->nservers; id++) {
            kv_crash(w, id);
        }
        kv_run_for(w, KV_ELECTION_MS);
        for (raft_id id = 1; id <= g->nservers; id++) {
            kv_restart(w, id);
        }
    }
    if (!kv_wait_all(w, KV_DRAIN_MS)) {
        sim_fail(kv_cluster(w), "clients did not finish within %d ms",
                 KV_DRAIN_MS);
    }
    for (unsigned i = 0; i < g->nclients; i++) {
        char key[16];
        snprintf(key, sizeof key, "%u", i);
        const char *v = kv_get(w, ck, key);
        if (!g->randomkeys) {
            check_appends(w, i, v, gcs[i].j);
        }
    }
    if (g->maxraftstate > 0 && kv_log_size(w) > 8 * g->maxraftstate) {
        sim_fail(kv_cluster(w), "logs were not trimmed (%zu > 8*%zu)",
                 kv_log_size(w), g->maxraftstate);
    }
    if (g->maxraftstate == 0 && kv_any_snapshot(w)) {
        sim_fail(kv_cluster(w), "snapshot with maxraftstate -1");
    }
}

static void generic_body(struct sim_test *t, struct kv_world *w, void *arg)
{
    const struct generic *g = arg;
    struct kv_clerk *ck = kv_clerk_new(w);
    for (int round = 0; round < 3; round++) {
        sim_note(kv_cluster(w), 0, "round %d", round);
        generic_round(t, w, g, ck);
    }
    kv_check_linearizable(w);
}

static void generic(struct sim_test *t, unsigned nclients, unsigned nservers,
                    bool unreliable, bool crash, bool partitions,
                    size_t maxraftstate, bool randomkeys)
{
    struct generic g = {nclients,   nservers,   unreliable,  crash,
                        partitions, randomkeys, maxraftstate};
    struct kv_world_opts o = {nservers, unreliable, maxraftstate};
    kv_scenario_run(t, &o, generic_body, &g);
}

/* ---- 3A ----------------------------------------------------------------- */

void sc_basic_3a(struct sim_test *t)
{
    generic(t, 1, 5, false, false, false, 0, false);
}

void sc_concurrent_3a(struct sim_test *t)
{
    generic(t, 5, 5, false, false, false, 0, false);
}

void sc_unreliable_3a(struct sim_test *t)
{
    generic(t, 5, 5, true, false, false, 0, false);
}

void sc_many_partitions_one_client_3a(struct sim_test *t)
{
    generic(t, 1, 5, false, false, true, 0, false);
}

void sc_many_partitions_many_clients_3a(struct sim_test *t)
{
    generic(t, 5, 5, false, false, true, 0, false);
}

void sc_persist_one_client_3a(struct sim_test *t)
{
    generic(t, 1, 5, false, true, false, 0, false);
}

void sc_persist_concurrent_3a(struct sim_test *t)
{
    generic(t, 5, 5, false, true, false, 0, false);
}

void sc_persist_concurrent_unreliable_3a(struct sim_test *t)
{
    generic(t, 5, 5, true, true, false, 0, false);
}

void sc_persist_partition_3a(struct sim_test *t)
{
    generic(t, 5, 5, false, true, true, 0, false);
}

void sc_persist_partition_unreliable_3a(struct sim_test *t)
{
    generic(t, 5, 5, true, true, true, 0, false);
}

void sc_persist_partition_unreliable_linearizable_3a(struct sim_test *t)
{
    generic(t, 15, 7, true, true, true, 0, true);
}

/* ---- Speed -------------------------------------------------------------- */

#define SPEED_OPS 1000
/* 3 operations per 100 ms heartbeat interval, i.e. no waiting for a
 * heartbeat to commit. */
#define SPEED_BUDGET_MS (SPEED_OPS * 100 / 3)

static void speed_body(struct sim_test *t, struct kv_world *w, void *arg)
{
    (void)t;
    (void)arg;
    struct kv_clerk *ck = kv_clerk_new(w);
    kv_get(w, ck, "x"); /* a leader is elected */
    uint64_t start = sim_now(kv_cluster(w));
    for (unsigned i = 0; i < SPEED_OPS; i++) {
        char v[32];
        snprintf(v, sizeof v, "x 0 %u y", i);
        kv_append(w, ck, "x", v);
    }
    uint64_t dur = sim_now(kv_cluster(w)) - start;
    check_appends(w, 0, kv_get(w, ck, "x"), SPEED_OPS);
    printf("%s: %d appends in %llu simulated ms (%.2f ms/op, budget %d ms)\n",
           t->name, SPEED_OPS, (unsigned long long)dur, (double)dur / SPEED_OPS,
           SPEED_BUDGET_MS);
    if (dur > SPEED_BUDGET_MS) {
        sim_fail(kv_cluster(w), "operations completed too slowly: %llu ms",
                 (unsigned long long)dur);
    }
    kv_check_linearizable(w);
}

void sc_speed_3a(struct sim_test *t)
{
    struct kv_world_opts o = {3, false, 0};
    kv_scenario_run(t, &o, speed_body, NULL);
}

void sc_speed_3b(struct sim_test *t)
{
    struct kv_world_opts o = {3, false, KV_MAXRAFTSTATE};
    kv_scenario_run(t, &o, speed_body, NULL);
}

/* ---- UnreliableOneKey --------------------------------------------------- */

#define ONEKEY_CLIENTS 5
#define ONEKEY_UPTO 10

struct onekey_client {
    unsigned me, n;
};

static void onekey_next(struct kv_clerk *ck, void *data)
{
    struct onekey_client *oc = data;
    if (oc->n == ONEKEY_UPTO) {
        return;
    }
    char v[32];
    snprintf(v, sizeof v, "x %u %u y", oc->me, oc->n++);
    kv_start(ck, KV_APPEND, "k", v, onekey_next, oc);
}

static void onekey_body(struct sim_test *t, struct kv_world *w, void *arg)
{
    (void)t;
    (void)arg;
    struct kv_clerk *ck = kv_clerk_new(w);
    kv_put(w, ck, "k", "");
    struct onekey_client oc[ONEKEY_CLIENTS];
    for (unsigned i = 0; i < ONEKEY_CLIENTS; i++) {
        oc[i] = (struct onekey_client){i, 0};
        onekey_next(kv_clerk_new(w), &oc[i]);
    }
    if (!kv_wait_all(w, KV_DRAIN_MS)) {
        sim_fail(kv_cluster(w), "appends did not finish within %d ms",
                 KV_DRAIN_MS);
    }
    /* checkConcurrentAppends: every client's appends once, in its order. */
    const char *v = kv_get(w, ck, "k");
    for (unsigned i = 0; i < ONEKEY_CLIENTS; i++) {
        check_appends(w, i, v, ONEKEY_UPTO);
    }
    kv_check_append_order(w, "k", v);
    /* The general search as well, within porcupine's kind of budget (it
     * gives the original 1 s): unknown passes, illegal fails. */
    kv_set_lin_steps(w, 200000);
    kv_check_linearizable(w);
}

void sc_unreliable_one_key_3a(struct sim_test *t)
{
    struct kv_world_opts o = {3, true, 0};
    kv_scenario_run(t, &o, onekey_body, NULL);
}

/* ---- OnePartition ------------------------------------------------------- */

/* make_partition(): the leader in the minority -- n/2 + 1 servers in p1,
 * n/2 in p2 with the leader last. */
static void make_partition(struct kv_world *w, unsigned n, raft_id *p1,
                           raft_id *p2, unsigned *group)
{
    raft_id l = kv_leader(w);
    if (l == 0) {
        sim_fail(kv_cluster(w), "no leader to put in the minority");
    }
    unsigned n1 = n / 2 + 1, j = 0;
    for (raft_id i = 1; i <= n; i++) {
        if (i == l) {
            continue;
        }
        if (j < n1) {
            p1[j] = i;
        } else {
            p2[j - n1] = i;
        }
        j++;
    }
    p2[n / 2 - 1] = l;
    for (unsigned i = 0; i < n1; i++) {
        group[p1[i] - 1] = 0;
    }
    for (unsigned i = 0; i < n / 2; i++) {
        group[p2[i] - 1] = 1;
    }
}

static void one_partition_body(struct sim_test *t, struct kv_world *w,
                               void *arg)
{
    (void)t;
    (void)arg;
    const unsigned n = 5;
    struct kv_clerk *ck = kv_clerk_new(w);
    kv_put(w, ck, "1", "13");

    /* Progress in the majority. */
    raft_id p1[SIM_NODES_MAX], p2[SIM_NODES_MAX];
    unsigned group[SIM_NODES_MAX];
    make_partition(w, n, p1, p2, group);
    kv_partition(w, group);
    struct kv_clerk *ckp1 = kv_clerk_new(w);
    kv_clerk_connect(ckp1, p1, n / 2 + 1);
    struct kv_clerk *ckp2a = kv_clerk_new(w);
    kv_clerk_connect(ckp2a, p2, n / 2);
    struct kv_clerk *ckp2b = kv_clerk_new(w);
    kv_clerk_connect(ckp2b, p2, n / 2);
    kv_put(w, ckp1, "1", "14");
    kv_check(w, ckp1, "1", "14");

    /* No progress in the minority. */
    kv_start(ckp2a, KV_PUT, "1", "15", NULL, NULL);
    kv_start(ckp2b, KV_GET, "1", NULL, NULL, NULL);
    kv_run_for(w, 1000);
    if (!kv_busy(ckp2a)) {
        sim_fail(kv_cluster(w), "Put in minority completed");
    }
    if (!kv_busy(ckp2b)) {
        sim_fail(kv_cluster(w), "Get in minority completed");
    }
    kv_check(w, ckp1, "1", "14");
    kv_put(w, ckp1, "1", "16");
    kv_check(w, ckp1, "1", "16");

    /* Completion after heal. */
    kv_connect_all(w);
    raft_id all[SIM_NODES_MAX];
    for (unsigned i = 0; i < n; i++) {
        all[i] = i + 1;
    }
    kv_clerk_connect(ckp2a, all, n);
    kv_clerk_connect(ckp2b, all, n);
    kv_run_for(w, KV_ELECTION_MS);
    if (!kv_wait(w, ckp2a, 3000)) {
        sim_fail(kv_cluster(w), "Put did not complete");
    }
    if (!kv_wait(w, ckp2b, 3000)) {
        sim_fail(kv_cluster(w), "Get did not complete");
    }
    kv_check(w, ck, "1", "15");
    kv_check_linearizable(w);
}

void sc_one_partition_3a(struct sim_test *t)
{
    struct kv_world_opts o = {5, false, 0};
    kv_scenario_run(t, &o, one_partition_body, NULL);
}

/* ---- 3B ----------------------------------------------------------------- */

static void check_log_trimmed(struct kv_world *w)
{
    size_t sz = kv_log_size(w);
    if (sz > 8 * KV_MAXRAFTSTATE) {
        sim_fail(kv_cluster(w), "logs were not trimmed (%zu > 8*%d)", sz,
                 KV_MAXRAFTSTATE);
    }
}

static void snapshot_rpc_body(struct sim_test *t, struct kv_world *w, void *arg)
{
    (void)t;
    (void)arg;
    struct kv_clerk *ck = kv_clerk_new(w);
    kv_put(w, ck, "a", "A");
    kv_check(w, ck, "a", "A");

    /* A bunch of puts into the majority {1, 2}; 3 falls behind. */
    const unsigned g1[] = {0, 0, 1};
    kv_partition(w, g1);
    {
        const raft_id to[] = {1, 2};
        struct kv_clerk *ck1 = kv_clerk_new(w);
        kv_clerk_connect(ck1, to, 2);
        for (unsigned i = 0; i < 50; i++) {
            char s[16];
            snprintf(s, sizeof s, "%u", i);
            kv_put(w, ck1, s, s);
        }
        kv_run_for(w, KV_ELECTION_MS);
        kv_put(w, ck1, "b", "B");
    }
    check_log_trimmed(w);

    /* A majority that needs the lagging server 3: it must catch up, and
     * only a snapshot can bring it there. */
    struct sim_counters before, after;
    sim_counters(kv_cluster(w), 3, &before);
    const unsigned g2[] = {0, 1, 0};
    kv_partition(w, g2);
    {
        const raft_id to[] = {1, 3};
        struct kv_clerk *ck1 = kv_clerk_new(w);
        kv_clerk_connect(ck1, to, 2);
        kv_put(w, ck1, "c", "C");
        kv_put(w, ck1, "d", "D");
        kv_check(w, ck1, "a", "A");
        kv_check(w, ck1, "b", "B");
        kv_check(w, ck1, "1", "1");
        kv_check(w, ck1, "49", "49");
    }
    sim_counters(kv_cluster(w), 3, &after);
    if (after.snapshots_in == before.snapshots_in) {
        sim_fail(kv_cluster(w), "server 3 caught up without InstallSnapshot");
    }

    /* Now everybody. */
    kv_connect_all(w);
    kv_put(w, ck, "e", "E");
    kv_check(w, ck, "c", "C");
    kv_check(w, ck, "e", "E");
    kv_check(w, ck, "1", "1");
    kv_check_linearizable(w);
}

void sc_snapshot_rpc_3b(struct sim_test *t)
{
    struct kv_world_opts o = {3, false, KV_MAXRAFTSTATE};
    kv_scenario_run(t, &o, snapshot_rpc_body, NULL);
}

/* The classic bound on a snapshot of one small key and one client.  Ours
 * is framed and checksummed (docs/craftd.md): a 52-byte header, per key
 * 25 bytes plus the bytes, per session 33 bytes plus 20 per saved reply,
 * a 5-byte footer; about 140 bytes here, well inside. */
#define SNAPSHOT_SIZE_MAX 500

static void snapshot_size_body(struct sim_test *t, struct kv_world *w,
                               void *arg)
{
    (void)arg;
    struct kv_clerk *ck = kv_clerk_new(w);
    for (unsigned i = 0; i < 200; i++) {
        kv_put(w, ck, "x", "0");
        kv_check(w, ck, "x", "0");
        kv_put(w, ck, "x", "1");
        kv_check(w, ck, "x", "1");
    }
    check_log_trimmed(w);
    size_t ssz = kv_snapshot_size_max(w);
    printf("%s: largest snapshot %zu bytes, log %zu bytes\n", t->name, ssz,
           kv_log_size(w));
    if (ssz == 0) {
        sim_fail(kv_cluster(w), "no snapshot was taken");
    }
    if (ssz > SNAPSHOT_SIZE_MAX) {
        sim_fail(kv_cluster(w), "snapshot too large (%zu > %d)", ssz,
                 SNAPSHOT_SIZE_MAX);
    }
    kv_check_linearizable(w);
}

void sc_snapshot_size_3b(struct sim_test *t)
{
    struct kv_world_opts o = {3, false, KV_MAXRAFTSTATE};
    kv_scenario_run(t, &o, snapshot_size_body, NULL);
}

void sc_snapshot_recover_3b(struct sim_test *t)
{
    generic(t, 1, 5, false, true, false, KV_MAXRAFTSTATE, false);
}

void sc_snapshot_recover_many_clients_3b(struct sim_test *t)
{
    generic(t, 20, 5, false, true, false, KV_MAXRAFTSTATE, false);
}

void sc_snapshot_unreliable_3b(struct sim_test *t)
{
    generic(t, 5, 5, true, false, false, KV_MAXRAFTSTATE, false);
}

void sc_snapshot_unreliable_recover_3b(struct sim_test *t)
{
    generic(t, 5, 5, true, true, false, KV_MAXRAFTSTATE, false);
}

void sc_snapshot_unreliable_recover_concurrent_partition_3b(struct sim_test *t)
{
    generic(t, 5, 5, true, true, true, KV_MAXRAFTSTATE, false);
}

void sc_snapshot_unreliable_recover_concurrent_partition_linearizable_3b(
    struct sim_test *t)
{
    generic(t, 15, 7, true, true, true, KV_MAXRAFTSTATE, true);
}
