/* memfs: see storage_memfs.h. */
#include "storage_memfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/rng.h"

#define MEMFS_FILES_MAX 512
#define MEMFS_FDS_MAX 64

struct mdata {
    uint8_t *p;
    size_t len, cap;
};

struct inode {
    int refs; /* directory entries (current or durable) and descriptors */
    struct mdata cur, dur;
    /* The last write since the last sync, for tearing. */
    bool has_last;
    uint64_t last_off;
    struct mdata last_before; /* contents before that write */
    size_t last_len;
};

struct dent {
    char name[64];
    struct inode *ino;
};

struct memfs {
    pthread_mutex_t mu;
    struct store_vfs vfs;
    struct dent cur[MEMFS_FILES_MAX], dur[MEMFS_FILES_MAX];
    size_t n_cur, n_dur;
    struct inode *fds[MEMFS_FDS_MAX];
    uint64_t ops;
    uint64_t fail_n;
    int fail_err;
    uint64_t capture_n;
    struct memfs *capture;
    struct inode *last_ino; /* inode of the last write */
    size_t last_write_len;
};

static void md_set(struct mdata *d, const uint8_t *p, size_t len)
{
    if (len > d->cap) {
        d->p = realloc(d->p, len);
        CRAFT_ASSERT(d->p != NULL);
        d->cap = len;
    }
    if (len > 0) {
        memcpy(d->p, p, len);
    }
    d->len = len;
}

static void md_resize(struct mdata *d, size_t len)
{
    if (len > d->cap) {
        size_t cap = d->cap ? d->cap : 64;
        while (cap < len) {
            cap *= 2;
        }
        d->p = realloc(d->p, cap);
        CRAFT_ASSERT(d->p != NULL);
        d->cap = cap;
    }
    if (len > d->len) {
        memset(d->p + d->len, 0, len - d->len);
    }
    d->len = len;
}

static struct inode *ino_new(void)
{
    struct inode *i = calloc(1, sizeof *i);
    CRAFT_ASSERT(i != NULL);
    return i;
}

static void ino_unref(struct inode *i)
{
    if (i != NULL && --i->refs == 0) {
        free(i->cur.p);
        free(i->dur.p);
        free(i->last_before.p);
        free(i);
    }
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

static struct dent *find(struct dent *tab, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tab[i].name, name) == 0) {
            return &tab[i];
        }
    }
    return NULL;
}

static void remove_dent(struct dent *tab, size_t *n, struct dent *d)
{
    ino_unref(d->ino);
    *d = tab[--*n];
}

/* Count a mutating operation; capture or fail as armed.  Under the lock. */
static int mutate(struct memfs *fs)
{
    fs->ops++;
    if (fs->capture_n == fs->ops && fs->capture == NULL) {
        /* The state before this operation. */
        fs->ops--;
        fs->capture = memfs_clone(fs);
        fs->ops++;
    }
    if (fs->fail_n == fs->ops) {
        fs->fail_n = 0;
        return -fs->fail_err;
    }
    return 0;
}

static void sync_ino(struct inode *i)
{
    md_set(&i->dur, i->cur.p, i->cur.len);
    i->has_last = false;
}

static struct memfs *fs_of(struct store_vfs *v)
{
    return v->data;
}

static int m_open(struct store_vfs *v, const char *path, int flags, int mode)
{
    (void)mode;
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    const char *name = base_name(path);
    struct dent *d = find(fs->cur, fs->n_cur, name);
    int rv = 0;
    if (d == NULL && !(flags & O_CREAT)) {
        rv = -ENOENT;
    } else if (d == NULL || (flags & O_TRUNC)) {
        rv = mutate(fs);
    }
    int fd = -1;
    for (int i = 0; rv == 0 && i < MEMFS_FDS_MAX; i++) {
        if (fs->fds[i] == NULL) {
            fd = i;
            break;
        }
    }
    if (rv == 0 && fd < 0) {
        rv = -EMFILE;
    }
    if (rv == 0 && d == NULL) {
        CRAFT_ASSERT(fs->n_cur < MEMFS_FILES_MAX);
        d = &fs->cur[fs->n_cur++];
        snprintf(d->name, sizeof d->name, "%s", name);
        d->ino = ino_new();
        d->ino->refs = 1;
    } else if (rv == 0 && (flags & O_TRUNC)) {
        d->ino->cur.len = 0;
    }
    if (rv == 0) {
        fs->fds[fd] = d->ino;
        d->ino->refs++;
        rv = fd + 100; /* not 0..2, to catch confusion with real fds */
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static struct inode *ino_of(struct memfs *fs, int fd)
{
    CRAFT_ASSERT(fd >= 100 && fd < 100 + MEMFS_FDS_MAX);
    struct inode *i = fs->fds[fd - 100];
    CRAFT_ASSERT(i != NULL);
    return i;
}

static int m_close(struct store_vfs *v, int fd)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct inode *i = ino_of(fs, fd);
    fs->fds[fd - 100] = NULL;
    ino_unref(i);
    pthread_mutex_unlock(&fs->mu);
    return 0;
}

static ssize_t m_pread(struct store_vfs *v, int fd, void *buf, size_t len,
                       uint64_t off)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct inode *i = ino_of(fs, fd);
    size_t n = 0;
    if (off < i->cur.len) {
        n = i->cur.len - off < len ? i->cur.len - (size_t)off : len;
        memcpy(buf, i->cur.p + off, n);
    }
    pthread_mutex_unlock(&fs->mu);
    return (ssize_t)n;
}

