/*
 * tests/sim/scenarios_2c.c -- persistence (2C) scenarios of the classic
 * suite, in simulated time.
 *
 * The originals' concurrent client goroutines (the churn tests) become
 * client state machines woken at their own simulated times between the
 * scenario's steps; their polling schedule (10/20/50/100/200 ms) and idle
 * back-off (79 + 17 * client ms) are the originals'.
 */
#include <stdlib.h>

#include "scenarios.h"
#include "util/assert.h"

#define ELECTION_TIMEOUT_MS 1000
#define U(x) ((unsigned long long)(x))

void sc_persist1_2c(struct sim_test *t)
{
    enum { SERVERS = 3 };
    st_make(t, SERVERS, false, false);
    st_one(t, 11, SERVERS, true);
    /* Crash and re-start all. */
    for (raft_id i = 1; i <= SERVERS; i++) {
        st_start1(t, i);
    }
    for (raft_id i = 1; i <= SERVERS; i++) {
        sim_disconnect(t->c, i);
        sim_connect(t->c, i);
    }
    st_one(t, 12, SERVERS, true);

    raft_id leader1 = st_check_one_leader(t);
    sim_disconnect(t->c, leader1);
    st_start1(t, leader1);
    sim_connect(t->c, leader1);
    st_one(t, 13, SERVERS, true);

    raft_id leader2 = st_check_one_leader(t);
    sim_disconnect(t->c, leader2);
    raft_index i14 = st_one(t, 14, SERVERS - 1, true);
    st_start1(t, leader2);
    sim_connect(t->c, leader2);
    /* Wait for leader2 to join before killing i3. */
    uint64_t cmd;
    st_wait(t, i14, SERVERS, 0, &cmd);

    raft_id i3 = st_peer(t, st_check_one_leader(t), 1);
    sim_disconnect(t->c, i3);
    st_one(t, 15, SERVERS - 1, true);
    st_start1(t, i3);
    sim_connect(t->c, i3);
    st_one(t, 16, SERVERS, true);
}

void sc_persist2_2c(struct sim_test *t)
{
    enum { SERVERS = 5 };
    st_make(t, SERVERS, false, false);
    uint64_t index = 1;
    for (int iters = 0; iters < 5; iters++) {
        st_one(t, 10 + index++, SERVERS, true);
        raft_id leader1 = st_check_one_leader(t);
        sim_disconnect(t->c, st_peer(t, leader1, 1));
        sim_disconnect(t->c, st_peer(t, leader1, 2));
        st_one(t, 10 + index++, SERVERS - 2, true);
        sim_disconnect(t->c, st_peer(t, leader1, 0));
        sim_disconnect(t->c, st_peer(t, leader1, 3));
        sim_disconnect(t->c, st_peer(t, leader1, 4));
        st_start1(t, st_peer(t, leader1, 1));
        st_start1(t, st_peer(t, leader1, 2));
        sim_connect(t->c, st_peer(t, leader1, 1));
        sim_connect(t->c, st_peer(t, leader1, 2));
        st_sleep(t, ELECTION_TIMEOUT_MS);
        st_start1(t, st_peer(t, leader1, 3));
        sim_connect(t->c, st_peer(t, leader1, 3));
        st_one(t, 10 + index++, SERVERS - 2, true);
        sim_connect(t->c, st_peer(t, leader1, 4));
        sim_connect(t->c, st_peer(t, leader1, 0));
    }
    st_one(t, 1000, SERVERS, true);
}

void sc_persist3_2c(struct sim_test *t)
{
    enum { SERVERS = 3 };
    st_make(t, SERVERS, false, false);
    st_one(t, 101, 3, true);
    raft_id leader = st_check_one_leader(t);
    sim_disconnect(t->c, st_peer(t, leader, 2));
    st_one(t, 102, 2, true);
    st_crash1(t, st_peer(t, leader, 0));
    st_crash1(t, st_peer(t, leader, 1));
    sim_connect(t->c, st_peer(t, leader, 2));
    st_start1(t, st_peer(t, leader, 0));
    sim_connect(t->c, st_peer(t, leader, 0));
    st_one(t, 103, 2, true);
    st_start1(t, st_peer(t, leader, 1));
    sim_connect(t->c, st_peer(t, leader, 1));
    st_one(t, 104, SERVERS, true);
}

/* Sleep 0-499 ms one time in ten, else 0-12 ms (both originals). */
static void figure8_pause(struct sim_test *t)
{
    if (st_rand(t, 0, 1000) < 100) {
        st_sleep(t, st_rand(t, 0, ELECTION_TIMEOUT_MS / 2));
    } else {
        st_sleep(t, st_rand(t, 0, 13));
    }
}

/* Test Figure 8: crash leaders at awkward moments, restarting others, and
 * let the cluster's invariants catch any entry of an old term committed
 * by counting replicas. */
