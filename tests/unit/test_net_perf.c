/*
 * Throughput and latency figures for src/net over loopback, printed for the
 * record (docs/net.md quotes them).  Both ends run on one loop in one
 * thread, so every figure includes the sender's and the receiver's work on
 * a single core.  The assertions are sanity floors two orders of magnitude
 * below the measured figures: they catch a transport that stalls (a lost
 * wakeup, a quadratic buffer), not a slow machine.  CRAFT_PERF_SCALE=<n>
 * multiplies the amount of work.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "craft/common.h"
#include "net/net.h"
#include "util/encoding.h"
#include "util/log.h"

#define DEADLINE_MS 60000

static uv_loop_t *lp;
static struct net_server *server;
static struct net_conn *client;
static uint64_t received, received_bytes;
static int closed_flag;
static unsigned scale = 1;

static void on_message(void *data, struct net_conn *conn, uint16_t type,
                       const uint8_t *payload, size_t len)
{
    (void)data;
    (void)conn;
    (void)type;
    (void)payload;
    received++;
    received_bytes += len;
}

static void on_request(void *data, struct net_conn *conn,
                       struct net_request *req)
{
    (void)data;
    (void)conn;
    net_reply(req, 0, req->payload, req->len);
}

static void connect_cb(void *data, struct net_conn *conn, int status)
{
    (void)data;
    assert_int_equal(status, 0);
    client = conn;
}

static void flag_cb(void *data)
{
    *(int *)data = 1;
}

#define RUN_UNTIL(cond)                                                        \
    do {                                                                       \
        uint64_t deadline_ = uv_now(lp) + DEADLINE_MS;                         \
        while (!(cond)) {                                                      \
            assert_true(uv_now(lp) < deadline_);                               \
            uv_run(lp, UV_RUN_ONCE);                                           \
        }                                                                      \
    } while (0)

static double seconds_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e9;
}

/* CPU seconds (user + system) used by this process so far: on a machine
 * busy with other work the wall clock says more about the neighbours. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    const char *env = getenv("CRAFT_PERF_SCALE");
    if (env != NULL && atoi(env) > 0) {
        scale = (unsigned)atoi(env);
    }
    lp = malloc(sizeof *lp);
    assert_non_null(lp);
    assert_int_equal(uv_loop_init(lp), 0);
    struct net_config cfg;
    net_config_init(&cfg);
    struct net_handlers h = {.on_message = on_message,
                             .on_request = on_request};
    char err[128], addr[64];
    assert_int_equal(
        net_server_new(lp, &cfg, "127.0.0.1:0", &h, &server, err, sizeof err),
        0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u",
             (unsigned)net_server_port(server));
    client = NULL;
    assert_int_equal(net_connect(lp, &cfg, addr, NULL, NULL, NULL, connect_cb),
                     0);
    RUN_UNTIL(client != NULL);
    received = received_bytes = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    net_conn_close(client);
    closed_flag = 0;
    net_server_close(server, &closed_flag, flag_cb);
    RUN_UNTIL(closed_flag);
    uv_run(lp, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(lp), 0);
    free(lp);
    return 0;
}

/* One-way messages as fast as the queue allows. */
static void stream(size_t size, uint64_t n, const char *what)
{
    uint8_t *p = calloc(1, size);
    assert_non_null(p);
    uint64_t t0 = uv_hrtime();
    double c0 = cpu_seconds();
    for (uint64_t i = 0; i < n;) {
        int rv = net_send(client, 1, p, size);
        if (rv == 0) {
            i++;
        } else {
            assert_int_equal(rv, CRAFT_ELIMIT);
            uv_run(lp, UV_RUN_ONCE);
        }
    }
    RUN_UNTIL(received == n);
    double s = seconds_since(t0), cpu = cpu_seconds() - c0;
    printf("net perf: %-26s %9.0f msg/s %7.1f MiB/s wall; %9.0f msg/s "
           "%7.1f MiB/s per CPU-s (%llu x %zu B)\n",
           what, (double)n / s, (double)received_bytes / s / (1 << 20),
           (double)n / cpu, (double)received_bytes / cpu / (1 << 20),
           (unsigned long long)n, size);
    assert_int_equal(received_bytes, n * size);
    free(p);
    /* Floor: 1 MiB/s or 1000 msg/s. */
    assert_true((double)received_bytes / s > (1 << 20) || (double)n / s > 1000);
}

/* The sanitizer build runs a quarter of the work: its figures mean little
 * and the suite runs twice. */
#if defined(CRAFT_TEST_BUILD)
#define WORK(n) ((n) / 4 * scale)
#else
#define WORK(n) ((n)*scale)
#endif

static void stream_small_messages(void **state)
{
    (void)state;
    stream(100, WORK(200000ull), "one-way 100 B");
}

static void stream_large_messages(void **state)
{
    (void)state;
    stream(1u << 20, WORK(256ull), "one-way 1 MiB");
}

static uint64_t replies;

static void reply_cb(void *data, int status, const uint8_t *payload, size_t len)
{
    (void)data;
    (void)payload;
    assert_int_equal(status, 0);
    assert_int_equal(len, 64);
    replies++;
}

static void calls(unsigned depth, uint64_t n, const char *what)
{
    uint8_t p[64] = {0};
    replies = 0;
    uint64_t issued = 0;
    uint64_t t0 = uv_hrtime();
    double c0 = cpu_seconds();
    while (replies < n) {
        while (issued < n && issued - replies < depth) {
            assert_int_equal(
                net_call(client, 2, p, sizeof p, 10000, NULL, reply_cb), 0);
            issued++;
        }
        uv_run(lp, UV_RUN_ONCE);
    }
    double s = seconds_since(t0), cpu = cpu_seconds() - c0;
    printf("net perf: %-26s %9.0f calls/s %6.1f us/call wall; %9.0f calls "
           "per CPU-s (%llu calls)\n",
           what, (double)n / s, s / (double)n * 1e6, (double)n / cpu,
           (unsigned long long)n);
    assert_true((double)n / s > 500);
}

static void rpc_pipelined(void **state)
{
    (void)state;
    calls(256, WORK(200000ull), "calls 64 B, 256 in flight");
}

static void rpc_one_at_a_time(void **state)
{
    (void)state;
    calls(1, WORK(20000ull), "calls 64 B, 1 in flight");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stream_small_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(stream_large_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(rpc_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(rpc_one_at_a_time, setup, teardown),
    };
    return cmocka_run_group_tests_name("net/perf", tests, NULL, NULL);
}
