/*
 * tests/sim/sim_internal.h -- the cluster's internals, shared by cluster.c
 * (events, nodes, clients), network.c, storage.c, invariants.c and
 * trace.c.  Scenarios use only cluster.h.
 */
#ifndef CRAFT_SIM_INTERNAL_H
#define CRAFT_SIM_INTERNAL_H

#include "cluster.h"
#include "util/rng.h"

/* ---- events ------------------------------------------------------------- */

enum sim_event_type {
    SIM_EV_TICK = 1,    /* a node's clock ticks */
    SIM_EV_DELIVER,     /* a message arrives */
    SIM_EV_PERSIST,     /* a node's pending persistence up to seq is durable */
    SIM_EV_UNREACHABLE, /* tell a node that a peer refused a connection */
    SIM_EV_RETRY        /* step a persistence or snapshot notice again */
};

/* A queued message: the raft_message plus its own copies of the entries
 * and their data (or the snapshot chunk), in one allocation. */
struct sim_msg {
    struct raft_message m;
    unsigned dest_incarnation; /* dropped if the destination restarted */
    size_t bytes;              /* counted size */
};

struct sim_event {
    uint64_t time;
    uint64_t seq;  /* ties broken by queueing order: deterministic */
    uint8_t type;  /* enum sim_event_type */
    unsigned node; /* index 0..n-1 of the node it happens on */
    unsigned incarnation;
    union {
        struct sim_msg *msg;     /* SIM_EV_DELIVER, owned by the event */
        uint64_t persist_seq;    /* SIM_EV_PERSIST */
        raft_id peer;            /* SIM_EV_UNREACHABLE */
        struct raft_event retry; /* SIM_EV_RETRY: PERSISTED or SNAPSHOT */
    };
};

/* ---- storage (storage.c) ------------------------------------------------ */

/* The persistence of one update, in flight until its fsync completes. */
struct sim_pending {
    uint64_t seq;
    bool hs_changed;
    struct raft_hard_state hs;
    raft_index truncate_from;
    struct raft_entry *entries; /* owned copies */
    size_t n_entries;
    bool has_chunk;
    struct raft_snapshot_chunk chunk; /* data owned */
    struct sim_pending *next;
};

/* What survives a crash. */
struct sim_storage {
    struct raft_hard_state hs;
    struct raft_entry *log; /* contiguous by index, data owned */
    size_t n_log, cap_log;
    bool has_snap;
    struct raft_snapshot_meta snap;
    uint8_t *snap_data;
    size_t snap_len;
    /* The snapshot it replaced, kept readable for a transfer of it still
     * in progress (raft.h asks for that); not used for restarts. */
    bool has_prev;
    struct raft_snapshot_meta prev;
    uint8_t *prev_data;
    size_t prev_len;
    /* An incoming snapshot being written chunk by chunk. */
    bool has_part;
    struct raft_snapshot_meta part;
    uint8_t *part_data;
    size_t part_len;
};

void sim__storage_close(struct sim_storage *s);
/* Make one pending update durable. */
void sim__storage_commit(struct sim_cluster *c, struct sim_storage *s,
                         const struct sim_pending *p);
/* Drop durable entries <= index. */
void sim__storage_compact(struct sim_storage *s, raft_index index);
/* Replace the durable snapshot (data copied). */
void sim__storage_set_snapshot(struct sim_storage *s,
                               const struct raft_snapshot_meta *meta,
                               const void *data, size_t len);
size_t sim__storage_state_size(const struct sim_storage *s);
/* Copy an update's persistence into a new pending record; NULL if there
 * is nothing to persist. */
struct sim_pending *sim__pending_new(const struct raft_update *u);
void sim__pending_free(struct sim_pending *p);

/* ---- nodes -------------------------------------------------------------- */

struct sim_read_req {
    uint64_t ctx;
    raft_index need_index;   /* commit index known anywhere at issue */
    raft_index need_applied; /* highest index applied anywhere at issue */
    raft_index index;        /* ReadIndex answered, 0 while waiting */
    uint64_t issued_at;
    struct sim_read_req *next;
};

/* A node's view of its own log, kept in step with the core after every
 * update and used for the log matching and completeness checks: the term
 * and the prefix hash of each entry in (base, last]. */
struct sim_shadow_entry {
    raft_term term;
    uint64_t phash; /* hash chain of every entry up to and including it */
};

struct sim_shadow {
    raft_index base;
    uint64_t base_hash;
    raft_index last;
    struct sim_shadow_entry *e; /* e[i - base - 1] */
    size_t cap;
};

/* The allocator a node's core uses: counts live blocks (a crash must free
 * them all) and fails on demand. */
struct sim_alloc {
    struct craft_alloc a;
    struct sim_node *node;
    int64_t live;
    bool armed; /* failures only while the core runs, not in raft_new */
};

