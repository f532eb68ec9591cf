/*
 * The raw durability floor of a disk: how long one small pwrite followed by
 * fdatasync takes, the cost every acknowledged Raft write pays at least
 * once on its critical path.
 *
 * By default the file is preallocated (fallocate) and made durable first,
 * so that each fdatasync flushes data only, as craft's storage does with
 * its preallocated segments.  --append extends the file instead, which
 * also flushes the new size (what an append-only log without
 * preallocation pays, e.g. Redis's appendonly file).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "craft/common.h"
#include "loadgen.h"
#include "util/assert.h"

static int sys_fail(char *errmsg, size_t errmsg_size, const char *what,
                    const char *path)
{
    int e = errno;
    snprintf(errmsg, errmsg_size, "%s %s: %s", what, path, strerror(e));
    return e == ENOSPC ? CRAFT_ENOSPC : CRAFT_EIO;
}

/* Time `n` writes of buf[size] + fdatasync into fd; every latency goes to
 * stats.  0 or a code. */
static int time_writes(int fd, const struct lg_config *cfg, const uint8_t *buf,
                       struct lg_stats *st, const char *path, char *errmsg,
                       size_t errmsg_size)
{
    uint64_t start = uv_hrtime();
    for (uint64_t i = 0; i < cfg->requests; i++) {
        uint64_t t0 = uv_hrtime();
        off_t off = (off_t)(i * cfg->value_size);
        ssize_t w = pwrite(fd, buf, cfg->value_size, off);
        if (w < 0 || (size_t)w != cfg->value_size) {
            if (w >= 0) {
                errno = EIO; /* a short write to a regular file */
            }
            return sys_fail(errmsg, errmsg_size, "pwrite", path);
        }
        if (fdatasync(fd) != 0) {
            return sys_fail(errmsg, errmsg_size, "fdatasync", path);
        }
        hist_record(&st->hist, uv_hrtime() - t0);
        st->ok++;
    }
    st->elapsed_s = (double)(uv_hrtime() - start) / 1e9;
    CRAFT_ASSERT(st->hist.count == cfg->requests);
    return 0;
}

int lg_fsync_run(const struct lg_config *cfg, struct lg_stats *stats,
                 char *errmsg, size_t errmsg_size)
{
    CRAFT_ASSERT(cfg->target == LG_TARGET_FSYNC);
    CRAFT_ASSERT(cfg->dir != NULL && cfg->requests > 0);
    memset(stats, 0, sizeof *stats);
    hist_init(&stats->hist);
    size_t size = cfg->value_size > 0 ? cfg->value_size : 1;
    struct lg_config c = *cfg;
    c.value_size = size;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/craft-fsync.XXXXXX", cfg->dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(errmsg, errmsg_size, "--dir is too long");
        return CRAFT_EINVAL;
    }
    uint8_t *buf = malloc(size);
    if (buf == NULL) {
        snprintf(errmsg, errmsg_size, "out of memory");
        return CRAFT_ENOMEM;
    }
    memset(buf, 'x', size);
    int rv = 0;
    int fd = mkstemp(path);
    if (fd < 0) {
        rv = sys_fail(errmsg, errmsg_size, "create a file in", cfg->dir);
        goto err_buf;
    }
    if (!cfg->fsync_append) {
        /* Preallocate the whole run and make the size durable before
         * timing anything. */
        int e = posix_fallocate(fd, 0, (off_t)(size * cfg->requests));
        if (e != 0) {
            errno = e;
            rv = sys_fail(errmsg, errmsg_size, "fallocate", path);
            goto err_file;
        }
        if (fsync(fd) != 0) {
            rv = sys_fail(errmsg, errmsg_size, "fsync", path);
            goto err_file;
        }
    }
    rv = time_writes(fd, &c, buf, stats, path, errmsg, errmsg_size);
err_file:
    close(fd);
    unlink(path);
err_buf:
    free(buf);
    return rv;
}
