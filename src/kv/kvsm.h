/*
 * kvsm.h -- the replicated key-value state machine of craftd.
 *
 * Pure and I/O-free: it is fed committed log entries and read-only commands
 * and produces the exact RESP reply bytes for each.  The node runtime and
 * the simulator drive the same code.  docs/craftd.md describes the command
 * set, the session protocol, the entry format and the snapshot format.
 *
 * Routing a client command (server side):
 *
 *   kvsm_classify()  ->  KVSM_REJECT  send the error reply it wrote
 *                        KVSM_LOCAL   kvsm_read() at once (PING, ECHO)
 *                        KVSM_READ    ReadIndex, then kvsm_read() on the
 *                                     argv suffix starting at cmd_offset
 *                        KVSM_WRITE   kvsm_cmd_encode() with the leader's
 *                                     clock, propose; on commit every replica
 *                                     runs kvsm_apply() and the proposing
 *                                     node sends its reply bytes
 *                        KVSM_TX      MULTI / EXEC / DISCARD: the server
 *                                     queues commands between MULTI and
 *                                     EXEC (classifying each) and proposes
 *                                     them as one kvsm_multi_encode() entry
 *
 * Invariants:
 *   1. Determinism: kvsm_apply() depends only on the state and the entry.
 *      Time comes from the leader's stamp in the entry, never from a
 *      replica's clock; the state's clock is the maximum stamp seen so far,
 *      so it never goes backwards when leadership moves between nodes whose
 *      clocks disagree.
 *   2. Exactly-once: a command carried in CRAFT.EXEC runs at most once per
 *      (session, seq).  A duplicate gets the saved reply.  A seq whose reply
 *      was already discarded, or an unknown or expired session, gets an
 *      error; nothing is ever executed a second time.
 *   3. Bounded: at most sessions_max sessions, each holding at most
 *      session_replies_max saved replies, and taking no new request while
 *      they total session_bytes_max bytes or more; keys and values are at
 *      most KVSM_VALUE_MAX bytes.
 *   4. last_applied strictly increases with every kvsm_apply()/kvsm_skip().
 *   5. The reply of every command is a single RESP2 value.
 *   6. Active expiry: applying an entry deletes the keys its stamp made
 *      due, up to KVSM_EXPIRE_PER_APPLY of them, in the order (time, key)
 *      -- so replicas agree on the key set and DBSIZE, not merely on what
 *      is visible -- and due keys are left only behind a full batch
 *      (invisible to every command; the next entries delete them).  The
 *      leader proposes clock entries (kvsm_clock_encode()) when
 *      kvsm_next_expiry_ms() comes due, and at once while due keys are
 *      left.
 *
 * Threading: a struct kvsm belongs to one thread.  kvsm_snapshot_write()
 * only reads, so it may run in a forked child on the parent's frozen
 * copy-on-write pages while the parent keeps applying.
 */
#ifndef CRAFT_KV_KVSM_H
#define CRAFT_KV_KVSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft/common.h"
#include "util/buf.h"

/* Format version of a log entry payload (byte 0).  New versions are added,
 * old ones stay readable: version 2 (written now) added the WATCH part of
 * a transaction and the leader's clock entries; version 1 entries (still
 * in logs) are read.  A craftd that only reads version 1 stops with
 * "unsupported version" on a version 2 entry instead of misapplying it. */
#define KVSM_ENTRY_VERSION 2
/* Keys one applied entry deletes by expiry at most: bounds the work of an
 * apply (1 M keys expiring in the same millisecond would otherwise stall
 * every replica for most of a second: 0.8 s measured); 4096 take about
 * 10 ms, below Redis's 25 ms active-expiry slice. */
#define KVSM_EXPIRE_PER_APPLY 4096

/* Format version of a snapshot, written and read.  Version 1 (without the
 * keys' WATCH versions) is refused with CRAFT_EVERSION. */
#define KVSM_SNAPSHOT_VERSION 2

