/*
 * The /metrics HTTP server (see metrics.h for its rules).
 *
 * A connection's life:
 *
 *   accepted --(bytes)--> READING --(end of headers)--> WRITING --(written)
 *        \                   |  (too big, bad line, timeout)      --> closed
 *         `-(too many)--> closed      `--> WRITING an error --> closed
 *
 * Timers: nothing within METRICS_FIRST_BYTE_MS closes the connection;
 * the head must be complete METRICS_REQUEST_TIMEOUT_MS after accept (408);
 * the response written within METRICS_WRITE_TIMEOUT_MS; then lingering.
 * A connection beyond METRICS_CONNS_MAX evicts the oldest one still
 * READING (or is refused when none is).
 *
 * The response is written with one uv_write and the connection closed from
 * its callback; reading stops as soon as a request is complete.
 */
#include "node/metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "util/assert.h"
#include "util/log.h"

/* Counters of the server itself (seen in a debugger or a core). */
struct node_metrics_stats {
    uint64_t requests; /* answered 200 */
    uint64_t errors;   /* answered 4xx or 5xx */
    uint64_t timeouts; /* METRICS_FIRST_BYTE_MS, _REQUEST_ or _WRITE_ */
    uint64_t refused;  /* closed at once: METRICS_CONNS_MAX */
    uint64_t evicted;  /* idle or incomplete, closed for a new one */
};

struct mconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct node_metrics *m;
    struct mconn *prev, *next;
    char req[METRICS_REQUEST_MAX];
    size_t len;
    uint64_t accepted_ms; /* uv_now() at accept */
    bool answered;
    int open_handles; /* tcp + timer */
    struct buf resp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    size_t drained; /* bytes discarded after the response (lingering) */
};

struct node_metrics {
    uv_loop_t *loop;
    uv_tcp_t listener;
    node_metrics_page_fn page;
    void *data;
    struct mconn *conns;
    unsigned n_conns;
    unsigned open_handles; /* listener + every connection */
    bool stopping;
    void (*stop_cb)(void *data);
    void *stop_data;
    struct node_metrics_stats stats;
    struct buf body;
};

static void maybe_stopped(struct node_metrics *m)
{
    if (m->stopping && m->open_handles == 0) {
        void (*cb)(void *) = m->stop_cb;
        void *data = m->stop_data;
        buf_close(&m->body);
        free(m);
        if (cb != NULL) {
            cb(data);
        }
    }
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct mconn *c = h->data;
    CRAFT_ASSERT(c->open_handles > 0);
    if (--c->open_handles > 0) {
        return;
    }
    struct node_metrics *m = c->m;
    buf_close(&c->resp);
    free(c);
    CRAFT_ASSERT(m->open_handles > 0);
    m->open_handles--;
    maybe_stopped(m);
}

static void conn_close(struct mconn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp)) {
        return;
    }
    struct node_metrics *m = c->m;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        m->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    m->n_conns--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out);
static void on_timeout(uv_timer_t *t);
static void on_write_timeout(uv_timer_t *t);

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

/* Closing cancels the write: on_written sees UV_ECANCELED. */
static void on_write_timeout(uv_timer_t *t)
{
    struct mconn *c = t->data;
    c->m->stats.timeouts++;
    conn_close(c);
}

/* The response is out and our FIN sent: read and discard what the client
 * still sends for a moment before closing.  Closing a socket with unread
 * input makes the kernel send a reset, which can destroy the response
 * before the client reads it (a refused oversized request). */
