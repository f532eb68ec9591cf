/*
 * tests/sim/kv_world.h -- the replicated key-value store in the simulator:
 * the real kv/ state machine on every node of a simulated cluster, a
 * server front end that mirrors craftd's, a simulated client network and
 * model clerks, for the classic KV scenarios (reference §4) and random KV
 * runs.  docs/sim-kv.md describes the model.
 *
 * Server (one per node), as craftd does it:
 *   - every request is routed by kvsm_classify();
 *   - a write is encoded by kvsm_cmd_encode() with the leader's simulated
 *     clock and proposed; the node remembers (index, term) and answers
 *     when it applies that index: the kvsm_apply() reply if the entry there
 *     has that term, "wrong leader" otherwise.  Losing leadership or moving
 *     to another term before that answers "wrong leader" at once: the
 *     outcome is unknown and the clerk retries in its session;
 *   - a read goes through the core's ReadIndex (RAFT_READ) and is served
 *     by kvsm_read() once the node has applied up to the read index;
 *   - when the durable Raft state reaches maxraftstate bytes the node
 *     writes a kvsm snapshot and hands it to the core; an installed or
 *     restored snapshot is loaded with kvsm_snapshot_load() into a fresh
 *     state machine which then replaces the old one.
 *
 * Client network: a request and its reply each take 1 ms (reliable) or
 * 0-26 ms with 10% loss (unreliable, labrpc's numbers); optionally some
 * requests arrive twice.  A lost message, a crashed server or an endpoint
 * the clerk may not use is a failed call, reported after 0-100 ms as
 * labrpc does; a call not answered within KV_CALL_TIMEOUT_MS fails too.
 * Partitions cut only the links between servers, as in the classic
 * tests.
 *
 * Clerk (as the classic clerk): the servers in a shuffled order, the last
 * leader cached, one call at a time, retrying forever on failure or
 * "wrong leader" by moving to the next server.  Writes are exactly-once:
 * the clerk opens a session (CRAFT.SESSION) and sends each Put/Append as
 * CRAFT.EXEC <id> <seq> <seq> SET|APPEND ..., so a retry is answered from
 * the session's saved reply instead of running twice.
 *
 * History: every operation is recorded with call and return stamps in
 * simulated time (an operation still running when the history is checked
 * has an unknown outcome) and kv_check_linearizable() runs the lincheck
 * search on it.
 *
 * Invariants:
 *   1. A clerk has at most one operation and one call in flight; replies to
 *      older calls are ignored (matched by call number).
 *   2. A pending request at a server is answered exactly once, or dropped
 *      with the node's crash (the clerk's call then fails).
 *   3. Every completed operation is in the history exactly once.
 */
#ifndef CRAFT_SIM_KV_WORLD_H
#define CRAFT_SIM_KV_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "lincheck.h"

/* A call the server has not answered by then fails at the clerk.  Twice
 * the longest election timeout (50 ticks of 10 ms): a leader cut off from
 * its majority has stepped down by then (check-quorum) and answered. */
#define KV_CALL_TIMEOUT_MS 1000
/* After trying every server in vain, a clerk pauses this long before the
 * next round, so that a leaderless cluster is not flooded with calls: a
 * tenth of the shortest election timeout. */
#define KV_ROUND_PAUSE_MS 25
/* Most clerks in one world: GenericTest makes new ones in each of its 3
 * rounds, 20 at most (SnapshotRecoverManyClients), plus its checking
 * clerk. */
#define KV_CLERKS_MAX 64

/* Deliberate bugs in the KV layer, in the high bits of sim_test.inject
 * (the low ones are enum sim_inject, for the cluster), to check that the
 * KV checks catch what they claim to. */
enum kv_inject {
    /* The clerk sends writes without its session: a retry runs again. */
    KV_INJECT_NO_SESSION = 1u << 16,
    /* Servers answer Gets from their own state at once, leader or not. */
    KV_INJECT_LOCAL_READ = 1u << 17,
    /* A leader acknowledges a write when it proposes it, not on commit. */
    KV_INJECT_EARLY_REPLY = 1u << 18
};
#define KV_INJECT_MASK 0xffff0000u

struct kv_world_opts {
    unsigned n_servers;
    bool unreliable;
    /* Snapshot when the durable Raft state reaches this many bytes; 0 for
     * never (the classic maxraftstate -1). */
    size_t maxraftstate;
};

struct kv_world;
struct kv_clerk;

/* Called when a clerk's operation completes. */
typedef void (*kv_done_cb)(struct kv_clerk *ck, void *data);

/* Create the cluster (t->c) with a KV server on every node.  Failures of
 * the scenario unwind through kv_world, which frees itself; see
 * kv_scenario_run(). */
struct kv_world *kv_world_new(struct sim_test *t,
                              const struct kv_world_opts *o);

/* Run body(t, w, arg) on a new world and free it afterwards, also when a
 * check fails (the failure then unwinds to sim_test_run). */
void kv_scenario_run(struct sim_test *t, const struct kv_world_opts *o,
                     void (*body)(struct sim_test *, struct kv_world *, void *),
                     void *arg);

