/*
 * node.h -- craftd's runtime: one libuv loop that drives the Raft core with
 * real time (a tick timer), real storage (src/storage/, fsync on the thread
 * pool), real peers (src/net/) and the client front end (src/server/).
 *
 * Usage (craftd.c):
 *
 *     node_start(loop, &cfg, &n, errmsg, len);   -- loads, listens, "ready"
 *     uv_run(loop, UV_RUN_DEFAULT);              -- until stopped
 *     node_exit_code(n); node_free(n);
 *
 * SIGTERM and SIGINT call node_stop(): no new commands are accepted, the
 * commands already proposed get up to NODE_STOP_GRACE_MS to commit (and are
 * answered), the rest are failed with a clear error, queued writes reach
 * the disk, and every handle is closed so that uv_run() returns.
 */
#ifndef CRAFT_NODE_NODE_H
#define CRAFT_NODE_NODE_H

#include <stddef.h>
#include <uv.h>

#include "node/config.h"

/* How long a stopping leader waits for proposals in flight to commit.  A
 * healthy cluster commits within a few milliseconds; a node cut off from a
 * majority never will, and should not hold its operator for long. */
#define NODE_STOP_GRACE_MS 2000

struct node;

/*
 * Open the data dir (identity, lock, log, snapshot), restore the state
 * machine, start the Raft core, listen for peers and clients.  cfg is
 * copied.  0 and *out set, or a CRAFT_E* code with a one-line reason in
 * errmsg (the process should print it and exit non-zero).
 */
int node_start(uv_loop_t *loop, const struct node_config *cfg,
               struct node **out, char *errmsg, size_t errmsg_len);

/* Begin a clean stop (idempotent).  uv_run() returns once it is done. */
void node_stop(struct node *n);

/* 0 after a clean stop, 1 after a fatal error (disk failure, corruption). */
int node_exit_code(const struct node *n);

/* Free the node once uv_run() has returned. */
void node_free(struct node *n);

#endif /* CRAFT_NODE_NODE_H */
