/*
 * The wire format of Raft messages: little-endian, versioned, strictly
 * validated.  Every transport (craftd's TCP frames, the simulator) uses it.
 *
 *   header (28 bytes): u8 version (RAFT_WIRE_VERSION), u8 type, u16 zero,
 *                      u64 from, u64 to, u64 term
 *   VOTE          u64 last_index, u64 last_term, u8 flags (1 pre, 2 transfer)
 *   VOTE_RESP     u8 flags (1 granted, 2 pre)
 *   APPEND        u64 prev_index, u64 prev_term, u64 commit, u64 read_round,
 *                 u32 n, then n times: u64 term, u8 type, u32 len, bytes
 *                 (entry indices are implied: prev_index + 1, + 2, ...)
 *   APPEND_RESP   u8 success, u64 index, u64 conflict_term,
 *                 u64 conflict_index, u64 rejected, u64 read_round
 *   SNAPSHOT      u64 index, u64 term, u32 n, n times u64 id, u64 size,
 *                 u64 offset, u8 last, u32 len, then len bytes of data
 *                 (which the runtime appends after raft_message_encode)
 *   SNAPSHOT_RESP u64 index, u64 next_offset, u8 done
 *   TIMEOUT_NOW   nothing
 *
 * Invariants:
 *   1. decode(encode(m)) == m for every valid m.
 *   2. decode never reads outside [buf, buf + len) and rejects (with
 *      CRAFT_EPROTO) every input that is not exactly the encoding of some
 *      valid message prefix: unknown version or type, non-zero reserved
 *      bits, booleans other than 0/1, truncation, sizes above the limits.
 */
#include <limits.h>
#include <string.h>

#include "craft/raft.h"
#include "util/assert.h"
#include "util/encoding.h"

#define HEADER_SIZE 28
#define ENTRY_HEADER_SIZE 13
#define VOTE_SIZE 17
#define VOTE_RESP_SIZE 1
#define APPEND_SIZE 36
#define APPEND_RESP_SIZE 41
#define SNAP_RESP_SIZE 17

_Static_assert(HEADER_SIZE == 1 + 1 + 2 + 8 + 8 + 8, "header layout");
_Static_assert(APPEND_SIZE == 4 * 8 + 4, "append layout");
_Static_assert(APPEND_RESP_SIZE == 1 + 5 * 8, "append resp layout");

static size_t snapshot_fixed(const struct raft_msg_snapshot *s)
{
    return 8 + 8 + 4 + 8 * (size_t)s->meta.config.n + 8 + 8 + 1 + 4;
}

size_t raft_message_encoded_size(const struct raft_message *m)
{
    size_t n = HEADER_SIZE;
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE:
        return n + VOTE_SIZE;
    case RAFT_MSG_VOTE_RESP:
        return n + VOTE_RESP_SIZE;
    case RAFT_MSG_APPEND:
        n += APPEND_SIZE;
        for (size_t k = 0; k < m->append.n_entries; k++) {
            n += ENTRY_HEADER_SIZE + m->append.entries[k].buf.len;
        }
        return n;
    case RAFT_MSG_APPEND_RESP:
        return n + APPEND_RESP_SIZE;
    case RAFT_MSG_SNAPSHOT:
        return n + snapshot_fixed(&m->snapshot);
    case RAFT_MSG_SNAPSHOT_RESP:
        return n + SNAP_RESP_SIZE;
    case RAFT_MSG_TIMEOUT_NOW:
        return n;
    }
    return 0;
}

/* A cursor that writes; the size was checked beforehand. */
struct wr {
    uint8_t *p;
};

static void w8(struct wr *w, uint8_t v)
{
    put_u8(w->p, v);
    w->p += 1;
}

static void w32(struct wr *w, uint32_t v)
{
    put_u32(w->p, v);
    w->p += 4;
}

static void w64(struct wr *w, uint64_t v)
{
    put_u64(w->p, v);
    w->p += 8;
}

