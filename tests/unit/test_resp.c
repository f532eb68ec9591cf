/* Unit tests for src/server/resp.c: the RESP2 parser and reply writers. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "server/resp.h"
#include "util/buf.h"
#include "util/rng.h"

/* An allocator that counts bytes live, to show that a claimed length is not
 * allocated up front. */
struct count_alloc {
    size_t calls;
    size_t peak_request;
};

static void *ca_malloc(void *d, size_t n)
{
    struct count_alloc *c = d;
    c->calls++;
    if (n > c->peak_request) {
        c->peak_request = n;
    }
    return malloc(n);
}

static void *ca_calloc(void *d, size_t n, size_t m)
{
    struct count_alloc *c = d;
    c->calls++;
    if (n * m > c->peak_request) {
        c->peak_request = n * m;
    }
    return calloc(n, m);
}

static void *ca_realloc(void *d, void *p, size_t n)
{
    struct count_alloc *c = d;
    c->calls++;
    if (n > c->peak_request) {
        c->peak_request = n;
    }
    return realloc(p, n);
}

static void ca_free(void *d, void *p)
{
    (void)d;
    free(p);
}

/* Parse all of s as one buffer; expect one command with these args. */
static void expect_cmd(const char *s, size_t len, size_t argc,
                       const char *const *args)
{
    struct resp_parser p;
    resp_parser_init(&p, NULL, NULL);
    struct resp_cmd cmd;
    size_t used = 0;
    int rv = resp_parse(&p, (const uint8_t *)s, len, &cmd, &used);
    if (rv != RESP_OK) {
        fail_msg("parse of %.*s gave %d (%s)", (int)len, s, rv,
                 p.err ? p.err : "");
    }
    assert_int_equal(used, len);
    assert_int_equal(cmd.argc, argc);
    for (size_t i = 0; i < argc; i++) {
        assert_int_equal(cmd.lens[i], strlen(args[i]));
        assert_memory_equal(cmd.argv[i], args[i], cmd.lens[i]);
    }
    resp_parser_close(&p);
}

static void multibulk_basic(void **state)
{
    (void)state;
    const char *a[] = {"SET", "key", "va\r\nl"};
    const char *s = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
    expect_cmd(s, strlen(s), 3, a);
    const char *e[] = {""};
    expect_cmd("*1\r\n$0\r\n\r\n", 10, 1, e);
    /* Binary-safe: a NUL inside an argument. */
    struct resp_parser p;
    resp_parser_init(&p, NULL, NULL);
    struct resp_cmd cmd;
    size_t used;
    const uint8_t bin[] = "*1\r\n$3\r\na\0b\r\n";
    assert_int_equal(resp_parse(&p, bin, sizeof bin - 1, &cmd, &used), RESP_OK);
    assert_int_equal(cmd.lens[0], 3);
    assert_memory_equal(cmd.argv[0], "a\0b", 3);
    resp_parser_close(&p);
}

static void pipelined_in_order(void **state)
{
    (void)state;
    const char *s = "*1\r\n$4\r\nPING\r\nGET a\r\n\r\n*0\r\n*-1\r\n"
                    "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
    const size_t len = strlen(s);
    struct resp_parser p;
    resp_parser_init(&p, NULL, NULL);
    struct resp_cmd cmd;
    size_t off = 0, used;
    const char *want[] = {"PING", "GET", "GET"};
    const char *want2[] = {NULL, "a", "b"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            resp_parse(&p, (const uint8_t *)s + off, len - off, &cmd, &used),
            RESP_OK);
        assert_memory_equal(cmd.argv[0], want[i], strlen(want[i]));
        if (want2[i]) {
            assert_int_equal(cmd.argc, 2);
            assert_memory_equal(cmd.argv[1], want2[i], 1);
        }
        off += used;
    }
    assert_int_equal(off, len);
    assert_int_equal(resp_parse(&p, (const uint8_t *)s + off, 0, &cmd, &used),
                     RESP_NEED_MORE);
    resp_parser_close(&p);
}

/* Feed the stream in chunks, keeping unconsumed bytes like a server does,
 * and collect every command as "arg|arg|...;" into out. */
