/*
 * The store's write path: a model of the files on the loop thread, a queue
 * of file operations, and one job at a time on the libuv thread pool.
 *
 * The loop thread decides everything: which segment an entry goes to, when
 * a segment is closed, which files a truncation or compaction removes.  It
 * keeps a model of the directory *as it will be once every queued operation
 * has run*, so each new request is planned against the future state.  The
 * worker only executes operations in order; it touches nothing but the
 * descriptors it owns (open segment, metadata files, snapshot being
 * written).  The two sides never run at once on the same data: a job is
 * handed over whole with uv_queue_work() and handed back in its after-work
 * callback.
 *
 * Operations (see run_op()):
 *   WRITE   one record into the open segment at a known offset
 *   CREATE  a new preallocated open segment ("open")
 *   CLOSE   the open segment: trim to size, fsync, rename to first-last
 *   DELETE  a segment (compaction, or a truncation that removes it whole)
 *   REOPEN  a closed segment becomes "open" again, and a truncation record
 *           is written into it and synced (a truncation reaching into it)
 *   SNAP_CHUNK / SNAP_FINISH  snapshot data into snap.tmp / make it current
 *
 * Crash safety of each multi-step change is argued next to the code that
 * plans it (plan_truncate(), plan_wipe(), run_op()).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/store.h"
#include "util/assert.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/obs.h"

enum op_type {
    OP_WRITE = 1,
    OP_CREATE,
    OP_CLOSE,
    OP_DELETE,
    OP_REOPEN,
    OP_SNAP_CHUNK,
    OP_SNAP_FINISH
};

/* A record being built: descriptors (payload CRCs filled in by the worker)
 * and payloads, kept apart so both can grow; written with one pwritev(). */
struct rec {
    raft_index first_index;
    uint32_t n;
    struct buf desc;
    struct buf data;
};

struct op {
    enum op_type type;
    struct op *next;
    uint64_t off;              /* WRITE, REOPEN: record offset */
    struct rec rec;            /* WRITE, REOPEN (a truncation record) */
    char name[STORE_NAME_MAX]; /* CLOSE: new name; DELETE, REOPEN: file */
    bool is_open;              /* DELETE: the file is the open segment */
    /* snapshots */
    struct raft_snapshot_meta meta;
    uint64_t snap_off;
    struct buf snap_data;
    char old_name[STORE_NAME_MAX]; /* SNAP_FINISH: snapshot to remove */
};

struct job {
    uv_work_t work;
    struct store *s;
    struct op *head, *tail;
    bool has_hs;
    struct raft_hard_state hs;
    struct store_req *reqs, *reqs_tail;
    uint64_t bytes;
    int status;
    uint64_t fsync_ns; /* the group commit's fdatasync, 0 if none */
    char errmsg[512];
};

/* The loop thread's model of one segment, after all queued operations. */
struct seg {
    raft_index first, last; /* last = first - 1 when empty */
    uint64_t size;          /* bytes used */
    bool open;
};

struct store {
    uv_loop_t *loop;
    struct store_options o;
    struct store_vfs *vfs;
    char *dir;
    struct store_scan scan;
    bool scan_loaded;

    /* Model (loop thread). */
    struct seg *segs;
    size_t n_segs, cap_segs;
    raft_index log_last; /* last index in segments, 0: none */
    raft_term hs_term;   /* term of the latest hard state submitted */
    raft_index snap_index;
    raft_term snap_term;
    char snap_name[STORE_NAME_MAX]; /* latest snapshot, queued or durable */
    bool snap_building;
    struct raft_snapshot_meta snap_meta; /* the one being received */
    uint64_t snap_received;

    /* Queue (loop thread). */
    struct job *pending;
    struct op *pending_write; /* a WRITE in pending that may still grow */
    struct job *inflight;
    int failed;
    bool closing;
    bool in_callbacks;
    store_close_cb close_cb;

    /* Durable snapshot for store_snapshot_read() (loop thread). */
    bool has_snap_cur;
    struct raft_snapshot_meta snap_cur;
    char snap_cur_name[STORE_NAME_MAX];
    int snap_read_fd;
    int lock_handle; /* store_lock() */

    /* Worker state: touched only by the job in flight. */
    int open_fd;
    uint64_t open_salt; /* the open segment's salt (format.h) */
    bool open_dirty;
    int meta_fd[3];
    uint64_t meta_seq;
    int snap_fd;
    uint32_t snap_crc;
};

static void path_of(const struct store *s, char *buf, size_t len,
                    const char *name)
{
    int n = snprintf(buf, len, "%s/%s", s->dir, name);
    CRAFT_ASSERT(n > 0 && (size_t)n < len);
}

/* ---- operations, on the worker thread ------------------------------- */

static int fail(struct job *j, int neg_errno, const char *what,
                const char *name)
{
    CRAFT_ASSERT(neg_errno < 0);
    snprintf(j->errmsg, sizeof j->errmsg, "%s/%s: %s: %s", j->s->dir, name,
             what, strerror(-neg_errno));
    return store__errno_code(neg_errno);
}

static int write_meta(struct job *j)
{
    struct store *s = j->s;
    CRAFT_ASSERT(j->has_hs);
    struct store_meta m = {.seq = s->meta_seq + 1, .hs = j->hs};
    int i = (m.seq & 1u) ? 1 : 2;
    char name[16], path[4096];
    snprintf(name, sizeof name, "meta%d", i);
    path_of(s, path, sizeof path, name);
    if (s->meta_fd[i] < 0) {
        int fd = s->vfs->open(s->vfs, path, O_RDWR | O_CREAT, 0600);
        if (fd < 0) {
            return fail(j, fd, "open", name);
        }
        s->meta_fd[i] = fd;
        int rv = s->vfs->fsync_dir(s->vfs, s->dir);
        if (rv != 0) {
            return fail(j, rv, "fsync directory", name);
        }
    }
    uint8_t buf[STORE_META_BYTES];
    store__meta_encode(&m, buf);
    struct iovec iov = {buf, sizeof buf};
    int rv = s->vfs->pwritev(s->vfs, s->meta_fd[i], &iov, 1, 0);
    if (rv != 0) {
        return fail(j, rv, "write", name);
    }
    rv = s->vfs->fdatasync(s->vfs, s->meta_fd[i]);
    if (rv != 0) {
        return fail(j, rv, "fdatasync", name);
    }
    s->meta_seq = m.seq;
    CRAFT_ASSERT(s->meta_fd[i] >= 0);
    return 0;
}

