/*
 * Unit tests for craft-loadgen's I/O-free parts: the latency histogram,
 * keys and values, RESP reply classification, base64, etcd requests and
 * the HTTP response parser.  Every parser is fed each response split at
 * every byte, since TCP may deliver any prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "craft/common.h"
#include "hist.h"
#include "proto.h"
#include "util/buf.h"
#include "util/rng.h"

/* ---- histogram ---- */

static void hist_buckets_cover_values(void **state)
{
    (void)state;
    /* Every value lies in its bucket, buckets are ordered and adjacent, and
     * a bucket is at most 1/64 of its low bound wide. */
    struct rng r;
    rng_init(&r, 42);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = rng_next(&r) >> rng_range(&r, 23, 64);
        unsigned b = hist_bucket(v);
        assert_true(hist_bucket_low(b) <= v);
        assert_true(v <= hist_bucket_high(b));
    }
    for (unsigned b = 1; b < HIST_BUCKETS; b++) {
        assert_int_equal(hist_bucket_low(b), hist_bucket_high(b - 1) + 1);
        uint64_t width = hist_bucket_high(b) - hist_bucket_low(b) + 1;
        assert_true(width * 64 <= hist_bucket_low(b) || width == 1);
    }
    assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}

static void hist_percentiles_are_close(void **state)
{
    (void)state;
    struct hist h;
    hist_init(&h);
    assert_int_equal(hist_percentile(&h, 50), 0);
    /* 1..100000 us: the p-th percentile is p * 1000 us. */
    for (uint64_t us = 1; us <= 100000; us++) {
        hist_record(&h, us * 1000);
    }
    double ps[] = {1, 50, 90, 99, 99.9, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double want = ps[i] * 1000 * 1000;
        double got = (double)hist_percentile(&h, ps[i]);
        assert_true(got >= want);
        assert_true(got <= want * (1 + 1.0 / 64));
    }
    assert_int_equal(hist_percentile(&h, 100), 100000 * 1000);
    assert_int_equal(h.min_ns, 1000);

    struct hist a, b;
    hist_init(&a);
    hist_init(&b);
    hist_record(&a, 5);
    hist_record(&b, 7);
    hist_record(&b, 9);
    hist_merge(&a, &b);
    assert_int_equal(a.count, 3);
    assert_int_equal(a.min_ns, 5);
    assert_int_equal(a.max_ns, 9);
    assert_int_equal(hist_percentile(&a, 50), 7);
}

/* ---- keys and values ---- */

static void keys_and_values_are_deterministic(void **state)
{
    (void)state;
    char k[LG_KEY_LEN];
    lg_key(42, k);
    assert_memory_equal(k, "key:000000000042", LG_KEY_LEN);
    lg_key(999999999999ull, k);
    assert_memory_equal(k, "key:999999999999", LG_KEY_LEN);

    uint8_t a[100], b[100], c[100];
    lg_value(7, 3, a, sizeof a);
    lg_value(7, 3, b, sizeof b);
    assert_memory_equal(a, b, sizeof a);
    lg_value(7, 4, c, sizeof c);
    assert_memory_not_equal(a, c, sizeof a);
    lg_value(8, 3, c, sizeof c);
    assert_memory_not_equal(a, c, sizeof a);
    for (size_t i = 0; i < sizeof a; i++) {
        assert_true(a[i] >= 'a' && a[i] <= 'z');
    }
    /* A shorter value is a prefix of a longer one. */
    lg_value(7, 3, c, 5);
    assert_memory_equal(a, c, 5);
}

/* ---- RESP ---- */

static void resp_requests_are_multibulk(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    assert_int_equal(lg_resp_request(&b, LG_PUT, "key:000000000001",
                                     (const uint8_t *)"abc", 3),
                     0);
    const char *want = "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n"
                       "$3\r\nabc\r\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_reset(&b);
    assert_int_equal(lg_resp_request(&b, LG_GET, "key:000000000001", NULL, 0),
                     0);
    want = "*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000001\r\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_close(&b);
}

struct resp_case {
    const char *wire;
    enum lg_op op;
    int rv;
    enum lg_reply kind;
    const char *data; /* payload or error text, NULL if none */
    const char *addr; /* for MOVED */
};

