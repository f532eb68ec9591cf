/*
 * Unit tests for the libuv transport of src/net over loopback: round trips,
 * concurrency, limits, malformed input from a raw socket, timeouts,
 * disconnects, reconnect with backoff, bounded queues and
 * bind-before-connect.  Every server binds port 0; nothing sleeps: the loop
 * runs until a condition holds, with a deadline that fails the test.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "craft/common.h"
#include "net/frame.h"
#include "net/net.h"
#include "util/buf.h"
#include "util/encoding.h"
#include "util/log.h"
#include "util/rng.h"

/* Generous: loaded CI machines under ASan; a passing run takes milliseconds
 * per condition. */
#define DEADLINE_MS 10000

enum {
    T_ECHO = 1,       /* reply with the request payload */
    T_ECHO_LATER = 2, /* reply from a timer, a few ms later */
    T_HOLD = 3,       /* keep the request; the test replies */
    T_FAIL = 4        /* reply CRAFT_ENOENT with a message */
};

/* Allocated per test, so that a test failing with handles still open
 * abandons its loop instead of corrupting the next test's. */
static uv_loop_t *lp;
static uv_timer_t tick;

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until cond holds; fail the test after DEADLINE_MS. */
#define RUN_UNTIL(cond)                                                        \
    do {                                                                       \
        uint64_t deadline_ = uv_now(lp) + DEADLINE_MS;                         \
        while (!(cond)) {                                                      \
            if (uv_now(lp) > deadline_) {                                      \
                fail_msg("timed out waiting for %s", #cond);                   \
            }                                                                  \
            uv_run(lp, UV_RUN_ONCE);                                           \
        }                                                                      \
    } while (0)

static int setup(void **state)
{
    (void)state;
    log_set_level(getenv("CRAFT_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
    lp = malloc(sizeof *lp);
    assert_non_null(lp);
    assert_int_equal(uv_loop_init(lp), 0);
    /* Wakes uv_run(UV_RUN_ONCE) so that RUN_UNTIL can check its deadline. */
    uv_timer_init(lp, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    return 0;
}

static void count_handle(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&tick && !uv_is_closing(h)) {
        ++*(int *)arg;
    }
}

static int open_handles(void)
{
    int n = 0;
    uv_walk(lp, count_handle, &n);
    return n;
}

/* Everything a test opened must be closed by the time it ends, and close
 * by itself.  A test that failed half-way may leave handles open: then the
 * loop is abandoned (and reported) rather than run forever. */
static int teardown(void **state)
{
    (void)state;
    if (open_handles() > 0) {
        print_error("teardown: %d handles left open\n", open_handles());
        return -1;
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(lp, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(lp), 0);
    free(lp);
    return 0;
}

static struct net_config config(void)
{
    struct net_config cfg;
    net_config_init(&cfg);
    cfg.cluster_id = 42;
    return cfg;
}

/*
 * A test server: echoes, replies later, holds requests, counts events.
 */

#define HELD_MAX 64

struct srv {
    struct net_server *s;
    uint16_t port;
    int opened, closed, close_status, messages;
    uint64_t last_peer_id;
    struct net_conn *conn; /* last opened */
    struct buf last_msg;
    uint16_t last_type;
    struct net_request *held[HELD_MAX];
    int n_held;
    int server_closed;
};

struct later {
    uv_timer_t timer;
    struct net_request *req;
};

static void later_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void later_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    net_reply(l->req, 0, l->req->payload, l->req->len);
    uv_close((uv_handle_t *)&l->timer, later_closed_cb);
}

static void srv_on_open(void *data, struct net_conn *conn)
{
    struct srv *v = data;
    v->opened++;
    v->conn = conn;
    v->last_peer_id = net_conn_peer_id(conn);
}

static void srv_on_close(void *data, struct net_conn *conn, int status)
{
    struct srv *v = data;
    v->closed++;
    v->close_status = status;
    if (v->conn == conn) {
        v->conn = NULL;
    }
}

static void srv_on_message(void *data, struct net_conn *conn, uint16_t type,
                           const uint8_t *payload, size_t len)
{
    (void)conn;
    struct srv *v = data;
    v->messages++;
    v->last_type = type;
    buf_reset(&v->last_msg);
    assert_int_equal(buf_append(&v->last_msg, payload, len), 0);
}

static void srv_on_request(void *data, struct net_conn *conn,
                           struct net_request *req)
{
    (void)conn;
    struct srv *v = data;
    switch (req->type) {
    case T_ECHO:
        net_reply(req, 0, req->payload, req->len);
        break;
    case T_ECHO_LATER: {
        struct later *l = malloc(sizeof *l);
        assert_non_null(l);
        l->req = req;
        uv_timer_init(lp, &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, later_cb, (uint64_t)(req->len % 5), 0);
        break;
    }
    case T_HOLD:
        assert_true(v->n_held < HELD_MAX);
        v->held[v->n_held++] = req;
        break;
    case T_FAIL:
        net_reply(req, CRAFT_ENOENT, "no such thing", 13);
        break;
    default:
        fail_msg("unexpected request type %u", req->type);
    }
}

static void srv_start(struct srv *v, const struct net_config *cfg,
                      const char *addr)
{
    memset(v, 0, sizeof *v);
    buf_init(&v->last_msg);
    struct net_handlers h = {.data = v,
                             .on_open = srv_on_open,
                             .on_close = srv_on_close,
                             .on_message = srv_on_message,
                             .on_request = srv_on_request};
    char err[128] = "";
    int rv = net_server_new(lp, cfg, addr, &h, &v->s, err, sizeof err);
    if (rv != 0) {
        fail_msg("net_server_new: %s", err);
    }
    v->port = net_server_port(v->s);
    assert_true(v->port > 0);
}

static void srv_closed_cb(void *data)
{
    struct srv *v = data;
    v->server_closed++;
}

static void srv_stop(struct srv *v)
{
    net_server_close(v->s, v, srv_closed_cb);
    RUN_UNTIL(v->server_closed == 1);
    /* Held requests are still owned by the test: answering them after the
     * connection closed reports CRAFT_ECLOSED and frees them. */
    for (int i = 0; i < v->n_held; i++) {
        assert_int_equal(net_reply(v->held[i], 0, NULL, 0), CRAFT_ECLOSED);
    }
    v->n_held = 0;
    buf_close(&v->last_msg);
}

static void addr_of(char *buf, size_t len, uint16_t port)
{
    snprintf(buf, len, "127.0.0.1:%u", (unsigned)port);
}

/*
 * A client: connect, with counters for its callbacks.
 */

struct cli {
    struct net_conn *conn;
    int connect_done, connect_status;
    int closed, close_status;
};

static void cli_connect_cb(void *data, struct net_conn *conn, int status)
{
    struct cli *c = data;
    c->connect_done++;
    c->connect_status = status;
    c->conn = conn;
    assert_true((status == 0) == (conn != NULL));
}

static void cli_on_close(void *data, struct net_conn *conn, int status)
{
    struct cli *c = data;
    assert_ptr_equal(conn, c->conn);
    c->closed++;
    c->close_status = status;
    c->conn = NULL;
}

static int cli_connect_cfg(struct cli *c, const struct net_config *cfg,
                           uint16_t port)
{
    memset(c, 0, sizeof *c);
    char addr[64];
    addr_of(addr, sizeof addr, port);
    struct net_handlers h = {.data = c, .on_close = cli_on_close};
    assert_int_equal(net_connect(lp, cfg, addr, &h, NULL, c, cli_connect_cb),
                     0);
    RUN_UNTIL(c->connect_done);
    assert_int_equal(c->connect_done, 1);
    return c->connect_status;
}

static void cli_connect(struct cli *c, uint16_t port)
{
    struct net_config cfg = config();
    cfg.node_id = 7;
    assert_int_equal(cli_connect_cfg(c, &cfg, port), 0);
}

static void cli_close(struct cli *c)
{
    if (c->conn != NULL) {
        net_conn_close(c->conn);
        RUN_UNTIL(c->closed == 1);
        assert_int_equal(c->close_status, 0);
    }
}

/* One call's outcome. */
struct result {
    int fired;
    int status;
    struct buf payload;
};

static void result_cb(void *data, int status, const uint8_t *payload,
                      size_t len)
{
    struct result *r = data;
    r->fired++;
    r->status = status;
    buf_init(&r->payload);
    if (len > 0) {
        assert_int_equal(buf_append(&r->payload, payload, len), 0);
    }
}

/*
 * Tests.
 */

static void round_trip(void **state)
{
    (void)state;
    struct net_config cfg = config();
    cfg.node_id = 1;
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);
    assert_int_equal(net_conn_peer_id(c.conn), 1);
    RUN_UNTIL(v.opened == 1);
    assert_int_equal(v.last_peer_id, 7);
    assert_int_equal(net_conn_peer_frame_max(c.conn), NET_FRAME_MAX_DEFAULT);

    struct result r = {0};
    assert_int_equal(net_call(c.conn, T_ECHO, "hello", 5, 1000, &r, result_cb),
                     0);
    assert_int_equal(r.fired, 0); /* never from inside the call */
    RUN_UNTIL(r.fired);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.payload.len, 5);
    assert_memory_equal(r.payload.data, "hello", 5);
    buf_close(&r.payload);

    /* An empty payload, and an error status with a message. */
    struct result e = {0}, f = {0};
    assert_int_equal(net_call(c.conn, T_ECHO, NULL, 0, 1000, &e, result_cb), 0);
    assert_int_equal(net_call(c.conn, T_FAIL, "x", 1, 1000, &f, result_cb), 0);
    RUN_UNTIL(e.fired && f.fired);
    assert_int_equal(e.status, 0);
    assert_int_equal(e.payload.len, 0);
    assert_int_equal(f.status, CRAFT_ENOENT);
    assert_memory_equal(f.payload.data, "no such thing", 13);
    buf_close(&e.payload);
    buf_close(&f.payload);

    /* One-way messages, both directions' close accounting. */
    assert_int_equal(net_send(c.conn, 99, "ping", 4), 0);
    RUN_UNTIL(v.messages == 1);
    assert_int_equal(v.last_type, 99);
    assert_memory_equal(v.last_msg.data, "ping", 4);

    /* HELLO + 3 requests + 1 message out; HELLO + 3 responses in. */
    struct net_conn_stats cs, ss;
    net_conn_get_stats(c.conn, &cs);
    net_conn_get_stats(v.conn, &ss);
    assert_int_equal(cs.frames_out, 5);
    assert_int_equal(cs.frames_in, 4);
    assert_int_equal(ss.frames_in, cs.frames_out);
    assert_int_equal(ss.bytes_in, cs.bytes_out);
    assert_int_equal(cs.bytes_in, ss.bytes_out);
    assert_int_equal(cs.bytes_out, 5 * NET_FRAME_HDR_SIZE + 24 + 5 + 0 + 1 + 4);

    cli_close(&c);
    RUN_UNTIL(v.closed == 1);
    assert_int_equal(v.close_status, CRAFT_ECLOSED); /* EOF */
    srv_stop(&v);
}

/* Messages sent just before a close still go out (the close flushes). */
static void last_messages_before_close(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(net_send(c.conn, 8, &i, sizeof i), 0);
    }
    net_conn_close(c.conn);
    RUN_UNTIL(v.closed == 1);
    assert_int_equal(v.messages, 100);
    int last;
    memcpy(&last, v.last_msg.data, sizeof last);
    assert_int_equal(last, 99);
    RUN_UNTIL(c.closed == 1);
    srv_stop(&v);
}

