/* Atomic output files; see output.h. */
#include "mr/output.h"

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
#include "util/crc32c.h"

#define OUTPUT_BUF_BYTES (256u * 1024u)

int mr_output_open(struct mr_output *o, const char *final_path, char *errmsg,
                   size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    buf_init(&o->b);
    size_t n = strlen(final_path);
    o->final_path = malloc(n + 1);
    o->tmp_path = malloc(n + 32);
    if (!o->final_path || !o->tmp_path ||
        buf_reserve(&o->b, OUTPUT_BUF_BYTES) != 0) {
        mr_output_abort(o);
        snprintf(errmsg, errlen, "out of memory");
        return CRAFT_ENOMEM;
    }
    memcpy(o->final_path, final_path, n + 1);
    /* The temporary lives in the same directory (rename must not cross
     * file systems) and is a dot-file, so `ls mr-out*` never matches it. */
    const char *slash = strrchr(final_path, '/');
    size_t dirlen = slash ? (size_t)(slash - final_path) + 1 : 0;
    snprintf(o->tmp_path, n + 32, "%.*s.%s.XXXXXX", (int)dirlen, final_path,
             final_path + dirlen);
    o->fd = mkostemp(o->tmp_path, O_CLOEXEC);
    if (o->fd < 0) {
        snprintf(errmsg, errlen, "create %s: %s", o->tmp_path, strerror(errno));
        free(o->tmp_path);
        o->tmp_path = NULL;
        mr_output_abort(o);
        return CRAFT_EIO;
    }
    (void)fchmod(o->fd, 0644);
    return 0;
}

static int output_flush(struct mr_output *o)
{
    int rv = mr_write_all(o->fd, o->b.data, o->b.len);
    o->b.len = 0;
    if (rv != 0) {
        return rv == -ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO;
    }
    return 0;
}

int mr_output_write(struct mr_output *o, const void *p, size_t n)
{
    CRAFT_ASSERT(o->fd >= 0);
    o->crc = crc32c(o->crc, p, n);
    o->bytes += n;
    if (o->b.len + n > o->b.cap) {
        int rv = output_flush(o);
        if (rv != 0) {
            return rv;
        }
    }
    if (n > o->b.cap) {
        int rv = mr_write_all(o->fd, p, n);
        return rv == 0 ? 0 : (rv == -ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO);
    }
    memcpy(o->b.data + o->b.len, p, n);
    o->b.len += n;
    return 0;
}

int mr_output_line(struct mr_output *o, const void *key, size_t key_len,
                   const void *value, size_t value_len)
{
    int rv = mr_output_write(o, key, key_len);
    if (rv == 0) {
        rv = mr_output_write(o, " ", 1);
    }
    if (rv == 0) {
        rv = mr_output_write(o, value, value_len);
    }
    return rv ? rv : mr_output_write(o, "\n", 1);
}

int mr_fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s",
                 (int)(slash == path ? 1 : slash - path), path);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return CRAFT_EIO;
    }
    int rv = fsync(fd) == 0 ? 0 : CRAFT_EIO;
    close(fd);
    return rv;
}

int mr_output_commit(struct mr_output *o, char *errmsg, size_t errlen)
{
    CRAFT_ASSERT(o->fd >= 0);
    int rv = output_flush(o);
    const char *what = "write";
    if (rv == 0 && fsync(o->fd) != 0) {
        rv = CRAFT_EIO;
        what = "fsync";
    }
    if (rv == 0 && rename(o->tmp_path, o->final_path) != 0) {
        rv = CRAFT_EIO;
        what = "rename";
    }
    if (rv == 0 && mr_fsync_parent(o->final_path) != 0) {
        rv = CRAFT_EIO;
        what = "fsync directory of";
    }
    if (rv != 0) {
        snprintf(errmsg, errlen, "%s %s: %s", what, o->final_path,
                 strerror(errno));
        mr_output_abort(o);
        return rv;
    }
    free(o->tmp_path);
    o->tmp_path = NULL;
    mr_output_abort(o);
    return 0;
}

void mr_output_abort(struct mr_output *o)
{
    if (o->fd >= 0) {
        close(o->fd);
        o->fd = -1;
    }
    if (o->tmp_path) {
        unlink(o->tmp_path);
    }
    free(o->tmp_path);
    free(o->final_path);
    o->tmp_path = o->final_path = NULL;
    buf_close(&o->b);
}
