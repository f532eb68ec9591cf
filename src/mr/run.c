/*
 * Run files: writer, index reader and segment reader.  See run.h for the
 * format and its invariants.
 */
#include "mr/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "craft/common.h"
#include "craft/mr.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/encoding.h"

_Static_assert(MR_RUN_INDEX_ENTRY_SIZE == 8 + 8 + 8 + 4 + 4,
               "run index entry layout");
_Static_assert(MR_RUN_FOOTER_SIZE == 4 + 4 + 8, "run footer layout");

int mr_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return (alen > blen) - (alen < blen);
}

uint32_t mr_partition(const void *key, size_t len, uint32_t n)
{
    CRAFT_ASSERT(n > 0);
    const uint8_t *p = key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return (h & 0x7fffffffu) % n;
}

int mr_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int mr_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = pread(fd, b, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (k == 0) {
            return CRAFT_ECORRUPT;
        }
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static int io_error(int err, const char *what, const char *path, char *errmsg,
                    size_t errlen)
{
    snprintf(errmsg, errlen, "%s %s: %s", what, path, strerror(-err));
    return err == -ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO;
}

int mr_run_writer_open(struct mr_run_writer *w, const char *path,
                       uint32_t n_partitions, char *errmsg, size_t errlen)
{
    CRAFT_ASSERT(n_partitions > 0 && n_partitions <= MR_PARTITIONS_MAX);
    memset(w, 0, sizeof *w);
    w->fd = -1;
    buf_init(&w->out);
    w->n_partitions = n_partitions;
    size_t plen = strlen(path);
    w->final_path = malloc(plen + 1);
    w->tmp_path = malloc(plen + 5);
    w->index = calloc(n_partitions, sizeof *w->index);
    if (!w->final_path || !w->tmp_path || !w->index ||
        buf_reserve(&w->out, MR_RUN_IO_BYTES) != 0) {
        mr_run_writer_abort(w);
        snprintf(errmsg, errlen, "out of memory");
        return CRAFT_ENOMEM;
    }
    memcpy(w->final_path, path, plen + 1);
    snprintf(w->tmp_path, plen + 5, "%s.tmp", path);
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int rv = io_error(-errno, "create", w->tmp_path, errmsg, errlen);
        mr_run_writer_abort(w);
        return rv;
    }
    return 0;
}

static int writer_flush(struct mr_run_writer *w)
{
    int rv = mr_write_all(w->fd, w->out.data, w->out.len);
    w->out.len = 0;
    return rv;
}

/* Closes segments up to (not including) p: they get their final length. */
static void writer_advance(struct mr_run_writer *w, uint32_t p)
{
    while (w->cur < p) {
        w->cur++;
        w->index[w->cur].offset = w->written;
    }
}

int mr_run_writer_add(struct mr_run_writer *w, uint32_t p, const void *key,
                      uint32_t key_len, const void *value, uint32_t value_len)
{
    CRAFT_ASSERT(p < w->n_partitions);
    CRAFT_ASSERT(p >= w->cur);
    writer_advance(w, p);
    uint8_t hdr[MR_RECORD_HEADER_SIZE];
    put_u32(hdr, key_len);
    put_u32(hdr + 4, value_len);
    struct mr_segment *s = &w->index[p];
    const void *parts[3] = {hdr, key, value};
    size_t lens[3] = {sizeof hdr, key_len, value_len};
    for (int i = 0; i < 3; i++) {
        if (lens[i] == 0) {
            continue;
        }
        s->crc = crc32c(s->crc, parts[i], lens[i]);
        if (w->out.len + lens[i] > w->out.cap) {
            int rv = writer_flush(w);
            if (rv != 0) {
                return rv == -ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO;
            }
        }
        if (lens[i] > w->out.cap) {
            int rv = mr_write_all(w->fd, parts[i], lens[i]);
            if (rv != 0) {
                return rv == -ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO;
            }
        } else {
            memcpy(w->out.data + w->out.len, parts[i], lens[i]);
            w->out.len += lens[i];
        }
    }
    s->length += sizeof hdr + (uint64_t)key_len + value_len;
    s->n_records++;
    w->written += sizeof hdr + (uint64_t)key_len + value_len;
    return 0;
}