/* Requests are answered by the server too (symmetry): the server calls the
 * client over the connection the client opened. */
static void client_answers_server(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v, w;
    srv_start(&v, &cfg, "127.0.0.1:0");
    /* A client that serves requests: use a second srv struct's handlers. */
    memset(&w, 0, sizeof w);
    buf_init(&w.last_msg);
    struct net_handlers h = {.data = &w, .on_request = srv_on_request};
    struct cli c = {0};
    char addr[64];
    addr_of(addr, sizeof addr, v.port);
    assert_int_equal(net_connect(lp, &cfg, addr, &h, NULL, &c, cli_connect_cb),
                     0);
    RUN_UNTIL(c.connect_done && v.opened);
    struct result r = {0};
    assert_int_equal(net_call(v.conn, T_ECHO, "back", 4, 1000, &r, result_cb),
                     0);
    RUN_UNTIL(r.fired);
    assert_int_equal(r.status, 0);
    assert_memory_equal(r.payload.data, "back", 4);
    buf_close(&r.payload);
    net_conn_close(c.conn);
    RUN_UNTIL(v.closed == 1);
    srv_stop(&v);
    buf_close(&w.last_msg);
}

/* Many pipelined calls of random sizes, answered out of order, each
 * callback exactly once with its own payload. */
#define N_CALLS 2000

struct many {
    int fired[N_CALLS];
    int bad;
    int done;
};

struct many_arg {
    struct many *m;
    uint32_t i;
    uint32_t len;
};

static void many_cb(void *data, int status, const uint8_t *payload, size_t len)
{
    struct many_arg *a = data;
    struct many *m = a->m;
    m->fired[a->i]++;
    m->done++;
    if (status != 0 || len != a->len ||
        (len >= 4 && get_u32(payload) != a->i)) {
        m->bad++;
    }
    for (size_t k = 4; k < len; k++) {
        if (payload[k] != (uint8_t)(a->i + k)) {
            m->bad++;
            break;
        }
    }
}

static void many_concurrent_calls(void **state)
{
    (void)state;
    uint64_t seed = uv_hrtime();
    const char *env = getenv("CRAFT_SEED");
    if (env != NULL) {
        seed = strtoull(env, NULL, 10);
    }
    printf("many_concurrent_calls: seed %llu (replay with CRAFT_SEED)\n",
           (unsigned long long)seed);
    struct rng rng;
    rng_init(&rng, seed);

    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);

    static struct many m;
    static struct many_arg args[N_CALLS];
    memset(&m, 0, sizeof m);
    uint8_t *p = malloc(70000);
    assert_non_null(p);
    for (uint32_t i = 0; i < N_CALLS; i++) {
        uint32_t len =
            (uint32_t)(rng_chance(&rng, 20) ? rng_range(&rng, 4, 70000)
                                            : rng_range(&rng, 4, 300));
        put_u32(p, i);
        for (uint32_t k = 4; k < len; k++) {
            p[k] = (uint8_t)(i + k);
        }
        args[i] = (struct many_arg){&m, i, len};
        uint16_t type = rng_chance(&rng, 500) ? T_ECHO : T_ECHO_LATER;
        assert_int_equal(
            net_call(c.conn, type, p, len, DEADLINE_MS, &args[i], many_cb), 0);
    }
    free(p);
    RUN_UNTIL(m.done == N_CALLS);
    assert_int_equal(m.bad, 0);
    for (int i = 0; i < N_CALLS; i++) {
        assert_int_equal(m.fired[i], 1);
    }
    cli_close(&c);
    srv_stop(&v);
}

/* Frames exactly at the advertised max pass; one byte more is refused
 * locally (ETOOBIG, no callback) because the server advertised its max. */
