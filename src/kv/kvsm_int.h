/*
 * kvsm_int.h -- the inside of struct kvsm, shared by the files of src/kv/
 * (kvsm.c, commands.c, entry.c, snapshot.c).  Not for other layers.
 */
#ifndef CRAFT_KV_KVSM_INT_H
#define CRAFT_KV_KVSM_INT_H

#include "kv/ht.h"
#include "kv/kvsm.h"
#include "kv/session.h"

struct kvsm {
    struct kvsm_config cfg;
    struct ht keys;
    struct kvsm_sessions sessions;
    uint64_t last_applied;
    uint64_t now_ms; /* max leader stamp applied; see invariant 1 */
};

/* Command flags. */
#define KVSM_CMD_READ 0x1u      /* reads state, never changes it */
#define KVSM_CMD_WRITE 0x2u     /* changes state: goes through the log */
#define KVSM_CMD_LOCAL 0x4u     /* touches no state at all */
#define KVSM_CMD_SESSION 0x8u   /* CRAFT.SESSION / CRAFT.EXEC */
#define KVSM_CMD_TX 0x10u       /* MULTI / EXEC / DISCARD: the server's queue */
#define KVSM_CMD_INTERNAL 0x20u /* only in entries the leader makes itself */

/* One command invocation.  rw is NULL on the read-only path. */
struct kvsm_exec {
    const struct kvsm *ro;
    struct kvsm *rw;
    uint64_t index;  /* log index of the entry being applied, or 0 */
    uint64_t now_ms; /* the time the command runs at (see kvsm_read_at()) */
    size_t argc;
    const uint8_t *const *argv;
    const size_t *lens;
    struct buf *out;
};

/*
 * The command table.  arity follows Redis: n > 0 means exactly n arguments
 * (the name included), n < 0 means at least -n.  A handler appends exactly
 * one RESP value to e->out and returns 0 or CRAFT_ENOMEM.  New commands
 * (issue #7: EXPIRE, GETRANGE, MULTI/EXEC...) are one row and one function.
 */
struct kvsm_command {
    const char *name; /* lower case, as Redis prints it in errors */
    int arity;
    unsigned flags;
    int (*fn)(struct kvsm_exec *e);
};

/* Delete up to KVSM_EXPIRE_PER_APPLY keys whose expiry time is <= the
 * state's clock (kvsm.h, invariant 6), in the same order on every replica;
 * run by every apply.  Returns the count deleted. */
size_t kvsm__expire_due(struct kvsm *sm);

/* Look up a command by name, case-insensitively.  NULL if unknown. */
const struct kvsm_command *kvsm__command_find(const uint8_t *name, size_t n);

/*
 * Check that argv names a known command with a valid arity; if not, append
 * Redis's error reply to out.  Internal commands count as unknown unless
 * internal_ok (the apply path).  Returns the command, or NULL with *rv set
 * to 0 (error reply written) or CRAFT_ENOMEM.
 */
const struct kvsm_command *
kvsm__command_check(size_t argc, const uint8_t *const *argv, const size_t *lens,
                    struct buf *out, int *rv, bool internal_ok);

/* kvsm_check() without the O(n) walk of the key table (ht_check): what a
 * snapshot's content can get wrong beyond its records (sessions, a key
 * already due to expire), for the loader to check in every build. */
int kvsm__check_all_but_keys(const struct kvsm *sm);

#endif /* CRAFT_KV_KVSM_INT_H */