/* Fill in the payload CRCs and the header, then write the record. */
static int write_rec(struct job *j, int fd, struct rec *r, uint64_t off,
                     const char *name)
{
    struct store_vfs *vfs = j->s->vfs;
    CRAFT_ASSERT(fd >= 0);
    CRAFT_ASSERT(r->desc.len == (size_t)r->n * STORE_DESC_BYTES);
    const uint8_t *p = r->data.data;
    uint8_t *d = r->desc.data;
    for (uint32_t i = 0; i < r->n; i++, d += STORE_DESC_BYTES) {
        struct store_desc ds;
        store__desc_decode(d, &ds);
        ds.crc = crc32c(0, p, ds.len);
        store__desc_encode(&ds, d);
        p += ds.len;
    }
    CRAFT_ASSERT(p == r->data.data + r->data.len || r->n == 0);
    struct store_rec_hdr h = {.n_entries = r->n,
                              .first_index = r->first_index,
                              .data_len = r->data.len,
                              .flags = 0,
                              .body_crc = crc32c(0, r->desc.data, r->desc.len)};
    uint8_t hdr[STORE_REC_HDR_BYTES];
    static const uint8_t zeros[8] = {0};
    store__rec_hdr_encode(&h, j->s->open_salt, off, hdr);
    struct iovec iov[4] = {{hdr, sizeof hdr},
                           {r->desc.data, r->desc.len},
                           {r->data.data, r->data.len},
                           {(void *)zeros, (8 - r->data.len % 8) % 8}};
    int rv = vfs->pwritev(vfs, fd, iov, 4, off);
    return rv != 0 ? fail(j, rv, "write", name) : 0;
}

static int op_create(struct job *j)
{
    struct store *s = j->s;
    char path[4096];
    path_of(s, path, sizeof path, "open");
    CRAFT_ASSERT(s->open_fd < 0);
    int fd = s->vfs->open(s->vfs, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return fail(j, fd, "create", "open");
    }
    s->open_fd = fd;
    s->open_salt = store__salt_new();
    uint8_t hdr[STORE_SEG_HDR_BYTES];
    store__seg_hdr_encode(s->open_salt, hdr);
    struct iovec iov = {hdr, sizeof hdr};
    int rv = s->vfs->pwritev(s->vfs, fd, &iov, 1, 0);
    if (rv != 0) {
        return fail(j, rv, "write", "open");
    }
    /* Preallocate so that later fdatasync()s need not update the size. */
    rv = s->vfs->fallocate(s->vfs, fd, s->o.segment_bytes);
    if (rv != 0) {
        return fail(j, rv, "preallocate", "open");
    }
    rv = s->vfs->fsync(s->vfs, fd);
    if (rv != 0) {
        return fail(j, rv, "fsync", "open");
    }
    rv = s->vfs->fsync_dir(s->vfs, s->dir);
    return rv != 0 ? fail(j, rv, "fsync directory", "open") : 0;
}

/*
 * Closing: the data is synced, the preallocated rest cut off, and only then
 * is the file renamed.  A crash before the rename leaves "open" (read as an
 * open segment, which it still is); after it, a closed segment whose
 * contents match its name.
 */
static int op_close(struct job *j, struct op *op)
{
    struct store *s = j->s;
    CRAFT_ASSERT(s->open_fd >= 0);
    int rv = s->vfs->ftruncate(s->vfs, s->open_fd, op->off);
    if (rv != 0) {
        return fail(j, rv, "truncate", "open");
    }
    rv = s->vfs->fsync(s->vfs, s->open_fd);
    if (rv != 0) {
        return fail(j, rv, "fsync", "open");
    }
    s->open_dirty = false;
    s->vfs->close(s->vfs, s->open_fd);
    s->open_fd = -1;
    char from[4096], to[4096];
    path_of(s, from, sizeof from, "open");
    path_of(s, to, sizeof to, op->name);
    rv = s->vfs->rename(s->vfs, from, to);
    if (rv != 0) {
        return fail(j, rv, "rename", op->name);
    }
    rv = s->vfs->fsync_dir(s->vfs, s->dir);
    return rv != 0 ? fail(j, rv, "fsync directory", op->name) : 0;
}

static int op_delete(struct job *j, struct op *op)
{
    struct store *s = j->s;
    CRAFT_ASSERT(op->type == OP_DELETE);
    CRAFT_ASSERT(op->name[0] != '\0');
    if (op->is_open && s->open_fd >= 0) {
        s->vfs->close(s->vfs, s->open_fd);
        s->open_fd = -1;
        s->open_dirty = false;
    }
    char path[4096];
    path_of(s, path, sizeof path, op->name);
    int rv = s->vfs->unlink(s->vfs, path);
    if (rv != 0) {
        return fail(j, rv, "unlink", op->name);
    }
    rv = s->vfs->fsync_dir(s->vfs, s->dir);
    return rv != 0 ? fail(j, rv, "fsync directory", op->name) : 0;
}

/*
 * A truncation reaching into a closed segment: rename it to "open" (a crash
 * now leaves it whole, as before the truncation), then write a truncation
 * record after its last record and sync it before anything else is written
 * to the file, keeping one record per sync (store.h invariant 3).
 */