/* Redis's proto-max-bulk-len: the largest key, value or argument. */
#define KVSM_VALUE_MAX (512u * 1024u * 1024u)
/* Most arguments in one command: as RESP_ARGS_MAX. */
#define KVSM_ARGS_MAX (1024u * 1024u)
/* Default bound on the session table.  16384 sessions with a few saved
 * small replies each cost a few MiB, and are more concurrent clients than a
 * Redis server serves by default (maxclients 10000). */
#define KVSM_SESSIONS_MAX 16384
/* Default session lifetime without activity, in leader-stamped time.  An
 * hour, as LogCabin uses: long enough for a client to ride out any leader
 * election or partition it could usefully survive. */
#define KVSM_SESSION_TIMEOUT_MS (60u * 60u * 1000u)
/* Default bound on saved (unacknowledged) replies per session, i.e. on a
 * session's pipeline depth.  redis-benchmark's default pipeline is 1 and
 * heavy pipelining uses tens; 128 leaves room. */
#define KVSM_SESSION_REPLIES_MAX 128
/* Default bound on the bytes of saved replies per session: a session whose
 * saved replies reach it takes no new request until it acknowledges some,
 * so a session holds at most this plus one reply.  1 MiB covers 128 typical
 * replies many times over; a client reading big values acknowledges. */
#define KVSM_SESSION_BYTES_MAX (1024u * 1024u)

struct kvsm_config {
    const struct craft_alloc *alloc; /* NULL for malloc */
    uint64_t hash_seed[2];           /* SipHash key; pick randomly per node */
    /* Must be equal on every replica (they shape replies): */
    size_t sessions_max;
    uint64_t session_timeout_ms;
    size_t session_replies_max;
    size_t session_bytes_max;
};

/* Fill in the defaults above with a fixed hash seed. */
void kvsm_config_default(struct kvsm_config *c);

struct kvsm;

/* Create an empty state machine.  0, CRAFT_EINVAL or CRAFT_ENOMEM; *out is
 * set only on success.  The config is copied. */
int kvsm_new(const struct kvsm_config *c, struct kvsm **out);
void kvsm_free(struct kvsm *sm);

/* ---- routing ---- */

enum kvsm_class {
    KVSM_REJECT, /* error reply already written; nothing to run */
    KVSM_LOCAL,  /* stateless (PING, ECHO): kvsm_read() right away */
    KVSM_READ,   /* read-only: ReadIndex, then kvsm_read() */
    KVSM_WRITE,  /* goes through the log: kvsm_cmd_encode(), propose */
    KVSM_TX      /* MULTI, EXEC or DISCARD: the connection's transaction
                    queue (server side); EXEC proposes kvsm_multi_encode() */
};

/* The session part of a log entry. */
struct kvsm_session_ref {
    uint64_t id;            /* the session, as returned by CRAFT.SESSION */
    uint64_t seq;           /* this request's sequence number, >= 1 */
    uint64_t first_unacked; /* lowest seq whose reply the client awaits */
};

struct kvsm_route {
    enum kvsm_class cls;
    size_t cmd_offset;         /* argv index of the command proper */
    bool has_session;          /* CRAFT.EXEC */
    struct kvsm_session_ref s; /* valid if has_session */
};

/*
 * Decide how to run a client command: checks the name, the arity and the
 * CRAFT.EXEC envelope.  For KVSM_REJECT the Redis-style error reply is
 * appended to err_reply.  Reads inside CRAFT.EXEC are routed as KVSM_READ:
 * reads change nothing, so they need no exactly-once bookkeeping.
 * Returns 0, or CRAFT_ENOMEM writing the reply.
 */
int kvsm_classify(size_t argc, const uint8_t *const *argv, const size_t *lens,
                  struct kvsm_route *out, struct buf *err_reply);

/* ---- log entries ---- */

/*
 * Encode the log entry payload for a command: the version byte, the
 * leader's wall-clock time in ms, the optional session reference and the
 * command's arguments (argv[0..argc), without any CRAFT.EXEC envelope).
 * Appends to out; 0, CRAFT_EINVAL (no arguments, too many, too long) or
 * CRAFT_ENOMEM; out is unchanged on failure.
 */
int kvsm_cmd_encode(uint64_t time_ms, const struct kvsm_session_ref *session,
                    size_t argc, const uint8_t *const *argv, const size_t *lens,
                    struct buf *out);

