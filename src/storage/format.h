/*
 * The on-disk formats of the storage, byte by byte (docs/storage.md has the
 * same tables with the reasoning).  All integers are little-endian; every
 * file starts with a magic and a format version; every record carries
 * CRC-32C checksums computed before writing and verified after reading.
 *
 * Segment file ("open" or "<first>-<last>", 20-digit decimal indices):
 *
 *     0  8  magic "CRFTSEG\0"
 *     8  4  format version (STORE_FORMAT_VERSION)
 *    12  4  CRC-32C of bytes 0..11
 *    16     records, back to back, each a multiple of 8 bytes long
 *
 * Record (one append batch; one write and one fdatasync):
 *
 *     0  4  magic "RCRD"
 *     4  4  n_entries
 *     8  8  first_index: index of the first entry, or, for a record that
 *           truncates, the index from which earlier entries are dropped
 *    16  8  data_len: bytes of entry payload (before padding)
 *    24  4  flags (0)
 *    28  4  body CRC-32C over the n_entries descriptors
 *    32  4  reserved (0)
 *    36  4  header CRC-32C over bytes 0..35
 *    40     n_entries descriptors of 24 bytes:
 *             0 8 term, 8 4 payload length, 12 4 CRC-32C of the payload,
 *             16 1 type, 17 7 zero
 *     ..    payloads back to back, then zeros up to a multiple of 8
 *
 * The body CRC covers the descriptors, which carry the CRC of each payload,
 * so the header CRC, the body CRC and the payload CRCs together cover every
 * byte of the record.
 *
 * Metadata file ("meta1", "meta2"; the one with the higher seq wins):
 *
 *     0  8  magic "CRFTMETA"
 *     8  4  format version
 *    12  4  zero
 *    16  8  seq (incremented at every write; odd in meta1, even in meta2)
 *    24  8  current term
 *    32  8  voted for (0: none)
 *    40  4  zero
 *    44  4  CRC-32C of bytes 0..43
 *
 * Snapshot file ("snap-<index>-<term>", written as "snap.tmp"):
 *
 *     0  8  magic "CRFTSNAP"
 *     8  4  format version
 *    12  4  number of configuration members
 *    16  8  last index covered
 *    24  8  term of that index
 *    32  8  size of the application data
 *    40  4  CRC-32C of the application data
 *    44  4  zero
 *    48 128 member ids, 16 x 8 bytes, unused ones zero
 *   176  4  zero
 *   180  4  CRC-32C of bytes 0..179
 *   184     application data
 */
#ifndef CRAFT_STORAGE_FORMAT_H
#define CRAFT_STORAGE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft/raft.h"

#define STORE_FORMAT_VERSION 1u

#define STORE_SEG_HDR_BYTES 16u
#define STORE_REC_HDR_BYTES 40u
#define STORE_DESC_BYTES 24u
#define STORE_META_BYTES 48u
#define STORE_SNAP_HDR_BYTES 184u
#define STORE_REC_MAGIC 0x44524352u /* "RCRD" read as little-endian */

extern const uint8_t store__seg_magic[8];
extern const uint8_t store__meta_magic[8];
extern const uint8_t store__snap_magic[8];

/* Bytes a record of n entries with data_len payload bytes occupies. */
static inline uint64_t store__rec_bytes(uint64_t n, uint64_t data_len)
{
    return STORE_REC_HDR_BYTES + STORE_DESC_BYTES * n +
           ((data_len + 7u) & ~(uint64_t)7u);
}

struct store_rec_hdr {
    uint32_t n_entries;
    raft_index first_index;
    uint64_t data_len;
    uint32_t flags;
    uint32_t body_crc;
};

struct store_desc {
    raft_term term;
    uint32_t len;
    uint32_t crc;
    uint8_t type;
};

void store__seg_hdr_encode(uint8_t buf[STORE_SEG_HDR_BYTES]);
/* 0, CRAFT_ECORRUPT (bad magic or CRC) or CRAFT_EVERSION. */
int store__seg_hdr_decode(const uint8_t buf[STORE_SEG_HDR_BYTES]);

/* Fills in the header CRC. */
void store__rec_hdr_encode(const struct store_rec_hdr *h,
                           uint8_t buf[STORE_REC_HDR_BYTES]);
/* 0 or CRAFT_ECORRUPT (magic, header CRC or a non-zero reserved field). */
int store__rec_hdr_decode(const uint8_t buf[STORE_REC_HDR_BYTES],
                          struct store_rec_hdr *h);

void store__desc_encode(const struct store_desc *d,
                        uint8_t buf[STORE_DESC_BYTES]);
void store__desc_decode(const uint8_t buf[STORE_DESC_BYTES],
                        struct store_desc *d);

struct store_meta {
    uint64_t seq;
    struct raft_hard_state hs;
};

void store__meta_encode(const struct store_meta *m,
                        uint8_t buf[STORE_META_BYTES]);
/* 0, CRAFT_ECORRUPT or CRAFT_EVERSION. */
int store__meta_decode(const uint8_t buf[STORE_META_BYTES],
                       struct store_meta *m);

void store__snap_hdr_encode(const struct raft_snapshot_meta *meta,
                            uint32_t data_crc,
                            uint8_t buf[STORE_SNAP_HDR_BYTES]);
/* 0, CRAFT_ECORRUPT or CRAFT_EVERSION. */
int store__snap_hdr_decode(const uint8_t buf[STORE_SNAP_HDR_BYTES],
                           struct raft_snapshot_meta *meta, uint32_t *data_crc);

/* File names.  buf must hold STORE_NAME_MAX bytes. */
#define STORE_NAME_MAX 64
void store__seg_name(char *buf, raft_index first, raft_index last);
void store__snap_name(char *buf, raft_index index, raft_term term);
/* Parse names; true on a match. */
bool store__seg_name_parse(const char *name, raft_index *first,
                           raft_index *last);
bool store__snap_name_parse(const char *name, raft_index *index,
                            raft_term *term);

#endif /* CRAFT_STORAGE_FORMAT_H */
