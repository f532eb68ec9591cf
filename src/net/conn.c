/*
 * One framed TCP connection on libuv: handshake, sending (bounded output
 * queue), receiving (frame decoding, dispatch), request/response matching
 * with per-call timeouts, and the close sequence.  States and invariants
 * are in conn.h.
 *
 * Why callbacks are safe here: user callbacks run only from libuv callbacks
 * (read, timer, close), never from a net_* call.  A callback may close the
 * connection; that only moves it to CLOSING and starts uv_close(), so the
 * memory stays valid until the close callbacks run in a later loop phase,
 * and the read loop stops as soon as it sees the state change.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "net/conn.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/encoding.h"
#include "util/log.h"
#include "util/sha256.h"

struct net__call {
    uv_timer_t timer; /* used iff has_timer */
    int has_timer;
    struct net_conn *conn;
    uint64_t id;
    void *data;
    net_call_cb cb;
};

/* A received request; the public part is what the handler sees. */
struct net__request {
    struct net_request pub;
    struct net_conn *conn; /* holds a reference */
    uint64_t id;
    uint8_t payload[];
};

static void conn_unref(struct net_conn *c);
static void conn_start_reading(struct net_conn *c);
static void conn_lost(struct net_conn *c, size_t bytes, uint32_t n_frames);
static void seg_list_free(struct net__seg *s);
static void conn_flush(struct net_conn *c);

/*
 * Configuration and errors.
 */

void net_config_init(struct net_config *cfg)
{
    CRAFT_ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof *cfg);
    cfg->frame_max = NET_FRAME_MAX_DEFAULT;
    cfg->queue_bytes_max = NET_QUEUE_BYTES_DEFAULT;
    cfg->connect_timeout_ms = NET_CONNECT_TIMEOUT_MS_DEFAULT;
    cfg->handshake_timeout_ms = NET_HANDSHAKE_TIMEOUT_MS_DEFAULT;
    cfg->backoff_min_ms = NET_BACKOFF_MIN_MS_DEFAULT;
    cfg->backoff_max_ms = NET_BACKOFF_MAX_MS_DEFAULT;
    cfg->user_timeout_ms = NET_USER_TIMEOUT_MS_DEFAULT;
    cfg->bind_host = NULL;
}

static int cfg_error(char *errmsg, size_t errmsg_len, const char *msg)
{
    if (errmsg != NULL && errmsg_len > 0) {
        snprintf(errmsg, errmsg_len, "%s", msg);
    }
    return CRAFT_EINVAL;
}

/*
 * libuv writes with writev(2), which raises SIGPIPE when the other end has
 * reset the connection; its default action would kill the process over
 * what is, for a transport, a routine error (reported as CRAFT_ECLOSED).
 * So the first net object created ignores SIGPIPE, unless the program has
 * installed its own handler.
 */
static void ignore_sigpipe(void)
{
    static int done;
    if (done) {
        return;
    }
    done = 1;
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

int net__cfg_init(struct net__cfg *out, const struct net_config *cfg,
                  char *errmsg, size_t errmsg_len)
{
    ignore_sigpipe();
    CRAFT_ASSERT(out != NULL);
    CRAFT_ASSERT(cfg != NULL);
    if (cfg->frame_max < NET_FRAME_MAX_MIN ||
        cfg->frame_max > NET_FRAME_MAX_LIMIT) {
        return cfg_error(errmsg, errmsg_len, "frame_max out of range");
    }
    if (cfg->queue_bytes_max < NET_QUEUE_BYTES_MIN) {
        return cfg_error(errmsg, errmsg_len, "queue_bytes_max too small");
    }
    if (cfg->connect_timeout_ms == 0 || cfg->handshake_timeout_ms == 0) {
        return cfg_error(errmsg, errmsg_len, "timeouts must be positive");
    }
    if (cfg->backoff_min_ms == 0 || cfg->backoff_max_ms < cfg->backoff_min_ms) {
        return cfg_error(errmsg, errmsg_len,
                         "backoff needs 0 < backoff_min_ms <= backoff_max_ms");
    }
    if (cfg->secret_len > NET_SECRET_MAX ||
        (cfg->secret != NULL && cfg->secret_len == 0) ||
        (cfg->secret == NULL && cfg->secret_len != 0)) {
        return cfg_error(errmsg, errmsg_len,
                         "secret must be 1..256 bytes, or NULL and 0");
    }
    struct net__cfg c;
    memset(&c, 0, sizeof c);
    c.c = *cfg;
    c.c.bind_host = NULL;
    c.c.secret = NULL;
    if (cfg->secret != NULL) {
        memcpy(c.secret, cfg->secret, cfg->secret_len);
        c.secret_len = cfg->secret_len;
        c.has_secret = 1;
    }
    if (cfg->bind_host != NULL) {
        if (net__host_resolve(cfg->bind_host, 0, &c.bind_addr) != 0) {
            return cfg_error(errmsg, errmsg_len,
                             "bind_host is not a numeric IP address");
        }
        c.has_bind = 1;
    }
    *out = c;
    return 0;
}

int net__uv_error(int uv_err)
{
    CRAFT_ASSERT(uv_err < 0);
    switch (uv_err) {
    case UV_EOF:
    case UV_ECONNRESET:
    case UV_EPIPE:
        return CRAFT_ECLOSED;
    case UV_ECONNREFUSED:
        return CRAFT_ECONNREFUSED;
    case UV_ETIMEDOUT:
        return CRAFT_ETIMEDOUT;
    case UV_ENOMEM:
    case UV_ENOBUFS:
        return CRAFT_ENOMEM;
    case UV_EADDRINUSE:
        return CRAFT_EBUSY;
    case UV_EINVAL:
    case UV_EADDRNOTAVAIL:
    case UV_EAFNOSUPPORT:
        return CRAFT_EINVAL;
    case UV_ECANCELED:
        return CRAFT_ECANCELED;
    default:
        return CRAFT_EIO;
    }
}

static const char *conn_peer_str(const struct net_conn *c, char *buf,
                                 size_t len)
{
    net_addr_format((const struct sockaddr *)&c->peer_addr, buf, len);
    return buf;
}

/*
 * Allocation and the close sequence.
 */

static struct net_conn *conn_alloc(uv_loop_t *loop, const struct net__cfg *cfg,
                                   const struct net_handlers *h,
                                   enum conn_owner owner)
{
    struct net_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->loop = loop;
    c->cfg = *cfg;
    if (h != NULL) {
        c->h = *h;
    }
    c->owner = owner;
    c->refs = 1;
    c->state = CONN_CONNECTING;
    /* Until the HELLO says otherwise, assume the other end accepts what we
     * accept: only the HELLO itself is sent before then. */
    c->peer_frame_max = cfg->c.frame_max;
    c->call_gen = 1;
    buf_init(&c->rbuf);
    CRAFT_ASSERT(uv_timer_init(loop, &c->timer) == 0);
    c->timer.data = c;
    CRAFT_ASSERT(uv_prepare_init(loop, &c->flush) == 0);
    c->flush.data = c;
    return c;
}

static void call_dispose_cb(uv_handle_t *handle)
{
    free(handle->data);
}

/* Free a call that has left the slot table and had its callback. */
static void call_dispose(struct net__call *call)
{
    if (call->has_timer) {
        uv_close((uv_handle_t *)&call->timer, call_dispose_cb);
    } else {
        free(call);
    }
}

/* Remove the call from the table (invariant 3) and return it. */
static struct net__call *call_take(struct net_conn *c, uint64_t id)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu);
    if (slot >= c->n_slots || c->slots[slot] == NULL ||
        c->slots[slot]->id != id) {
        return NULL;
    }
    struct net__call *call = c->slots[slot];
    c->slots[slot] = NULL;
    c->free_slots[c->n_free++] = slot;
    c->n_calls--;
    if (call->has_timer) {
        uv_timer_stop(&call->timer);
    }
    CRAFT_ASSERT(call->conn == c);
    return call;
}

