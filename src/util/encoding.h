/*
 * Little-endian fixed-width encoding, used by every on-disk and wire format.
 * memcpy-based so that unaligned buffers are fine and UBSan stays quiet.
 */
#ifndef CRAFT_UTIL_ENCODING_H
#define CRAFT_UTIL_ENCODING_H

#include <stdint.h>
#include <string.h>

static inline void put_u8(uint8_t *p, uint8_t v)
{
    p[0] = v;
}

static inline void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* On a little-endian host (every one craft is built on so far) the wire
 * order is the host order: one unaligned load or store, which the compiler
 * emits for a fixed-size memcpy.  The byte loops it does not always merge
 * (SipHash's key loads were a byte loop, 1.6x the instructions). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CRAFT_HOST_LE 1
#else
#define CRAFT_HOST_LE 0
#endif

static inline void put_u32(uint8_t *p, uint32_t v)
{
#if CRAFT_HOST_LE
    memcpy(p, &v, 4);
#else
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
#endif
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
#if CRAFT_HOST_LE
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
#endif
}

static inline uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)(p[1] << 8));
}

static inline uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
#if CRAFT_HOST_LE
    memcpy(&v, p, 4);
#else
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
#endif
    return v;
}

static inline uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
#if CRAFT_HOST_LE
    memcpy(&v, p, 8);
#else
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
#endif
    return v;
}

#endif /* CRAFT_UTIL_ENCODING_H */
