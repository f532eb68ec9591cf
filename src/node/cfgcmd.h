/*
 * cfgcmd.h -- the node's parameters for CONFIG GET/SET (the front end has
 * its own: maxclients, requirepass, port, ...).  Internal to src/node/.
 */
#ifndef CRAFT_NODE_CFGCMD_H
#define CRAFT_NODE_CFGCMD_H

#include <stdbool.h>
#include <stddef.h>

#include "node/config.h"

/* The name of parameter i (NULL past the last), its value written to v
 * (cap bytes).  As srv_backend.config_get. */
const char *node__config_get(const struct node_config *cfg, size_t i, char *v,
                             size_t cap);

/* Check (apply false) or set (apply true) a parameter by its lower-case
 * name: 0, CRAFT_ENOENT (no such parameter) or CRAFT_EINVAL with Redis's
 * reason in err.  As srv_backend.config_set.  Mutable: loglevel (applied
 * at once, process-wide) and snapshot-bytes (read at the next applied
 * entry). */
int node__config_set(struct node_config *cfg, const char *name,
                     const char *value, bool apply, char *err, size_t cap);

#endif /* CRAFT_NODE_CFGCMD_H */