static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct mconn *c = req->data;
    if (status != 0 || uv_is_closing((uv_handle_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timeout, METRICS_LINGER_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct mconn *c = w->data;
    if (status != 0 || uv_is_closing((uv_handle_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
    }
}

/* Send status line, headers and body (NULL for none: HEAD or an error
 * without text), then close. */
static void respond(struct mconn *c, const char *status, const char *extra,
                    const void *body, size_t body_len, bool head)
{
    CRAFT_ASSERT(!c->answered);
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->timer, on_write_timeout, METRICS_WRITE_TIMEOUT_MS, 0);
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     status,
                     body_len > 0 && strncmp(status, "200", 3) == 0
                         ? "text/plain; version=0.0.4; charset=utf-8"
                         : "text/plain; charset=utf-8",
                     body_len, extra);
    CRAFT_ASSERT(n > 0 && (size_t)n < sizeof hdr);
    if (buf_append(&c->resp, hdr, (size_t)n) != 0 ||
        (!head && body_len > 0 && buf_append(&c->resp, body, body_len) != 0)) {
        conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->resp.data, (unsigned)c->resp.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        conn_close(c);
    }
}

static void respond_error(struct mconn *c, const char *status,
                          const char *extra)
{
    c->m->stats.errors++;
    char body[96];
    int n = snprintf(body, sizeof body, "%s\n", status);
    respond(c, status, extra, body, (size_t)n, false);
}

/* Copy the word of p[0..len) that ends at `stop` (or at len when stop is
 * '\0') into out; returns the bytes consumed with the separator, or 0 if
 * the word is empty, too long or holds a control byte. */
static size_t take_word(const char *p, size_t len, char stop, char *out,
                        size_t cap)
{
    size_t i = 0;
    while (i < len && p[i] != stop) {
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] == 0x7f ||
            i + 1 >= cap) {
            return 0;
        }
        out[i] = p[i];
        i++;
    }
    if (i == 0 || (stop != '\0' && i == len)) {
        return 0;
    }
    out[i] = '\0';
    return i < len ? i + 1 : i;
}

/* "METHOD SP PATH SP HTTP/1.x", exactly: 0 or -1. */
static int split_request_line(const char *line, size_t len, char *method,
                              char *path, char *version)
{
    size_t a = take_word(line, len, ' ', method, 16);
    size_t b = a ? take_word(line + a, len - a, ' ', path, 256) : 0;
    size_t c = b ? take_word(line + a + b, len - a - b, '\0', version, 16) : 0;
    if (c == 0 || a + b + c != len || path[0] != '/' ||
        strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method)) {
        return -1;
    }
    if (strcmp(version, "HTTP/1.0") != 0 && strcmp(version, "HTTP/1.1") != 0) {
        return -1;
    }
    return 0;
}

/* A complete request head in c->req: answer it. */
static void handle_request(struct mconn *c, size_t head_len)
{
    struct node_metrics *m = c->m;
    const char *line = c->req;
    size_t line_len = strcspn(line, "\r\n");
    if (line_len >= head_len) {
        line_len = head_len;
    }
    char method[16], path[256], version[16];
    if (split_request_line(line, line_len, method, path, version) != 0) {
        respond_error(c, "400 Bad Request", "");
        return;
    }
    bool head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        respond_error(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
        return;
    }
    size_t plen = strcspn(path, "?");
    if (plen != 8 || strncmp(path, "/metrics", 8) != 0) {
        respond_error(c, "404 Not Found", "");
        return;
    }
    buf_reset(&m->body);
    if (m->page(m->data, &m->body) != 0) {
        respond_error(c, "500 Internal Server Error", "");
        return;
    }
    m->stats.requests++;
    respond(c, "200 OK", "", m->body.data, m->body.len, head);
    if (m->body.cap > (4u << 20)) {
        buf_close(&m->body); /* a huge page once is no reason to keep it */
    }
}

/* The length of the request head (through the blank line), or 0. */
static size_t head_end(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] == '\n' && p[i + 1] == '\n') {
            return i + 2;
        }
        if (i + 3 < len && memcmp(p + i, "\r\n\r\n", 4) == 0) {
            return i + 4;
        }
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct mconn *c = h->data;
    (void)suggested;
    if (c->answered) {
        c->len = 0; /* lingering: the input is discarded */
    }
    *out = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct mconn *c = s->data;
    (void)b;
    if (c->answered) {
        /* Lingering (on_shutdown): discard, up to a bound. */
        if (nread < 0 ||
            (c->drained += (size_t)nread) > METRICS_LINGER_BYTES_MAX) {
            conn_close(c);
        }
        return;
    }
    if (nread == UV_ENOBUFS ||
        (nread >= 0 && c->len + (size_t)nread >= sizeof c->req &&
         head_end(c->req, c->len + (size_t)nread) == 0)) {
        respond_error(c, "431 Request Header Fields Too Large", "");
        return;
    }
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->len == 0 && nread > 0) {
        /* The first bytes: the rest of the whole-request bound. */
        uint64_t spent = uv_now(c->m->loop) - c->accepted_ms;
        uv_timer_start(&c->timer, on_timeout,
                       spent < METRICS_REQUEST_TIMEOUT_MS
                           ? METRICS_REQUEST_TIMEOUT_MS - spent
                           : 1,
                       0);
    }
    c->len += (size_t)nread;
    size_t end = head_end(c->req, c->len);
    if (end > 0) {
        handle_request(c, end);
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct mconn *c = t->data;
    c->m->stats.timeouts++;
    if (!c->answered) {
        respond_error(c, "408 Request Timeout", "");
    }
}