/* Every pending call ends with CRAFT_ECLOSED (the connection is CLOSED). */
static void conn_fail_calls(struct net_conn *c)
{
    CRAFT_ASSERT(c->state == CONN_CLOSED);
    for (uint32_t i = 0; i < c->n_slots; i++) {
        if (c->slots[i] == NULL) {
            continue;
        }
        struct net__call *call = call_take(c, c->slots[i]->id);
        CRAFT_ASSERT(call != NULL);
        call->cb(call->data, CRAFT_ECLOSED, NULL, 0);
        call_dispose(call);
    }
    CRAFT_ASSERT(c->n_calls == 0);
}

/* All three handles are closed: fail the calls, tell the user and the
 * owner, drop our reference. */
static void conn_finish_close(struct net_conn *c)
{
    CRAFT_ASSERT(c->state == CONN_CLOSING);
    c->state = CONN_CLOSED;
    buf_close(&c->rbuf);
    conn_fail_calls(c);
    if (c->was_open && c->h.on_close != NULL) {
        c->h.on_close(c->h.data, c, c->close_status);
    }
    switch (c->owner) {
    case OWNER_NONE:
        break;
    case OWNER_CONNECT:
        /* Never opened (the callback is owed exactly once). */
        CRAFT_ASSERT(!c->was_open);
        c->owner = OWNER_NONE;
        c->connect_cb(c->connect_data, NULL,
                      c->close_status != 0 ? c->close_status : CRAFT_ECLOSED);
        break;
    case OWNER_SERVER:
        net__server_conn_closed(c->server, c);
        c->server = NULL;
        break;
    case OWNER_PEER:
        net__peer_conn_closed(c->peer, c, c->was_open, c->close_status);
        c->peer = NULL;
        break;
    }
    conn_unref(c);
}

static void conn_handle_closed_cb(uv_handle_t *handle)
{
    struct net_conn *c = handle->data;
    CRAFT_ASSERT(c->closing_handles > 0);
    if (--c->closing_handles == 0) {
        conn_finish_close(c);
    }
}

void net__conn_close(struct net_conn *c, int status)
{
    CRAFT_ASSERT(c != NULL);
    if (c->state == CONN_CLOSING || c->state == CONN_CLOSED) {
        return;
    }
    /* Frames queued before a close still go out as far as the socket takes
     * them without waiting: "send a last message, then close" works. */
    if (c->out_head != NULL && status == 0) {
        conn_flush(c);
        if (c->state == CONN_CLOSING) {
            return; /* the flush failed and closed it */
        }
    }
    c->state = CONN_CLOSING;
    c->close_status = status;
    c->closing_handles = 3;
    /* Closing the stream cancels the writes handed to libuv (their
     * callbacks run with UV_ECANCELED before the close callback) and stops
     * reading; output not yet flushed is dropped here. */
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->flush, conn_handle_closed_cb);
    size_t bytes = 0;
    uint32_t frames = 0;
    for (struct net__seg *sg = c->out_head; sg != NULL; sg = sg->next) {
        bytes += sg->len;
        frames += sg->n_frames;
    }
    conn_lost(c, bytes, frames);
    seg_list_free(c->out_head);
    c->out_head = c->out_tail = NULL;
    c->out_segs = 0;
}

