/*
 * CRC-32C (Castagnoli), the checksum of every frame on disk and on the wire.
 * Uses the SSE4.2 crc32 instruction when the CPU has it, otherwise a
 * slicing-by-8 table.  crc32c(0, p, n) starts a new checksum; passing a
 * previous result continues it, so crc32c(crc32c(0, a, n), b, m) equals the
 * checksum of a followed by b.
 */
#ifndef CRAFT_UTIL_CRC32C_H
#define CRAFT_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table version, exposed so that tests can compare the two. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif /* CRAFT_UTIL_CRC32C_H */
