/* Shared helpers for the KV state machine tests: a leak-counting allocator
 * that can fail at the N-th call, and a tiny driver that turns a line of
 * words into a log entry and applies it. */
#ifndef CRAFT_TEST_KV_HELPERS_H
#define CRAFT_TEST_KV_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/kvsm.h"
#include "util/buf.h"

struct test_alloc {
    long live;    /* blocks allocated and not freed */
    long calls;   /* allocation calls so far */
    long fail_at; /* fail the call with this number (1-based); 0 never */
    int failed;   /* an allocation was failed */
};

static void *ta_malloc(void *d, size_t n)
{
    struct test_alloc *a = d;
    if (a->fail_at != 0 && ++a->calls == a->fail_at) {
        a->failed = 1;
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    a->live += p != NULL;
    return p;
}

static void *ta_calloc(void *d, size_t n, size_t m)
{
    void *p = ta_malloc(d, n * m);
    return p ? memset(p, 0, n * m) : NULL;
}

static void *ta_realloc(void *d, void *p, size_t n)
{
    struct test_alloc *a = d;
    if (p == NULL) {
        return ta_malloc(d, n);
    }
    if (a->fail_at != 0 && ++a->calls == a->fail_at) {
        a->failed = 1;
        return NULL;
    }
    return realloc(p, n ? n : 1);
}

static void ta_free(void *d, void *p)
{
    struct test_alloc *a = d;
    if (p != NULL) {
        a->live--;
        free(p);
    }
}

static inline struct craft_alloc test_alloc_of(struct test_alloc *a)
{
    struct craft_alloc c = {a, ta_malloc, ta_calloc, ta_realloc, ta_free};
    return c;
}

/* Split a line at spaces into at most 32 words (no quoting: the tests that
 * need binary arguments build argv themselves). */
struct words {
    size_t argc;
    const uint8_t *argv[32];
    size_t lens[32];
    char text[512];
};

static inline void words_split(struct words *w, const char *line)
{
    snprintf(w->text, sizeof w->text, "%s", line);
    w->argc = 0;
    for (char *t = strtok(w->text, " "); t && w->argc < 32;
         t = strtok(NULL, " ")) {
        w->argv[w->argc] = (const uint8_t *)t;
        w->lens[w->argc] = strlen(t);
        w->argc++;
    }
}

/* Apply argv as the entry at index with the leader time and an optional
 * session; return the reply as a NUL-terminated static string. */
static inline const char *kv_apply_argv(struct kvsm *sm, uint64_t index,
                                        uint64_t time_ms,
                                        const struct kvsm_session_ref *s,
                                        size_t argc, const uint8_t *const *argv,
                                        const size_t *lens)
{
    static char out[4096];
    struct buf e, r;
    buf_init(&e);
    buf_init(&r);
    assert_int_equal(kvsm_cmd_encode(time_ms, s, argc, argv, lens, &e), 0);
    int rv = kvsm_apply(sm, index, e.data, e.len, &r);
    assert_int_equal(rv, 0);
    assert_true(r.len < sizeof out);
    memcpy(out, r.data, r.len);
    out[r.len] = '\0';
    buf_close(&e);
    buf_close(&r);
    return out;
}

static inline const char *kv_apply(struct kvsm *sm, uint64_t index,
                                   uint64_t time_ms, const char *line)
{
    struct words w;
    words_split(&w, line);
    return kv_apply_argv(sm, index, time_ms, NULL, w.argc, w.argv, w.lens);
}

static inline const char *kv_exec(struct kvsm *sm, uint64_t index,
                                  uint64_t time_ms, uint64_t id, uint64_t seq,
                                  uint64_t first_unacked, const char *line)
{
    struct words w;
    words_split(&w, line);
    struct kvsm_session_ref s = {id, seq, first_unacked};
    return kv_apply_argv(sm, index, time_ms, &s, w.argc, w.argv, w.lens);
}

static inline const char *kv_read(const struct kvsm *sm, const char *line,
                                  int want_rv)
{
    static char out[4096];
    struct words w;
    words_split(&w, line);
    struct buf r;
    buf_init(&r);
    assert_int_equal(kvsm_read(sm, w.argc, w.argv, w.lens, &r), want_rv);
    assert_true(r.len < sizeof out);
    memcpy(out, r.data, r.len);
    out[r.len] = '\0';
    buf_close(&r);
    return out;
}

/* A seed from CRAFT_SEED or the given default, printed for replay. */
static inline uint64_t test_seed(const char *name, uint64_t dflt)
{
    const char *env = getenv("CRAFT_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : dflt;
    printf("%s: seed=%llu (replay: --seed %llu)\n", name,
           (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

/* The fixture of the command tests: a state machine on the leak-counting
 * allocator.  kv_fixture_setup() takes the default configuration, adjusted
 * by tune (NULL: none); kv_fixture_teardown() checks every invariant and
 * that nothing leaked. */
struct kv_fixture {
    struct test_alloc ta;
    struct craft_alloc alloc;
    struct kvsm *sm;
};

static inline int kv_fixture_setup(void **state,
                                   void (*tune)(struct kvsm_config *))
{
    struct kv_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->alloc = test_alloc_of(&f->ta);
    struct kvsm_config c;
    kvsm_config_default(&c);
    c.alloc = &f->alloc;
    if (tune != NULL) {
        tune(&c);
    }
    assert_int_equal(kvsm_new(&c, &f->sm), 0);
    *state = f;
    return 0;
}

static inline int kv_fixture_teardown(void **state)
{
    struct kv_fixture *f = *state;
    assert_true(kvsm_check(f->sm));
    kvsm_free(f->sm);
    assert_int_equal(f->ta.live, 0); /* no leaked allocations */
    free(f);
    return 0;
}

/* Inside a test with locals f (struct kv_fixture *), idx and now. */
#define APPLY(line) kv_apply(f->sm, ++idx, now, (line))
#define READ(line) kv_read(f->sm, (line), 0)

#endif /* CRAFT_TEST_KV_HELPERS_H */
