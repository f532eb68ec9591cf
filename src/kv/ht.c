/*
 * ht.c -- chained hash table with incremental rehashing.  See ht.h.
 *
 * Growth: when the key count reaches the table size (load factor 1), a
 * table twice as large is allocated and later mutations each move one
 * bucket across, as Redis's dict does.  Shrink: when the count falls below
 * an eighth of the size, the same mechanism moves keys to a table sized for
 * them.  A resize is only started when no rehash is in progress; the steps
 * taken by every mutation finish a rehash long before the next one is due
 * (t[1] has size >= 2 * count, and each insert moves at least one bucket or
 * visits HT_EMPTY_VISITS empty ones), and if it ever is not finished the
 * remainder is completed in one go, which is correct, merely slower.
 */
#include "kv/ht.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/alloc.h"
#include "util/assert.h"
#include "util/encoding.h"

/* ---- SipHash-1-3 (Aumasson and Bernstein), as Redis uses for dict keys ----
 */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                               \
    do {                                                                       \
        v0 += v1;                                                              \
        v1 = rotl(v1, 13);                                                     \
        v1 ^= v0;                                                              \
        v0 = rotl(v0, 32);                                                     \
        v2 += v3;                                                              \
        v3 = rotl(v3, 16);                                                     \
        v3 ^= v2;                                                              \
        v0 += v3;                                                              \
        v3 = rotl(v3, 21);                                                     \
        v3 ^= v0;                                                              \
        v2 += v1;                                                              \
        v1 = rotl(v1, 17);                                                     \
        v1 ^= v2;                                                              \
        v2 = rotl(v2, 32);                                                     \
    } while (0)

