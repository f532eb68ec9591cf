/* Unit tests for src/kv: commands with Redis's replies, routing, the entry
 * codec, the hash table and the exactly-once sessions. */
#include "test_kv_helpers.h"

#include "kv/glob.h"
#include "kv/ht.h"
#include "util/assert.h"
#include "util/rng.h"

/* Small session limits, so that the tests reach them. */
static void small_sessions(struct kvsm_config *c)
{
    c->sessions_max = 4;
    c->session_timeout_ms = 10000;
    c->session_replies_max = 3;
}

static int setup(void **state)
{
    return kv_fixture_setup(state, small_sessions);
}

static int teardown(void **state)
{
    return kv_fixture_teardown(state);
}

static void strings_basic(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    assert_string_equal(APPLY("SET k v"), "+OK\r\n");
    assert_string_equal(APPLY("get k"), "$1\r\nv\r\n");
    assert_string_equal(READ("GET k"), "$1\r\nv\r\n");
    assert_string_equal(READ("GET nope"), "$-1\r\n");
    assert_string_equal(APPLY("APPEND k alue"), ":5\r\n");
    assert_string_equal(APPLY("APPEND new xy"), ":2\r\n");
    assert_string_equal(READ("STRLEN k"), ":5\r\n");
    assert_string_equal(READ("STRLEN nope"), ":0\r\n");
    assert_string_equal(READ("MGET k nope new"),
                        "*3\r\n$5\r\nvalue\r\n$-1\r\n$2\r\nxy\r\n");
    assert_string_equal(READ("EXISTS k k nope new"), ":3\r\n");
    assert_string_equal(READ("DBSIZE"), ":2\r\n");
    assert_string_equal(APPLY("MSET a 1 b 2"), "+OK\r\n");
    assert_string_equal(APPLY("DEL a b c a"), ":2\r\n");
    assert_string_equal(READ("DBSIZE"), ":2\r\n");
    assert_string_equal(READ("TYPE k"), "+string\r\n");
    assert_string_equal(READ("TYPE nope"), "+none\r\n");
    assert_string_equal(READ("GETRANGE k 1 -2"), "$3\r\nalu\r\n");
    assert_string_equal(READ("GETRANGE k -100 100"), "$5\r\nvalue\r\n");
    assert_string_equal(READ("GETRANGE k 3 1"), "$0\r\n\r\n");
    assert_string_equal(APPLY("GETSET k w"), "$5\r\nvalue\r\n");
    assert_string_equal(APPLY("GETDEL k"), "$1\r\nw\r\n");
    assert_string_equal(APPLY("GETDEL k"), "$-1\r\n");
    assert_string_equal(APPLY("SETNX k 1"), ":1\r\n");
    assert_string_equal(APPLY("SETNX k 2"), ":0\r\n");
    assert_string_equal(APPLY("MSETNX k 3 z 3"), ":0\r\n");
    assert_string_equal(APPLY("MSETNX y 3 z 3"), ":1\r\n");
    assert_string_equal(READ("PING"), "+PONG\r\n");
    assert_string_equal(READ("PING hi"), "$2\r\nhi\r\n");
    assert_string_equal(READ("ECHO yo"), "$2\r\nyo\r\n");
    assert_string_equal(APPLY("FLUSHALL"), "+OK\r\n");
    assert_string_equal(READ("DBSIZE"), ":0\r\n");
    assert_int_equal(kvsm_last_applied(f->sm), idx);
}

static void binary_safe_keys_and_values(void **state)
{
    struct kv_fixture *f = *state;
    const uint8_t key[] = {0, 'k', '\r', '\n', 0xff};
    const uint8_t val[] = {'v', 0, 0, '\n'};
    const uint8_t *argv[] = {(const uint8_t *)"SET", key, val};
    size_t lens[] = {3, sizeof key, sizeof val};
    assert_string_equal(kv_apply_argv(f->sm, 1, 1, NULL, 3, argv, lens),
                        "+OK\r\n");
    const uint8_t *get[] = {(const uint8_t *)"GET", key};
    size_t glens[] = {3, sizeof key};
    struct buf r;
    buf_init(&r);
    assert_int_equal(kvsm_read(f->sm, 2, get, glens, &r), 0);
    assert_int_equal(r.len, 4 + 4 + 2);
    assert_memory_equal(r.data, "$4\r\nv\0\0\n\r\n", 10);
    /* The key with its last byte cut is a different key. */
    glens[1]--;
    buf_reset(&r);
    assert_int_equal(kvsm_read(f->sm, 2, get, glens, &r), 0);
    assert_memory_equal(r.data, "$-1\r\n", 5);
    buf_close(&r);
}

static void integers_like_redis(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1;
    assert_string_equal(APPLY("INCR n"), ":1\r\n");
    assert_string_equal(APPLY("INCRBY n 41"), ":42\r\n");
    assert_string_equal(APPLY("DECR n"), ":41\r\n");
    assert_string_equal(APPLY("DECRBY n 50"), ":-9\r\n");
    assert_string_equal(READ("GET n"), "$2\r\n-9\r\n");
    const char *not_int = "-ERR value is not an integer or out of range\r\n";
    assert_string_equal(APPLY("SET s abc"), "+OK\r\n");
    assert_string_equal(APPLY("INCR s"), not_int);
    assert_string_equal(APPLY("SET s 007"), "+OK\r\n");
    assert_string_equal(APPLY("INCR s"), not_int);
    assert_string_equal(APPLY("INCRBY n x"), not_int);
    assert_string_equal(APPLY("INCRBY n 1.5"), not_int);
    assert_string_equal(APPLY("INCRBY n 99999999999999999999"), not_int);
    assert_string_equal(APPLY("SET m 9223372036854775807"), "+OK\r\n");
    assert_string_equal(APPLY("INCR m"),
                        "-ERR increment or decrement would overflow\r\n");
    assert_string_equal(APPLY("SET m -9223372036854775808"), "+OK\r\n");
    assert_string_equal(APPLY("DECR m"),
                        "-ERR increment or decrement would overflow\r\n");
    assert_string_equal(APPLY("DECRBY n -9223372036854775808"),
                        "-ERR decrement would overflow\r\n");
    /* Failed increments leave the value alone. */
    assert_string_equal(READ("GET m"), "$20\r\n-9223372036854775808\r\n");
    assert_string_equal(READ("GET n"), "$2\r\n-9\r\n");
}

