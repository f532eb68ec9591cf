/*
 * K-way merge of sorted segments, grouped by key: the reduce side of the
 * shuffle, and the map side's merge of its spills.
 *
 * The merge owns n segment readers and a binary min-heap of them ordered by
 * (current key, reader number), so equal keys come out in a stable order.
 * mr_merge_next_key() moves to the next distinct key (skipping any values
 * of the previous key the caller did not read); mr_merge_next_value() then
 * yields that key's values one by one.  Memory: one read buffer per
 * segment (MR_RUN_IO_BYTES, more only for a record bigger than that) and a
 * copy of the current key, whatever the number of values per key.
 */
#ifndef CRAFT_MR_MERGE_H
#define CRAFT_MR_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "mr/run.h"
#include "util/buf.h"

/* At most this many segments are merged at once; more are first merged in
 * groups into intermediate runs (see mr_reduce_inputs in task.c).  128
 * buffers of 256 KiB is 32 MiB, an eighth of the default worker budget. */
#define MR_MERGE_FANIN 128u

struct mr_merge {
    struct mr_seg_reader *readers;
    uint32_t n;
    uint32_t *heap; /* reader numbers; heap[0] has the smallest key */
    uint32_t heap_len;
    int pending; /* reader whose current record was handed out, or -1 */
    struct buf key;
    int in_key; /* a key is current and may have more values */
    char *errmsg;
    size_t errlen;
};

/* Takes ownership of readers[0..n) (opened, not yet advanced) and reads
 * the first record of each.  0 or an error; on error the readers are
 * closed.  errmsg must outlive the merge. */
int mr_merge_init(struct mr_merge *m, struct mr_seg_reader *readers, uint32_t n,
                  char *errmsg, size_t errlen);

/* 1 with the next key in *key, *key_len (valid until the next call), 0 at
 * the end, or a negative error. */
int mr_merge_next_key(struct mr_merge *m, const void **key, size_t *key_len);

/* 1 with the next value of the current key (valid until the next call), 0
 * when the key has no more values, or a negative error. */
int mr_merge_next_value(struct mr_merge *m, const void **value,
                        size_t *value_len);

/* Closes every reader and frees the heap; readers is freed too. */
void mr_merge_close(struct mr_merge *m);

#endif /* CRAFT_MR_MERGE_H */
