/* Payload encoding for the craft-mr protocol; see wire.h. */
#include "mr/wire.h"

#include <string.h>

#include "util/encoding.h"

void mr_w_init(struct mr_wbuf *w)
{
    buf_init(&w->b);
    w->oom = 0;
}

void mr_w_close(struct mr_wbuf *w)
{
    buf_close(&w->b);
}

static uint8_t *w_room(struct mr_wbuf *w, size_t n)
{
    if (w->oom || buf_reserve(&w->b, n) != 0) {
        w->oom = 1;
        return NULL;
    }
    uint8_t *p = w->b.data + w->b.len;
    w->b.len += n;
    return p;
}

void mr_w_u8(struct mr_wbuf *w, uint8_t v)
{
    uint8_t *p = w_room(w, 1);
    if (p) {
        put_u8(p, v);
    }
}

void mr_w_u16(struct mr_wbuf *w, uint16_t v)
{
    uint8_t *p = w_room(w, 2);
    if (p) {
        put_u16(p, v);
    }
}

void mr_w_u32(struct mr_wbuf *w, uint32_t v)
{
    uint8_t *p = w_room(w, 4);
    if (p) {
        put_u32(p, v);
    }
}

void mr_w_u64(struct mr_wbuf *w, uint64_t v)
{
    uint8_t *p = w_room(w, 8);
    if (p) {
        put_u64(p, v);
    }
}

void mr_w_str(struct mr_wbuf *w, const char *s)
{
    size_t n = strlen(s);
    mr_w_u32(w, (uint32_t)n);
    mr_w_bytes(w, s, n);
}

void mr_w_bytes(struct mr_wbuf *w, const void *src, size_t n)
{
    uint8_t *p = n ? w_room(w, n) : NULL;
    if (p) {
        memcpy(p, src, n);
    }
}

void mr_r_init(struct mr_rbuf *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = 0;
}

static const uint8_t *r_take(struct mr_rbuf *r, size_t n)
{
    if (r->err || r->len - r->pos < n) {
        r->err = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

uint8_t mr_r_u8(struct mr_rbuf *r)
{
    const uint8_t *p = r_take(r, 1);
    return p ? p[0] : 0;
}

uint16_t mr_r_u16(struct mr_rbuf *r)
{
    const uint8_t *p = r_take(r, 2);
    return p ? get_u16(p) : 0;
}

uint32_t mr_r_u32(struct mr_rbuf *r)
{
    const uint8_t *p = r_take(r, 4);
    return p ? get_u32(p) : 0;
}

uint64_t mr_r_u64(struct mr_rbuf *r)
{
    const uint8_t *p = r_take(r, 8);
    return p ? get_u64(p) : 0;
}

void mr_r_str(struct mr_rbuf *r, char *out, size_t cap)
{
    uint32_t n = mr_r_u32(r);
    if (r->err || n >= cap || n > MR_STR_MAX) {
        r->err = 1;
        if (cap) {
            out[0] = '\0';
        }
        return;
    }
    const uint8_t *p = r_take(r, n);
    if (!p) {
        out[0] = '\0';
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    if (memchr(out, '\0', n)) {
        r->err = 1; /* an embedded NUL would truncate names silently */
    }
}

const uint8_t *mr_r_rest(struct mr_rbuf *r, size_t *n)
{
    *n = r->err ? 0 : r->len - r->pos;
    const uint8_t *p = r->p + r->pos;
    r->pos = r->len;
    return p;
}