/* One command as an argument vector (borrowed). */
struct kvsm_argv {
    size_t argc;
    const uint8_t *const *argv;
    const size_t *lens;
};

/* The most commands in one transaction entry.  Redis has no limit; a
 * transaction is applied in one step, so bound the work of that step. */
#define KVSM_MULTI_MAX 1024

/*
 * Encode a transaction (MULTI ... EXEC) as one entry: the commands run
 * back to back in one apply, nothing interleaves, and the reply is an array
 * of their replies, as Redis's EXEC.  Same returns as kvsm_cmd_encode();
 * more than KVSM_MULTI_MAX commands is CRAFT_EINVAL.
 */
int kvsm_multi_encode(uint64_t time_ms, const struct kvsm_session_ref *session,
                      size_t n_cmds, const struct kvsm_argv *cmds,
                      struct buf *out);

/* A key WATCHed before MULTI, with the version WATCH read for it (the
 * reply of the state machine's WATCH: the index of the entry that last
 * created or changed the key, 0 if there was no key).  key is borrowed. */
struct kvsm_watch {
    const uint8_t *key;
    size_t len;
    uint64_t version;
};

/* The most watched keys one transaction entry carries. */
#define KVSM_WATCH_MAX 16384

/*
 * As kvsm_multi_encode(), for a transaction after WATCH: the entry carries
 * the n_watch (1 .. KVSM_WATCH_MAX) watched keys and versions, and applying
 * it runs nothing and replies a null array (as Redis's EXEC) if any
 * watched key's version differs -- it was created, changed (also to an
 * equal value, or its TTL), deleted or expired since.  Same returns.
 */
int kvsm_multi_encode_watch(uint64_t time_ms,
                            const struct kvsm_session_ref *session,
                            size_t n_cmds, const struct kvsm_argv *cmds,
                            size_t n_watch, const struct kvsm_watch *watch,
                            struct buf *out);

/* A decoded entry.  Argument bytes point into the payload (borrowed). */
struct kvsm_cmd {
    uint64_t time_ms;
    bool has_session;
    struct kvsm_session_ref s;
    bool multi;          /* a transaction */
    size_t n_cmds;       /* 1 unless multi */
    size_t argc;         /* of the first command */
    const uint8_t *cmds; /* n_cmds times: u32 argc, argc (u32 len, bytes) */
    size_t cmds_len;
    size_t n_watch;       /* watched keys (multi only), else 0 */
    const uint8_t *watch; /* n_watch times: u64 version, u32 len, bytes */
};

/* Walk the watched keys of a decoded entry: *off starts at 0. */
void kvsm_cmd_watch(const struct kvsm_cmd *c, size_t *off,
                    struct kvsm_watch *w);

/* Strictly validate and decode a payload.  0, CRAFT_EVERSION (unknown
 * version byte) or CRAFT_ECORRUPT (anything malformed: short, trailing
 * bytes, reserved bits, zero or too many commands or arguments, lengths
 * past the end). */
int kvsm_cmd_decode(const void *payload, size_t len, struct kvsm_cmd *out);

/* Walk a decoded entry: *off starts at 0; kvsm_cmd_next() returns the next
 * command's argc, then kvsm_cmd_arg() yields its arguments one by one. */
size_t kvsm_cmd_next(const struct kvsm_cmd *c, size_t *off);
void kvsm_cmd_arg(const struct kvsm_cmd *c, size_t *off, const uint8_t **p,
                  size_t *n);

/* ---- apply and read ---- */

/*
 * Apply the committed entry at index (> kvsm_last_applied()).  Appends the
 * command's RESP reply to reply -- an error reply is still a successful
 * apply.  Returns 0; CRAFT_ECORRUPT or CRAFT_EVERSION if the payload does
 * not decode (state unchanged: the runtime must stop the node, as every
 * replica would fail identically); CRAFT_ENOMEM (also fatal: the replicas
 * would diverge if this one skipped the entry).
 */
int kvsm_apply(struct kvsm *sm, uint64_t index, const void *payload, size_t len,
               struct buf *reply);