static int op_reopen(struct job *j, struct op *op)
{
    struct store *s = j->s;
    CRAFT_ASSERT(s->open_fd < 0);
    char from[4096], to[4096];
    path_of(s, from, sizeof from, op->name);
    path_of(s, to, sizeof to, "open");
    int rv = s->vfs->rename(s->vfs, from, to);
    if (rv != 0) {
        return fail(j, rv, "rename", op->name);
    }
    rv = s->vfs->fsync_dir(s->vfs, s->dir);
    if (rv != 0) {
        return fail(j, rv, "fsync directory", "open");
    }
    int fd = s->vfs->open(s->vfs, to, O_RDWR, 0600);
    if (fd < 0) {
        return fail(j, fd, "open", "open");
    }
    s->open_fd = fd;
    /* Records are sealed with the file's own salt: read it back. */
    uint8_t hdr[STORE_SEG_HDR_BYTES];
    ssize_t got = s->vfs->pread(s->vfs, fd, hdr, sizeof hdr, 0);
    if (got < 0) {
        return fail(j, (int)got, "read", "open");
    }
    if ((size_t)got != sizeof hdr ||
        store__seg_hdr_decode(hdr, &s->open_salt) != 0) {
        snprintf(j->errmsg, sizeof j->errmsg,
                 "%s/open (was %s): offset 0: segment header no longer valid",
                 s->dir, op->name);
        return CRAFT_ECORRUPT;
    }
    rv = s->vfs->fallocate(s->vfs, fd, s->o.segment_bytes);
    if (rv != 0) {
        return fail(j, rv, "preallocate", "open");
    }
    rv = write_rec(j, fd, &op->rec, op->off, "open");
    if (rv != 0) {
        return rv;
    }
    rv = s->vfs->fsync(s->vfs, fd);
    return rv != 0 ? fail(j, rv, "fsync", "open") : 0;
}

static int op_snap_chunk(struct job *j, struct op *op)
{
    struct store *s = j->s;
    CRAFT_ASSERT(op->type == OP_SNAP_CHUNK);
    char path[4096];
    path_of(s, path, sizeof path, "snap.tmp");
    if (op->snap_off == 0) {
        if (s->snap_fd >= 0) {
            s->vfs->close(s->vfs, s->snap_fd);
            s->snap_fd = -1;
        }
        int fd = s->vfs->open(s->vfs, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) {
            return fail(j, fd, "create", "snap.tmp");
        }
        s->snap_fd = fd;
        s->snap_crc = 0;
    }
    CRAFT_ASSERT(s->snap_fd >= 0);
    s->snap_crc = crc32c(s->snap_crc, op->snap_data.data, op->snap_data.len);
    struct iovec iov = {op->snap_data.data, op->snap_data.len};
    int rv = s->vfs->pwritev(s->vfs, s->snap_fd, &iov, 1,
                             STORE_SNAP_HDR_BYTES + op->snap_off);
    return rv != 0 ? fail(j, rv, "write", "snap.tmp") : 0;
}

/*
 * tmp file complete -> header -> fsync -> rename -> directory fsync: the
 * snapshot is durable and current.  Only then is the older one removed.
 */
static int op_snap_finish(struct job *j, struct op *op)
{
    struct store *s = j->s;
    CRAFT_ASSERT(s->snap_fd >= 0);
    uint8_t hdr[STORE_SNAP_HDR_BYTES];
    store__snap_hdr_encode(&op->meta, s->snap_crc, hdr);
    struct iovec iov = {hdr, sizeof hdr};
    int rv = s->vfs->pwritev(s->vfs, s->snap_fd, &iov, 1, 0);
    if (rv != 0) {
        return fail(j, rv, "write", "snap.tmp");
    }
    rv = s->vfs->fsync(s->vfs, s->snap_fd);
    if (rv != 0) {
        return fail(j, rv, "fsync", "snap.tmp");
    }
    s->vfs->close(s->vfs, s->snap_fd);
    s->snap_fd = -1;
    char from[4096], to[4096];
    path_of(s, from, sizeof from, "snap.tmp");
    path_of(s, to, sizeof to, op->name);
    rv = s->vfs->rename(s->vfs, from, to);
    if (rv != 0) {
        return fail(j, rv, "rename", op->name);
    }
    rv = s->vfs->fsync_dir(s->vfs, s->dir);
    if (rv != 0) {
        return fail(j, rv, "fsync directory", op->name);
    }
    if (op->old_name[0] != '\0' && strcmp(op->old_name, op->name) != 0) {
        path_of(s, from, sizeof from, op->old_name);
        rv = s->vfs->unlink(s->vfs, from);
        if (rv == 0) {
            rv = s->vfs->fsync_dir(s->vfs, s->dir);
        }
        if (rv != 0) {
            return fail(j, rv, "unlink", op->old_name);
        }
    }
    return 0;
}

static int run_op(struct job *j, struct op *op)
{
    struct store *s = j->s;
    switch (op->type) {
    case OP_WRITE:
        CRAFT_ASSERT(s->open_fd >= 0);
        s->open_dirty = true;
        return write_rec(j, s->open_fd, &op->rec, op->off, "open");
    case OP_CREATE:
        return op_create(j);
    case OP_CLOSE:
        return op_close(j, op);
    case OP_DELETE:
        return op_delete(j, op);
    case OP_REOPEN:
        return op_reopen(j, op);
    case OP_SNAP_CHUNK:
        return op_snap_chunk(j, op);
    case OP_SNAP_FINISH:
        if (s->open_dirty) {
            /* Requests become durable in submission order, across files:
             * a record queued before the snapshot (e.g. the truncation of
             * a suffix the snapshot conflicts with) is synced before the
             * snapshot can survive a crash without it. */
            int rv = s->vfs->fdatasync(s->vfs, s->open_fd);
            if (rv != 0) {
                return fail(j, rv, "fdatasync", "open");
            }
            s->open_dirty = false;
        }
        return op_snap_finish(j, op);
    }
    CRAFT_UNREACHABLE();
    return CRAFT_EINTERNAL;
}

