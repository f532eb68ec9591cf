/* Encoding and decoding of the on-disk structures described in format.h. */
#include "storage/format.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util/assert.h"
#include "util/crc32c.h"
#include "util/encoding.h"

const uint8_t store__seg_magic[8] = {'C', 'R', 'F', 'T', 'S', 'E', 'G', 0};
const uint8_t store__meta_magic[8] = {'C', 'R', 'F', 'T', 'M', 'E', 'T', 'A'};
const uint8_t store__snap_magic[8] = {'C', 'R', 'F', 'T', 'S', 'N', 'A', 'P'};

_Static_assert(STORE_REC_HDR_BYTES % 8 == 0, "records stay 8-byte aligned");
_Static_assert(STORE_DESC_BYTES % 8 == 0, "records stay 8-byte aligned");
_Static_assert(STORE_SEG_HDR_BYTES % 8 == 0, "records stay 8-byte aligned");
_Static_assert(STORE_SNAP_HDR_BYTES == 48 + 8 * RAFT_MEMBERS_MAX + 8,
               "snapshot header layout");

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

void store__seg_hdr_encode(uint8_t buf[STORE_SEG_HDR_BYTES])
{
    memcpy(buf, store__seg_magic, 8);
    put_u32(buf + 8, STORE_FORMAT_VERSION);
    put_u32(buf + 12, crc32c(0, buf, 12));
}

int store__seg_hdr_decode(const uint8_t buf[STORE_SEG_HDR_BYTES])
{
    if (memcmp(buf, store__seg_magic, 8) != 0 ||
        get_u32(buf + 12) != crc32c(0, buf, 12)) {
        return CRAFT_ECORRUPT;
    }
    if (get_u32(buf + 8) != STORE_FORMAT_VERSION) {
        return CRAFT_EVERSION;
    }
    return 0;
}

void store__rec_hdr_encode(const struct store_rec_hdr *h,
                           uint8_t buf[STORE_REC_HDR_BYTES])
{
    put_u32(buf, STORE_REC_MAGIC);
    put_u32(buf + 4, h->n_entries);
    put_u64(buf + 8, h->first_index);
    put_u64(buf + 16, h->data_len);
    put_u32(buf + 24, h->flags);
    put_u32(buf + 28, h->body_crc);
    put_u32(buf + 32, 0);
    put_u32(buf + 36, crc32c(0, buf, 36));
}

int store__rec_hdr_decode(const uint8_t buf[STORE_REC_HDR_BYTES],
                          struct store_rec_hdr *h)
{
    if (get_u32(buf) != STORE_REC_MAGIC ||
        get_u32(buf + 36) != crc32c(0, buf, 36) || get_u32(buf + 32) != 0) {
        return CRAFT_ECORRUPT;
    }
    h->n_entries = get_u32(buf + 4);
    h->first_index = get_u64(buf + 8);
    h->data_len = get_u64(buf + 16);
    h->flags = get_u32(buf + 24);
    h->body_crc = get_u32(buf + 28);
    return 0;
}

void store__desc_encode(const struct store_desc *d,
                        uint8_t buf[STORE_DESC_BYTES])
{
    put_u64(buf, d->term);
    put_u32(buf + 8, d->len);
    put_u32(buf + 12, d->crc);
    memset(buf + 16, 0, 8);
    put_u8(buf + 16, d->type);
}

void store__desc_decode(const uint8_t buf[STORE_DESC_BYTES],
                        struct store_desc *d)
{
    d->term = get_u64(buf);
    d->len = get_u32(buf + 8);
    d->crc = get_u32(buf + 12);
    d->type = buf[16];
}

void store__meta_encode(const struct store_meta *m,
                        uint8_t buf[STORE_META_BYTES])
{
    memset(buf, 0, STORE_META_BYTES);
    memcpy(buf, store__meta_magic, 8);
    put_u32(buf + 8, STORE_FORMAT_VERSION);
    put_u64(buf + 16, m->seq);
    put_u64(buf + 24, m->hs.term);
    put_u64(buf + 32, m->hs.vote);
    put_u32(buf + 44, crc32c(0, buf, 44));
}