static void large_frames_at_limit(void **state)
{
    (void)state;
    const uint32_t max = 4u << 20;
    struct net_config cfg = config();
    cfg.frame_max = max;
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    assert_int_equal(cli_connect_cfg(&c, &cfg, v.port), 0);
    assert_int_equal(net_conn_peer_frame_max(c.conn), max);

    uint8_t *p = malloc(max + 1);
    assert_non_null(p);
    for (uint32_t i = 0; i < max + 1; i++) {
        p[i] = (uint8_t)(i * 31 + 7);
    }
    struct result r = {0}, never = {0};
    assert_int_equal(net_call(c.conn, T_ECHO, p, max, 5000, &r, result_cb), 0);
    assert_int_equal(
        net_call(c.conn, T_ECHO, p, max + 1, 5000, &never, result_cb),
        CRAFT_ETOOBIG);
    assert_int_equal(net_send(c.conn, 5, p, max + 1), CRAFT_ETOOBIG);
    /* In pieces, too. */
    struct net_iovec iov[3] = {{p, 10}, {p + 10, max - 20}, {p + max - 10, 10}};
    assert_int_equal(net_sendv(c.conn, 6, iov, 3), 0);
    RUN_UNTIL(r.fired && v.messages == 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.payload.len, max);
    assert_memory_equal(r.payload.data, p, max);
    assert_int_equal(v.last_msg.len, max);
    assert_memory_equal(v.last_msg.data, p, max);
    assert_int_equal(never.fired, 0);
    buf_close(&r.payload);
    free(p);
    cli_close(&c);
    srv_stop(&v);
}

/* A reply bigger than the caller accepts is not sent; the caller learns
 * CRAFT_ETOOBIG at once instead of waiting for its timeout. */
static void reply_too_big(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct net_config small = config();
    small.frame_max = 64 * 1024;
    struct cli c;
    assert_int_equal(cli_connect_cfg(&c, &small, v.port), 0);
    RUN_UNTIL(v.conn != NULL);
    assert_int_equal(net_conn_peer_frame_max(v.conn), 64 * 1024);
    static uint8_t big[100 * 1024];
    struct result r = {0};
    assert_int_equal(
        net_call(c.conn, T_HOLD, big, sizeof big, DEADLINE_MS, &r, result_cb),
        0);
    RUN_UNTIL(v.n_held == 1);
    assert_int_equal(net_reply(v.held[0], 0, big, sizeof big), CRAFT_ETOOBIG);
    v.n_held = 0;
    RUN_UNTIL(r.fired);
    assert_int_equal(r.status, CRAFT_ETOOBIG);
    assert_int_equal(r.payload.len, 0);
    cli_close(&c);
    srv_stop(&v);
}

/* Requests a handler holds are bounded in bytes: beyond queue_bytes_max
 * they are refused with CRAFT_EBUSY, and accepted again once answered. */
static void held_requests_bounded(void **state)
{
    (void)state;
    struct net_config cfg = config();
    cfg.queue_bytes_max = 64 * 1024;
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);
    static uint8_t p[10 * 1024];
    struct result r[10];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(net_call(c.conn, T_HOLD, p, sizeof p, DEADLINE_MS,
                                  &r[i], result_cb),
                         0);
    }
    /* 6 x 10 KiB fit in 64 KiB; the other 4 are refused at once. */
    RUN_UNTIL(r[6].fired && r[7].fired && r[8].fired && r[9].fired);
    assert_int_equal(v.n_held, 6);
    for (int i = 6; i < 10; i++) {
        assert_int_equal(r[i].status, CRAFT_EBUSY);
    }
    struct net_conn_stats ss;
    net_conn_get_stats(v.conn, &ss);
    assert_int_equal(ss.requests_refused, 4);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].fired, 0);
        assert_int_equal(net_reply(v.held[i], 0, "ok", 2), 0);
    }
    v.n_held = 0;
    RUN_UNTIL(r[0].fired && r[5].fired);
    struct result again = {0};
    assert_int_equal(
        net_call(c.conn, T_ECHO, p, sizeof p, DEADLINE_MS, &again, result_cb),
        0);
    RUN_UNTIL(again.fired);
    assert_int_equal(again.status, 0);
    for (int i = 0; i < 10; i++) {
        buf_close(&r[i].payload);
    }
    buf_close(&again.payload);
    cli_close(&c);
    srv_stop(&v);
}

/*
 * A raw TCP client, to send what a craft endpoint never would.
 */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int connected, eof, closed;
    struct buf in;
};

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    assert_int_equal(status, 0);
    r->connected = 1;
}

static void raw_alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    struct raw *r = h->data;
    assert_int_equal(buf_reserve(&r->in, n), 0);
    *b = uv_buf_init((char *)r->in.data + r->in.len, (unsigned)n);
}

static void raw_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct raw *r = s->data;
    if (n < 0) {
        r->eof = 1;
        uv_read_stop(s);
        return;
    }
    r->in.len += (size_t)n;
}

static void raw_connect(struct raw *r, uint16_t port)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->in);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(lp, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp,
                                    (const struct sockaddr *)&sa,
                                    raw_connect_cb),
                     0);
    RUN_UNTIL(r->connected);
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb, raw_read_cb);
}

static void raw_write(struct raw *r, const void *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    assert_int_equal(uv_try_write((uv_stream_t *)&r->tcp, &b, 1), (int)n);
}

static void raw_closed_cb(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = 1;
}

static void raw_close(struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed_cb);
    RUN_UNTIL(r->closed);
    buf_close(&r->in);
}

/* A valid HELLO frame for cluster 42 (node 9, frame max 1 MiB). */
static size_t hello_frame(uint8_t *out, uint64_t cluster)
{
    uint8_t p[24];
    put_u16(p, 1);
    put_u16(p + 2, 0);
    put_u32(p + 4, 1u << 20);
    put_u64(p + 8, 9);
    put_u64(p + 16, cluster);
    struct net_frame_hdr h = {.kind = NET_KIND_HELLO};
    net_frame_encode(out, &h, p, sizeof p);
    memcpy(out + NET_FRAME_HDR_SIZE, p, sizeof p);
    return NET_FRAME_HDR_SIZE + sizeof p;
}

static size_t message_frame(uint8_t *out, const void *payload, size_t len)
{
    struct net_frame_hdr h = {.kind = NET_KIND_MESSAGE, .type = 3};
    net_frame_encode(out, &h, payload, len);
    memcpy(out + NET_FRAME_HDR_SIZE, payload, len);
    return NET_FRAME_HDR_SIZE + len;
}

enum bad_kind { BAD_GARBAGE, BAD_VERSION, BAD_CRC, BAD_OVERSIZE, BAD_KIND };

/* Open a connection with a valid HELLO, then send something bad: the server
 * must close the connection with the matching status and carry on. */
static void bad_input_case(enum bad_kind kind, int want_status)
{
    struct net_config cfg = config();
    cfg.frame_max = 1024;
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct raw r;
    raw_connect(&r, v.port);
    uint8_t f[2048];
    size_t n = hello_frame(f, 42);
    raw_write(&r, f, n);
    RUN_UNTIL(v.opened == 1);

    uint8_t payload[100];
    memset(payload, 'p', sizeof payload);
    n = message_frame(f, payload, sizeof payload);
    switch (kind) {
    case BAD_GARBAGE:
        memcpy(f, "GET / HTTP/1.0\r\n\r\n", 18);
        n = 18;
        break;
    case BAD_VERSION:
        f[4] = 9;
        break;
    case BAD_CRC:
        f[NET_FRAME_HDR_SIZE + 50] ^= 1;
        break;
    case BAD_OVERSIZE: {
        static const uint8_t big[1025];
        n = message_frame(f, big, sizeof big);
        break;
    }
    case BAD_KIND:
        f[5] = 77;
        put_u32(f + 28, 0); /* any header edit breaks its checksum first */
        break;
    }
    raw_write(&r, f, n);
    RUN_UNTIL(v.closed == 1);
    assert_int_equal(v.close_status, want_status);
    assert_int_equal(v.messages, 0);
    RUN_UNTIL(r.eof); /* the server dropped the connection */
    /* The server still works. */
    struct cli c;
    cli_connect(&c, v.port);
    cli_close(&c);
    raw_close(&r);
    srv_stop(&v);
}

static void garbage_bytes(void **state)
{
    (void)state;
    bad_input_case(BAD_GARBAGE, CRAFT_EPROTO);
}

