/*
 * A kept-open outgoing connection with reconnect and backoff: craftd's link
 * from one node to each other node.
 *
 *   state        event                        next
 *   CONNECTING   handshake done               OPEN (flush waiting messages)
 *   CONNECTING   attempt failed               BACKOFF (drop waiting messages)
 *   OPEN         connection closed            BACKOFF (delay backoff_min)
 *   BACKOFF      timer fired                  CONNECTING
 *   any          net_peer_close()             CLOSING -> freed
 *
 * Invariants:
 *  1. conn != NULL exactly in CONNECTING and OPEN (and in CLOSING until it
 *     has closed); the backoff timer runs only in BACKOFF.
 *  2. Messages wait in the peer's own queue only in CONNECTING, and
 *     pending_bytes (their framed size) stays <= queue_bytes_max.
 *  3. stats.backoff_ms is 0 after a successful handshake and otherwise the
 *     last delay drawn, within [backoff_min_ms / 2, backoff_max_ms].
 *  4. The nominal delay (delay_ms) restarts from backoff_min_ms only after
 *     a connection stayed open for backoff_max_ms, so a link that flaps
 *     right after each handshake still backs off.
 */
#include <stdlib.h>
#include <string.h>

#include "net/conn.h"
#include "util/assert.h"
#include "util/log.h"
#include "util/rng.h"

enum peer_state { PEER_CONNECTING, PEER_OPEN, PEER_BACKOFF, PEER_CLOSING };

/* A message waiting for the connection being made. */
struct pmsg {
    struct pmsg *next;
    uint16_t type;
    size_t len;
    uint8_t data[];
};

struct net_peer {
    uv_loop_t *loop;
    struct net__cfg cfg;
    struct sockaddr_storage addr;
    char address[NET_ADDR_STR_MAX];
    struct net_handlers h;
    enum peer_state state;
    struct net_conn *conn;
    uv_timer_t timer;
    struct pmsg *head, **tail;
    size_t pending_bytes;
    unsigned delay_ms;  /* nominal delay; doubles per failure */
    uint64_t opened_at; /* uv_now() of the last handshake */
    unsigned fails;     /* failed attempts since the last success */
    struct rng rng;     /* backoff jitter */
    struct net_peer_stats stats;
    int timer_closed;
    void *close_data;
    net_close_cb close_cb;
};

static void peer_drop_pending(struct net_peer *p)
{
    while (p->head != NULL) {
        struct pmsg *m = p->head;
        p->head = m->next;
        p->stats.frames_dropped++;
        p->stats.bytes_dropped += m->len;
        free(m);
    }
    p->tail = &p->head;
    p->pending_bytes = 0;
}

static void peer_maybe_free(struct net_peer *p)
{
    CRAFT_ASSERT(p->state == PEER_CLOSING);
    if (!p->timer_closed || p->conn != NULL) {
        return;
    }
    CRAFT_ASSERT(p->head == NULL);
    if (p->close_cb != NULL) {
        p->close_cb(p->close_data);
    }
    free(p);
}

static void peer_connect(struct net_peer *p);

static void peer_timer_cb(uv_timer_t *timer)
{
    struct net_peer *p = timer->data;
    CRAFT_ASSERT(p->state == PEER_BACKOFF);
    peer_connect(p);
}

/* Wait before the next attempt: the nominal delay doubles from
 * backoff_min_ms up to backoff_max_ms and the actual delay is drawn from
 * its upper half, so that nodes restarted together do not retry in
 * lockstep. */
static void peer_backoff(struct net_peer *p)
{
    CRAFT_ASSERT(p->conn == NULL);
    p->state = PEER_BACKOFF;
    peer_drop_pending(p);
    unsigned lo = p->cfg.c.backoff_min_ms, hi = p->cfg.c.backoff_max_ms;
    if (p->delay_ms == 0) {
        p->delay_ms = lo;
    } else {
        p->delay_ms = p->delay_ms > hi / 2 ? hi : p->delay_ms * 2;
    }
    unsigned half = p->delay_ms / 2;
    unsigned delay =
        half + (unsigned)rng_range(&p->rng, 0, p->delay_ms - half + 1);
    p->stats.backoff_ms = delay;
    uv_timer_start(&p->timer, peer_timer_cb, delay, 0);
    CRAFT_ASSERT(delay <= hi);
}

