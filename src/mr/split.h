/*
 * Input splits.  A file larger than split_bytes is cut into pieces of at
 * most that size, each ending just after a newline (or at the end of the
 * file), so no line is ever cut in two -- only a single line longer than
 * split_bytes makes a bigger split.  Smaller files are one split each,
 * which gives the classic "one map task per input file".
 */
#ifndef CRAFT_MR_SPLIT_H
#define CRAFT_MR_SPLIT_H

#include <stddef.h>
#include <stdint.h>

/* Default split size.  16 MiB keeps a map's input well inside the worker's
 * memory budget and still gives tasks long enough (~0.1 s of word count)
 * that per-task overheads stay small. */
#define MR_SPLIT_BYTES_DEFAULT (16u * 1024u * 1024u)

/* A line longer than this ends a split anyway (input is not required to be
 * text); it bounds how far the newline search reads. */
#define MR_SPLIT_LINE_MAX (1024u * 1024u)

struct mr_split {
    uint32_t file; /* index into the job's input list */
    uint64_t offset;
    uint64_t length;
};

/* Appends the splits of file number `file` at path to *splits (grown with
 * realloc; *n updated).  0, CRAFT_EIO (errmsg says why) or CRAFT_ENOMEM. */
int mr_split_file(const char *path, uint32_t file, uint64_t split_bytes,
                  struct mr_split **splits, uint32_t *n, char *errmsg,
                  size_t errlen);

/* Reads one split into a fresh buffer (*out, caller frees).  An open fd of
 * the file may be passed, else -1 and path is opened. */
int mr_split_read(const char *path, const struct mr_split *s, void **out,
                  char *errmsg, size_t errlen);

#endif /* CRAFT_MR_SPLIT_H */