static void wrong_version(void **state)
{
    (void)state;
    bad_input_case(BAD_VERSION, CRAFT_EVERSION);
}

static void bad_crc(void **state)
{
    (void)state;
    bad_input_case(BAD_CRC, CRAFT_ECORRUPT);
}

static void oversize_frame(void **state)
{
    (void)state;
    bad_input_case(BAD_OVERSIZE, CRAFT_ETOOBIG);
}

static void corrupt_header(void **state)
{
    (void)state;
    bad_input_case(BAD_KIND, CRAFT_ECORRUPT);
}

/* Garbage before any HELLO: closed, and never surfaced as a connection. */
static void garbage_before_hello(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct raw r;
    raw_connect(&r, v.port);
    raw_write(&r, "\x00\x01\x02garbage", 10);
    RUN_UNTIL(r.eof);
    assert_int_equal(v.opened, 0);
    assert_int_equal(v.closed, 0);
    /* The server's HELLO came first: it is a valid frame. */
    struct net_frame_hdr h;
    assert_int_equal(net_frame_decode(r.in.data, r.in.len, 1024, &h, NULL),
                     NET_FRAME_OK);
    assert_int_equal(h.kind, NET_KIND_HELLO);
    raw_close(&r);
    srv_stop(&v);
}

/* A frame cut off by the peer disconnecting is never delivered; a frame
 * split across writes is. */
static void disconnect_mid_frame(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct raw r;
    raw_connect(&r, v.port);
    uint8_t f[512];
    size_t n = hello_frame(f, 42);
    raw_write(&r, f, n);
    uint8_t payload[300];
    memset(payload, 'z', sizeof payload);
    n = message_frame(f, payload, sizeof payload);
    /* Byte by byte through the header, then the payload in two parts. */
    for (size_t i = 0; i < NET_FRAME_HDR_SIZE; i++) {
        raw_write(&r, f + i, 1);
        uv_run(lp, UV_RUN_NOWAIT);
    }
    raw_write(&r, f + NET_FRAME_HDR_SIZE, 100);
    uv_run(lp, UV_RUN_NOWAIT);
    raw_write(&r, f + NET_FRAME_HDR_SIZE + 100, n - NET_FRAME_HDR_SIZE - 100);
    RUN_UNTIL(v.messages == 1);
    assert_int_equal(v.last_msg.len, 300);
    /* Now half a frame and a close. */
    raw_write(&r, f, n / 2);
    raw_close(&r);
    RUN_UNTIL(v.closed == 1);
    assert_int_equal(v.close_status, CRAFT_ECLOSED);
    assert_int_equal(v.messages, 1);
    srv_stop(&v);
}

/* A call times out; the late answer is ignored; the connection lives on. */
static void call_timeout(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);
    struct result slow = {0}, quick = {0};
    uint64_t t0 = uv_now(lp);
    assert_int_equal(net_call(c.conn, T_HOLD, "a", 1, 50, &slow, result_cb), 0);
    RUN_UNTIL(slow.fired);
    assert_int_equal(slow.status, CRAFT_ETIMEDOUT);
    struct net_conn_stats cs;
    net_conn_get_stats(c.conn, &cs);
    assert_int_equal(cs.calls_timed_out, 1);
    assert_true(uv_now(lp) - t0 >= 50);
    /* The late reply reaches the client and is dropped there. */
    assert_int_equal(v.n_held, 1);
    assert_int_equal(net_reply(v.held[0], 0, "late", 4), 0);
    v.n_held = 0;
    assert_int_equal(net_call(c.conn, T_ECHO, "b", 1, 1000, &quick, result_cb),
                     0);
    RUN_UNTIL(quick.fired);
    assert_int_equal(quick.status, 0);
    assert_int_equal(slow.fired, 1);
    buf_close(&quick.payload);
    cli_close(&c);
    srv_stop(&v);
}

/* Pending calls end with CRAFT_ECLOSED, once, when the server goes away;
 * the server's held requests can still be answered (and freed). */
static void calls_fail_on_disconnect(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);
    struct result r[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(net_call(c.conn, T_HOLD, "q", 1, i == 0 ? 0 : 5000,
                                  &r[i], result_cb),
                         0);
    }
    RUN_UNTIL(v.n_held == 5);
    srv_stop(&v); /* answers the held requests with ECLOSED */
    RUN_UNTIL(c.closed == 1);
    assert_int_equal(c.close_status, CRAFT_ECLOSED);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_int_equal(r[i].status, CRAFT_ECLOSED);
    }
}

/* A local close fails calls too, and calls after it are refused. */
static void calls_fail_on_local_close(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c;
    cli_connect(&c, v.port);
    struct result r = {0}, never = {0};
    assert_int_equal(net_call(c.conn, T_HOLD, "q", 1, 0, &r, result_cb), 0);
    RUN_UNTIL(v.n_held == 1);
    struct net_conn *conn = c.conn;
    net_conn_close(conn);
    net_conn_close(conn);         /* idempotent */
    assert_int_equal(r.fired, 0); /* deferred, not re-entered */
    assert_int_equal(net_call(conn, T_ECHO, "x", 1, 100, &never, result_cb),
                     CRAFT_ECLOSED);
    assert_int_equal(net_send(conn, 1, "x", 1), CRAFT_ECLOSED);
    RUN_UNTIL(c.closed == 1);
    assert_int_equal(r.fired, 1);
    assert_int_equal(r.status, CRAFT_ECLOSED);
    assert_int_equal(never.fired, 0);
    RUN_UNTIL(v.closed == 1);
    /* The server side's request outlives its connection. */
    assert_null(net_request_conn(v.held[0]));
    srv_stop(&v);
}

static void cluster_mismatch(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct net_config other = config();
    other.cluster_id = 43;
    struct cli c;
    assert_int_equal(cli_connect_cfg(&c, &other, v.port), CRAFT_EMISMATCH);
    assert_null(c.conn);
    assert_int_equal(v.opened, 0);
    srv_stop(&v);
}

static void connect_refused_and_cancel(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    uint16_t port = v.port;
    srv_stop(&v);
    struct cli c;
    assert_int_equal(cli_connect_cfg(&c, &cfg, port), CRAFT_ECONNREFUSED);

    /* A cancel: the callback still fires exactly once, later. */
    memset(&c, 0, sizeof c);
    struct net_connecting *pending = NULL;
    char addr[64];
    addr_of(addr, sizeof addr, port);
    assert_int_equal(
        net_connect(lp, &cfg, addr, NULL, &pending, &c, cli_connect_cb), 0);
    net_connect_cancel(pending);
    assert_int_equal(c.connect_done, 0);
    RUN_UNTIL(c.connect_done);
    assert_int_equal(c.connect_status, CRAFT_ECANCELED);

    /* Bad addresses are refused with no callback. */
    memset(&c, 0, sizeof c);
    assert_int_equal(
        net_connect(lp, &cfg, "nonsense", NULL, NULL, &c, cli_connect_cb),
        CRAFT_EINVAL);
    cfg.bind_host = "not-an-ip";
    assert_int_equal(
        net_connect(lp, &cfg, addr, NULL, NULL, &c, cli_connect_cb),
        CRAFT_EINVAL);
    assert_int_equal(c.connect_done, 0);
}

static void flag_cb(void *data)
{
    *(int *)data = 1;
}

/* Cluster secrets: equal ones connect; different or one-sided ones are
 * refused with CRAFT_EAUTH and the server never sees a connection. */
