/* Input splits; see split.h. */
#include "mr/split.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "craft/common.h"
#include "mr/run.h"
#include "util/assert.h"

static int push(struct mr_split **splits, uint32_t *n, struct mr_split s)
{
    /* Grow by doubling: *n is a power of two exactly when the array is
     * full (capacity is never stored separately). */
    if ((*n & (*n - 1)) == 0) {
        size_t cap = *n ? 2 * (size_t)*n : 1;
        struct mr_split *p = realloc(*splits, cap * sizeof *p);
        if (!p) {
            return CRAFT_ENOMEM;
        }
        *splits = p;
    }
    (*splits)[(*n)++] = s;
    return 0;
}

/* The end of the split that starts at off: just after the last newline
 * in [off, off + want), so that splits stay within their size; when that
 * range holds no newline (a line longer than a split), just after the
 * first newline past it, at most MR_SPLIT_LINE_MAX further; or the end of
 * the file. */
static int split_end(int fd, uint64_t off, uint64_t want, uint64_t size,
                     uint64_t *end)
{
    if (off + want >= size) {
        *end = size;
        return 0;
    }
    char buf[4096];
    uint64_t hi = off + want; /* search [lo, hi) backwards */
    while (hi > off) {
        uint64_t lo = hi - off > sizeof buf ? hi - sizeof buf : off;
        int rv = mr_pread_all(fd, buf, (size_t)(hi - lo), lo);
        if (rv != 0) {
            return rv;
        }
        char *nl = memrchr(buf, '\n', (size_t)(hi - lo));
        if (nl) {
            *end = lo + (uint64_t)(nl - buf) + 1;
            return 0;
        }
        hi = lo;
    }
    uint64_t pos = off + want, limit = pos + MR_SPLIT_LINE_MAX;
    while (pos < size && pos < limit) {
        size_t n = sizeof buf;
        if (size - pos < n) {
            n = (size_t)(size - pos);
        }
        int rv = mr_pread_all(fd, buf, n, pos);
        if (rv != 0) {
            return rv;
        }
        char *nl = memchr(buf, '\n', n);
        if (nl) {
            *end = pos + (uint64_t)(nl - buf) + 1;
            return 0;
        }
        pos += n;
    }
    *end = pos < size ? pos : size;
    return 0;
}

int mr_split_file(const char *path, uint32_t file, uint64_t split_bytes,
                  struct mr_split **splits, uint32_t *n, char *errmsg,
                  size_t errlen)
{
    CRAFT_ASSERT(split_bytes > 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(errmsg, errlen, "input %s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return CRAFT_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(errmsg, errlen, "input %s: not a regular file", path);
        close(fd);
        return CRAFT_EIO;
    }
    uint64_t size = (uint64_t)st.st_size, off = 0;
    int rv = 0;
    do {
        uint64_t end;
        rv = split_end(fd, off, split_bytes, size, &end);
        if (rv != 0) {
            snprintf(errmsg, errlen, "input %s: read error", path);
            rv = CRAFT_EIO;
            break;
        }
        rv = push(splits, n, (struct mr_split){file, off, end - off});
        if (rv != 0) {
            snprintf(errmsg, errlen, "out of memory");
            break;
        }
        off = end;
    } while (off < size);
    close(fd);
    return rv;
}

int mr_split_read(const char *path, const struct mr_split *s, void **out,
                  char *errmsg, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errmsg, errlen, "input %s: %s", path, strerror(errno));
        return CRAFT_EIO;
    }
    void *p = malloc(s->length ? (size_t)s->length : 1);
    if (!p) {
        close(fd);
        snprintf(errmsg, errlen, "out of memory reading %s", path);
        return CRAFT_ENOMEM;
    }
    int rv = mr_pread_all(fd, p, (size_t)s->length, s->offset);
    close(fd);
    if (rv != 0) {
        free(p);
        snprintf(errmsg, errlen, "input %s: %s", path,
                 rv == CRAFT_ECORRUPT ? "file shrank" : strerror(-rv));
        return CRAFT_EIO;
    }
    *out = p;
    return 0;
}