static int m_pwritev(struct store_vfs *v, int fd, const struct iovec *iov,
                     int n_iov, uint64_t off)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct inode *i = ino_of(fs, fd);
    size_t total = 0;
    for (int k = 0; k < n_iov; k++) {
        total += iov[k].iov_len;
    }
    int rv = mutate(fs);
    /* A failed write may still have written a part: keep half of it. */
    size_t n = rv == 0 ? total : total / 2;
    md_set(&i->last_before, i->cur.p, i->cur.len);
    i->has_last = true;
    i->last_off = off;
    i->last_len = n;
    fs->last_ino = i;
    fs->last_write_len = n;
    if (off + n > i->cur.len) {
        md_resize(&i->cur, (size_t)off + n);
    }
    size_t done = 0;
    for (int k = 0; k < n_iov && done < n; k++) {
        size_t c = iov[k].iov_len < n - done ? iov[k].iov_len : n - done;
        memcpy(i->cur.p + off + done, iov[k].iov_base, c);
        done += c;
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_sync(struct store_vfs *v, int fd)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct inode *i = ino_of(fs, fd);
    int rv = mutate(fs);
    if (rv == 0) {
        sync_ino(i);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_ftruncate(struct store_vfs *v, int fd, uint64_t size)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct inode *i = ino_of(fs, fd);
    int rv = mutate(fs);
    if (rv == 0) {
        md_resize(&i->cur, (size_t)size);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_fallocate(struct store_vfs *v, int fd, uint64_t size)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct inode *i = ino_of(fs, fd);
    int rv = mutate(fs);
    if (rv == 0 && size > i->cur.len) {
        md_resize(&i->cur, (size_t)size);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_fsize(struct store_vfs *v, int fd, uint64_t *size)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    *size = ino_of(fs, fd)->cur.len;
    pthread_mutex_unlock(&fs->mu);
    return 0;
}

static int m_rename(struct store_vfs *v, const char *from, const char *to)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct dent *d = find(fs->cur, fs->n_cur, base_name(from));
    int rv = d ? mutate(fs) : -ENOENT;
    if (rv == 0) {
        struct dent *t = find(fs->cur, fs->n_cur, base_name(to));
        if (t != NULL && t != d) {
            struct inode *ino = d->ino;
            d->ino = NULL;
            remove_dent(fs->cur, &fs->n_cur, d); /* unref(NULL) is a no-op */
            t = find(fs->cur, fs->n_cur, base_name(to));
            CRAFT_ASSERT(t != NULL);
            ino_unref(t->ino);
            t->ino = ino;
        } else {
            snprintf(d->name, sizeof d->name, "%s", base_name(to));
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_unlink(struct store_vfs *v, const char *path)
{
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    struct dent *d = find(fs->cur, fs->n_cur, base_name(path));
    int rv = d ? mutate(fs) : -ENOENT;
    if (rv == 0) {
        remove_dent(fs->cur, &fs->n_cur, d);
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_fsync_dir(struct store_vfs *v, const char *dir)
{
    (void)dir;
    struct memfs *fs = fs_of(v);
    pthread_mutex_lock(&fs->mu);
    int rv = mutate(fs);
    if (rv == 0) {
        for (size_t k = 0; k < fs->n_dur; k++) {
            ino_unref(fs->dur[k].ino);
        }
        for (size_t k = 0; k < fs->n_cur; k++) {
            fs->dur[k] = fs->cur[k];
            fs->dur[k].ino->refs++;
        }
        fs->n_dur = fs->n_cur;
    }
    pthread_mutex_unlock(&fs->mu);
    return rv;
}

static int m_mkdir(struct store_vfs *v, const char *dir)
{
    (void)v;
    (void)dir;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

size_t memfs_list(struct memfs *fs, char (*names)[64], size_t max)
{
    pthread_mutex_lock(&fs->mu);
    size_t n = 0;
    for (size_t k = 0; k < fs->n_cur && n < max; k++) {
        snprintf(names[n++], 64, "%s", fs->cur[k].name);
    }
    pthread_mutex_unlock(&fs->mu);
    qsort(names, n, 64, cmp_names);
    return n;
}

static int m_list(struct store_vfs *v, const char *dir,
                  int (*fn)(void *arg, const char *name), void *arg)
{
    (void)dir;
    struct memfs *fs = fs_of(v);
    static char names[MEMFS_FILES_MAX][64];
    static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&names_mu);
    size_t n = memfs_list(fs, names, MEMFS_FILES_MAX);
    int rv = 0;
    for (size_t k = 0; rv == 0 && k < n; k++) {
        rv = fn(arg, names[k]);
    }
    pthread_mutex_unlock(&names_mu);
    return rv;
}

struct memfs *memfs_new(void)
{
    struct memfs *fs = calloc(1, sizeof *fs);
    CRAFT_ASSERT(fs != NULL);
    pthread_mutex_init(&fs->mu, NULL);
    fs->vfs = (struct store_vfs){.data = fs,
                                 .open = m_open,
                                 .close = m_close,
                                 .pread = m_pread,
                                 .pwritev = m_pwritev,
                                 .fsync = m_sync,
                                 .fdatasync = m_sync,
                                 .ftruncate = m_ftruncate,
                                 .fallocate = m_fallocate,
                                 .fsize = m_fsize,
                                 .rename = m_rename,
                                 .unlink = m_unlink,
                                 .fsync_dir = m_fsync_dir,
                                 .mkdir = m_mkdir,
                                 .list = m_list};
    return fs;
}

static void clear(struct memfs *fs)
{
    for (size_t k = 0; k < fs->n_cur; k++) {
        ino_unref(fs->cur[k].ino);
    }
    for (size_t k = 0; k < fs->n_dur; k++) {
        ino_unref(fs->dur[k].ino);
    }
    for (int k = 0; k < MEMFS_FDS_MAX; k++) {
        ino_unref(fs->fds[k]);
        fs->fds[k] = NULL;
    }
    fs->n_cur = fs->n_dur = 0;
    fs->last_ino = NULL;
}

void memfs_free(struct memfs *fs)
{
    if (fs == NULL) {
        return;
    }
    clear(fs);
    if (fs->capture != NULL) {
        memfs_free(fs->capture);
    }
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}

struct store_vfs *memfs_vfs(struct memfs *fs)
{
    return &fs->vfs;
}

uint64_t memfs_ops(struct memfs *fs)
{
    return fs->ops;
}

size_t memfs_last_write_len(struct memfs *fs)
{
    return fs->last_write_len;
}

/* Clone inodes preserving sharing between the two directory tables. */
static struct inode *clone_ino(struct inode *src, struct inode **from,
                               struct inode **to, size_t *n)
{
    for (size_t k = 0; k < *n; k++) {
        if (from[k] == src) {
            to[k]->refs++;
            return to[k];
        }
    }
    struct inode *i = ino_new();
    i->refs = 1;
    md_set(&i->cur, src->cur.p, src->cur.len);
    md_set(&i->dur, src->dur.p, src->dur.len);
    md_set(&i->last_before, src->last_before.p, src->last_before.len);
    i->has_last = src->has_last;
    i->last_off = src->last_off;
    i->last_len = src->last_len;
    from[*n] = src;
    to[*n] = i;
    (*n)++;
    return i;
}

static struct memfs *clone_locked(struct memfs *fs)
{
    struct memfs *c = memfs_new();
    static struct inode *from[2 * MEMFS_FILES_MAX], *to[2 * MEMFS_FILES_MAX];
    size_t n = 0;
    for (size_t k = 0; k < fs->n_cur; k++) {
        c->cur[k] = fs->cur[k];
        c->cur[k].ino = clone_ino(fs->cur[k].ino, from, to, &n);
    }
    for (size_t k = 0; k < fs->n_dur; k++) {
        c->dur[k] = fs->dur[k];
        c->dur[k].ino = clone_ino(fs->dur[k].ino, from, to, &n);
    }
    c->n_cur = fs->n_cur;
    c->n_dur = fs->n_dur;
    for (size_t k = 0; k < n; k++) {
        if (from[k] == fs->last_ino) {
            c->last_ino = to[k];
        }
    }
    c->last_write_len = fs->last_write_len;
    c->ops = fs->ops;
    return c;
}

struct memfs *memfs_clone(struct memfs *fs)
{
    /* Called under fs->mu from mutate(), or by a test with no thread
     * running; the clone tables are static, so clones are serialized by
     * the callers (one store per test at a time). */
    return clone_locked(fs);
}

void memfs_crash(struct memfs *fs, enum memfs_crash mode, size_t tear_bytes,
                 uint64_t seed)
{
    pthread_mutex_lock(&fs->mu);
    struct rng r;
    rng_init(&r, seed);
    /* Every file reverts to durable, except the file of the last write in
     * the tearing modes: there, the contents before that write (the other
     * unsynced changes kept) plus part of it. */
    struct inode *li = fs->last_ino;
    if (mode != MEMFS_LOSE && li != NULL && li->has_last) {
        struct mdata keep = {0};
        md_set(&keep, li->last_before.p, li->last_before.len);
        size_t end = (size_t)li->last_off + li->last_len;
        if (end > keep.len) {
            md_resize(&keep, end);
        }
        for (size_t b = 0; b < li->last_len; b++) {
            size_t pos = (size_t)li->last_off + b;
            bool keep_byte = mode == MEMFS_TEAR
                                 ? b < tear_bytes
                                 : ((rng_next(&r) >> 3) & 1) != 0;
            if (mode == MEMFS_SECTORS) {
                /* Decide per 512-byte sector, not per byte. */
                struct rng sr;
                rng_init(&sr, seed ^ (pos / 512));
                keep_byte = (rng_next(&sr) & 1) != 0;
            }
            if (keep_byte && pos < li->cur.len) {
                keep.p[pos] = li->cur.p[pos];
            }
        }
        md_set(&li->dur, keep.p, keep.len);
        free(keep.p);
    }
    if (mode == MEMFS_DIRNOW) {
        /* The current directory became durable; file data did not. */
        for (size_t k = 0; k < fs->n_dur; k++) {
            ino_unref(fs->dur[k].ino);
        }
        for (size_t k = 0; k < fs->n_cur; k++) {
            fs->dur[k] = fs->cur[k];
            fs->dur[k].ino->refs++;
        }
        fs->n_dur = fs->n_cur;
    }
    /* The directory reverts to its durable entries. */
    for (size_t k = 0; k < fs->n_cur; k++) {
        ino_unref(fs->cur[k].ino);
    }
    for (int k = 0; k < MEMFS_FDS_MAX; k++) {
        ino_unref(fs->fds[k]);
        fs->fds[k] = NULL;
    }
    for (size_t k = 0; k < fs->n_dur; k++) {
        struct inode *i = fs->dur[k].ino;
        md_set(&i->cur, i->dur.p, i->dur.len);
        i->has_last = false;
        fs->cur[k] = fs->dur[k];
        i->refs++;
    }
    fs->n_cur = fs->n_dur;
    fs->last_ino = NULL;
    pthread_mutex_unlock(&fs->mu);
}

void memfs_fail_at(struct memfs *fs, uint64_t n, int err)
{
    pthread_mutex_lock(&fs->mu);
    fs->fail_n = n;
    fs->fail_err = err;
    pthread_mutex_unlock(&fs->mu);
}

void memfs_capture_at(struct memfs *fs, uint64_t n)
{
    pthread_mutex_lock(&fs->mu);
    fs->capture_n = n;
    pthread_mutex_unlock(&fs->mu);
}

struct memfs *memfs_take_capture(struct memfs *fs)
{
    pthread_mutex_lock(&fs->mu);
    struct memfs *c = fs->capture;
    fs->capture = NULL;
    pthread_mutex_unlock(&fs->mu);
    return c;
}

bool memfs_flip(struct memfs *fs, const char *name, uint64_t off, int bit)
{
    pthread_mutex_lock(&fs->mu);
    struct dent *d = find(fs->cur, fs->n_cur, name);
    bool ok = d != NULL && off < d->ino->cur.len;
    if (ok) {
        d->ino->cur.p[off] ^= (uint8_t)(1u << bit);
        if (off < d->ino->dur.len) {
            d->ino->dur.p[off] ^= (uint8_t)(1u << bit);
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return ok;
}

int64_t memfs_size(struct memfs *fs, const char *name)
{
    pthread_mutex_lock(&fs->mu);
    struct dent *d = find(fs->cur, fs->n_cur, name);
    int64_t n = d ? (int64_t)d->ino->cur.len : -1;
    pthread_mutex_unlock(&fs->mu);
    return n;
}
