/*
 * The libuv engine of craft-loadgen (see loadgen.h for the model).
 *
 * Client state transitions:
 *
 *   state       event                      next
 *   IDLE        timer (backoff) fires      CONNECTING
 *   CONNECTING  connected                  OPEN (sends a round)
 *   CONNECTING  refused / failed / timeout CLOSING
 *   OPEN        whole round answered       OPEN (next round, or a retry
 *                                          after a backoff), CLOSING on a
 *                                          redirect or when no work is left
 *   OPEN        EOF, read/write error,     CLOSING (unanswered requests
 *               reply timeout              are retried)
 *   CLOSING     close callback             IDLE (backoff), or DONE
 *
 * A connection that fails moves the client to the next address of the
 * list, so that clients find the survivors when a node dies; a MOVED reply
 * sends it to the address the reply names.
 */
#include "loadgen.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "craft/common.h"
#include "util/assert.h"
#include "util/rng.h"

/* The first reconnect or retry waits 5 ms, doubling up to 100 ms: small
 * next to an election timeout (hundreds of ms to seconds), so a failover
 * measured through this tool is not inflated by more than 100 ms, and
 * long enough not to spin on a node that refuses connections. */
#define BACKOFF_MIN_MS 5u
#define BACKOFF_MAX_MS 100u
/* Bytes read per callback. */
#define READ_CHUNK 65536u

enum cstate { C_IDLE, C_CONNECTING, C_OPEN, C_CLOSING, C_DONE };

enum slot_state { S_SENT, S_DONE, S_RETRY };

struct slot {
    uint64_t key;
    uint64_t start_ns; /* first send; kept across retries */
    enum slot_state state;
};

struct run;

struct client {
    struct run *run;
    unsigned id;
    enum cstate state;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_timer_t timer;
    int writing;      /* a write is in flight (invariant 3) */
    int send_pending; /* send the next round when it completes */
    size_t addr_idx;  /* into run->addrs, for rotation on failure */
    struct sockaddr_storage addr;
    char host[LG_HOST_MAX]; /* "host:port" of addr, for Host: and logs */
    struct rng rng;
    struct slot *slots; /* pipeline of them */
    unsigned n_slots;   /* requests of the current round */
    unsigned *order;    /* slot of the i-th request sent (invariant 2) */
    unsigned n_sent, n_answered;
    int redirect; /* reconnect to redirect_host after this round (MOVED,
                     or HTTP "Connection: close" naming our own host) */
    char redirect_host[LG_HOST_MAX];
    unsigned backoff_ms;
    uint64_t fail_since_ns; /* first failure since the last reply, or 0 */
    char last_err[LG_HOST_MAX + 64];
    struct buf out, in, scratch;
    uint8_t *value; /* value_size bytes */
    uint8_t *got;   /* --check: a decoded etcd value (value_size + 1) */
};

struct run {
    const struct lg_config *cfg;
    struct lg_stats *stats;
    uv_loop_t loop;
    struct sockaddr_storage addrs[LG_ADDRS_MAX];
    struct client *clients;
    uint64_t issued, finished;
    uint64_t start_ns, deadline_ns, last_finish_ns;
    unsigned n_done;
    int fatal; /* 0, or why the whole run stopped (a code) */
    char *errmsg;
    size_t errmsg_size;
};

static void client_connect(struct client *c);
static void client_send(struct client *c);
static void client_fail(struct client *c, const char *why);

/* ---- addresses ---- */

/* Resolve "host:port" (or "[v6]:port") into *out.  0 or CRAFT_EINVAL. */
static int resolve(const char *hostport, struct sockaddr_storage *out)
{
    char host[LG_HOST_MAX];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || colon == hostport || colon[1] == '\0') {
        return CRAFT_EINVAL;
    }
    size_t hn = (size_t)(colon - hostport);
    if (hn >= sizeof host) {
        return CRAFT_EINVAL;
    }
    memcpy(host, hostport, hn);
    host[hn] = '\0';
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        memmove(host, host + 1, hn - 2);
        host[hn - 2] = '\0';
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
        return CRAFT_EINVAL;
    }
    CRAFT_ASSERT(res->ai_addrlen <= sizeof *out);
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* ---- bookkeeping ---- */

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void backoff_grow(struct client *c)
{
    c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > BACKOFF_MAX_MS) {
        c->backoff_ms = BACKOFF_MAX_MS;
    }
}