int store__meta_decode(const uint8_t buf[STORE_META_BYTES],
                       struct store_meta *m)
{
    if (memcmp(buf, store__meta_magic, 8) != 0 ||
        get_u32(buf + 44) != crc32c(0, buf, 44)) {
        return CRAFT_ECORRUPT;
    }
    if (get_u32(buf + 8) != STORE_FORMAT_VERSION) {
        return CRAFT_EVERSION;
    }
    m->seq = get_u64(buf + 16);
    m->hs.term = get_u64(buf + 24);
    m->hs.vote = get_u64(buf + 32);
    return 0;
}

void store__snap_hdr_encode(const struct raft_snapshot_meta *meta,
                            uint32_t data_crc,
                            uint8_t buf[STORE_SNAP_HDR_BYTES])
{
    CRAFT_ASSERT(meta->config.n <= RAFT_MEMBERS_MAX);
    memset(buf, 0, STORE_SNAP_HDR_BYTES);
    memcpy(buf, store__snap_magic, 8);
    put_u32(buf + 8, STORE_FORMAT_VERSION);
    put_u32(buf + 12, meta->config.n);
    put_u64(buf + 16, meta->index);
    put_u64(buf + 24, meta->term);
    put_u64(buf + 32, meta->size);
    put_u32(buf + 40, data_crc);
    for (unsigned i = 0; i < meta->config.n; i++) {
        put_u64(buf + 48 + 8 * i, meta->config.ids[i]);
    }
    put_u32(buf + 180, crc32c(0, buf, 180));
}

int store__snap_hdr_decode(const uint8_t buf[STORE_SNAP_HDR_BYTES],
                           struct raft_snapshot_meta *meta, uint32_t *data_crc)
{
    if (memcmp(buf, store__snap_magic, 8) != 0 ||
        get_u32(buf + 180) != crc32c(0, buf, 180)) {
        return CRAFT_ECORRUPT;
    }
    if (get_u32(buf + 8) != STORE_FORMAT_VERSION) {
        return CRAFT_EVERSION;
    }
    uint32_t n = get_u32(buf + 12);
    if (n > RAFT_MEMBERS_MAX || !all_zero(buf + 44, 4)) {
        return CRAFT_ECORRUPT;
    }
    memset(meta, 0, sizeof *meta);
    meta->config.n = n;
    meta->index = get_u64(buf + 16);
    meta->term = get_u64(buf + 24);
    meta->size = get_u64(buf + 32);
    *data_crc = get_u32(buf + 40);
    for (unsigned i = 0; i < n; i++) {
        meta->config.ids[i] = get_u64(buf + 48 + 8 * i);
    }
    return 0;
}

void store__seg_name(char *buf, raft_index first, raft_index last)
{
    snprintf(buf, STORE_NAME_MAX, "%020" PRIu64 "-%020" PRIu64, first, last);
}

void store__snap_name(char *buf, raft_index index, raft_term term)
{
    snprintf(buf, STORE_NAME_MAX, "snap-%020" PRIu64 "-%020" PRIu64, index,
             term);
}

/* Parse exactly 20 decimal digits. */
static bool parse_u64_20(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool store__seg_name_parse(const char *name, raft_index *first,
                           raft_index *last)
{
    if (strlen(name) != 41 || name[20] != '-') {
        return false;
    }
    return parse_u64_20(name, first) && parse_u64_20(name + 21, last) &&
           *first >= 1 && *first <= *last;
}

bool store__snap_name_parse(const char *name, raft_index *index,
                            raft_term *term)
{
    if (strlen(name) != 46 || strncmp(name, "snap-", 5) != 0 ||
        name[25] != '-') {
        return false;
    }
    return parse_u64_20(name + 5, index) && parse_u64_20(name + 26, term);
}