static int feed_chunks(const uint8_t *s, size_t len, struct rng *r,
                       struct buf *out, const char **err)
{
    struct resp_parser p;
    resp_parser_init(&p, NULL, NULL);
    struct buf q;
    buf_init(&q);
    size_t fed = 0;
    int rv = 0;
    while (fed < len || q.len > 0) {
        size_t n = (size_t)rng_range(r, 1, 20);
        if (n > len - fed) {
            n = len - fed;
        }
        assert_int_equal(buf_append(&q, s + fed, n), 0);
        fed += n;
        for (;;) {
            struct resp_cmd cmd;
            size_t used;
            rv = resp_parse(&p, q.data, q.len, &cmd, &used);
            if (rv == RESP_EPROTO) {
                *err = p.err;
                goto out;
            }
            assert_int_equal(rv == RESP_OK || rv == RESP_NEED_MORE, 1);
            if (rv == RESP_OK) {
                for (size_t i = 0; i < cmd.argc; i++) {
                    buf_append(out, cmd.argv[i], cmd.lens[i]);
                    buf_append(out, "|", 1);
                }
                buf_append(out, ";", 1);
            }
            buf_consume(&q, used);
            if (rv == RESP_NEED_MORE) {
                break;
            }
        }
        if (fed == len) {
            break;
        }
    }
out:
    buf_close(&q);
    resp_parser_close(&p);
    return rv;
}

static void every_split_position(void **state)
{
    (void)state;
    const char *s = "*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n"
                    "set \"a b\" 'c'\r\n\n*1\r\n$0\r\n\r\n";
    const size_t len = strlen(s);
    const char *want = "GET|0123456789|;set|a b|c|;|;";
    /* Two chunks, split at every byte. */
    for (size_t cut = 0; cut <= len; cut++) {
        struct resp_parser p;
        resp_parser_init(&p, NULL, NULL);
        struct buf q, out;
        buf_init(&q);
        buf_init(&out);
        for (int part = 0; part < 2; part++) {
            if (part == 0) {
                buf_append(&q, s, cut);
            } else {
                buf_append(&q, s + cut, len - cut);
            }
            struct resp_cmd cmd;
            size_t used;
            int rv;
            while ((rv = resp_parse(&p, q.data, q.len, &cmd, &used)) ==
                   RESP_OK) {
                for (size_t i = 0; i < cmd.argc; i++) {
                    buf_append(&out, cmd.argv[i], cmd.lens[i]);
                    buf_append(&out, "|", 1);
                }
                buf_append(&out, ";", 1);
                buf_consume(&q, used);
            }
            assert_int_equal(rv, RESP_NEED_MORE);
            buf_consume(&q, used);
        }
        assert_int_equal(out.len, strlen(want));
        assert_memory_equal(out.data, want, out.len);
        assert_int_equal(q.len, 0);
        buf_close(&q);
        buf_close(&out);
        resp_parser_close(&p);
    }
}