static void errors_like_redis(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1;
    assert_string_equal(APPLY("GET"), "-ERR wrong number of arguments for "
                                      "'get' command\r\n");
    assert_string_equal(APPLY("get a b"), "-ERR wrong number of arguments "
                                          "for 'get' command\r\n");
    assert_string_equal(APPLY("MSET a 1 b"), "-ERR wrong number of "
                                             "arguments for 'mset' "
                                             "command\r\n");
    assert_string_equal(APPLY("FOO a b"), "-ERR unknown command 'FOO', with "
                                          "args beginning with: 'a' 'b' "
                                          "\r\n");
    assert_string_equal(APPLY("FOO"), "-ERR unknown command 'FOO', with "
                                      "args beginning with: \r\n");
    assert_string_equal(APPLY("SET k v NX XX"), "-ERR syntax error\r\n");
    assert_string_equal(APPLY("SET k v EX"), "-ERR syntax error\r\n");
    assert_string_equal(APPLY("SET k v BOGUS"), "-ERR syntax error\r\n");
    assert_string_equal(APPLY("SET k v EX 0"),
                        "-ERR invalid expire time in 'set' command\r\n");
    assert_string_equal(APPLY("SET k v EX 1 PX 1"), "-ERR syntax error\r\n");
    assert_string_equal(APPLY("SET k v EX x"),
                        "-ERR value is not an integer or out of range\r\n");
    assert_string_equal(READ("DBSIZE"), ":0\r\n");
    /* A write command on the read path is refused. */
    assert_string_equal(kv_read(f->sm, "SET k v", CRAFT_EINVAL),
                        "-ERR 'set' is not a read-only command\r\n");
}

static void set_options(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1;
    assert_string_equal(APPLY("SET k v XX"), "$-1\r\n");
    assert_string_equal(APPLY("SET k v NX"), "+OK\r\n");
    assert_string_equal(APPLY("SET k w NX"), "$-1\r\n");
    assert_string_equal(APPLY("SET k w xx get"), "$1\r\nv\r\n");
    assert_string_equal(APPLY("SET k x NX GET"), "$1\r\nw\r\n");
    assert_string_equal(READ("GET k"), "$1\r\nw\r\n");
    assert_string_equal(APPLY("SET j x GET"), "$-1\r\n");
    assert_string_equal(READ("GET j"), "$1\r\nx\r\n");
}

static void rename_setrange_incrbyfloat(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    assert_string_equal(APPLY("RENAME a b"), "-ERR no such key\r\n");
    assert_string_equal(APPLY("SET a 1 PX 100"), "+OK\r\n");
    assert_string_equal(APPLY("SET b 2"), "+OK\r\n");
    assert_string_equal(APPLY("RENAMENX a b"), ":0\r\n");
    assert_string_equal(APPLY("RENAME a b"), "+OK\r\n");
    assert_string_equal(READ("GET b"), "$1\r\n1\r\n");
    assert_string_equal(READ("PTTL b"), ":100\r\n");
    assert_string_equal(READ("EXISTS a"), ":0\r\n");
    assert_string_equal(APPLY("RENAME b b"), "+OK\r\n");
    assert_string_equal(APPLY("RENAMENX b c"), ":1\r\n");
    assert_string_equal(READ("DBSIZE"), ":1\r\n");
    assert_string_equal(APPLY("SETRANGE s 3 ab"), ":5\r\n");
    assert_memory_equal(READ("GET s"), "$5\r\n\0\0\0ab\r\n", 11);
    assert_string_equal(APPLY("SETRANGE s 1 xyzw"), ":5\r\n");
    assert_string_equal(APPLY("SETRANGE s -1 x"),
                        "-ERR offset is out of range\r\n");
    assert_string_equal(APPLY("SETRANGE s 536870911 xy"),
                        "-ERR string exceeds maximum allowed size "
                        "(proto-max-bulk-len)\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f 10.5"), "$4\r\n10.5\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f 0.1"), "$4\r\n10.6\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f -10.6"), "$1\r\n0\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f 5.0e3"), "$4\r\n5000\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f x"),
                        "-ERR value is not a valid float\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f nan"),
                        "-ERR value is not a valid float\r\n");
    assert_string_equal(APPLY("INCRBYFLOAT f inf"),
                        "-ERR increment would produce NaN or Infinity\r\n");
    assert_string_equal(READ("GET f"), "$4\r\n5000\r\n");
}