static void finish_request(struct client *c, struct slot *s)
{
    struct run *r = c->run;
    CRAFT_ASSERT(s->state != S_DONE);
    s->state = S_DONE;
    r->finished++;
    r->last_finish_ns = now_ns();
    CRAFT_ASSERT(r->finished <= r->issued);
}

static void stop_all(struct run *r)
{
    for (unsigned i = 0; i < r->cfg->clients; i++) {
        struct client *c = &r->clients[i];
        if (c->state == C_OPEN || c->state == C_CONNECTING) {
            client_fail(c, NULL);
        } else if (c->state == C_IDLE) {
            uv_timer_stop(&c->timer);
            c->state = C_DONE;
            r->n_done++;
        }
    }
}

static void fatal(struct client *c, int code, const char *what,
                  const char *detail)
{
    struct run *r = c->run;
    CRAFT_ASSERT(code < 0);
    if (!r->fatal) {
        r->fatal = code;
        snprintf(r->errmsg, r->errmsg_size, "%s from %s: %s", what, c->host,
                 detail);
        stop_all(r);
    }
}

/* Slots of the round still to be (re)sent. */
static unsigned pending_retries(const struct client *c)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->n_slots; i++) {
        n += c->slots[i].state == S_RETRY;
    }
    return n;
}

/* Give up on retried requests that have waited longer than retry_ms. */
static void expire_retries(struct client *c)
{
    uint64_t limit = (uint64_t)c->run->cfg->retry_ms * 1000000u;
    uint64_t now = now_ns();
    for (unsigned i = 0; i < c->n_slots; i++) {
        struct slot *s = &c->slots[i];
        if (s->state == S_RETRY && now - s->start_ns > limit) {
            c->run->stats->errors++;
            finish_request(c, s);
        }
    }
}

/* Open a new round of up to `pipeline` requests; 0 when no work is left. */
static unsigned new_round(struct client *c)
{
    struct run *r = c->run;
    const struct lg_config *cfg = r->cfg;
    uint64_t now = now_ns();
    c->n_slots = 0;
    while (c->n_slots < cfg->pipeline) {
        if (cfg->requests != 0 && r->issued >= cfg->requests) {
            break;
        }
        if (r->deadline_ns != 0 && now >= r->deadline_ns) {
            break;
        }
        struct slot *s = &c->slots[c->n_slots++];
        s->key = cfg->sequential ? r->issued % cfg->key_space
                                 : rng_range(&c->rng, 0, cfg->key_space);
        s->start_ns = now;
        s->state = S_RETRY; /* "to send" */
        r->issued++;
    }
    return c->n_slots;
}

/* ---- closing and reconnecting ---- */

static void client_done(struct client *c)
{
    struct run *r = c->run;
    CRAFT_ASSERT(c->state != C_DONE);
    c->state = C_DONE;
    r->n_done++;
    CRAFT_ASSERT(r->n_done <= r->cfg->clients);
}

/* Whether the client has requests to retry or may still issue new ones. */
static int work_left(struct client *c)
{
    const struct run *r = c->run;
    if (pending_retries(c) != 0) {
        return 1;
    }
    if (r->cfg->requests != 0 && r->issued >= r->cfg->requests) {
        return 0;
    }
    return r->deadline_ns == 0 || now_ns() < r->deadline_ns;
}

