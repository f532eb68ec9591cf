/*
 * snapshot.c -- serialising the KV state and loading it back.  Format
 * (little-endian; docs/craftd.md has the same table):
 *
 *   header   magic "CRAFTKV\0", u32 version, u32 flags (0),
 *            u64 last_applied, u64 now_ms, u64 n_keys, u64 n_sessions,
 *            u32 crc32c of the 48 bytes before it
 *   n_keys   u8 'K', u32 key_len, u32 value_len, i64 expire_ms,
 *            u64 mod_index (the WATCH version),
 *            u32 crc32c of those 25 bytes;
 *            key bytes, value bytes, u32 crc32c of key and value
 *   n_sess.  u8 'S', u64 id, u64 last_ms, u64 first_unacked, u32 n_saved,
 *            u32 crc32c of those 29 bytes; then n_saved times:
 *            u64 seq, u32 len, u32 crc32c of those 12 bytes;
 *            len reply bytes, u32 crc32c of them
 *   footer   u8 'E', u32 crc32c of every byte of the snapshot before it
 *
 * Sessions are written oldest first, so loading them in order rebuilds the
 * age list exactly.  Every length is checked by its record header's CRC
 * before it is used, and a blob's buffer grows only as its bytes arrive,
 * so neither a corrupt nor a crafted length can make the loader allocate
 * a huge block (found by tests/fuzz/fuzz_kv_snapshot.c).
 */
#include <string.h>

#include "kv/kvsm_int.h"
#include "server/resp.h"
#include "util/alloc.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/encoding.h"

static const uint8_t magic[8] = {'C', 'R', 'A', 'F', 'T', 'K', 'V', 0};

#define HEADER_LEN 48u
#define KEY_HDR_LEN 25u
#define SESSION_HDR_LEN 29u
#define SAVED_HDR_LEN 12u
/* A loaded snapshot's key table is sized for at most this many keys up
 * front (2^21 buckets, 16 MiB): a crafted header claiming more keys than
 * the snapshot holds makes the loader allocate no more than that; a real
 * snapshot with more keys grows the table from there as usual. */
#define KVSM_LOAD_PRESIZE_MAX ((size_t)1 << 20)

/* ---- writing ---- */

struct writer {
    kvsm_write_cb cb;
    void *ctx;
    uint8_t *buf;
    size_t len;
    uint32_t crc; /* of everything written so far */
    int rv;       /* first error */
};

static void w_flush(struct writer *w)
{
    if (w->rv == 0 && w->len > 0) {
        w->rv = w->cb(w->ctx, w->buf, w->len);
    }
    w->len = 0;
}

static void w_put(struct writer *w, const void *p, size_t n)
{
    const uint8_t *s = p;
    w->crc = crc32c(w->crc, s, n);
    while (n > 0 && w->rv == 0) {
        size_t room = KVSM_SNAPSHOT_CHUNK - w->len;
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k;
        n -= k;
        if (w->len == KVSM_SNAPSHOT_CHUNK) {
            w_flush(w);
        }
    }
}

/* A record header followed by its own CRC. */
static void w_header(struct writer *w, const uint8_t *h, size_t n)
{
    uint8_t c[4];
    put_u32(c, crc32c(0, h, n));
    w_put(w, h, n);
    w_put(w, c, 4);
}

static void w_key(struct writer *w, const struct ht_entry *e)
{
    uint8_t h[KEY_HDR_LEN], c[4];
    h[0] = 'K';
    put_u32(h + 1, (uint32_t)e->key_len);
    put_u32(h + 5, (uint32_t)e->val_len);
    put_u64(h + 9, (uint64_t)e->expire_ms);
    put_u64(h + 17, e->mod_index);
    w_header(w, h, sizeof h);
    w_put(w, e->key, e->key_len);
    if (e->val_len > 0) {
        w_put(w, e->val, e->val_len);
    }
    put_u32(c, crc32c(crc32c(0, e->key, e->key_len), e->val, e->val_len));
    w_put(w, c, 4);
}