static void peer_connect(struct net_peer *p)
{
    CRAFT_ASSERT(p->conn == NULL);
    p->state = PEER_CONNECTING;
    struct net_conn *c;
    int rv =
        net__conn_connect(p->loop, &p->cfg, &p->addr, &p->h, OWNER_PEER, &c);
    if (rv != 0) {
        LOG_WARNF("net: cannot connect to %s: %s", p->address,
                  craft_strerror(rv));
        p->stats.connect_fails++;
        p->fails++;
        peer_backoff(p);
        return;
    }
    c->peer = p;
    p->conn = c;
}

void net__peer_conn_opened(struct net_peer *p, struct net_conn *c)
{
    CRAFT_ASSERT(p->conn == c);
    CRAFT_ASSERT(p->state == PEER_CONNECTING);
    p->state = PEER_OPEN;
    p->stats.connects++;
    p->stats.backoff_ms = 0;
    p->opened_at = uv_now(p->loop);
    log_event(LOG_INFO, "peer_connected",
              "peer=%llu addr=%s failed_attempts=%u",
              (unsigned long long)net_conn_peer_id(c), p->address,
              (unsigned)p->fails);
    p->fails = 0;
    /* Waiting messages go first, in order, before anything on_open sends. */
    while (p->head != NULL) {
        struct pmsg *m = p->head;
        p->head = m->next;
        if (net_send(c, m->type, m->data, m->len) != 0) {
            p->stats.frames_dropped++;
            p->stats.bytes_dropped += m->len;
        }
        free(m);
    }
    p->tail = &p->head;
    p->pending_bytes = 0;
    if (p->h.on_open != NULL) {
        p->h.on_open(p->h.data, c);
    }
}

void net__peer_conn_closed(struct net_peer *p, struct net_conn *c, int was_open,
                           int status)
{
    CRAFT_ASSERT(p->conn == c);
    p->conn = NULL;
    if (p->state == PEER_CLOSING) {
        peer_maybe_free(p);
        return;
    }
    if (was_open) {
        char q[96];
        log_event(LOG_INFO, "peer_disconnected", "addr=%s error=%s", p->address,
                  log_quote(craft_strerror(status), q, sizeof q));
        /* Start over from the shortest delay only if the connection was
         * good for a while: one that the other end drops right after the
         * handshake must not be retried 20 times a second. */
        if (uv_now(p->loop) - p->opened_at >= p->cfg.c.backoff_max_ms) {
            p->delay_ms = 0;
        }
    } else {
        p->stats.connect_fails++;
        /* The first failure of a series is worth a line; the retries that
         * follow while a peer is down are not. */
        if (p->fails++ == 0) {
            char q[96];
            log_event(LOG_INFO, "peer_connect_failed",
                      "addr=%s error=%s -- retrying", p->address,
                      log_quote(craft_strerror(status), q, sizeof q));
        }
    }
    peer_backoff(p);
}

void net__peer_frames_lost(struct net_peer *p, uint32_t n_frames,
                           size_t payload_bytes)
{
    p->stats.frames_dropped += n_frames;
    p->stats.bytes_dropped += payload_bytes;
}

int net_peer_new(uv_loop_t *loop, const struct net_config *cfg,
                 const char *address, const struct net_handlers *h,
                 struct net_peer **out)
{
    CRAFT_ASSERT(loop != NULL);
    CRAFT_ASSERT(out != NULL);
    char err[128];
    struct net__cfg c;
    int rv = net__cfg_init(&c, cfg, err, sizeof err);
    if (rv == 0) {
        struct sockaddr_storage addr;
        rv = net_addr_resolve(address, 0, &addr, err, sizeof err);
        if (rv == 0) {
            struct net_peer *p = calloc(1, sizeof *p);
            if (p == NULL) {
                return CRAFT_ENOMEM;
            }
            p->loop = loop;
            p->cfg = c;
            p->addr = addr;
            snprintf(p->address, sizeof p->address, "%s", address);
            if (h != NULL) {
                p->h = *h;
            }
            p->tail = &p->head;
            rng_init(&p->rng, uv_hrtime() ^ (uint64_t)(uintptr_t)p);
            CRAFT_ASSERT(uv_timer_init(loop, &p->timer) == 0);
            p->timer.data = p;
            peer_connect(p);
            *out = p;
            return 0;
        }
    }
    LOG_WARNF("net: peer: %s", err);
    return rv;
}