static void encode_body(const struct raft_message *m, struct wr *w)
{
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE:
        w64(w, m->vote.last_index);
        w64(w, m->vote.last_term);
        w8(w, (uint8_t)(m->vote.pre | (m->vote.transfer << 1)));
        break;
    case RAFT_MSG_VOTE_RESP:
        w8(w, (uint8_t)(m->vote_resp.granted | (m->vote_resp.pre << 1)));
        break;
    case RAFT_MSG_APPEND:
        w64(w, m->append.prev_index);
        w64(w, m->append.prev_term);
        w64(w, m->append.commit);
        w64(w, m->append.read_round);
        w32(w, (uint32_t)m->append.n_entries);
        for (size_t k = 0; k < m->append.n_entries; k++) {
            const struct raft_entry *e = &m->append.entries[k];
            w64(w, e->term);
            w8(w, e->type);
            w32(w, (uint32_t)e->buf.len);
            if (e->buf.len > 0) {
                memcpy(w->p, e->buf.base, e->buf.len);
                w->p += e->buf.len;
            }
        }
        break;
    case RAFT_MSG_APPEND_RESP:
        w8(w, m->append_resp.success);
        w64(w, m->append_resp.index);
        w64(w, m->append_resp.conflict_term);
        w64(w, m->append_resp.conflict_index);
        w64(w, m->append_resp.rejected);
        w64(w, m->append_resp.read_round);
        break;
    case RAFT_MSG_SNAPSHOT: {
        const struct raft_msg_snapshot *s = &m->snapshot;
        w64(w, s->meta.index);
        w64(w, s->meta.term);
        w32(w, s->meta.config.n);
        for (unsigned i = 0; i < s->meta.config.n; i++) {
            w64(w, s->meta.config.ids[i]);
        }
        w64(w, s->meta.size);
        w64(w, s->offset);
        w8(w, s->last);
        w32(w, (uint32_t)s->data.len);
        break;
    }
    case RAFT_MSG_SNAPSHOT_RESP:
        w64(w, m->snapshot_resp.index);
        w64(w, m->snapshot_resp.next_offset);
        w8(w, m->snapshot_resp.done);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    }
}