static void w_session(struct writer *w, const struct kvsm_session *s)
{
    uint8_t h[SESSION_HDR_LEN], c[4];
    h[0] = 'S';
    put_u64(h + 1, s->id);
    put_u64(h + 9, s->last_ms);
    put_u64(h + 17, s->first_unacked);
    put_u32(h + 25, (uint32_t)s->n_saved);
    w_header(w, h, sizeof h);
    for (size_t i = 0; i < s->n_saved; i++) {
        uint8_t r[SAVED_HDR_LEN];
        put_u64(r, s->saved[i].seq);
        put_u32(r + 8, (uint32_t)s->saved[i].len);
        w_header(w, r, sizeof r);
        w_put(w, s->saved[i].data, s->saved[i].len);
        put_u32(c, crc32c(0, s->saved[i].data, s->saved[i].len));
        w_put(w, c, 4);
    }
}

int kvsm_snapshot_write(const struct kvsm *sm, kvsm_write_cb write_cb,
                        void *ctx)
{
    CRAFT_ASSERT(sm != NULL && write_cb != NULL);
    struct writer w = {.cb = write_cb, .ctx = ctx};
    w.buf = craft_malloc(sm->cfg.alloc, KVSM_SNAPSHOT_CHUNK);
    if (w.buf == NULL) {
        return CRAFT_ENOMEM;
    }
    /* Saved replies are bounded by the u32 length field; a reply that big
     * (an MGET of 4 GiB) cannot be snapshotted. */
    for (const struct kvsm_session *s = sm->sessions.head; s; s = s->next) {
        for (size_t i = 0; i < s->n_saved; i++) {
            if (s->saved[i].len > UINT32_MAX) {
                craft_free(sm->cfg.alloc, w.buf);
                return CRAFT_ETOOBIG;
            }
        }
    }
    uint8_t h[HEADER_LEN];
    memcpy(h, magic, 8);
    put_u32(h + 8, KVSM_SNAPSHOT_VERSION);
    put_u32(h + 12, 0);
    put_u64(h + 16, sm->last_applied);
    put_u64(h + 24, sm->now_ms);
    put_u64(h + 32, ht_count(&sm->keys));
    put_u64(h + 40, sm->sessions.count);
    w_header(&w, h, sizeof h);
    struct ht_iter it;
    ht_iter_init(&it, &sm->keys);
    size_t n = 0;
    for (struct ht_entry *e; w.rv == 0 && (e = ht_iter_next(&it)) != NULL;) {
        w_key(&w, e);
        n++;
    }
    CRAFT_ASSERT(w.rv != 0 || n == ht_count(&sm->keys));
    for (const struct kvsm_session *s = sm->sessions.head; s; s = s->next) {
        w_session(&w, s);
    }
    uint8_t f[5];
    f[0] = 'E';
    w_put(&w, f, 1);
    put_u32(f + 1, w.crc);
    w_put(&w, f + 1, 4);
    w_flush(&w);
    craft_free(sm->cfg.alloc, w.buf);
    return w.rv;
}

/* ---- loading ---- */

/*
 * The reader pulls KVSM_SNAPSHOT_CHUNK bytes at a time through the read
 * callback.  The footer's CRC covers every byte before it; it is computed
 * a whole chunk at a time (when the chunk is used up, and up to the footer
 * at the end) rather than per field, and record bodies lying wholly inside
 * the chunk are checked and used in place rather than copied: loading a
 * received snapshot is on the install path of a follower.
 */
struct reader {
    kvsm_read_cb cb;
    void *ctx;
    uint8_t *buf;
    size_t pos, len;
    size_t crc_pos; /* buf[0, crc_pos) is folded into crc */
    uint32_t crc;   /* of every byte before buf + crc_pos */
};