static void key_expiry_by_leader_time(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    assert_string_equal(APPLY("SET k v PX 100"), "+OK\r\n");
    assert_string_equal(APPLY("SET j v EX 10"), "+OK\r\n");
    assert_string_equal(READ("PTTL k"), ":100\r\n");
    assert_string_equal(READ("TTL j"), ":10\r\n");
    assert_string_equal(READ("TTL nope"), ":-2\r\n");
    now = 1099;
    assert_string_equal(APPLY("SET other x"), "+OK\r\n");
    assert_string_equal(READ("GET k"), "$1\r\nv\r\n");
    assert_string_equal(READ("PTTL k"), ":1\r\n");
    /* A later entry stamped by a leader whose clock is behind does not
     * move the state's clock back. */
    now = 500;
    assert_string_equal(APPLY("SET other y"), "+OK\r\n");
    assert_int_equal(kvsm_now_ms(f->sm), 1099);
    now = 1100;
    assert_string_equal(APPLY("SET other z"), "+OK\r\n");
    assert_string_equal(READ("GET k"), "$-1\r\n");
    assert_string_equal(READ("EXISTS k"), ":0\r\n");
    assert_string_equal(APPLY("APPEND k w"), ":1\r\n");
    assert_string_equal(READ("TTL k"), ":-1\r\n");
    assert_string_equal(APPLY("EXPIRE k 5"), ":1\r\n");
    assert_string_equal(APPLY("INCR n"), ":1\r\n");
    assert_string_equal(READ("TTL k"), ":5\r\n");
    assert_string_equal(APPLY("PERSIST k"), ":1\r\n");
    assert_string_equal(APPLY("PERSIST k"), ":0\r\n");
    assert_string_equal(APPLY("EXPIRE nope 5"), ":0\r\n");
    assert_string_equal(APPLY("EXPIRE k 5 NX"), ":1\r\n");
    assert_string_equal(APPLY("EXPIRE k 6 NX"), ":0\r\n");
    assert_string_equal(APPLY("EXPIRE k 9 GT"), ":1\r\n");
    assert_string_equal(APPLY("EXPIRE k 7 GT"), ":0\r\n");
    assert_string_equal(APPLY("EXPIRE k 7 lt"), ":1\r\n");
    assert_string_equal(READ("TTL k"), ":7\r\n");
    assert_string_equal(APPLY("EXPIRE k 7 NX XX"),
                        "-ERR NX and XX, GT or LT options at the same time "
                        "are not compatible\r\n");
    assert_string_equal(APPLY("EXPIRE k 7 GT LT"),
                        "-ERR GT and LT options at the same time are not "
                        "compatible\r\n");
    assert_string_equal(APPLY("EXPIRE k 7 FOO"),
                        "-ERR Unsupported option FOO\r\n");
    assert_string_equal(APPLY("EXPIRE k 9223372036854775807"),
                        "-ERR invalid expire time in 'expire' command\r\n");
    assert_string_equal(APPLY("PERSIST k"), ":1\r\n");
    assert_string_equal(APPLY("EXPIRE k 5 XX"), ":0\r\n");
    assert_string_equal(APPLY("EXPIRE k 5 LT"), ":1\r\n");
    assert_string_equal(APPLY("PEXPIRE k 0"), ":1\r\n");
    assert_string_equal(READ("GET k"), "$-1\r\n");
    /* KEEPTTL and INCR keep the expiry; a plain SET clears it. */
    assert_string_equal(APPLY("SET t 1 PX 50"), "+OK\r\n");
    assert_string_equal(APPLY("INCR t"), ":2\r\n");
    assert_string_equal(APPLY("SET t 5 KEEPTTL"), "+OK\r\n");
    assert_string_equal(READ("PTTL t"), ":50\r\n");
    assert_string_equal(APPLY("SET t 6"), "+OK\r\n");
    assert_string_equal(READ("PTTL t"), ":-1\r\n");
    assert_string_equal(APPLY("SET u 1 PXAT 1200"), "+OK\r\n");
    assert_string_equal(READ("PTTL u"), ":100\r\n");
}

