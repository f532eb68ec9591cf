/*
 * Run files: the on-disk format of every intermediate record in craft-mr.
 *
 * A run holds the records of one map task (or one spill of it), split into
 * n_partitions consecutive segments, each sorted by key:
 *
 *   segment 0 | segment 1 | ... | index | footer
 *
 *   record  = u32 key_len, u32 value_len, key bytes, value bytes
 *   index   = n_partitions x { u64 offset, u64 length, u64 n_records,
 *                              u32 crc32c(segment bytes), u32 zero }
 *   footer  = u32 n_partitions, u32 crc32c(index), u64 MR_RUN_MAGIC
 *
 * All integers little-endian.  Invariants:
 *   1. Segments are contiguous and in partition order: offset[0] = 0,
 *      offset[p+1] = offset[p] + length[p].
 *   2. Within a segment, keys are in non-decreasing memcmp order (shorter
 *      first on a common prefix), which is the order reduce sees.
 *   3. The crc of a segment is computed while writing and verified while
 *      reading it, whether the bytes came from the local disk or over the
 *      network (a fetched segment is stored alone, with the crc from the
 *      index of the run it came from).
 * A run is written to a temporary name and renamed once complete, so a
 * reader never sees a partial one.
 */
#ifndef CRAFT_MR_RUN_H
#define CRAFT_MR_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define MR_RUN_MAGIC 0x31524d5446415243ull /* "CRAFTMR1" */
#define MR_RUN_INDEX_ENTRY_SIZE 32u
#define MR_RUN_FOOTER_SIZE 16u
#define MR_RECORD_HEADER_SIZE 8u

/* More reduce partitions than this is a configuration mistake, and the
 * bound keeps run indexes (32 bytes per partition) small. */
#define MR_PARTITIONS_MAX 10000u

/* Buffered I/O size for run readers and writers: large enough that a
 * sequential scan costs a syscall per 256 KiB, small enough that a merge of
 * MR_MERGE_FANIN runs fits easily in a worker's memory budget. */
#define MR_RUN_IO_BYTES (256u * 1024u)

struct mr_segment {
    uint64_t offset;
    uint64_t length;
    uint64_t n_records;
    uint32_t crc;
};

/* Writes one run file.  Records must be appended partition by partition,
 * each partition's records in key order. */
struct mr_run_writer {
    int fd;
    char *tmp_path;   /* where the run is written until finish */
    char *final_path; /* renamed here by finish */
    uint32_t n_partitions;
    uint32_t cur; /* partition being written */
    uint64_t written;
    struct mr_segment *index;
    struct buf out;
};

/* Creates path.tmp; 0, CRAFT_EIO or CRAFT_ENOMEM (errmsg says why). */
int mr_run_writer_open(struct mr_run_writer *w, const char *path,
                       uint32_t n_partitions, char *errmsg, size_t errlen);

/* Appends one record to partition p (>= the current partition). */
int mr_run_writer_add(struct mr_run_writer *w, uint32_t p, const void *key,
                      uint32_t key_len, const void *value, uint32_t value_len);

/* Writes the index and footer and renames the file into place. */
int mr_run_writer_finish(struct mr_run_writer *w, char *errmsg, size_t errlen);

/* Closes and removes an unfinished run; safe after a failed open. */
void mr_run_writer_abort(struct mr_run_writer *w);

/* Reads the index of the run at path into *segs (malloc'd, n_partitions
 * entries).  0, CRAFT_EIO, CRAFT_ECORRUPT or CRAFT_ENOMEM. */
int mr_run_read_index(const char *path, uint32_t n_partitions,
                      struct mr_segment **segs, char *errmsg, size_t errlen);

/*
 * Reads the records of one segment in order, checking the crc at its end.
 * Used by the merge; key and value point into the reader's buffer and stay
 * valid until the next mr_seg_reader_next() or close.
 */
struct mr_seg_reader {
    int fd;
    int own_fd;
    uint64_t pos, end; /* file offsets still to read */
    uint32_t crc, want_crc;
    uint64_t n_left;
    struct buf in; /* bytes read but not consumed: in.data[head..in.len) */
    size_t head;
    const uint8_t *key, *value;
    uint32_t key_len, value_len;
    const char *name; /* for error messages, borrowed */
};

/* Opens the segment [seg] of the file at path (0 on success).  With
 * fd >= 0 the file is not opened again and the fd is borrowed. */
int mr_seg_reader_open(struct mr_seg_reader *r, const char *path, int fd,
                       const struct mr_segment *seg, char *errmsg,
                       size_t errlen);

/* 1 and the next record in key/value, 0 at the end of the segment (after
 * checking the crc and record count), or CRAFT_EIO / CRAFT_ECORRUPT. */
int mr_seg_reader_next(struct mr_seg_reader *r, char *errmsg, size_t errlen);

void mr_seg_reader_close(struct mr_seg_reader *r);

/* memcmp order, a shorter key first on a common prefix. */
int mr_key_cmp(const void *a, size_t alen, const void *b, size_t blen);

/* FNV-1a 32-bit, masked to 31 bits, mod n: the partition of a key. */
uint32_t mr_partition(const void *key, size_t len, uint32_t n);

/* Makes a one-partition run of a file whose first seg->length bytes are a
 * segment (fetched from another worker): appends the index and footer at
 * that offset.  seg->offset must be 0.  0 or CRAFT_EIO / CRAFT_ENOSPC. */
int mr_run_seal_segment(int fd, const struct mr_segment *seg);

/* write() all of it, retrying on EINTR and short writes.  0 or -errno. */
int mr_write_all(int fd, const void *p, size_t n);

/* pread() exactly n bytes at off.  0, -errno, or CRAFT_ECORRUPT on EOF. */
int mr_pread_all(int fd, void *p, size_t n, uint64_t off);

#endif /* CRAFT_MR_RUN_H */