static void conn_unref(struct net_conn *c)
{
    CRAFT_ASSERT(c->refs > 0);
    if (--c->refs > 0) {
        return;
    }
    CRAFT_ASSERT(c->state == CONN_CLOSED);
    CRAFT_ASSERT(c->queued_bytes == 0);
    free(c->slots);
    free(c->free_slots);
    free(c);
}

void net_conn_close(struct net_conn *conn)
{
    net__conn_close(conn, 0);
}

/*
 * Close because the other end broke the protocol or the socket failed.  A
 * broken protocol is always worth a warning (a bug, corruption or a stranger
 * on the port); a socket error or timeout is routine when a peer dies, and
 * the owner (a net_peer, say) reports that at its own level.
 */
static void conn_fail(struct net_conn *c, int status, const char *why)
{
    char addr[NET_ADDR_FMT_MAX];
    conn_peer_str(c, addr, sizeof addr);
    switch (status) {
    case CRAFT_EPROTO:
    case CRAFT_EVERSION:
    case CRAFT_ECORRUPT:
    case CRAFT_ETOOBIG:
    case CRAFT_EMISMATCH:
    case CRAFT_EAUTH:
    case CRAFT_ENOMEM:
        LOG_WARNF("net: closing connection with %s: %s (%s)", addr, why,
                  craft_errname(status));
        break;
    default:
        LOG_DEBUGF("net: closing connection with %s: %s (%s)", addr, why,
                   craft_errname(status));
        break;
    }
    net__conn_close(c, status);
}

/*
 * Sending.
 */

/*
 * Output is coalesced: conn_write() appends the encoded frame to the
 * connection's list of unsent segments and arms the flush handle, and
 * conn_flush_cb() hands every segment to libuv in one uv_write() (one
 * writev(2)) just before the loop next polls.  A burst of small messages
 * sent from one loop iteration -- a leader's heartbeats, a reply per
 * request read -- thus costs one system call, not one per frame, and the
 * first write happens within the same iteration, so no latency is added.
 * Small frames share 64 KiB segments; a larger frame gets a segment of its
 * own, so nothing is ever copied twice.
 */
static void seg_list_free(struct net__seg *s)
{
    while (s != NULL) {
        struct net__seg *next = s->next;
        free(s);
        s = next;
    }
}

/* Frames dropped unsent: counted for a peer, and out of the queue bytes. */
static void conn_lost(struct net_conn *c, size_t bytes, uint32_t n_frames)
{
    CRAFT_ASSERT(c->queued_bytes >= bytes);
    c->queued_bytes -= bytes;
    if (c->peer != NULL && n_frames > 0) {
        net__peer_frames_lost(c->peer, n_frames,
                              bytes - (size_t)n_frames * NET_FRAME_HDR_SIZE);
    }
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct net__wbatch *b = (struct net__wbatch *)req;
    struct net_conn *c = b->conn;
    if (status < 0) {
        conn_lost(c, b->bytes, b->n_frames);
    } else {
        CRAFT_ASSERT(c->queued_bytes >= b->bytes);
        c->queued_bytes -= b->bytes;
    }
    seg_list_free(b->segs);
    free(b);
    if (status < 0 && status != UV_ECANCELED) {
        conn_fail(c, net__uv_error(status), uv_strerror(status));
    }
}

/* Hand every unsent segment to libuv, which writes at once what the socket
 * takes and the rest as it drains. */
static void conn_flush(struct net_conn *c)
{
    uv_prepare_stop(&c->flush);
    CRAFT_ASSERT(c->state == CONN_HANDSHAKE || c->state == CONN_OPEN);
    CRAFT_ASSERT(c->out_head != NULL);
    struct net__wbatch *b = malloc(sizeof *b + c->out_segs * sizeof(uv_buf_t));
    if (b == NULL) {
        conn_fail(c, CRAFT_ENOMEM, "no memory to send");
        return;
    }
    b->conn = c;
    b->segs = c->out_head;
    b->bytes = 0;
    b->n_frames = 0;
    unsigned n = 0;
    for (struct net__seg *s = c->out_head; s != NULL; s = s->next) {
        b->bufs[n++] = uv_buf_init((char *)s->data, (unsigned)s->len);
        b->bytes += s->len;
        b->n_frames += s->n_frames;
    }
    CRAFT_ASSERT(n == c->out_segs);
    c->out_head = c->out_tail = NULL;
    c->out_segs = 0;
    int rv =
        uv_write(&b->req, (uv_stream_t *)&c->tcp, b->bufs, n, conn_write_cb);
    if (rv != 0) {
        conn_lost(c, b->bytes, b->n_frames);
        seg_list_free(b->segs);
        free(b);
        conn_fail(c, net__uv_error(rv), uv_strerror(rv));
    }
}

static void conn_flush_cb(uv_prepare_t *prepare)
{
    conn_flush(prepare->data);
}

/* Room for size bytes at the end of the unsent output, or NULL. */
static uint8_t *conn_out_reserve(struct net_conn *c, size_t size)
{
    struct net__seg *t = c->out_tail;
    if (t == NULL || t->cap - t->len < size) {
        size_t cap = size > NET_SEG_SIZE ? size : NET_SEG_SIZE;
        t = malloc(sizeof *t + cap);
        if (t == NULL) {
            return NULL;
        }
        t->next = NULL;
        t->len = 0;
        t->cap = cap;
        t->n_frames = 0;
        if (c->out_tail != NULL) {
            c->out_tail->next = t;
        } else {
            c->out_head = t;
        }
        c->out_tail = t;
        c->out_segs++;
    }
    return t->data + t->len;
}