/* Nothing received within METRICS_FIRST_BYTE_MS: close without an
 * answer (nothing was asked). */
static void on_first_byte_timeout(uv_timer_t *t)
{
    struct mconn *c = t->data;
    c->m->stats.timeouts++;
    conn_close(c);
}

/* Make room for a new connection: close the oldest one that has not sent
 * a complete request (the list is newest first).  False when every
 * connection is being answered. */
static bool evict_one(struct node_metrics *m, const struct mconn *keep)
{
    struct mconn *victim = NULL;
    for (struct mconn *c = m->conns; c != NULL; c = c->next) {
        if (c != keep && !c->answered) {
            victim = c;
        }
    }
    if (victim == NULL) {
        return false;
    }
    m->stats.evicted++;
    conn_close(victim);
    return true;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct node_metrics *m = listener->data;
    if (status < 0 || m->stopping) {
        return;
    }
    struct mconn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return; /* the connection stays in the backlog; retried later */
    }
    c->m = m;
    buf_init(&c->resp);
    uv_tcp_init(m->loop, &c->tcp);
    uv_timer_init(m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = m->conns;
    if (m->conns != NULL) {
        m->conns->prev = c;
    }
    m->conns = c;
    m->n_conns++;
    m->open_handles++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (m->n_conns > METRICS_CONNS_MAX && !evict_one(m, c)) {
        m->stats.refused++;
        conn_close(c);
        return;
    }
    c->accepted_ms = uv_now(m->loop);
    uv_timer_start(&c->timer, on_first_byte_timeout, METRICS_FIRST_BYTE_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct node_metrics *m = h->data;
    CRAFT_ASSERT(m->open_handles > 0);
    m->open_handles--;
    maybe_stopped(m);
}

int node_metrics_start(uv_loop_t *loop, const char *host, uint16_t port,
                       node_metrics_page_fn page, void *data,
                       struct node_metrics **out, char *errmsg,
                       size_t errmsg_len)
{
    CRAFT_ASSERT(page != NULL);
    CRAFT_ASSERT(out != NULL);
    struct sockaddr_in sa;
    if (uv_ip4_addr(host, port, &sa) != 0) {
        snprintf(errmsg, errmsg_len, "--metrics-addr: bad address %s", host);
        return CRAFT_EINVAL;
    }
    struct node_metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    m->loop = loop;
    m->page = page;
    m->data = data;
    buf_init(&m->body);
    uv_tcp_init(loop, &m->listener);
    m->listener.data = m;
    m->open_handles = 1;
    int rv = uv_tcp_bind(&m->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&m->listener, 64, on_connection);
    }
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "cannot listen for metrics on %s:%u: %s",
                 host, (unsigned)port, uv_strerror(rv));
        m->stopping = true;
        uv_close((uv_handle_t *)&m->listener, on_listener_closed);
        return rv == UV_EADDRINUSE ? CRAFT_EBUSY : CRAFT_EIO;
    }
    *out = m;
    return 0;
}

void node_metrics_stop(struct node_metrics *m, void (*cb)(void *data),
                       void *data)
{
    CRAFT_ASSERT(!m->stopping);
    m->stopping = true;
    m->stop_cb = cb;
    m->stop_data = data;
    while (m->conns != NULL) {
        conn_close(m->conns);
    }
    uv_close((uv_handle_t *)&m->listener, on_listener_closed);
}
