/*
 * tests/sim/harness.c -- config.go's helpers in simulated time; see
 * harness.h.  Waits that polled with real sleeps in the original advance
 * the simulated clock by the same amounts instead.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util/assert.h"

void st_make(struct sim_test *t, unsigned n, bool unreliable, bool snapshot)
{
    CRAFT_ASSERT(t->c == NULL);
    struct sim_options o;
    sim_options_init(&o);
    o.n_nodes = n;
    o.seed = t->seed;
    o.verbose = t->verbose;
    o.inject = t->inject;
    if (snapshot) {
        /* applierSnap snapshots when (index + 1) % 10 == 0, i.e. every 10
         * entries. */
        o.snapshot_every = 10;
        o.snapshot_trailing = t->snapshot_trailing;
    }
    int rv = sim_cluster_new(&o, &t->c);
    if (rv != 0) {
        st_fail(t, "sim_cluster_new: %s", craft_strerror(rv));
    }
    sim_set_fail_jump(t->c, &t->jb);
    sim_set_unreliable(t->c, unreliable);
}

void st_fail(struct sim_test *t, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (t->c != NULL) {
        sim_fail(t->c, "%s", msg);
    }
    fprintf(stderr, "%s: %s\n", t->name, msg);
    longjmp(t->jb, 1);
}

uint64_t st_rand(struct sim_test *t, uint64_t lo, uint64_t hi)
{
    return rng_range(&t->rng, lo, hi);
}

void st_sleep(struct sim_test *t, uint64_t ms)
{
    sim_run_for(t->c, ms);
}

bool st_is_leader(struct sim_test *t, raft_id id, raft_term *term)
{
    struct raft_status st;
    if (!sim_status(t->c, id, &st)) {
        return false;
    }
    if (term != NULL) {
        *term = st.term;
    }
    return st.role == RAFT_LEADER;
}

static bool live(struct sim_test *t, raft_id id)
{
    return sim_is_up(t->c, id) && sim_is_connected(t->c, id);
}

raft_id st_check_one_leader(struct sim_test *t)
{
    unsigned n = sim_n_nodes(t->c);
    for (int iters = 0; iters < 10; iters++) {
        st_sleep(t, st_rand(t, 450, 551));
        raft_id leader_of[SIM_NODES_MAX] = {0};
        raft_term terms[SIM_NODES_MAX];
        unsigned n_terms = 0;
        raft_term last_term = 0;
        raft_id best = 0;
        for (raft_id i = 1; i <= n; i++) {
            raft_term term;
            if (!live(t, i) || !st_is_leader(t, i, &term)) {
                continue;
            }
            for (unsigned k = 0; k < n_terms; k++) {
                if (terms[k] == term) {
                    st_fail(t, "term %llu has two leaders: n%llu and n%llu",
                            (unsigned long long)term,
                            (unsigned long long)leader_of[k],
                            (unsigned long long)i);
                }
            }
            terms[n_terms] = term;
            leader_of[n_terms++] = i;
            if (term >= last_term) {
                last_term = term;
                best = i;
            }
        }
        if (best != 0) {
            return best;
        }
    }
    st_fail(t, "expected one leader, got none");
}

raft_term st_check_terms(struct sim_test *t)
{
    raft_term term = 0;
    for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
        struct raft_status st;
        if (!live(t, i) || !sim_status(t->c, i, &st)) {
            continue;
        }
        if (term == 0) {
            term = st.term;
        } else if (term != st.term) {
            st_fail(t, "servers disagree on term: %llu vs %llu (n%llu)",
                    (unsigned long long)term, (unsigned long long)st.term,
                    (unsigned long long)i);
        }
    }
    return term;
}

void st_check_no_leader(struct sim_test *t)
{
    for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
        if (live(t, i) && st_is_leader(t, i, NULL)) {
            st_fail(t,
                    "expected no leader among connected servers, but "
                    "n%llu claims to be leader",
                    (unsigned long long)i);
        }
    }
}

unsigned st_n_committed(struct sim_test *t, raft_index index, uint64_t *cmd,
                        bool *is_cmd)
{
    uint8_t type = 0;
    uint64_t value = 0;
    if (!sim_applied_at(t->c, index, &type, &value)) {
        return 0;
    }
    unsigned count = 0;
    for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
        if (sim_is_up(t->c, i) && sim_applied(t->c, i) >= index) {
            count++;
        }
    }
    /* Agreement between nodes on the value is checked by the cluster on
     * every apply (state machine safety). */
    *cmd = value;
    *is_cmd = type == RAFT_ENTRY_COMMAND;
    return count;
}