/*
 * Frame the payload pieces with header *h and queue them.  The payload is
 * copied once, into the output segment, and its checksum computed on the
 * copy (cache-hot).  handshake marks the HELLO and AUTH frames, the only
 * ones allowed before OPEN.
 */
static int conn_write(struct net_conn *c, struct net_frame_hdr *h,
                      const struct net_iovec *iov, unsigned n_iov,
                      int handshake)
{
    CRAFT_ASSERT(iov != NULL || n_iov == 0);
    if (c->state != CONN_OPEN && !(handshake && c->state == CONN_HANDSHAKE)) {
        return CRAFT_ECLOSED;
    }
    size_t total = 0;
    for (unsigned i = 0; i < n_iov; i++) {
        CRAFT_ASSERT(iov[i].base != NULL || iov[i].len == 0);
        if (iov[i].len > NET_FRAME_MAX_LIMIT - total) {
            return CRAFT_ETOOBIG;
        }
        total += iov[i].len;
    }
    if (total > c->peer_frame_max) {
        return CRAFT_ETOOBIG;
    }
    size_t size = NET_FRAME_HDR_SIZE + total;
    if (size > c->cfg.c.queue_bytes_max - c->queued_bytes) {
        return CRAFT_ELIMIT;
    }
    uint8_t *dst = conn_out_reserve(c, size);
    if (dst == NULL) {
        return CRAFT_ENOMEM;
    }
    uint8_t *p = dst + NET_FRAME_HDR_SIZE;
    for (unsigned i = 0; i < n_iov; i++) {
        if (iov[i].len > 0) {
            memcpy(p, iov[i].base, iov[i].len);
            p += iov[i].len;
        }
    }
    h->length = (uint32_t)total;
    h->payload_crc = crc32c(0, dst + NET_FRAME_HDR_SIZE, total);
    net_frame_encode_hdr(dst, h);
    c->out_tail->len += size;
    c->out_tail->n_frames++;
    c->queued_bytes += size;
    c->stats.frames_out++;
    c->stats.bytes_out += size;
    if (!uv_is_active((uv_handle_t *)&c->flush)) {
        uv_prepare_start(&c->flush, conn_flush_cb);
    }
    CRAFT_ASSERT(c->queued_bytes <= c->cfg.c.queue_bytes_max);
    return 0;
}

/*
 * The handshake (docs/net.md).  Each end sends a HELLO at once; with a
 * cluster secret the HELLO carries a fresh random nonce, and after reading
 * the other end's HELLO each end sends an AUTH frame: a MAC over both
 * nonces, both node ids and the cluster id, keyed with the secret.  The
 * connection opens when the other end's HELLO (and AUTH, with a secret)
 * has been checked.
 */
static int conn_send_hello(struct net_conn *c)
{
    uint8_t p[NET_HELLO_AUTH_SIZE];
    size_t len = NET_HELLO_SIZE;
    put_u16(p, 1); /* hello version */
    put_u16(p + 2, c->cfg.has_secret ? NET_HELLO_FLAG_AUTH : 0);
    put_u32(p + 4, c->cfg.c.frame_max);
    put_u64(p + 8, c->cfg.c.node_id);
    put_u64(p + 16, c->cfg.c.cluster_id);
    if (c->cfg.has_secret) {
        if (getrandom(c->nonce, sizeof c->nonce, 0) !=
            (ssize_t)sizeof c->nonce) {
            return CRAFT_EIO;
        }
        memcpy(p + NET_HELLO_SIZE, c->nonce, sizeof c->nonce);
        len = NET_HELLO_AUTH_SIZE;
    }
    struct net_frame_hdr h = {.kind = NET_KIND_HELLO};
    struct net_iovec iov = {p, len};
    return conn_write(c, &h, &iov, 1, 1);
}

/* The MAC the end with (first_nonce, first_id) sends to the other. */
static void auth_mac(const struct net_conn *c, const uint8_t *first_nonce,
                     uint64_t first_id, const uint8_t *second_nonce,
                     uint64_t second_id, uint8_t out[SHA256_SIZE])
{
    static const char label[] = "craft-net-auth-v1";
    uint8_t ids[24];
    put_u64(ids, first_id);
    put_u64(ids + 8, second_id);
    put_u64(ids + 16, c->cfg.c.cluster_id);
    struct hmac_sha256 h;
    hmac_sha256_init(&h, c->cfg.secret, c->cfg.secret_len);
    hmac_sha256_update(&h, label, sizeof label - 1);
    hmac_sha256_update(&h, first_nonce, NET_NONCE_SIZE);
    hmac_sha256_update(&h, second_nonce, NET_NONCE_SIZE);
    hmac_sha256_update(&h, ids, sizeof ids);
    hmac_sha256_final(&h, out);
}

static int conn_send_auth(struct net_conn *c)
{
    uint8_t mac[SHA256_SIZE];
    auth_mac(c, c->nonce, c->cfg.c.node_id, c->peer_nonce, c->peer_id, mac);
    struct net_frame_hdr h = {.kind = NET_KIND_AUTH};
    struct net_iovec iov = {mac, sizeof mac};
    return conn_write(c, &h, &iov, 1, 1);
}

int net_sendv(struct net_conn *conn, uint16_t type, const struct net_iovec *iov,
              unsigned n_iov)
{
    CRAFT_ASSERT(conn != NULL);
    struct net_frame_hdr h = {.kind = NET_KIND_MESSAGE, .type = type};
    return conn_write(conn, &h, iov, n_iov, 0);
}

int net_send(struct net_conn *conn, uint16_t type, const void *payload,
             size_t len)
{
    struct net_iovec iov = {payload, len};
    return net_sendv(conn, type, &iov, 1);
}

/*
 * Calls.
 */

