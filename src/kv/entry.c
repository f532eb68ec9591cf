/*
 * entry.c -- the log entry payload of a KV command.  Little-endian:
 *
 *   u8   version      KVSM_ENTRY_VERSION (2); 1 is read too, without
 *                     flag bit 2
 *   u8   flags        bit 0: a session reference follows
 *                     bit 1: a transaction (MULTI ... EXEC)
 *                     bit 2: watched keys follow (only with bit 1);
 *                     others zero
 *   u64  time_ms      the leader's wall clock when it proposed the entry
 *   [u64 session id, u64 seq, u64 first_unacked]   if flags bit 0
 *   [u32 n_cmds      1 .. KVSM_MULTI_MAX]          if flags bit 1
 *   [u32 n_watch     1 .. KVSM_WATCH_MAX, then n_watch times
 *    u64 version, u32 key length, key bytes]        if flags bit 2
 *   n_cmds (or one) commands, each:
 *     u32  argc      1 .. KVSM_ARGS_MAX
 *     argc times: u32 length (<= KVSM_VALUE_MAX), then the bytes
 *
 * The payload must end exactly after the last argument.  The Raft layer
 * already checksums entries, so there is no CRC here.
 */
#include <string.h>

#include "kv/kvsm.h"
#include "util/assert.h"
#include "util/encoding.h"

#define FLAG_SESSION 0x01u
#define FLAG_MULTI 0x02u
#define FLAG_WATCH 0x04u
#define HEAD_LEN 10u    /* version, flags, time */
#define SESSION_LEN 24u /* id, seq, first_unacked */

static int encode(uint64_t time_ms, const struct kvsm_session_ref *session,
                  bool multi, size_t n_cmds, const struct kvsm_argv *cmds,
                  size_t n_watch, const struct kvsm_watch *watch,
                  struct buf *out)
{
    CRAFT_ASSERT(out != NULL);
    CRAFT_ASSERT(multi || n_watch == 0);
    if ((n_cmds == 0 && n_watch == 0) || n_cmds > KVSM_MULTI_MAX ||
        n_watch > KVSM_WATCH_MAX) {
        return CRAFT_EINVAL;
    }
    size_t total = HEAD_LEN + (session ? SESSION_LEN : 0) + (multi ? 4 : 0);
    if (n_watch > 0) {
        total += 4;
        for (size_t i = 0; i < n_watch; i++) {
            if (watch[i].len > KVSM_VALUE_MAX) {
                return CRAFT_EINVAL;
            }
            total += 12 + watch[i].len;
        }
    }
    for (size_t c = 0; c < n_cmds; c++) {
        if (cmds[c].argc == 0 || cmds[c].argc > KVSM_ARGS_MAX) {
            return CRAFT_EINVAL;
        }
        total += 4;
        for (size_t i = 0; i < cmds[c].argc; i++) {
            if (cmds[c].lens[i] > KVSM_VALUE_MAX) {
                return CRAFT_EINVAL;
            }
            total += 4 + cmds[c].lens[i];
        }
    }
    int rv = buf_reserve(out, total);
    if (rv != 0) {
        return rv;
    }
    uint8_t *p = out->data + out->len;
    put_u8(p, KVSM_ENTRY_VERSION);
    put_u8(p + 1,
           (uint8_t)((session ? FLAG_SESSION : 0) | (multi ? FLAG_MULTI : 0) |
                     (n_watch > 0 ? FLAG_WATCH : 0)));
    put_u64(p + 2, time_ms);
    p += HEAD_LEN;
    if (session) {
        put_u64(p, session->id);
        put_u64(p + 8, session->seq);
        put_u64(p + 16, session->first_unacked);
        p += SESSION_LEN;
    }
    if (multi) {
        put_u32(p, (uint32_t)n_cmds);
        p += 4;
    }
    if (n_watch > 0) {
        put_u32(p, (uint32_t)n_watch);
        p += 4;
        for (size_t i = 0; i < n_watch; i++) {
            put_u64(p, watch[i].version);
            put_u32(p + 8, (uint32_t)watch[i].len);
            if (watch[i].len > 0) {
                memcpy(p + 12, watch[i].key, watch[i].len);
            }
            p += 12 + watch[i].len;
        }
    }
    for (size_t c = 0; c < n_cmds; c++) {
        put_u32(p, (uint32_t)cmds[c].argc);
        p += 4;
        for (size_t i = 0; i < cmds[c].argc; i++) {
            size_t n = cmds[c].lens[i];
            put_u32(p, (uint32_t)n);
            if (n > 0) {
                memcpy(p + 4, cmds[c].argv[i], n);
            }
            p += 4 + n;
        }
    }
    CRAFT_ASSERT((size_t)(p - (out->data + out->len)) == total);
    out->len += total;
    return 0;
}

int kvsm_cmd_encode(uint64_t time_ms, const struct kvsm_session_ref *session,
                    size_t argc, const uint8_t *const *argv, const size_t *lens,
                    struct buf *out)
{
    struct kvsm_argv cmd = {argc, argv, lens};
    return encode(time_ms, session, false, 1, &cmd, 0, NULL, out);
}

int kvsm_multi_encode(uint64_t time_ms, const struct kvsm_session_ref *session,
                      size_t n_cmds, const struct kvsm_argv *cmds,
                      struct buf *out)
{
    return encode(time_ms, session, true, n_cmds, cmds, 0, NULL, out);
}