int mr_run_writer_finish(struct mr_run_writer *w, char *errmsg, size_t errlen)
{
    writer_advance(w, w->n_partitions - 1);
    size_t ilen = (size_t)w->n_partitions * MR_RUN_INDEX_ENTRY_SIZE;
    uint8_t *idx = calloc(1, ilen + MR_RUN_FOOTER_SIZE);
    if (!idx) {
        snprintf(errmsg, errlen, "out of memory");
        return CRAFT_ENOMEM;
    }
    for (uint32_t p = 0; p < w->n_partitions; p++) {
        uint8_t *e = idx + (size_t)p * MR_RUN_INDEX_ENTRY_SIZE;
        put_u64(e, w->index[p].offset);
        put_u64(e + 8, w->index[p].length);
        put_u64(e + 16, w->index[p].n_records);
        put_u32(e + 24, w->index[p].crc);
    }
    put_u32(idx + ilen, w->n_partitions);
    put_u32(idx + ilen + 4, crc32c(0, idx, ilen));
    put_u64(idx + ilen + 8, MR_RUN_MAGIC);
    int rv = writer_flush(w);
    if (rv == 0) {
        rv = mr_write_all(w->fd, idx, ilen + MR_RUN_FOOTER_SIZE);
    }
    free(idx);
    if (rv != 0) {
        return io_error(rv, "write", w->tmp_path, errmsg, errlen);
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        return io_error(-errno, "close", w->tmp_path, errmsg, errlen);
    }
    w->fd = -1;
    if (rename(w->tmp_path, w->final_path) != 0) {
        return io_error(-errno, "rename", w->tmp_path, errmsg, errlen);
    }
    free(w->tmp_path);
    w->tmp_path = NULL;
    mr_run_writer_abort(w);
    return 0;
}

void mr_run_writer_abort(struct mr_run_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->tmp_path) {
        unlink(w->tmp_path);
    }
    free(w->tmp_path);
    free(w->final_path);
    free(w->index);
    buf_close(&w->out);
    w->tmp_path = w->final_path = NULL;
    w->index = NULL;
}

int mr_run_read_index(const char *path, uint32_t n_partitions,
                      struct mr_segment **segs, char *errmsg, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return io_error(-errno, "open", path, errmsg, errlen);
    }
    int rv = CRAFT_ECORRUPT;
    size_t ilen = (size_t)n_partitions * MR_RUN_INDEX_ENTRY_SIZE;
    uint8_t *idx = malloc(ilen + MR_RUN_FOOTER_SIZE);
    struct mr_segment *out = calloc(n_partitions, sizeof *out);
    off_t size = lseek(fd, 0, SEEK_END);
    if (!idx || !out) {
        rv = CRAFT_ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
        goto err;
    }
    if (size < (off_t)(ilen + MR_RUN_FOOTER_SIZE) ||
        mr_pread_all(fd, idx, ilen + MR_RUN_FOOTER_SIZE,
                     (uint64_t)size - ilen - MR_RUN_FOOTER_SIZE) != 0) {
        snprintf(errmsg, errlen, "%s: truncated run file", path);
        goto err;
    }
    if (get_u64(idx + ilen + 8) != MR_RUN_MAGIC ||
        get_u32(idx + ilen) != n_partitions ||
        get_u32(idx + ilen + 4) != crc32c(0, idx, ilen)) {
        snprintf(errmsg, errlen, "%s: bad run footer or index checksum", path);
        goto err;
    }
    uint64_t expect = 0;
    for (uint32_t p = 0; p < n_partitions; p++) {
        const uint8_t *e = idx + (size_t)p * MR_RUN_INDEX_ENTRY_SIZE;
        out[p].offset = get_u64(e);
        out[p].length = get_u64(e + 8);
        out[p].n_records = get_u64(e + 16);
        out[p].crc = get_u32(e + 24);
        if (out[p].offset != expect) {
            snprintf(errmsg, errlen, "%s: segment %u out of place", path, p);
            goto err;
        }
        expect += out[p].length;
    }
    if (expect + ilen + MR_RUN_FOOTER_SIZE != (uint64_t)size) {
        snprintf(errmsg, errlen, "%s: index does not match file size", path);
        goto err;
    }
    free(idx);
    close(fd);
    *segs = out;
    return 0;
err:
    free(out);
    free(idx);
    close(fd);
    return rv;
}

int mr_seg_reader_open(struct mr_seg_reader *r, const char *path, int fd,
                       const struct mr_segment *seg, char *errmsg,
                       size_t errlen)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->in);
    r->name = path;
    r->fd = fd;
    if (fd < 0) {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            return io_error(-errno, "open", path, errmsg, errlen);
        }
        r->own_fd = 1;
        (void)posix_fadvise(r->fd, (off_t)seg->offset, (off_t)seg->length,
                            POSIX_FADV_SEQUENTIAL);
    }
    r->pos = seg->offset;
    r->end = seg->offset + seg->length;
    r->want_crc = seg->crc;
    r->n_left = seg->n_records;
    if (buf_reserve(&r->in, MR_RUN_IO_BYTES) != 0) {
        mr_seg_reader_close(r);
        snprintf(errmsg, errlen, "out of memory");
        return CRAFT_ENOMEM;
    }
    return 0;
}