static void call_timeout_cb(uv_timer_t *timer)
{
    struct net__call *call = timer->data;
    struct net_conn *c = call->conn;
    struct net__call *taken = call_take(c, call->id);
    CRAFT_ASSERT(taken == call);
    c->stats.calls_timed_out++;
    call->cb(call->data, CRAFT_ETIMEDOUT, NULL, 0);
    call_dispose(call);
}

/* A free slot index, growing the table if needed.  0 or CRAFT_ENOMEM. */
static int slot_get(struct net_conn *c, uint32_t *slot)
{
    if (c->n_free == 0) {
        uint32_t cap = c->slots_cap ? c->slots_cap * 2 : 16;
        struct net__call **s = realloc(c->slots, cap * sizeof *s);
        if (s == NULL) {
            return CRAFT_ENOMEM;
        }
        c->slots = s;
        uint32_t *f = realloc(c->free_slots, cap * sizeof *f);
        if (f == NULL) {
            return CRAFT_ENOMEM;
        }
        c->free_slots = f;
        for (uint32_t i = cap; i > c->slots_cap; i--) {
            c->slots[i - 1] = NULL;
            c->free_slots[c->n_free++] = i - 1;
        }
        c->slots_cap = cap;
        c->n_slots = cap;
    }
    *slot = c->free_slots[--c->n_free];
    CRAFT_ASSERT(c->slots[*slot] == NULL);
    return 0;
}

int net_callv(struct net_conn *conn, uint16_t type, const struct net_iovec *iov,
              unsigned n_iov, unsigned timeout_ms, void *data, net_call_cb cb)
{
    CRAFT_ASSERT(conn != NULL);
    CRAFT_ASSERT(cb != NULL);
    if (conn->state != CONN_OPEN) {
        return CRAFT_ECLOSED;
    }
    if (conn->n_calls >= NET_CALLS_MAX) {
        return CRAFT_ELIMIT;
    }
    struct net__call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        return CRAFT_ENOMEM;
    }
    uint32_t slot;
    int rv = slot_get(conn, &slot);
    if (rv != 0) {
        free(call);
        return rv;
    }
    /* The generation in the high half makes a late response to a call that
     * timed out miss the slot's next occupant. */
    call->id = ((uint64_t)conn->call_gen++ << 32) | slot;
    if (conn->call_gen == 0) {
        conn->call_gen = 1;
    }
    call->conn = conn;
    call->data = data;
    call->cb = cb;
    struct net_frame_hdr h = {
        .kind = NET_KIND_REQUEST, .type = type, .id = call->id};
    rv = conn_write(conn, &h, iov, n_iov, 0);
    if (rv != 0) {
        conn->free_slots[conn->n_free++] = slot;
        free(call);
        return rv;
    }
    if (timeout_ms > 0) {
        CRAFT_ASSERT(uv_timer_init(conn->loop, &call->timer) == 0);
        call->timer.data = call;
        call->has_timer = 1;
        CRAFT_ASSERT(
            uv_timer_start(&call->timer, call_timeout_cb, timeout_ms, 0) == 0);
    }
    conn->slots[slot] = call;
    conn->n_calls++;
    return 0;
}

int net_call(struct net_conn *conn, uint16_t type, const void *payload,
             size_t len, unsigned timeout_ms, void *data, net_call_cb cb)
{
    struct net_iovec iov = {payload, len};
    return net_callv(conn, type, &iov, 1, timeout_ms, data, cb);
}

/*
 * Replies.
 */

int net_replyv(struct net_request *req, int status, const struct net_iovec *iov,
               unsigned n_iov)
{
    CRAFT_ASSERT(req != NULL);
    CRAFT_ASSERT(status <= 0 && status >= INT16_MIN);
    struct net__request *r = (struct net__request *)req;
    struct net_conn *c = r->conn;
    CRAFT_ASSERT(c->n_requests > 0);
    CRAFT_ASSERT(c->request_bytes >= req->len);
    c->n_requests--;
    c->request_bytes -= req->len;
    struct net_frame_hdr h = {.kind = NET_KIND_RESPONSE,
                              .type = req->type,
                              .status = (int16_t)status,
                              .id = r->id};
    int rv = conn_write(c, &h, iov, n_iov, 0);
    if (rv == CRAFT_ETOOBIG || rv == CRAFT_ELIMIT) {
        /* Tell the caller now rather than let it wait for its timeout; an
         * empty error response is tiny and usually still fits. */
        h.status = (int16_t)rv;
        (void)conn_write(c, &h, NULL, 0, 0);
    }
    free(r);
    conn_unref(c);
    return rv;
}

int net_reply(struct net_request *req, int status, const void *payload,
              size_t len)
{
    struct net_iovec iov = {payload, len};
    return net_replyv(req, status, &iov, 1);
}

struct net_conn *net_request_conn(const struct net_request *req)
{
    const struct net__request *r = (const struct net__request *)req;
    return r->conn->state == CONN_OPEN ? r->conn : NULL;
}

/*
 * Receiving.
 */

static void conn_opened(struct net_conn *c)
{
    CRAFT_ASSERT(c->state == CONN_HANDSHAKE);
    c->state = CONN_OPEN;
    c->was_open = 1;
    uv_timer_stop(&c->timer);
    switch (c->owner) {
    case OWNER_NONE:
        CRAFT_UNREACHABLE();
        break;
    case OWNER_CONNECT:
        c->owner = OWNER_NONE;
        c->connect_cb(c->connect_data, c, 0);
        break;
    case OWNER_SERVER:
        if (c->h.on_open != NULL) {
            c->h.on_open(c->h.data, c);
        }
        break;
    case OWNER_PEER:
        net__peer_conn_opened(c->peer, c);
        break;
    }
}

