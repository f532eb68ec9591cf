/* Unit tests for src/server/srv_cmds.c: the RESP2 -> RESP3 reply
 * conversion, the WATCH list of a connection and the CONFIG engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "craft/common.h"
#include "server/srv_cmds.h"

static char *convert(const char *in, int *rv)
{
    static char out[512];
    struct buf b;
    buf_init(&b);
    buf_append(&b, "pre", 3);
    *rv = srv__resp3_append(&b, (const uint8_t *)in, strlen(in));
    assert_true(b.len < sizeof out);
    memcpy(out, b.data + 3, b.len - 3);
    out[b.len - 3] = '\0';
    assert_memory_equal(b.data, "pre", 3);
    buf_close(&b);
    return out;
}

static void resp3_nulls(void **state)
{
    (void)state;
    int rv;
    assert_string_equal(convert("$-1\r\n", &rv), "_\r\n");
    assert_int_equal(rv, 0);
    assert_string_equal(convert("*-1\r\n", &rv), "_\r\n");
    /* Nested, and bulks whose bytes look like nulls stay as they are. */
    assert_string_equal(
        convert("*3\r\n$5\r\n$-1\r\n\r\n$-1\r\n*1\r\n:-1\r\n", &rv),
        "*3\r\n$5\r\n$-1\r\n\r\n_\r\n*1\r\n:-1\r\n");
    assert_string_equal(convert("+OK\r\n-ERR x\r\n:5\r\n$0\r\n\r\n", &rv),
                        "+OK\r\n-ERR x\r\n:5\r\n$0\r\n\r\n");
    /* RESP3 passes through: converting twice is converting once. */
    const char *r3 = "%1\r\n$1\r\na\r\n_\r\n=8\r\ntxt:abcd\r\n";
    assert_string_equal(convert(r3, &rv), r3);
    /* Incomplete or garbage input: an error, nothing appended. */
    static const char *const bad[] = {"$5\r\nab\r\n", "*1",   "?x\r\n",
                                      "$x\r\n",       "\r\n", "$-2\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_string_equal(convert(bad[i], &rv), "");
        assert_int_equal(rv, CRAFT_EPROTO);
    }
}

static void watch_list(void **state)
{
    (void)state;
    struct srv_watch *w = NULL;
    uint8_t *argv[] = {(uint8_t *)"WATCH", (uint8_t *)"a", (uint8_t *)"b"};
    size_t lens[] = {5, 1, 1};
    const char *ok = "*2\r\n:7\r\n:0\r\n";
    assert_int_equal(
        srv__watch_add(&w, 3, argv, lens, (const uint8_t *)"-ERR", 4),
        CRAFT_EPROTO);
    assert_null(w);
    assert_int_equal(
        srv__watch_add(&w, 3, argv, lens, (const uint8_t *)"*1\r\n:7\r\n", 8),
        CRAFT_EPROTO);
    assert_int_equal(
        srv__watch_add(&w, 3, argv, lens, (const uint8_t *)ok, strlen(ok)), 0);
    assert_non_null(w);
    assert_int_equal(w->n, 2);
    assert_int_equal(w->versions[0], 7);
    /* A key watched again keeps its first version. */
    const char *later = "*2\r\n:9\r\n:9\r\n";
    assert_int_equal(srv__watch_add(&w, 3, argv, lens, (const uint8_t *)later,
                                    strlen(later)),
                     0);
    assert_int_equal(w->n, 2);
    assert_int_equal(w->versions[0], 7);
    assert_int_equal(w->versions[1], 0);
    srv__watch_free(w);
    /* The byte budget: two keys of 600 kB do not fit in 1 MiB; the list
     * is left as it was. */
    w = NULL;
    size_t big = 600 * 1000;
    uint8_t *k1 = calloc(1, big), *k2 = calloc(1, big);
    k2[0] = 1;
    uint8_t *av[] = {(uint8_t *)"WATCH", k1, k2};
    size_t al[] = {5, big, big};
    assert_int_equal(srv__watch_add(&w, 2, av, al, (const uint8_t *)":", 0),
                     CRAFT_EPROTO);
    const char *one = "*1\r\n:1\r\n";
    assert_int_equal(
        srv__watch_add(&w, 2, av, al, (const uint8_t *)one, strlen(one)), 0);
    uint8_t *av2[] = {(uint8_t *)"WATCH", k2};
    size_t al2[] = {5, big};
    assert_int_equal(
        srv__watch_add(&w, 2, av2, al2, (const uint8_t *)one, strlen(one)),
        CRAFT_ELIMIT);
    assert_int_equal(w->n, 1);
    assert_int_equal(w->bytes, big + 12);
    srv__watch_free(w);
    free(k1);
    free(k2);
}

