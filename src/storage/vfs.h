/*
 * The file layer under the storage.  Every byte the storage reads or writes
 * goes through one of these function tables, so that tests can swap in a
 * file system that loses unsynced writes, tears the last write, flips bits
 * or fails an operation with EIO or ENOSPC (in the spirit of SQLite's crash
 * VFS, test6.c).
 *
 * Conventions: paths are full paths; every function returns 0 (or a byte
 * count, or a file descriptor) on success and a negative errno value on
 * failure, so that the caller can translate it at one place
 * (store__errno_code()).  Short reads and writes are the function's problem:
 * pwritev() and pread() either transfer everything asked or fail.  The
 * functions may be called from the storage's worker thread.
 */
#ifndef CRAFT_STORAGE_VFS_H
#define CRAFT_STORAGE_VFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct store_vfs {
    void *data;
    /* open(2) with O_CLOEXEC added; returns the descriptor. */
    int (*open)(struct store_vfs *v, const char *path, int flags, int mode);
    int (*close)(struct store_vfs *v, int fd);
    /* Transfer exactly len bytes at off, retrying short transfers.  pread
     * returns the number of bytes read, which is less than len only at end
     * of file. */
    ssize_t (*pread)(struct store_vfs *v, int fd, void *buf, size_t len,
                     uint64_t off);
    int (*pwritev)(struct store_vfs *v, int fd, const struct iovec *iov,
                   int n_iov, uint64_t off);
    int (*fsync)(struct store_vfs *v, int fd);
    int (*fdatasync)(struct store_vfs *v, int fd);
    int (*ftruncate)(struct store_vfs *v, int fd, uint64_t size);
    /* Reserve blocks for [0, size) without changing visible data; a file
     * shorter than size grows, reading zeros. */
    int (*fallocate)(struct store_vfs *v, int fd, uint64_t size);
    int (*fsize)(struct store_vfs *v, int fd, uint64_t *size);
    int (*rename)(struct store_vfs *v, const char *from, const char *to);
    int (*unlink)(struct store_vfs *v, const char *path);
    /* Make the directory's entries (creations, renames, unlinks) durable. */
    int (*fsync_dir)(struct store_vfs *v, const char *dir);
    /* Create the directory with mode 0700 if it does not exist, and make
     * its entry in the parent durable. */
    int (*mkdir)(struct store_vfs *v, const char *dir);
    /* Call fn for every entry of dir except "." and "..".  fn returning
     * non-zero stops the walk and is returned. */
    int (*list)(struct store_vfs *v, const char *dir,
                int (*fn)(void *arg, const char *name), void *arg);
    /* Optional (may be NULL): map [0, size) of a file read-only, so that
     * start-up reads segments straight from the page cache instead of
     * copying them into freshly zeroed memory.  The mapping stays valid
     * after the descriptor is closed, until unmap.  The storage never
     * shortens a mapped file below the bytes it still uses (cutting a
     * torn tail, or closing a segment, keeps every whole record). */
    int (*map)(struct store_vfs *v, int fd, uint64_t size, void **out);
    void (*unmap)(struct store_vfs *v, void *p, uint64_t size);
    /* Optional (may be NULL): take an exclusive lock on the directory, held
     * until unlock; -EWOULDBLOCK if another process holds it.  *handle is
     * what unlock needs. */
    int (*lock)(struct store_vfs *v, const char *dir, int *handle);
    void (*unlock)(struct store_vfs *v, int handle);
};

/* The real file system (POSIX calls).  A static object; never freed. */
struct store_vfs *store_vfs_posix(void);

#endif /* CRAFT_STORAGE_VFS_H */