void sc_figure8_2c(struct sim_test *t)
{
    enum { SERVERS = 5 };
    st_make(t, SERVERS, false, false);
    st_one(t, st_rand(t, 1, UINT64_MAX), 1, true);
    unsigned nup = SERVERS;
    for (int iters = 0; iters < 1000; iters++) {
        raft_id leader = 0;
        for (raft_id i = 1; i <= SERVERS; i++) {
            if (sim_is_up(t->c, i) &&
                st_start(t, i, st_rand(t, 1, UINT64_MAX), NULL, NULL)) {
                leader = i;
            }
        }
        figure8_pause(t);
        if (leader != 0) {
            st_crash1(t, leader);
            nup--;
        }
        if (nup < 3) {
            raft_id s = st_rand(t, 1, SERVERS + 1);
            if (!sim_is_up(t->c, s)) {
                st_start1(t, s);
                sim_connect(t->c, s);
                nup++;
            }
        }
    }
    for (raft_id i = 1; i <= SERVERS; i++) {
        if (!sim_is_up(t->c, i)) {
            st_start1(t, i);
            sim_connect(t->c, i);
        }
    }
    st_one(t, st_rand(t, 1, UINT64_MAX), SERVERS, true);
}

void sc_unreliable_agree_2c(struct sim_test *t)
{
    enum { SERVERS = 5 };
    st_make(t, SERVERS, true, false);
    for (uint64_t iters = 1; iters < 50; iters++) {
        /* Four concurrent one(…, 1) calls and one more, together. */
        uint64_t cmds[5];
        for (uint64_t j = 0; j < 4; j++) {
            cmds[j] = 100 * iters + j;
        }
        cmds[4] = iters;
        st_one_many(t, cmds, 5, 1);
    }
    sim_set_unreliable(t->c, false);
    st_one(t, 100, SERVERS, true);
}

void sc_figure8_unreliable_2c(struct sim_test *t)
{
    enum { SERVERS = 5 };
    st_make(t, SERVERS, true, false);
    st_one(t, st_rand(t, 0, 10000), 1, true);
    unsigned nup = SERVERS;
    for (int iters = 0; iters < 1000; iters++) {
        if (iters == 200) {
            sim_set_long_reordering(t->c, true);
        }
        raft_id leader = 0;
        for (raft_id i = 1; i <= SERVERS; i++) {
            if (st_start(t, i, st_rand(t, 0, 10000), NULL, NULL) &&
                sim_is_connected(t->c, i)) {
                leader = i;
            }
        }
        figure8_pause(t);
        if (leader != 0 && st_rand(t, 0, 1000) < ELECTION_TIMEOUT_MS / 2) {
            sim_disconnect(t->c, leader);
            nup--;
        }
        if (nup < 3) {
            raft_id s = st_rand(t, 1, SERVERS + 1);
            if (!sim_is_connected(t->c, s)) {
                sim_connect(t->c, s);
                nup++;
            }
        }
    }
    for (raft_id i = 1; i <= SERVERS; i++) {
        if (!sim_is_connected(t->c, i)) {
            sim_connect(t->c, i);
        }
    }
    st_one(t, st_rand(t, 0, 10000), SERVERS, true);
}

/* ---- churn -------------------------------------------------------------- */

#define CHURN_CLIENTS 3
/* Room for every value a run can see committed (a 20-round run commits
 * about 4,000); overflowing it fails the test rather than checking less. */
#define CHURN_SEEN_MAX 65536

struct churn_client {
    unsigned me;
    uint64_t wake; /* next simulated time to act */
    uint64_t x;    /* the command being waited for, or 0 */
    raft_index index;
    unsigned poll; /* position in the polling schedule */
};

struct churn {
    struct churn_client cl[CHURN_CLIENTS];
    bool stop;
    uint64_t seen[CHURN_SEEN_MAX]; /* values seen committed */
    size_t n_seen;
};

static const uint64_t churn_polls[] = {10, 20, 50, 100, 200};

/* One action of a client: the body of the original cfn loop, cut at its
 * sleeps. */