static void auth_with_cluster_secret(void **state)
{
    (void)state;
    struct net_config cfg = config();
    cfg.node_id = 1;
    cfg.secret = "correct horse battery staple";
    cfg.secret_len = strlen(cfg.secret);
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");

    struct net_config good = config();
    good.node_id = 2;
    good.secret = "correct horse battery staple";
    good.secret_len = strlen(good.secret);
    struct cli c;
    assert_int_equal(cli_connect_cfg(&c, &good, v.port), 0);
    assert_int_equal(net_conn_peer_id(c.conn), 1);
    RUN_UNTIL(v.opened == 1);
    assert_int_equal(v.last_peer_id, 2);
    struct result r = {0};
    assert_int_equal(net_call(c.conn, T_ECHO, "hi", 2, 1000, &r, result_cb), 0);
    RUN_UNTIL(r.fired);
    assert_int_equal(r.status, 0);
    buf_close(&r.payload);
    cli_close(&c);

    struct net_config bad = good;
    bad.secret = "correct horse battery stapler";
    bad.secret_len = strlen(bad.secret);
    assert_int_equal(cli_connect_cfg(&c, &bad, v.port), CRAFT_EAUTH);
    struct net_config none = config();
    assert_int_equal(cli_connect_cfg(&c, &none, v.port), CRAFT_EAUTH);
    assert_int_equal(v.opened, 1);
    srv_stop(&v);

    /* The other way round: a server without a secret refuses a client
     * that requires one. */
    struct net_config open_cfg = config();
    srv_start(&v, &open_cfg, "127.0.0.1:0");
    assert_int_equal(cli_connect_cfg(&c, &good, v.port), CRAFT_EAUTH);
    assert_int_equal(v.opened, 0);
    srv_stop(&v);

    /* Bad secret settings are refused with no callback. */
    struct net_config inval = config();
    inval.secret = "x";
    inval.secret_len = 0;
    memset(&c, 0, sizeof c);
    char addr[64];
    addr_of(addr, sizeof addr, 1);
    assert_int_equal(
        net_connect(lp, &inval, addr, NULL, NULL, &c, cli_connect_cb),
        CRAFT_EINVAL);
    assert_int_equal(c.connect_done, 0);
}

/* A raw client that claims a secret but cannot prove it, or sends AUTH out
 * of turn, is dropped before it is ever a connection. */
static void auth_forged_or_out_of_turn(void **state)
{
    (void)state;
    struct net_config cfg = config();
    cfg.secret = "s";
    cfg.secret_len = 1;
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    for (int round = 0; round < 2; round++) {
        struct raw r;
        raw_connect(&r, v.port);
        uint8_t f[256], mac[32];
        memset(mac, 0x5a, sizeof mac);
        struct net_frame_hdr ah = {.kind = NET_KIND_AUTH};
        size_t n = 0;
        if (round == 0) {
            /* HELLO with the auth flag and a nonce, then a forged MAC. */
            uint8_t p[56] = {0};
            put_u16(p, 1);
            put_u16(p + 2, 1);
            put_u32(p + 4, 1u << 20);
            put_u64(p + 8, 9);
            put_u64(p + 16, 42);
            struct net_frame_hdr hh = {.kind = NET_KIND_HELLO};
            net_frame_encode(f, &hh, p, sizeof p);
            memcpy(f + NET_FRAME_HDR_SIZE, p, sizeof p);
            n = NET_FRAME_HDR_SIZE + sizeof p;
        }
        /* round 1: AUTH before any HELLO */
        net_frame_encode(f + n, &ah, mac, sizeof mac);
        memcpy(f + n + NET_FRAME_HDR_SIZE, mac, sizeof mac);
        n += NET_FRAME_HDR_SIZE + sizeof mac;
        raw_write(&r, f, n);
        RUN_UNTIL(r.eof);
        assert_int_equal(v.opened, 0);
        raw_close(&r);
    }
    srv_stop(&v);
}

/* A listener that accepts and never says HELLO: the handshake times out. */
struct mute {
    uv_tcp_t listener;
    uv_tcp_t conn;
    int accepted, closed;
    int send_hello; /* say HELLO, then never read */
};

static void mute_closed_cb(uv_handle_t *h)
{
    struct mute *m = h->data;
    m->closed++;
}

static void mute_connection_cb(uv_stream_t *s, int status)
{
    struct mute *m = s->data;
    assert_int_equal(status, 0);
    assert_int_equal(m->accepted, 0);
    uv_tcp_init(lp, &m->conn);
    m->conn.data = m;
    assert_int_equal(uv_accept(s, (uv_stream_t *)&m->conn), 0);
    m->accepted = 1;
    if (m->send_hello) {
        uint8_t f[64];
        size_t n = hello_frame(f, 42);
        uv_buf_t b = uv_buf_init((char *)f, (unsigned)n);
        assert_int_equal(uv_try_write((uv_stream_t *)&m->conn, &b, 1), (int)n);
    }
}

static uint16_t mute_start(struct mute *m, int send_hello)
{
    memset(m, 0, sizeof *m);
    m->send_hello = send_hello;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(lp, &m->listener);
    m->listener.data = m;
    assert_int_equal(uv_tcp_bind(&m->listener, (const struct sockaddr *)&sa, 0),
                     0);
    assert_int_equal(
        uv_listen((uv_stream_t *)&m->listener, 8, mute_connection_cb), 0);
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&m->listener, (struct sockaddr *)&bound, &len);
    return ntohs(bound.sin_port);
}

static void mute_stop(struct mute *m)
{
    int n = 1;
    uv_close((uv_handle_t *)&m->listener, mute_closed_cb);
    if (m->accepted) {
        uv_close((uv_handle_t *)&m->conn, mute_closed_cb);
        n = 2;
    }
    RUN_UNTIL(m->closed == n);
}

static void handshake_timeout(void **state)
{
    (void)state;
    struct mute m;
    uint16_t port = mute_start(&m, 0);
    struct net_config cfg = config();
    cfg.handshake_timeout_ms = 100;
    struct cli c;
    uint64_t t0 = uv_now(lp);
    assert_int_equal(cli_connect_cfg(&c, &cfg, port), CRAFT_ETIMEDOUT);
    assert_true(uv_now(lp) - t0 >= 100);
    assert_int_equal(m.accepted, 1);
    mute_stop(&m);
}

/* A listener whose accept queue is full drops new SYNs, so a connect hangs
 * at the TCP level: the connect deadline (not the handshake's) ends it. */
static void connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t slen = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &slen);
    /* Fill the accept queue (never accepted) with plain connections. */
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fill[i] >= 0);
        (void)connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    uv_run(lp, UV_RUN_NOWAIT);

    struct net_config cfg = config();
    cfg.connect_timeout_ms = 200;
    cfg.handshake_timeout_ms = DEADLINE_MS * 2;
    struct cli c;
    uint64_t t0 = uv_now(lp);
    assert_int_equal(cli_connect_cfg(&c, &cfg, ntohs(sa.sin_port)),
                     CRAFT_ETIMEDOUT);
    uint64_t took = uv_now(lp) - t0;
    assert_true(took >= 200 && took < DEADLINE_MS);
    for (int i = 0; i < 4; i++) {
        close(fill[i]);
    }
    close(lfd);
}

/* The output queue is bounded: against a peer that stops reading, sends are
 * refused with CRAFT_ELIMIT once queue_bytes_max is reached, and memory
 * (queued bytes) never exceeds it. */
static void bounded_queue(void **state)
{
    (void)state;
    struct mute m;
    uint16_t port = mute_start(&m, 1);
    struct net_config cfg = config();
    cfg.queue_bytes_max = 1u << 20;
    char addr[64];
    addr_of(addr, sizeof addr, port);
    struct net_peer *p;
    assert_int_equal(net_peer_new(lp, &cfg, addr, NULL, &p), 0);
    RUN_UNTIL(net_peer_conn(p) != NULL);
    struct net_conn *conn = net_peer_conn(p);

    static uint8_t chunk[64 * 1024];
    int rv = 0, sent = 0;
    /* The kernel's socket buffers absorb some megabytes first; 1 GiB of
     * attempts is far beyond them. */
    for (int i = 0; i < 16384 && rv == 0; i++) {
        uv_run(lp, UV_RUN_NOWAIT); /* let written frames complete */
        rv = net_peer_send(p, 1, chunk, sizeof chunk);
        sent += rv == 0;
        assert_true(net_conn_queued_bytes(conn) <= cfg.queue_bytes_max);
    }
    assert_int_equal(rv, CRAFT_ELIMIT);
    assert_true(sent > 0);
    struct net_peer_stats st;
    net_peer_get_stats(p, &st);
    assert_int_equal(st.frames_dropped, 1);
    assert_int_equal(st.frames_sent, (uint64_t)sent);
    assert_true(net_conn_queued_bytes(conn) >
                cfg.queue_bytes_max - sizeof chunk - NET_FRAME_HDR_SIZE);
    /* Small messages still fit if there is room; a second refusal counts. */
    assert_int_equal(net_peer_send(p, 1, chunk, sizeof chunk), CRAFT_ELIMIT);
    net_peer_get_stats(p, &st);
    assert_int_equal(st.frames_dropped, 2);
    /* Closing frees the connection with its unsent megabyte. */
    int closed = 0;
    net_peer_close(p, &closed, flag_cb);
    RUN_UNTIL(closed);
    mute_stop(&m);
}

