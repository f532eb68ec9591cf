/*
 * snapload.h -- parsing a snapshot from the leader while it arrives.
 *
 * A follower that receives a snapshot used to write every chunk to its
 * store and, once the last one was durable, read the whole file back and
 * parse it into a new state machine: the parse (a hash table of every key)
 * came after the transfer.  A snapload parses on a thread of its own from
 * copies of the chunks as the loop receives them, so that the parse runs
 * while the rest is still on the wire and on its way to the disk; when the
 * store reports the snapshot durable and the core asks for the install,
 * the runtime waits for the parse to end and swaps the state in.
 *
 * The store still writes every chunk and the snapshot it makes durable is
 * the one that counts: a snapload is only a head start.  Whenever it cannot
 * follow (a chunk out of order, a different snapshot, too much queued, a
 * parse error) the runtime drops it and loads the durable file as before.
 *
 * Invariants:
 *   1. The thread only reads the chunks queued to it and a copy of the
 *      state machine's configuration taken at the start; it builds a state
 *      nobody else sees until snapload_finish() hands it over.
 *   2. Bytes are queued in order without gaps: fed == the offset of the
 *      next chunk accepted, and at most SNAPLOAD_QUEUE_MAX bytes wait.
 *   3. Every snapload ends with snapload_finish() or snapload_cancel(),
 *      which join the thread and free everything.
 * All functions run on the loop thread.
 */
#ifndef CRAFT_NODE_SNAPLOAD_H
#define CRAFT_NODE_SNAPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft/raft.h"
#include "node/sm.h"

/* Bytes received and not yet parsed above which a snapload gives up (the
 * parse is far behind the network): a bound on the memory it holds. */
#define SNAPLOAD_QUEUE_MAX (256u << 20)

struct snapload;

/* Start parsing the snapshot meta describes, with sm's configuration as
 * it is now.  0, or CRAFT_ENOMEM (also when no thread can be created). */
int snapload_start(const struct node_sm *sm,
                   const struct raft_snapshot_meta *meta,
                   struct snapload **out);

/* Queue a copy of the chunk of meta's snapshot at offset.  0, or
 * CRAFT_EINVAL (another snapshot, or not the next offset), CRAFT_ELIMIT
 * (SNAPLOAD_QUEUE_MAX), CRAFT_ENOMEM, or the parse's error once it has
 * ended (checked first, so even an empty chunk reports it; nothing is
 * queued then): the caller then cancels it. */
int snapload_feed(struct snapload *l, const struct raft_snapshot_meta *meta,
                  uint64_t offset, const void *data, size_t len);

/* Whether l has been fed all of the snapshot meta describes. */
bool snapload_complete(const struct snapload *l,
                       const struct raft_snapshot_meta *meta);

/* Wait for the parse to end and free l.  0 with *out the parsed state,
 * or the parse's error (nothing to free then). */
int snapload_finish(struct snapload *l, struct node_sm_parsed **out);

/* Stop the parse, wait for the thread and free l (and any parsed state). */
void snapload_cancel(struct snapload *l);

#endif /* CRAFT_NODE_SNAPLOAD_H */