/* Account for a committed entry that is not a KV command (the leader's
 * no-op, a configuration change), keeping last_applied in step. */
void kvsm_skip(struct kvsm *sm, uint64_t index);

/*
 * Run a read-only or stateless command (class KVSM_READ or KVSM_LOCAL, with
 * the CRAFT.EXEC envelope already stripped) against the current state,
 * appending its reply.  Touches neither the log nor the state.  Returns 0,
 * CRAFT_EINVAL if the command is not read-only (an error reply is written
 * too), or CRAFT_ENOMEM.
 */
int kvsm_read(const struct kvsm *sm, size_t argc, const uint8_t *const *argv,
              const size_t *lens, struct buf *reply);

/*
 * As kvsm_read(), with the command evaluated at time max(at_ms, the
 * state's clock): TTL and PTTL count down between clock entries.  The
 * caller (the leader, with at_ms its clock when the read arrived) must only
 * pass an at_ms with no key due in (kvsm_now_ms(), at_ms] -- i.e.
 * kvsm_next_expiry_ms() is 0 or > at_ms -- so that what is visible is what
 * the state's own clock says; otherwise it must first get a clock entry
 * stamped >= at_ms applied.  kvsm_read() is kvsm_read_at(sm, 0, ...).
 */
int kvsm_read_at(const struct kvsm *sm, uint64_t at_ms, size_t argc,
                 const uint8_t *const *argv, const size_t *lens,
                 struct buf *reply);

/*
 * Encode a clock entry: a log entry carrying only the leader's time, which
 * advances the state's clock and so deletes the keys that came due
 * (invariant 6).  Its reply is +OK.  Same returns as kvsm_cmd_encode().
 */
int kvsm_clock_encode(uint64_t time_ms, struct buf *out);

/* The earliest expiry time of any key, 0 if no key has one. */
uint64_t kvsm_next_expiry_ms(const struct kvsm *sm);
/* How many keys have an expiry time (INFO keyspace's expires=). */
size_t kvsm_expires_count(const struct kvsm *sm);

uint64_t kvsm_last_applied(const struct kvsm *sm);
/* The state's clock: the largest leader stamp applied so far. */
uint64_t kvsm_now_ms(const struct kvsm *sm);
size_t kvsm_key_count(const struct kvsm *sm);
size_t kvsm_session_count(const struct kvsm *sm);

/* O(n) check of every internal invariant, for tests.  1 if consistent. */
int kvsm_check(const struct kvsm *sm);

/* ---- snapshots ---- */

/* Write n bytes; 0 or a negative CRAFT_E* code, which aborts the write. */
typedef int (*kvsm_write_cb)(void *ctx, const void *p, size_t n);
/* Read up to n bytes into p; the count read (0 only at the end), or a
 * negative CRAFT_E* code. */
typedef long long (*kvsm_read_cb)(void *ctx, void *p, size_t n);

/*
 * Serialise the whole state (keys, values, sessions with their saved
 * replies, last_applied, clock) through write_cb in chunks of at most
 * KVSM_SNAPSHOT_CHUNK bytes.  Read-only on sm.  Returns 0, the callback's
 * error, or CRAFT_ENOMEM.
 */
#define KVSM_SNAPSHOT_CHUNK (64u * 1024u)
int kvsm_snapshot_write(const struct kvsm *sm, kvsm_write_cb write_cb,
                        void *ctx);

/*
 * Load a snapshot into a new state machine, validating everything (magic,
 * version, checksums, limits, duplicate keys and sessions, the saved
 * replies' RESP syntax, trailing bytes).  On success *out is the new state
 * machine and the caller swaps it for the old one, so an install is atomic;
 * on failure nothing is created.  Returns 0, CRAFT_ECORRUPT, CRAFT_EVERSION,
 * CRAFT_ELIMIT (valid but beyond this config's bounds), CRAFT_ENOMEM or the
 * read callback's error.
 */
int kvsm_snapshot_load(const struct kvsm_config *c, kvsm_read_cb read_cb,
                       void *ctx, struct kvsm **out);

#endif /* CRAFT_KV_KVSM_H */