static const struct resp_case resp_cases[] = {
    {"+OK\r\n", LG_PUT, 1, LG_REPLY_OK, NULL, NULL},
    {"$5\r\nhello\r\n", LG_GET, 1, LG_REPLY_OK, "hello", NULL},
    {"$0\r\n\r\n", LG_GET, 1, LG_REPLY_OK, "", NULL},
    {"$-1\r\n", LG_GET, 1, LG_REPLY_NIL, NULL, NULL},
    {"-MOVED 0 127.0.0.1:7002\r\n", LG_PUT, 1, LG_REPLY_MOVED,
     "MOVED 0 127.0.0.1:7002", "127.0.0.1:7002"},
    {"-CLUSTERDOWN no leader\r\n", LG_GET, 1, LG_REPLY_RETRY,
     "CLUSTERDOWN no leader", NULL},
    {"-UNCERTAIN leadership changed\r\n", LG_PUT, 1, LG_REPLY_RETRY,
     "UNCERTAIN leadership changed", NULL},
    {"-ERR wrong\r\n", LG_PUT, 1, LG_REPLY_ERROR, "ERR wrong", NULL},
    {":1\r\n", LG_PUT, 1, LG_REPLY_BAD_TYPE, NULL, NULL},
    {"+OK\r\n", LG_GET, 1, LG_REPLY_BAD_TYPE, NULL, NULL},
    {"$2\r\nok\r\n", LG_PUT, 1, LG_REPLY_BAD_TYPE, NULL, NULL},
    {"-MOVED 0\r\n", LG_PUT, CRAFT_EPROTO, 0, NULL, NULL},
    {"hello\r\n", LG_PUT, CRAFT_EPROTO, 0, NULL, NULL},
    {"$3\r\nabcd\r\n", LG_GET, CRAFT_EPROTO, 0, NULL, NULL},
};

static void resp_replies_classified_at_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof resp_cases / sizeof resp_cases[0]; i++) {
        const struct resp_case *t = &resp_cases[i];
        /* The reply followed by another, so that length matters. */
        char wire[128];
        snprintf(wire, sizeof wire, "%s+OK\r\n", t->wire);
        size_t n = strlen(t->wire);
        for (size_t cut = 0; cut <= n; cut++) {
            enum lg_reply kind = LG_REPLY_OK;
            const uint8_t *data = NULL;
            size_t data_len = 0, used = 0;
            char addr[64] = "";
            int rv = lg_resp_reply((const uint8_t *)wire,
                                   cut == n ? strlen(wire) : cut, t->op, &kind,
                                   &data, &data_len, addr, sizeof addr, &used);
            if (cut < n && rv == 0) {
                continue; /* a prefix: more bytes needed */
            }
            if (cut < n) {
                /* Garbage may be recognised before its end. */
                assert_int_equal(t->rv, CRAFT_EPROTO);
                assert_int_equal(rv, CRAFT_EPROTO);
                break;
            }
            assert_int_equal(rv, t->rv);
            if (rv != 1) {
                continue;
            }
            assert_int_equal(used, n);
            assert_int_equal(kind, t->kind);
            if (t->data != NULL) {
                assert_int_equal(data_len, strlen(t->data));
                assert_memory_equal(data, t->data, data_len);
            }
            if (t->addr != NULL) {
                assert_string_equal(addr, t->addr);
            }
        }
    }
    /* A redirect address that does not fit is an error, not an overflow. */
    const char *w = "-MOVED 0 127.0.0.1:7002\r\n";
    enum lg_reply kind;
    const uint8_t *data;
    size_t dl, used;
    char small[8];
    assert_int_equal(lg_resp_reply((const uint8_t *)w, strlen(w), LG_PUT, &kind,
                                   &data, &dl, small, sizeof small, &used),
                     CRAFT_EPROTO);
}

/* ---- base64 ---- */

static void base64_round_trips(void **state)
{
    (void)state;
    /* RFC 4648 section 10 vectors. */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                         "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char enc[16];
        size_t n = strlen(in[i]);
        assert_int_equal(lg_base64_len(n), strlen(out[i]));
        lg_base64_encode((const uint8_t *)in[i], n, enc);
        assert_memory_equal(enc, out[i], strlen(out[i]));
        uint8_t dec[16];
        assert_int_equal(
            lg_base64_decode(out[i], strlen(out[i]), dec, sizeof dec), (long)n);
        assert_memory_equal(dec, in[i], n);
    }
    uint8_t d[4];
    assert_int_equal(lg_base64_decode("Zm9", 3, d, sizeof d), -1);
    assert_int_equal(lg_base64_decode("Zm!v", 4, d, sizeof d), -1);
    assert_int_equal(lg_base64_decode("Zg=a", 4, d, sizeof d), -1);
    assert_int_equal(lg_base64_decode("Zm9vYmFy", 8, d, sizeof d), -1);
}

/* ---- etcd ---- */

static void etcd_requests_frame_their_body(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    uint8_t value[3] = {'a', 'b', 'c'};
    assert_int_equal(lg_etcd_request(&b, "127.0.0.1:2379", LG_PUT,
                                     "key:000000000001", value, 3, 0),
                     0);
    const char *want = "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 49\r\n\r\n"
                       "{\"key\":\"a2V5OjAwMDAwMDAwMDAwMQ==\","
                       "\"value\":\"YWJj\"}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_reset(&b);
    assert_int_equal(
        lg_etcd_request(&b, "h:1", LG_GET, "key:000000000001", NULL, 0, 1), 0);
    want = "POST /v3/kv/range HTTP/1.1\r\nHost: h:1\r\n"
           "Content-Type: application/json\r\nContent-Length: 54\r\n\r\n"
           "{\"key\":\"a2V5OjAwMDAwMDAwMDAwMQ==\",\"serializable\":true}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_close(&b);
}