static void conn_on_hello(struct net_conn *c, const uint8_t *p, size_t len)
{
    if (c->state != CONN_HANDSHAKE || c->hello_received) {
        conn_fail(c, CRAFT_EPROTO, "second hello");
        return;
    }
    if (len < NET_HELLO_SIZE) {
        conn_fail(c, CRAFT_EPROTO, "hello too short");
        return;
    }
    /* A hello version above 1 may carry more fields after ours (docs);
     * unknown flag bits are ignored for the same reason. */
    if (get_u16(p) < 1) {
        conn_fail(c, CRAFT_EPROTO, "hello version 0");
        return;
    }
    int peer_auth = (get_u16(p + 2) & NET_HELLO_FLAG_AUTH) != 0;
    if (peer_auth && len < NET_HELLO_AUTH_SIZE) {
        conn_fail(c, CRAFT_EPROTO, "hello without its nonce");
        return;
    }
    uint32_t frame_max = get_u32(p + 4);
    if (frame_max == 0) {
        conn_fail(c, CRAFT_EPROTO, "hello with frame max 0");
        return;
    }
    uint64_t cluster = get_u64(p + 16);
    if (cluster != c->cfg.c.cluster_id) {
        conn_fail(c, CRAFT_EMISMATCH, "other end is in another cluster");
        return;
    }
    if (peer_auth != c->cfg.has_secret) {
        conn_fail(c, CRAFT_EAUTH,
                  c->cfg.has_secret ? "other end has no cluster secret"
                                    : "other end requires a cluster secret");
        return;
    }
    c->hello_received = 1;
    c->peer_frame_max =
        frame_max < NET_FRAME_MAX_LIMIT ? frame_max : NET_FRAME_MAX_LIMIT;
    c->peer_id = get_u64(p + 8);
    if (!c->cfg.has_secret) {
        conn_opened(c);
        return;
    }
    memcpy(c->peer_nonce, p + NET_HELLO_SIZE, NET_NONCE_SIZE);
    int rv = conn_send_auth(c);
    if (rv != 0) {
        conn_fail(c, rv, "cannot send auth");
    }
}

static void conn_on_auth(struct net_conn *c, const uint8_t *p, size_t len)
{
    if (c->state != CONN_HANDSHAKE || !c->hello_received ||
        !c->cfg.has_secret) {
        conn_fail(c, CRAFT_EPROTO, "unexpected auth frame");
        return;
    }
    if (len != SHA256_SIZE) {
        conn_fail(c, CRAFT_EPROTO, "auth frame of the wrong size");
        return;
    }
    uint8_t want[SHA256_SIZE];
    auth_mac(c, c->peer_nonce, c->peer_id, c->nonce, c->cfg.c.node_id, want);
    if (!sha256_equal(p, want)) {
        conn_fail(c, CRAFT_EAUTH, "authentication failed (wrong secret?)");
        return;
    }
    conn_opened(c);
}

static void conn_on_request(struct net_conn *c, const struct net_frame_hdr *h,
                            const uint8_t *payload)
{
    /* Requests the handler holds pin memory until answered; past the bound
     * they are shed with CRAFT_EBUSY instead of being queued.  Shedding,
     * not pausing the reads, because a handler may be waiting on a response
     * that comes in over this same connection. */
    if (c->n_requests >= NET_REQUESTS_MAX ||
        h->length > c->cfg.c.queue_bytes_max - c->request_bytes) {
        struct net_frame_hdr rh = {.kind = NET_KIND_RESPONSE,
                                   .type = h->type,
                                   .status = CRAFT_EBUSY,
                                   .id = h->id};
        if (c->stats.requests_refused++ % 1000 == 0) {
            char addr[NET_ADDR_FMT_MAX];
            LOG_WARNF("net: %s: %u requests (%zu bytes) unanswered, "
                      "refusing more (%llu refused)",
                      conn_peer_str(c, addr, sizeof addr), c->n_requests,
                      c->request_bytes,
                      (unsigned long long)c->stats.requests_refused);
        }
        (void)conn_write(c, &rh, NULL, 0, 0);
        return;
    }
    struct net__request *r = malloc(sizeof *r + h->length);
    if (r == NULL) {
        conn_fail(c, CRAFT_ENOMEM, "no memory for a request");
        return;
    }
    r->pub.type = h->type;
    r->pub.payload = r->payload;
    r->pub.len = h->length;
    r->conn = c;
    r->id = h->id;
    if (h->length > 0) {
        memcpy(r->payload, payload, h->length);
    }
    c->refs++;
    c->n_requests++;
    c->request_bytes += h->length;
    if (c->h.on_request != NULL) {
        c->h.on_request(c->h.data, c, &r->pub);
    } else {
        net_reply(&r->pub, CRAFT_ENOENT, NULL, 0);
    }
}

static void conn_on_response(struct net_conn *c, const struct net_frame_hdr *h,
                             const uint8_t *payload)
{
    struct net__call *call = call_take(c, h->id);
    if (call == NULL) {
        /* It timed out already: the caller has had its answer. */
        LOG_DEBUGF("net: response to unknown or expired request %llx",
                   (unsigned long long)h->id);
        return;
    }
    /* A status is a CRAFT_E* code; anything else from the wire is a
     * protocol error reported to this caller alone. */
    int status = h->status > 0 ? CRAFT_EPROTO : h->status;
    call->cb(call->data, status, payload, h->length);
    call_dispose(call);
}