static void classify_routes(void **state)
{
    (void)state;
    struct {
        const char *line;
        enum kvsm_class cls;
        size_t off;
        int session;
        uint64_t fu;
        const char *err;
    } cases[] = {
        {"GET k", KVSM_READ, 0, 0, 0, NULL},
        {"mget a b", KVSM_READ, 0, 0, 0, NULL},
        {"SET k v", KVSM_WRITE, 0, 0, 0, NULL},
        {"PING", KVSM_LOCAL, 0, 0, 0, NULL},
        {"CRAFT.SESSION", KVSM_WRITE, 0, 0, 0, NULL},
        {"craft.exec 7 3 GET k", KVSM_READ, 3, 1, 3, NULL},
        {"CRAFT.EXEC 7 3 SET k v", KVSM_WRITE, 3, 1, 3, NULL},
        {"CRAFT.EXEC 7 9 4 INCR k", KVSM_WRITE, 4, 1, 4, NULL},
        {"NOPE", KVSM_REJECT, 0, 0, 0,
         "-ERR unknown command 'NOPE', with args beginning with: \r\n"},
        {"SET k", KVSM_REJECT, 0, 0, 0,
         "-ERR wrong number of arguments for 'set' command\r\n"},
        {"CRAFT.EXEC 0 1 GET k", KVSM_REJECT, 0, 0, 0,
         "-ERR CRAFT.EXEC: invalid session id\r\n"},
        {"CRAFT.EXEC 1 -1 GET k", KVSM_REJECT, 0, 0, 0,
         "-ERR CRAFT.EXEC: invalid sequence number\r\n"},
        {"CRAFT.EXEC 1 3 4 GET k", KVSM_REJECT, 0, 0, 0,
         "-ERR CRAFT.EXEC: first-unacked must be in [1, seq]\r\n"},
        {"CRAFT.EXEC 1 3 2", KVSM_REJECT, 0, 0, 0,
         "-ERR wrong number of arguments for 'craft.exec' command\r\n"},
        {"CRAFT.EXEC 1 3 GET", KVSM_REJECT, 0, 0, 0,
         "-ERR wrong number of arguments for 'get' command\r\n"},
        {"CRAFT.EXEC 1 3 CRAFT.SESSION", KVSM_REJECT, 0, 0, 0,
         "-ERR CRAFT.EXEC cannot wrap craft.session\r\n"},
        {"multi", KVSM_TX, 0, 0, 0, NULL},
        {"EXEC", KVSM_TX, 0, 0, 0, NULL},
        {"DISCARD", KVSM_TX, 0, 0, 0, NULL},
        {"CRAFT.EXEC 7 5 EXEC", KVSM_TX, 3, 1, 5, NULL},
        {"CRAFT.EXEC 7 5 MULTI", KVSM_REJECT, 0, 0, 0,
         "-ERR CRAFT.EXEC cannot wrap multi\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct words w;
        words_split(&w, cases[i].line);
        struct kvsm_route r;
        struct buf err;
        buf_init(&err);
        assert_int_equal(kvsm_classify(w.argc, w.argv, w.lens, &r, &err), 0);
        if (r.cls != cases[i].cls) {
            fail_msg("%s: class %d, want %d", cases[i].line, r.cls,
                     cases[i].cls);
        }
        if (cases[i].err) {
            assert_int_equal(err.len, strlen(cases[i].err));
            assert_memory_equal(err.data, cases[i].err, err.len);
        } else {
            assert_int_equal(err.len, 0);
            assert_int_equal(r.cmd_offset, cases[i].off);
            assert_int_equal(r.has_session, cases[i].session);
            if (cases[i].session) {
                assert_int_equal(r.s.id, 7);
                assert_int_equal(r.s.first_unacked, cases[i].fu);
            }
        }
        buf_close(&err);
    }
}

static void entry_codec_strict(void **state)
{
    (void)state;
    const uint8_t *argv[] = {(const uint8_t *)"SET", (const uint8_t *)"k",
                             (const uint8_t *)""};
    size_t lens[] = {3, 1, 0};
    struct kvsm_session_ref s = {11, 22, 20};
    for (int with = 0; with < 2; with++) {
        struct buf e;
        buf_init(&e);
        assert_int_equal(
            kvsm_cmd_encode(77, with ? &s : NULL, 3, argv, lens, &e), 0);
        struct kvsm_cmd c;
        assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), 0);
        assert_int_equal(c.time_ms, 77);
        assert_int_equal(c.has_session, with);
        if (with) {
            assert_int_equal(c.s.id, 11);
            assert_int_equal(c.s.seq, 22);
            assert_int_equal(c.s.first_unacked, 20);
        }
        assert_int_equal(c.argc, 3);
        assert_int_equal(c.n_cmds, 1);
        assert_false(c.multi);
        size_t off = 0;
        assert_int_equal(kvsm_cmd_next(&c, &off), 3);
        for (size_t i = 0; i < 3; i++) {
            const uint8_t *p;
            size_t n;
            kvsm_cmd_arg(&c, &off, &p, &n);
            assert_int_equal(n, lens[i]);
            assert_memory_equal(p, argv[i], n);
        }
        /* Every truncation and one trailing byte are corrupt. */
        for (size_t k = 0; k < e.len; k++) {
            assert_int_equal(kvsm_cmd_decode(e.data, k, &c),
                             k == 0 ? CRAFT_ECORRUPT : CRAFT_ECORRUPT);
        }
        buf_append(&e, "x", 1);
        assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), CRAFT_ECORRUPT);
        e.len--;
        e.data[1] |= 0x80; /* a reserved flag bit */
        assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), CRAFT_ECORRUPT);
        e.data[1] &= 0x7f;
        e.data[0] = KVSM_ENTRY_VERSION + 1;
        assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), CRAFT_EVERSION);
        e.data[0] = 1; /* version 1 entries, in older logs, still decode */
        assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), 0);
        buf_close(&e);
    }
    /* No arguments: refused by the encoder and the decoder. */
    struct buf e;
    buf_init(&e);
    assert_int_equal(kvsm_cmd_encode(1, NULL, 0, argv, lens, &e), CRAFT_EINVAL);
    const uint8_t zero_args[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct kvsm_cmd c;
    assert_int_equal(kvsm_cmd_decode(zero_args, sizeof zero_args, &c),
                     CRAFT_ECORRUPT);
    /* A length that points past the end. */
    const uint8_t past[] = {1, 0, 0, 0, 0,    0,    0, 0, 0,  0,
                            1, 0, 0, 0, 0xff, 0xff, 0, 0, 'a'};
    assert_int_equal(kvsm_cmd_decode(past, sizeof past, &c), CRAFT_ECORRUPT);
    buf_close(&e);
}

static void entry_fuzz_never_crashes(void **state)
{
    struct kv_fixture *f = *state;
    struct rng r;
    rng_init(&r, test_seed("entry_fuzz_never_crashes", 99));
    const uint8_t *argv[] = {(const uint8_t *)"INCRBY", (const uint8_t *)"k",
                             (const uint8_t *)"5"};
    size_t lens[] = {6, 1, 1};
    struct buf e, reply;
    buf_init(&e);
    buf_init(&reply);
    uint64_t idx = 0;
    for (int i = 0; i < 20000; i++) {
        buf_reset(&e);
        struct kvsm_session_ref s = {1, 1, 1};
        kvsm_cmd_encode(1, rng_chance(&r, 500) ? &s : NULL, 3, argv, lens, &e);
        int flips = (int)rng_range(&r, 1, 4);
        for (int k = 0; k < flips; k++) {
            e.data[rng_range(&r, 0, e.len)] ^= (uint8_t)rng_range(&r, 1, 256);
        }
        e.len = (size_t)rng_range(&r, e.len / 2, e.len + 1);
        buf_reset(&reply);
        int rv = kvsm_apply(f->sm, ++idx, e.data, e.len, &reply);
        assert_true(rv == 0 || rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION);
        if (rv != 0) {
            assert_int_equal(reply.len, 0);
            idx--;
        }
    }
    assert_true(kvsm_check(f->sm));
    buf_close(&e);
    buf_close(&reply);
}

static const char *apply_multi(struct kvsm *sm, uint64_t index,
                               const struct kvsm_session_ref *s, size_t n,
                               const char *const *lines)
{
    static char out[4096];
    struct words w[8];
    struct kvsm_argv cmds[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        words_split(&w[i], lines[i]);
        cmds[i] = (struct kvsm_argv){w[i].argc, w[i].argv, w[i].lens};
    }
    struct buf e, r;
    buf_init(&e);
    buf_init(&r);
    assert_int_equal(kvsm_multi_encode(1, s, n, cmds, &e), 0);
    struct kvsm_cmd c;
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), 0);
    assert_true(c.multi);
    assert_int_equal(c.n_cmds, n);
    /* Every truncation of a transaction entry is corrupt too. */
    for (size_t k = 0; k < e.len; k++) {
        assert_int_equal(kvsm_cmd_decode(e.data, k, &c), CRAFT_ECORRUPT);
    }
    assert_int_equal(kvsm_apply(sm, index, e.data, e.len, &r), 0);
    assert_true(r.len < sizeof out);
    memcpy(out, r.data, r.len);
    out[r.len] = '\0';
    buf_close(&e);
    buf_close(&r);
    return out;
}