/* Queue a message in the peer while its connection is being made. */
static int peer_enqueue(struct net_peer *p, uint16_t type,
                        const struct net_iovec *iov, unsigned n_iov,
                        size_t total)
{
    if (total > p->cfg.c.frame_max) {
        return CRAFT_ETOOBIG;
    }
    size_t size = NET_FRAME_HDR_SIZE + total;
    if (size > p->cfg.c.queue_bytes_max - p->pending_bytes) {
        return CRAFT_ELIMIT;
    }
    struct pmsg *m = malloc(sizeof *m + total);
    if (m == NULL) {
        return CRAFT_ENOMEM;
    }
    m->next = NULL;
    m->type = type;
    m->len = total;
    size_t off = 0;
    for (unsigned i = 0; i < n_iov; i++) {
        if (iov[i].len > 0) {
            memcpy(m->data + off, iov[i].base, iov[i].len);
            off += iov[i].len;
        }
    }
    *p->tail = m;
    p->tail = &m->next;
    p->pending_bytes += size;
    return 0;
}

int net_peer_sendv(struct net_peer *p, uint16_t type,
                   const struct net_iovec *iov, unsigned n_iov)
{
    CRAFT_ASSERT(p != NULL);
    CRAFT_ASSERT(iov != NULL || n_iov == 0);
    size_t total = 0;
    for (unsigned i = 0; i < n_iov; i++) {
        total +=
            iov[i].len < NET_FRAME_MAX_LIMIT ? iov[i].len : NET_FRAME_MAX_LIMIT;
    }
    int rv = CRAFT_ECLOSED;
    switch (p->state) {
    case PEER_OPEN:
        rv = net_sendv(p->conn, type, iov, n_iov);
        break;
    case PEER_CONNECTING:
        rv = peer_enqueue(p, type, iov, n_iov, total);
        break;
    case PEER_BACKOFF:
        rv = CRAFT_ENOCONN;
        break;
    case PEER_CLOSING:
        rv = CRAFT_ECLOSED;
        break;
    }
    if (rv != 0) {
        p->stats.frames_dropped++;
        p->stats.bytes_dropped += total;
        if (rv == CRAFT_ELIMIT && p->stats.frames_dropped % 1000 == 1) {
            LOG_WARNF("net: send queue to %s full, dropping (%llu dropped)",
                      p->address, (unsigned long long)p->stats.frames_dropped);
        }
        return rv;
    }
    p->stats.frames_sent++;
    p->stats.bytes_sent += total;
    return 0;
}

int net_peer_send(struct net_peer *p, uint16_t type, const void *payload,
                  size_t len)
{
    struct net_iovec iov = {payload, len};
    return net_peer_sendv(p, type, &iov, 1);
}

/* OPEN with a connection that has not begun closing (it may be closing,
 * its close callback not yet run, when the peer has not heard yet). */
static int peer_usable(const struct net_peer *p)
{
    return p->state == PEER_OPEN && p->conn->state == CONN_OPEN;
}

struct net_conn *net_peer_conn(const struct net_peer *p)
{
    return peer_usable(p) ? p->conn : NULL;
}

void net_peer_get_stats(const struct net_peer *p, struct net_peer_stats *out)
{
    *out = p->stats;
    out->connected = peer_usable(p);
}

static void peer_timer_closed_cb(uv_handle_t *handle)
{
    struct net_peer *p = handle->data;
    p->timer_closed = 1;
    peer_maybe_free(p);
}

void net_peer_close(struct net_peer *p, void *data, net_close_cb cb)
{
    CRAFT_ASSERT(p != NULL);
    CRAFT_ASSERT(p->state != PEER_CLOSING);
    int was_open = p->state == PEER_OPEN;
    p->state = PEER_CLOSING;
    p->close_data = data;
    p->close_cb = cb;
    peer_drop_pending(p);
    uv_close((uv_handle_t *)&p->timer, peer_timer_closed_cb);
    if (p->conn != NULL) {
        net__conn_close(p->conn, was_open ? 0 : CRAFT_ECANCELED);
    }
}