static void conn_dispatch(struct net_conn *c, const struct net_frame_hdr *h,
                          const uint8_t *payload)
{
    if (h->kind == NET_KIND_HELLO) {
        conn_on_hello(c, payload, h->length);
        return;
    }
    if (h->kind == NET_KIND_AUTH) {
        conn_on_auth(c, payload, h->length);
        return;
    }
    if (c->state != CONN_OPEN) {
        conn_fail(c, CRAFT_EPROTO, "frame before the handshake completed");
        return;
    }
    switch ((enum net_kind)h->kind) {
    case NET_KIND_HELLO:
    case NET_KIND_AUTH:
        CRAFT_UNREACHABLE();
        break;
    case NET_KIND_MESSAGE:
        if (c->h.on_message != NULL) {
            c->h.on_message(c->h.data, c, h->type, payload, h->length);
        }
        break;
    case NET_KIND_REQUEST:
        conn_on_request(c, h, payload);
        break;
    case NET_KIND_RESPONSE:
        conn_on_response(c, h, payload);
        break;
    }
}

/* Decode and dispatch every whole frame in the read buffer. */
static void conn_process(struct net_conn *c)
{
    while (c->state == CONN_HANDSHAKE || c->state == CONN_OPEN) {
        struct net_frame_hdr h;
        const char *why = NULL;
        const uint8_t *p = c->rbuf.data + c->rpos;
        int rv = net_frame_decode(p, c->rbuf.len - c->rpos, c->cfg.c.frame_max,
                                  &h, &why);
        if (rv == NET_FRAME_NEED_MORE) {
            break;
        }
        if (rv < 0) {
            conn_fail(c, rv, why);
            return;
        }
        c->rpos += NET_FRAME_HDR_SIZE + h.length;
        c->stats.frames_in++;
        c->stats.bytes_in += NET_FRAME_HDR_SIZE + h.length;
        conn_dispatch(c, &h, p + NET_FRAME_HDR_SIZE);
    }
}

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct net_conn *c = handle->data;
    struct buf *rb = &c->rbuf;
    /* Move the unconsumed tail (a partial frame) to the front. */
    if (c->rpos > 0) {
        buf_consume(rb, c->rpos);
        c->rpos = 0;
    }
    if (rb->len == 0 && rb->cap > NET_RBUF_KEEP_MAX) {
        buf_close(rb);
    }
    /* Once a frame's header is in, make room for all of it at once so that
     * a large frame arrives in few reads and with no further copies. */
    size_t want = NET_READ_CHUNK;
    if (rb->len >= NET_FRAME_HDR_SIZE) {
        /* The last conn_process() stopped at this frame with NEED_MORE, so
         * its header was fully checked and its length is <= frame_max. */
        size_t frame = NET_FRAME_HDR_SIZE + (size_t)get_u32(rb->data + 12);
        CRAFT_ASSERT(frame <= NET_FRAME_HDR_SIZE + (size_t)c->cfg.c.frame_max);
        if (frame > rb->len && frame - rb->len > want) {
            want = frame - rb->len;
        }
    }
    if (buf_reserve(rb, want) != 0) {
        *b = uv_buf_init(NULL, 0); /* read_cb sees UV_ENOBUFS */
        return;
    }
    size_t room = rb->cap - rb->len;
    if (room > UINT32_MAX) {
        room = UINT32_MAX;
    }
    *b = uv_buf_init((char *)rb->data + rb->len, (unsigned)room);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct net_conn *c = stream->data;
    if (nread < 0) {
        int status = net__uv_error((int)nread);
        if (nread == UV_EOF) {
            LOG_DEBUGF("net: connection closed by the other end");
            net__conn_close(c, status);
        } else {
            conn_fail(c, status, uv_strerror((int)nread));
        }
        return;
    }
    CRAFT_ASSERT((size_t)nread <= c->rbuf.cap - c->rbuf.len);
    c->rbuf.len += (size_t)nread;
    conn_process(c);
}

static void conn_start_reading(struct net_conn *c)
{
    int rv = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
    if (rv != 0) {
        conn_fail(c, net__uv_error(rv), uv_strerror(rv));
    }
}

/*
 * Opening: outgoing and accepted.
 */

static void conn_deadline_cb(uv_timer_t *timer)
{
    struct net_conn *c = timer->data;
    conn_fail(c, CRAFT_ETIMEDOUT,
              c->state == CONN_CONNECTING ? "connect timed out"
                                          : "handshake timed out");
}

/* Abort the connection when sent data stays unacknowledged for
 * user_timeout_ms (net.h: NET_USER_TIMEOUT_MS_DEFAULT), so that a link
 * through a healed partition reconnects at once instead of waiting out
 * TCP's retransmission backoff.  Best effort: without the option the link
 * still works, it only recovers later. */
static void set_user_timeout(struct net_conn *c)
{
    unsigned ms = c->cfg.c.user_timeout_ms;
    uv_os_fd_t fd;
    if (ms == 0 || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
        return;
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) != 0) {
        LOG_DEBUGF("TCP_USER_TIMEOUT not set: %s", strerror(errno));
    }
}