static void work_cb(uv_work_t *w)
{
    struct job *j = w->data;
    struct store *s = j->s;
    int rv = 0;
    if (j->has_hs) {
        rv = write_meta(j);
    }
    for (struct op *op = j->head; rv == 0 && op != NULL; op = op->next) {
        rv = run_op(j, op);
    }
    if (rv == 0 && s->open_dirty) {
        /* One fdatasync for every record of the job: the group commit.
         * Timed here, reported on the loop (util/obs.h, invariant 1). */
        uint64_t t0 = uv_hrtime();
        int e = s->vfs->fdatasync(s->vfs, s->open_fd);
        j->fsync_ns = uv_hrtime() - t0 + (t0 == 0);
        rv = e != 0 ? fail(j, e, "fdatasync", "open") : 0;
        s->open_dirty = false;
    }
    j->status = rv;
}

/* ---- jobs, on the loop thread --------------------------------------- */

static void op_free(struct op *op)
{
    buf_close(&op->rec.desc);
    buf_close(&op->rec.data);
    buf_close(&op->snap_data);
    free(op);
}

static void job_free(struct job *j)
{
    struct op *op = j->head;
    while (op != NULL) {
        struct op *next = op->next;
        op_free(op);
        op = next;
    }
    free(j);
}

static struct job *get_pending(struct store *s)
{
    if (s->pending == NULL) {
        s->pending = calloc(1, sizeof *s->pending);
        if (s->pending != NULL) {
            s->pending->s = s;
            s->pending->work.data = s->pending;
        }
    }
    return s->pending;
}

static struct op *add_op(struct store *s, enum op_type type)
{
    struct job *j = get_pending(s);
    struct op *op = j ? calloc(1, sizeof *op) : NULL;
    if (op == NULL) {
        return NULL;
    }
    op->type = type;
    buf_init(&op->rec.desc);
    buf_init(&op->rec.data);
    buf_init(&op->snap_data);
    if (j->tail != NULL) {
        j->tail->next = op;
    } else {
        j->head = op;
    }
    j->tail = op;
    return op;
}

static void after_work_cb(uv_work_t *w, int status);
static void finish_close(struct store *s);

static void maybe_start(struct store *s)
{
    if (s->inflight != NULL || s->in_callbacks) {
        return;
    }
    if (s->pending == NULL && s->closing) {
        /* Nothing left: an empty job makes the close callback fire from
         * the loop, never from inside store_close(). */
        if (get_pending(s) == NULL) {
            finish_close(s);
            return;
        }
    }
    if (s->pending == NULL) {
        return;
    }
    s->inflight = s->pending;
    s->pending = NULL;
    s->pending_write = NULL;
    int rv = uv_queue_work(s->loop, &s->inflight->work, work_cb, after_work_cb);
    CRAFT_ASSERT(rv == 0); /* only fails for a NULL callback */
}

static void fail_reqs(struct store_req *r, int status)
{
    while (r != NULL) {
        struct store_req *next = r->next;
        r->cb(r, status);
        r = next;
    }
}

/* Keep the current snapshot open for store_snapshot_read(), so that a job
 * unlinking it after a newer one is durable never races with the reader.
 * On failure the reader retries lazily. */
static void open_snap_reader(struct store *s)
{
    if (s->snap_read_fd >= 0) {
        s->vfs->close(s->vfs, s->snap_read_fd);
        s->snap_read_fd = -1;
    }
    char path[4096];
    path_of(s, path, sizeof path, s->snap_cur_name);
    int fd = s->vfs->open(s->vfs, path, O_RDONLY, 0);
    s->snap_read_fd = fd >= 0 ? fd : -1;
}

static void note_snapshots(struct store *s, const struct job *j)
{
    bool found = false;
    for (const struct op *op = j->head; op != NULL; op = op->next) {
        if (op->type != OP_SNAP_FINISH) {
            continue;
        }
        s->has_snap_cur = true;
        s->snap_cur = op->meta;
        snprintf(s->snap_cur_name, sizeof s->snap_cur_name, "%s", op->name);
        found = true;
    }
    if (found) {
        open_snap_reader(s);
    }
}

static void after_work_cb(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct store *s = j->s;
    CRAFT_ASSERT(j == s->inflight);
    CRAFT_ASSERT(status == 0); /* jobs are never canceled */
    s->inflight = NULL;
    s->in_callbacks = true;
    if (j->status != 0 && s->failed == 0) {
        s->failed = j->status;
        char q[600];
        log_event(LOG_ERROR, "storage_failed",
                  "error=%s -- the store has failed and accepts no more "
                  "writes",
                  log_quote(j->errmsg, q, sizeof q));
    }
    if (j->status == 0) {
        note_snapshots(s, j);
    }
    if (j->fsync_ns != 0) {
        obs_fsync(j->fsync_ns);
        if (j->fsync_ns / 1000000u >= OBS_FSYNC_STALL_MS) {
            log_event(LOG_WARN, "fsync_stall",
                      "duration_ms=%llu bytes=%llu threshold_ms=%d",
                      (unsigned long long)(j->fsync_ns / 1000000u),
                      (unsigned long long)j->bytes, OBS_FSYNC_STALL_MS);
        }
    }
    fail_reqs(j->reqs, j->status != 0 ? j->status : 0);
    if (s->failed != 0 && s->pending != NULL) {
        struct job *p = s->pending;
        s->pending = NULL;
        s->pending_write = NULL;
        fail_reqs(p->reqs, s->failed);
        job_free(p);
    }
    job_free(j);
    s->in_callbacks = false;
    if (s->closing && s->pending == NULL) {
        finish_close(s);
        return;
    }
    maybe_start(s);
}

/* ---- planning, on the loop thread ----------------------------------- */

static struct seg *open_seg(struct store *s)
{
    if (s->n_segs > 0 && s->segs[s->n_segs - 1].open) {
        return &s->segs[s->n_segs - 1];
    }
    return NULL;
}

static int push_seg(struct store *s, const struct seg *g)
{
    if (s->n_segs == s->cap_segs) {
        size_t cap = s->cap_segs ? 2 * s->cap_segs : 16;
        void *p = realloc(s->segs, cap * sizeof *s->segs);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        s->segs = p;
        s->cap_segs = cap;
    }
    s->segs[s->n_segs++] = *g;
    return 0;
}

static raft_index next_index(const struct store *s)
{
    return (s->log_last > s->snap_index ? s->log_last : s->snap_index) + 1;
}

