/*
 * tests/sim/cluster.h -- a deterministic in-process cluster of the real Raft
 * core, for scenario tests and randomized fault schedules.
 *
 * A cluster is N cores (struct raft) driven by one simulated clock.  Every
 * action happens at a simulated millisecond, in the order of a single event
 * queue, so a run is a pure function of its options and seed: the same seed
 * replays the same run, event for event.
 *
 * What the cluster stands in for:
 *   - the clock: each node ticks every tick_ms (10 ms by default), with a
 *     per-node phase so that ticks of different nodes interleave;
 *   - storage: per node, a durable hard state, log and snapshot.  An update's
 *     persistence completes after a simulated fsync delay, in order, and only
 *     then is RAFT_PERSISTED stepped.  A crash loses everything not yet
 *     durable;
 *   - the network: messages are deep-copied when queued and delivered after
 *     a per-link delay, or dropped, duplicated or delayed for a long time
 *     (labrpc's "long reordering"), and never across a partition;
 *   - the application: each node applies committed entries in order to a
 *     built-in register (applied index plus a hash chain of what was
 *     applied), plus an optional user state machine (struct sim_app_ops),
 *     snapshots it every `snapshot_every` entries and restores it from a
 *     snapshot on restart or install.
 *
 * After every event the cluster checks the Raft safety properties (see
 * invariants.c): election safety, leader append-only, log matching, leader
 * completeness and state machine safety, plus in-order application and
 * ReadIndex freshness.  A violated property, like a failed scenario
 * assertion, calls sim_fail(), which prints the reason and the trace of the
 * last events and unwinds to the runner (sim_test_run() in harness.h).
 *
 * Node ids are 1..n.  Times are simulated milliseconds since the start.
 * Nothing here is thread-safe; a cluster belongs to one thread.
 */
#ifndef CRAFT_SIM_CLUSTER_H
#define CRAFT_SIM_CLUSTER_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "craft/raft.h"

/* Nodes in one simulated cluster; the classic suites use 3, 5 and 7. */
#define SIM_NODES_MAX 9

/* Trace lines kept for a failure report (the last ones are printed). */
#define SIM_TRACE_MAX 256

/* A replicated state machine hosted by every node, in addition to the
 * built-in register.  All functions are called on the cluster's thread. */
struct sim_app_ops {
    /* A fresh, empty state for node `id`; NULL on out-of-memory. */
    void *(*open)(void *data, raft_id id);
    void (*close)(void *data, void *state);
    /* Apply one committed entry (commands and no-ops alike). */
    void (*apply)(void *data, void *state, const struct raft_entry *e);
    /* Serialise the state into a malloc'ed buffer (taken by the caller).
     * 0 or a CRAFT_E* code. */
    int (*snapshot)(void *data, void *state, struct raft_buffer *out);
    /* Replace the state with a serialised one (borrowed bytes).  0, or
     * CRAFT_ECORRUPT for bytes that do not decode. */
    int (*restore)(void *data, void *state, const void *buf, size_t len);
    void *data;
};

/* Called after a node applied a committed entry (the built-in register
 * already includes it). */
typedef void (*sim_apply_cb)(void *data, raft_id node,
                             const struct raft_entry *e);

/* Called once per read: status 0 when it is served -- the node's state
 * machine is now at `applied` >= the ReadIndex, read it now -- or the
 * core's refusal (CRAFT_ENOTLEADER, CRAFT_ELEADERLOST).  A read on a node
 * that crashes first gets no call. */
typedef void (*sim_read_cb)(void *data, raft_id node, uint64_t ctx, int status,
                            raft_index applied);

struct sim_options {
    unsigned n_nodes; /* 1..SIM_NODES_MAX */
    uint64_t seed;    /* drives every random choice of the simulation */
    unsigned tick_ms; /* simulated milliseconds per raft tick; default 10 */
    /* Raft tunables given to every core (trace hook is set by the
     * cluster).  Filled with raft_options_default() by sim_options_init. */
    struct raft_options raft;
    /* fsync delay, drawn uniformly from [min, max] ms per update. */
    unsigned fsync_min_ms;
    unsigned fsync_max_ms;
    /* Take a snapshot after applying an index that is a multiple of this
     * (0: never), keeping `snapshot_trailing` entries for lagging peers. */
    unsigned snapshot_every;
    unsigned snapshot_trailing;
    /* Also take one after applying when the node's durable Raft state
     * (sim_log_state_size) has reached this many bytes (0: never): the
     * classic KV service's maxraftstate. */
    size_t snapshot_bytes;
    const struct sim_app_ops *app; /* may be NULL */
    sim_apply_cb apply_cb;         /* may be NULL */
    void *apply_cb_data;
    sim_read_cb read_cb; /* may be NULL; called with apply_cb_data */
    /* Print every trace line to stderr as it happens (debugging). */
    bool verbose;
    /* Deliberate bugs in the runtime (enum sim_inject bits), for checking
     * that the invariant checks catch what they claim to catch. */
    unsigned inject;
};

