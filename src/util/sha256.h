/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for authenticating
 * peers with a shared cluster secret.  A plain portable implementation: it
 * hashes a few hundred bytes per connection, never bulk data.
 */
#ifndef CRAFT_UTIL_SHA256_H
#define CRAFT_UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_SIZE 32
#define SHA256_BLOCK 64

struct sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes hashed so far */
    uint8_t block[SHA256_BLOCK];
    size_t used; /* bytes in block */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *p, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_SIZE]);

struct hmac_sha256 {
    struct sha256 inner;
    uint8_t okey[SHA256_BLOCK]; /* key ^ opad */
};

/* HMAC over the bytes given to update; the key is copied (hashed first if
 * longer than a block, as RFC 2104 says). */
void hmac_sha256_init(struct hmac_sha256 *h, const void *key, size_t key_len);
void hmac_sha256_update(struct hmac_sha256 *h, const void *p, size_t n);
void hmac_sha256_final(struct hmac_sha256 *h, uint8_t out[SHA256_SIZE]);

/* 1 iff the digests a and b are equal, in time independent of where they
 * differ (comparing MACs must not leak how much of a guess was right). */
int sha256_equal(const uint8_t a[SHA256_SIZE], const uint8_t b[SHA256_SIZE]);

#endif /* CRAFT_UTIL_SHA256_H */