/* The largest size a segment may reach with entries: room is kept for one
 * truncation record, which must go into the segment it truncates. */
static uint64_t seg_limit(const struct store *s)
{
    return s->o.segment_bytes - STORE_REC_HDR_BYTES;
}

static int plan_delete(struct store *s, size_t i)
{
    CRAFT_ASSERT(i < s->n_segs);
    struct op *op = add_op(s, OP_DELETE);
    if (op == NULL) {
        return CRAFT_ENOMEM;
    }
    struct seg *g = &s->segs[i];
    op->is_open = g->open;
    if (g->open) {
        snprintf(op->name, sizeof op->name, "open");
        s->pending_write = NULL;
    } else {
        store__seg_name(op->name, g->first, g->last);
    }
    return 0;
}

static int plan_create(struct store *s, raft_index first)
{
    CRAFT_ASSERT(open_seg(s) == NULL);
    CRAFT_ASSERT(first > s->snap_index || s->snap_index == 0);
    if (add_op(s, OP_CREATE) == NULL) {
        return CRAFT_ENOMEM;
    }
    struct seg g = {.first = first,
                    .last = first - 1,
                    .size = STORE_SEG_HDR_BYTES,
                    .open = true};
    return push_seg(s, &g);
}

/* Close (or, if it holds no entries, delete) the open segment. */
static int plan_roll(struct store *s)
{
    struct seg *g = open_seg(s);
    CRAFT_ASSERT(g != NULL);
    /* (g->size may pass segment_bytes by truncation records, which must go
     * into the segment they truncate; entries never do.) */
    CRAFT_ASSERT(g->size >= STORE_SEG_HDR_BYTES);
    s->pending_write = NULL;
    if (g->last < g->first) {
        int rv = plan_delete(s, s->n_segs - 1);
        if (rv == 0) {
            s->n_segs--;
        }
        return rv;
    }
    struct op *op = add_op(s, OP_CLOSE);
    if (op == NULL) {
        return CRAFT_ENOMEM;
    }
    op->off = g->size;
    store__seg_name(op->name, g->first, g->last);
    g->open = false;
    return 0;
}

/* Start a record at the end of the open segment. */
static struct op *plan_record(struct store *s, raft_index first_index)
{
    struct seg *g = open_seg(s);
    CRAFT_ASSERT(g != NULL);
    struct op *op = add_op(s, OP_WRITE);
    if (op == NULL) {
        return NULL;
    }
    op->off = g->size;
    op->rec.first_index = first_index;
    g->size += STORE_REC_HDR_BYTES;
    s->pending_write = op;
    return op;
}

static int plan_entry(struct store *s, const struct raft_entry *e)
{
    CRAFT_ASSERT(e->index == s->log_last + 1 || s->n_segs == 0);
    CRAFT_ASSERT(e->buf.len <= s->o.entry_bytes_max);
    struct seg *g = open_seg(s);
    struct op *w = s->pending_write;
    uint64_t len = e->buf.len;
    if (g != NULL && w != NULL) {
        uint64_t now = store__rec_bytes(w->rec.n, w->rec.data.len);
        uint64_t grown = store__rec_bytes(w->rec.n + 1, w->rec.data.len + len);
        if (w->off + grown > seg_limit(s) ||
            w->rec.n >= STORE_RECORD_ENTRIES_MAX) {
            int rv = plan_roll(s);
            if (rv != 0) {
                return rv;
            }
            g = NULL;
        } else {
            g->size += grown - now;
        }
    }
    if (g != NULL && s->pending_write == NULL &&
        g->size + store__rec_bytes(1, len) > seg_limit(s)) {
        int rv = plan_roll(s);
        if (rv != 0) {
            return rv;
        }
        g = NULL;
    }
    if (g == NULL) {
        int rv = plan_create(s, e->index);
        if (rv != 0) {
            return rv;
        }
        g = open_seg(s);
    }
    if (s->pending_write == NULL) {
        if (plan_record(s, e->index) == NULL) {
            return CRAFT_ENOMEM;
        }
        g->size += store__rec_bytes(1, len) - STORE_REC_HDR_BYTES;
    }
    w = s->pending_write;
    struct store_desc ds = {
        .term = e->term, .len = (uint32_t)len, .type = e->type};
    uint8_t d[STORE_DESC_BYTES];
    store__desc_encode(&ds, d);
    if (buf_append(&w->rec.desc, d, sizeof d) != 0 ||
        buf_append(&w->rec.data, e->buf.base, len) != 0) {
        return CRAFT_ENOMEM;
    }
    w->rec.n++;
    if (g->last < g->first) {
        g->first = e->index;
    }
    g->last = e->index;
    s->log_last = e->index;
    CRAFT_ASSERT(w->off + store__rec_bytes(w->rec.n, w->rec.data.len) ==
                 g->size);
    return 0;
}

/* Drop the pending record's entries >= t (t >= its first index). */
static void rec_cut(struct rec *r, raft_index t)
{
    CRAFT_ASSERT(t >= r->first_index);
    uint32_t keep = (uint32_t)(t - r->first_index);
    if (keep >= r->n) {
        return;
    }
    uint64_t data = 0;
    for (uint32_t i = 0; i < keep; i++) {
        struct store_desc ds;
        store__desc_decode(r->desc.data + (size_t)i * STORE_DESC_BYTES, &ds);
        data += ds.len;
    }
    r->n = keep;
    r->desc.len = (size_t)keep * STORE_DESC_BYTES;
    r->data.len = (size_t)data;
}

/*
 * Drop every entry >= t (snapshot index < t <= log_last).
 *
 * Within the open segment this is one truncation record ("entries from t
 * on are void"), written like any other record, merged into the pending
 * one if there is one.  Reaching further back, files go newest first: the
 * open segment, then closed segments that start at or after t, each unlink
 * made durable before the next, so a crash leaves a shorter but contiguous
 * log that still holds every entry < t.  The segment holding t - 1 and t
 * is reopened and gets a truncation record (op_reopen()).
 */
