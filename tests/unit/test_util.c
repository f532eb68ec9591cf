/* Unit tests for src/util: crc32c, buf, encoding, rng, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "craft/common.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/encoding.h"
#include "util/rng.h"

/* RFC 3720 appendix B.4 test vectors. */
static void crc32c_known_vectors(void **state)
{
    (void)state;
    uint8_t zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++) {
        inc[i] = (uint8_t)i;
    }
    assert_int_equal(crc32c(0, zeros, 32), 0x8A9136AA);
    assert_int_equal(crc32c(0, ones, 32), 0x62A8AB43);
    assert_int_equal(crc32c(0, inc, 32), 0x46DD794E);
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283);
}

static void crc32c_hw_matches_sw_and_chains(void **state)
{
    (void)state;
    uint8_t data[1000];
    struct rng r;
    rng_init(&r, 42);
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)rng_next(&r);
    }
    for (size_t n = 0; n < sizeof data; n += 37) {
        assert_int_equal(crc32c(0, data, n), crc32c_sw(0, data, n));
        uint32_t a = crc32c(crc32c(0, data, n / 3), data + n / 3, n - n / 3);
        assert_int_equal(a, crc32c(0, data, n));
    }
}

static void buf_grows_and_consumes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 1000; i++) {
        uint8_t v = (uint8_t)i;
        assert_int_equal(buf_append(&b, &v, 1), 0);
    }
    assert_int_equal(b.len, 1000);
    buf_consume(&b, 998);
    assert_int_equal(b.len, 2);
    assert_int_equal(b.data[0], (uint8_t)998);
    assert_int_equal(b.data[1], (uint8_t)999);
    buf_close(&b);
    assert_null(b.data);
}

static void encoding_round_trips(void **state)
{
    (void)state;
    uint8_t p[8];
    put_u16(p, 0xBEEF);
    assert_int_equal(get_u16(p), 0xBEEF);
    put_u32(p, 0xDEADBEEF);
    assert_int_equal(p[0], 0xEF);
    assert_int_equal(get_u32(p), 0xDEADBEEF);
    put_u64(p, 0x0123456789ABCDEFull);
    assert_true(get_u64(p) == 0x0123456789ABCDEFull);
}

static void rng_is_deterministic(void **state)
{
    (void)state;
    struct rng a, b;
    rng_init(&a, 7);
    rng_init(&b, 7);
    for (int i = 0; i < 100; i++) {
        assert_true(rng_next(&a) == rng_next(&b));
        uint64_t v = rng_range(&a, 10, 20);
        assert_true(v >= 10 && v < 20);
        (void)rng_range(&b, 10, 20);
    }
}

static void errors_have_names(void **state)
{
    (void)state;
    assert_string_equal(craft_strerror(0), "ok");
    assert_string_equal(craft_strerror(CRAFT_ENOMEM), "out of memory");
    assert_string_equal(craft_errname(CRAFT_ECORRUPT), "CRAFT_ECORRUPT");
    assert_string_equal(craft_strerror(-9999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_known_vectors),
        cmocka_unit_test(crc32c_hw_matches_sw_and_chains),
        cmocka_unit_test(buf_grows_and_consumes),
        cmocka_unit_test(encoding_round_trips),
        cmocka_unit_test(rng_is_deterministic),
        cmocka_unit_test(errors_have_names),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
