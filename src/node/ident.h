/*
 * The identity of a data directory: which node of which cluster owns it.
 *
 * The first start of a node writes DIR/IDENTITY (node id, cluster id and
 * member list, with a CRC-32C) through a temporary file, fsync, rename and
 * a directory fsync, so a crash leaves either no identity or a whole one.
 * Every later start reads it back and refuses to run with another id or
 * member list: a node that silently joined another cluster with an old log
 * would break Raft's safety.
 *
 * The directory is also locked (flock on DIR/LOCK) for the life of the
 * process so that two craftd processes never share one data dir.
 */
#ifndef CRAFT_NODE_IDENT_H
#define CRAFT_NODE_IDENT_H

#include <stdbool.h>
#include <stddef.h>

#include "node/config.h"

#define NODE_IDENT_FILE "IDENTITY"
#define NODE_LOCK_FILE "LOCK"

/*
 * Create the data dir if needed, lock it and check or write its identity.
 * Returns 0 and sets *lock_fd (OUT; keep it open while running), or
 * CRAFT_EIO (unwritable dir, I/O error), CRAFT_EBUSY (locked by another
 * process), CRAFT_EMISMATCH (another node id or member list) or
 * CRAFT_ECORRUPT (an unreadable identity file), with the reason in errmsg.
 */
int node_ident_open(const struct node_config *cfg, int *lock_fd, char *errmsg,
                    size_t errmsg_len);

/*
 * As node_ident_open, but without writing a missing identity: sets
 * *missing (OUT) instead, for the caller to write it with
 * node_ident_write() once the node has started (so that a first start that
 * fails, e.g. on an address it cannot listen on, leaves the directory
 * unclaimed and a corrected command line works).
 */
int node_ident_lock(const struct node_config *cfg, int *lock_fd, bool *missing,
                    char *errmsg, size_t errmsg_len);
int node_ident_write(const struct node_config *cfg, char *errmsg,
                     size_t errmsg_len);

#endif /* CRAFT_NODE_IDENT_H */