/* TCP is up: tune it, send our HELLO, read theirs before the deadline. */
static void conn_begin_handshake(struct net_conn *c)
{
    CRAFT_ASSERT(c->state == CONN_CONNECTING);
    c->state = CONN_HANDSHAKE;
    /* Raft messages and RPCs are latency-bound small writes: no Nagle. */
    uv_tcp_nodelay(&c->tcp, 1);
    /* Keepalive notices a peer that vanished without a FIN on a connection
     * that carries no traffic (an idle MapReduce worker link). */
    uv_tcp_keepalive(&c->tcp, 1, 30);
    set_user_timeout(c);
    int len = (int)sizeof c->local_addr;
    uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&c->local_addr, &len);
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, conn_deadline_cb, c->cfg.c.handshake_timeout_ms,
                   0);
    int rv = conn_send_hello(c);
    if (rv != 0) {
        conn_fail(c, rv, "cannot send hello");
        return;
    }
    conn_start_reading(c);
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct net_conn *c = req->data;
    if (c->state != CONN_CONNECTING) {
        return; /* closing: status is UV_ECANCELED */
    }
    if (status < 0) {
        char addr[NET_ADDR_FMT_MAX];
        LOG_DEBUGF("net: connect to %s failed: %s",
                   conn_peer_str(c, addr, sizeof addr), uv_strerror(status));
        net__conn_close(c, net__uv_error(status));
        return;
    }
    conn_begin_handshake(c);
}

int net__conn_connect(uv_loop_t *loop, const struct net__cfg *cfg,
                      const struct sockaddr_storage *addr,
                      const struct net_handlers *h, enum conn_owner owner,
                      struct net_conn **out)
{
    CRAFT_ASSERT(owner == OWNER_CONNECT || owner == OWNER_PEER);
    struct net_conn *c = conn_alloc(loop, cfg, h, owner);
    if (c == NULL) {
        return CRAFT_ENOMEM;
    }
    c->peer_addr = *addr;
    int rv = uv_tcp_init(loop, &c->tcp);
    CRAFT_ASSERT(rv == 0);
    c->tcp.data = c;
    c->connect_req.data = c;
    if (cfg->has_bind) {
        /* Bind-before-connect: the other end (and any firewall rule) sees
         * our own host address as the source, with a kernel-chosen port. */
        rv = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&cfg->bind_addr, 0);
    }
    if (rv == 0) {
        rv = uv_tcp_connect(&c->connect_req, &c->tcp,
                            (const struct sockaddr *)addr, conn_connect_cb);
    }
    if (rv != 0) {
        /* Nothing was started: close the handles quietly and free. */
        c->owner = OWNER_NONE;
        net__conn_close(c, net__uv_error(rv));
        return net__uv_error(rv);
    }
    uv_timer_start(&c->timer, conn_deadline_cb, cfg->c.connect_timeout_ms, 0);
    *out = c;
    return 0;
}

int net__conn_accept(struct net_server *s, uv_stream_t *srv,
                     const struct net__cfg *cfg, const struct net_handlers *h,
                     struct net_conn **out)
{
    struct net_conn *c = conn_alloc(srv->loop, cfg, h, OWNER_SERVER);
    if (c == NULL) {
        return CRAFT_ENOMEM;
    }
    c->server = s;
    int rv = uv_tcp_init(srv->loop, &c->tcp);
    CRAFT_ASSERT(rv == 0);
    c->tcp.data = c;
    rv = uv_accept(srv, (uv_stream_t *)&c->tcp);
    if (rv != 0) {
        c->owner = OWNER_NONE;
        net__conn_close(c, net__uv_error(rv));
        return net__uv_error(rv);
    }
    int len = (int)sizeof c->peer_addr;
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer_addr, &len);
    *out = c;
    conn_begin_handshake(c);
    return 0;
}

/*
 * net_connect.
 */

int net_connect(uv_loop_t *loop, const struct net_config *cfg,
                const char *address, const struct net_handlers *h,
                struct net_connecting **pending, void *data, net_connect_cb cb)
{
    CRAFT_ASSERT(loop != NULL);
    CRAFT_ASSERT(cb != NULL);
    struct net__cfg c;
    char err[128];
    int rv = net__cfg_init(&c, cfg, err, sizeof err);
    if (rv != 0) {
        LOG_WARNF("net: connect: %s", err);
        return rv;
    }
    struct sockaddr_storage addr;
    rv = net_addr_resolve(address, 0, &addr, err, sizeof err);
    if (rv != 0) {
        LOG_WARNF("net: connect: %s", err);
        return rv;
    }
    struct net_conn *conn;
    rv = net__conn_connect(loop, &c, &addr, h, OWNER_CONNECT, &conn);
    if (rv != 0) {
        return rv;
    }
    conn->connect_cb = cb;
    conn->connect_data = data;
    if (pending != NULL) {
        /* The handle is the connection itself, typed apart so that it
         * cannot be used as one before the callback hands it over. */
        *pending = (struct net_connecting *)conn;
    }
    return 0;
}

void net_connect_cancel(struct net_connecting *pending)
{
    struct net_conn *c = (struct net_conn *)pending;
    CRAFT_ASSERT(c->owner == OWNER_CONNECT);
    net__conn_close(c, CRAFT_ECANCELED);
}

/*
 * Accessors.
 */

void net_conn_set_data(struct net_conn *conn, void *data)
{
    conn->user_data = data;
}

void *net_conn_data(const struct net_conn *conn)
{
    return conn->user_data;
}

uint64_t net_conn_peer_id(const struct net_conn *conn)
{
    return conn->peer_id;
}

uint32_t net_conn_peer_frame_max(const struct net_conn *conn)
{
    return conn->peer_frame_max;
}

void net_conn_peer_addr(const struct net_conn *conn, char *buf, size_t len)
{
    net_addr_format((const struct sockaddr *)&conn->peer_addr, buf, len);
}

void net_conn_local_addr(const struct net_conn *conn, char *buf, size_t len)
{
    net_addr_format((const struct sockaddr *)&conn->local_addr, buf, len);
}

size_t net_conn_queued_bytes(const struct net_conn *conn)
{
    return conn->queued_bytes;
}

void net_conn_get_stats(const struct net_conn *conn, struct net_conn_stats *out)
{
    *out = conn->stats;
}