/* Parse wire whole and cut at every byte; return the whole parse. */
static int parse_all_splits(const char *wire, struct buf *scratch,
                            struct http_response *resp, size_t *used, char *err,
                            size_t err_size)
{
    size_t n = strlen(wire);
    for (size_t cut = 0; cut < n; cut++) {
        int rv = lg_http_response((const uint8_t *)wire, cut, scratch, resp,
                                  used, err, err_size);
        if (rv != 0) {
            return rv; /* an error seen early is fine, a success is not */
        }
    }
    return lg_http_response((const uint8_t *)wire, n, scratch, resp, used, err,
                            err_size);
}

static void http_responses_parse(void **state)
{
    (void)state;
    struct buf scratch;
    buf_init(&scratch);
    struct http_response resp;
    size_t used = 0;
    char err[128];

    const char *cl = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "content-length: 5\r\n\r\nhelloHTTP/1.1";
    assert_int_equal(
        parse_all_splits(cl, &scratch, &resp, &used, err, sizeof err), 1);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.close, 0);
    assert_int_equal(resp.body_len, 5);
    assert_memory_equal(resp.body, "hello", 5);
    assert_int_equal(used, strlen(cl) - strlen("HTTP/1.1"));

    const char *ch = "HTTP/1.1 503 Service Unavailable\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     "4\r\nabcd\r\nA;ext=1\r\n0123456789\r\n0\r\n"
                     "Trailer: x\r\n\r\nextra";
    assert_int_equal(
        parse_all_splits(ch, &scratch, &resp, &used, err, sizeof err), 1);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.close, 1);
    assert_int_equal(resp.body_len, 14);
    assert_memory_equal(resp.body, "abcd0123456789", 14);
    assert_int_equal(used, strlen(ch) - strlen("extra"));

    const char *bad[] = {
        "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "SMTP 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(
            parse_all_splits(bad[i], &scratch, &resp, &used, err, sizeof err),
            CRAFT_EPROTO);
        assert_true(err[0] != '\0');
    }
    /* A header that never ends is cut off at HTTP_HEAD_MAX. */
    static char big[HTTP_HEAD_MAX + 64];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(lg_http_response((const uint8_t *)big, sizeof big - 1,
                                      &scratch, &resp, &used, err, sizeof err),
                     CRAFT_EPROTO);
    buf_close(&scratch);
}

static void etcd_replies_classified(void **state)
{
    (void)state;
    const uint8_t *v = NULL;
    size_t n = 99;
    struct http_response r = {200, 0, NULL, 0};
    const char *found = "{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":"
                        "\"a2V5\",\"create_revision\":\"2\",\"value\":"
                        "\"YWJj\"}],\"count\":\"1\"}";
    r.body = (const uint8_t *)found;
    r.body_len = strlen(found);
    assert_int_equal(lg_etcd_reply(&r, LG_GET, &v, &n), LG_REPLY_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(v, "YWJj", 4);

    const char *empty = "{\"kvs\":[{\"key\":\"a2V5\"}],\"count\":\"1\"}";
    r.body = (const uint8_t *)empty;
    r.body_len = strlen(empty);
    assert_int_equal(lg_etcd_reply(&r, LG_GET, &v, &n), LG_REPLY_OK);
    assert_null(v);
    assert_int_equal(n, 0);

    const char *missing = "{\"header\":{\"revision\":\"5\"}}";
    r.body = (const uint8_t *)missing;
    r.body_len = strlen(missing);
    assert_int_equal(lg_etcd_reply(&r, LG_GET, &v, &n), LG_REPLY_NIL);
    assert_int_equal(lg_etcd_reply(&r, LG_PUT, &v, &n), LG_REPLY_OK);
    r.status = 503;
    assert_int_equal(lg_etcd_reply(&r, LG_PUT, &v, &n), LG_REPLY_RETRY);
    r.status = 400;
    assert_int_equal(lg_etcd_reply(&r, LG_PUT, &v, &n), LG_REPLY_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hist_buckets_cover_values),
        cmocka_unit_test(hist_percentiles_are_close),
        cmocka_unit_test(keys_and_values_are_deterministic),
        cmocka_unit_test(resp_requests_are_multibulk),
        cmocka_unit_test(resp_replies_classified_at_every_split),
        cmocka_unit_test(base64_round_trips),
        cmocka_unit_test(etcd_requests_frame_their_body),
        cmocka_unit_test(http_responses_parse),
        cmocka_unit_test(etcd_replies_classified),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