static void inline_quoting(void **state)
{
    (void)state;
    struct {
        const char *in;
        size_t argc;
        const char *args[4];
    } cases[] = {
        {"PING\r\n", 1, {"PING"}},
        {"  set   k  v \n", 3, {"set", "k", "v"}},
        {"set \"a\\\"b\" x\r\n", 3, {"set", "a\"b", "x"}},
        {"set \"\\x41\\x4a\\n\\t\" x\r\n", 3, {"set", "AJ\n\t", "x"}},
        {"set \"\\xZZ\"\r\n", 2, {"set", "xZZ"}},
        {"set 'it\\'s' '\\n'\r\n", 3, {"set", "it's", "\\n"}},
        {"a\"b c\" d\r\n", 2, {"ab c", "d"}},
        {"get \"\"\r\n", 2, {"get", ""}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_cmd(cases[i].in, strlen(cases[i].in), cases[i].argc,
                   cases[i].args);
    }
}

/* Every prefix of a bad input is NEED_MORE or the same error, and the whole
 * input is that error.  The parser never crashes or accepts it. */
static void check_error_everywhere(const char *in, size_t len,
                                   const struct resp_limits *lim,
                                   const char *want)
{
    for (size_t k = 0; k <= len; k++) {
        struct resp_parser p;
        resp_parser_init(&p, lim, NULL);
        struct resp_cmd cmd;
        size_t used;
        int rv = resp_parse(&p, (const uint8_t *)in, k, &cmd, &used);
        if (k == len) {
            if (rv != RESP_EPROTO || strcmp(p.err, want) != 0) {
                fail_msg("input %zu bytes: rv %d err '%s', want '%s'", len, rv,
                         p.err ? p.err : "", want);
            }
            /* A spent parser stays spent. */
            assert_int_equal(
                resp_parse(&p, (const uint8_t *)in, k, &cmd, &used),
                RESP_EPROTO);
        } else if (rv == RESP_EPROTO) {
            assert_string_equal(p.err, want);
        } else {
            assert_int_equal(rv, RESP_NEED_MORE);
        }
        resp_parser_close(&p);
    }
}

static void protocol_errors(void **state)
{
    (void)state;
    struct {
        const char *in;
        const char *err;
    } cases[] = {
        {"*x\r\n", "ERR Protocol error: invalid multibulk length"},
        {"*1x\r\n", "ERR Protocol error: invalid multibulk length"},
        {"*+1\r\n", "ERR Protocol error: invalid multibulk length"},
        {"*01\r\n", "ERR Protocol error: invalid multibulk length"},
        {"*1\rx", "ERR Protocol error: invalid multibulk length"},
        {"*2000000\r\n", "ERR Protocol error: invalid multibulk length"},
        {"*99999999999999999999\r\n",
         "ERR Protocol error: invalid multibulk length"},
        {"*1\r\nx3\r\n", "ERR Protocol error: expected '$', got 'x'"},
        {"*2\r\n$1\r\na\r\n:1\r\n",
         "ERR Protocol error: expected '$', got ':'"},
        {"*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"},
        {"*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"},
        {"*1\r\n$\r\n", "ERR Protocol error: invalid bulk length"},
        {"*1\r\n$536870913\r\n", "ERR Protocol error: invalid bulk length"},
        {"*1\r\n$1\r\nab\r\n",
         "ERR Protocol error: expected CRLF after bulk data"},
        {"set \"abc\r\n", "ERR Protocol error: unbalanced quotes in request"},
        {"set 'abc\r\n", "ERR Protocol error: unbalanced quotes in request"},
        {"set \"a\"b\r\n", "ERR Protocol error: unbalanced quotes in request"},
        {"set 'a'b\r\n", "ERR Protocol error: unbalanced quotes in request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_error_everywhere(cases[i].in, strlen(cases[i].in), NULL,
                               cases[i].err);
    }
}

static void limits_enforced(void **state)
{
    (void)state;
    struct resp_limits lim = {.bulk_max = 10, .args_max = 3, .inline_max = 32};
    check_error_everywhere("*4\r\n", 4, &lim,
                           "ERR Protocol error: invalid multibulk length");
    check_error_everywhere("*1\r\n$11\r\n", 9, &lim,
                           "ERR Protocol error: invalid bulk length");
    char big[64];
    memset(big, 'a', sizeof big);
    check_error_everywhere(big, 33, &lim,
                           "ERR Protocol error: too big inline request");
    big[0] = '*';
    check_error_everywhere(big, 34, &lim,
                           "ERR Protocol error: too big mbulk count string");
    char hdr[64] = "*1\r\n$";
    memset(hdr + 5, '1', 40);
    check_error_everywhere(hdr, 45, &lim,
                           "ERR Protocol error: too big bulk count string");
    check_error_everywhere("a b c d\r\n", 9, &lim,
                           "ERR Protocol error: too many arguments in request");
    /* At the limits exactly, everything is accepted. */
    struct resp_parser p;
    resp_parser_init(&p, &lim, NULL);
    const char *ok = "*3\r\n$10\r\n0123456789\r\n$0\r\n\r\n$1\r\nx\r\n";
    struct resp_cmd cmd;
    size_t used;
    assert_int_equal(
        resp_parse(&p, (const uint8_t *)ok, strlen(ok), &cmd, &used), RESP_OK);
    assert_int_equal(cmd.argc, 3);
    resp_parser_close(&p);
}

static void claimed_lengths_not_allocated(void **state)
{
    (void)state;
    struct count_alloc c = {0};
    struct craft_alloc a = {&c, ca_malloc, ca_calloc, ca_realloc, ca_free};
    struct resp_parser p;
    resp_parser_init(&p, NULL, &a);
    /* A million arguments and a 512 MiB bulk are claimed; neither arrives. */
    const char *s = "*1000000\r\n$536870912\r\nabc";
    struct resp_cmd cmd;
    size_t used;
    assert_int_equal(resp_parse(&p, (const uint8_t *)s, strlen(s), &cmd, &used),
                     RESP_NEED_MORE);
    assert_true(c.peak_request <= 1024);
    assert_int_equal(resp_parser_pending(&p, strlen(s)), 536870912 + 2 - 3);
    resp_parser_close(&p);
}

static void random_round_trips(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed0001;
    const char *env = getenv("CRAFT_SEED");
    if (env) {
        seed = strtoull(env, NULL, 0);
    }
    printf("random_round_trips seed=%llu (replay: --seed %llu)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    struct rng r;
    rng_init(&r, seed);
    for (int iter = 0; iter < 300; iter++) {
        struct buf wire, want, got;
        buf_init(&wire);
        buf_init(&want);
        buf_init(&got);
        int ncmd = (int)rng_range(&r, 1, 6);
        for (int c = 0; c < ncmd; c++) {
            size_t argc = (size_t)rng_range(&r, 1, 6);
            uint8_t data[6][40];
            const uint8_t *argv[6];
            size_t lens[6];
            for (size_t i = 0; i < argc; i++) {
                lens[i] = (size_t)rng_range(&r, 0, 40);
                for (size_t j = 0; j < lens[i]; j++) {
                    /* Bytes that are not '|' or ';' keep the summary clear. */
                    do {
                        data[i][j] = (uint8_t)rng_next(&r);
                    } while (data[i][j] == '|' || data[i][j] == ';');
                }
                argv[i] = data[i];
                buf_append(&want, data[i], lens[i]);
                buf_append(&want, "|", 1);
            }
            buf_append(&want, ";", 1);
            assert_int_equal(resp_write_command(&wire, argc, argv, lens), 0);
        }
        const char *err = NULL;
        int rv = feed_chunks(wire.data, wire.len, &r, &got, &err);
        assert_int_equal(rv, RESP_NEED_MORE);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, got.len);
        buf_close(&wire);
        buf_close(&want);
        buf_close(&got);
    }
    /* Garbage and mutated commands: any verdict, never a crash. */
    for (int iter = 0; iter < 2000; iter++) {
        uint8_t junk[64];
        size_t n = (size_t)rng_range(&r, 1, sizeof junk);
        const char *base = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        for (size_t i = 0; i < n; i++) {
            junk[i] = i < strlen(base) && !rng_chance(&r, 100)
                          ? (uint8_t)base[i]
                          : (uint8_t)rng_next(&r);
        }
        struct buf got;
        buf_init(&got);
        const char *err = NULL;
        int rv = feed_chunks(junk, n, &r, &got, &err);
        if (rv == RESP_EPROTO) {
            assert_memory_equal(err, "ERR Protocol error: ", 20);
        }
        buf_close(&got);
    }
}

static void reply_writers(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    assert_int_equal(resp_write_simple(&b, "OK"), 0);
    assert_int_equal(resp_write_error(&b, "ERR bad"), 0);
    assert_int_equal(resp_write_int(&b, -42), 0);
    assert_int_equal(resp_write_bulk(&b, "a\r\nb", 4), 0);
    assert_int_equal(resp_write_null(&b), 0);
    assert_int_equal(resp_write_array(&b, 2), 0);
    assert_int_equal(resp_write_int(&b, 0), 0);
    assert_int_equal(resp_write_bulk(&b, "", 0), 0);
    assert_int_equal(resp_write_null_array(&b), 0);
    assert_int_equal(resp_write_errorf(&b, "ERR x %s", "a\nb\r\n"), 0);
    const char *want = "+OK\r\n-ERR bad\r\n:-42\r\n$4\r\na\r\nb\r\n$-1\r\n"
                       "*2\r\n:0\r\n$0\r\n\r\n*-1\r\n-ERR x a b\r\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    /* resp_reply_len splits the stream into the 8 values written. */
    size_t off = 0, n, count = 0;
    while (off < b.len) {
        assert_int_equal(resp_reply_len(b.data + off, b.len - off, &n),
                         RESP_OK);
        off += n;
        count++;
        /* Every strict prefix of a value needs more. */
        for (size_t k = 0; k < n; k++) {
            size_t m;
            assert_int_equal(resp_reply_len(b.data + off - n, k, &m),
                             RESP_NEED_MORE);
        }
    }
    assert_int_equal(count, 8);
    assert_int_equal(resp_reply_len((const uint8_t *)"?x\r\n", 4, &n),
                     RESP_EPROTO);
    assert_int_equal(resp_reply_len((const uint8_t *)":1x\r\n", 5, &n),
                     RESP_EPROTO);
    assert_int_equal(resp_reply_len((const uint8_t *)"$1\r\nab\r\n", 7, &n),
                     RESP_EPROTO);
    /* The extremes of the hand-written decimal headers. */
    buf_reset(&b);
    assert_int_equal(resp_write_int(&b, LLONG_MIN), 0);
    assert_int_equal(resp_write_int(&b, LLONG_MAX), 0);
    assert_int_equal(resp_write_int(&b, -1), 0);
    assert_int_equal(resp_write_int(&b, 10), 0);
    assert_int_equal(resp_write_array(&b, 1000000), 0);
    const char *ext = ":-9223372036854775808\r\n:9223372036854775807\r\n"
                      ":-1\r\n:10\r\n*1000000\r\n";
    assert_int_equal(b.len, strlen(ext));
    assert_memory_equal(b.data, ext, b.len);
    buf_close(&b);
}

static void strtoll_strict(void **state)
{
    (void)state;
    long long v;
    struct {
        const char *s;
        int ok;
        long long v;
    } cases[] = {
        {"0", 1, 0},
        {"-1", 1, -1},
        {"9223372036854775807", 1, 9223372036854775807LL},
        {"-9223372036854775808", 1, (-9223372036854775807LL - 1)},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"-0", 0, 0},
        {"01", 0, 0},
        {"+1", 0, 0},
        {" 1", 0, 0},
        {"1 ", 0, 0},
        {"", 0, 0},
        {"-", 0, 0},
        {"1.5", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rv =
            resp_strtoll((const uint8_t *)cases[i].s, strlen(cases[i].s), &v);
        assert_int_equal(rv == 0, cases[i].ok);
        if (cases[i].ok) {
            assert_true(v == cases[i].v);
        }
    }
}

/* A figure, not an assertion: pipelined parse throughput. */
static void parse_throughput(void **state)
{
    (void)state;
    enum { N = 300000 };
    struct buf wire;
    buf_init(&wire);
    for (int i = 0; i < N; i++) {
        char key[32];
        int kn = snprintf(key, sizeof key, "key:%d", i);
        const uint8_t *argv[] = {(const uint8_t *)"SET", (uint8_t *)key,
                                 (const uint8_t *)"some-value-of-24-bytes!!"};
        size_t lens[] = {3, (size_t)kn, 24};
        assert_int_equal(resp_write_command(&wire, 3, argv, lens), 0);
    }
    struct resp_parser p;
    resp_parser_init(&p, NULL, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t off = 0, n = 0, used;
    struct resp_cmd cmd;
    while (resp_parse(&p, wire.data + off, wire.len - off, &cmd, &used) ==
           RESP_OK) {
        off += used;
        n++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(n, N);
    assert_int_equal(off, wire.len);
    printf("parsed %d pipelined SETs (%.1f MiB) in %.1f ms: %.1f M cmd/s\n", N,
           (double)wire.len / 1048576.0, s * 1e3, (double)N / s / 1e6);
    resp_parser_close(&p);
    buf_close(&wire);
}

int main(int argc, char **argv)
{
    /* --seed N replays the randomised tests (same as CRAFT_SEED=N). */
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) {
        setenv("CRAFT_SEED", argv[2], 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(multibulk_basic),
        cmocka_unit_test(pipelined_in_order),
        cmocka_unit_test(every_split_position),
        cmocka_unit_test(inline_quoting),
        cmocka_unit_test(protocol_errors),
        cmocka_unit_test(limits_enforced),
        cmocka_unit_test(claimed_lengths_not_allocated),
        cmocka_unit_test(random_round_trips),
        cmocka_unit_test(reply_writers),
        cmocka_unit_test(strtoll_strict),
        cmocka_unit_test(parse_throughput),
    };
    return cmocka_run_group_tests_name("resp", tests, NULL, NULL);
}