static void churn_client_act(struct sim_test *t, struct churn *ch,
                             struct churn_client *cl)
{
    unsigned servers = sim_n_nodes(t->c);
    uint64_t now = sim_now(t->c);
    if (cl->x != 0) {
        /* Maybe the leader will commit our value, maybe not; don't wait
         * forever. */
        uint64_t cmd;
        bool is_cmd;
        if (st_n_committed(t, cl->index, &cmd, &is_cmd) > 0) {
            if (is_cmd && cmd == cl->x) {
                if (ch->n_seen == CHURN_SEEN_MAX) {
                    st_fail(t,
                            "more than %d values committed: raise "
                            "CHURN_SEEN_MAX",
                            CHURN_SEEN_MAX);
                }
                ch->seen[ch->n_seen++] = cl->x;
            }
            cl->x = 0;
        } else if (cl->poll < CRAFT_ARRAY_LEN(churn_polls)) {
            cl->wake = now + churn_polls[cl->poll++];
            return;
        } else {
            cl->x = 0;
        }
    }
    if (ch->stop) {
        cl->wake = UINT64_MAX;
        return;
    }
    uint64_t x = st_rand(t, 1, UINT64_MAX);
    bool ok = false;
    for (raft_id i = 1; i <= servers; i++) {
        /* Try them all, maybe one of them is a leader. */
        raft_index index1;
        if (sim_is_up(t->c, i) && st_start(t, i, x, &index1, NULL)) {
            ok = true;
            cl->index = index1;
        }
    }
    if (ok) {
        cl->x = x;
        cl->poll = 0;
        cl->wake = now; /* polls at once, then backs off */
        churn_client_act(t, ch, cl);
    } else {
        cl->wake = now + 79 + 17 * cl->me;
    }
}

/* Let ms pass while the clients run. */
static void churn_sleep(struct sim_test *t, struct churn *ch, uint64_t ms)
{
    uint64_t end = sim_now(t->c) + ms;
    for (;;) {
        uint64_t next = end;
        for (unsigned k = 0; k < CHURN_CLIENTS; k++) {
            next = ch->cl[k].wake < next ? ch->cl[k].wake : next;
        }
        if (next > sim_now(t->c)) {
            st_sleep(t, next - sim_now(t->c));
        }
        if (next == end) {
            return;
        }
        for (unsigned k = 0; k < CHURN_CLIENTS; k++) {
            if (ch->cl[k].wake <= sim_now(t->c)) {
                churn_client_act(t, ch, &ch->cl[k]);
            }
        }
    }
}

static void internal_churn(struct sim_test *t, bool unreliable)
{
    enum { SERVERS = 5 };
    st_make(t, SERVERS, unreliable, false);
    struct churn *ch = calloc(1, sizeof *ch);
    CRAFT_ASSERT(ch != NULL);
    for (unsigned k = 0; k < CHURN_CLIENTS; k++) {
        ch->cl[k].me = k;
        ch->cl[k].wake = sim_now(t->c);
    }
    for (int iters = 0; iters < 20; iters++) {
        if (st_rand(t, 0, 1000) < 200) {
            sim_disconnect(t->c, st_rand(t, 1, SERVERS + 1));
        }
        if (st_rand(t, 0, 1000) < 500) {
            raft_id i = st_rand(t, 1, SERVERS + 1);
            if (!sim_is_up(t->c, i)) {
                st_start1(t, i);
            }
            sim_connect(t->c, i);
        }
        if (st_rand(t, 0, 1000) < 200) {
            raft_id i = st_rand(t, 1, SERVERS + 1);
            if (sim_is_up(t->c, i)) {
                st_crash1(t, i);
            }
        }
        /* Make crash/restart infrequent enough that the peers can often
         * keep up, but not so infrequent that everything has settled down
         * from one change to the next. */
        churn_sleep(t, ch, ELECTION_TIMEOUT_MS * 7 / 10);
    }
    churn_sleep(t, ch, ELECTION_TIMEOUT_MS);
    sim_set_unreliable(t->c, false);
    for (raft_id i = 1; i <= SERVERS; i++) {
        if (!sim_is_up(t->c, i)) {
            st_start1(t, i);
        }
        sim_connect(t->c, i);
    }
    /* Stop the clients: each finishes the command it is waiting for. */
    ch->stop = true;
    churn_sleep(t, ch, 400);

    st_sleep(t, ELECTION_TIMEOUT_MS);
    raft_index last = st_one(t, st_rand(t, 1, UINT64_MAX), SERVERS, true);
    /* Every index up to the last is applied on all five, and every value a
     * client saw committed is in the log. */
    bool *found = calloc(ch->n_seen + 1, sizeof *found);
    CRAFT_ASSERT(found != NULL);
    for (raft_index index = 1; index <= last; index++) {
        uint64_t v;
        st_wait(t, index, SERVERS, 0, &v);
        for (size_t k = 0; k < ch->n_seen; k++) {
            found[k] = found[k] || ch->seen[k] == v;
        }
    }
    for (size_t k = 0; k < ch->n_seen; k++) {
        if (!found[k]) {
            uint64_t v = ch->seen[k];
            free(found);
            free(ch);
            st_fail(t, "didn't find a value %llu seen committed", U(v));
        }
    }
    sim_note(t->c, 0, "churn: %zu client commands seen committed", ch->n_seen);
    free(found);
    free(ch);
}

void sc_reliable_churn_2c(struct sim_test *t)
{
    internal_churn(t, false);
}

void sc_unreliable_churn_2c(struct sim_test *t)
{
    internal_churn(t, true);
}
