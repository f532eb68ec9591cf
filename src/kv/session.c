/*
 * session.c -- the session table.  See session.h for the invariants.
 */
#include "kv/session.h"

#include <string.h>

#include "util/alloc.h"
#include "util/assert.h"

static size_t bucket_of(const struct kvsm_sessions *ss, uint64_t id)
{
    /* Fibonacci hashing: ids are log indices, so they are dense and the
     * multiplication spreads them over the buckets evenly. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (ss->n_buckets - 1);
}

int kvsm__sessions_init(struct kvsm_sessions *ss,
                        const struct craft_alloc *alloc, size_t sessions_max)
{
    CRAFT_ASSERT(ss != NULL);
    CRAFT_ASSERT(sessions_max >= 1);
    memset(ss, 0, sizeof *ss);
    ss->alloc = alloc;
    size_t n = 16;
    while (n < sessions_max) {
        n *= 2;
    }
    ss->buckets = craft_calloc(alloc, n, sizeof *ss->buckets);
    if (ss->buckets == NULL) {
        return CRAFT_ENOMEM;
    }
    ss->n_buckets = n;
    return 0;
}

static void free_session(struct kvsm_sessions *ss, struct kvsm_session *s)
{
    for (size_t i = 0; i < s->n_saved; i++) {
        craft_free(ss->alloc, s->saved[i].data);
    }
    craft_free(ss->alloc, s->saved);
    craft_free(ss->alloc, s);
}

void kvsm__sessions_close(struct kvsm_sessions *ss)
{
    CRAFT_ASSERT(ss != NULL);
    struct kvsm_session *s = ss->head;
    while (s != NULL) {
        struct kvsm_session *next = s->next;
        free_session(ss, s);
        s = next;
    }
    craft_free(ss->alloc, ss->buckets);
    ss->buckets = NULL;
    ss->head = ss->tail = NULL;
    ss->count = 0;
}

struct kvsm_session *kvsm__sessions_find(const struct kvsm_sessions *ss,
                                         uint64_t id)
{
    struct kvsm_session *s = ss->buckets[bucket_of(ss, id)];
    while (s != NULL && s->id != id) {
        s = s->hnext;
    }
    return s;
}

static void list_unlink(struct kvsm_sessions *ss, struct kvsm_session *s)
{
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        ss->head = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    } else {
        ss->tail = s->prev;
    }
    s->prev = s->next = NULL;
}

static void list_append(struct kvsm_sessions *ss, struct kvsm_session *s)
{
    s->prev = ss->tail;
    s->next = NULL;
    if (ss->tail) {
        ss->tail->next = s;
    } else {
        ss->head = s;
    }
    ss->tail = s;
}

int kvsm__sessions_add(struct kvsm_sessions *ss, uint64_t id, uint64_t now_ms,
                       struct kvsm_session **out)
{
    CRAFT_ASSERT(kvsm__sessions_find(ss, id) == NULL);
    CRAFT_ASSERT(ss->tail == NULL || ss->tail->last_ms <= now_ms);
    struct kvsm_session *s = craft_calloc(ss->alloc, 1, sizeof *s);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->id = id;
    s->last_ms = now_ms;
    s->first_unacked = 1;
    size_t b = bucket_of(ss, id);
    s->hnext = ss->buckets[b];
    ss->buckets[b] = s;
    list_append(ss, s);
    ss->count++;
    *out = s;
    return 0;
}

void kvsm__sessions_remove(struct kvsm_sessions *ss, struct kvsm_session *s)
{
    CRAFT_ASSERT(ss->count > 0);
    struct kvsm_session **link = &ss->buckets[bucket_of(ss, s->id)];
    while (*link != s) {
        CRAFT_ASSERT(*link != NULL);
        link = &(*link)->hnext;
    }
    *link = s->hnext;
    list_unlink(ss, s);
    ss->count--;
    free_session(ss, s);
}

size_t kvsm__sessions_expire(struct kvsm_sessions *ss, uint64_t now_ms,
                             uint64_t timeout_ms)
{
    size_t n = 0;
    while (ss->head != NULL && now_ms - ss->head->last_ms >= timeout_ms) {
        CRAFT_ASSERT(ss->head->last_ms <= now_ms);
        kvsm__sessions_remove(ss, ss->head);
        n++;
    }
    return n;
}

void kvsm__sessions_touch(struct kvsm_sessions *ss, struct kvsm_session *s,
                          uint64_t now_ms)
{
    CRAFT_ASSERT(s->last_ms <= now_ms);
    s->last_ms = now_ms;
    if (ss->tail != s) {
        list_unlink(ss, s);
        list_append(ss, s);
    }
    CRAFT_ASSERT(ss->tail == s);
}

void kvsm__session_ack(struct kvsm_sessions *ss, struct kvsm_session *s,
                       uint64_t first_unacked)
{
    if (first_unacked <= s->first_unacked) {
        return;
    }
    s->first_unacked = first_unacked;
    size_t drop = 0;
    while (drop < s->n_saved && s->saved[drop].seq < first_unacked) {
        s->saved_bytes -= s->saved[drop].len;
        craft_free(ss->alloc, s->saved[drop].data);
        drop++;
    }
    if (drop > 0) {
        memmove(s->saved, s->saved + drop,
                (s->n_saved - drop) * sizeof *s->saved);
        s->n_saved -= drop;
    }
}

const struct kvsm_saved *kvsm__session_saved(const struct kvsm_session *s,
                                             uint64_t seq)
{
    /* Binary search: the replies are sorted by seq. */
    size_t lo = 0, hi = s->n_saved;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->saved[mid].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->n_saved && s->saved[lo].seq == seq ? &s->saved[lo] : NULL;
}