/* While a peer's connect is in flight its messages wait in a bounded
 * queue; when the attempt fails they are dropped and counted. */
static void peer_queue_while_connecting(void **state)
{
    (void)state;
    struct mute m;
    uint16_t port = mute_start(&m, 0); /* never says HELLO */
    struct net_config cfg = config();
    cfg.queue_bytes_max = 8192;
    cfg.frame_max = 4096;
    cfg.handshake_timeout_ms = 100;
    cfg.backoff_min_ms = 5000; /* no second attempt during the test */
    cfg.backoff_max_ms = 5000;
    char addr[64];
    addr_of(addr, sizeof addr, port);
    struct net_peer *p;
    assert_int_equal(net_peer_new(lp, &cfg, addr, NULL, &p), 0);
    static uint8_t kb[4097];
    int queued = 0, rv;
    while ((rv = net_peer_send(p, 1, kb, 1000)) == 0) {
        queued++;
    }
    assert_int_equal(rv, CRAFT_ELIMIT);
    assert_int_equal(queued, 8192 / (1000 + NET_FRAME_HDR_SIZE));
    assert_int_equal(net_peer_send(p, 1, kb, cfg.frame_max + 1), CRAFT_ETOOBIG);
    struct net_peer_stats st;
    RUN_UNTIL((net_peer_get_stats(p, &st), st.connect_fails == 1));
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.frames_sent, (uint64_t)queued);
    assert_int_equal(st.frames_dropped, (uint64_t)queued + 2);
    assert_int_equal(net_peer_send(p, 1, kb, 10), CRAFT_ENOCONN);
    int closed = 0;
    net_peer_close(p, &closed, flag_cb);
    RUN_UNTIL(closed);
    mute_stop(&m);
}

/* A peer reconnects with growing backoff while the server is down, and
 * delivers again once a server listens on the same port. */
static int peer_opens;

static void peer_on_open(void *data, struct net_conn *conn)
{
    (void)data;
    (void)conn;
    peer_opens++;
}

static void reconnect_with_backoff(void **state)
{
    (void)state;
    struct net_config cfg = config();
    cfg.backoff_min_ms = 10;
    cfg.backoff_max_ms = 80;
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    uint16_t port = v.port;
    char addr[64];
    addr_of(addr, sizeof addr, port);
    peer_opens = 0;
    struct net_handlers h = {.on_open = peer_on_open};
    struct net_peer *p;
    assert_int_equal(net_peer_new(lp, &cfg, addr, &h, &p), 0);
    /* Sent while the first connect is in flight: waits, then delivered. */
    assert_int_equal(net_peer_send(p, 5, "early", 5), 0);
    RUN_UNTIL(v.messages == 1);
    assert_memory_equal(v.last_msg.data, "early", 5);
    assert_int_equal(peer_opens, 1);

    srv_stop(&v);
    struct net_peer_stats st;
    RUN_UNTIL((net_peer_get_stats(p, &st), st.connect_fails >= 4));
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.connects, 1);
    /* The nominal delay doubled up to the cap: draws lie in its upper half. */
    assert_true(st.backoff_ms >= 40 && st.backoff_ms <= 80);
    /* While backing off, sends are refused and counted, not hoarded. */
    RUN_UNTIL(net_peer_send(p, 5, "lost", 4) == CRAFT_ENOCONN);

    srv_start(&v, &cfg, addr); /* same port again */
    RUN_UNTIL(net_peer_conn(p) != NULL);
    assert_int_equal(peer_opens, 2);
    net_peer_get_stats(p, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.backoff_ms, 0);
    assert_true(st.frames_dropped >= 1);
    assert_int_equal(net_peer_send(p, 5, "again", 5), 0);
    RUN_UNTIL(v.messages == 1);
    assert_memory_equal(v.last_msg.data, "again", 5);

    int closed = 0;
    net_peer_close(p, &closed, flag_cb);
    RUN_UNTIL(closed && v.closed == 1);
    srv_stop(&v);
}

/* A listener that completes each handshake and then hangs up at once. */
struct flapper {
    uv_tcp_t listener;
    int accepted, closed, listener_closed;
};

struct flap_conn {
    uv_tcp_t tcp;
    struct flapper *f;
    uint8_t in[256];
    size_t n;
};

static void flap_conn_closed_cb(uv_handle_t *h)
{
    struct flap_conn *fc = h->data;
    fc->f->closed++;
    free(fc);
}

static void flap_alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)n;
    struct flap_conn *fc = h->data;
    *b = uv_buf_init((char *)fc->in + fc->n, (unsigned)(sizeof fc->in - fc->n));
}

static void flap_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct flap_conn *fc = s->data;
    if (n > 0) {
        fc->n += (size_t)n;
    }
    /* Read the client's whole HELLO first, so that closing sends a clean
     * FIN after our HELLO rather than a reset that could discard it. */
    if (n < 0 || fc->n >= NET_FRAME_HDR_SIZE + 24) {
        uint8_t f[64];
        size_t len = hello_frame(f, 42);
        uv_buf_t out = uv_buf_init((char *)f, (unsigned)len);
        if (n > 0) {
            assert_int_equal(uv_try_write(s, &out, 1), (int)len);
        }
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, flap_conn_closed_cb);
    }
}

static void flap_connection_cb(uv_stream_t *s, int status)
{
    struct flapper *f = s->data;
    assert_int_equal(status, 0);
    struct flap_conn *fc = calloc(1, sizeof *fc);
    assert_non_null(fc);
    fc->f = f;
    uv_tcp_init(lp, &fc->tcp);
    fc->tcp.data = fc;
    assert_int_equal(uv_accept(s, (uv_stream_t *)&fc->tcp), 0);
    f->accepted++;
    uv_read_start((uv_stream_t *)&fc->tcp, flap_alloc_cb, flap_read_cb);
}

static void flapper_closed_cb(uv_handle_t *h)
{
    struct flapper *f = h->data;
    f->listener_closed = 1;
}

/* A link dropped right after each handshake keeps backing off instead of
 * reconnecting at the minimum delay forever. */
static void flapping_link_backs_off(void **state)
{
    (void)state;
    struct flapper f;
    memset(&f, 0, sizeof f);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(lp, &f.listener);
    f.listener.data = &f;
    assert_int_equal(uv_tcp_bind(&f.listener, (const struct sockaddr *)&sa, 0),
                     0);
    assert_int_equal(
        uv_listen((uv_stream_t *)&f.listener, 8, flap_connection_cb), 0);
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&f.listener, (struct sockaddr *)&bound, &len);
    char addr[64];
    addr_of(addr, sizeof addr, ntohs(bound.sin_port));

    struct net_config cfg = config();
    cfg.backoff_min_ms = 10;
    cfg.backoff_max_ms = 80;
    struct net_peer *p;
    assert_int_equal(net_peer_new(lp, &cfg, addr, NULL, &p), 0);
    struct net_peer_stats st;
    RUN_UNTIL((net_peer_get_stats(p, &st), st.connects >= 5 && !st.connected));
    /* Nominal delays 10, 20, 40, 80, 80: the last draw is in [40, 80]. */
    assert_true(st.backoff_ms >= 40 && st.backoff_ms <= 80);
    assert_int_equal(st.connect_fails, 0);
    int closed = 0;
    net_peer_close(p, &closed, flag_cb);
    RUN_UNTIL(closed && f.closed == f.accepted);
    uv_close((uv_handle_t *)&f.listener, flapper_closed_cb);
    RUN_UNTIL(f.listener_closed);
}