static void multi_exec_is_one_entry(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1;
    const char *tx[] = {"SET a 1", "INCR a",        "INCR s",
                        "GET a",   "CRAFT.SESSION", "SET s x"};
    APPLY("SET s notanumber");
    assert_string_equal(
        apply_multi(f->sm, ++idx, NULL, 6, tx),
        "*6\r\n+OK\r\n:2\r\n-ERR value is not an integer or out of "
        "range\r\n$1\r\n2\r\n-ERR craft.session is not allowed inside "
        "MULTI\r\n+OK\r\n");
    assert_string_equal(READ("MGET a s"), "*2\r\n$1\r\n2\r\n$1\r\nx\r\n");
    /* Under a session, the whole transaction runs once. */
    assert_string_equal(APPLY("CRAFT.SESSION"), ":3\r\n");
    const char *incr[] = {"INCR a", "INCR a"};
    struct kvsm_session_ref s = {3, 1, 1};
    assert_string_equal(apply_multi(f->sm, ++idx, &s, 2, incr),
                        "*2\r\n:3\r\n:4\r\n");
    assert_string_equal(apply_multi(f->sm, ++idx, &s, 2, incr),
                        "*2\r\n:3\r\n:4\r\n");
    assert_string_equal(READ("GET a"), "$1\r\n4\r\n");
    /* Transaction control never reaches the state machine as a command. */
    assert_string_equal(APPLY("EXEC"),
                        "-ERR EXEC must be handled by the connection\r\n");
    struct buf e;
    buf_init(&e);
    assert_int_equal(kvsm_multi_encode(1, NULL, 0, NULL, &e), CRAFT_EINVAL);
    buf_close(&e);
}

/* ---- sessions ---- */

static void session_exactly_once(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    assert_string_equal(APPLY("CRAFT.SESSION"), ":1\r\n");
    uint64_t id = 1;
    assert_string_equal(kv_exec(f->sm, ++idx, now, id, 1, 1, "INCR n"),
                        ":1\r\n");
    /* The same request again, say retried at another node after a leader
     * change: the saved reply, and the counter does not move. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, id, 1, 1, "INCR n"),
                        ":1\r\n");
    assert_string_equal(READ("GET n"), "$1\r\n1\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, id, 2, 2, "INCR n"),
                        ":2\r\n");
    /* seq 1 is acknowledged now: a late duplicate gets an error, and is
     * never run again. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, id, 1, 1, "INCR n"),
                        "-STALESEQ seq 1 of session 1 was acknowledged and "
                        "its reply discarded\r\n");
    assert_string_equal(READ("GET n"), "$1\r\n2\r\n");
    /* Error replies are saved too. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, id, 3, 3, "INCR n x"),
                        "-ERR wrong number of arguments for 'incr' "
                        "command\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, id, 3, 3, "INCR n x"),
                        "-ERR wrong number of arguments for 'incr' "
                        "command\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 99, 1, 1, "INCR n"),
                        "-NOSESSION session 99 is unknown or has expired; "
                        "open a new one with CRAFT.SESSION\r\n");
    assert_string_equal(READ("GET n"), "$1\r\n2\r\n");
    assert_int_equal(kvsm_session_count(f->sm), 1);
}

static void session_pipelining(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1;
    assert_string_equal(APPLY("CRAFT.SESSION"), ":1\r\n");
    /* Three requests in flight; the client still awaits seq 1. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 1, 1, "APPEND s a"),
                        ":1\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 3, 1, "APPEND s c"),
                        ":2\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 2, 1, "APPEND s b"),
                        ":3\r\n");
    /* Retries of all three, in any order: the saved replies. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 2, 1, "APPEND s b"),
                        ":3\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 1, 1, "APPEND s a"),
                        ":1\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 3, 1, "APPEND s c"),
                        ":2\r\n");
    /* The window (replies_max = 3) is full until the client acknowledges:
     * the request is refused, not run. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 4, 1, "APPEND s d"),
                        "-SESSIONFULL session 1 holds 3 unacknowledged "
                        "replies (12 bytes); raise first-unacked before "
                        "sending more\r\n");
    assert_string_equal(READ("GET s"), "$3\r\nacb\r\n");
    /* Acknowledging 1..2 frees room; 3 is still retrievable. */
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 4, 3, "APPEND s d"),
                        ":4\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 3, 3, "APPEND s c"),
                        ":2\r\n");
    assert_string_equal(READ("GET s"), "$4\r\nacbd\r\n");
}

/* The bytes of saved replies are bounded too. */
static void session_bytes_bounded(void **state)
{
    (void)state;
    struct kvsm_config c;
    kvsm_config_default(&c);
    c.session_bytes_max = 64;
    struct kvsm *sm;
    assert_int_equal(kvsm_new(&c, &sm), 0);
    uint64_t idx = 0;
    assert_string_equal(kv_apply(sm, ++idx, 1, "CRAFT.SESSION"), ":1\r\n");
    char line[128];
    snprintf(line, sizeof line, "SET big %070d", 7);
    kv_apply(sm, ++idx, 1, line);
    assert_string_equal(kv_exec(sm, ++idx, 1, 1, 1, 1, "GET big"),
                        "$70\r\n0000000000000000000000000000000000000000000000"
                        "000000000000000000000007\r\n");
    /* 77 bytes saved >= 64: refused until acknowledged. */
    const char *full = kv_exec(sm, ++idx, 1, 1, 2, 1, "INCR n");
    assert_memory_equal(full,
                        "-SESSIONFULL session 1 holds 1 unacknowledged "
                        "replies (77 bytes)",
                        64);
    assert_string_equal(kv_exec(sm, ++idx, 1, 1, 2, 2, "INCR n"), ":1\r\n");
    assert_true(kvsm_check(sm));
    kvsm_free(sm);
}

