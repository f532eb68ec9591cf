/*
 * wc -- word count.  A word is a maximal run of ASCII letters; the output
 * is one "word count" line per distinct word.
 *
 * Map counts the words of its split in a hash table and emits one
 * (word, count) pair per distinct word ("in-mapper combining"): a 16 MiB
 * split of English text has ~3 million words but only ~30 thousand distinct
 * ones, so this shrinks the map output -- and the sort the framework does
 * on it -- a hundredfold.  Values are therefore partial counts, and both
 * combine and reduce sum them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_util.h"

struct wc_entry {
    uint32_t hash;
    uint32_t len;
    uint64_t count;
    const unsigned char *word; /* points into the split, which outlives us */
};

struct wc_table {
    struct wc_entry *slots;
    size_t mask; /* capacity - 1, a power of two */
    size_t used;
};

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static int table_grow(struct wc_table *t)
{
    size_t cap = t->slots ? 2 * (t->mask + 1) : 4096;
    struct wc_entry *slots = calloc(cap, sizeof *slots);
    if (!slots) {
        return -1;
    }
    for (size_t i = 0; t->slots && i <= t->mask; i++) {
        struct wc_entry *e = &t->slots[i];
        if (e->word) {
            size_t j = e->hash & (cap - 1);
            while (slots[j].word) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = *e;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->mask = cap - 1;
    return 0;
}

static int table_add(struct wc_table *t, const unsigned char *w, size_t n)
{
    /* Keep the load factor under 1/2 so probe runs stay short. */
    if (2 * (t->used + 1) > t->mask + 1 && table_grow(t) != 0) {
        return -1;
    }
    uint32_t h = fnv1a(w, n);
    size_t j = h & t->mask;
    for (;;) {
        struct wc_entry *e = &t->slots[j];
        if (!e->word) {
            *e = (struct wc_entry){h, (uint32_t)n, 1, w};
            t->used++;
            return 0;
        }
        if (e->hash == h && e->len == n && memcmp(e->word, w, n) == 0) {
            e->count++;
            return 0;
        }
        j = (j + 1) & t->mask;
    }
}

static int wc_map(void *state, const char *filename, const void *contents,
                  size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    const unsigned char *s = contents;
    struct wc_table t = {0};
    int rv = table_grow(&t);
    size_t i = 0;
    while (rv == 0 && i < len) {
        while (i < len && !is_letter(s[i])) {
            i++;
        }
        size_t start = i;
        while (i < len && is_letter(s[i])) {
            i++;
        }
        if (i > start) {
            rv = table_add(&t, s + start, i - start);
        }
    }
    for (size_t j = 0; rv == 0 && j <= t.mask; j++) {
        const struct wc_entry *e = &t.slots[j];
        if (e->word) {
            rv = emit_u64(out, e->word, e->len, e->count);
        }
    }
    free(t.slots);
    return rv;
}

static int wc_reduce(void *state, const void *key, size_t key_len,
                     struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    uint64_t sum;
    int rv = sum_values(values, &sum);
    if (rv < 0) {
        return rv;
    }
    return emit_u64(out, key, key_len, sum);
}

#ifndef WC_NO_EXPORT
MR_PLUGIN_V1(.name = "wc", .map = wc_map, .reduce = wc_reduce,
             .combine = wc_reduce);
#endif
