/*
 * ht.h -- the key space of the KV state machine: a chained hash table with
 * binary-safe keys, a keyed hash (SipHash-1-3, so that clients cannot aim
 * keys at one bucket) and incremental rehashing in the manner of Redis's
 * dict.c, so that no single command pays for a whole resize.
 *
 * Invariants:
 *   1. A key is in at most one of t[0] and t[1].  While rehashing
 *      (rehash_idx >= 0) every bucket of t[0] below rehash_idx is empty and
 *      new keys go to t[1]; otherwise t[1] is unused.
 *   2. used[0] + used[1] is the number of keys.
 *   3. Table sizes are powers of two, at least HT_SIZE_MIN.
 *   4. Work per mutating call is bounded: one rehash step moves at most one
 *      bucket and visits at most HT_EMPTY_VISITS empty ones; one reap step
 *      frees at most HT_REAP_STEP entries of tables dropped by ht_clear().
 *   5. heap[0, heap_len) holds exactly the live entries with expire_ms != 0,
 *      each at heap[heap_pos - 1], in min-heap order of (expire_ms, key): the
 * same order on every replica, however the keys were inserted.
 *
 * Lookups do not mutate the table (no rehash step), so the read-only path of
 * the state machine is truly read-only and an iterator stays valid across
 * lookups.  Any insert or delete invalidates iterators.
 */
#ifndef CRAFT_KV_HT_H
#define CRAFT_KV_HT_H

#include <stddef.h>
#include <stdint.h>

#include "craft/common.h"

#define HT_SIZE_MIN 16
/* Redis's dictRehash() visits at most 10 empty buckets per bucket moved. */
#define HT_EMPTY_VISITS 10

struct ht_entry {
    struct ht_entry *next;
    uint64_t hash;
    int64_t expire_ms;  /* leader time at which the key expires; 0 = never;
                           set it only with ht_set_expire() */
    size_t heap_pos;    /* 1 + its place in the expiry heap, 0 if none */
    uint64_t mod_index; /* ht.mod_stamp when last created or changed */
    uint8_t *val;       /* value bytes, NULL when val_len is 0 */
    size_t val_len;
    size_t val_cap;
    size_t key_len;
    uint8_t key[]; /* key_len bytes, not NUL-terminated */
};

/* Tables dropped by ht_clear(), freed a little at a time.  If more than
 * this many are waiting, the oldest is freed at once (several FLUSHALLs in
 * a row, where the first ones were small or nearly reaped anyway). */
#define HT_GRAVES_MAX 4
/* Entries freed per mutating call while a dropped table is being reaped. */
#define HT_REAP_STEP 64

struct ht_grave {
    struct ht_entry **t;
    size_t size;
    size_t idx; /* buckets below idx are freed */
};

struct ht {
    const struct craft_alloc *alloc;
    uint64_t k0, k1; /* SipHash key */
    struct ht_entry **t[2];
    size_t size[2];
    size_t used[2];
    long long rehash_idx; /* -1 when not rehashing */
    /* ht_reserve()'s count: the table does not shrink while it is filling
     * up to it (a delete or a clear ends that). */
    size_t reserved;
    struct ht_grave graves[HT_GRAVES_MAX];
    size_t n_graves;
    /* The keys with an expiry time, a binary min-heap on expire_ms, so the
     * next key due is found in O(1) and removed in O(log n). */
    struct ht_entry **heap;
    size_t heap_len, heap_cap;
    /* Given as mod_index to every entry that ht_upsert() creates or
     * ht_entry_set(), ht_entry_append() or ht_set_expire() changes: the
     * state machine sets it to the log index being applied, which makes
     * mod_index the version WATCH compares. */
    uint64_t mod_stamp;
};

struct ht_iter {
    const struct ht *ht;
    int table;
    size_t bucket;
    struct ht_entry *next;
};

/* SipHash-1-3 of p[0, n) under the 128-bit key (k0, k1). */
uint64_t ht_siphash(uint64_t k0, uint64_t k1, const void *p, size_t n);

/* Two-phase: ht_close() works after any ht_init() result. */
int ht_init(struct ht *h, const struct craft_alloc *alloc, uint64_t k0,
            uint64_t k1);
void ht_close(struct ht *h);

static inline size_t ht_count(const struct ht *h)
{
    return h->used[0] + h->used[1];
}

/* The entry for a key, or NULL.  Does not modify the table. */
struct ht_entry *ht_find(const struct ht *h, const void *key, size_t n);

/* Find the key or insert it with an empty value.  *created tells which.
 * 0 or CRAFT_ENOMEM (table unchanged on failure). */
int ht_upsert(struct ht *h, const void *key, size_t n, struct ht_entry **out,
              int *created);

/* Size an empty table for count keys at once, so that a bulk load of a
 * known number of keys (a snapshot) does no incremental rehashing: every
 * key is inserted once, into its final bucket.  Does nothing if the table
 * holds keys or is already big enough.  0 or CRAFT_ENOMEM (unchanged). */
int ht_reserve(struct ht *h, size_t count);

/* Remove a key.  1 if it was there, 0 if not. */
int ht_delete(struct ht *h, const void *key, size_t n);

/* Set (ms > 0) or clear (ms == 0) the expiry time of an entry of h,
 * keeping the expiry heap in step.  0 or CRAFT_ENOMEM (unchanged). */
int ht_set_expire(struct ht *h, struct ht_entry *e, int64_t ms);

/* Make room for n more keys with an expiry time, so that the next n
 * ht_set_expire() calls cannot fail.  0 or CRAFT_ENOMEM. */
int ht_expire_reserve(struct ht *h, size_t n);

/* The entry with the earliest expiry time, or NULL if no key has one. */
static inline struct ht_entry *ht_expire_min(const struct ht *h)
{
    return h->heap_len > 0 ? h->heap[0] : NULL;
}

/* How many keys have an expiry time. */
static inline size_t ht_expires(const struct ht *h)
{
    return h->heap_len;
}

/* Remove every key, keeping a minimal table.  O(1): the old tables are
 * freed HT_REAP_STEP entries per later insert or delete (Redis frees them
 * in a background thread for FLUSHALL ASYNC).  0 or CRAFT_ENOMEM. */
int ht_clear(struct ht *h);

/* Replace an entry's value with a copy of p[0, n).  0 or CRAFT_ENOMEM
 * (value unchanged on failure). */
int ht_entry_set(struct ht *h, struct ht_entry *e, const void *p, size_t n);

/* Append p[0, n) to an entry's value, growing geometrically so repeated
 * APPENDs are amortised O(n).  0 or CRAFT_ENOMEM (unchanged on failure). */
int ht_entry_append(struct ht *h, struct ht_entry *e, const void *p, size_t n);

void ht_iter_init(struct ht_iter *it, const struct ht *h);
/* The next entry, or NULL at the end.  Order is unspecified. */
struct ht_entry *ht_iter_next(struct ht_iter *it);

/*
 * One step of a SCAN (Redis's dictScan(): reverse-binary cursor).  Calls
 * fn for every entry of the bucket(s) that cursor names and returns the
 * next cursor, 0 when the scan is complete.  A full scan from cursor 0
 * returns every key present throughout it at least once, even across
 * resizes; keys may be returned twice.  Does not modify the table.
 */
typedef void (*ht_scan_fn)(void *ctx, const struct ht_entry *e);
uint64_t ht_scan(const struct ht *h, uint64_t cursor, ht_scan_fn fn, void *ctx);

/* O(n) consistency check for tests and debug builds.  1 if consistent. */
int ht_check(const struct ht *h);

#endif /* CRAFT_KV_HT_H */
