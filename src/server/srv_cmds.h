/*
 * srv_cmds.h -- pieces of the front end's connection commands kept out of
 * srv.c: the WATCH list of a connection (and, with later commands, other
 * per-connection helpers).  Internal to src/server/.
 */
#ifndef CRAFT_SERVER_SRV_CMDS_H
#define CRAFT_SERVER_SRV_CMDS_H

#include <stddef.h>
#include <stdint.h>

#include "server/srv.h"

/*
 * Record the keys of a WATCH op (argv[1..argc)) with the versions the
 * backend read for them: reply must be a RESP array of argc - 1 integers.
 * A key watched already keeps its first version (a change since the first
 * WATCH must still abort EXEC).  *w is created on first use.  Returns 0,
 * CRAFT_EPROTO (reply not such an array: nothing recorded), CRAFT_ELIMIT
 * (more than SRV_WATCH_MAX keys) or CRAFT_ENOMEM; on error *w is
 * unchanged.
 */
int srv__watch_add(struct srv_watch **w, size_t argc, uint8_t *const *argv,
                   const size_t *lens, const uint8_t *reply, size_t reply_len);

/* Free a watch list (NULL is fine). */
void srv__watch_free(struct srv_watch *w);

#endif /* CRAFT_SERVER_SRV_CMDS_H */
