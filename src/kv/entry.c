/*
 * entry.c -- the log entry payload of a KV command.  Little-endian:
 *
 *   u8   version      KVSM_ENTRY_VERSION
 *   u8   flags        bit 0: a session reference follows; others zero
 *   u64  time_ms      the leader's wall clock when it proposed the entry
 *   [u64 session id, u64 seq, u64 first_unacked]   if flags bit 0
 *   u32  argc         1 .. KVSM_ARGS_MAX
 *   argc times: u32 length (<= KVSM_VALUE_MAX), then the bytes
 *
 * The payload must end exactly after the last argument.  The Raft layer
 * already checksums entries, so there is no CRC here.
 */
#include <string.h>

#include "kv/kvsm.h"
#include "util/assert.h"
#include "util/encoding.h"

#define FLAG_SESSION 0x01u
#define HEAD_LEN 10u    /* version, flags, time */
#define SESSION_LEN 24u /* id, seq, first_unacked */

int kvsm_cmd_encode(uint64_t time_ms, const struct kvsm_session_ref *session,
                    size_t argc, const uint8_t *const *argv, const size_t *lens,
                    struct buf *out)
{
    CRAFT_ASSERT(out != NULL);
    if (argc == 0 || argc > KVSM_ARGS_MAX) {
        return CRAFT_EINVAL;
    }
    size_t total = HEAD_LEN + (session ? SESSION_LEN : 0) + 4;
    for (size_t i = 0; i < argc; i++) {
        if (lens[i] > KVSM_VALUE_MAX) {
            return CRAFT_EINVAL;
        }
        total += 4 + lens[i];
    }
    int rv = buf_reserve(out, total);
    if (rv != 0) {
        return rv;
    }
    uint8_t *p = out->data + out->len;
    put_u8(p, KVSM_ENTRY_VERSION);
    put_u8(p + 1, session ? FLAG_SESSION : 0);
    put_u64(p + 2, time_ms);
    p += HEAD_LEN;
    if (session) {
        put_u64(p, session->id);
        put_u64(p + 8, session->seq);
        put_u64(p + 16, session->first_unacked);
        p += SESSION_LEN;
    }
    put_u32(p, (uint32_t)argc);
    p += 4;
    for (size_t i = 0; i < argc; i++) {
        put_u32(p, (uint32_t)lens[i]);
        if (lens[i] > 0) {
            memcpy(p + 4, argv[i], lens[i]);
        }
        p += 4 + lens[i];
    }
    CRAFT_ASSERT((size_t)(p - (out->data + out->len)) == total);
    out->len += total;
    return 0;
}

int kvsm_cmd_decode(const void *payload, size_t len, struct kvsm_cmd *out)
{
    CRAFT_ASSERT(out != NULL);
    const uint8_t *p = payload;
    if (len < 1) {
        return CRAFT_ECORRUPT;
    }
    if (p[0] != KVSM_ENTRY_VERSION) {
        return CRAFT_EVERSION;
    }
    if (len < HEAD_LEN) {
        return CRAFT_ECORRUPT;
    }
    struct kvsm_cmd c;
    memset(&c, 0, sizeof c);
    uint8_t flags = p[1];
    if ((flags & ~FLAG_SESSION) != 0) {
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
    if (len - off < 4) {
        return CRAFT_ECORRUPT;
    }
    uint32_t argc = get_u32(p + off);
    off += 4;
    if (argc == 0 || argc > KVSM_ARGS_MAX) {
        return CRAFT_ECORRUPT;
    }
    c.args = p + off;
    for (uint32_t i = 0; i < argc; i++) {
        if (len - off < 4) {
            return CRAFT_ECORRUPT;
        }
        uint32_t n = get_u32(p + off);
        off += 4;
        if (n > KVSM_VALUE_MAX || len - off < n) {
            return CRAFT_ECORRUPT;
        }
        off += n;
    }
    if (off != len) {
        return CRAFT_ECORRUPT;
    }
    c.argc = argc;
    c.args_len = (size_t)(p + len - c.args);
    *out = c;
    return 0;
}

void kvsm_cmd_arg(const struct kvsm_cmd *c, size_t *off, const uint8_t **p,
                  size_t *n)
{
    CRAFT_ASSERT(*off + 4 <= c->args_len);
    uint32_t len = get_u32(c->args + *off);
    CRAFT_ASSERT(*off + 4 + len <= c->args_len);
    *p = c->args + *off + 4;
    *n = len;
    *off += 4 + (size_t)len;
}
