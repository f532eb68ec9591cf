/*
 * Unit tests for the pure parts of src/net: the frame codec (frame.h) and
 * address parsing.  The decoder is checked against truncation at every byte,
 * a flipped bit in every byte, and every header rule of frame.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "craft/common.h"
#include "net/frame.h"
#include "net/net.h"
#include "util/crc32c.h"
#include "util/encoding.h"
#include "util/rng.h"
#include "util/sha256.h"

/* Build a frame of the given kind into a fresh buffer; returns its size. */
static size_t build(uint8_t *out, uint8_t kind, uint16_t type, uint64_t id,
                    int16_t status, const void *payload, size_t len)
{
    struct net_frame_hdr h = {
        .kind = kind, .flags = 0, .type = type, .status = status, .id = id};
    net_frame_encode(out, &h, payload, len);
    if (len > 0) {
        memcpy(out + NET_FRAME_HDR_SIZE, payload, len);
    }
    return NET_FRAME_HDR_SIZE + len;
}

/* Rewrite the header checksum after a test edits a header field, so that
 * the decoder's field checks (not the checksum) are what is exercised. */
static void reseal(uint8_t *f)
{
    put_u32(f + 28, crc32c(0, f, 28));
}

static void frame_round_trip(void **state)
{
    (void)state;
    uint8_t f[NET_FRAME_HDR_SIZE + 100];
    uint8_t payload[100];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(i * 7);
    }
    size_t n = build(f, NET_KIND_RESPONSE, 513, 0x0102030405060708ull, -12,
                     payload, sizeof payload);
    assert_int_equal(n, sizeof f);
    /* The layout of frame.h, byte by byte. */
    assert_memory_equal(f, "CRFT", 4);
    assert_int_equal(get_u32(f), NET_FRAME_MAGIC);
    assert_int_equal(f[4], NET_PROTO_VERSION);
    assert_int_equal(f[5], NET_KIND_RESPONSE);
    assert_int_equal(f[6], 0);
    assert_int_equal(f[7], 0);
    assert_int_equal(get_u16(f + 8), 513);
    assert_int_equal((int16_t)get_u16(f + 10), -12);
    assert_int_equal(get_u32(f + 12), 100);
    assert_true(get_u64(f + 16) == 0x0102030405060708ull);
    assert_int_equal(get_u32(f + 24), crc32c(0, payload, sizeof payload));
    assert_int_equal(get_u32(f + 28), crc32c(0, f, 28));

    struct net_frame_hdr h;
    const char *why = NULL;
    assert_int_equal(net_frame_decode(f, n, 100, &h, &why), NET_FRAME_OK);
    assert_int_equal(h.kind, NET_KIND_RESPONSE);
    assert_int_equal(h.type, 513);
    assert_int_equal(h.status, -12);
    assert_int_equal(h.length, 100);
    assert_true(h.id == 0x0102030405060708ull);

    /* Trailing bytes (the next frame) do not matter. */
    uint8_t two[2 * sizeof f];
    memcpy(two, f, n);
    memcpy(two + n, f, n);
    assert_int_equal(net_frame_decode(two, sizeof two, 100, &h, &why),
                     NET_FRAME_OK);
    assert_int_equal(h.length, 100);
}

static void frame_empty_payload(void **state)
{
    (void)state;
    uint8_t f[NET_FRAME_HDR_SIZE];
    size_t n = build(f, NET_KIND_MESSAGE, 1, 0, 0, NULL, 0);
    struct net_frame_hdr h;
    assert_int_equal(net_frame_decode(f, n, 0, &h, NULL), NET_FRAME_OK);
    assert_int_equal(h.length, 0);
    assert_int_equal(h.payload_crc, 0);
}

/* Every strict prefix of a valid frame needs more; never an error. */
static void frame_truncated_at_every_byte(void **state)
{
    (void)state;
    uint8_t payload[300], f[NET_FRAME_HDR_SIZE + 300];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(255 - i);
    }
    size_t n = build(f, NET_KIND_REQUEST, 9, 77, 0, payload, sizeof payload);
    for (size_t len = 0; len < n; len++) {
        struct net_frame_hdr h = {.kind = 0xAA};
        assert_int_equal(net_frame_decode(f, len, 1000, &h, NULL),
                         NET_FRAME_NEED_MORE);
        assert_int_equal(h.kind, 0xAA); /* untouched */
    }
    struct net_frame_hdr h;
    assert_int_equal(net_frame_decode(f, n, 1000, &h, NULL), NET_FRAME_OK);
}