/* Fold the consumed part of the chunk into the running CRC. */
static void r_fold(struct reader *r)
{
    CRAFT_ASSERT(r->crc_pos <= r->pos);
    r->crc = crc32c(r->crc, r->buf + r->crc_pos, r->pos - r->crc_pos);
    r->crc_pos = r->pos;
}

/* The next chunk; the current one must be used up.  0 or an error (a
 * short snapshot is corrupt). */
static int r_refill(struct reader *r)
{
    CRAFT_ASSERT(r->pos == r->len);
    r_fold(r);
    long long got = r->cb(r->ctx, r->buf, KVSM_SNAPSHOT_CHUNK);
    if (got < 0) {
        return (int)got;
    }
    if (got == 0) {
        return CRAFT_ECORRUPT;
    }
    CRAFT_ASSERT((size_t)got <= KVSM_SNAPSHOT_CHUNK);
    r->pos = r->crc_pos = 0;
    r->len = (size_t)got;
    return 0;
}

/* Exactly n bytes, or an error. */
static int r_get(struct reader *r, void *p, size_t n)
{
    uint8_t *d = p;
    while (n > 0) {
        if (r->pos == r->len) {
            int rv = r_refill(r);
            if (rv != 0) {
                return rv;
            }
        }
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, k);
        r->pos += k;
        d += k;
        n -= k;
    }
    return 0;
}

/* A record header of n bytes and its CRC, into h (checked from the chunk
 * in place when it lies wholly in it: the common case, once per key). */
static int r_header(struct reader *r, uint8_t *h, size_t n)
{
    if (r->len - r->pos >= n + 4) {
        const uint8_t *p = r->buf + r->pos;
        if (get_u32(p + n) != crc32c(0, p, n)) {
            return CRAFT_ECORRUPT;
        }
        memcpy(h, p, n);
        r->pos += n + 4;
        return 0;
    }
    uint8_t c[4];
    int rv = r_get(r, h, n);
    if (rv == 0) {
        rv = r_get(r, c, 4);
    }
    if (rv == 0 && get_u32(c) != crc32c(0, h, n)) {
        rv = CRAFT_ECORRUPT;
    }
    return rv;
}

/* n bytes followed by their CRC: *out points at them, in the chunk if they
 * and the CRC lie wholly in it (the common case: no copy), else copied into
 * scratch.  Valid until the next read.  scratch grows one chunk at a time
 * as the bytes actually arrive: a record header with a valid CRC but a
 * huge length (a crafted snapshot; a CRC is no defence against intent)
 * must not make the loader allocate what it merely claims -- a short
 * snapshot fails as corrupt after reading what is there. */
static int r_blob(struct reader *r, struct buf *scratch, size_t n,
                  const uint8_t **out)
{
    uint8_t c[4];
    const uint8_t *p;
    int rv = 0;
    /* In place only if the CRC after the bytes is in the chunk too:
     * reading it must not refill the chunk under *out. */
    if (r->len - r->pos >= 4 && n <= r->len - r->pos - 4) {
        p = r->buf + r->pos;
        r->pos += n;
    } else {
        buf_reset(scratch);
        /* Never a NULL data pointer, even for an empty key and value:
         * callers do pointer arithmetic on it (UBSan, found by
         * fuzz_kv_snapshot). */
        rv = buf_reserve(scratch, 1);
        while (rv == 0 && scratch->len < n) {
            size_t k = n - scratch->len;
            k = k < KVSM_SNAPSHOT_CHUNK ? k : KVSM_SNAPSHOT_CHUNK;
            rv = buf_reserve(scratch, k);
            if (rv == 0) {
                rv = r_get(r, scratch->data + scratch->len, k);
            }
            if (rv == 0) {
                scratch->len += k;
            }
        }
        p = scratch->data;
    }
    if (rv == 0) {
        rv = r_get(r, c, 4);
    }
    if (rv == 0 && get_u32(c) != crc32c(0, p, n)) {
        rv = CRAFT_ECORRUPT;
    }
    *out = rv == 0 ? p : NULL;
    return rv;
}