bool st_start(struct sim_test *t, raft_id id, uint64_t cmd, raft_index *index,
              raft_term *term)
{
    return sim_propose_u64(t->c, id, cmd, index, term) == 0;
}

/* Try Start on every connected node in turn from *starts on; the index,
 * or 0 if nobody took it. */
static raft_index start_somewhere(struct sim_test *t, const void *data,
                                  size_t len, raft_id *starts)
{
    unsigned n = sim_n_nodes(t->c);
    for (unsigned si = 0; si < n; si++) {
        *starts = *starts % n + 1;
        raft_index idx;
        if (sim_is_connected(t->c, *starts) &&
            sim_propose(t->c, *starts, data, len, &idx, NULL) == 0) {
            return idx;
        }
    }
    return 0;
}

static uint64_t first_u64(const void *data, size_t len)
{
    uint8_t b[8] = {0};
    memcpy(b, data, len < 8 ? len : 8);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | b[i];
    }
    return v;
}

raft_index st_one_data(struct sim_test *t, const void *data, size_t len,
                       unsigned expected, bool retry)
{
    uint64_t cmd = first_u64(data, len);
    uint64_t t0 = sim_now(t->c);
    raft_id starts = 0;
    while (sim_now(t->c) - t0 < ST_ONE_MS) {
        raft_index index = start_somewhere(t, data, len, &starts);
        if (index == 0) {
            st_sleep(t, 50);
            continue;
        }
        /* Somebody claimed to be the leader and to have submitted our
         * command; wait a while for agreement. */
        uint64_t t1 = sim_now(t->c);
        while (sim_now(t->c) - t1 < ST_AGREE_MS) {
            uint64_t got;
            bool is_cmd;
            unsigned nd = st_n_committed(t, index, &got, &is_cmd);
            if (nd > 0 && nd >= expected && is_cmd && got == cmd) {
                return index;
            }
            st_sleep(t, 20);
        }
        if (!retry) {
            st_fail(t, "one(%llu) failed to reach agreement",
                    (unsigned long long)cmd);
        }
    }
    st_fail(t, "one(%llu) failed to reach agreement in %d ms",
            (unsigned long long)cmd, ST_ONE_MS);
}

raft_index st_one(struct sim_test *t, uint64_t cmd, unsigned expected,
                  bool retry)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(cmd >> (8 * i));
    }
    return st_one_data(t, b, sizeof b, expected, retry);
}

#define ST_MANY_MAX 16

void st_one_many(struct sim_test *t, const uint64_t *cmds, unsigned n_cmds,
                 unsigned expected)
{
    CRAFT_ASSERT(n_cmds <= ST_MANY_MAX);
    raft_index index[ST_MANY_MAX] = {0};
    uint64_t since[ST_MANY_MAX] = {0};
    bool done[ST_MANY_MAX] = {false};
    unsigned n_done = 0;
    raft_id starts = 0;
    uint64_t t0 = sim_now(t->c);
    while (n_done < n_cmds) {
        if (sim_now(t->c) - t0 >= ST_ONE_MS) {
            st_fail(t,
                    "%u of %u concurrent one() calls failed to reach "
                    "agreement in %d ms",
                    n_cmds - n_done, n_cmds, ST_ONE_MS);
        }
        for (unsigned k = 0; k < n_cmds; k++) {
            if (done[k]) {
                continue;
            }
            uint64_t got;
            bool is_cmd;
            if (index[k] != 0) {
                unsigned nd = st_n_committed(t, index[k], &got, &is_cmd);
                if (nd > 0 && nd >= expected && is_cmd && got == cmds[k]) {
                    done[k] = true;
                    n_done++;
                    continue;
                }
                if (sim_now(t->c) - since[k] < ST_AGREE_MS) {
                    continue;
                }
            }
            uint8_t b[8];
            for (int i = 0; i < 8; i++) {
                b[i] = (uint8_t)(cmds[k] >> (8 * i));
            }
            index[k] = start_somewhere(t, b, sizeof b, &starts);
            since[k] = sim_now(t->c);
        }
        if (n_done < n_cmds) {
            st_sleep(t, 20);
        }
    }
}

