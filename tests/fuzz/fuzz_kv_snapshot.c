/*
 * libFuzzer target for the KV snapshot loader (src/kv/snapshot.c): the
 * bytes a follower installs from its leader and a node reads at start-up.
 *
 * Input: one mode byte (bit 0: CRCs off, fuzz.h; bits 1..3: the size of
 * the pieces the read callback hands out), then the snapshot.  Checked:
 *   1. the load returns 0 or one of its documented errors, never anything
 *      else, and leaks nothing (ASan's leak check);
 *   2. a loaded state passes kvsm_check();
 *   3. load(write(s)) == s for the loaded state s: every key with its
 *      value and expiry, every session with its saved replies, in order
 *      (the bytes may differ from x: keys are written in table order).
 */
#include <stdio.h>
#include <string.h>

#include "craft/common.h"
#include "fuzz.h"
#include "kv/kvsm.h"
#include "kv/kvsm_int.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct source {
    const uint8_t *p;
    size_t len, off, piece;
};

static long long source_read(void *ctx, void *p, size_t n)
{
    struct source *s = ctx;
    size_t k = s->len - s->off;
    k = k < n ? k : n;
    k = k < s->piece ? k : s->piece;
    memcpy(p, s->p + s->off, k);
    s->off += k;
    return (long long)k;
}

static int sink_write(void *ctx, const void *p, size_t n)
{
    return buf_append(ctx, p, n);
}

static int load(const struct kvsm_config *c, const uint8_t *p, size_t n,
                size_t piece, struct kvsm **out)
{
    struct source src = {.p = p, .len = n, .piece = piece};
    return kvsm_snapshot_load(c, source_read, &src, out);
}

static void same_state(const struct kvsm *a, const struct kvsm *b)
{
    struct ht_iter it;
    ht_iter_init(&it, &a->keys);
    for (struct ht_entry *e; (e = ht_iter_next(&it)) != NULL;) {
        struct ht_entry *o = ht_find(&b->keys, e->key, e->key_len);
        CHECK(o != NULL);
        CHECK(o->val_len == e->val_len && o->expire_ms == e->expire_ms);
        CHECK(e->val_len == 0 || memcmp(o->val, e->val, e->val_len) == 0);
    }
    const struct kvsm_session *s = a->sessions.head, *t = b->sessions.head;
    for (; s != NULL && t != NULL; s = s->next, t = t->next) {
        CHECK(s->id == t->id && s->last_ms == t->last_ms &&
              s->first_unacked == t->first_unacked && s->n_saved == t->n_saved);
        for (size_t i = 0; i < s->n_saved; i++) {
            CHECK(s->saved[i].seq == t->saved[i].seq &&
                  s->saved[i].len == t->saved[i].len);
            CHECK(s->saved[i].len == 0 ||
                  memcmp(s->saved[i].data, t->saved[i].data, s->saved[i].len) ==
                      0);
        }
    }
    CHECK(s == NULL && t == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fuzz_crc_off = (data[0] & 1) != 0;
    size_t piece = ((size_t)(data[0] >> 1) & 7) * 7 + 1;
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *a = NULL;
    int rv = load(&c, data + 1, size - 1, piece, &a);
    if (rv != 0) {
        CHECK(rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION ||
              rv == CRAFT_ELIMIT || rv == CRAFT_ENOMEM);
        CHECK(a == NULL);
        return 0;
    }
    CHECK(a != NULL);
    CHECK(kvsm_check(a) == 1);
    struct buf w1;
    buf_init(&w1);
    CHECK(kvsm_snapshot_write(a, sink_write, &w1) == 0);
    struct kvsm *b = NULL;
    CHECK(load(&c, w1.data, w1.len, KVSM_SNAPSHOT_CHUNK, &b) == 0);
    CHECK(kvsm_check(b) == 1);
    CHECK(kvsm_key_count(a) == kvsm_key_count(b));
    CHECK(kvsm_session_count(a) == kvsm_session_count(b));
    CHECK(kvsm_last_applied(a) == kvsm_last_applied(b));
    CHECK(kvsm_now_ms(a) == kvsm_now_ms(b));
    same_state(a, b);
    kvsm_free(a);
    kvsm_free(b);
    buf_close(&w1);
    return 0;
}

/* ---- seeds ---- */

static void apply(struct kvsm *sm, uint64_t index, uint64_t time_ms,
                  const struct kvsm_session_ref *s, const char *line)
{
    const uint8_t *argv[8];
    size_t lens[8], argc = 0;
    char text[256];
    snprintf(text, sizeof text, "%s", line);
    for (char *t = strtok(text, " "); t != NULL && argc < 8;
         t = strtok(NULL, " ")) {
        argv[argc] = (const uint8_t *)t;
        lens[argc++] = strlen(t);
    }
    struct buf e, r;
    buf_init(&e);
    buf_init(&r);
    CHECK(kvsm_cmd_encode(time_ms, s, argc, argv, lens, &e) == 0);
    CHECK(kvsm_apply(sm, index, e.data, e.len, &r) == 0);
    buf_close(&e);
    buf_close(&r);
}

static void write_seeds(const char *dir, uint8_t mode)
{
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *sm;
    CHECK(kvsm_new(&c, &sm) == 0);
    uint64_t idx = 0;
    for (unsigned i = 0; i < 4; i++) {
        struct buf w;
        buf_init(&w);
        CHECK(kvsm_snapshot_write(sm, sink_write, &w) == 0);
        fuzz_seed(dir, i, mode, w.data, w.len);
        buf_close(&w);
        /* Grow the state a little between seeds: keys, an expiry, a
         * session with saved replies. */
        char line[128];
        snprintf(line, sizeof line, "SET k%u value%u", i, i);
        apply(sm, ++idx, 1000 + i, NULL, line);
        snprintf(line, sizeof line, "SET t%u v PX 5000", i);
        apply(sm, ++idx, 1000 + i, NULL, line);
        apply(sm, ++idx, 1000 + i, NULL, "CRAFT.SESSION");
        struct kvsm_session_ref s = {idx, 1, 1};
        apply(sm, ++idx, 1000 + i, &s, "INCR n");
    }
    kvsm_free(sm);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_maybe_write_seeds(write_seeds);
    return 0;
}