/* A flipped bit anywhere is detected, whatever field it lands in. */
static void frame_bit_flip_in_every_byte(void **state)
{
    (void)state;
    uint8_t payload[64], f[NET_FRAME_HDR_SIZE + 64];
    memset(payload, 'x', sizeof payload);
    size_t n = build(f, NET_KIND_MESSAGE, 3, 0, 0, payload, sizeof payload);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            f[i] ^= (uint8_t)(1u << bit);
            struct net_frame_hdr h;
            const char *why = NULL;
            int rv = net_frame_decode(f, n, 1000, &h, &why);
            assert_true(rv < 0);
            assert_non_null(why);
            if (i < 4) {
                assert_int_equal(rv, CRAFT_EPROTO);
            } else if (i == 4) {
                assert_int_equal(rv, CRAFT_EVERSION);
            } else {
                assert_int_equal(rv, CRAFT_ECORRUPT);
            }
            f[i] ^= (uint8_t)(1u << bit);
        }
    }
}

static void frame_garbage_rejected_early(void **state)
{
    (void)state;
    struct net_frame_hdr h;
    const char *why = NULL;
    const uint8_t http[] = "GET / HTTP/1.1\r\n";
    assert_int_equal(net_frame_decode(http, 1, 100, &h, &why), CRAFT_EPROTO);
    assert_string_equal(why, "bad magic: not a craft frame");
    /* "CR" then garbage: refused at the third byte. */
    const uint8_t crx[] = {'C', 'R', 'X'};
    assert_int_equal(net_frame_decode(crx, 2, 100, &h, &why),
                     NET_FRAME_NEED_MORE);
    assert_int_equal(net_frame_decode(crx, 3, 100, &h, &why), CRAFT_EPROTO);

    /* Random bytes never decode and never crash. */
    struct rng r;
    uint64_t seed = 0xC0FFEE;
    printf("garbage seed %llu\n", (unsigned long long)seed);
    rng_init(&r, seed);
    uint8_t junk[256];
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            junk[i] = (uint8_t)rng_next(&r);
        }
        if (round % 2 == 0) {
            memcpy(junk, "CRFT\x01", 5); /* get past magic and version */
        }
        size_t len = (size_t)rng_range(&r, 0, sizeof junk + 1);
        int rv = net_frame_decode(junk, len, 1u << 20, &h, &why);
        assert_true(rv == NET_FRAME_NEED_MORE || rv < 0);
    }
}

static void frame_wrong_version(void **state)
{
    (void)state;
    uint8_t f[NET_FRAME_HDR_SIZE];
    build(f, NET_KIND_MESSAGE, 1, 0, 0, NULL, 0);
    f[4] = 2;
    reseal(f);
    struct net_frame_hdr h;
    const char *why = NULL;
    /* Reported as soon as the version byte is there. */
    assert_int_equal(net_frame_decode(f, 5, 100, &h, &why), CRAFT_EVERSION);
    assert_int_equal(net_frame_decode(f, sizeof f, 100, &h, &why),
                     CRAFT_EVERSION);
    assert_string_equal(why, "unsupported protocol version");
}

static void frame_oversize_rejected_from_header(void **state)
{
    (void)state;
    uint8_t f[NET_FRAME_HDR_SIZE + 101];
    uint8_t payload[101] = {0};
    build(f, NET_KIND_MESSAGE, 1, 0, 0, payload, sizeof payload);
    struct net_frame_hdr h;
    const char *why = NULL;
    /* Exactly at the limit is fine; one byte over is refused as soon as the
     * header is there, without waiting for the payload. */
    assert_int_equal(net_frame_decode(f, sizeof f, 101, &h, &why),
                     NET_FRAME_OK);
    assert_int_equal(net_frame_decode(f, NET_FRAME_HDR_SIZE, 100, &h, &why),
                     CRAFT_ETOOBIG);
    /* A huge length in a well-sealed header is refused too. */
    put_u32(f + 12, UINT32_MAX);
    reseal(f);
    assert_int_equal(
        net_frame_decode(f, NET_FRAME_HDR_SIZE, NET_FRAME_MAX_LIMIT, &h, &why),
        CRAFT_ETOOBIG);
}

