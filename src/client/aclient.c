/*
 * The asynchronous craftd client: the retry loop of client.c turned into
 * callbacks on the caller's libuv loop, with hiredis's async API (and a
 * libuv glue of our own, see uvglue below).
 *
 * Requests wait in a FIFO; only the head is worked on.  Its states:
 *
 *   IDLE     --step-->           CONNECT (no connection) or REPLY (send)
 *   CONNECT  --connected-->      REPLY (AUTH first if a password is set)
 *            --failed/timer-->   IDLE after a backoff, next address
 *   REPLY    --reply-->          finished, or IDLE (MOVED, CLUSTERDOWN,
 *                                UNCERTAIN, NOSESSION: see client.c)
 *            --lost/timer-->     IDLE (outcome unknown: resend only if
 *                                client__may_resend) or finished
 *
 * Invariants:
 *   1. Every accepted request's callback fires exactly once: from finish(),
 *      or with CRAFT_ECANCELED from craft_aclient_close().
 *   2. `attempt` numbers every send; a hiredis callback carrying another
 *      number belongs to an abandoned connection and is ignored.
 *   3. c->ac is NULL whenever hiredis is freeing (or has freed) the
 *      context, so it is never freed twice.
 *   4. One timer serves the current state (connect and reply timeouts, the
 *      backoff and the first kick), so at most one wake-up is pending.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/async.h>
#include <uv.h>

#include "client_int.h"
#include "util/assert.h"

enum astate { A_IDLE, A_CONNECT, A_REPLY };

struct areq {
    struct areq *next;
    struct client_req req;
    craft_aclient_cb cb;
    void *data;
    uint64_t deadline; /* 0 until the request starts */
};

struct craft_aclient {
    uv_loop_t *loop;
    struct craft_client_options o;
    char *password;
    struct client_addrs addrs;
    redisAsyncContext *ac;
    bool need_auth; /* ac is new: AUTH goes before the next command */
    uv_timer_t timer;
    enum astate state;
    uint64_t attempt;
    struct areq *head, *tail;
    struct client_req sreq; /* CRAFT.SESSION, sent before a write */
    struct client_req *cur; /* &head->req or &sreq */
    uint64_t session;
    uint64_t next_seq;
    unsigned fails;
    bool last_refused;
    char last[192];
    char errmsg[320];
    bool closing;
    craft_aclient_close_cb close_cb;
    void *close_data;
};

static void step(struct craft_aclient *c);

/* ---- hiredis on libuv ------------------------------------------------ */

/*
 * The glue between a hiredis async context and a uv_poll_t.  hiredis 0.14
 * ships one (adapters/libuv.h), but it ignores a poll error status, and
 * libuv reports a refused non-blocking connect exactly that way (POLLERR ->
 * UV_EBADF), so the connect callback would never fire and every refused
 * connect would wait for the timeout.  This one hands an error to hiredis
 * as readiness, which makes hiredis look at the socket and report the
 * failure (the behaviour of later hiredis releases).
 */
struct uvglue {
    redisAsyncContext *ac; /* NULL once hiredis let go of the context */
    uv_poll_t poll;
    int events;
};

static void glue_poll_cb(uv_poll_t *handle, int status, int events)
{
    struct uvglue *g = handle->data;
    int ev = status != 0 ? g->events : events;
    if (g->ac != NULL && (ev & UV_READABLE)) {
        redisAsyncHandleRead(g->ac);
    }
    if (g->ac != NULL && (ev & UV_WRITABLE)) {
        redisAsyncHandleWrite(g->ac);
    }
}

static void glue_update(struct uvglue *g, int events)
{
    g->events = events;
    if (events != 0) {
        uv_poll_start(&g->poll, events, glue_poll_cb);
    } else {
        uv_poll_stop(&g->poll);
    }
}

static void glue_add_read(void *data)
{
    struct uvglue *g = data;
    glue_update(g, g->events | UV_READABLE);
}

static void glue_del_read(void *data)
{
    struct uvglue *g = data;
    glue_update(g, g->events & ~UV_READABLE);
}

static void glue_add_write(void *data)
{
    struct uvglue *g = data;
    glue_update(g, g->events | UV_WRITABLE);
}

static void glue_del_write(void *data)
{
    struct uvglue *g = data;
    glue_update(g, g->events & ~UV_WRITABLE);
}

static void glue_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void glue_cleanup(void *data)
{
    struct uvglue *g = data;
    g->ac = NULL;
    uv_close((uv_handle_t *)&g->poll, glue_closed);
}

static int glue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    CRAFT_ASSERT(ac->ev.data == NULL);
    struct uvglue *g = calloc(1, sizeof *g);
    if (g == NULL) {
        return CRAFT_ENOMEM;
    }
    if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return CRAFT_EIO;
    }
    g->ac = ac;
    g->poll.data = g;
    ac->ev.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    return 0;
}

