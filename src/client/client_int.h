/*
 * What the synchronous (client.c) and the asynchronous (aclient.c) clients
 * share: the member address list, the request representation with room
 * for a session envelope, the classification of commands and of replies,
 * and the retry policy.  Keeping the policy here, free of I/O, is what
 * makes the two clients behave the same and lets test_client.c check it
 * without a network.
 */
#ifndef CRAFT_CLIENT_INT_H
#define CRAFT_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "craft/client.h"

/* Backoff between rounds of "no leader here": doubles from MIN to MAX.
 * 20 ms is two craftd ticks; 320 ms is well under an election timeout, so
 * a client notices a new leader within a fraction of the failover. */
#define CLIENT_BACKOFF_MIN_MS 20
#define CLIENT_BACKOFF_MAX_MS 320

/* Prefix arguments of the session envelope: CRAFT.EXEC id seq first. */
#define CLIENT_ENVELOPE_ARGS 4

struct client_addr {
    char host[CRAFT_CLIENT_ADDR_LEN_MAX + 1];
    int port;
    char text[CRAFT_CLIENT_ADDR_LEN_MAX + 1]; /* "HOST:PORT" */
};

struct client_addrs {
    struct client_addr a[CRAFT_CLIENT_ADDRS_MAX];
    size_t n;
    size_t cur; /* the one to try next (the believed leader, if any) */
    bool leader_known;
};

/* What a command is, for retries. */
enum client_kind {
    CLIENT_IDEMPOTENT, /* running it twice is harmless: reads, local
                          commands, CRAFT.SESSION, a caller's CRAFT.EXEC */
    CLIENT_WRITE,      /* may change state: wrapped in a session if asked */
    CLIENT_UNSUPPORTED /* bound to one connection: MULTI, SUBSCRIBE, ... */
};

/* What a reply means for the request that got it. */
enum client_verdict {
    CLIENT_DONE,      /* the command's own reply: hand it to the caller */
    CLIENT_MOVED,     /* not run; the leader is elsewhere */
    CLIENT_NOT_RUN,   /* not run (CLUSTERDOWN, SHUTDOWN): try elsewhere */
    CLIENT_UNCERTAIN, /* proposed, outcome unknown */
    CLIENT_NOSESSION, /* the session is unknown or expired */
    CLIENT_AUTH       /* NOAUTH or WRONGPASS */
};

/* A command with owned copies of its arguments and CLIENT_ENVELOPE_ARGS
 * spare slots in front of them for the session envelope. */
struct client_req {
    int argc;        /* the command's own arguments */
    char **argv;     /* argc + CLIENT_ENVELOPE_ARGS slots */
    size_t *lens;    /* likewise */
    char env[3][24]; /* id, seq, first-unacked as decimal text */
    enum client_kind kind;
    bool wrapped;  /* the envelope is in use */
    uint64_t seq;  /* the session seq, if wrapped */
    bool in_doubt; /* some send may have run the command */
    unsigned attempts;
};

/* Parse "HOST:PORT" (HOST a name or IPv4 address, PORT 1..65535). */
int client__addr_parse(const char *s, struct client_addr *out);

/* Fill addrs from the options; CRAFT_EINVAL with a message on bad input. */
int client__addrs_init(struct client_addrs *addrs,
                       const struct craft_client_options *o, char *errmsg,
                       size_t errmsg_len);

/* Make "HOST:PORT" the current address and remember it as the leader,
 * adding it to the list if needed (replacing the oldest learned address
 * when the list is full).  CRAFT_EINVAL if text is malformed. */
int client__addrs_set_leader(struct client_addrs *addrs, const char *text,
                             size_t len);

/* Move to the next address after a failure there; forgets the leader. */
void client__addrs_next(struct client_addrs *addrs);

/* Check the options' numbers (timeouts not zero). */
int client__options_check(const struct craft_client_options *o, char *errmsg,
                          size_t errmsg_len);

/* Copy a command into req.  CRAFT_EINVAL for argc < 1, CRAFT_ENOMEM. */
int client__req_init(struct client_req *req, int argc, const char *const *argv,
                     const size_t *lens);
void client__req_close(struct client_req *req);

/* Put the session envelope in front (or refresh it): the request becomes
 * CRAFT.EXEC id seq first command...  */
void client__req_wrap(struct client_req *req, uint64_t id, uint64_t seq,
                      uint64_t first_unacked);

/* Drop the envelope (the session was lost before the command could run). */
void client__req_unwrap(struct client_req *req);

/* The arguments to send now (with the envelope if wrapped). */
int client__req_argc(const struct client_req *req);
const char **client__req_argv(const struct client_req *req);
const size_t *client__req_lens(const struct client_req *req);

/* Classify a command by its name (case-insensitive). */
enum client_kind client__kind(const char *name, size_t len);

/* Classify a reply; for CLIENT_MOVED, *addr and *addr_len point into r. */
enum client_verdict client__verdict(const redisReply *r, const char **addr,
                                    size_t *addr_len);

/* May a request whose outcome is unknown be sent again? */
bool client__may_resend(const struct client_req *req);

/* Backoff after `fails` consecutive failed rounds. */
unsigned client__backoff_ms(unsigned fails);

/* Format into buf (always NUL-terminated). */
void client__errf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turn a multibulk command formatted by hiredis ("*N", then "$L" bulks) into
 * arguments pointing into cmd (borrowed).  CRAFT_ENOMEM or CRAFT_EINVAL. */
int client__split_formatted(const char *cmd, size_t len, int *argc,
                            const char ***argv, size_t **lens);

#endif /* CRAFT_CLIENT_INT_H */
