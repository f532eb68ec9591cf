/*
 * Shared helpers for the storage tests: a loop, a memfs, a store, request
 * records and deterministic entry payloads.
 */
#ifndef CRAFT_TEST_STORAGE_HARNESS_H
#define CRAFT_TEST_STORAGE_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "storage/store.h"
#include "storage_memfs.h"
#include "util/log.h"
#include "util/rng.h"

struct treq {
    struct store_req req;
    int status;
    int done; /* callbacks seen: must end up exactly 1 */
    uint64_t ack_ops;
    struct memfs *fs;
};

static inline void treq_cb(struct store_req *req, int status)
{
    struct treq *t = (struct treq *)req;
    t->status = status;
    t->done++;
    t->ack_ops = t->fs ? memfs_ops(t->fs) : 0;
}

struct henv {
    uv_loop_t loop;
    struct memfs *fs;
    struct store_options o;
    struct store *s;
    char err[512];
};

static inline void henv_init(struct henv *e, uint64_t segment_bytes)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->fs = memfs_new();
    store_options_default(&e->o);
    e->o.segment_bytes = segment_bytes;
    e->o.entry_bytes_max = 1024;
    e->o.vfs = memfs_vfs(e->fs);
}

static inline int henv_open(struct henv *e)
{
    e->o.vfs = memfs_vfs(e->fs);
    return store_open("/data", &e->o, &e->loop, &e->s, e->err, sizeof e->err);
}

static inline void henv_run(struct henv *e)
{
    uv_run(&e->loop, UV_RUN_DEFAULT);
}

static inline void henv_close_store(struct henv *e)
{
    if (e->s != NULL) {
        store_close(e->s, NULL);
        henv_run(e);
        e->s = NULL;
    }
}

static inline void henv_close(struct henv *e)
{
    henv_close_store(e);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    memfs_free(e->fs);
    e->fs = NULL;
}

/* Deterministic payload of entry (index, term, version): length in
 * [0, max_len], bytes from a generator seeded by all three. */
static inline size_t payload(raft_index index, raft_term term, uint32_t version,
                             size_t max_len, uint8_t *out)
{
    struct rng r;
    rng_init(&r, index * 0x9E3779B97F4A7C15ull ^ (term << 20) ^
                     ((uint64_t)version << 44));
    size_t len = (size_t)rng_range(&r, 0, max_len + 1);
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)rng_next(&r);
    }
    return len;
}

#endif