static uint64_t now_ms(const struct craft_aclient *c)
{
    return uv_now(c->loop);
}

int craft_aclient_new(uv_loop_t *loop, const struct craft_client_options *o,
                      struct craft_aclient **out, char *errmsg,
                      size_t errmsg_len)
{
    CRAFT_ASSERT(loop != NULL);
    CRAFT_ASSERT(out != NULL);
    int rv = client__options_check(o, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    struct craft_aclient *c = calloc(1, sizeof *c);
    if (c == NULL) {
        client__errf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    rv = client__addrs_init(&c->addrs, o, errmsg, errmsg_len);
    if (rv != 0) {
        free(c);
        return rv;
    }
    static const char *const sargv[] = {"CRAFT.SESSION"};
    if (client__req_init(&c->sreq, 1, sargv, NULL) != 0 ||
        (o->password != NULL && (c->password = strdup(o->password)) == NULL)) {
        client__req_close(&c->sreq);
        free(c);
        client__errf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    c->loop = loop;
    c->o = *o;
    c->o.addrs = NULL;
    c->o.n_addrs = 0;
    c->o.password = NULL;
    rv = uv_timer_init(loop, &c->timer);
    CRAFT_ASSERT(rv == 0); /* uv_timer_init cannot fail on a live loop */
    c->timer.data = c;
    *out = c;
    return 0;
}

static void on_timer(uv_timer_t *t);

static void arm(struct craft_aclient *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* Abandon the connection (if any) and everything in flight on it. */
static void drop_conn(struct craft_aclient *c)
{
    c->attempt++;
    if (c->ac != NULL) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        redisAsyncFree(ac); /* deferred by hiredis inside its callbacks */
    }
}

/* Pop the head and fire its callback; then start the next request. */
static void finish(struct craft_aclient *c, int status, redisReply *reply)
{
    struct areq *h = c->head;
    CRAFT_ASSERT(h != NULL);
    CRAFT_ASSERT((status == 0) == (reply != NULL));
    c->head = h->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    c->state = A_IDLE;
    c->cur = NULL;
    uv_timer_stop(&c->timer);
    if (status == 0) {
        c->fails = 0;
    }
    h->cb(c, h->data, status, reply, status == 0 ? "" : c->errmsg);
    client__req_close(&h->req);
    free(h);
    if (!c->closing && c->head != NULL) {
        arm(c, 0); /* not recursively: a long queue would nest deeply */
    }
}

/* Record a failure at the current address, move to the next one, and go
 * round again after a backoff once a whole round has failed. */
static void failed_here(struct craft_aclient *c, bool refused, const char *what)
{
    client__errf(c->last, sizeof c->last, "%s: %s",
                 c->addrs.a[c->addrs.cur].text, what);
    c->last_refused = refused;
    drop_conn(c);
    client__addrs_next(&c->addrs);
    c->state = A_IDLE;
    c->fails++;
    unsigned ms = 0;
    if (c->fails % c->addrs.n == 0) {
        ms = client__backoff_ms(c->fails / (unsigned)c->addrs.n);
    }
    arm(c, ms);
}

/* The command may have run and the reply is lost. */
static void lost(struct craft_aclient *c, const char *why)
{
    struct client_req *req = c->cur;
    if (!client__may_resend(req)) {
        client__errf(c->errmsg, sizeof c->errmsg,
                     "%s: %s; the write may or may not have run (enable "
                     "exactly_once to retry it safely)",
                     c->addrs.a[c->addrs.cur].text, why);
        drop_conn(c);
        client__addrs_next(&c->addrs);
        finish(c, CRAFT_ELEADERLOST, NULL);
        return;
    }
    req->in_doubt = true;
    failed_here(c, false, why);
}

static void session_opened(struct craft_aclient *c, redisReply *r)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0) {
        client__errf(c->errmsg, sizeof c->errmsg,
                     "CRAFT.SESSION answered %s (is this craftd?)",
                     r->type == REDIS_REPLY_ERROR ? r->str : "a non-integer");
        finish(c, CRAFT_EPROTO, NULL);
        return;
    }
    c->session = (uint64_t)r->integer;
    c->next_seq = 1;
    c->state = A_IDLE;
    step(c);
}

static void handle_reply(struct craft_aclient *c, redisReply *r)
{
    const char *addr = NULL;
    size_t addr_len = 0;
    struct client_req *req = c->cur;
    switch (client__verdict(r, &addr, &addr_len)) {
    case CLIENT_DONE:
        if (req == &c->sreq) {
            session_opened(c, r);
        } else {
            finish(c, 0, r);
        }
        return;
    case CLIENT_MOVED:
        drop_conn(c);
        if (client__addrs_set_leader(&c->addrs, addr, addr_len) != 0) {
            finish(c, 0, r);
            return;
        }
        c->state = A_IDLE;
        c->fails++;
        arm(c, c->fails % (2 * c->addrs.n) == 0 ? client__backoff_ms(1) : 0);
        return;
    case CLIENT_NOT_RUN:
        failed_here(c, false, r->str);
        return;
    case CLIENT_UNCERTAIN:
        lost(c, r->str);
        return;
    case CLIENT_NOSESSION:
        c->session = 0;
        if (!req->wrapped || req->in_doubt) {
            client__errf(c->errmsg, sizeof c->errmsg,
                         "%s: %s; a write was in doubt, its outcome is "
                         "unknown",
                         c->addrs.a[c->addrs.cur].text, r->str);
            finish(c, CRAFT_ELEADERLOST, NULL);
            return;
        }
        client__req_unwrap(req);
        c->state = A_IDLE;
        arm(c, 0);
        return;
    case CLIENT_AUTH:
        client__errf(c->errmsg, sizeof c->errmsg, "%s: %s",
                     c->addrs.a[c->addrs.cur].text, r->str);
        drop_conn(c);
        finish(c, CRAFT_EAUTH, NULL);
        return;
    }
    CRAFT_UNREACHABLE();
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct craft_aclient *c = ac->data;
    if ((uint64_t)(uintptr_t)priv != c->attempt || c->closing ||
        c->state != A_REPLY) {
        return; /* an abandoned send */
    }
    uv_timer_stop(&c->timer);
    if (reply == NULL) {
        c->ac = NULL; /* hiredis is freeing the context */
        c->attempt++;
        lost(c, "connection lost before the reply");
        return;
    }
    handle_reply(c, reply);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    struct craft_aclient *c = ac->data;
    redisReply *r = reply;
    if ((uint64_t)(uintptr_t)priv != c->attempt || c->closing || r == NULL ||
        r->type != REDIS_REPLY_ERROR) {
        return; /* ok, or the command's callback will see the loss */
    }
    client__errf(c->errmsg, sizeof c->errmsg, "%s: AUTH refused: %s",
                 c->addrs.a[c->addrs.cur].text, r->str);
    drop_conn(c);
    finish(c, CRAFT_EAUTH, NULL);
}

/* A wait of at most ms, cut short by the head request's deadline. */
static uint64_t bounded(const struct craft_aclient *c, uint64_t ms)
{
    uint64_t now = now_ms(c);
    uint64_t deadline = c->head->deadline;
    uint64_t left = deadline > now ? deadline - now : 0;
    return ms < left ? ms : left;
}

/* Queue AUTH (if needed) and the current request on c->ac.  hiredis holds
 * them until the connection is up; hiredis 0.14 only notices that a
 * connect finished once something is waiting to be written, so a new
 * connection gets its command at once.  Returns false after finishing the
 * request with CRAFT_ENOMEM. */
static bool queue_cur(struct craft_aclient *c)
{
    CRAFT_ASSERT(c->ac != NULL);
    CRAFT_ASSERT(c->cur != NULL);
    c->attempt++;
    void *priv = (void *)(uintptr_t)c->attempt;
    if (c->password != NULL && c->need_auth) {
        const char *argv[] = {"AUTH", c->password};
        redisAsyncCommandArgv(c->ac, on_auth, priv, 2, argv, NULL);
        c->need_auth = false;
    }
    c->cur->attempts++;
    int rv = redisAsyncCommandArgv(
        c->ac, on_reply, priv, client__req_argc(c->cur),
        client__req_argv(c->cur), client__req_lens(c->cur));
    if (rv != REDIS_OK) {
        client__errf(c->errmsg, sizeof c->errmsg, "out of memory");
        drop_conn(c);
        finish(c, CRAFT_ENOMEM, NULL);
        return false;
    }
    return true;
}

static void send_cur(struct craft_aclient *c)
{
    if (queue_cur(c)) {
        c->state = A_REPLY;
        arm(c, bounded(c, c->o.request_timeout_ms));
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct craft_aclient *c = ac->data;
    if (ac != c->ac || c->state != A_CONNECT) {
        return;
    }
    uv_timer_stop(&c->timer);
    if (status != REDIS_OK) {
        char what[160];
        bool refused = strstr(ac->errstr, "refused") != NULL;
        client__errf(what, sizeof what, "cannot connect: %s", ac->errstr);
        c->ac = NULL; /* hiredis frees it after this callback */
        failed_here(c, refused, what); /* the queued command is stale */
        return;
    }
    /* The command is already queued: now wait for its reply. */
    c->state = A_REPLY;
    arm(c, bounded(c, c->o.request_timeout_ms));
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct craft_aclient *c = ac->data;
    if (c->ac == ac) {
        c->ac = NULL;
    }
}

static void start_connect(struct craft_aclient *c)
{
    const struct client_addr *a = &c->addrs.a[c->addrs.cur];
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
    if (ac == NULL) {
        client__errf(c->errmsg, sizeof c->errmsg, "out of memory");
        finish(c, CRAFT_ENOMEM, NULL);
        return;
    }
    if (ac->err != 0) {
        char what[160];
        client__errf(what, sizeof what, "cannot connect: %s", ac->errstr);
        redisAsyncFree(ac);
        failed_here(c, false, what);
        return;
    }
    ac->data = c;
    if (glue_attach(ac, c->loop) != 0) {
        redisAsyncFree(ac);
        client__errf(c->errmsg, sizeof c->errmsg, "cannot attach to the loop");
        finish(c, CRAFT_ENOMEM, NULL);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->need_auth = true;
    if (queue_cur(c)) {
        c->state = A_CONNECT;
        arm(c, bounded(c, c->o.connect_timeout_ms));
    }
}

static void give_up(struct craft_aclient *c)
{
    const struct client_req *req = &c->head->req;
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
            req->in_doubt ? "; the write may have run" : "",
            c->last[0] != '\0' ? c->last : "none");
    }
    drop_conn(c);
    finish(c,
           c->last_refused && !req->in_doubt ? CRAFT_ECONNREFUSED
                                             : CRAFT_ETIMEDOUT,
           NULL);
}

/* Drive the head request from A_IDLE. */
static void step(struct craft_aclient *c)
{
    struct areq *h = c->head;
    if (c->closing || h == NULL || c->state != A_IDLE) {
        return;
    }
    if (h->deadline == 0) {
        h->deadline = now_ms(c) + c->o.total_timeout_ms;
        c->last[0] = '\0';
        c->last_refused = false;
    }
    struct client_req *req = &h->req;
    if (now_ms(c) >= h->deadline ||
        (c->o.max_attempts != 0 && req->attempts >= c->o.max_attempts)) {
        give_up(c);
        return;
    }
    c->cur = req;
    if (req->kind == CLIENT_WRITE && c->o.exactly_once && !req->wrapped) {
        if (c->session == 0) {
            c->cur = &c->sreq;
        } else {
            client__req_wrap(req, c->session, c->next_seq, c->next_seq);
            c->next_seq++;
        }
    }
    if (c->ac == NULL) {
        start_connect(c);
    } else {
        send_cur(c);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct craft_aclient *c = t->data;
    switch (c->state) {
    case A_IDLE:
        step(c);
        return;
    case A_CONNECT: {
        char what[96];
        client__errf(what, sizeof what, "no connection within %u ms",
                     c->o.connect_timeout_ms);
        failed_here(c, false, what);
        return;
    }
    case A_REPLY: {
        char what[96];
        client__errf(what, sizeof what, "no reply within %u ms",
                     c->o.request_timeout_ms);
        drop_conn(c);
        lost(c, what);
        return;
    }
    }
    CRAFT_UNREACHABLE();
}

int craft_aclient_command_argv(struct craft_aclient *c, int argc,
                               const char *const *argv, const size_t *lens,
                               craft_aclient_cb cb, void *data)
{
    CRAFT_ASSERT(c != NULL);
    CRAFT_ASSERT(cb != NULL);
    if (c->closing) {
        return CRAFT_ECLOSED;
    }
    struct areq *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return CRAFT_ENOMEM;
    }
    int rv = client__req_init(&h->req, argc, argv, lens);
    if (rv != 0) {
        free(h);
        return rv;
    }
    if (h->req.kind == CLIENT_UNSUPPORTED) {
        client__req_close(&h->req);
        free(h);
        return CRAFT_EINVAL;
    }
    h->cb = cb;
    h->data = data;
    if (c->tail != NULL) {
        c->tail->next = h;
    } else {
        c->head = h;
        if (c->state == A_IDLE) {
            arm(c, 0); /* never call back from inside this function */
        }
    }
    c->tail = h;
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct craft_aclient *c = handle->data;
    craft_aclient_close_cb cb = c->close_cb;
    void *data = c->close_data;
    if (cb != NULL) {
        cb(c, data); /* the last use of c */
    }
    client__req_close(&c->sreq);
    free(c->password);
    free(c);
}

void craft_aclient_close(struct craft_aclient *c, craft_aclient_close_cb cb,
                         void *data)
{
    CRAFT_ASSERT(c != NULL);
    CRAFT_ASSERT(!c->closing);
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    uv_timer_stop(&c->timer);
    drop_conn(c);
    client__errf(c->errmsg, sizeof c->errmsg, "the client was closed");
    while (c->head != NULL) {
        finish(c, CRAFT_ECANCELED, NULL);
    }
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
