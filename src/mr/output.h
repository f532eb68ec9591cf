/*
 * Atomic output files: bytes go to a temporary file in the destination
 * directory, and only mr_output_commit() makes them visible under the
 * final name -- after fsync of the file, rename, and fsync of the
 * directory, so neither a crash of this process nor of the machine can
 * leave a partial mr-out-<r> behind.  A second commit of the same name
 * (a duplicate task) simply replaces the first with identical content.
 */
#ifndef CRAFT_MR_OUTPUT_H
#define CRAFT_MR_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct mr_output {
    int fd;
    char *tmp_path;
    char *final_path;
    struct buf b;
    uint64_t bytes; /* written so far, flushed or not */
    uint32_t crc;   /* crc32c of those bytes */
};

/* Creates a unique temporary file next to final_path.  0 or CRAFT_EIO /
 * CRAFT_ENOMEM with errmsg set. */
int mr_output_open(struct mr_output *o, const char *final_path, char *errmsg,
                   size_t errlen);

/* Appends (buffered).  0 or CRAFT_EIO / CRAFT_ENOSPC. */
int mr_output_write(struct mr_output *o, const void *p, size_t n);

/* One "key value\n" line. */
int mr_output_line(struct mr_output *o, const void *key, size_t key_len,
                   const void *value, size_t value_len);

/* Flushes, fsyncs and renames into place, then fsyncs the directory.  The
 * output is closed whatever the result. */
int mr_output_commit(struct mr_output *o, char *errmsg, size_t errlen);

/* Closes and removes the temporary file.  Safe on a closed output. */
void mr_output_abort(struct mr_output *o);

/* fsync() the directory holding path, so a rename in it is durable. */
int mr_fsync_parent(const char *path);

#endif /* CRAFT_MR_OUTPUT_H */
