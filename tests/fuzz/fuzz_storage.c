/*
 * libFuzzer target for the storage's start-up path (src/storage/load.c and
 * the decoders of format.c): a whole data directory of arbitrary files,
 * held in the in-memory VFS of the unit tests (tests/unit/storage_memfs.c).
 *
 * Input: one mode byte (bit 0: CRCs off, fuzz.h), then files, each
 *   u8 kind, u8 a, u8 b, u16 length (little-endian), length bytes;
 * kind % 6 names the file: meta1, meta2, open, snap.tmp, the closed segment
 * "<a+1>-<a+1+b>", the snapshot "snap-<a>-<b>".
 *
 * Checked on every input:
 *   1. store_scan() returns 0 or an error with a message, never crashes,
 *      never reads out of bounds, never leaks;
 *   2. a scanned log is contiguous, follows the snapshot and has
 *      non-decreasing terms;
 *   3. store_repair() then a second store_scan() succeed with no torn tail
 *      and exactly the same entries and hard state: repairing loses nothing
 *      that start-up accepted.
 */
#include <stdio.h>
#include <string.h>

#include <fcntl.h>

#include "craft/common.h"
#include "fuzz.h"
#include "storage/format.h"
#include "storage/store.h"
#include "storage_memfs.h"
#include "util/crc32c.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define DIR "/d"