/* A source with one mutable integer "a" (1..9) and one immutable "b". */
static int a_value = 5;
static const char *src_get(void *data, size_t i, char *v, size_t cap)
{
    (void)data;
    if (i == 0) {
        snprintf(v, cap, "%d", a_value);
        return "a";
    }
    if (i == 1) {
        snprintf(v, cap, "fixed");
        return "b";
    }
    return NULL;
}

static int src_set(void *data, const char *name, const char *value, bool apply,
                   char *err, size_t cap)
{
    (void)data;
    if (strcmp(name, "a") == 0) {
        if (value[0] < '1' || value[0] > '9' || value[1] != '\0') {
            snprintf(err, cap, "bad a");
            return CRAFT_EINVAL;
        }
        if (apply) {
            a_value = value[0] - '0';
        }
        return 0;
    }
    if (strcmp(name, "b") == 0) {
        snprintf(err, cap, "can't set immutable config");
        return CRAFT_EINVAL;
    }
    return CRAFT_ENOENT;
}

static const char *config(const char *line, bool resp3)
{
    static char out[512];
    char copy[256];
    snprintf(copy, sizeof copy, "%s", line);
    const uint8_t *argv[16];
    size_t lens[16], argc = 0;
    for (char *t = strtok(copy, " "); t && argc < 16; t = strtok(NULL, " ")) {
        argv[argc] = (const uint8_t *)t;
        lens[argc++] = strlen(t);
    }
    struct srv__config_src src = {NULL, src_get, src_set};
    struct buf b;
    buf_init(&b);
    srv__config_command(&src, 1, argc, argv, lens, resp3, &b);
    assert_true(b.len < sizeof out);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    buf_close(&b);
    return out;
}

static void config_engine(void **state)
{
    (void)state;
    assert_string_equal(
        config("CONFIG GET *", false),
        "*4\r\n$1\r\na\r\n$1\r\n5\r\n$1\r\nb\r\n$5\r\nfixed\r\n");
    assert_string_equal(
        config("CONFIG GET A a [ab]", true),
        "%2\r\n$1\r\na\r\n$1\r\n5\r\n$1\r\nb\r\n$5\r\nfixed\r\n");
    assert_string_equal(config("CONFIG SET a 7", false), "+OK\r\n");
    assert_int_equal(a_value, 7);
    /* All or nothing: a bad second value leaves the first unapplied. */
    assert_string_equal(config("CONFIG SET a 3 b x", false),
                        "-ERR CONFIG SET failed (possibly related to argument "
                        "'b') - can't set immutable config\r\n");
    assert_string_equal(config("CONFIG SET a 3 a 4", false),
                        "-ERR CONFIG SET failed (possibly related to argument "
                        "'a') - duplicate parameter\r\n");
    assert_string_equal(config("CONFIG SET A 0", false),
                        "-ERR CONFIG SET failed (possibly related to argument "
                        "'a') - bad a\r\n");
    assert_int_equal(a_value, 7);
    assert_string_equal(config("CONFIG SET zz 1", false),
                        "-ERR Unknown option or number of arguments for CONFIG "
                        "SET - 'zz'\r\n");
    assert_string_equal(
        config("CONFIG SET a", false),
        "-ERR wrong number of arguments for 'config|set' command\r\n");
    assert_string_equal(config("CONFIG HELPME", false),
                        "-ERR unknown subcommand 'HELPME'. Try CONFIG "
                        "HELP.\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resp3_nulls),
        cmocka_unit_test(watch_list),
        cmocka_unit_test(config_engine),
    };
    return cmocka_run_group_tests_name("srv_cmds", tests, NULL, NULL);
}