static int plan_truncate(struct store *s, raft_index t)
{
    struct seg *g = open_seg(s);
    CRAFT_ASSERT(t > s->snap_index);
    CRAFT_ASSERT(t <= s->log_last);
    if (g != NULL && g->last >= g->first && t >= g->first) {
        struct op *w = s->pending_write;
        if (w == NULL) {
            w = plan_record(s, t);
            if (w == NULL) {
                return CRAFT_ENOMEM;
            }
        } else if (t >= w->rec.first_index) {
            rec_cut(&w->rec, t);
        } else {
            w->rec.first_index = t;
            rec_cut(&w->rec, t);
        }
        g->size = w->off + store__rec_bytes(w->rec.n, w->rec.data.len);
        g->last = t - 1;
        s->log_last = t - 1;
        return 0;
    }
    while (s->n_segs > 0 &&
           (s->segs[s->n_segs - 1].open || s->segs[s->n_segs - 1].first >= t)) {
        int rv = plan_delete(s, s->n_segs - 1);
        if (rv != 0) {
            return rv;
        }
        s->n_segs--;
    }
    if (s->n_segs > 0 && s->segs[s->n_segs - 1].last >= t) {
        g = &s->segs[s->n_segs - 1];
        struct op *op = add_op(s, OP_REOPEN);
        if (op == NULL) {
            return CRAFT_ENOMEM;
        }
        store__seg_name(op->name, g->first, g->last);
        op->off = g->size;
        op->rec.first_index = t;
        g->size += STORE_REC_HDR_BYTES;
        g->open = true;
        g->last = t - 1;
    }
    s->log_last = t - 1;
    return 0;
}

/*
 * Remove whole segments whose entries are all <= to, oldest first: a crash
 * in between leaves a log that starts later but is still contiguous and
 * still reaches back to the snapshot (to <= snapshot index).  When to
 * covers the whole log, the open segment goes last.
 */
static int plan_wipe(struct store *s, raft_index to)
{
    CRAFT_ASSERT(to <= s->snap_index);
    size_t n = 0;
    while (n < s->n_segs) {
        const struct seg *g = &s->segs[n];
        bool empty = g->last < g->first;
        if ((!empty && g->last > to) || (empty && to < s->log_last)) {
            break;
        }
        int rv = plan_delete(s, n);
        if (rv != 0) {
            return rv;
        }
        n++;
    }
    memmove(s->segs, s->segs + n, (s->n_segs - n) * sizeof *s->segs);
    s->n_segs -= n;
    if (s->n_segs == 0) {
        s->log_last = 0;
        s->pending_write = NULL;
    }
    CRAFT_ASSERT(s->n_segs == 0 || s->segs[0].last > to ||
                 s->segs[0].last < s->segs[0].first);
    return 0;
}

static int check_usable(const struct store *s)
{
    if (s->failed != 0) {
        return s->failed;
    }
    return s->closing ? CRAFT_ESHUTDOWN : 0;
}

static uint64_t pending_bytes(const struct store *s)
{
    return s->pending ? s->pending->bytes : 0;
}

static void enqueue(struct store *s, struct store_req *req, store_cb cb,
                    uint64_t bytes)
{
    struct job *j = s->pending;
    CRAFT_ASSERT(j != NULL);
    req->cb = cb;
    req->next = NULL;
    if (j->reqs_tail != NULL) {
        j->reqs_tail->next = req;
    } else {
        j->reqs = req;
    }
    j->reqs_tail = req;
    j->bytes += bytes;
}

/* An out-of-memory failure half way through planning leaves the model and
 * the queue out of step: the store fails rather than guess. */
static int plan_failed(struct store *s, int rv)
{
    CRAFT_ASSERT(rv != 0);
    s->failed = rv;
    LOG_ERRORF("storage: %s while queueing a write; the store has failed",
               craft_strerror(rv));
    if (s->pending != NULL && s->inflight == NULL) {
        struct job *p = s->pending;
        s->pending = NULL;
        s->pending_write = NULL;
        s->in_callbacks = true;
        fail_reqs(p->reqs, rv);
        s->in_callbacks = false;
        job_free(p);
    }
    return rv;
}

static int check_append(const struct store *s, raft_index truncate_from,
                        const struct raft_entry *entries, size_t n,
                        uint64_t *bytes)
{
    raft_index next = next_index(s);
    if (truncate_from != 0 &&
        (truncate_from <= s->snap_index || truncate_from > next)) {
        return CRAFT_EINVAL;
    }
    raft_index want = truncate_from != 0 ? truncate_from : next;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (entries[i].index != want + i || entries[i].term == 0) {
            return CRAFT_EINVAL;
        }
        if (entries[i].buf.len > s->o.entry_bytes_max) {
            return CRAFT_ETOOBIG;
        }
        if (entries[i].buf.len > 0 && entries[i].buf.base == NULL) {
            return CRAFT_EINVAL;
        }
        total += entries[i].buf.len + STORE_DESC_BYTES;
    }
    if (pending_bytes(s) + total > s->o.pending_bytes_max && n > 0) {
        return CRAFT_ELIMIT;
    }
    *bytes = total;
    return 0;
}