int kvsm__session_save(struct kvsm_sessions *ss, struct kvsm_session *s,
                       uint64_t seq, const uint8_t *data, size_t len)
{
    CRAFT_ASSERT(seq >= s->first_unacked);
    CRAFT_ASSERT(kvsm__session_saved(s, seq) == NULL);
    if (s->n_saved == s->cap_saved) {
        size_t cap = s->cap_saved ? s->cap_saved * 2 : 4;
        struct kvsm_saved *v =
            craft_realloc(ss->alloc, s->saved, cap * sizeof *v);
        if (v == NULL) {
            return CRAFT_ENOMEM;
        }
        s->saved = v;
        s->cap_saved = cap;
    }
    uint8_t *copy = craft_malloc(ss->alloc, len ? len : 1);
    if (copy == NULL) {
        return CRAFT_ENOMEM;
    }
    memcpy(copy, data, len);
    /* Usually seq is the largest yet; pipelined retries may fill gaps. */
    size_t at = s->n_saved;
    while (at > 0 && s->saved[at - 1].seq > seq) {
        at--;
    }
    memmove(s->saved + at + 1, s->saved + at,
            (s->n_saved - at) * sizeof *s->saved);
    s->saved[at] = (struct kvsm_saved){.seq = seq, .data = copy, .len = len};
    s->n_saved++;
    s->saved_bytes += len;
    return 0;
}

int kvsm__sessions_check(const struct kvsm_sessions *ss, size_t sessions_max,
                         size_t replies_max)
{
    size_t n = 0;
    const struct kvsm_session *prev = NULL;
    for (const struct kvsm_session *s = ss->head; s; s = s->next) {
        if (s->prev != prev || kvsm__sessions_find(ss, s->id) != s) {
            return 0;
        }
        if (prev != NULL && prev->last_ms > s->last_ms) {
            return 0;
        }
        if (s->n_saved > replies_max || s->n_saved > s->cap_saved) {
            return 0;
        }
        size_t bytes = 0;
        for (size_t i = 0; i < s->n_saved; i++) {
            if (s->saved[i].seq < s->first_unacked ||
                (i > 0 && s->saved[i - 1].seq >= s->saved[i].seq)) {
                return 0;
            }
            bytes += s->saved[i].len;
        }
        if (bytes != s->saved_bytes) {
            return 0;
        }
        prev = s;
        n++;
    }
    return n == ss->count && ss->tail == prev && n <= sessions_max;
}