static void put_file(struct store_vfs *v, const char *name, const void *p,
                     size_t n)
{
    char path[128];
    snprintf(path, sizeof path, DIR "/%s", name);
    int fd = v->open(v, path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (n > 0) {
        struct iovec iov = {(void *)(uintptr_t)p, n};
        CHECK(v->pwritev(v, fd, &iov, 1, 0) == 0);
    }
    CHECK(v->fsync(v, fd) == 0);
    CHECK(v->close(v, fd) == 0);
}

static void file_name(uint8_t kind, uint8_t a, uint8_t b,
                      char name[STORE_NAME_MAX])
{
    static const char *fixed[] = {"meta1", "meta2", "open", "snap.tmp"};
    switch (kind % 6) {
    case 4:
        store__seg_name(name, (raft_index)a + 1, (raft_index)a + 1 + b);
        break;
    case 5:
        store__snap_name(name, a, b);
        break;
    default:
        snprintf(name, STORE_NAME_MAX, "%s", fixed[kind % 6]);
        break;
    }
}

static void same_scan(const struct store_scan *x, const struct store_scan *y)
{
    CHECK(x->hs.term == y->hs.term && x->hs.vote == y->hs.vote);
    CHECK(x->has_snapshot == y->has_snapshot);
    CHECK(!x->has_snapshot || (x->snapshot.index == y->snapshot.index &&
                               x->snapshot.term == y->snapshot.term));
    CHECK(x->n_entries == y->n_entries);
    for (size_t i = 0; i < x->n_entries; i++) {
        const struct raft_entry *e = &x->entries[i], *f = &y->entries[i];
        CHECK(e->index == f->index && e->term == f->term &&
              e->type == f->type && e->buf.len == f->buf.len);
        CHECK(e->buf.len == 0 ||
              memcmp(e->buf.base, f->buf.base, e->buf.len) == 0);
    }
}

static void check_scan(const struct store_scan *sc)
{
    for (size_t i = 0; i < sc->n_entries; i++) {
        const struct raft_entry *e = &sc->entries[i];
        CHECK(e->index == sc->entries[0].index + i);
        CHECK(i == 0 || e->term >= sc->entries[i - 1].term);
    }
    if (sc->has_snapshot && sc->n_entries > 0) {
        CHECK(sc->entries[0].index == sc->snapshot.index + 1);
        CHECK(sc->entries[0].term >= sc->snapshot.term);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fuzz_crc_off = (data[0] & 1) != 0;
    struct memfs *fs = memfs_new();
    struct store_vfs *v = memfs_vfs(fs);
    CHECK(v->mkdir(v, DIR) == 0);
    size_t off = 1;
    while (size - off >= 5) {
        const uint8_t *h = data + off;
        size_t n = (size_t)h[3] | (size_t)h[4] << 8;
        off += 5;
        n = n < size - off ? n : size - off;
        char name[STORE_NAME_MAX];
        file_name(h[0], h[1], h[2], name);
        put_file(v, name, data + off, n);
        off += n;
    }
    struct store_options o;
    store_options_default(&o);
    o.vfs = v;
    /* Small segments: repair preallocates the open segment to this size,
     * which with the 64 MiB default made each run take 20 ms. */
    o.segment_bytes = 1u << 16;
    o.entry_bytes_max = 1u << 14;
    struct store_scan sc;
    char err[512] = "";
    int rv = store_scan(DIR, &o, &sc, err, sizeof err);
    if (rv != 0) {
        CHECK(rv < 0 && err[0] != '\0' && strcmp(err, "ok") != 0);
        memfs_free(fs);
        return 0;
    }
    check_scan(&sc);
    CHECK(store_repair(DIR, &o, &sc, err, sizeof err) == 0);
    struct store_scan again;
    rv = store_scan(DIR, &o, &again, err, sizeof err);
    if (rv != 0) {
        fprintf(stderr, "rescan after repair: %s\n", err);
    }
    CHECK(rv == 0);
    CHECK(!again.torn);
    same_scan(&sc, &again);
    store_scan_close(&again);
    store_scan_close(&sc);
    memfs_free(fs);
    return 0;
}

/* ---- seeds ---- */

/* Append one input file record to out (at most 64 KiB of data). */
static size_t add_file(uint8_t *out, uint8_t kind, uint8_t a, uint8_t b,
                       const uint8_t *p, size_t n)
{
    out[0] = kind;
    out[1] = a;
    out[2] = b;
    out[3] = (uint8_t)n;
    out[4] = (uint8_t)(n >> 8);
    memcpy(out + 5, p, n);
    return 5 + n;
}

/* A segment holding one record of entries first.. (terms[]), with the
 * given salt; returns its size. */
static size_t segment(uint8_t *out, uint64_t salt, raft_index first,
                      const raft_term *terms, uint32_t n)
{
    store__seg_hdr_encode(salt, out);
    uint8_t *rec = out + STORE_SEG_HDR_BYTES;
    uint8_t *descs = rec + STORE_REC_HDR_BYTES;
    uint8_t *payloads = descs + STORE_DESC_BYTES * n;
    uint64_t data_len = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *pl = payloads + data_len;
        int len = snprintf((char *)pl, 32, "entry %llu",
                           (unsigned long long)(first + i));
        struct store_desc d = {.term = terms[i],
                               .len = (uint32_t)len,
                               .crc = crc32c(0, pl, (size_t)len),
                               .type = RAFT_ENTRY_COMMAND};
        store__desc_encode(&d, descs + STORE_DESC_BYTES * i);
        data_len += (uint64_t)len;
    }
    uint64_t rec_bytes = store__rec_bytes(n, data_len);
    memset(payloads + data_len, 0,
           rec_bytes - (uint64_t)(payloads - rec) - data_len);
    struct store_rec_hdr rh = {.n_entries = n,
                               .first_index = first,
                               .data_len = data_len,
                               .flags = 0,
                               .body_crc =
                                   crc32c(0, descs, STORE_DESC_BYTES * n)};
    store__rec_hdr_encode(&rh, salt, STORE_SEG_HDR_BYTES, rec);
    return STORE_SEG_HDR_BYTES + (size_t)rec_bytes;
}

static void write_seeds(const char *dir, uint8_t mode)
{
    static uint8_t in[8192], f[2048];
    size_t n = 0;
    /* 1: the hard state only. */
    struct store_meta m = {.seq = 1, .hs = {.term = 2, .vote = 1}};
    store__meta_encode(&m, f);
    n += add_file(in + n, 0, 0, 0, f, STORE_META_BYTES);
    fuzz_seed(dir, 1, mode, in, n);
    /* 2: a closed segment 1-3 and an open one from 4. */
    const raft_term t1[] = {1, 1, 2}, t2[] = {2, 2};
    size_t k = segment(f, 0x1111, 1, t1, 3);
    n += add_file(in + n, 4, 0, 2, f, k);
    k = segment(f, 0x2222, 4, t2, 2);
    n += add_file(in + n, 2, 0, 0, f, k);
    fuzz_seed(dir, 2, mode, in, n);
    /* 3: the same with a snapshot of index 2, term 1. */
    struct raft_snapshot_meta sm = {.index = 2, .term = 1, .size = 3};
    sm.config.n = 1;
    sm.config.ids[0] = 1;
    store__snap_hdr_encode(&sm, crc32c(0, "abc", 3), f);
    memcpy(f + STORE_SNAP_HDR_BYTES, "abc", 3);
    n += add_file(in + n, 5, 2, 1, f, STORE_SNAP_HDR_BYTES + 3);
    fuzz_seed(dir, 3, mode, in, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Rejections are logged; keep the fuzzer's output readable. */
    log_set_level(LOG_OFF);
    fuzz_maybe_write_seeds(write_seeds);
    return 0;
}