bool st_wait(struct sim_test *t, raft_index index, unsigned n, raft_term term,
             uint64_t *cmd)
{
    uint64_t to = 10;
    unsigned nd = 0;
    uint64_t got = 0;
    bool is_cmd = false;
    for (int iters = 0; iters < 30; iters++) {
        nd = st_n_committed(t, index, &got, &is_cmd);
        if (nd >= n) {
            break;
        }
        st_sleep(t, to);
        if (to < 1000) {
            to *= 2;
        }
        if (term != 0) {
            for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
                raft_term tt;
                st_is_leader(t, i, &tt);
                if (sim_is_up(t->c, i) && tt > term) {
                    return false; /* someone has moved on */
                }
            }
        }
    }
    if (nd < n) {
        st_fail(t, "only %u decided for index %llu; wanted %u", nd,
                (unsigned long long)index, n);
    }
    *cmd = is_cmd ? got : 0;
    return true;
}

raft_id st_peer(struct sim_test *t, raft_id id, unsigned k)
{
    unsigned n = sim_n_nodes(t->c);
    return (raft_id)((id - 1 + k) % n + 1);
}

void st_crash1(struct sim_test *t, raft_id id)
{
    sim_disconnect(t->c, id);
    sim_crash(t->c, id);
}

void st_start1(struct sim_test *t, raft_id id)
{
    sim_disconnect(t->c, id);
    sim_restart(t->c, id);
}

uint64_t st_rpc_total(struct sim_test *t)
{
    struct sim_counters k;
    sim_counters_total(t->c, &k);
    return k.rpcs_in;
}

uint64_t st_bytes_total(struct sim_test *t)
{
    struct sim_counters k;
    sim_counters_total(t->c, &k);
    return k.bytes_out;
}

size_t st_log_size(struct sim_test *t)
{
    size_t max = 0;
    for (raft_id i = 1; i <= sim_n_nodes(t->c); i++) {
        size_t s = sim_log_state_size(t->c, i);
        max = s > max ? s : max;
    }
    return max;
}

/* The run in progress, for the abort handler. */
static struct sim_test *current;

/* A core assertion aborts the process: print the trace and the replay
 * command first, so that the failure is as easy to read and replay as a
 * failed check.  Not async-signal-safe, which is fine for a process that
 * is about to die anyway. */
static void on_abort(int sig)
{
    struct sim_test *t = current;
    current = NULL;
    if (t != NULL) {
        fprintf(stderr, "ABORT %s (seed %llu)", t->name,
                (unsigned long long)t->seed);
        if (t->c != NULL) {
            fprintf(stderr, " at %llu ms\n", (unsigned long long)sim_now(t->c));
            sim_trace_print(t->c, stderr, 60);
        }
        fprintf(stderr, "\nreplay: %s\n", t->replay);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int sim_test_run(const struct sim_test *proto, void (*fn)(struct sim_test *),
                 struct sim_run_stats *stats)
{
    /* On the heap: its fields change between setjmp and longjmp. */
    struct sim_test *t = calloc(1, sizeof *t);
    CRAFT_ASSERT(t != NULL);
    t->name = proto->name;
    t->seed = proto->seed;
    t->verbose = proto->verbose;
    t->nodes = proto->nodes;
    t->replay = proto->replay;
    t->user = proto->user;
    t->inject = proto->inject;
    t->quiet = proto->quiet;
    t->snapshot_trailing = proto->snapshot_trailing;
    rng_init(&t->rng, t->seed ^ 0x5ca1ab1eull);
    int rv = 0;
    current = t;
    signal(SIGABRT, on_abort);
    if (setjmp(t->jb) == 0) {
        fn(t);
        if (t->c != NULL) {
            sim_audit(t->c);
        }
    } else {
        rv = -1;
        if (t->c != NULL) {
            fprintf(stderr, "FAIL %s (seed %llu) at %llu ms: %s\n", t->name,
                    (unsigned long long)t->seed,
                    (unsigned long long)sim_now(t->c), sim_fail_reason(t->c));
            if (!t->quiet) {
                sim_trace_print(t->c, stderr, 60);
            }
        }
        fprintf(stderr, "replay: %s\n", t->replay);
    }
    if (stats != NULL && t->c != NULL) {
        stats->sim_ms = sim_now(t->c);
        stats->events = sim_events(t->c);
    } else if (stats != NULL) {
        stats->sim_ms = t->end_ms;
        stats->events = t->end_events;
    }
    current = NULL;
    sim_cluster_free(t->c);
    free(t);
    return rv;
}