static void on_backoff(uv_timer_t *t)
{
    struct client *c = t->data;
    CRAFT_ASSERT(c->state == C_IDLE || c->state == C_OPEN);
    if (c->state == C_IDLE) {
        client_connect(c);
    } else {
        client_send(c);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    struct run *r = c->run;
    CRAFT_ASSERT(c->state == C_CLOSING);
    c->writing = 0;
    c->send_pending = 0;
    buf_reset(&c->in);
    expire_retries(c);
    if (r->fatal) {
        for (unsigned i = 0; i < c->n_slots; i++) {
            if (c->slots[i].state != S_DONE) {
                finish_request(c, &c->slots[i]);
            }
        }
        client_done(c);
        return;
    }
    c->state = C_IDLE;
    if (!work_left(c)) {
        client_done(c);
        return;
    }
    uint64_t now = now_ns();
    if (c->fail_since_ns != 0 &&
        now - c->fail_since_ns > (uint64_t)r->cfg->retry_ms * 1000000u) {
        fatal(c, CRAFT_ETIMEDOUT, "no reply within --retry-ms", c->last_err);
        return;
    }
    unsigned wait_ms = c->backoff_ms;
    backoff_grow(c);
    if (c->redirect) {
        /* Follow a redirect at once, unless the previous one led nowhere
         * (a stale leader hint): then back off like any retry. */
        c->redirect = 0;
        if (resolve(c->redirect_host, &c->addr) != 0) {
            fatal(c, CRAFT_EPROTO, "bad redirect", c->redirect_host);
            return;
        }
        snprintf(c->host, sizeof c->host, "%s", c->redirect_host);
        if (wait_ms == 0) {
            client_connect(c);
            return;
        }
    }
    uv_timer_start(&c->timer, on_backoff, c->backoff_ms, 0);
}

/* Close the connection; unanswered requests are retried on the next one
 * (or on the next address: a dead node stays dead).  why == NULL for an
 * orderly close. */
static void client_fail(struct client *c, const char *why)
{
    struct run *r = c->run;
    CRAFT_ASSERT(c->state == C_OPEN || c->state == C_CONNECTING);
    if (why != NULL) {
        r->stats->reconnects++;
        snprintf(c->last_err, sizeof c->last_err, "%s: %s", c->host, why);
        if (c->fail_since_ns == 0) {
            c->fail_since_ns = now_ns();
        }
        for (unsigned i = c->n_answered; i < c->n_sent; i++) {
            struct slot *s = &c->slots[c->order[i]];
            CRAFT_ASSERT(s->state == S_SENT);
            s->state = S_RETRY;
            r->stats->retries++;
        }
        if (!c->redirect) {
            c->addr_idx = (c->addr_idx + 1) % r->cfg->n_addrs;
            c->addr = r->addrs[c->addr_idx];
            snprintf(c->host, sizeof c->host, "%s", r->cfg->addrs[c->addr_idx]);
        }
    }
    c->n_sent = c->n_answered = 0;
    c->state = C_CLOSING;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---- replies ---- */

/* --check: compare what a GET returned (base64 for etcd) with the value
 * of its key. */
static void check_value(struct client *c, const struct slot *s,
                        const uint8_t *data, size_t n)
{
    const struct lg_config *cfg = c->run->cfg;
    if (!cfg->check) {
        return;
    }
    int bad = 0;
    if (cfg->target == LG_TARGET_ETCD) {
        /* One byte of room beyond the expected size: a longer value (or
         * one that is not base64) fails to decode, and is a mismatch. */
        long d = lg_base64_decode((const char *)data, n, c->got,
                                  cfg->value_size + 1);
        bad = d < 0;
        if (!bad) {
            data = c->got;
            n = (size_t)d;
        }
    }
    lg_value(cfg->seed, s->key, c->value, cfg->value_size);
    if (bad || n != cfg->value_size || memcmp(data, c->value, n) != 0) {
        c->run->stats->mismatches++;
        if (c->run->stats->mismatches == 1) {
            char key[LG_KEY_LEN];
            lg_key(s->key, key);
            fprintf(stderr,
                    "craft-loadgen: %.*s holds %zu bytes \"%.*s\", "
                    "not the value of seed %llu\n",
                    LG_KEY_LEN, key, n, n > 40 ? 40 : (int)n, data,
                    (unsigned long long)cfg->seed);
        }
    }
}

/* Account for the reply to slot s: data/n is a GET's value or an error's
 * text. */
static void on_reply(struct client *c, struct slot *s, enum lg_reply kind,
                     const uint8_t *data, size_t n)
{
    struct run *r = c->run;
    struct lg_stats *st = r->stats;
    CRAFT_ASSERT(s->state == S_SENT);
    switch (kind) {
    case LG_REPLY_OK:
        c->backoff_ms = 0;
        c->fail_since_ns = 0;
        if (r->cfg->op == LG_GET) {
            check_value(c, s, data, n);
        }
        hist_record(&st->hist, now_ns() - s->start_ns);
        st->ok++;
        finish_request(c, s);
        return;
    case LG_REPLY_NIL:
        c->backoff_ms = 0;
        c->fail_since_ns = 0;
        hist_record(&st->hist, now_ns() - s->start_ns);
        st->misses++;
        finish_request(c, s);
        return;
    case LG_REPLY_MOVED:
        st->redirects++;
        s->state = S_RETRY;
        st->retries++;
        c->redirect = 1;
        return;
    case LG_REPLY_RETRY:
        s->state = S_RETRY;
        st->retries++;
        return;
    case LG_REPLY_ERROR:
    case LG_REPLY_BAD_TYPE:
        if (st->errors == 0) {
            fprintf(stderr, "craft-loadgen: %s from %s: %.*s\n",
                    kind == LG_REPLY_ERROR ? "error" : "unexpected reply",
                    c->host, n > 200 ? 200 : (int)n, data);
        }
        st->errors++;
        finish_request(c, s);
        return;
    }
}

/* The whole round is answered: go on, retry or follow a redirect. */
static void round_complete(struct client *c)
{
    CRAFT_ASSERT(c->n_answered == c->n_sent);
    uv_timer_stop(&c->timer);
    expire_retries(c);
    if (c->redirect) {
        /* A MOVED reply, or a server that said it closes: on_closed
         * connects to redirect_host and sends what is left there. */
        if (pending_retries(c) == 0) {
            c->n_slots = 0;
        }
        client_fail(c, NULL);
    } else if (pending_retries(c) == 0) {
        c->n_slots = 0;
        client_send(c);
    } else {
        backoff_grow(c);
        uv_timer_start(&c->timer, on_backoff, c->backoff_ms, 0);
    }
}

/* Parse and account every complete reply in c->in.  0, or -1 when the
 * client was closed. */
static int parse_replies(struct client *c)
{
    const struct lg_config *cfg = c->run->cfg;
    size_t off = 0;
    int rv = 0;
    while (off < c->in.len) {
        if (c->n_answered == c->n_sent) {
            fatal(c, CRAFT_EPROTO, "protocol error", "bytes nobody asked for");
            return -1;
        }
        struct slot *s = &c->slots[c->order[c->n_answered]];
        enum lg_reply kind = LG_REPLY_OK;
        const uint8_t *data = NULL;
        size_t n = 0, used = 0;
        char err[128] = "not RESP";
        if (cfg->target == LG_TARGET_RESP) {
            rv = lg_resp_reply(c->in.data + off, c->in.len - off, cfg->op,
                               &kind, &data, &n, c->redirect_host,
                               sizeof c->redirect_host, &used);
        } else {
            struct http_response resp;
            rv = lg_http_response(c->in.data + off, c->in.len - off,
                                  &c->scratch, &resp, &used, err, sizeof err);
            if (rv == 1) {
                kind = lg_etcd_reply(&resp, cfg->op, &data, &n);
                if (kind != LG_REPLY_OK) {
                    data = resp.body; /* the error, for the message */
                    n = resp.body_len;
                }
                if (resp.close) {
                    /* "Connection: close": reconnect to the same server
                     * once the round is answered (requests after this one
                     * will see the close and be retried there). */
                    c->redirect = 1;
                    memcpy(c->redirect_host, c->host, sizeof c->host);
                }
            }
        }
        if (rv == 0) {
            break;
        }
        if (rv < 0) {
            fatal(c, CRAFT_EPROTO, "protocol error", err);
            return -1;
        }
        c->n_answered++;
        on_reply(c, s, kind, data, n);
        off += used;
    }
    buf_consume(&c->in, off);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct client *c = h->data;
    (void)suggested;
    if (buf_reserve(&c->in, READ_CHUNK) != 0) {
        out->base = NULL;
        out->len = 0;
        return;
    }
    out->base = (char *)c->in.data + c->in.len;
    out->len = c->in.cap - c->in.len;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct client *c = stream->data;
    (void)b;
    if (nread == 0) {
        return;
    }
    if (nread == UV_ENOBUFS) {
        fatal(c, CRAFT_ENOMEM, "out of memory", "read buffer");
        return;
    }
    if (nread < 0) {
        client_fail(c, uv_strerror((int)nread));
        return;
    }
    c->in.len += (size_t)nread;
    CRAFT_ASSERT(c->in.len <= c->in.cap);
    if (parse_replies(c) != 0 || c->state != C_OPEN) {
        return;
    }
    if (c->n_answered == c->n_sent && c->n_sent > 0) {
        c->n_sent = c->n_answered = 0;
        round_complete(c);
    }
}

/* ---- sending ---- */

/* No reply (or no connection) within --timeout-ms: a dead or partitioned
 * server may never answer, not even with a reset. */
static void on_timeout(uv_timer_t *t)
{
    struct client *c = t->data;
    CRAFT_ASSERT(c->state == C_OPEN || c->state == C_CONNECTING);
    client_fail(c, c->state == C_OPEN ? "reply timeout" : "connect timeout");
}

static void on_write(uv_write_t *req, int status)
{
    struct client *c = req->data;
    CRAFT_ASSERT(c->writing);
    c->writing = 0;
    if (c->state != C_OPEN) {
        return;
    }
    if (status < 0) {
        client_fail(c, uv_strerror(status));
        return;
    }
    if (c->send_pending) {
        c->send_pending = 0;
        client_send(c);
    }
}

static int encode(struct client *c, const struct slot *s)
{
    const struct lg_config *cfg = c->run->cfg;
    char key[LG_KEY_LEN + 1];
    lg_key(s->key, key);
    key[LG_KEY_LEN] = '\0';
    if (cfg->op == LG_PUT) {
        lg_value(cfg->seed, s->key, c->value, cfg->value_size);
    }
    if (cfg->target == LG_TARGET_RESP) {
        return lg_resp_request(&c->out, cfg->op, key, c->value,
                               cfg->value_size);
    }
    return lg_etcd_request(&c->out, c->host, cfg->op, key, c->value,
                           cfg->value_size, cfg->serializable);
}

/* Send the requests of the round still to be sent, opening a new round if
 * the last one is done; finish the client when there is no work left. */
static void client_send(struct client *c)
{
    CRAFT_ASSERT(c->state == C_OPEN);
    CRAFT_ASSERT(c->n_sent == 0);
    if (c->writing) {
        c->send_pending = 1;
        return;
    }
    if (pending_retries(c) == 0 && new_round(c) == 0) {
        client_fail(c, NULL); /* on_closed finishes the client */
        return;
    }
    buf_reset(&c->out);
    for (unsigned i = 0; i < c->n_slots; i++) {
        struct slot *s = &c->slots[i];
        if (s->state != S_RETRY) {
            continue;
        }
        if (encode(c, s) != 0) {
            fatal(c, CRAFT_ENOMEM, "out of memory", "request buffer");
            return;
        }
        s->state = S_SENT;
        c->order[c->n_sent++] = i;
    }
    CRAFT_ASSERT(c->n_sent > 0 && c->n_sent <= c->n_slots);
    uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    int rv = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rv != 0) {
        client_fail(c, uv_strerror(rv));
        return;
    }
    c->writing = 1;
    uv_timer_start(&c->timer, on_timeout, c->run->cfg->timeout_ms, 0);
}

/* ---- connecting ---- */

static void on_connect(uv_connect_t *req, int status)
{
    struct client *c = req->data;
    CRAFT_ASSERT(c->state == C_CONNECTING || c->state == C_CLOSING);
    if (c->state == C_CLOSING) {
        return; /* closed meanwhile (a fatal error elsewhere) */
    }
    if (status < 0) {
        client_fail(c, uv_strerror(status));
        return;
    }
    c->state = C_OPEN;
    uv_timer_stop(&c->timer); /* the connect timeout */
    uv_tcp_nodelay(&c->tcp, 1);
    int rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rv != 0) {
        client_fail(c, uv_strerror(rv));
        return;
    }
    client_send(c);
}