int store_append(struct store *s, struct store_req *req,
                 const struct raft_hard_state *hs, raft_index truncate_from,
                 const struct raft_entry *entries, size_t n, store_cb cb)
{
    CRAFT_ASSERT(req != NULL);
    CRAFT_ASSERT(cb != NULL);
    CRAFT_ASSERT(n == 0 || entries != NULL);
    int rv = check_usable(s);
    uint64_t bytes = 0;
    if (rv == 0) {
        rv = check_append(s, truncate_from, entries, n, &bytes);
    }
    /* The term is durable before any entry of that term (Raft's rule, and
     * what start-up checks): entries may not run ahead of the hard state. */
    raft_term hs_term = hs != NULL ? hs->term : s->hs_term;
    for (size_t i = 0; rv == 0 && i < n; i++) {
        rv = entries[i].term > hs_term ? CRAFT_EINVAL : 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (get_pending(s) == NULL) {
        return CRAFT_ENOMEM;
    }
    if (hs != NULL) {
        s->pending->has_hs = true;
        s->pending->hs = *hs;
        s->hs_term = hs->term;
    }
    if (truncate_from != 0 && truncate_from <= s->log_last) {
        rv = plan_truncate(s, truncate_from);
    }
    if (rv == 0 && n > 0 && entries[0].index > s->log_last + 1 &&
        s->n_segs > 0) {
        /* The log is all covered by a newer snapshot: start afresh. */
        rv = plan_wipe(s, s->snap_index);
    }
    for (size_t i = 0; rv == 0 && i < n; i++) {
        rv = plan_entry(s, &entries[i]);
    }
    if (rv != 0) {
        return plan_failed(s, rv);
    }
    enqueue(s, req, cb, bytes);
    maybe_start(s);
    return 0;
}

int store_snapshot_put(struct store *s, struct store_req *req,
                       const struct raft_snapshot_meta *meta, uint64_t offset,
                       const void *data, size_t len, bool last, store_cb cb)
{
    CRAFT_ASSERT(req != NULL);
    CRAFT_ASSERT(cb != NULL);
    int rv = check_usable(s);
    if (rv != 0) {
        return rv;
    }
    bool follows = s->snap_building && offset == s->snap_received &&
                   meta->index == s->snap_meta.index &&
                   meta->term == s->snap_meta.term &&
                   meta->size == s->snap_meta.size;
    if ((offset != 0 && !follows) || meta->index < s->snap_index ||
        meta->config.n > RAFT_MEMBERS_MAX || (len > 0 && data == NULL) ||
        offset + len > meta->size || (last && offset + len != meta->size) ||
        meta->term > s->hs_term) {
        return CRAFT_EINVAL;
    }
    if (pending_bytes(s) + len > s->o.pending_bytes_max && len > 0) {
        return CRAFT_ELIMIT;
    }
    struct op *op = add_op(s, OP_SNAP_CHUNK);
    if (op == NULL || buf_append(&op->snap_data, data, len) != 0) {
        return plan_failed(s, CRAFT_ENOMEM);
    }
    op->snap_off = offset;
    s->snap_building = true;
    s->snap_meta = *meta;
    s->snap_received = offset + len;
    if (last) {
        op = add_op(s, OP_SNAP_FINISH);
        if (op == NULL) {
            return plan_failed(s, CRAFT_ENOMEM);
        }
        op->meta = *meta;
        store__snap_name(op->name, meta->index, meta->term);
        snprintf(op->old_name, sizeof op->old_name, "%s", s->snap_name);
        snprintf(s->snap_name, sizeof s->snap_name, "%s", op->name);
        s->snap_index = meta->index;
        s->snap_term = meta->term;
        s->snap_building = false;
    }
    enqueue(s, req, cb, len);
    maybe_start(s);
    return 0;
}

int store_compact(struct store *s, struct store_req *req, raft_index to,
                  store_cb cb)
{
    CRAFT_ASSERT(req != NULL);
    CRAFT_ASSERT(cb != NULL);
    int rv = check_usable(s);
    if (rv != 0) {
        return rv;
    }
    if (to > s->snap_index) {
        return CRAFT_EINVAL;
    }
    if (get_pending(s) == NULL) {
        return CRAFT_ENOMEM;
    }
    rv = plan_wipe(s, to);
    if (rv != 0) {
        return plan_failed(s, rv);
    }
    enqueue(s, req, cb, 0);
    maybe_start(s);
    return 0;
}

int64_t store_snapshot_read(struct store *s, raft_index index, uint64_t offset,
                            void *buf, size_t len,
                            struct raft_snapshot_meta *meta)
{
    if (!s->has_snap_cur) {
        return CRAFT_ENOENT;
    }
    if (index != 0 && index != s->snap_cur.index) {
        return CRAFT_ESTALE;
    }
    if (s->snap_read_fd < 0) {
        char path[4096];
        path_of(s, path, sizeof path, s->snap_cur_name);
        int fd = s->vfs->open(s->vfs, path, O_RDONLY, 0);
        if (fd < 0) {
            return store__errno_code(fd);
        }
        s->snap_read_fd = fd;
    }
    if (meta != NULL) {
        *meta = s->snap_cur;
    }
    if (offset >= s->snap_cur.size) {
        return 0;
    }
    uint64_t left = s->snap_cur.size - offset;
    size_t n = left < len ? (size_t)left : len;
    ssize_t got = s->vfs->pread(s->vfs, s->snap_read_fd, buf, n,
                                STORE_SNAP_HDR_BYTES + offset);
    if (got < 0) {
        return store__errno_code((int)got);
    }
    return (int64_t)got;
}

/* ---- open and close ------------------------------------------------- */

static int check_options(const struct store_options *o)
{
    uint64_t one = STORE_SEG_HDR_BYTES + 2 * STORE_REC_HDR_BYTES +
                   STORE_DESC_BYTES + (uint64_t)o->entry_bytes_max + 8;
    if (o->segment_bytes < STORE_SEGMENT_BYTES_MIN || o->segment_bytes < one ||
        o->entry_bytes_max == 0 || o->pending_bytes_max == 0) {
        return CRAFT_EINVAL;
    }
    return 0;
}

/* The model of the files, from what the scan found. */
static int model_from_scan(struct store *s)
{
    const struct store_scan *sc = &s->scan;
    s->hs_term = sc->hs.term;
    for (size_t i = 0; i < sc->n_segs; i++) {
        const struct store_seg_info *si = &sc->segs[i];
        struct seg g = {.first = si->first,
                        .last = si->last,
                        .size = si->end,
                        .open = si->open};
        if (si->open && si->last < si->first) {
            g.first = sc->log_last + 1;
            g.last = sc->log_last;
        }
        int rv = push_seg(s, &g);
        if (rv != 0) {
            return rv;
        }
    }
    s->log_last = sc->log_last;
    s->meta_seq = sc->meta_seq;
    if (sc->has_snapshot) {
        s->snap_index = sc->snapshot.index;
        s->snap_term = sc->snapshot.term;
        snprintf(s->snap_name, sizeof s->snap_name, "%s", sc->snapshot_name);
        s->has_snap_cur = true;
        s->snap_cur = sc->snapshot;
        snprintf(s->snap_cur_name, sizeof s->snap_cur_name, "%s",
                 sc->snapshot_name);
        open_snap_reader(s);
    }
    return 0;
}

/*
 * A new directory gets meta2 = {seq 0, term 0, no vote} before anything
 * else, so that from then on both metadata files exist: a damaged one then
 * always has a valid partner, and "both invalid" is corruption.  (Without
 * it, damage to the only file ever written would look like a torn first
 * write.)
 */
static int init_meta(struct store *s, char *errmsg, size_t errmsg_len)
{
    if (s->scan.meta_file != 0) {
        return 0;
    }
    char path[4096];
    path_of(s, path, sizeof path, "meta2");
    uint8_t buf[STORE_META_BYTES];
    struct store_meta m = {.seq = 0};
    store__meta_encode(&m, buf);
    struct iovec iov = {buf, sizeof buf};
    int fd = s->vfs->open(s->vfs, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int rv = fd < 0 ? fd : s->vfs->pwritev(s->vfs, fd, &iov, 1, 0);
    rv = rv ? rv : s->vfs->fdatasync(s->vfs, fd);
    if (fd >= 0) {
        s->vfs->close(s->vfs, fd);
    }
    rv = rv ? rv : s->vfs->fsync_dir(s->vfs, s->dir);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "%s: %s", path, strerror(-rv));
        return store__errno_code(rv);
    }
    s->scan.meta_file = 2;
    s->meta_seq = 0;
    return 0;
}