static bool encodable(const struct raft_message *m)
{
    if (m->type < RAFT_MSG_VOTE || m->type > RAFT_MSG_TIMEOUT_NOW) {
        return false;
    }
    if (m->type == RAFT_MSG_APPEND) {
        if (m->append.n_entries > UINT32_MAX) {
            return false;
        }
        for (size_t k = 0; k < m->append.n_entries; k++) {
            if (m->append.entries[k].buf.len > RAFT_ENTRY_BYTES_MAX) {
                return false;
            }
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (m->snapshot.meta.config.n > RAFT_MEMBERS_MAX ||
         m->snapshot.data.len > RAFT_CHUNK_BYTES_MAX)) {
        return false;
    }
    return true;
}

int raft_message_encode(const struct raft_message *m, uint8_t *buf, size_t cap)
{
    if (!encodable(m)) {
        return CRAFT_EINVAL;
    }
    size_t size = raft_message_encoded_size(m);
    if (size > cap || size > INT_MAX) {
        return CRAFT_ETOOBIG;
    }
    struct wr w = {buf};
    w8(&w, RAFT_WIRE_VERSION);
    w8(&w, m->type);
    w8(&w, 0);
    w8(&w, 0);
    w64(&w, m->from);
    w64(&w, m->to);
    w64(&w, m->term);
    encode_body(m, &w);
    CRAFT_ASSERT((size_t)(w.p - buf) == size);
    return (int)size;
}

/* ---- decoding ------------------------------------------------------- */

/* A cursor that reads; every read checks the remaining length. */
struct rd {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static bool need(struct rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t r8(struct rd *r)
{
    if (!need(r, 1)) {
        return 0;
    }
    uint8_t v = r->p[0];
    r->p += 1;
    r->left -= 1;
    return v;
}

static uint32_t r32(struct rd *r)
{
    if (!need(r, 4)) {
        return 0;
    }
    uint32_t v = get_u32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint64_t r64(struct rd *r)
{
    if (!need(r, 8)) {
        return 0;
    }
    uint64_t v = get_u64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

static bool rbool(struct rd *r)
{
    uint8_t v = r8(r);
    if (v > 1) {
        r->bad = true;
    }
    return v == 1;
}

static const uint8_t *rbytes(struct rd *r, size_t n)
{
    if (!need(r, n)) {
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static int decode_append(struct rd *r, struct raft_entry *scratch,
                         size_t n_scratch, struct raft_message *m)
{
    m->append.prev_index = r64(r);
    m->append.prev_term = r64(r);
    m->append.commit = r64(r);
    m->append.read_round = r64(r);
    uint32_t n = r32(r);
    if (r->bad) {
        return CRAFT_EPROTO;
    }
    if (n > n_scratch) {
        return CRAFT_ETOOBIG;
    }
    /* Each entry takes at least its header: reject absurd counts before
     * touching the scratch array. */
    if ((size_t)n > r->left / ENTRY_HEADER_SIZE) {
        return CRAFT_EPROTO;
    }
    if (m->append.prev_index > UINT64_MAX - n ||
        (m->append.prev_index == 0) != (m->append.prev_term == 0)) {
        return CRAFT_EPROTO; /* only the empty prefix has term 0 */
    }
    for (uint32_t k = 0; k < n; k++) {
        struct raft_entry *e = &scratch[k];
        e->index = m->append.prev_index + 1 + k;
        e->term = r64(r);
        e->type = r8(r);
        uint32_t len = r32(r);
        if (r->bad || len > RAFT_ENTRY_BYTES_MAX || e->term == 0 ||
            (e->type != RAFT_ENTRY_COMMAND && e->type != RAFT_ENTRY_NOOP)) {
            return CRAFT_EPROTO;
        }
        const uint8_t *data = rbytes(r, len);
        if (r->bad) {
            return CRAFT_EPROTO;
        }
        /* Borrowed from buf; the core copies what it keeps. */
        e->buf.base = len > 0 ? (void *)(uintptr_t)data : NULL;
        e->buf.len = len;
    }
    m->append.entries = n > 0 ? scratch : NULL;
    m->append.n_entries = n;
    return 0;
}

static int decode_snapshot(struct rd *r, struct raft_message *m)
{
    struct raft_msg_snapshot *s = &m->snapshot;
    s->meta.index = r64(r);
    s->meta.term = r64(r);
    uint32_t n = r32(r);
    if (r->bad || n == 0 || n > RAFT_MEMBERS_MAX) {
        return CRAFT_EPROTO;
    }
    s->meta.config.n = n;
    for (uint32_t i = 0; i < n; i++) {
        s->meta.config.ids[i] = r64(r);
        if (s->meta.config.ids[i] == 0) {
            return CRAFT_EPROTO; /* 0 means "none" */
        }
        for (uint32_t j = 0; j < i; j++) {
            if (s->meta.config.ids[j] == s->meta.config.ids[i]) {
                return CRAFT_EPROTO; /* a member twice */
            }
        }
    }
    s->meta.size = r64(r);
    s->offset = r64(r);
    s->last = rbool(r);
    uint32_t len = r32(r);
    if (r->bad || len > RAFT_CHUNK_BYTES_MAX || s->offset > s->meta.size ||
        len > s->meta.size - s->offset ||
        s->last != (s->offset + len == s->meta.size)) {
        return CRAFT_EPROTO;
    }
    const uint8_t *data = rbytes(r, len);
    if (r->bad) {
        return CRAFT_EPROTO;
    }
    s->data.base = len > 0 ? (void *)(uintptr_t)data : NULL;
    s->data.len = len;
    return 0;
}

static int decode_body(struct rd *r, struct raft_entry *scratch,
                       size_t n_scratch, struct raft_message *m)
{
    uint8_t flags;
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE:
        m->vote.last_index = r64(r);
        m->vote.last_term = r64(r);
        flags = r8(r);
        if (flags & ~3u) {
            return CRAFT_EPROTO;
        }
        m->vote.pre = flags & 1;
        m->vote.transfer = (flags >> 1) & 1;
        return 0;
    case RAFT_MSG_VOTE_RESP:
        flags = r8(r);
        if (flags & ~3u) {
            return CRAFT_EPROTO;
        }
        m->vote_resp.granted = flags & 1;
        m->vote_resp.pre = (flags >> 1) & 1;
        return 0;
    case RAFT_MSG_APPEND:
        return decode_append(r, scratch, n_scratch, m);
    case RAFT_MSG_APPEND_RESP:
        m->append_resp.success = rbool(r);
        m->append_resp.index = r64(r);
        m->append_resp.conflict_term = r64(r);
        m->append_resp.conflict_index = r64(r);
        m->append_resp.rejected = r64(r);
        m->append_resp.read_round = r64(r);
        return 0;
    case RAFT_MSG_SNAPSHOT:
        return decode_snapshot(r, m);
    case RAFT_MSG_SNAPSHOT_RESP:
        m->snapshot_resp.index = r64(r);
        m->snapshot_resp.next_offset = r64(r);
        m->snapshot_resp.done = rbool(r);
        return 0;
    case RAFT_MSG_TIMEOUT_NOW:
        return 0;
    }
    return CRAFT_EPROTO;
}

int raft_message_decode(const uint8_t *buf, size_t len,
                        struct raft_entry *scratch, size_t n_scratch,
                        struct raft_message *out)
{
    struct rd r = {buf, len, false};
    struct raft_message m;
    memset(&m, 0, sizeof m);
    uint8_t version = r8(&r);
    m.type = r8(&r);
    uint8_t z0 = r8(&r), z1 = r8(&r);
    m.from = r64(&r);
    m.to = r64(&r);
    m.term = r64(&r);
    if (r.bad) {
        return CRAFT_EPROTO;
    }
    if (version != RAFT_WIRE_VERSION || z0 != 0 || z1 != 0 ||
        m.type < RAFT_MSG_VOTE || m.type > RAFT_MSG_TIMEOUT_NOW) {
        return CRAFT_EPROTO;
    }
    int rv = decode_body(&r, scratch, n_scratch, &m);
    if (rv != 0) {
        return rv;
    }
    if (r.bad) {
        return CRAFT_EPROTO;
    }
    size_t used = len - r.left;
    if (used > INT_MAX) {
        return CRAFT_ETOOBIG;
    }
    *out = m;
    return (int)used;
}