static void session_expiry_and_eviction(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    /* timeout 10 s, at most 4 sessions. */
    assert_string_equal(APPLY("CRAFT.SESSION"), ":1\r\n");
    now = 2000;
    assert_string_equal(APPLY("CRAFT.SESSION"), ":2\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, 1, 1, 1, "SET a 1"),
                        "+OK\r\n");
    /* Session 2 was used at 2000: still alive at 11999, gone at 12000. */
    now = 11999;
    assert_string_equal(APPLY("PING"), "+PONG\r\n");
    assert_int_equal(kvsm_session_count(f->sm), 2);
    now = 12000;
    assert_string_equal(APPLY("PING"), "+PONG\r\n");
    assert_int_equal(kvsm_session_count(f->sm), 0);
    assert_string_equal(kv_exec(f->sm, ++idx, now, 2, 1, 1, "SET a 2"),
                        "-NOSESSION session 2 is unknown or has expired; "
                        "open a new one with CRAFT.SESSION\r\n");
    assert_string_equal(READ("GET a"), "$1\r\n1\r\n");
    /* A full table evicts the least recently used session. */
    uint64_t ids[5];
    for (int i = 0; i < 4; i++) {
        now++;
        APPLY("CRAFT.SESSION");
        ids[i] = idx;
    }
    now++;
    kv_exec(f->sm, ++idx, now, ids[0], 1, 1, "SET b 1"); /* 0 is fresh */
    now++;
    APPLY("CRAFT.SESSION");
    ids[4] = idx;
    assert_int_equal(kvsm_session_count(f->sm), 4);
    const char *gone = kv_exec(f->sm, ++idx, now, ids[1], 1, 1, "SET c 1");
    assert_memory_equal(gone, "-NOSESSION", 10);
    assert_string_equal(kv_exec(f->sm, ++idx, now, ids[0], 2, 2, "SET c 1"),
                        "+OK\r\n");
    assert_string_equal(kv_exec(f->sm, ++idx, now, ids[4], 1, 1, "SET d 1"),
                        "+OK\r\n");
}

/* Two replicas with different hash seeds (different internal layouts) fed
 * the same random log produce byte-identical replies. */
static void replicas_agree(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, test_seed("replicas_agree", 7));
    struct kvsm_config c;
    kvsm_config_default(&c);
    c.sessions_max = 8;
    c.session_timeout_ms = 500;
    c.session_replies_max = 4;
    struct kvsm *a, *b;
    assert_int_equal(kvsm_new(&c, &a), 0);
    c.hash_seed[0] = 42;
    assert_int_equal(kvsm_new(&c, &b), 0);
    static const char *ops[] = {"SET",  "APPEND", "INCR",   "DEL",   "GET",
                                "MSET", "SETNX",  "EXPIRE", "GETDEL"};
    uint64_t now = 0;
    for (uint64_t idx = 1; idx <= 20000; idx++) {
        now += rng_range(&r, 0, 20);
        char line[128];
        int k1 = (int)rng_range(&r, 0, 50), k2 = (int)rng_range(&r, 0, 50);
        const char *op = ops[rng_range(&r, 0, CRAFT_ARRAY_LEN(ops))];
        if (rng_chance(&r, 20)) {
            snprintf(line, sizeof line, "CRAFT.SESSION");
        } else if (strcmp(op, "MSET") == 0) {
            snprintf(line, sizeof line, "MSET k%d %d k%d x", k1, k2, k2);
        } else if (strcmp(op, "EXPIRE") == 0) {
            snprintf(line, sizeof line, "EXPIRE k%d %d", k1, k2 % 3);
        } else if (strcmp(op, "INCR") == 0 || strcmp(op, "GET") == 0 ||
                   strcmp(op, "GETDEL") == 0) {
            snprintf(line, sizeof line, "%s k%d", op, k1);
        } else {
            snprintf(line, sizeof line, "%s k%d %d", op, k1, k2);
        }
        char ra[4096];
        if (rng_chance(&r, 300) && idx > 1) {
            uint64_t id = rng_range(&r, 1, idx);
            uint64_t seq = rng_range(&r, 1, 10);
            uint64_t fu = rng_range(&r, 1, seq + 1);
            snprintf(ra, sizeof ra, "%s",
                     kv_exec(a, idx, now, id, seq, fu, line));
            assert_string_equal(ra, kv_exec(b, idx, now, id, seq, fu, line));
        } else {
            snprintf(ra, sizeof ra, "%s", kv_apply(a, idx, now, line));
            assert_string_equal(ra, kv_apply(b, idx, now, line));
        }
        if (idx % 1000 == 0) {
            assert_true(kvsm_check(a));
            assert_true(kvsm_check(b));
        }
    }
    assert_int_equal(kvsm_key_count(a), kvsm_key_count(b));
    assert_int_equal(kvsm_session_count(a), kvsm_session_count(b));
    kvsm_free(a);
    kvsm_free(b);
}

/* ---- the hash table ---- */