/* Header rules (invariants 2 and 4 of frame.h), each on a resealed header. */
static void frame_header_rules(void **state)
{
    (void)state;
    struct {
        size_t off;
        uint8_t kind;
        uint8_t val;
    } cases[] = {
        {5, NET_KIND_MESSAGE, 0},  /* kind 0 */
        {5, NET_KIND_MESSAGE, 9},  /* unknown kind */
        {6, NET_KIND_MESSAGE, 1},  /* flags */
        {7, NET_KIND_MESSAGE, 1},  /* reserved */
        {16, NET_KIND_MESSAGE, 1}, /* id on a message */
        {10, NET_KIND_MESSAGE, 1}, /* status on a message */
        {10, NET_KIND_REQUEST, 1}, /* status on a request */
        {8, NET_KIND_HELLO, 1},    /* type on a hello */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t f[NET_FRAME_HDR_SIZE];
        uint64_t id = cases[i].kind == NET_KIND_REQUEST ? 5 : 0;
        uint16_t type = cases[i].kind == NET_KIND_HELLO ? 0 : 1;
        build(f, cases[i].kind, type, id, 0, NULL, 0);
        f[cases[i].off] = cases[i].val;
        reseal(f);
        struct net_frame_hdr h;
        const char *why = NULL;
        assert_int_equal(net_frame_decode(f, sizeof f, 100, &h, &why),
                         CRAFT_EPROTO);
        assert_non_null(why);
    }
    /* A request without an id. */
    uint8_t f[NET_FRAME_HDR_SIZE];
    build(f, NET_KIND_REQUEST, 1, 5, 0, NULL, 0);
    put_u64(f + 16, 0);
    reseal(f);
    struct net_frame_hdr h;
    assert_int_equal(net_frame_decode(f, sizeof f, 100, &h, NULL),
                     CRAFT_EPROTO);
}

static void addr_parse_cases(void **state)
{
    (void)state;
    char host[NET_HOST_MAX], err[128];
    uint16_t port = 0;
    assert_int_equal(net_addr_parse("127.0.0.11:17001", host, sizeof host,
                                    &port, 0, err, sizeof err),
                     0);
    assert_string_equal(host, "127.0.0.11");
    assert_int_equal(port, 17001);
    assert_int_equal(net_addr_parse("[::1]:80", host, sizeof host, &port, 0,
                                    err, sizeof err),
                     0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 80);
    assert_int_equal(net_addr_parse("localhost:0", host, sizeof host, &port, 1,
                                    err, sizeof err),
                     0);
    assert_int_equal(port, 0);

    const char *bad[] = {"",          "127.0.0.1",     "127.0.0.1:",
                         ":80",       "1.2.3.4:65536", "1.2.3.4:12a",
                         "::1:80",    "[::1:80",       "1.2.3.4:-1",
                         "1.2.3.4:0", "[]:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(net_addr_parse(bad[i], host, sizeof host, &port, 0,
                                        err, sizeof err),
                         CRAFT_EINVAL);
        assert_true(strlen(err) > 0);
    }
    char longaddr[300];
    memset(longaddr, 'a', sizeof longaddr);
    longaddr[sizeof longaddr - 1] = '\0';
    assert_int_equal(
        net_addr_parse(longaddr, host, sizeof host, &port, 0, err, sizeof err),
        CRAFT_EINVAL);
    assert_int_equal(net_addr_parse(NULL, host, sizeof host, &port, 0, NULL, 0),
                     CRAFT_EINVAL);
}

