/*
 * K-way merge with a binary heap; see merge.h.
 *
 * Invariants between calls:
 *   1. heap[0..heap_len) holds exactly the readers that have a current
 *      record, other than `pending`.
 *   2. `pending` (if >= 0) is the reader whose record was last handed out;
 *      it is advanced and pushed back on the next call, so the pointers we
 *      handed out stay valid until then.
 */
#include "mr/merge.h"

#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "util/assert.h"

static int reader_less(const struct mr_merge *m, uint32_t a, uint32_t b)
{
    const struct mr_seg_reader *x = &m->readers[a], *y = &m->readers[b];
    int c = mr_key_cmp(x->key, x->key_len, y->key, y->key_len);
    return c < 0 || (c == 0 && a < b);
}

static void sift_down(struct mr_merge *m, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < m->heap_len && reader_less(m, m->heap[l], m->heap[best])) {
            best = l;
        }
        if (r < m->heap_len && reader_less(m, m->heap[r], m->heap[best])) {
            best = r;
        }
        if (best == i) {
            return;
        }
        uint32_t t = m->heap[i];
        m->heap[i] = m->heap[best];
        m->heap[best] = t;
        i = best;
    }
}

static void sift_up(struct mr_merge *m, uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!reader_less(m, m->heap[i], m->heap[parent])) {
            return;
        }
        uint32_t t = m->heap[i];
        m->heap[i] = m->heap[parent];
        m->heap[parent] = t;
        i = parent;
    }
}

/* Advances reader i and pushes it back if it has another record. */
static int advance_push(struct mr_merge *m, uint32_t i)
{
    int rv = mr_seg_reader_next(&m->readers[i], m->errmsg, m->errlen);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1) {
        CRAFT_ASSERT(m->heap_len < m->n);
        m->heap[m->heap_len++] = i;
        sift_up(m, m->heap_len - 1);
    }
    return 0;
}

int mr_merge_init(struct mr_merge *m, struct mr_seg_reader *readers, uint32_t n,
                  char *errmsg, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->readers = readers;
    m->n = n;
    m->pending = -1;
    m->errmsg = errmsg;
    m->errlen = errlen;
    buf_init(&m->key);
    m->heap = malloc((n ? n : 1) * sizeof *m->heap);
    if (!m->heap) {
        mr_merge_close(m);
        return CRAFT_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        int rv = advance_push(m, i);
        if (rv != 0) {
            mr_merge_close(m);
            return rv;
        }
    }
    return 0;
}

/* Puts the pending reader back (invariant 2). */
static int settle(struct mr_merge *m)
{
    if (m->pending < 0) {
        return 0;
    }
    uint32_t i = (uint32_t)m->pending;
    m->pending = -1;
    return advance_push(m, i);
}

static int top_is_key(const struct mr_merge *m)
{
    if (m->heap_len == 0) {
        return 0;
    }
    const struct mr_seg_reader *r = &m->readers[m->heap[0]];
    return mr_key_cmp(r->key, r->key_len, m->key.data, m->key.len) == 0;
}

int mr_merge_next_value(struct mr_merge *m, const void **value,
                        size_t *value_len)
{
    int rv = settle(m);
    if (rv != 0) {
        return rv;
    }
    if (!m->in_key || !top_is_key(m)) {
        m->in_key = 0;
        return 0;
    }
    uint32_t i = m->heap[0];
    m->heap[0] = m->heap[--m->heap_len];
    sift_down(m, 0);
    m->pending = (int)i;
    *value = m->readers[i].value;
    *value_len = m->readers[i].value_len;
    return 1;
}

int mr_merge_next_key(struct mr_merge *m, const void **key, size_t *key_len)
{
    /* Skip what the caller left of the previous key. */
    const void *v;
    size_t vlen;
    int rv;
    while (m->in_key && (rv = mr_merge_next_value(m, &v, &vlen)) != 0) {
        if (rv < 0) {
            return rv;
        }
    }
    rv = settle(m);
    if (rv != 0) {
        return rv;
    }
    if (m->heap_len == 0) {
        return 0;
    }
    const struct mr_seg_reader *r = &m->readers[m->heap[0]];
    m->key.len = 0;
    if (buf_append(&m->key, r->key, r->key_len) != 0) {
        return CRAFT_ENOMEM;
    }
    m->in_key = 1;
    *key = m->key.data ? (const void *)m->key.data : (const void *)"";
    *key_len = m->key.len;
    return 1;
}

void mr_merge_close(struct mr_merge *m)
{
    for (uint32_t i = 0; m->readers && i < m->n; i++) {
        mr_seg_reader_close(&m->readers[i]);
    }
    free(m->readers);
    free(m->heap);
    buf_close(&m->key);
    m->readers = NULL;
    m->heap = NULL;
}