enum sim_inject {
    /* Storage forgets the vote of the durable hard state on restart. */
    SIM_INJECT_FORGET_VOTE = 1u << 0,
    /* Storage loses the last durable log entry on restart (a torn tail
     * that was acknowledged). */
    SIM_INJECT_LOSE_TAIL = 1u << 1,
    /* The network flips a byte in one entry of one append in 20. */
    SIM_INJECT_CORRUPT = 1u << 2,
    /* Storage reports a write durable just before it is. */
    SIM_INJECT_EARLY_ACK = 1u << 3,
    /* A leader serves reads from its own commit index, without ReadIndex. */
    SIM_INJECT_LOCAL_READ = 1u << 4
};

/* Defaults: 3 nodes, seed 1, 10 ms ticks, raft defaults, 1 ms fsync, no
 * snapshots. */
void sim_options_init(struct sim_options *o);

/* Faults on one directed link.  Rates are per mille. */
struct sim_link_faults {
    unsigned drop_pm;      /* drop the message */
    unsigned dup_pm;       /* deliver it twice (the copy later) */
    unsigned delay_min_ms; /* delay drawn uniformly from [min, max] */
    unsigned delay_max_ms;
    unsigned long_reorder_pm; /* instead delay 200 + rand(rand(2000)) */
};

/* The labrpc "unreliable" network: 0-26 ms delay, 10% loss. */
void sim_faults_unreliable(struct sim_link_faults *f);
/* A reliable network: a fixed 1 ms delay, no loss. */
void sim_faults_reliable(struct sim_link_faults *f);

/* Message counters of one node.  "rpcs" counts requests only (vote,
 * append, snapshot, timeout-now), which is what the classic suite's RPC
 * counts count; bytes are raft_message_encoded_size() plus snapshot chunk
 * data. */
struct sim_counters {
    uint64_t msgs_out, msgs_in;
    uint64_t rpcs_out, rpcs_in;
    uint64_t bytes_out, bytes_in;
    uint64_t snapshots_in; /* snapshot chunks delivered */
};

struct sim_cluster;

/* Create a cluster and start every node.  0 or CRAFT_EINVAL/CRAFT_ENOMEM. */
int sim_cluster_new(const struct sim_options *o, struct sim_cluster **out);
void sim_cluster_free(struct sim_cluster *c);

/* Where sim_fail() unwinds to: the caller's jmp_buf, set with setjmp()
 * before any call that may fail (NULL: sim_fail prints and aborts).
 * sim_test_run() in harness.h does this and frees the cluster. */
void sim_set_fail_jump(struct sim_cluster *c, jmp_buf *jb);

/* Report a failed check: record the reason, print it with the trace and
 * unwind.  Never returns. */
