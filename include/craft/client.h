/*
 * craft/client.h -- the craftd client library (libcraftclient).
 *
 * A client is given the addresses of some members of a craftd cluster (one
 * is enough to start: a MOVED reply teaches it the leader's address) and
 * sends Redis commands to the leader, following it as it moves:
 *
 *   - `MOVED 0 HOST:PORT`: the command did not run; resend it there.
 *   - `CLUSTERDOWN`, `SHUTDOWN`, a refused or timed-out connect: the command
 *     did not run; try the next address after a short backoff.
 *   - `UNCERTAIN`, a connection lost or a reply timed out after the command
 *     was sent: the command may or may not have run.  A write sent through a
 *     session is resent with the same sequence number, which craftd applies
 *     at most once (docs/craftd.md, "Sessions"); a read is simply resent;
 *     a write sent without a session fails with CRAFT_ELEADERLOST.
 *
 * Exactly-once.  With `exactly_once` set (the default), the client opens a
 * session (`CRAFT.SESSION`) the first time it sends a write and wraps every
 * write as `CRAFT.EXEC <id> <seq> <first-unacked> <command...>`.  A write
 * whose retries run out fails with CRAFT_ETIMEDOUT or CRAFT_ELEADERLOST:
 * its outcome is then unknown, as with any client, but it runs at most
 * once, and never after the client's next write (whose first-unacked
 * makes craftd refuse any late copy of it).
 *
 * Replies are hiredis `redisReply` objects, owned by the caller and freed
 * with freeReplyObject().  An error reply from the command itself (say
 * `-ERR value is not an integer`) is a successful call: the reply has type
 * REDIS_REPLY_ERROR.  Only the routing errors above are handled here.
 *
 * Threads.  A struct craft_client is used by one thread at a time.  A
 * struct craft_aclient lives on the caller's libuv loop and is used only
 * from that loop's thread.
 *
 * Not supported through this library: MULTI/EXEC/DISCARD/WATCH (a
 * transaction is bound to one connection; send `CRAFT.EXEC` by hand),
 * SUBSCRIBE and other commands that change the connection's mode.
 */
#ifndef CRAFT_CLIENT_H
#define CRAFT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "craft/common.h"

/* At most this many member addresses are remembered (craftd clusters have
 * at most 7 members; the rest is room for addresses learned from MOVED). */
#define CRAFT_CLIENT_ADDRS_MAX 16

/* Longest "HOST:PORT" accepted, without the terminating NUL. */
#define CRAFT_CLIENT_ADDR_LEN_MAX 63

struct craft_client_options {
    /* "HOST:PORT" of one or more members (copied by craft_client_new). */
    const char *const *addrs;
    size_t n_addrs;
    /* Connecting to one member; a member that does not answer the SYN in
     * time is skipped for this attempt. */
    unsigned connect_timeout_ms;
    /* Waiting for one reply.  Must exceed a craftd election (1-2 s by
     * default) or a write proposed just before a leader change will often
     * be retried while it is still committing. */
    unsigned request_timeout_ms;
    /* The whole budget of one command, every retry included. */
    unsigned total_timeout_ms;
    /* At most this many sends of one command (0: no limit but the time). */
    unsigned max_attempts;
    /* Wrap writes in a session (see above).  Default true. */
    bool exactly_once;
    /* If not NULL, sent as AUTH after connecting (copied). */
    const char *password;
};

/* Fill o with the defaults: no addresses, connect 1000 ms, request 3000 ms,
 * total 15000 ms, no attempt limit, exactly_once. */
CRAFT_API void craft_client_options_init(struct craft_client_options *o);

/* ---- Synchronous client ------------------------------------------------ */

struct craft_client;

/* Create a client; no connection is opened until the first command.
 * Returns 0 and sets *out, CRAFT_EINVAL for an empty or malformed address
 * list or a zero timeout (the message is written to errmsg if it is not
 * NULL, at most errmsg_len bytes), CRAFT_ENOMEM. */
CRAFT_API int craft_client_new(const struct craft_client_options *o,
                               struct craft_client **out, char *errmsg,
                               size_t errmsg_len);

/* Close the connection and free the client.  NULL is allowed. */
CRAFT_API void craft_client_free(struct craft_client *c);

