/*
 * A growable byte buffer.  The caller owns the struct; buf_close() frees the
 * storage and leaves an empty buffer that may be reused.  buf_reserve()
 * grows in place and returns a code, never a reallocated pointer.
 */
#ifndef CRAFT_UTIL_BUF_H
#define CRAFT_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
};

void buf_init(struct buf *b);
void buf_close(struct buf *b);

/* Make room for at least n more bytes.  0 or CRAFT_ENOMEM. */
int buf_reserve(struct buf *b, size_t n);

/* Append n bytes (copied).  0 or CRAFT_ENOMEM; unchanged on failure. */
int buf_append(struct buf *b, const void *p, size_t n);

/* Drop the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

static inline void buf_reset(struct buf *b)
{
    b->len = 0;
}

#endif /* CRAFT_UTIL_BUF_H */