static void client_connect(struct client *c)
{
    struct run *r = c->run;
    CRAFT_ASSERT(c->state == C_IDLE);
    if (!work_left(c)) {
        client_done(c);
        return;
    }
    int rv = uv_tcp_init(&r->loop, &c->tcp);
    CRAFT_ASSERT(rv == 0);
    c->tcp.data = c;
    c->connect_req.data = c;
    c->write_req.data = c;
    c->state = C_CONNECTING;
    rv = uv_tcp_connect(&c->connect_req, &c->tcp,
                        (const struct sockaddr *)&c->addr, on_connect);
    if (rv != 0) {
        client_fail(c, uv_strerror(rv));
        return;
    }
    uv_timer_start(&c->timer, on_timeout, r->cfg->timeout_ms, 0);
}

/* ---- the run ---- */

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void clients_free(struct run *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct client *c = &r->clients[i];
        buf_close(&c->out);
        buf_close(&c->in);
        buf_close(&c->scratch);
        free(c->value);
        free(c->got);
        free(c->slots);
        free(c->order);
    }
    free(r->clients);
}

static int clients_init(struct run *r)
{
    const struct lg_config *cfg = r->cfg;
    r->clients = calloc(cfg->clients, sizeof *r->clients);
    if (r->clients == NULL) {
        return CRAFT_ENOMEM;
    }
    for (unsigned i = 0; i < cfg->clients; i++) {
        struct client *c = &r->clients[i];
        c->run = r;
        c->id = i;
        c->state = C_IDLE;
        buf_init(&c->out);
        buf_init(&c->in);
        buf_init(&c->scratch);
        c->value = malloc(cfg->value_size + 1);
        c->got = malloc(cfg->value_size + 1);
        c->slots = calloc(cfg->pipeline, sizeof *c->slots);
        c->order = calloc(cfg->pipeline, sizeof *c->order);
        if (c->value == NULL || c->got == NULL || c->slots == NULL ||
            c->order == NULL) {
            clients_free(r, i + 1);
            return CRAFT_ENOMEM;
        }
        /* Each client draws its own key sequence from the run's seed. */
        rng_init(&c->rng, cfg->seed + (i + 1) * UINT64_C(0x9E3779B97F4A7C15));
        /* Spread the clients over the addresses given. */
        c->addr_idx = i % cfg->n_addrs;
        c->addr = r->addrs[c->addr_idx];
        snprintf(c->host, sizeof c->host, "%s", cfg->addrs[c->addr_idx]);
        int rv = uv_timer_init(&r->loop, &c->timer);
        CRAFT_ASSERT(rv == 0);
        c->timer.data = c;
    }
    return 0;
}