/* Bind-before-connect: the server sees the configured source address. */
static void bind_source_address(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    const char *sources[] = {"127.0.0.1", "127.0.0.2"};
    for (size_t i = 0; i < 2; i++) {
        struct net_config cc = config();
        cc.bind_host = sources[i];
        struct cli c;
        assert_int_equal(cli_connect_cfg(&c, &cc, v.port), 0);
        RUN_UNTIL(v.conn != NULL);
        char seen[NET_ADDR_FMT_MAX], local[NET_ADDR_FMT_MAX];
        net_conn_peer_addr(v.conn, seen, sizeof seen);
        net_conn_local_addr(c.conn, local, sizeof local);
        assert_string_equal(seen, local);
        assert_true(strncmp(seen, sources[i], strlen(sources[i])) == 0);
        assert_int_equal(seen[strlen(sources[i])], ':');
        cli_close(&c);
        RUN_UNTIL(v.conn == NULL);
    }
    srv_stop(&v);
}

/* The TCP_USER_TIMEOUT of the socket between local port lport and remote
 * port rport (found among this process's descriptors), or -1. */
static int user_timeout_of(uint16_t lport, uint16_t rport)
{
    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_in a, b;
        socklen_t la = sizeof a, lb = sizeof b;
        if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 ||
            getpeername(fd, (struct sockaddr *)&b, &lb) != 0 ||
            a.sin_family != AF_INET || ntohs(a.sin_port) != lport ||
            ntohs(b.sin_port) != rport) {
            continue;
        }
        unsigned ms = 0;
        socklen_t len = sizeof ms;
        if (getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len) != 0) {
            return -1;
        }
        return (int)ms;
    }
    return -1;
}

static uint16_t port_of(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    assert_non_null(colon);
    return (uint16_t)atoi(colon + 1);
}

/* Both ends of a connection get TCP_USER_TIMEOUT (net.h: a link through a
 * healed partition must not wait out TCP's retransmission backoff); 0
 * leaves the kernel's default. */
static void user_timeout_set(void **state)
{
    (void)state;
    struct net_config cfg = config();
    assert_int_equal(cfg.user_timeout_ms, NET_USER_TIMEOUT_MS_DEFAULT);
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    const unsigned wanted[] = {1234, 0};
    for (size_t i = 0; i < 2; i++) {
        struct net_config cc = config();
        cc.user_timeout_ms = wanted[i];
        struct cli c;
        assert_int_equal(cli_connect_cfg(&c, &cc, v.port), 0);
        RUN_UNTIL(v.conn != NULL && c.connect_done);
        char local[NET_ADDR_FMT_MAX];
        net_conn_local_addr(c.conn, local, sizeof local);
        uint16_t cport = port_of(local);
        assert_int_equal(user_timeout_of(cport, v.port), (int)wanted[i]);
        assert_int_equal(user_timeout_of(v.port, cport),
                         (int)NET_USER_TIMEOUT_MS_DEFAULT);
        cli_close(&c);
        RUN_UNTIL(v.conn == NULL);
    }
    srv_stop(&v);
}

/* IPv6 loopback end to end, when the host has it. */
static void ipv6_loopback(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct net_server *s;
    char err[128];
    int rv = net_server_new(lp, &cfg, "[::1]:0", NULL, &s, err, sizeof err);
    if (rv == CRAFT_EINVAL || rv == CRAFT_EIO) {
        uv_run(lp, UV_RUN_NOWAIT); /* let the failed listener close */
        skip();                    /* no IPv6 on this host */
    }
    assert_int_equal(rv, 0);
    char addr[64];
    snprintf(addr, sizeof addr, "[::1]:%u", (unsigned)net_server_port(s));
    struct cli c;
    memset(&c, 0, sizeof c);
    struct net_handlers h = {.data = &c, .on_close = cli_on_close};
    assert_int_equal(net_connect(lp, &cfg, addr, &h, NULL, &c, cli_connect_cb),
                     0);
    RUN_UNTIL(c.connect_done);
    assert_int_equal(c.connect_status, 0);
    char peer[NET_ADDR_FMT_MAX];
    net_conn_peer_addr(c.conn, peer, sizeof peer);
    assert_string_equal(peer, addr);
    /* A handler-less server answers every request CRAFT_ENOENT. */
    struct result r = {0};
    assert_int_equal(net_call(c.conn, 1, "x", 1, 1000, &r, result_cb), 0);
    RUN_UNTIL(r.fired);
    assert_int_equal(r.status, CRAFT_ENOENT);
    cli_close(&c);
    int closed = 0;
    net_server_close(s, &closed, flag_cb);
    RUN_UNTIL(closed);
}

/* Writing to a connection the other end reset must report an error, not
 * kill the process with SIGPIPE. */
static void peer_reset_no_sigpipe(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct raw r;
    raw_connect(&r, v.port);
    uint8_t f[64];
    raw_write(&r, f, hello_frame(f, 42));
    RUN_UNTIL(v.opened == 1);
    /* Reset: SO_LINGER 0 makes close() send an RST. */
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)&r.tcp, &fd), 0);
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    raw_close(&r);
    static uint8_t chunk[16 * 1024];
    while (v.closed == 0) {
        if (v.conn != NULL) {
            (void)net_send(v.conn, 1, chunk, sizeof chunk);
        }
        uv_run(lp, UV_RUN_NOWAIT);
    }
    assert_int_equal(v.close_status, CRAFT_ECLOSED);
    /* Whichever write hits the reset socket, SIGPIPE cannot kill us. */
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    srv_stop(&v);
}

/* A server closed with connections open closes them all (on_close 0). */
static void server_close_with_connections(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    struct cli c[3];
    for (int i = 0; i < 3; i++) {
        cli_connect(&c[i], v.port);
    }
    RUN_UNTIL(v.opened == 3);
    srv_stop(&v);
    assert_int_equal(v.closed, 3);
    assert_int_equal(v.close_status, 0);
    RUN_UNTIL(c[0].closed && c[1].closed && c[2].closed);
}

static void server_errors(void **state)
{
    (void)state;
    struct net_config cfg = config();
    struct srv v;
    srv_start(&v, &cfg, "127.0.0.1:0");
    char addr[64], err[128] = "";
    addr_of(addr, sizeof addr, v.port);
    struct net_server *s2;
    assert_int_equal(net_server_new(lp, &cfg, addr, NULL, &s2, err, sizeof err),
                     CRAFT_EBUSY);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(
        net_server_new(lp, &cfg, "127.0.0.1", NULL, &s2, err, sizeof err),
        CRAFT_EINVAL);
    struct net_config bad = config();
    bad.frame_max = 0;
    assert_int_equal(
        net_server_new(lp, &bad, "127.0.0.1:0", NULL, &s2, err, sizeof err),
        CRAFT_EINVAL);
    srv_stop(&v);
}

/*
 * Chaos: random calls, replies (now, later, never), closes from either end
 * and timeouts, checking that every call's callback fires exactly once and
 * that everything closes without leaks (ASan).  Seeded; CRAFT_SEED replays
 * the same random choices (the timing of real sockets still varies).
 */
#define CHAOS_CLIENTS 4
#define CHAOS_CALLS 3000
#define CHAOS_HELD 256
#define CHAOS_SERVER_CONNS 64

