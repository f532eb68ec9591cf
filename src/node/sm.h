/*
 * sm.h -- the node runtime's view of the replicated state machine.
 *
 * A thin adapter over src/kv/ (the KV state machine, its command encoding,
 * sessions and snapshot format), so that node.c speaks only of "commands",
 * "reads" and "snapshots" and the KV layer can evolve behind it.
 *
 * Every function runs on the loop thread, except node_sm_snapshot_write(),
 * which the snapshot child process runs on its copy of the state, and
 * node_sm_snapshot_parse(), which may run on any thread.
 */
#ifndef CRAFT_NODE_SM_H
#define CRAFT_NODE_SM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "craft/raft.h"
#include "util/buf.h"

struct node_sm;

/* How a client command must be executed. */
enum node_sm_kind {
    NODE_SM_INVALID = 1, /* answered at once: the reply holds an error */
    NODE_SM_READ,        /* a linearizable read: ReadIndex, then read */
    NODE_SM_WRITE        /* a write: encode, propose, apply, reply */
};

int node_sm_new(struct node_sm **out);
void node_sm_free(struct node_sm *sm);

/* Classify argv.  NODE_SM_INVALID writes the error reply into reply. */
enum node_sm_kind node_sm_classify(struct node_sm *sm, size_t argc,
                                   const uint8_t *const *argv,
                                   const size_t *lens, struct buf *reply);

/* Encode a write command as a log entry payload, appended to out, with
 * the leader's wall-clock time now_ms.  0, CRAFT_ENOMEM, or another error
 * with an error reply written to reply. */
int node_sm_encode(struct node_sm *sm, size_t argc, const uint8_t *const *argv,
                   const size_t *lens, uint64_t now_ms, struct buf *out,
                   struct buf *reply);

/* Check a command queued inside MULTI: 0, or CRAFT_EINVAL with the error
 * reply appended to reply. */
int node_sm_check(struct node_sm *sm, size_t argc, const uint8_t *const *argv,
                  const size_t *lens, struct buf *reply);

/* Encode a transaction of n_cmds commands (the i-th is cmd_argc[i]
 * consecutive arguments of argv) as one log entry payload, appended to
 * out; with n_watch > 0 it carries the WATCHed keys and their versions,
 * and aborts at apply time if any changed.  Errors as node_sm_encode(). */
int node_sm_encode_multi(struct node_sm *sm, size_t n_cmds,
                         const size_t *cmd_argc, const uint8_t *const *argv,
                         const size_t *lens, size_t n_watch,
                         uint8_t *const *watch_keys, const size_t *watch_lens,
                         const uint64_t *watch_versions, uint64_t now_ms,
                         struct buf *out, struct buf *reply);

/* Apply the committed command at index.  reply (may be NULL when nobody
 * waits) receives the RESP reply.  0, or CRAFT_ECORRUPT if the payload is
 * not a valid command (the log is corrupt: the node must stop). */
int node_sm_apply(struct node_sm *sm, raft_index index, const void *data,
                  size_t len, struct buf *reply);

/* Account for a committed entry that is not a command (a leader's no-op). */
void node_sm_skip(struct node_sm *sm, raft_index index);

/* Execute a read against the current state; the reply goes to reply. */
int node_sm_read(struct node_sm *sm, size_t argc, const uint8_t *const *argv,
                 const size_t *lens, struct buf *reply);

/* As node_sm_read(), evaluated at the leader's time at_ms (0: the state's
 * clock); see kvsm_read_at() for when that is allowed. */
int node_sm_read_at(struct node_sm *sm, uint64_t at_ms, size_t argc,
                    const uint8_t *const *argv, const size_t *lens,
                    struct buf *reply);

/* Expiry: the state's clock, the earliest expiry time of any key (0 if
 * none), the count of keys with one, and the clock entry the leader
 * proposes when a key is due (appended to out; 0 or CRAFT_ENOMEM). */
uint64_t node_sm_now_ms(const struct node_sm *sm);
uint64_t node_sm_next_expiry_ms(const struct node_sm *sm);
uint64_t node_sm_expires(const struct node_sm *sm);
int node_sm_clock_encode(uint64_t now_ms, struct buf *out);

/* Serialise the whole state to f.  Returns 0 or CRAFT_EIO. */
int node_sm_snapshot_write(struct node_sm *sm, FILE *f);

/* Replace the whole state with the snapshot read through read_cb, which
 * fills up to len bytes and returns how many (0 at the end) or an error.
 * On failure the state is unchanged. */
typedef int64_t (*node_sm_read_cb)(void *data, void *buf, size_t len);
int node_sm_snapshot_load(struct node_sm *sm, node_sm_read_cb read_cb,
                          void *data);

/* A snapshot parsed into a state not in use yet: created on the loop
 * thread (it copies sm's configuration, which the loop may change later),
 * filled by node_sm_snapshot_parse() on any thread, then swapped in or
 * freed on the loop thread. */
struct node_sm_parsed;

/* NULL when out of memory. */
struct node_sm_parsed *node_sm_parsed_new(const struct node_sm *sm);

/* Parse the snapshot read through read_cb into p, once.  Touches nothing
 * but p.  0, or an error (CRAFT_ECORRUPT, CRAFT_EVERSION, CRAFT_ELIMIT,
 * CRAFT_ENOMEM or the callback's); p then holds no state. */
int node_sm_snapshot_parse(struct node_sm_parsed *p, node_sm_read_cb read_cb,
                           void *data);

/* Replace sm's state with the one parsed into p (p is freed). */
void node_sm_snapshot_swap(struct node_sm *sm, struct node_sm_parsed *p);

void node_sm_parsed_free(struct node_sm_parsed *p);

/* Keys and sessions held, for INFO. */
uint64_t node_sm_keys(const struct node_sm *sm);

#endif /* CRAFT_NODE_SM_H */
