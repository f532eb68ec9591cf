/*
 * A tiny in-process cluster for the Raft core's unit tests: N cores, an
 * in-memory "disk" per node, a message pump that encodes every message
 * with the wire codec, partitions, crashes and restarts, a counting
 * allocator and safety checks after every step.
 */
#ifndef CRAFT_TEST_RAFT_HARNESS_H
#define CRAFT_TEST_RAFT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft/raft.h"

#define H_NODES_MAX 7
#define H_SNAP_PAD 200 /* bytes of a test snapshot */

struct h_store {
    struct raft_hard_state hs;
    struct raft_entry *log; /* contiguous; owned payloads */
    size_t n, cap;
    struct raft_snapshot_meta snap; /* index 0: none */
    uint8_t snap_data[H_SNAP_PAD];
    uint8_t in_data[H_SNAP_PAD]; /* incoming snapshot */
};

struct h_node {
    struct raft *r;
    bool up;
    struct h_store store;
    /* state machine */
    uint64_t hash, count;
    raft_index applied;
    /* persistence: PERSISTED delivered at once, or held by the test */
    bool manual_persist;
    uint64_t written_seq; /* last seq written to the store */
    uint64_t restarts;
    /* snapshotting policy: every n applied entries (0: never) */
    unsigned snap_every;
    raft_index snap_trailing;
};

struct h_msg {
    unsigned to; /* node slot */
    unsigned from;
    uint8_t type;
    uint8_t *bytes;
    size_t len;
};

struct h_read {
    uint64_t ctx;
    int status;
    raft_index index;
    bool answered;
};

struct h_cluster {
    unsigned n;
    struct h_node nodes[H_NODES_MAX];
    struct raft_options opts;
    uint64_t seed;
    bool link[H_NODES_MAX][H_NODES_MAX];
    unsigned drop_per_mille;    /* random message loss */
    unsigned dup_per_mille;     /* random duplication */
    unsigned reorder_per_mille; /* swap with one of the next 8 messages */
    unsigned delay_per_mille;   /* hold until the next tick */
    uint64_t rng;
    struct h_msg *q;
    size_t nq, capq;
    /* counters */
    uint64_t sent[8]; /* by message type */
    uint64_t delivered[H_NODES_MAX];
    uint64_t rejects; /* failed append replies */
    /* committed history, for the State Machine Safety check */
    raft_term *c_term;
    uint64_t *c_hash;
    size_t c_cap;
    raft_id leader_of_term[4096];
    struct h_read reads[256];
    unsigned n_reads;
};

/* The counting allocator every core in the harness uses. */
extern struct craft_alloc h_alloc;
extern long h_live_allocs;
extern long h_fail_at; /* fail the n-th allocation (1-based), -1 never */

void h_init(struct h_cluster *c, unsigned n, uint64_t seed,
            const struct raft_options *opts);
void h_close(struct h_cluster *c);
void h_start(struct h_cluster *c, unsigned i);
void h_crash(struct h_cluster *c, unsigned i);
int h_step(struct h_cluster *c, unsigned i, struct raft_event *ev);
void h_tick(struct h_cluster *c);
void h_deliver(struct h_cluster *c);
void h_run(struct h_cluster *c, unsigned ticks);
int h_leader(struct h_cluster *c); /* slot of the unique up leader, -1 */
int h_wait_leader(struct h_cluster *c, unsigned max_ticks);
void h_isolate(struct h_cluster *c, unsigned i, bool cut);
void h_heal(struct h_cluster *c);
int h_propose(struct h_cluster *c, unsigned i, const char *cmd,
              raft_index *index);
bool h_wait_applied(struct h_cluster *c, raft_index index, unsigned max_ticks,
                    unsigned n_nodes_needed);
void h_persist_all(struct h_cluster *c, unsigned i);
uint64_t h_read(struct h_cluster *c, unsigned i);
struct raft_status h_status(struct h_cluster *c, unsigned i);
/* Replace a stopped node's disk: hard state and a log of n entries with
 * the given terms, from index 1. */
void h_fill(struct h_cluster *c, unsigned i, raft_term hs_term,
            const raft_term *terms, size_t n);

#endif