int lg_run(const struct lg_config *cfg, struct lg_stats *stats, char *errmsg,
           size_t errmsg_size)
{
    CRAFT_ASSERT(cfg->target == LG_TARGET_RESP ||
                 cfg->target == LG_TARGET_ETCD);
    CRAFT_ASSERT(cfg->clients > 0 && cfg->clients <= LG_CLIENTS_MAX);
    CRAFT_ASSERT(cfg->pipeline > 0 && cfg->pipeline <= LG_PIPELINE_MAX);
    CRAFT_ASSERT(cfg->n_addrs > 0 && cfg->n_addrs <= LG_ADDRS_MAX);
    struct run r;
    memset(&r, 0, sizeof r);
    memset(stats, 0, sizeof *stats);
    hist_init(&stats->hist);
    r.cfg = cfg;
    r.stats = stats;
    r.errmsg = errmsg;
    r.errmsg_size = errmsg_size;
    for (size_t i = 0; i < cfg->n_addrs; i++) {
        if (resolve(cfg->addrs[i], &r.addrs[i]) != 0) {
            snprintf(errmsg, errmsg_size, "cannot resolve \"%s\"",
                     cfg->addrs[i]);
            return CRAFT_EINVAL;
        }
    }
    int rv = uv_loop_init(&r.loop);
    if (rv != 0) {
        snprintf(errmsg, errmsg_size, "uv_loop_init: %s", uv_strerror(rv));
        return CRAFT_ENOMEM;
    }
    rv = clients_init(&r);
    if (rv != 0) {
        snprintf(errmsg, errmsg_size, "out of memory for %u clients",
                 cfg->clients);
        uv_loop_close(&r.loop);
        return rv;
    }
    r.start_ns = now_ns();
    r.last_finish_ns = r.start_ns;
    if (cfg->duration_s > 0) {
        r.deadline_ns = r.start_ns + (uint64_t)(cfg->duration_s * 1e9);
    }
    for (unsigned i = 0; i < cfg->clients; i++) {
        client_connect(&r.clients[i]);
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    CRAFT_ASSERT(r.n_done == cfg->clients);
    CRAFT_ASSERT(r.fatal || r.finished == r.issued);
    stats->elapsed_s = (double)(r.last_finish_ns - r.start_ns) / 1e9;
    for (unsigned i = 0; i < cfg->clients; i++) {
        uv_close((uv_handle_t *)&r.clients[i].timer, on_timer_closed);
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(&r.loop);
    CRAFT_ASSERT(rv == 0);
    clients_free(&r, cfg->clients);
    return r.fatal;
}