static void ht_matches_reference(void **state)
{
    (void)state;
    struct test_alloc ta = {0};
    struct craft_alloc al = test_alloc_of(&ta);
    struct ht h;
    assert_int_equal(ht_init(&h, &al, 1, 2), 0);
    struct rng r;
    rng_init(&r, test_seed("ht_matches_reference", 3));
    enum { N = 3000 };
    static int present[N];
    static int value[N];
    memset(present, 0, sizeof present);
    size_t count = 0;
    for (int step = 0; step < 200000; step++) {
        /* Phases of growth and shrinkage exercise both resizes. */
        int grow = (step / 40000) % 2 == 0;
        int k = (int)rng_range(&r, 0, N);
        char key[16];
        int kn = snprintf(key, sizeof key, "key:%d", k);
        if (rng_chance(&r, grow ? 700 : 250)) {
            struct ht_entry *e;
            int created;
            assert_int_equal(ht_upsert(&h, key, (size_t)kn, &e, &created), 0);
            assert_int_equal(created, !present[k]);
            count += created;
            present[k] = 1;
            value[k] = step;
            assert_int_equal(ht_entry_set(&h, e, &step, sizeof step), 0);
        } else {
            int had = ht_delete(&h, key, (size_t)kn);
            assert_int_equal(had, present[k]);
            count -= (size_t)had;
            present[k] = 0;
        }
        assert_int_equal(ht_count(&h), count);
        struct ht_entry *e = ht_find(&h, key, (size_t)kn);
        assert_int_equal(e != NULL, present[k]);
        if (e) {
            assert_memory_equal(e->val, &value[k], sizeof(int));
        }
        if (step % 5000 == 0) {
            assert_true(ht_check(&h));
            size_t seen = 0;
            struct ht_iter it;
            ht_iter_init(&it, &h);
            while (ht_iter_next(&it)) {
                seen++;
            }
            assert_int_equal(seen, count);
        }
    }
    /* After shrinking, the table is sized for what it holds. */
    assert_true(ht_check(&h));
    ht_close(&h);
    assert_int_equal(ta.live, 0);
}

static void glob_patterns(void **state)
{
    (void)state;
    struct {
        const char *p, *s;
        int want;
    } cases[] = {
        {"*", "", 1},
        {"*", "abc", 1},
        {"", "", 1},
        {"", "a", 0},
        {"a*", "abc", 1},
        {"*c", "abc", 1},
        {"a*c", "abbbc", 1},
        {"a*c", "abbb", 0},
        {"a?c", "abc", 1},
        {"a?c", "ac", 0},
        {"[abc]x", "bx", 1},
        {"[^abc]x", "bx", 0},
        {"[^abc]x", "dx", 1},
        {"[a-c]", "b", 1},
        {"[c-a]", "b", 1},
        {"[a-c]", "d", 0},
        {"\\*", "*", 1},
        {"\\*", "a", 0},
        {"a\\", "a\\", 1},
        {"[\\]]", "]", 1},
        {"[abc", "b", 1},
        {"[abc", "d", 0},
        {"*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaa", 0},
        {"h*llo", "hello", 1},
        {"h[ae]llo", "hallo", 1},
        {"user:*:name", "user:42:name", 1},
        {"**a", "ba", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got =
            kvsm__glob_match((const uint8_t *)cases[i].p, strlen(cases[i].p),
                             (const uint8_t *)cases[i].s, strlen(cases[i].s));
        if (got != cases[i].want) {
            fail_msg("'%s' vs '%s': %d", cases[i].p, cases[i].s, got);
        }
    }
}

struct scan_seen {
    int *seen;
};

static void scan_mark(void *ctx, const struct ht_entry *e)
{
    struct scan_seen *s = ctx;
    char key[16];
    snprintf(key, sizeof key, "%.*s", (int)e->key_len, (const char *)e->key);
    int k = atoi(key + 1);
    s->seen[k]++;
}

/* A full SCAN returns every key present throughout it, however the table
 * grows, shrinks or rehashes between steps. */
static void ht_scan_survives_resizes(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, test_seed("ht_scan_survives_resizes", 8));
    enum { N = 4000 };
    static int present[N], stable[N], seen[N];
    for (int round = 0; round < 20; round++) {
        struct ht h;
        assert_int_equal(ht_init(&h, NULL, round, 2), 0);
        memset(present, 0, sizeof present);
        char key[16];
        for (int i = 0; i < N; i++) {
            if (rng_chance(&r, 500)) {
                int n = snprintf(key, sizeof key, "k%d", i);
                struct ht_entry *e;
                int created;
                ht_upsert(&h, key, (size_t)n, &e, &created);
                present[i] = 1;
            }
        }
        memcpy(stable, present, sizeof stable);
        memset(seen, 0, sizeof seen);
        struct scan_seen ss = {seen};
        uint64_t cursor = 0;
        int grow = round % 2;
        do {
            cursor = ht_scan(&h, cursor, scan_mark, &ss);
            for (int j = 0; j < 8; j++) {
                int k = (int)rng_range(&r, 0, N);
                int n = snprintf(key, sizeof key, "k%d", k);
                if (grow ? rng_chance(&r, 800) : rng_chance(&r, 200)) {
                    struct ht_entry *e;
                    int created;
                    ht_upsert(&h, key, (size_t)n, &e, &created);
                    present[k] = 1;
                } else {
                    ht_delete(&h, key, (size_t)n);
                    present[k] = 0;
                    stable[k] = 0;
                }
            }
        } while (cursor != 0);
        for (int i = 0; i < N; i++) {
            if (stable[i] && present[i] && seen[i] == 0) {
                fail_msg("round %d: key k%d missed", round, i);
            }
        }
        ht_close(&h);
    }
}

static void keys_and_scan_commands(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    char line[64];
    for (int i = 0; i < 300; i++) {
        snprintf(line, sizeof line, "SET %s:%d v", i % 3 ? "user" : "item", i);
        APPLY(line);
    }
    APPLY("SET gone v PX 5");
    now = 2000;
    APPLY("PING");
    const char *r = READ("KEYS item:1*");
    /* item:12, item:15, item:18, and item:102 ... item:198 */
    assert_memory_equal(r, "*", 1);
    assert_int_equal(atoi(r + 1), 3 + 33);
    assert_string_equal(READ("KEYS gone"), "*0\r\n");
    assert_string_equal(READ("SCAN x"), "-ERR invalid cursor\r\n");
    assert_string_equal(READ("SCAN 0 COUNT 0"), "-ERR syntax error\r\n");
    assert_string_equal(READ("SCAN 0 COUNT"), "-ERR syntax error\r\n");
    assert_string_equal(READ("SCAN 0 BOGUS 1"), "-ERR syntax error\r\n");
    assert_string_equal(READ("SCAN 0 TYPE hash"), READ("SCAN 0 TYPE hash"));
    /* A full scan with MATCH finds the 100 items exactly once each here
     * (no resizes in between). */
    uint64_t cursor = 0;
    int items = 0, steps = 0;
    do {
        snprintf(line, sizeof line, "SCAN %llu MATCH item:* COUNT 7",
                 (unsigned long long)cursor);
        const char *rep = READ(line);
        assert_memory_equal(rep, "*2\r\n$", 5);
        const char *c = strchr(rep + 5, '\n') + 1;
        cursor = strtoull(c, NULL, 10);
        const char *arr = strchr(c, '\n') + 1;
        assert_int_equal(arr[0], '*');
        items += atoi(arr + 1);
        steps++;
    } while (cursor != 0);
    assert_int_equal(items, 100);
    assert_true(steps > 5);
}

