/*
 * srv_cmds.h -- pieces of the front end's connection commands kept out of
 * srv.c: the WATCH list of a connection (and, with later commands, other
 * per-connection helpers).  Internal to src/server/.
 */
#ifndef CRAFT_SERVER_SRV_CMDS_H
#define CRAFT_SERVER_SRV_CMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#include "server/srv.h"

/*
 * Record the keys of a WATCH op (argv[1..argc)) with the versions the
 * backend read for them: reply must be a RESP array of argc - 1 integers.
 * A key watched already keeps its first version (a change since the first
 * WATCH must still abort EXEC).  *w is created on first use.  Returns 0,
 * CRAFT_EPROTO (reply not such an array: nothing recorded), CRAFT_ELIMIT
 * (more than SRV_WATCH_MAX keys or SRV_WATCH_BYTES_MAX bytes) or CRAFT_ENOMEM;
 * on error *w is unchanged.
 */
int srv__watch_add(struct srv_watch **w, size_t argc, uint8_t *const *argv,
                   const size_t *lens, const uint8_t *reply, size_t reply_len);

/* Free a watch list (NULL is fine). */
void srv__watch_free(struct srv_watch *w);

/*
 * CONFIG GET/SET/RESETSTAT/REWRITE over the parameters of several sources
 * (the front end's own and the backend's), with Redis 7's replies and
 * error wording.  Patterns are globs, case-insensitive; CONFIG SET of
 * several parameters checks them all before it applies any.  The reply
 * (a map in RESP3) is appended to b.
 */
struct srv__config_src {
    void *data;
    const char *(*get)(void *data, size_t i, char *value, size_t cap);
    int (*set)(void *data, const char *name, const char *value, bool apply,
               char *err, size_t err_cap);
};
void srv__config_command(const struct srv__config_src *srcs, size_t n_srcs,
                         size_t argc, const uint8_t *const *argv,
                         const size_t *lens, bool resp3, struct buf *b);

/* Most patterns in one CONFIG GET (Redis has no limit; no client sends
 * more than a handful). */
#define SRV_CONFIG_PATTERNS_MAX 1024

/* Longest CONFIG parameter value (requirepass is at most 512 bytes). */
#define SRV_CONFIG_VALUE_MAX 1024

/* One connection as CLIENT LIST and CLIENT INFO describe it. */
struct srv__client_info {
    uint64_t id;
    char addr[64];  /* "ip:port", "[ip6]:port" */
    char laddr[64]; /* the local end */
    long fd;
    const char *name; /* "" for none */
    uint64_t age_s, idle_s;
    char flags[8];   /* "N", or x (MULTI), r (READONLY) */
    long long multi; /* commands queued in MULTI, -1 outside */
    size_t qbuf, qbuf_free, obl, omem;
    const char *events; /* "r", "w", "rw" or "" */
    const char *cmd;    /* the last command, "client|list" style */
    int resp;
};

/* Append Redis's CLIENT LIST line for ci, ending in "\n". */
int srv__client_line(const struct srv__client_info *ci, struct buf *b);

/* Format a socket address as Redis does ("ip:port", "[ip6]:port"). */
void srv__format_addr(const void *sockaddr, char *out, size_t cap);

/*
 * RESP3 (HELLO 3).  Replies are built in RESP2 (the state machine's bytes,
 * most local commands); a RESP3 connection gets them through
 * srv__resp3_append(), which copies them to out turning the RESP2 nulls
 * ($-1 and *-1) into RESP3's _ -- the only difference in the replies of
 * the commands craftd has, apart from the ones written for RESP3 directly
 * (HELLO, CONFIG GET, INFO, CLIENT INFO/LIST) with the writers below.  It
 * passes RESP3 values through unchanged, so applying it twice is harmless.
 * Returns 0, CRAFT_ENOMEM, or CRAFT_EPROTO if in is not a sequence of
 * complete values (out unchanged on error).
 */
int srv__resp3_append(struct buf *out, const uint8_t *in, size_t len);

/* A map header: %n in RESP3, an array of 2n in RESP2. */
int srv__write_map(struct buf *b, size_t n, bool resp3);
/* A null: _ in RESP3, $-1 in RESP2. */
int srv__write_null(struct buf *b, bool resp3);
/* A text blob: a verbatim string (=, "txt") in RESP3, a bulk in RESP2. */
int srv__write_verbatim(struct buf *b, const void *p, size_t n, bool resp3);

#endif /* CRAFT_SERVER_SRV_CMDS_H */