/* Send one command, formatted as hiredis's redisCommand() does ("SET %s %b"
 * ...), to the leader, retrying as described above.  On 0, *reply (OUT) is
 * the reply, to be freed with freeReplyObject().  Errors:
 *   CRAFT_EINVAL       an empty or unsupported command (MULTI, ...)
 *   CRAFT_ETIMEDOUT    no answer within total_timeout_ms or max_attempts
 *                      (for a write: its outcome is unknown)
 *   CRAFT_ECONNREFUSED the same, and the last attempt found nobody listening
 *   CRAFT_ELEADERLOST  a write without a session may have run, or a session
 *                      expired while a write was in doubt
 *   CRAFT_EAUTH        the password was refused or is needed
 *   CRAFT_ENOMEM
 * craft_client_errmsg() then describes the error. */
CRAFT_API int craft_client_command(struct craft_client *c, redisReply **reply,
                                   const char *fmt, ...);

/* The same with arguments given as argc byte strings (lens[i] bytes each;
 * lens may be NULL for NUL-terminated strings).  Arguments are copied. */
CRAFT_API int craft_client_command_argv(struct craft_client *c,
                                        redisReply **reply, int argc,
                                        const char *const *argv,
                                        const size_t *lens);

/* A description of the last error (empty after a success).  Valid until the
 * next call on c. */
CRAFT_API const char *craft_client_errmsg(const struct craft_client *c);

/* The address the client currently believes leads ("HOST:PORT"), or "" if
 * it has none yet.  Valid until the next call on c. */
CRAFT_API const char *craft_client_leader(const struct craft_client *c);

struct craft_client_stats {
    uint64_t commands;  /* calls that returned 0 */
    uint64_t sends;     /* commands written to a connection */
    uint64_t redirects; /* MOVED replies followed */
    uint64_t retries;   /* resends after a failure or an unknown outcome */
    uint64_t connects;  /* connections opened */
    uint64_t session;   /* the current session id, 0 if none */
};

/* Counters since craft_client_new (OUT). */
CRAFT_API void craft_client_get_stats(const struct craft_client *c,
                                      struct craft_client_stats *stats);

/* ---- Asynchronous client on a libuv loop ------------------------------ */

struct uv_loop_s;
struct craft_aclient;

/* Called exactly once per accepted request, on the loop's thread: status 0
 * with the reply, or a negative CRAFT_E* code as for craft_client_command
 * with reply NULL and errmsg describing the error; CRAFT_ECANCELED if the
 * client is closed first.  reply and errmsg are borrowed for the duration
 * of the call (hiredis 0.14 frees a reply when its callback returns). */
typedef void (*craft_aclient_cb)(struct craft_aclient *c, void *data,
                                 int status, redisReply *reply,
                                 const char *errmsg);

typedef void (*craft_aclient_close_cb)(struct craft_aclient *c, void *data);

/* Create an asynchronous client on loop.  Same options and errors as
 * craft_client_new. */
CRAFT_API int craft_aclient_new(struct uv_loop_s *loop,
                                const struct craft_client_options *o,
                                struct craft_aclient **out, char *errmsg,
                                size_t errmsg_len);

/* Queue a command (arguments copied).  Requests run one after another, in
 * the order given, each with the retry semantics of the synchronous client;
 * total_timeout_ms counts from when a request starts, not from when it was
 * queued.
 * Returns 0 and cb fires exactly once later (never from inside this call),
 * or CRAFT_EINVAL/CRAFT_ENOMEM/CRAFT_ECLOSED and cb never fires. */
CRAFT_API int craft_aclient_command_argv(struct craft_aclient *c, int argc,
                                         const char *const *argv,
                                         const size_t *lens,
                                         craft_aclient_cb cb, void *data);

/* Cancel every queued request (their callbacks fire with CRAFT_ECANCELED,
 * before this returns), close the connection and, once the client's handles
 * are closed, call cb (may be NULL; c must not be used after it returns)
 * and free c.  Call once; no other call on c is allowed afterwards. */
CRAFT_API void craft_aclient_close(struct craft_aclient *c,
                                   craft_aclient_close_cb cb, void *data);

#endif /* CRAFT_CLIENT_H */