static void addr_resolve_and_format(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char err[128], out[NET_ADDR_FMT_MAX];
    assert_int_equal(
        net_addr_resolve("127.0.0.1:7001", 0, &ss, err, sizeof err), 0);
    net_addr_format((struct sockaddr *)&ss, out, sizeof out);
    assert_string_equal(out, "127.0.0.1:7001");
    assert_int_equal(net_addr_resolve("[::1]:9", 0, &ss, err, sizeof err), 0);
    net_addr_format((struct sockaddr *)&ss, out, sizeof out);
    assert_string_equal(out, "[::1]:9");
    assert_int_equal(net_addr_resolve("localhost:5", 0, &ss, err, sizeof err),
                     0);
    net_addr_format((struct sockaddr *)&ss, out, sizeof out);
    assert_string_equal(out, "127.0.0.1:5");
    assert_int_equal(
        net_addr_resolve("example.com:80", 0, &ss, err, sizeof err),
        CRAFT_EINVAL);
    assert_non_null(strstr(err, "numeric"));
    assert_int_equal(net_addr_resolve("300.1.1.1:80", 0, &ss, err, sizeof err),
                     CRAFT_EINVAL);
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", d[i]);
    }
}

static void check_sha(const void *msg, size_t len, const char *want)
{
    struct sha256 s;
    uint8_t d[SHA256_SIZE];
    char h[2 * SHA256_SIZE + 1];
    sha256_init(&s);
    sha256_update(&s, msg, len);
    sha256_final(&s, d);
    hex(d, sizeof d, h);
    assert_string_equal(h, want);
}

/* FIPS 180-4 examples, plus a split update equal to one update. */
static void sha256_vectors(void **state)
{
    (void)state;
    check_sha(
        "", 0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha(
        "abc", 3,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(
        m, strlen(m),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    static uint8_t a[1000000];
    memset(a, 'a', sizeof a);
    check_sha(
        a, sizeof a,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    struct sha256 s;
    uint8_t d1[SHA256_SIZE], d2[SHA256_SIZE];
    sha256_init(&s);
    for (size_t i = 0; i < strlen(m); i += 7) {
        size_t n = strlen(m) - i < 7 ? strlen(m) - i : 7;
        sha256_update(&s, m + i, n);
    }
    sha256_final(&s, d1);
    sha256_init(&s);
    sha256_update(&s, m, strlen(m));
    sha256_final(&s, d2);
    assert_true(sha256_equal(d1, d2));
    d2[31] ^= 1;
    assert_false(sha256_equal(d1, d2));
}

static void check_hmac(const void *key, size_t klen, const void *msg,
                       size_t mlen, const char *want)
{
    struct hmac_sha256 h;
    uint8_t d[SHA256_SIZE];
    char out[2 * SHA256_SIZE + 1];
    hmac_sha256_init(&h, key, klen);
    hmac_sha256_update(&h, msg, mlen);
    hmac_sha256_final(&h, d);
    hex(d, sizeof d, out);
    assert_string_equal(out, want);
}

/* RFC 4231 test cases 1, 2, 3 and 6 (a key longer than a block). */
static void hmac_sha256_vectors(void **state)
{
    (void)state;
    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    check_hmac(
        k1, sizeof k1, "Hi There", 8,
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    check_hmac(
        "Jefe", 4, "what do ya want for nothing?", 28,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    uint8_t k3[20], m3[50];
    memset(k3, 0xaa, sizeof k3);
    memset(m3, 0xdd, sizeof m3);
    check_hmac(
        k3, sizeof k3, m3, sizeof m3,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    uint8_t k6[131];
    memset(k6, 0xaa, sizeof k6);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_hmac(
        k6, sizeof k6, m6, strlen(m6),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_round_trip),
        cmocka_unit_test(frame_empty_payload),
        cmocka_unit_test(frame_truncated_at_every_byte),
        cmocka_unit_test(frame_bit_flip_in_every_byte),
        cmocka_unit_test(frame_garbage_rejected_early),
        cmocka_unit_test(frame_wrong_version),
        cmocka_unit_test(frame_oversize_rejected_from_header),
        cmocka_unit_test(frame_header_rules),
        cmocka_unit_test(addr_parse_cases),
        cmocka_unit_test(addr_resolve_and_format),
        cmocka_unit_test(sha256_vectors),
        cmocka_unit_test(hmac_sha256_vectors),
    };
    return cmocka_run_group_tests_name("net/frame", tests, NULL, NULL);
}
