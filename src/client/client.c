/*
 * The synchronous craftd client: one hiredis connection at a time, to the
 * member believed to lead, and a retry loop around every command.
 *
 * The loop (run()) for one request, until it returns:
 *
 *   not connected        -> connect to addrs.cur; on failure try the next
 *                           address (backing off after each full round)
 *   write, session wanted, no envelope yet
 *                        -> open a session if there is none, then wrap the
 *                           request with the next seq (kept for all resends)
 *   send, read the reply -> lost/timed out: outcome unknown (1)
 *                           MOVED:      follow it, resend (not run)
 *                           CLUSTERDOWN/SHUTDOWN: next address (not run)
 *                           UNCERTAIN:  outcome unknown (1)
 *                           NOSESSION:  (2)
 *                           else:       the caller's reply
 *
 *   (1) resend if client__may_resend() (idempotent, or wrapped), else fail
 *       with CRAFT_ELEADERLOST.
 *   (2) if no earlier send of this request may have run it, open a new
 *       session and resend under it; otherwise its outcome is unknown
 *       (CRAFT_ELEADERLOST).
 *
 * Every pass either returns or counts an attempt or a failure, and the
 * deadline (total_timeout_ms) bounds the whole loop.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_int.h"
#include "util/assert.h"

struct craft_client {
    struct craft_client_options o;
    char *password;
    struct client_addrs addrs;
    redisContext *rc;  /* connected to addrs.a[addrs.cur], or NULL */
    uint64_t session;  /* 0: none open */
    uint64_t next_seq; /* of the session */
    unsigned fails;    /* consecutive failed tries, for backoff */
    bool last_refused; /* the last failure was a refused connect */
    char last[192];    /* the last failure, for messages */
    char errmsg[320];
    struct craft_client_stats stats;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
                         .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)((ms % 1000) * 1000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void craft_client_options_init(struct craft_client_options *o)
{
    CRAFT_ASSERT(o != NULL);
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 1000;
    o->request_timeout_ms = 3000;
    o->total_timeout_ms = 15000;
    o->max_attempts = 0;
    o->exactly_once = true;
}

int craft_client_new(const struct craft_client_options *o,
                     struct craft_client **out, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(o != NULL);
    CRAFT_ASSERT(out != NULL);
    int rv = client__options_check(o, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    struct craft_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        client__errf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    rv = client__addrs_init(&c->addrs, o, errmsg, errmsg_len);
    if (rv != 0) {
        free(c);
        return rv;
    }
    c->o = *o;
    c->o.addrs = NULL; /* copied into addrs */
    c->o.n_addrs = 0;
    if (o->password != NULL) {
        c->password = strdup(o->password);
        if (c->password == NULL) {
            free(c);
            client__errf(errmsg, errmsg_len, "out of memory");
            return CRAFT_ENOMEM;
        }
    }
    c->o.password = NULL;
    *out = c;
    return 0;
}

static void disconnect(struct craft_client *c)
{
    if (c->rc != NULL) {
        redisFree(c->rc);
        c->rc = NULL;
    }
}

void craft_client_free(struct craft_client *c)
{
    if (c == NULL) {
        return;
    }
    disconnect(c);
    free(c->password);
    free(c);
}

const char *craft_client_errmsg(const struct craft_client *c)
{
    return c->errmsg;
}

const char *craft_client_leader(const struct craft_client *c)
{
    return c->addrs.leader_known ? c->addrs.a[c->addrs.cur].text : "";
}

void craft_client_get_stats(const struct craft_client *c,
                            struct craft_client_stats *stats)
{
    *stats = c->stats;
    stats->session = c->session;
}

/* A failure at the current address: remember why, move on, and sleep when
 * a whole round of addresses has failed. */
static void failed_here(struct craft_client *c, uint64_t deadline, bool refused,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void failed_here(struct craft_client *c, uint64_t deadline, bool refused,
                        const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    client__errf(c->last, sizeof c->last, "%s: %s",
                 c->addrs.a[c->addrs.cur].text, what);
    c->last_refused = refused;
    disconnect(c);
    client__addrs_next(&c->addrs);
    c->fails++;
    if (c->fails % c->addrs.n == 0) {
        uint64_t now = now_ms();
        uint64_t ms = client__backoff_ms(c->fails / (unsigned)c->addrs.n);
        if (now < deadline) {
            sleep_ms(ms < deadline - now ? ms : deadline - now);
        }
    }
}

/* 0, or a failure already recorded with failed_here; CRAFT_EAUTH. */
static int connect_cur(struct craft_client *c, uint64_t deadline)
{
    CRAFT_ASSERT(c->rc == NULL);
    const struct client_addr *a = &c->addrs.a[c->addrs.cur];
    uint64_t now = now_ms();
    uint64_t left = deadline > now ? deadline - now : 1;
    uint64_t ms =
        c->o.connect_timeout_ms < left ? c->o.connect_timeout_ms : left;
    redisContext *rc = redisConnectWithTimeout(a->host, a->port, tv_ms(ms));
    if (rc == NULL) {
        failed_here(c, deadline, false, "out of memory");
        return CRAFT_ENOMEM;
    }
    if (rc->err != 0) {
        bool refused = strstr(rc->errstr, "refused") != NULL;
        failed_here(c, deadline, refused, "cannot connect: %s", rc->errstr);
        redisFree(rc);
        return CRAFT_ENOCONN;
    }
    c->stats.connects++;
    c->rc = rc;
    ms = c->o.request_timeout_ms < left ? c->o.request_timeout_ms : left;
    redisSetTimeout(rc, tv_ms(ms)); /* for AUTH; each send sets its own */
    if (c->password == NULL) {
        return 0;
    }
    redisReply *r = redisCommand(rc, "AUTH %s", c->password);
    if (r == NULL) {
        failed_here(c, deadline, false, "connection lost during AUTH");
        return CRAFT_ENOCONN;
    }
    bool ok = r->type != REDIS_REPLY_ERROR;
    if (!ok) {
        client__errf(c->errmsg, sizeof c->errmsg, "%s: AUTH refused: %s",
                     a->text, r->str);
        disconnect(c);
    }
    freeReplyObject(r);
    return ok ? 0 : CRAFT_EAUTH;
}

static int run(struct craft_client *c, struct client_req *req,
               uint64_t deadline, redisReply **out);

/* Open a session (CRAFT.SESSION is idempotent for us: a second one opened
 * by a resend is merely never used, and expires). */
static int open_session(struct craft_client *c, uint64_t deadline)
{
    static const char *const argv[] = {"CRAFT.SESSION"};
    struct client_req sreq;
    int rv = client__req_init(&sreq, 1, argv, NULL);
    if (rv != 0) {
        return rv;
    }
    CRAFT_ASSERT(sreq.kind == CLIENT_IDEMPOTENT);
    redisReply *r = NULL;
    rv = run(c, &sreq, deadline, &r);
    client__req_close(&sreq);
    if (rv != 0) {
        return rv;
    }
    if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0) {
        client__errf(c->errmsg, sizeof c->errmsg,
                     "CRAFT.SESSION answered %s%s (is this craftd?)",
                     r->type == REDIS_REPLY_ERROR ? "the error " : "",
                     r->type == REDIS_REPLY_ERROR ? r->str : "a non-integer");
        freeReplyObject(r);
        return CRAFT_EPROTO;
    }
    c->session = (uint64_t)r->integer;
    c->next_seq = 1;
    freeReplyObject(r);
    return 0;
}

static int give_up(struct craft_client *c, const struct client_req *req)
{
    bool write = req->kind == CLIENT_WRITE;
    if (req->attempts == 0) {
        client__errf(c->errmsg, sizeof c->errmsg,
                     "no member reachable within %u ms (last: %s)",
                     c->o.total_timeout_ms,
                     c->last[0] != '\0' ? c->last : "none");
    } else {
        client__errf(
            c->errmsg, sizeof c->errmsg,
            "no answer from the cluster after %u attempts within %u ms%s"
            " (last: %s)",
            req->attempts, c->o.total_timeout_ms,
            write && req->in_doubt ? "; the write may have run" : "",
            c->last[0] != '\0' ? c->last : "none");
    }
    return c->last_refused && !req->in_doubt ? CRAFT_ECONNREFUSED
                                             : CRAFT_ETIMEDOUT;
}

static int in_doubt_error(struct craft_client *c, const char *why)
{
    client__errf(c->errmsg, sizeof c->errmsg,
                 "%s: %s; the write may or may not have run (enable "
                 "exactly_once to retry it safely)",
                 c->addrs.a[c->addrs.cur].text, why);
    return CRAFT_ELEADERLOST;
}

/* What to do with a reply; 1 means "go round again". */
static int handle_reply(struct craft_client *c, struct client_req *req,
                        uint64_t deadline, redisReply *r, redisReply **out)
{
    const char *addr = NULL;
    size_t addr_len = 0;
    enum client_verdict v = client__verdict(r, &addr, &addr_len);
    switch (v) {
    case CLIENT_DONE:
        *out = r;
        c->fails = 0;
        return 0;
    case CLIENT_MOVED:
        c->stats.redirects++;
        disconnect(c);
        if (client__addrs_set_leader(&c->addrs, addr, addr_len) != 0) {
            *out = r; /* not an address we understand: show it */
            return 0;
        }
        c->fails++;
        if (c->fails % (2 * c->addrs.n) == 0) {
            /* Redirected in a circle: members disagree for a moment. */
            sleep_ms(client__backoff_ms(1));
        }
        freeReplyObject(r);
        return 1;
    case CLIENT_NOT_RUN:
        failed_here(c, deadline, false, "%s", r->str);
        freeReplyObject(r);
        return 1;
    case CLIENT_UNCERTAIN:
        if (!client__may_resend(req)) {
            int rv = in_doubt_error(c, r->str);
            freeReplyObject(r);
            return rv;
        }
        req->in_doubt = true;
        c->stats.retries++;
        failed_here(c, deadline, false, "%s", r->str);
        freeReplyObject(r);
        return 1;
    case CLIENT_NOSESSION:
        c->session = 0;
        if (!req->wrapped || req->in_doubt) {
            client__errf(c->errmsg, sizeof c->errmsg,
                         "%s: %s; a write was in doubt, its outcome is "
                         "unknown",
                         c->addrs.a[c->addrs.cur].text, r->str);
            freeReplyObject(r);
            return CRAFT_ELEADERLOST;
        }
        client__req_unwrap(req); /* nothing ran: resend in a new one */
        freeReplyObject(r);
        return 1;
    case CLIENT_AUTH:
        client__errf(c->errmsg, sizeof c->errmsg, "%s: %s",
                     c->addrs.a[c->addrs.cur].text, r->str);
        freeReplyObject(r);
        return CRAFT_EAUTH;
    }
    CRAFT_UNREACHABLE();
    return CRAFT_EINTERNAL;
}

static int run(struct craft_client *c, struct client_req *req,
               uint64_t deadline, redisReply **out)
{
    CRAFT_ASSERT(req->argc >= 1);
    for (;;) {
        if (now_ms() >= deadline ||
            (c->o.max_attempts != 0 && req->attempts >= c->o.max_attempts)) {
            return give_up(c, req);
        }
        if (req->kind == CLIENT_WRITE && c->o.exactly_once && !req->wrapped) {
            if (c->session == 0) {
                int rv = open_session(c, deadline);
                if (rv != 0) {
                    return rv;
                }
            }
            /* One request at a time: every earlier reply was received,
             * so first-unacked is this request's own seq. */
            client__req_wrap(req, c->session, c->next_seq, c->next_seq);
            c->next_seq++;
        }
        if (c->rc == NULL) {
            int rv = connect_cur(c, deadline);
            if (rv == CRAFT_EAUTH || rv == CRAFT_ENOMEM) {
                return rv;
            }
            if (rv != 0) {
                continue;
            }
        }
        /* The reply timeout is the request timeout, cut short by this
         * command's deadline (set per send: the connection outlives it). */
        uint64_t now = now_ms();
        uint64_t wait = deadline > now ? deadline - now : 1;
        if (wait > c->o.request_timeout_ms) {
            wait = c->o.request_timeout_ms;
        }
        redisSetTimeout(c->rc, tv_ms(wait));
        req->attempts++;
        c->stats.sends++;
        redisReply *r =
            redisCommandArgv(c->rc, client__req_argc(req),
                             client__req_argv(req), client__req_lens(req));
        if (r == NULL) {
            char why[128];
            client__errf(why, sizeof why, "connection lost or no reply: %s",
                         c->rc->errstr);
            if (!client__may_resend(req)) {
                int rv = in_doubt_error(c, why);
                disconnect(c);
                client__addrs_next(&c->addrs);
                return rv;
            }
            req->in_doubt = true;
            c->stats.retries++;
            failed_here(c, deadline, false, "%s", why);
            continue;
        }
        int rv = handle_reply(c, req, deadline, r, out);
        if (rv != 1) {
            return rv;
        }
    }
}

int craft_client_command_argv(struct craft_client *c, redisReply **reply,
                              int argc, const char *const *argv,
                              const size_t *lens)
{
    CRAFT_ASSERT(c != NULL);
    CRAFT_ASSERT(reply != NULL);
    c->errmsg[0] = '\0';
    c->last[0] = '\0';
    c->last_refused = false;
    struct client_req req;
    int rv = client__req_init(&req, argc, argv, lens);
    if (rv != 0) {
        client__errf(c->errmsg, sizeof c->errmsg, "%s",
                     rv == CRAFT_ENOMEM ? "out of memory" : "empty command");
        return rv;
    }
    if (req.kind == CLIENT_UNSUPPORTED) {
        client__errf(c->errmsg, sizeof c->errmsg,
                     "%s is bound to one connection and is not supported by "
                     "the client library",
                     req.argv[CLIENT_ENVELOPE_ARGS]);
        client__req_close(&req);
        return CRAFT_EINVAL;
    }
    redisReply *r = NULL;
    rv = run(c, &req, now_ms() + c->o.total_timeout_ms, &r);
    client__req_close(&req);
    if (rv == 0) {
        c->stats.commands++;
        *reply = r;
    }
    CRAFT_ASSERT(rv != 0 || *reply != NULL);
    return rv;
}

int craft_client_command(struct craft_client *c, redisReply **reply,
                         const char *fmt, ...)
{
    CRAFT_ASSERT(fmt != NULL);
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0 || cmd == NULL) {
        client__errf(c->errmsg, sizeof c->errmsg,
                     len == -2 ? "invalid format string" : "out of memory");
        return len == -2 ? CRAFT_EINVAL : CRAFT_ENOMEM;
    }
    int argc;
    const char **argv;
    size_t *lens;
    int rv = client__split_formatted(cmd, (size_t)len, &argc, &argv, &lens);
    if (rv != 0) {
        free(cmd);
        client__errf(c->errmsg, sizeof c->errmsg, "%s",
                     rv == CRAFT_ENOMEM ? "out of memory" : "empty command");
        return rv;
    }
    rv = craft_client_command_argv(c, reply, argc, argv, lens);
    free(argv);
    free(lens);
    free(cmd);
    return rv;
}