static int load_key(struct kvsm *sm, struct reader *r, struct buf *scratch)
{
    uint8_t h[KEY_HDR_LEN];
    int rv = r_header(r, h, sizeof h);
    if (rv != 0) {
        return rv;
    }
    size_t klen = get_u32(h + 1), vlen = get_u32(h + 5);
    int64_t expire = (int64_t)get_u64(h + 9);
    if (h[0] != 'K' || klen > KVSM_VALUE_MAX || vlen > KVSM_VALUE_MAX ||
        expire < 0) {
        return CRAFT_ECORRUPT;
    }
    const uint8_t *kv;
    rv = r_blob(r, scratch, klen + vlen, &kv);
    if (rv != 0) {
        return rv;
    }
    struct ht_entry *e;
    int created;
    rv = ht_upsert(&sm->keys, kv, klen, &e, &created);
    if (rv != 0) {
        return rv;
    }
    if (!created) {
        return CRAFT_ECORRUPT; /* a duplicate key */
    }
    rv = ht_set_expire(&sm->keys, e, expire);
    if (rv == 0) {
        rv = ht_entry_set(&sm->keys, e, kv + klen, vlen);
    }
    e->mod_index = get_u64(h + 17);
    return rv;
}

static int load_session(struct kvsm *sm, struct reader *r, struct buf *scratch)
{
    uint8_t h[SESSION_HDR_LEN];
    int rv = r_header(r, h, sizeof h);
    if (rv != 0) {
        return rv;
    }
    uint64_t id = get_u64(h + 1), last = get_u64(h + 9);
    uint64_t first = get_u64(h + 17);
    size_t n_saved = get_u32(h + 25);
    struct kvsm_sessions *ss = &sm->sessions;
    if (h[0] != 'S' || id == 0 || first == 0 || last > sm->now_ms ||
        (ss->tail != NULL && ss->tail->last_ms > last) ||
        kvsm__sessions_find(ss, id) != NULL) {
        return CRAFT_ECORRUPT;
    }
    if (n_saved > sm->cfg.session_replies_max ||
        ss->count >= sm->cfg.sessions_max) {
        return CRAFT_ELIMIT;
    }
    struct kvsm_session *s;
    rv = kvsm__sessions_add(ss, id, last, &s);
    if (rv != 0) {
        return rv;
    }
    s->first_unacked = first;
    uint64_t prev = 0;
    for (size_t i = 0; i < n_saved; i++) {
        uint8_t sh[SAVED_HDR_LEN];
        rv = r_header(r, sh, sizeof sh);
        if (rv != 0) {
            return rv;
        }
        uint64_t seq = get_u64(sh);
        size_t len = get_u32(sh + 8);
        if (seq < first || (i > 0 && seq <= prev)) {
            return CRAFT_ECORRUPT;
        }
        prev = seq;
        const uint8_t *reply;
        rv = r_blob(r, scratch, len, &reply);
        if (rv != 0) {
            return rv;
        }
        size_t vlen;
        if (resp_reply_len(reply, len, &vlen) != RESP_OK || vlen != len) {
            return CRAFT_ECORRUPT;
        }
        rv = kvsm__session_save(ss, s, seq, reply, len);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int load_header(struct kvsm *sm, struct reader *r, uint64_t *n_keys,
                       uint64_t *n_sessions)
{
    uint8_t h[HEADER_LEN], c[4];
    int rv = r_get(r, h, sizeof h);
    if (rv == 0) {
        rv = r_get(r, c, 4);
    }
    if (rv != 0) {
        return rv;
    }
    if (memcmp(h, magic, 8) != 0 || get_u32(c) != crc32c(0, h, sizeof h)) {
        return CRAFT_ECORRUPT;
    }
    /* Version 1 (before the keys' WATCH versions) is not read: its keys
     * would get versions that differ between replicas that took their
     * snapshots at different indices, and WATCH would decide differently
     * on each.  craft had no release with it. */
    if (get_u32(h + 8) != KVSM_SNAPSHOT_VERSION) {
        return CRAFT_EVERSION;
    }
    if (get_u32(h + 12) != 0) {
        return CRAFT_ECORRUPT;
    }
    sm->last_applied = get_u64(h + 16);
    sm->now_ms = get_u64(h + 24);
    *n_keys = get_u64(h + 32);
    *n_sessions = get_u64(h + 40);
    return 0;
}

static int load_all(struct kvsm *sm, struct reader *r, struct buf *scratch)
{
    uint64_t n_keys, n_sessions;
    int rv = load_header(sm, r, &n_keys, &n_sessions);
    if (rv != 0) {
        return rv;
    }
    if (n_sessions > sm->cfg.sessions_max) {
        return CRAFT_ELIMIT;
    }
    /* Size the key table once (the count is covered by the header's CRC),
     * up to KVSM_LOAD_PRESIZE_MAX keys; beyond that it grows as usual. */
    rv = ht_reserve(&sm->keys, n_keys < KVSM_LOAD_PRESIZE_MAX
                                   ? (size_t)n_keys
                                   : KVSM_LOAD_PRESIZE_MAX);
    for (uint64_t i = 0; rv == 0 && i < n_keys; i++) {
        rv = load_key(sm, r, scratch);
    }
    for (uint64_t i = 0; rv == 0 && i < n_sessions; i++) {
        rv = load_session(sm, r, scratch);
    }
    if (rv != 0) {
        return rv;
    }
    uint8_t f[4];
    rv = r_get(r, f, 1);
    if (rv != 0) {
        return rv;
    }
    /* The footer's CRC covers everything before its own 4 bytes. */
    r_fold(r);
    uint32_t want = r->crc;
    if (f[0] != 'E') {
        return CRAFT_ECORRUPT;
    }
    rv = r_get(r, f, 4);
    if (rv != 0) {
        return rv;
    }
    if (get_u32(f) != want) {
        return CRAFT_ECORRUPT;
    }
    /* Nothing may follow the footer. */
    if (r->pos < r->len) {
        return CRAFT_ECORRUPT;
    }
    long long more = r->cb(r->ctx, r->buf, 1);
    if (more != 0) {
        return more < 0 ? (int)more : CRAFT_ECORRUPT;
    }
    /* Keys already due are kept: the replicas that did not load this
     * snapshot hold them too, and the next entries delete them in the
     * same order everywhere (invariant 6).  What the input could get wrong
     * was refused record by record above, or is checked here (sessions);
     * the O(n) walk of the key table (it rehashes every key) only checks
     * this code, so it runs in debug builds. */
    if (!kvsm__check_all_but_keys(sm)) {
        return CRAFT_ECORRUPT;
    }
    CRAFT_DASSERT(kvsm_check(sm));
    return 0;
}

int kvsm_snapshot_load(const struct kvsm_config *c, kvsm_read_cb read_cb,
                       void *ctx, struct kvsm **out)
{
    CRAFT_ASSERT(c != NULL && read_cb != NULL && out != NULL);
    struct kvsm *sm;
    int rv = kvsm_new(c, &sm);
    if (rv != 0) {
        return rv;
    }
    struct reader r = {.cb = read_cb, .ctx = ctx};
    r.buf = craft_malloc(c->alloc, KVSM_SNAPSHOT_CHUNK);
    if (r.buf == NULL) {
        kvsm_free(sm);
        return CRAFT_ENOMEM;
    }
    struct buf scratch;
    buf_init(&scratch);
    rv = load_all(sm, &r, &scratch);
    buf_close(&scratch);
    craft_free(c->alloc, r.buf);
    if (rv != 0) {
        kvsm_free(sm);
        return rv;
    }
    *out = sm;
    return 0;
}