/* The writer keeps the open segment's descriptor from the start. */
static int open_writer(struct store *s, char *errmsg, size_t errmsg_len)
{
    const struct seg *g = open_seg(s);
    if (g == NULL) {
        return 0;
    }
    char path[4096];
    path_of(s, path, sizeof path, "open");
    int fd = s->vfs->open(s->vfs, path, O_RDWR, 0600);
    if (fd < 0) {
        snprintf(errmsg, errmsg_len, "%s: open: %s", path, strerror(-fd));
        return store__errno_code(fd);
    }
    s->open_fd = fd;
    for (size_t i = 0; i < s->scan.n_segs; i++) {
        if (s->scan.segs[i].open) {
            s->open_salt = s->scan.segs[i].salt;
        }
    }
    CRAFT_ASSERT(s->open_salt != 0);
    return 0;
}

int store_open(const char *dir, const struct store_options *o, uv_loop_t *loop,
               struct store **out, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(dir != NULL);
    CRAFT_ASSERT(out != NULL);
    int rv = check_options(o);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len,
                 "storage options: a segment must hold at least one entry "
                 "of the largest size, and be >= %" PRIu64 " bytes",
                 STORE_SEGMENT_BYTES_MIN);
        return rv;
    }
    struct store *s = calloc(1, sizeof *s);
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        snprintf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    s->loop = loop;
    s->o = *o;
    s->vfs = o->vfs ? o->vfs : store_vfs_posix();
    s->open_fd = s->snap_fd = s->snap_read_fd = s->lock_handle = -1;
    s->meta_fd[0] = s->meta_fd[1] = s->meta_fd[2] = -1;
    rv = s->vfs->mkdir(s->vfs, dir);
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "%s: mkdir: %s", dir, strerror(-rv));
        rv = store__errno_code(rv);
        goto err_store;
    }
    rv = store_lock(dir, o, &s->lock_handle, errmsg, errmsg_len);
    if (rv != 0) {
        goto err_store;
    }
    rv = store_scan(dir, o, &s->scan, errmsg, errmsg_len);
    if (rv != 0) {
        goto err_lock;
    }
    s->scan_loaded = true;
    rv = store_repair(dir, o, &s->scan, errmsg, errmsg_len);
    if (rv == 0) {
        rv = model_from_scan(s);
    }
    if (rv == 0) {
        rv = init_meta(s, errmsg, errmsg_len);
    }
    if (rv == 0) {
        rv = open_writer(s, errmsg, errmsg_len);
    }
    if (rv != 0) {
        goto err_scan;
    }
    *out = s;
    return 0;

err_scan:
    store_scan_close(&s->scan);
err_lock:
    store_unlock(o, s->lock_handle);
err_store:
    free(s->segs);
    free(s->dir);
    free(s);
    return rv;
}

const struct store_scan *store_loaded(const struct store *s)
{
    CRAFT_ASSERT(s->scan_loaded);
    return &s->scan;
}

void store_release_loaded(struct store *s)
{
    if (s->scan_loaded) {
        store_scan_close(&s->scan);
        s->scan_loaded = false;
    }
}

int store_error(const struct store *s)
{
    return s->failed;
}

static void finish_close(struct store *s)
{
    CRAFT_ASSERT(s->inflight == NULL);
    if (s->pending != NULL) {
        CRAFT_ASSERT(s->pending->reqs == NULL);
        job_free(s->pending);
        s->pending = NULL;
    }
    int fds[] = {s->open_fd, s->meta_fd[1], s->meta_fd[2], s->snap_fd,
                 s->snap_read_fd};
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(fds); i++) {
        if (fds[i] >= 0) {
            s->vfs->close(s->vfs, fds[i]);
        }
    }
    store_release_loaded(s);
    store_unlock(&s->o, s->lock_handle);
    /* The callback gets the pointer for identification; the store is freed
     * right after it returns. */
    if (s->close_cb != NULL) {
        s->close_cb(s);
    }
    free(s->segs);
    free(s->dir);
    free(s);
}

void store_close(struct store *s, store_close_cb cb)
{
    CRAFT_ASSERT(!s->closing);
    s->closing = true;
    s->close_cb = cb;
    if (s->inflight == NULL && !s->in_callbacks) {
        /* Queue whatever is pending, or an empty job (see maybe_start). */
        if (s->pending == NULL && get_pending(s) == NULL) {
            finish_close(s);
            return;
        }
        maybe_start(s);
    }
}