struct chaos {
    struct rng rng;
    struct net_server *server;
    int server_closed;
    struct net_conn *sconns[CHAOS_SERVER_CONNS];
    int n_sconns;
    struct net_request *held[CHAOS_HELD];
    int n_held;
    struct cli clients[CHAOS_CLIENTS];
    int fired[CHAOS_CALLS];
    int ok, timedout, closed_calls, n_calls;
    int n_later; /* replies scheduled on a timer, not yet sent */
};

static struct chaos ch;

struct chaos_later {
    uv_timer_t timer;
    struct net_request *req;
};

static void chaos_later_cb(uv_timer_t *t)
{
    struct chaos_later *l = t->data;
    ch.n_later--;
    net_reply(l->req, 0, l->req->payload, l->req->len);
    uv_close((uv_handle_t *)&l->timer, later_closed_cb);
}

static void chaos_on_request(void *data, struct net_conn *conn,
                             struct net_request *req)
{
    (void)data;
    (void)conn;
    uint64_t pick = rng_range(&ch.rng, 0, 10);
    if (pick < 5) {
        net_reply(req, 0, req->payload, req->len);
    } else if (pick < 8 || ch.n_held == CHAOS_HELD) {
        struct chaos_later *l = malloc(sizeof *l);
        assert_non_null(l);
        ch.n_later++;
        l->req = req;
        uv_timer_init(lp, &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, chaos_later_cb, rng_range(&ch.rng, 0, 30), 0);
    } else {
        ch.held[ch.n_held++] = req;
    }
}

static void chaos_on_open(void *data, struct net_conn *conn)
{
    (void)data;
    assert_true(ch.n_sconns < CHAOS_SERVER_CONNS);
    ch.sconns[ch.n_sconns++] = conn;
}

static void chaos_on_close(void *data, struct net_conn *conn, int status)
{
    (void)data;
    (void)status;
    for (int i = 0; i < ch.n_sconns; i++) {
        if (ch.sconns[i] == conn) {
            ch.sconns[i] = ch.sconns[--ch.n_sconns];
            return;
        }
    }
    fail_msg("close of an unknown server connection");
}

static void chaos_call_cb(void *data, int status, const uint8_t *payload,
                          size_t len)
{
    int i = (int)(intptr_t)data;
    assert_int_equal(ch.fired[i], 0); /* exactly once */
    ch.fired[i]++;
    if (status == 0) {
        assert_int_equal(len, 4);
        assert_int_equal(get_u32(payload), (uint32_t)i);
        ch.ok++;
    } else if (status == CRAFT_ETIMEDOUT) {
        ch.timedout++;
    } else {
        assert_int_equal(status, CRAFT_ECLOSED);
        ch.closed_calls++;
    }
}

static void chaos_connect(struct cli *c, const char *addr)
{
    memset(c, 0, sizeof *c);
    struct net_config cfg = config();
    struct net_handlers h = {.data = c, .on_close = cli_on_close};
    assert_int_equal(net_connect(lp, &cfg, addr, &h, NULL, c, cli_connect_cb),
                     0);
}

static void chaos_step(const char *addr)
{
    uint64_t pick = rng_range(&ch.rng, 0, 100);
    struct cli *c = &ch.clients[rng_range(&ch.rng, 0, CHAOS_CLIENTS)];
    if (c->connect_done && c->conn == NULL) {
        chaos_connect(c, addr); /* it closed: reconnect */
    } else if (pick < 80 && c->conn != NULL && ch.n_calls < CHAOS_CALLS) {
        uint8_t p[4];
        int i = ch.n_calls;
        put_u32(p, (uint32_t)i);
        unsigned timeout =
            rng_chance(&ch.rng, 200) ? 0 : (unsigned)rng_range(&ch.rng, 1, 40);
        assert_int_equal(net_call(c->conn, T_ECHO, p, sizeof p, timeout,
                                  (void *)(intptr_t)i, chaos_call_cb),
                         0);
        ch.n_calls++;
    } else if (pick < 83 && c->conn != NULL) {
        net_conn_close(c->conn);
    } else if (pick < 86 && ch.n_sconns > 0) {
        net_conn_close(ch.sconns[rng_range(&ch.rng, 0, ch.n_sconns)]);
    } else if (pick < 95 && ch.n_held > 0) {
        int k = (int)rng_range(&ch.rng, 0, ch.n_held);
        struct net_request *req = ch.held[k];
        ch.held[k] = ch.held[--ch.n_held];
        int rv = net_reply(req, 0, req->payload, req->len);
        assert_true(rv == 0 || rv == CRAFT_ECLOSED);
    } else {
        uv_run(lp, UV_RUN_ONCE);
    }
    uv_run(lp, UV_RUN_NOWAIT);
}

static void chaos_exactly_once(void **state)
{
    (void)state;
    uint64_t seed = uv_hrtime();
    const char *env = getenv("CRAFT_SEED");
    if (env != NULL) {
        seed = strtoull(env, NULL, 10);
    }
    printf("chaos_exactly_once: seed %llu (replay with CRAFT_SEED)\n",
           (unsigned long long)seed);
    memset(&ch, 0, sizeof ch);
    rng_init(&ch.rng, seed);
    struct net_config cfg = config();
    struct net_handlers h = {.on_open = chaos_on_open,
                             .on_close = chaos_on_close,
                             .on_request = chaos_on_request};
    char err[128], addr[64];
    assert_int_equal(net_server_new(lp, &cfg, "127.0.0.1:0", &h, &ch.server,
                                    err, sizeof err),
                     0);
    addr_of(addr, sizeof addr, net_server_port(ch.server));
    for (int i = 0; i < CHAOS_CLIENTS; i++) {
        chaos_connect(&ch.clients[i], addr);
    }
    uint64_t deadline = uv_now(lp) + 30000;
    while (ch.n_calls < CHAOS_CALLS) {
        assert_true(uv_now(lp) < deadline);
        chaos_step(addr);
    }
    /* Wind down: every client closes, held requests are answered. */
    for (int i = 0; i < CHAOS_CLIENTS; i++) {
        struct cli *c = &ch.clients[i];
        RUN_UNTIL(c->connect_done);
        if (c->conn != NULL) {
            net_conn_close(c->conn);
        }
    }
    RUN_UNTIL(ch.n_sconns == 0 && ch.n_later == 0);
    while (ch.n_held > 0) {
        struct net_request *req = ch.held[--ch.n_held];
        int rv = net_reply(req, 0, NULL, 0);
        assert_true(rv == 0 || rv == CRAFT_ECLOSED);
    }
    net_server_close(ch.server, &ch.server_closed, flag_cb);
    RUN_UNTIL(ch.server_closed);
    for (int i = 0; i < CHAOS_CALLS; i++) {
        assert_int_equal(ch.fired[i], 1);
    }
    printf("chaos: %d ok, %d timed out, %d closed\n", ch.ok, ch.timedout,
           ch.closed_calls);
    assert_true(ch.ok > 0);
    assert_int_equal(ch.ok + ch.timedout + ch.closed_calls, CHAOS_CALLS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(last_messages_before_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(client_answers_server, setup, teardown),
        cmocka_unit_test_setup_teardown(many_concurrent_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(large_frames_at_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(reply_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(held_requests_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_before_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_version, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_crc, setup, teardown),
        cmocka_unit_test_setup_teardown(oversize_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_header, setup, teardown),
        cmocka_unit_test_setup_teardown(disconnect_mid_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(call_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_fail_on_disconnect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(calls_fail_on_local_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cluster_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_with_cluster_secret, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(auth_forged_or_out_of_turn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(connect_refused_and_cancel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(bounded_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(peer_queue_while_connecting, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reconnect_with_backoff, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(flapping_link_backs_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bind_source_address, setup, teardown),
        cmocka_unit_test_setup_teardown(user_timeout_set, setup, teardown),
        cmocka_unit_test_setup_teardown(ipv6_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(peer_reset_no_sigpipe, setup, teardown),
        cmocka_unit_test_setup_teardown(server_close_with_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(chaos_exactly_once, setup, teardown),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
