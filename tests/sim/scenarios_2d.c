/*
 * tests/sim/scenarios_2d.c -- log compaction (2D) scenarios of the classic
 * suite, in simulated time.
 *
 * Every node snapshots after each 10 applied entries (applierSnap), keeping
 * no trailing entries, so a follower that misses more than a few entries
 * needs InstallSnapshot.  The cluster checks on every install that the
 * snapshot holds the committed state at its index and never moves a node
 * back, and on every restart that the node resumes from its snapshot.
 */
#include "scenarios.h"

#define SNAPSHOT_INTERVAL 10
#define MAX_LOG_SIZE 2000
#define U(x) ((unsigned long long)(x))

static uint64_t any_cmd(struct sim_test *t)
{
    return st_rand(t, 1, UINT64_MAX);
}

static void snapcommon(struct sim_test *t, bool disconnect, bool reliable,
                       bool crash)
{
    enum { ITERS = 30, SERVERS = 3 };
    st_make(t, SERVERS, !reliable, true);
    st_one(t, any_cmd(t), SERVERS, true);
    raft_id leader1 = st_check_one_leader(t);
    for (int i = 0; i < ITERS; i++) {
        raft_id victim = st_peer(t, leader1, 1);
        raft_id sender = leader1;
        if (i % 3 == 1) {
            sender = st_peer(t, leader1, 1);
            victim = leader1;
        }
        if (disconnect) {
            sim_disconnect(t->c, victim);
            st_one(t, any_cmd(t), SERVERS - 1, true);
        }
        if (crash) {
            st_crash1(t, victim);
            st_one(t, any_cmd(t), SERVERS - 1, true);
        }
        /* Perhaps send enough to get a snapshot. */
        uint64_t nn = SNAPSHOT_INTERVAL / 2 + st_rand(t, 0, SNAPSHOT_INTERVAL);
        for (uint64_t k = 0; k < nn; k++) {
            st_start(t, sender, any_cmd(t), NULL, NULL);
        }
        /* Let applier threads catch up with the Start()'s. */
        if (!disconnect && !crash) {
            /* Make sure all followers have caught up, so that an
             * InstallSnapshot RPC isn't required for snapshot_basic. */
            st_one(t, any_cmd(t), SERVERS, true);
        } else {
            st_one(t, any_cmd(t), SERVERS - 1, true);
        }
        size_t size = st_log_size(t);
        sim_note(t->c, 0, "log size %zu", size);
        if (size >= MAX_LOG_SIZE) {
            st_fail(t, "log size too large: %zu bytes", size);
        }
        if (disconnect) {
            /* Reconnect a follower, who maybe behind and needs to receive a
             * snapshot to catch up. */
            sim_connect(t->c, victim);
            st_one(t, any_cmd(t), SERVERS, true);
            leader1 = st_check_one_leader(t);
        }
        if (crash) {
            st_start1(t, victim);
            sim_connect(t->c, victim);
            st_one(t, any_cmd(t), SERVERS, true);
            leader1 = st_check_one_leader(t);
        }
    }
    /* Tighter than the original: a victim that fell 5-14 entries behind a
     * log compacted every 10 must have been sent a snapshot at least once
     * in 30 rounds. */
    struct sim_counters k;
    sim_counters_total(t->c, &k);
    if ((disconnect || crash) && k.snapshots_in == 0) {
        st_fail(t, "no InstallSnapshot was ever delivered");
    }
}

void sc_snapshot_basic_2d(struct sim_test *t)
{
    snapcommon(t, false, true, false);
}

void sc_snapshot_install_2d(struct sim_test *t)
{
    snapcommon(t, true, true, false);
}

void sc_snapshot_install_unreliable_2d(struct sim_test *t)
{
    snapcommon(t, true, false, false);
}

void sc_snapshot_install_crash_2d(struct sim_test *t)
{
    snapcommon(t, false, true, true);
}

void sc_snapshot_install_uncrash_2d(struct sim_test *t)
{
    snapcommon(t, false, false, true);
}

static void crash_and_revive_all(struct sim_test *t)
{
    unsigned servers = sim_n_nodes(t->c);
    for (raft_id i = 1; i <= servers; i++) {
        st_crash1(t, i);
    }
    for (raft_id i = 1; i <= servers; i++) {
        st_start1(t, i);
        sim_connect(t->c, i);
    }
}

/* Crash and restart all servers: the index must go on from where it was. */
void sc_snapshot_all_crash_2d(struct sim_test *t)
{
    enum { SERVERS = 3, ITERS = 5 };
    st_make(t, SERVERS, false, true);
    st_one(t, any_cmd(t), SERVERS, true);
    for (int i = 0; i < ITERS; i++) {
        /* Perhaps enough to get a snapshot. */
        uint64_t nn = SNAPSHOT_INTERVAL / 2 + st_rand(t, 0, SNAPSHOT_INTERVAL);
        for (uint64_t k = 0; k < nn; k++) {
            st_one(t, any_cmd(t), SERVERS, true);
        }
        raft_index index1 = st_one(t, any_cmd(t), SERVERS, true);
        crash_and_revive_all(t);
        raft_index index2 = st_one(t, any_cmd(t), SERVERS, true);
        if (index2 < index1 + 1) {
            st_fail(t, "index decreased from %llu to %llu", U(index1),
                    U(index2));
        }
    }
}

/* Do servers correctly initialise their in-memory copy of the snapshot,
 * making sure that future writes to persistent state don't lose state? */
void sc_snapshot_init_2d(struct sim_test *t)
{
    enum { SERVERS = 3 };
    st_make(t, SERVERS, false, true);
    st_one(t, any_cmd(t), SERVERS, true);
    /* Enough ops to make a snapshot. */
    for (int k = 0; k < SNAPSHOT_INTERVAL + 1; k++) {
        st_one(t, any_cmd(t), SERVERS, true);
    }
    for (raft_id i = 1; i <= SERVERS; i++) {
        if (!sim_has_snapshot(t->c, i)) {
            st_fail(t, "n%llu has no snapshot after %d commands", U(i),
                    SNAPSHOT_INTERVAL + 2);
        }
    }
    crash_and_revive_all(t);
    /* A single op, to get something to be written back to persistent
     * storage. */
    st_one(t, any_cmd(t), SERVERS, true);
    crash_and_revive_all(t);
    /* Do another op to trigger a potential bug. */
    st_one(t, any_cmd(t), SERVERS, true);
}