uint64_t ht_siphash(uint64_t k0, uint64_t k1, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0;
    uint64_t v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0;
    uint64_t v3 = 0x7465646279746573ull ^ k1;
    size_t full = n & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = get_u64(p + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++) {
        b |= (uint64_t)p[full + i] << (8 * i);
    }
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- table ---- */

static int alloc_table(struct ht *h, int i, size_t size)
{
    CRAFT_ASSERT(size >= HT_SIZE_MIN);
    CRAFT_ASSERT((size & (size - 1)) == 0);
    struct ht_entry **t = craft_calloc(h->alloc, size, sizeof *t);
    if (t == NULL) {
        return CRAFT_ENOMEM;
    }
    h->t[i] = t;
    h->size[i] = size;
    h->used[i] = 0;
    return 0;
}

int ht_init(struct ht *h, const struct craft_alloc *alloc, uint64_t k0,
            uint64_t k1)
{
    CRAFT_ASSERT(h != NULL);
    memset(h, 0, sizeof *h);
    h->alloc = alloc;
    h->k0 = k0;
    h->k1 = k1;
    h->rehash_idx = -1;
    return alloc_table(h, 0, HT_SIZE_MIN);
}

static void free_entry(struct ht *h, struct ht_entry *e)
{
    craft_free(h->alloc, e->val);
    craft_free(h->alloc, e);
}

static void free_table(struct ht *h, int i)
{
    for (size_t b = 0; h->t[i] != NULL && b < h->size[i]; b++) {
        struct ht_entry *e = h->t[i][b];
        while (e != NULL) {
            struct ht_entry *next = e->next;
            free_entry(h, e);
            e = next;
        }
    }
    craft_free(h->alloc, h->t[i]);
    h->t[i] = NULL;
    h->size[i] = 0;
    h->used[i] = 0;
}

/* Free up to max entries (and emptied bucket arrays) of dropped tables,
 * oldest first.  Returns the entries freed. */
static size_t reap(struct ht *h, size_t max)
{
    size_t freed = 0;
    while (h->n_graves > 0 && freed < max) {
        struct ht_grave *g = &h->graves[0];
        while (g->idx < g->size && freed < max) {
            struct ht_entry *e = g->t[g->idx];
            if (e == NULL) {
                g->idx++;
                continue;
            }
            g->t[g->idx] = e->next;
            free_entry(h, e);
            freed++;
        }
        if (g->idx < g->size) {
            break;
        }
        craft_free(h->alloc, g->t);
        h->n_graves--;
        memmove(h->graves, h->graves + 1, h->n_graves * sizeof *h->graves);
    }
    return freed;
}

void ht_close(struct ht *h)
{
    CRAFT_ASSERT(h != NULL);
    craft_free(h->alloc, h->heap);
    h->heap = NULL;
    h->heap_len = h->heap_cap = 0;
    free_table(h, 0);
    free_table(h, 1);
    reap(h, SIZE_MAX);
    CRAFT_ASSERT(h->n_graves == 0);
    h->rehash_idx = -1;
}

static int rehashing(const struct ht *h)
{
    return h->rehash_idx >= 0;
}

/* Move one bucket from t[0] to t[1]; finish when t[0] is empty.  Also
 * reap a little of any dropped table. */
static void rehash_step(struct ht *h)
{
    if (h->n_graves > 0) {
        reap(h, HT_REAP_STEP);
    }
    if (!rehashing(h)) {
        return;
    }
    int empty = HT_EMPTY_VISITS;
    while (h->used[0] > 0 && h->t[0][h->rehash_idx] == NULL) {
        h->rehash_idx++;
        CRAFT_ASSERT((size_t)h->rehash_idx < h->size[0]);
        if (--empty == 0) {
            return;
        }
    }
    if (h->used[0] > 0) {
        struct ht_entry *e = h->t[0][h->rehash_idx];
        while (e != NULL) {
            struct ht_entry *next = e->next;
            size_t b = e->hash & (h->size[1] - 1);
            e->next = h->t[1][b];
            h->t[1][b] = e;
            h->used[0]--;
            h->used[1]++;
            e = next;
        }
        h->t[0][h->rehash_idx] = NULL;
        h->rehash_idx++;
    }
    if (h->used[0] == 0) {
        craft_free(h->alloc, h->t[0]);
        h->t[0] = h->t[1];
        h->size[0] = h->size[1];
        h->used[0] = h->used[1];
        h->t[1] = NULL;
        h->size[1] = 0;
        h->used[1] = 0;
        h->rehash_idx = -1;
    }
}

static size_t size_for(size_t count)
{
    size_t s = HT_SIZE_MIN;
    while (s < count) {
        s *= 2;
    }
    return s;
}

/* Start a resize to the given size.  Failing to allocate the new table is
 * not an error: the table keeps working at a higher load factor and the
 * resize is attempted again on the next mutation. */
static void resize_start(struct ht *h, size_t size)
{
    while (rehashing(h)) {
        rehash_step(h);
    }
    if (size == h->size[0] || alloc_table(h, 1, size) != 0) {
        return;
    }
    h->rehash_idx = 0;
}

static void maybe_resize(struct ht *h)
{
    if (rehashing(h)) {
        return;
    }
    size_t n = ht_count(h);
    if (n >= h->size[0]) {
        resize_start(h, h->size[0] * 2);
    } else if (h->size[0] > HT_SIZE_MIN && n < h->size[0] / 8 &&
               n >= h->reserved) {
        resize_start(h, size_for(n * 2));
    }
}

int ht_reserve(struct ht *h, size_t count)
{
    CRAFT_ASSERT(h != NULL);
    CRAFT_ASSERT(count < (SIZE_MAX >> 4) / sizeof *h->t[0]);
    /* One more than count: a table exactly full would start a resize on
     * the last insert (maybe_resize grows at load factor 1). */
    size_t size = size_for(count + 1);
    if (ht_count(h) != 0 || rehashing(h) || size <= h->size[0]) {
        return 0;
    }
    struct ht_entry **t = craft_calloc(h->alloc, size, sizeof *t);
    if (t == NULL) {
        return CRAFT_ENOMEM;
    }
    craft_free(h->alloc, h->t[0]);
    h->t[0] = t;
    h->size[0] = size;
    h->reserved = count;
    CRAFT_ASSERT(h->used[0] == 0 && h->t[1] == NULL);
    return 0;
}

static struct ht_entry **find_link(const struct ht *h, const void *key,
                                   size_t n, uint64_t hash, int *table)
{
    for (int i = 0; i < 2; i++) {
        if (h->t[i] == NULL) {
            continue;
        }
        struct ht_entry **link = &h->t[i][hash & (h->size[i] - 1)];
        for (; *link != NULL; link = &(*link)->next) {
            struct ht_entry *e = *link;
            if (e->hash == hash && e->key_len == n &&
                (n == 0 || memcmp(e->key, key, n) == 0)) {
                *table = i;
                return link;
            }
        }
        if (!rehashing(h)) {
            break;
        }
    }
    return NULL;
}

struct ht_entry *ht_find(const struct ht *h, const void *key, size_t n)
{
    CRAFT_ASSERT(h != NULL);
    int table;
    uint64_t hash = ht_siphash(h->k0, h->k1, key, n);
    struct ht_entry **link = find_link(h, key, n, hash, &table);
    return link ? *link : NULL;
}

int ht_upsert(struct ht *h, const void *key, size_t n, struct ht_entry **out,
              int *created)
{
    CRAFT_ASSERT(h != NULL && out != NULL && created != NULL);
    rehash_step(h);
    int table;
    uint64_t hash = ht_siphash(h->k0, h->k1, key, n);
    struct ht_entry **link = find_link(h, key, n, hash, &table);
    if (link != NULL) {
        *out = *link;
        *created = 0;
        return 0;
    }
    struct ht_entry *e = craft_malloc(h->alloc, sizeof *e + n);
    if (e == NULL) {
        return CRAFT_ENOMEM;
    }
    memset(e, 0, sizeof *e);
    e->hash = hash;
    e->mod_index = h->mod_stamp;
    e->key_len = n;
    if (n > 0) {
        memcpy(e->key, key, n);
    }
    int i = rehashing(h) ? 1 : 0;
    size_t b = hash & (h->size[i] - 1);
    e->next = h->t[i][b];
    h->t[i][b] = e;
    h->used[i]++;
    maybe_resize(h);
    *out = e;
    *created = 1;
    return 0;
}

/* ---- the expiry heap (invariant 5) ---- */

/* The heap's order: expiry time, then key bytes, then length -- a total
 * order on the keys, so the heap pops them in the same order on every
 * replica whatever order they were inserted in (a snapshot load inserts
 * them in hash table order, which differs between nodes). */
static bool heap_less(const struct ht_entry *a, const struct ht_entry *b)
{
    if (a->expire_ms != b->expire_ms) {
        return a->expire_ms < b->expire_ms;
    }
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = n > 0 ? memcmp(a->key, b->key, n) : 0;
    return c != 0 ? c < 0 : a->key_len < b->key_len;
}

static void heap_put(struct ht *h, size_t i, struct ht_entry *e)
{
    h->heap[i] = e;
    e->heap_pos = i + 1;
}

static void heap_up(struct ht *h, size_t i)
{
    struct ht_entry *e = h->heap[i];
    while (i > 0 && heap_less(e, h->heap[(i - 1) / 2])) {
        heap_put(h, i, h->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_put(h, i, e);
}

static void heap_down(struct ht *h, size_t i)
{
    struct ht_entry *e = h->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->heap_len) {
            break;
        }
        if (c + 1 < h->heap_len && heap_less(h->heap[c + 1], h->heap[c])) {
            c++;
        }
        if (!heap_less(h->heap[c], e)) {
            break;
        }
        heap_put(h, i, h->heap[c]);
        i = c;
    }
    heap_put(h, i, e);
}

static void heap_remove(struct ht *h, struct ht_entry *e)
{
    CRAFT_ASSERT(e->heap_pos >= 1 && e->heap_pos <= h->heap_len);
    CRAFT_ASSERT(h->heap[e->heap_pos - 1] == e);
    size_t i = e->heap_pos - 1;
    struct ht_entry *last = h->heap[--h->heap_len];
    e->heap_pos = 0;
    if (last != e) {
        heap_put(h, i, last);
        heap_up(h, i);
        heap_down(h, last->heap_pos - 1);
    }
}

int ht_expire_reserve(struct ht *h, size_t n)
{
    CRAFT_ASSERT(h != NULL);
    if (h->heap_cap - h->heap_len >= n) {
        return 0;
    }
    size_t cap = h->heap_cap ? 2 * h->heap_cap : 16;
    while (cap - h->heap_len < n) {
        cap *= 2;
    }
    struct ht_entry **p = craft_realloc(h->alloc, h->heap, cap * sizeof *p);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    h->heap = p;
    h->heap_cap = cap;
    return 0;
}

int ht_set_expire(struct ht *h, struct ht_entry *e, int64_t ms)
{
    CRAFT_ASSERT(h != NULL && e != NULL);
    CRAFT_ASSERT(ms >= 0);
    e->mod_index = h->mod_stamp;
    if (ms == 0) {
        if (e->heap_pos != 0) {
            heap_remove(h, e);
        }
        e->expire_ms = 0;
        return 0;
    }
    if (e->heap_pos == 0) {
        int rv = ht_expire_reserve(h, 1);
        if (rv != 0) {
            return rv;
        }
        e->expire_ms = ms;
        heap_put(h, h->heap_len++, e);
        heap_up(h, h->heap_len - 1);
        return 0;
    }
    e->expire_ms = ms;
    heap_up(h, e->heap_pos - 1);
    heap_down(h, e->heap_pos - 1);
    return 0;
}

int ht_delete(struct ht *h, const void *key, size_t n)
{
    CRAFT_ASSERT(h != NULL);
    rehash_step(h);
    int table = 0;
    uint64_t hash = ht_siphash(h->k0, h->k1, key, n);
    struct ht_entry **link = find_link(h, key, n, hash, &table);
    if (link == NULL) {
        return 0;
    }
    struct ht_entry *e = *link;
    *link = e->next;
    h->reserved = 0;
    if (e->heap_pos != 0) {
        heap_remove(h, e);
    }
    CRAFT_ASSERT(h->used[table] > 0);
    h->used[table]--;
    free_entry(h, e);
    maybe_resize(h);
    return 1;
}

int ht_clear(struct ht *h)
{
    CRAFT_ASSERT(h != NULL);
    struct ht_entry **t = craft_calloc(h->alloc, HT_SIZE_MIN, sizeof *t);
    if (t == NULL) {
        return CRAFT_ENOMEM;
    }
    for (int i = 0; i < 2; i++) {
        if (h->t[i] == NULL) {
            continue;
        }
        if (h->n_graves == HT_GRAVES_MAX) {
            /* Free the waiting tables now: rare, and merely slower. */
            reap(h, SIZE_MAX);
        }
        h->graves[h->n_graves++] =
            (struct ht_grave){.t = h->t[i], .size = h->size[i], .idx = 0};
        h->t[i] = NULL;
        h->size[i] = 0;
        h->used[i] = 0;
    }
    h->rehash_idx = -1;
    h->reserved = 0;
    h->t[0] = t;
    h->size[0] = HT_SIZE_MIN;
    /* The dropped entries keep stale heap positions; nothing reads them. */
    h->heap_len = 0;
    CRAFT_ASSERT(ht_count(h) == 0);
    CRAFT_ASSERT(h->n_graves <= HT_GRAVES_MAX);
    return 0;
}

static int reserve_value(struct ht *h, struct ht_entry *e, size_t need)
{
    if (need <= e->val_cap) {
        return 0;
    }
    uint8_t *v = craft_realloc(h->alloc, e->val, need);
    if (v == NULL) {
        return CRAFT_ENOMEM;
    }
    e->val = v;
    e->val_cap = need;
    return 0;
}

int ht_entry_set(struct ht *h, struct ht_entry *e, const void *p, size_t n)
{
    CRAFT_ASSERT(e != NULL);
    if (n == 0) {
        e->val_len = 0;
        e->mod_index = h->mod_stamp;
        return 0;
    }
    /* Give back memory when a big value is replaced by a small one. */
    if (e->val_cap > 2 * n + 64) {
        uint8_t *v = craft_malloc(h->alloc, n);
        if (v == NULL) {
            return CRAFT_ENOMEM;
        }
        craft_free(h->alloc, e->val);
        e->val = v;
        e->val_cap = n;
    } else if (reserve_value(h, e, n) != 0) {
        return CRAFT_ENOMEM;
    }
    memcpy(e->val, p, n);
    e->val_len = n;
    e->mod_index = h->mod_stamp;
    return 0;
}

int ht_entry_append(struct ht *h, struct ht_entry *e, const void *p, size_t n)
{
    CRAFT_ASSERT(e != NULL);
    CRAFT_ASSERT(e->val_len + n >= e->val_len);
    size_t need = e->val_len + n;
    if (need > e->val_cap) {
        size_t cap = e->val_cap * 2 > need ? e->val_cap * 2 : need;
        if (reserve_value(h, e, cap) != 0 && reserve_value(h, e, need) != 0) {
            return CRAFT_ENOMEM;
        }
    }
    if (n > 0) {
        memcpy(e->val + e->val_len, p, n);
    }
    e->val_len = need;
    e->mod_index = h->mod_stamp;
    return 0;
}

void ht_iter_init(struct ht_iter *it, const struct ht *h)
{
    CRAFT_ASSERT(it != NULL && h != NULL);
    it->ht = h;
    it->table = 0;
    it->bucket = 0;
    it->next = NULL;
}

struct ht_entry *ht_iter_next(struct ht_iter *it)
{
    while (it->next == NULL) {
        const struct ht *h = it->ht;
        if (it->table > 1 || h->t[it->table] == NULL) {
            return NULL;
        }
        if (it->bucket >= h->size[it->table]) {
            it->table++;
            it->bucket = 0;
            continue;
        }
        it->next = h->t[it->table][it->bucket++];
    }
    struct ht_entry *e = it->next;
    it->next = e->next;
    return e;
}

static uint64_t rev(uint64_t v)
{
    uint64_t r = 0;
    for (int i = 0; i < 64; i++) {
        r = (r << 1) | (v & 1);
        v >>= 1;
    }
    return r;
}

static void scan_bucket(struct ht_entry *const *t, size_t b, ht_scan_fn fn,
                        void *ctx)
{
    for (const struct ht_entry *e = t[b]; e != NULL; e = e->next) {
        fn(ctx, e);
    }
}

uint64_t ht_scan(const struct ht *h, uint64_t v, ht_scan_fn fn, void *ctx)
{
    CRAFT_ASSERT(h != NULL && fn != NULL);
    if (!rehashing(h)) {
        uint64_t m0 = h->size[0] - 1;
        scan_bucket(h->t[0], v & m0, fn, ctx);
        /* Increment the reversed cursor within the mask's bits, so a
         * later resize never makes the scan skip a bucket. */
        v |= ~m0;
        return rev(rev(v) + 1);
    }
    int small = h->size[0] <= h->size[1] ? 0 : 1, big = 1 - small;
    uint64_t m0 = h->size[small] - 1, m1 = h->size[big] - 1;
    scan_bucket(h->t[small], v & m0, fn, ctx);
    /* Then every bucket of the larger table that the smaller one's bucket
     * expands to. */
    do {
        scan_bucket(h->t[big], v & m1, fn, ctx);
        v |= ~m1;
        v = rev(rev(v) + 1);
    } while (v & (m0 ^ m1));
    return v;
}

static int heap_check(const struct ht *h)
{
    size_t with_ttl = 0;
    struct ht_iter it;
    ht_iter_init(&it, h);
    for (const struct ht_entry *e; (e = ht_iter_next(&it)) != NULL;) {
        if ((e->expire_ms != 0) != (e->heap_pos != 0) || e->expire_ms < 0) {
            return 0;
        }
        if (e->heap_pos != 0 &&
            (e->heap_pos > h->heap_len || h->heap[e->heap_pos - 1] != e)) {
            return 0;
        }
        with_ttl += e->heap_pos != 0;
    }
    for (size_t i = 1; i < h->heap_len; i++) {
        if (heap_less(h->heap[i], h->heap[(i - 1) / 2])) {
            return 0;
        }
    }
    return with_ttl == h->heap_len;
}

int ht_check(const struct ht *h)
{
    size_t seen[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (h->t[i] == NULL) {
            if (h->used[i] != 0 || (i == 1 && rehashing(h))) {
                return 0;
            }
            continue;
        }
        for (size_t b = 0; b < h->size[i]; b++) {
            for (struct ht_entry *e = h->t[i][b]; e; e = e->next) {
                if ((e->hash & (h->size[i] - 1)) != b ||
                    e->hash != ht_siphash(h->k0, h->k1, e->key, e->key_len) ||
                    e->val_len > e->val_cap) {
                    return 0;
                }
                if (i == 0 && rehashing(h) && b < (size_t)h->rehash_idx) {
                    return 0;
                }
                seen[i]++;
            }
        }
    }
    if (seen[0] != h->used[0] || seen[1] != h->used[1]) {
        return 0;
    }
    return heap_check(h);
}
