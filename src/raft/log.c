/*
 * The in-memory Raft log (see log.h for its invariants).  A plain array
 * with a base offset: appends are amortised O(1), truncation frees the
 * dropped payloads, compaction moves the kept tail to the front.
 * Compaction runs once per application snapshot, so its O(n) move is
 * negligible beside the snapshot itself.
 */
#include <string.h>

#include "raft/log.h"
#include "util/alloc.h"
#include "util/assert.h"

/* The array grows from this many slots, doubling. */
#define LOG_INITIAL_CAP 64

void raft__log_init(struct raft_log *l, const struct craft_alloc *alloc)
{
    memset(l, 0, sizeof *l);
    l->alloc = alloc;
}

static void free_range(struct raft_log *l, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++) {
        craft_free(l->alloc, l->entries[k].buf.base);
        l->entries[k].buf.base = NULL;
    }
}

void raft__log_close(struct raft_log *l)
{
    free_range(l, 0, l->n);
    craft_free(l->alloc, l->entries);
    l->entries = NULL;
    l->n = l->cap = 0;
}

raft_term raft__log_term(const struct raft_log *l, raft_index i, bool *known)
{
    *known = true;
    if (i == l->base_index) {
        return l->base_term;
    }
    if (i > l->base_index && i <= raft__log_last(l)) {
        return l->entries[i - l->base_index - 1].term;
    }
    *known = false;
    return 0;
}

raft_term raft__log_last_term(const struct raft_log *l)
{
    return l->n > 0 ? l->entries[l->n - 1].term : l->base_term;
}

const struct raft_entry *raft__log_get(const struct raft_log *l, raft_index i)
{
    CRAFT_ASSERT(i > l->base_index);
    CRAFT_ASSERT(i <= raft__log_last(l));
    return &l->entries[i - l->base_index - 1];
}

int raft__log_reserve(struct raft_log *l, size_t n)
{
    if (l->n + n <= l->cap) {
        return 0;
    }
    size_t cap = l->cap ? l->cap : LOG_INITIAL_CAP;
    while (cap < l->n + n) {
        cap *= 2;
    }
    struct raft_entry *e = craft_realloc(l->alloc, l->entries, cap * sizeof *e);
    if (e == NULL) {
        return CRAFT_ENOMEM;
    }
    l->entries = e;
    l->cap = cap;
    return 0;
}

int raft__log_append(struct raft_log *l, raft_term term, uint8_t type,
                     const struct raft_buffer *buf)
{
    CRAFT_ASSERT(term >= raft__log_last_term(l));
    CRAFT_ASSERT(type == RAFT_ENTRY_COMMAND || type == RAFT_ENTRY_NOOP);
    if (raft__log_reserve(l, 1) != 0) {
        return CRAFT_ENOMEM;
    }
    void *copy = NULL;
    size_t len = buf != NULL ? buf->len : 0;
    if (len > 0) {
        copy = craft_malloc(l->alloc, len);
        if (copy == NULL) {
            return CRAFT_ENOMEM;
        }
        memcpy(copy, buf->base, len);
    }
    struct raft_entry *e = &l->entries[l->n];
    e->term = term;
    e->index = raft__log_last(l) + 1;
    e->type = type;
    e->buf.base = copy;
    e->buf.len = len;
    l->n++;
    return 0;
}

void raft__log_truncate(struct raft_log *l, raft_index i)
{
    CRAFT_ASSERT(i > l->base_index);
    if (i > raft__log_last(l)) {
        return;
    }
    size_t keep = (size_t)(i - l->base_index - 1);
    free_range(l, keep, l->n);
    l->n = keep;
}

void raft__log_compact(struct raft_log *l, raft_index i)
{
    CRAFT_ASSERT(i >= l->base_index);
    CRAFT_ASSERT(i <= raft__log_last(l));
    if (i == l->base_index) {
        return;
    }
    size_t drop = (size_t)(i - l->base_index);
    l->base_term = l->entries[drop - 1].term;
    free_range(l, 0, drop);
    memmove(l->entries, l->entries + drop, (l->n - drop) * sizeof *l->entries);
    l->n -= drop;
    l->base_index = i;
}

void raft__log_reset(struct raft_log *l, raft_index index, raft_term term)
{
    free_range(l, 0, l->n);
    l->n = 0;
    l->base_index = index;
    l->base_term = term;
}

raft_index raft__log_last_of_term(const struct raft_log *l, raft_term t,
                                  raft_index from)
{
    raft_index last = raft__log_last(l);
    if (from > last) {
        from = last;
    }
    for (raft_index i = from; i > l->base_index; i--) {
        raft_term ti = l->entries[i - l->base_index - 1].term;
        if (ti == t) {
            return i;
        }
        if (ti < t) {
            return 0; /* terms never decrease: no earlier match */
        }
    }
    return 0;
}

raft_index raft__log_first_of_term(const struct raft_log *l, raft_index i)
{
    CRAFT_ASSERT(i > l->base_index && i <= raft__log_last(l));
    raft_term t = l->entries[i - l->base_index - 1].term;
    while (i - 1 > l->base_index &&
           l->entries[i - 1 - l->base_index - 1].term == t) {
        i--;
    }
    return i;
}