/* FLUSHALL drops the table in O(1); later writes free it bit by bit. */
static void ht_clear_is_incremental(void **state)
{
    (void)state;
    struct test_alloc ta = {0};
    struct craft_alloc al = test_alloc_of(&ta);
    struct ht h;
    assert_int_equal(ht_init(&h, &al, 5, 6), 0);
    char key[16];
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 5000; i++) {
            int n = snprintf(key, sizeof key, "%d:%d", round, i);
            struct ht_entry *e;
            int created;
            assert_int_equal(ht_upsert(&h, key, (size_t)n, &e, &created), 0);
            assert_int_equal(ht_entry_set(&h, e, key, (size_t)n), 0);
        }
        long live = ta.live;
        assert_int_equal(ht_clear(&h), 0);
        assert_int_equal(ht_count(&h), 0);
        /* Nothing was freed yet, except when the graves overflowed. */
        assert_true(ta.live > live - 100 || round >= HT_GRAVES_MAX);
        assert_true(h.n_graves >= 1 && h.n_graves <= HT_GRAVES_MAX);
        assert_true(ht_check(&h));
    }
    /* Each delete (even of a missing key) reaps HT_REAP_STEP entries. */
    for (int i = 0; i < 100000 && h.n_graves > 0; i++) {
        long live = ta.live;
        ht_delete(&h, "nope", 4);
        assert_true(live - ta.live <= 2 * HT_REAP_STEP + 1);
    }
    assert_int_equal(h.n_graves, 0);
    assert_int_equal(ta.live, 1); /* the empty bucket array */
    ht_close(&h);
    assert_int_equal(ta.live, 0);
}

/* Allocation failures at every point: errors, never crashes or leaks. */
static void alloc_failures_are_clean(void **state)
{
    (void)state;
    for (long n = 1; n < 400; n++) {
        struct test_alloc ta = {.fail_at = n};
        struct craft_alloc al = test_alloc_of(&ta);
        struct kvsm_config c;
        kvsm_config_default(&c);
        c.alloc = &al;
        c.sessions_max = 2;
        struct kvsm *sm;
        if (kvsm_new(&c, &sm) != 0) {
            assert_int_equal(ta.live, 0);
            continue;
        }
        const char *script[] = {"CRAFT.SESSION",
                                "SET a 1",
                                "APPEND a 2",
                                ("MSET b 1 c 2 d 3 e 4 f 5 g 6 h 7 i 8 j 9 "
                                 "k 10 l 11 m 12 n 13 o 14 p 15 q 16 r 17"),
                                "INCR z",
                                "CRAFT.SESSION",
                                "CRAFT.SESSION"};
        uint64_t idx = 0;
        for (size_t i = 0; i < CRAFT_ARRAY_LEN(script); i++) {
            struct words w;
            words_split(&w, script[i]);
            struct buf e, rep;
            buf_init(&e);
            buf_init(&rep);
            struct kvsm_session_ref s = {1, i + 1, i + 1};
            kvsm_cmd_encode(1, i == 1 || i == 4 ? &s : NULL, w.argc, w.argv,
                            w.lens, &e);
            int rv = kvsm_apply(sm, idx + 1, e.data, e.len, &rep);
            assert_true(rv == 0 || rv == CRAFT_ENOMEM);
            if (rv == 0) {
                idx++;
            } else {
                assert_int_equal(rep.len, 0);
            }
            buf_close(&e);
            buf_close(&rep);
        }
        assert_true(kvsm_check(sm));
        kvsm_free(sm);
        assert_int_equal(ta.live, 0);
    }
}

int main(int argc, char **argv)
{
    /* --seed N replays the randomised tests (same as CRAFT_SEED=N). */
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) {
        setenv("CRAFT_SEED", argv[2], 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(strings_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(binary_safe_keys_and_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(integers_like_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_like_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(set_options, setup, teardown),
        cmocka_unit_test_setup_teardown(rename_setrange_incrbyfloat, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(key_expiry_by_leader_time, setup,
                                        teardown),
        cmocka_unit_test(classify_routes),
        cmocka_unit_test_setup_teardown(multi_exec_is_one_entry, setup,
                                        teardown),
        cmocka_unit_test(entry_codec_strict),
        cmocka_unit_test_setup_teardown(entry_fuzz_never_crashes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(session_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(session_pipelining, setup, teardown),
        cmocka_unit_test(session_bytes_bounded),
        cmocka_unit_test_setup_teardown(session_expiry_and_eviction, setup,
                                        teardown),
        cmocka_unit_test(replicas_agree),
        cmocka_unit_test(ht_matches_reference),
        cmocka_unit_test(ht_clear_is_incremental),
        cmocka_unit_test(glob_patterns),
        cmocka_unit_test(ht_scan_survives_resizes),
        cmocka_unit_test_setup_teardown(keys_and_scan_commands, setup,
                                        teardown),
        cmocka_unit_test(alloc_failures_are_clean),
    };
    return cmocka_run_group_tests_name("kv", tests, NULL, NULL);
}