_Noreturn void sim_fail(struct sim_cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *sim_fail_reason(const struct sim_cluster *c);

/* ---- time --------------------------------------------------------------- */

uint64_t sim_now(const struct sim_cluster *c);
/* Process every event up to now + ms and advance the clock to it. */
void sim_run_for(struct sim_cluster *c, uint64_t ms);
/* Run until pred() is true (checked after every event) or timeout_ms have
 * passed; returns pred()'s last value. */
bool sim_run_until(struct sim_cluster *c,
                   bool (*pred)(struct sim_cluster *, void *), void *data,
                   uint64_t timeout_ms);
/* Events processed so far (all nodes). */
uint64_t sim_events(const struct sim_cluster *c);

/* ---- faults ------------------------------------------------------------- */

unsigned sim_n_nodes(const struct sim_cluster *c);
/* labrpc's connect(i)/disconnect(i): a message passes only if both ends
 * are connected when it is sent and when it arrives. */
void sim_connect(struct sim_cluster *c, raft_id id);
void sim_disconnect(struct sim_cluster *c, raft_id id);
bool sim_is_connected(const struct sim_cluster *c, raft_id id);
/* Cut or restore one directed link (independent of connect/disconnect). */
void sim_link_set(struct sim_cluster *c, raft_id from, raft_id to, bool up);
/* Faults for every link, or for one directed link. */
void sim_set_faults(struct sim_cluster *c, const struct sim_link_faults *f);
void sim_set_link_faults(struct sim_cluster *c, raft_id from, raft_id to,
                         const struct sim_link_faults *f);
/* Shorthand: sim_faults_unreliable() or reliable on every link, keeping
 * the long-reordering setting. */
void sim_set_unreliable(struct sim_cluster *c, bool unreliable);
void sim_set_long_reordering(struct sim_cluster *c, bool on);

/* Make that many per mille of the cores' allocations fail (0: none).  A
 * core answers CRAFT_ENOMEM and must stay consistent; the cluster retries
 * what a runtime would retry (persistence notices) and treats the rest as
 * lost.  Independently, every crash checks that the core freed all its
 * memory. */
void sim_set_alloc_failures(struct sim_cluster *c, unsigned per_mille);

/* Crash a node: its core is freed, in-flight persistence is lost, messages
 * to it are dropped.  Restart: a new core from its durable state. */
void sim_crash(struct sim_cluster *c, raft_id id);
void sim_restart(struct sim_cluster *c, raft_id id);
bool sim_is_up(const struct sim_cluster *c, raft_id id);

/* ---- clients ------------------------------------------------------------ */

/* Propose one command on node id (copied).  Returns 0 and sets *index and
 * *term (either may be NULL), or CRAFT_ENOTLEADER (also for a crashed
 * node). */
int sim_propose(struct sim_cluster *c, raft_id id, const void *data, size_t len,
                raft_index *index, raft_term *term);
/* Propose a command that is the 8-byte little-endian encoding of value. */
int sim_propose_u64(struct sim_cluster *c, raft_id id, uint64_t value,
                    raft_index *index, raft_term *term);

/* Ask node id for a ReadIndex read; the cluster checks its freshness when
 * it is served.  Returns 0 and sets *ctx (may be NULL) to the read's
 * number, as given to the read callback, or CRAFT_ENOTLEADER for a crashed
 * node. */
int sim_read(struct sim_cluster *c, raft_id id, uint64_t *ctx);

/* Ask leader `id` to hand leadership to `peer` (RAFT_TRANSFER).  0, or
 * CRAFT_ENOTLEADER / CRAFT_EINVAL as the core answers. */
int sim_transfer(struct sim_cluster *c, raft_id id, raft_id peer);

struct sim_read_stats {
    uint64_t issued, served, refused;
    /* Issue time of the oldest read still waiting on a live node, or
     * UINT64_MAX. */
    uint64_t oldest_pending;
};
void sim_read_stats(const struct sim_cluster *c, struct sim_read_stats *s);

/* ---- observation -------------------------------------------------------- */

/* The core's status; false (and *st untouched) for a crashed node. */
bool sim_status(const struct sim_cluster *c, raft_id id,
                struct raft_status *st);
/* Last index applied by a node (0 for a crashed node). */
raft_index sim_applied(const struct sim_cluster *c, raft_id id);
/* The entry applied at `index` by any node: false if none applied it yet.
 * *value is the first 8 bytes of a command (little-endian, zero-padded). */
bool sim_applied_at(const struct sim_cluster *c, raft_index index,
                    uint8_t *type, uint64_t *value);
/* Highest commit index any node has reported. */
raft_index sim_commit_max(const struct sim_cluster *c);
/* Bytes of durable Raft state of a node (hard state plus log entries as
 * the wire format would hold them), the classic suite's RaftStateSize. */
size_t sim_log_state_size(const struct sim_cluster *c, raft_id id);
bool sim_has_snapshot(const struct sim_cluster *c, raft_id id);
/* The state of the user state machine on a node (NULL when down or when
 * the cluster has no sim_app_ops). */
void *sim_app_state(const struct sim_cluster *c, raft_id id);

void sim_counters(const struct sim_cluster *c, raft_id id,
                  struct sim_counters *out);
/* Sum over every node. */
void sim_counters_total(const struct sim_cluster *c, struct sim_counters *out);

/* A fingerprint of the run so far (clock, events, committed log, trace
 * length): two runs from the same seed must agree on it. */
uint64_t sim_digest(const struct sim_cluster *c);

/* Print the last `n` trace lines, one column per node. */
void sim_trace_print(const struct sim_cluster *c, FILE *f, unsigned n);
/* Add a free-form line to the trace (e.g. scenario steps). */
void sim_note(struct sim_cluster *c, raft_id id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Check that every node's shadow log still equals its core's log, entry
 * by entry, via raft_entry_at (O(log) per node). */
void sim_audit(struct sim_cluster *c);

#endif /* CRAFT_SIM_CLUSTER_H */