/* Makes at least n unconsumed bytes available; CRAFT_ECORRUPT if the
 * segment ends first. */
static int reader_fill(struct mr_seg_reader *r, size_t n, char *errmsg,
                       size_t errlen)
{
    size_t have = r->in.len - r->head;
    if (have >= n) {
        return 0;
    }
    if (r->head > 0) {
        memmove(r->in.data, r->in.data + r->head, have);
        r->in.len = have;
        r->head = 0;
    }
    if (n > r->in.cap && buf_reserve(&r->in, n - r->in.len) != 0) {
        snprintf(errmsg, errlen, "out of memory");
        return CRAFT_ENOMEM;
    }
    while (r->in.len < n) {
        uint64_t left = r->end - r->pos;
        size_t want = r->in.cap - r->in.len;
        if (left == 0) {
            snprintf(errmsg, errlen, "%s: segment ends inside a record",
                     r->name);
            return CRAFT_ECORRUPT;
        }
        if (want > left) {
            want = (size_t)left;
        }
        ssize_t k = pread(r->fd, r->in.data + r->in.len, want, (off_t)r->pos);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            snprintf(errmsg, errlen, "%s: read: %s", r->name,
                     k < 0 ? strerror(errno) : "unexpected end of file");
            return k < 0 ? CRAFT_EIO : CRAFT_ECORRUPT;
        }
        r->crc = crc32c(r->crc, r->in.data + r->in.len, (size_t)k);
        r->in.len += (size_t)k;
        r->pos += (uint64_t)k;
    }
    return 0;
}

int mr_seg_reader_next(struct mr_seg_reader *r, char *errmsg, size_t errlen)
{
    if (r->head == r->in.len && r->pos == r->end) {
        if (r->crc != r->want_crc || r->n_left != 0) {
            snprintf(errmsg, errlen, "%s: segment checksum mismatch", r->name);
            return CRAFT_ECORRUPT;
        }
        return 0;
    }
    int rv = reader_fill(r, MR_RECORD_HEADER_SIZE, errmsg, errlen);
    if (rv != 0) {
        return rv;
    }
    uint32_t klen = get_u32(r->in.data + r->head);
    uint32_t vlen = get_u32(r->in.data + r->head + 4);
    if (klen > MR_KEY_MAX || vlen > MR_VALUE_MAX || r->n_left == 0) {
        snprintf(errmsg, errlen, "%s: bad record header", r->name);
        return CRAFT_ECORRUPT;
    }
    size_t total = MR_RECORD_HEADER_SIZE + (size_t)klen + vlen;
    rv = reader_fill(r, total, errmsg, errlen);
    if (rv != 0) {
        return rv;
    }
    r->key = r->in.data + r->head + MR_RECORD_HEADER_SIZE;
    r->value = r->key + klen;
    r->key_len = klen;
    r->value_len = vlen;
    r->head += total;
    r->n_left--;
    return 1;
}

void mr_seg_reader_close(struct mr_seg_reader *r)
{
    if (r->own_fd && r->fd >= 0) {
        close(r->fd);
    }
    r->fd = -1;
    buf_close(&r->in);
}

int mr_run_seal_segment(int fd, const struct mr_segment *seg)
{
    CRAFT_ASSERT(seg->offset == 0);
    uint8_t tail[MR_RUN_INDEX_ENTRY_SIZE + MR_RUN_FOOTER_SIZE] = {0};
    put_u64(tail, 0);
    put_u64(tail + 8, seg->length);
    put_u64(tail + 16, seg->n_records);
    put_u32(tail + 24, seg->crc);
    put_u32(tail + MR_RUN_INDEX_ENTRY_SIZE, 1);
    put_u32(tail + MR_RUN_INDEX_ENTRY_SIZE + 4,
            crc32c(0, tail, MR_RUN_INDEX_ENTRY_SIZE));
    put_u64(tail + MR_RUN_INDEX_ENTRY_SIZE + 8, MR_RUN_MAGIC);
    if (lseek(fd, (off_t)seg->length, SEEK_SET) < 0) {
        return CRAFT_EIO;
    }
    int rv = mr_write_all(fd, tail, sizeof tail);
    if (rv != 0) {
        return rv == -ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO;
    }
    return 0;
}
