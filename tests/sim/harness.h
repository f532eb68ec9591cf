/*
 * tests/sim/harness.h -- the classic suite's tester (raft/config.go)
 * re-expressed in simulated time, on top of cluster.h.
 *
 * A scenario receives a struct sim_test; it creates its cluster with
 * st_make() and uses the helpers below.  Every helper that finds a problem
 * calls sim_fail(), which unwinds to the runner (sim_test_run), so a
 * scenario reads as a straight line of steps and checks.
 *
 * Commands are 8-byte values (sim_propose_u64); tests compare applied
 * commands, never raw indices, because craft's leader appends a no-op when
 * it takes office (reference §6).
 */
#ifndef CRAFT_SIM_HARNESS_H
#define CRAFT_SIM_HARNESS_H

#include "cluster.h"
#include "util/rng.h"

/* The classic tester's bounds, in simulated ms. */
#define ST_ELECTION_MS 5000 /* a new leader within 5 s */
#define ST_ONE_MS 10000     /* one(): 10 s to get a command committed */
#define ST_AGREE_MS 2000    /* one(): 2 s for n peers to apply it */

struct sim_test {
    const char *name;
    uint64_t seed;
    struct rng rng; /* the scenario's own choices */
    struct sim_cluster *c;
    jmp_buf jb;
    bool verbose;
    /* A scenario may tune the cluster before st_make (zero: defaults). */
    unsigned snapshot_trailing;
    unsigned nodes;     /* for random runs: 0 lets the seed choose */
    const char *replay; /* the command line that replays this run */
    void *user;         /* for the scenario function */
    unsigned inject;    /* enum sim_inject bits for the cluster */
    bool quiet;         /* on failure print only the reason */
    /* Set by a scenario that frees its cluster itself (the KV scenarios
     * do, with their world): the run's figures for sim_test_run. */
    uint64_t end_ms, end_events;
};

/* make_config(n, unreliable, snapshot): n nodes, the labrpc unreliable
 * network if asked, long delays off, and with `snapshot` a snapshot every
 * 10 applied entries (applierSnap). */
void st_make(struct sim_test *t, unsigned n, bool unreliable, bool snapshot);

/* Fail the scenario with a message. */
_Noreturn void st_fail(struct sim_test *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A random value in [lo, hi) from the scenario's generator. */
uint64_t st_rand(struct sim_test *t, uint64_t lo, uint64_t hi);

/* Let simulated time pass. */
void st_sleep(struct sim_test *t, uint64_t ms);

/* checkOneLeader: up to 10 rounds of 450-550 ms; two leaders in one term
 * fail; returns the leader of the highest term among connected nodes. */
raft_id st_check_one_leader(struct sim_test *t);
/* checkTerms: every connected node agrees on the term; returns it. */
raft_term st_check_terms(struct sim_test *t);
/* checkNoLeader: no connected node thinks it leads. */
void st_check_no_leader(struct sim_test *t);

/* nCommitted: how many live nodes applied index; *cmd is the command there
 * (*is_cmd false for a no-op).  Fails on a node whose applier failed. */
unsigned st_n_committed(struct sim_test *t, raft_index index, uint64_t *cmd,
                        bool *is_cmd);
/* one(cmd, expected, retry): get cmd committed on >= expected nodes within
 * 10 s, trying connected nodes in turn; returns its index. */
raft_index st_one(struct sim_test *t, uint64_t cmd, unsigned expected,
                  bool retry);
/* wait(index, n, term): poll with backoff until n nodes applied index;
 * returns false if a node's term moved past `term` (when term != 0). */
bool st_wait(struct sim_test *t, raft_index index, unsigned n, raft_term term,
             uint64_t *cmd);
/* Start(cmd) on node id: true if it is the leader. */
bool st_start(struct sim_test *t, raft_id id, uint64_t cmd, raft_index *index,
              raft_term *term);
/* GetState(): term and whether node id thinks it leads (false if down). */
bool st_is_leader(struct sim_test *t, raft_id id, raft_term *term);

/* (id + k) mod n in the original's 0-based arithmetic: the k-th node after
 * id, wrapping around. */
raft_id st_peer(struct sim_test *t, raft_id id, unsigned k);
/* crash1(i): disconnect and crash.  start1(i): crash1, then restart from
 * durable state, still disconnected (the original connects separately). */
void st_crash1(struct sim_test *t, raft_id id);
void st_start1(struct sim_test *t, raft_id id);

/* one() for several commands in flight at once, as the original's
 * concurrent goroutines: each is retried on its own until it is applied
 * on >= expected nodes; all must succeed within 10 s. */
void st_one_many(struct sim_test *t, const uint64_t *cmds, unsigned n_cmds,
                 unsigned expected);
/* one() with an arbitrary command; its first 8 bytes identify it. */
raft_index st_one_data(struct sim_test *t, const void *data, size_t len,
                       unsigned expected, bool retry);

/* Request RPCs received by every node so far (rpcCount summed). */
uint64_t st_rpc_total(struct sim_test *t);
/* Bytes sent by every node so far. */
uint64_t st_bytes_total(struct sim_test *t);
/* The largest durable Raft state of any node (LogSize()). */
size_t st_log_size(struct sim_test *t);

/* Run one scenario function on a fresh struct sim_test copied from
 * `proto` (name, seed, nodes, replay, verbose); returns 0, or -1 after
 * printing the reason, the trace and the replay command line. */
struct sim_run_stats {
    uint64_t sim_ms, events;
};
int sim_test_run(const struct sim_test *proto, void (*fn)(struct sim_test *),
                 struct sim_run_stats *stats);

#endif /* CRAFT_SIM_HARNESS_H */
