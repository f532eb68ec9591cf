/*
 * The POSIX implementation of struct store_vfs: thin wrappers that retry
 * EINTR and short transfers and return negative errno values.
 */
#include "storage/vfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/assert.h"
#include "util/log.h"

static int px_open(struct store_vfs *v, const char *path, int flags, int mode)
{
    (void)v;
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int px_close(struct store_vfs *v, int fd)
{
    (void)v;
    /* close() is not retried on EINTR: on Linux the descriptor is gone. */
    return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t px_pread(struct store_vfs *v, int fd, void *buf, size_t len,
                        uint64_t off)
{
    (void)v;
    size_t done = 0;
    while (done < len) {
        ssize_t n =
            pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int px_pwritev(struct store_vfs *v, int fd, const struct iovec *iov,
                      int n_iov, uint64_t off)
{
    (void)v;
    struct iovec local[16];
    CRAFT_ASSERT(n_iov >= 0);
    CRAFT_ASSERT((size_t)n_iov <= CRAFT_ARRAY_LEN(local));
    memcpy(local, iov, (size_t)n_iov * sizeof *iov);
    struct iovec *cur = local;
    int left = n_iov;
    while (left > 0) {
        ssize_t n = pwritev(fd, cur, left, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        off += (uint64_t)n;
        size_t done = (size_t)n;
        while (left > 0 && done >= cur->iov_len) {
            done -= cur->iov_len;
            cur++;
            left--;
        }
        if (left > 0) {
            cur->iov_base = (char *)cur->iov_base + done;
            cur->iov_len -= done;
        }
    }
    return 0;
}

static int px_fsync(struct store_vfs *v, int fd)
{
    (void)v;
    return fsync(fd) < 0 ? -errno : 0;
}

static int px_fdatasync(struct store_vfs *v, int fd)
{
    (void)v;
    return fdatasync(fd) < 0 ? -errno : 0;
}

static int px_ftruncate(struct store_vfs *v, int fd, uint64_t size)
{
    (void)v;
    int rv;
    do {
        rv = ftruncate(fd, (off_t)size);
    } while (rv < 0 && errno == EINTR);
    return rv < 0 ? -errno : 0;
}

static int px_fallocate(struct store_vfs *v, int fd, uint64_t size)
{
    (void)v;
    if (size == 0) {
        return 0;
    }
    int rv = posix_fallocate(fd, 0, (off_t)size);
    return rv == EOPNOTSUPP ? 0 : -rv; /* best effort where unsupported */
}

static int px_fsize(struct store_vfs *v, int fd, uint64_t *size)
{
    (void)v;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

static int px_rename(struct store_vfs *v, const char *from, const char *to)
{
    (void)v;
    return rename(from, to) < 0 ? -errno : 0;
}

static int px_unlink(struct store_vfs *v, const char *path)
{
    (void)v;
    return unlink(path) < 0 ? -errno : 0;
}

static int px_fsync_dir(struct store_vfs *v, const char *dir)
{
    (void)v;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rv;
}

static int px_mkdir(struct store_vfs *v, const char *dir)
{
    if (mkdir(dir, 0700) < 0) {
        if (errno != EEXIST) {
            return -errno;
        }
        /* Made by someone else: say so if others can look inside. */
        struct stat st;
        if (stat(dir, &st) == 0 && (st.st_mode & 077) != 0) {
            LOG_WARNF("storage: %s has mode %04o; 0700 keeps the data "
                      "private",
                      dir, (unsigned)(st.st_mode & 07777));
        }
        return 0;
    }
    /* The new directory's own entry must be durable too. */
    char parent[4096];
    int n = snprintf(parent, sizeof parent, "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof parent) {
        return -ENAMETOOLONG;
    }
    while (n > 1 && parent[n - 1] == '/') {
        parent[--n] = '\0';
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof parent, ".");
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    return px_fsync_dir(v, parent);
}

static int px_list(struct store_vfs *v, const char *dir,
                   int (*fn)(void *arg, const char *name), void *arg)
{
    (void)v;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    int rv = 0;
    struct dirent *e;
    errno = 0;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            rv = fn(arg, e->d_name);
        }
    }
    if (rv == 0 && errno != 0) {
        rv = -errno;
    }
    closedir(d);
    return rv;
}

static int px_map(struct store_vfs *v, int fd, uint64_t size, void **out)
{
    (void)v;
    void *p =
        mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    /* Start-up reads every byte once, front to back. */
    (void)madvise(p, (size_t)size, MADV_SEQUENTIAL);
    *out = p;
    return 0;
}

static void px_unmap(struct store_vfs *v, void *p, uint64_t size)
{
    (void)v;
    munmap(p, (size_t)size);
}

/* flock() on dir/LOCK: released by the kernel when the process dies, so
 * a crash never leaves a stale lock behind. */
static int px_lock(struct store_vfs *v, const char *dir, int *handle)
{
    (void)v;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/LOCK", dir);
    if (n <= 0 || (size_t)n >= sizeof path) {
        return -ENAMETOOLONG;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *handle = fd;
    return 0;
}

static void px_unlock(struct store_vfs *v, int handle)
{
    (void)v;
    close(handle);
}

struct store_vfs *store_vfs_posix(void)
{
    static struct store_vfs vfs = {
        .data = NULL,
        .open = px_open,
        .close = px_close,
        .pread = px_pread,
        .pwritev = px_pwritev,
        .fsync = px_fsync,
        .fdatasync = px_fdatasync,
        .ftruncate = px_ftruncate,
        .fallocate = px_fallocate,
        .fsize = px_fsize,
        .rename = px_rename,
        .unlink = px_unlink,
        .fsync_dir = px_fsync_dir,
        .mkdir = px_mkdir,
        .list = px_list,
        .map = px_map,
        .unmap = px_unmap,
        .lock = px_lock,
        .unlock = px_unlock,
    };
    return &vfs;
}