int kvsm_multi_encode_watch(uint64_t time_ms,
                            const struct kvsm_session_ref *session,
                            size_t n_cmds, const struct kvsm_argv *cmds,
                            size_t n_watch, const struct kvsm_watch *watch,
                            struct buf *out)
{
    if (n_watch == 0) {
        return CRAFT_EINVAL;
    }
    return encode(time_ms, session, true, n_cmds, cmds, n_watch, watch, out);
}

/* Check one command's arguments at p[*off, len). */
static int check_command(const uint8_t *p, size_t len, size_t *off)
{
    if (len - *off < 4) {
        return CRAFT_ECORRUPT;
    }
    uint32_t argc = get_u32(p + *off);
    *off += 4;
    if (argc == 0 || argc > KVSM_ARGS_MAX) {
        return CRAFT_ECORRUPT;
    }
    for (uint32_t i = 0; i < argc; i++) {
        if (len - *off < 4) {
            return CRAFT_ECORRUPT;
        }
        uint32_t n = get_u32(p + *off);
        *off += 4;
        if (n > KVSM_VALUE_MAX || len - *off < n) {
            return CRAFT_ECORRUPT;
        }
        *off += n;
    }
    return 0;
}

int kvsm_cmd_decode(const void *payload, size_t len, struct kvsm_cmd *out)
{
    CRAFT_ASSERT(out != NULL);
    const uint8_t *p = payload;
    if (len < 1) {
        return CRAFT_ECORRUPT;
    }
    if (p[0] != 1 && p[0] != KVSM_ENTRY_VERSION) {
        return CRAFT_EVERSION;
    }
    if (len < HEAD_LEN) {
        return CRAFT_ECORRUPT;
    }
    struct kvsm_cmd c;
    memset(&c, 0, sizeof c);
    uint8_t flags = p[1];
    if ((flags & ~(FLAG_SESSION | FLAG_MULTI | FLAG_WATCH)) != 0 ||
        ((flags & FLAG_WATCH) && (!(flags & FLAG_MULTI) || p[0] == 1))) {
        return CRAFT_ECORRUPT;
    }
    c.time_ms = get_u64(p + 2);
    size_t off = HEAD_LEN;
    if (flags & FLAG_SESSION) {
        if (len - off < SESSION_LEN) {
            return CRAFT_ECORRUPT;
        }
        c.has_session = true;
        c.s.id = get_u64(p + off);
        c.s.seq = get_u64(p + off + 8);
        c.s.first_unacked = get_u64(p + off + 16);
        off += SESSION_LEN;
    }
    c.n_cmds = 1;
    if (flags & FLAG_MULTI) {
        if (len - off < 4) {
            return CRAFT_ECORRUPT;
        }
        c.multi = true;
        c.n_cmds = get_u32(p + off);
        off += 4;
        /* No command: only an EXEC after WATCH with nothing queued. */
        if ((c.n_cmds == 0 && !(flags & FLAG_WATCH)) ||
            c.n_cmds > KVSM_MULTI_MAX) {
            return CRAFT_ECORRUPT;
        }
    }
    if (flags & FLAG_WATCH) {
        if (len - off < 4) {
            return CRAFT_ECORRUPT;
        }
        c.n_watch = get_u32(p + off);
        off += 4;
        if (c.n_watch == 0 || c.n_watch > KVSM_WATCH_MAX) {
            return CRAFT_ECORRUPT;
        }
        c.watch = p + off;
        for (size_t i = 0; i < c.n_watch; i++) {
            if (len - off < 12) {
                return CRAFT_ECORRUPT;
            }
            uint32_t n = get_u32(p + off + 8);
            off += 12;
            if (n > KVSM_VALUE_MAX || len - off < n) {
                return CRAFT_ECORRUPT;
            }
            off += n;
        }
    }
    c.cmds = p + off;
    for (size_t i = 0; i < c.n_cmds; i++) {
        int rv = check_command(p, len, &off);
        if (rv != 0) {
            return rv;
        }
    }
    if (off != len) {
        return CRAFT_ECORRUPT;
    }
    c.cmds_len = (size_t)(p + len - c.cmds);
    c.argc = c.n_cmds > 0 ? get_u32(c.cmds) : 0;
    *out = c;
    return 0;
}

size_t kvsm_cmd_next(const struct kvsm_cmd *c, size_t *off)
{
    CRAFT_ASSERT(*off + 4 <= c->cmds_len);
    size_t argc = get_u32(c->cmds + *off);
    *off += 4;
    CRAFT_ASSERT(argc >= 1);
    return argc;
}

void kvsm_cmd_arg(const struct kvsm_cmd *c, size_t *off, const uint8_t **p,
                  size_t *n)
{
    CRAFT_ASSERT(*off + 4 <= c->cmds_len);
    uint32_t len = get_u32(c->cmds + *off);
    CRAFT_ASSERT(*off + 4 + len <= c->cmds_len);
    *p = c->cmds + *off + 4;
    *n = len;
    *off += 4 + (size_t)len;
}

void kvsm_cmd_watch(const struct kvsm_cmd *c, size_t *off, struct kvsm_watch *w)
{
    CRAFT_ASSERT(c->watch != NULL);
    CRAFT_ASSERT(*off + 12 <= (size_t)(c->cmds - c->watch));
    const uint8_t *p = c->watch + *off;
    w->version = get_u64(p);
    w->len = get_u32(p + 8);
    w->key = p + 12;
    *off += 12 + w->len;
    CRAFT_ASSERT(*off <= (size_t)(c->cmds - c->watch));
}