struct sim_cluster *kv_cluster(struct kv_world *w);

/* Run fn(arg) when the world is freed, also after a failed check: for
 * state a scenario allocates (at most 8 per world). */
void kv_defer(struct kv_world *w, void (*fn)(void *), void *arg);

/* ---- time and faults ---------------------------------------------------- */

/* Advance simulated time, delivering client messages on the way. */
void kv_run_for(struct kv_world *w, uint64_t ms);
/* Run until the clerk's operation is done or timeout_ms passed. */
bool kv_wait(struct kv_world *w, struct kv_clerk *ck, uint64_t timeout_ms);
/* Run until every clerk is idle or timeout_ms passed. */
bool kv_wait_all(struct kv_world *w, uint64_t timeout_ms);

/* Servers: partition into groups (group[i] for server i + 1); connect all
 * back; shut a server down (crash) and restart it from durable state. */
void kv_partition(struct kv_world *w, const unsigned *group);
void kv_connect_all(struct kv_world *w);
void kv_crash(struct kv_world *w, raft_id id);
void kv_restart(struct kv_world *w, raft_id id);
void kv_set_unreliable(struct kv_world *w, bool unreliable);
/* Deliver that many per mille of client requests twice (the copy later),
 * as a client library resending on a new connection would. */
void kv_set_duplicates(struct kv_world *w, unsigned per_mille);

/* The leader of the highest term among live servers, or 0. */
raft_id kv_leader(struct kv_world *w);

/* ---- clerks ------------------------------------------------------------- */

/* A clerk for every server, in a shuffled order, all endpoints enabled. */
struct kv_clerk *kv_clerk_new(struct kv_world *w);
/* Enable only the endpoints to these servers (makeClient(to) /
 * ConnectClient). */
void kv_clerk_connect(struct kv_clerk *ck, const raft_id *to, unsigned n);
unsigned kv_clerk_index(const struct kv_clerk *ck);

enum kv_op { KV_GET, KV_PUT, KV_APPEND };

/* Start an operation (the clerk must be idle); cb (may be NULL) is called
 * when it completes. */
void kv_start(struct kv_clerk *ck, enum kv_op op, const char *key,
              const char *value, kv_done_cb cb, void *data);
bool kv_busy(const struct kv_clerk *ck);
/* The value of the last completed Get ("" for a missing key). */
const char *kv_result(const struct kv_clerk *ck);
/* Give up the clerk's operation (a client that times out for good): its
 * outcome is unknown, and the clerk sends nothing more, ever. */
void kv_abandon(struct kv_clerk *ck);
/* Calls made so far (first tries and retries). */
uint64_t kv_calls(const struct kv_clerk *ck);

/* Synchronous helpers: start and wait up to 30 s of simulated time,
 * failing the scenario if the operation does not complete.  kv_get's
 * result is valid until the clerk's next operation. */
void kv_put(struct kv_world *w, struct kv_clerk *ck, const char *key,
            const char *value);
void kv_append(struct kv_world *w, struct kv_clerk *ck, const char *key,
               const char *value);
const char *kv_get(struct kv_world *w, struct kv_clerk *ck, const char *key);
/* check(): Get must return exactly `expect`. */
void kv_check(struct kv_world *w, struct kv_clerk *ck, const char *key,
              const char *expect);

/* ---- measurements and checks --------------------------------------------- */

/* Largest durable Raft state of any server (LogSize). */
size_t kv_log_size(struct kv_world *w);
/* Largest kvsm snapshot written so far by any server, in bytes (0 if
 * none); the simulator's 16-byte register header is not counted. */
size_t kv_snapshot_size_max(struct kv_world *w);
/* Whether any server holds a snapshot. */
bool kv_any_snapshot(struct kv_world *w);
/* Operations recorded so far. */
size_t kv_history_len(struct kv_world *w);

/* Check the history; an illegal one fails the scenario after printing the
 * smallest failing window, the history file and the replay command.  An
 * unknown verdict (search budget) passes with a note, as porcupine's. */
void kv_check_linearizable(struct kv_world *w);
/* Let every live server apply the same index (within timeout_ms), then
 * check that they hold the same value for every key in the history. */
void kv_check_replicas(struct kv_world *w, uint64_t timeout_ms);
/* Operations of the history whose outcome is unknown. */
size_t kv_history_unknown(struct kv_world *w);
/* Search budget of kv_check_linearizable per key (0: LIN_STEPS_MAX). */
void kv_set_lin_steps(struct kv_world *w, uint64_t steps);
/* Print the verdict of a legal history too (default on; an unknown one is
 * always printed). */
void kv_set_lin_report(struct kv_world *w, bool on);

/* A direct check for a key that only received appends of distinct values
 * (after a Put of ""), read as `value` once they all completed: the
 * appends' order in the value is their linearization, so it must respect
 * real time -- an append that returned before another was called comes
 * first.  The general search is exponential on such histories, as nothing
 * but the last read constrains the order. */
void kv_check_append_order(struct kv_world *w, const char *key,
                           const char *value);

#endif /* CRAFT_SIM_KV_WORLD_H */