struct sim_node {
    struct sim_cluster *cluster;
    struct sim_alloc alloc;
    raft_id id;
    bool up;
    bool connected;
    unsigned incarnation;
    struct raft *r;
    uint64_t tick_phase;
    struct sim_storage st;
    struct sim_pending *pend_head, *pend_tail;
    uint64_t fsync_free_at; /* fsyncs complete in order */
    /* The built-in register and the optional app state. */
    raft_index applied;
    uint64_t chain;
    void *app;
    /* Last role, term and commit seen in an update. */
    uint8_t role;
    raft_term term;
    raft_index commit;
    struct sim_shadow log;
    struct sim_read_req *reads;
    struct sim_counters cnt;
};

/* ---- the global record of each index (invariants.c) --------------------- */

struct sim_index_rec {
    bool committed; /* some node reported commit >= index */
    bool applied;   /* some node applied it */
    uint8_t type;
    raft_term term;
    raft_term commit_term; /* term of the node that first reported it */
    uint64_t chain;        /* prefix hash up to and including this index */
    uint64_t value;        /* first 8 bytes of a command */
};

/* ---- the trace (trace.c) ------------------------------------------------ */

struct sim_trace_line {
    uint64_t time;
    unsigned node; /* 0: the whole cluster */
    /* Every node's term and role at that moment (role 0: down). */
    uint32_t term[SIM_NODES_MAX];
    uint8_t role[SIM_NODES_MAX];
    /* Either text, or (when is_msg) a received message, formatted only
     * when printed: formatting every line would cost a third of the run. */
    bool is_msg;
    struct raft_message msg; /* entries and data not kept */
    char text[88];
};

/* ---- the cluster -------------------------------------------------------- */

struct sim_cluster {
    struct sim_options o;
    struct rng rng;
    uint64_t now;
    uint64_t seq;
    uint64_t n_events;
    struct sim_event *heap;
    size_t n_heap, cap_heap;
    struct sim_node nodes[SIM_NODES_MAX];
    bool link_up[SIM_NODES_MAX][SIM_NODES_MAX];
    struct sim_link_faults faults[SIM_NODES_MAX][SIM_NODES_MAX];
    bool long_reorder;
    unsigned alloc_fail_pm; /* core allocations that fail, per mille */
    uint64_t alloc_failures;
    /* When each link last reported its peer unreachable (rate limit). */
    uint64_t unreachable_at[SIM_NODES_MAX][SIM_NODES_MAX];
    struct sim_msg *delivering; /* freed by sim_cluster_free on a failure */
    /* Invariant state. */
    raft_id *leader_of_term; /* indexed by term */
    size_t cap_terms;
    struct sim_index_rec *idx; /* indexed by raft index */
    size_t cap_idx;
    raft_index commit_max;
    raft_index applied_max;
    uint64_t *match_keys; /* open-addressing map (index, term) -> phash */
    uint64_t *match_vals;
    size_t cap_match, n_match;
    /* Reads. */
    uint64_t read_ctx;
    struct sim_read_stats reads;
    /* Trace ring and failure. */
    struct sim_trace_line trace[SIM_TRACE_MAX];
    size_t n_trace;
    jmp_buf *fail_jump;
    char reason[512];
    bool failing;
};

static inline struct sim_node *sim__node(struct sim_cluster *c, raft_id id)
{
    if (id < 1 || id > c->o.n_nodes) {
        sim_fail(c, "no node %llu", (unsigned long long)id);
    }
    return &c->nodes[id - 1];
}

/* cluster.c */
void sim__push(struct sim_cluster *c, const struct sim_event *ev);
void sim__node_step(struct sim_cluster *c, struct sim_node *n,
                    struct raft_event *ev);

/* network.c */
void sim__send(struct sim_cluster *c, struct sim_node *from,
               const struct raft_message *m);
void sim__deliver(struct sim_cluster *c, struct sim_event *ev);
void sim__msg_free(struct sim_msg *m);

/* invariants.c */
uint64_t sim__hash_bytes(const void *p, size_t n);
uint64_t sim__chain(uint64_t prev, raft_index index, raft_term term,
                    uint8_t type, const void *data, size_t len);
void sim__check_update(struct sim_cluster *c, struct sim_node *n,
                       const struct raft_update *u, raft_index last_before);
void sim__check_apply(struct sim_cluster *c, struct sim_node *n,
                      const struct raft_entry *e);
void sim__check_install(struct sim_cluster *c, struct sim_node *n,
                        const struct raft_snapshot_meta *meta, uint64_t chain);
/* Property 7, for a message a node is about to send. */
void sim__check_reply_durable(struct sim_cluster *c, struct sim_node *n,
                              const struct raft_message *m);
void sim__shadow_rebuild(struct sim_cluster *c, struct sim_node *n);
void sim__shadow_close(struct sim_shadow *s);
void sim__invariants_close(struct sim_cluster *c);

/* trace.c */
void sim__trace(struct sim_cluster *c, unsigned node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim__raft_trace_hook(void *data, const char *line);
void sim__trace_receive(struct sim_cluster *c, const struct raft_message *m);

#endif /* CRAFT_SIM_INTERNAL_H */
