/*
 * craft-bench-storage -- drive src/storage from outside.
 *
 *   craft-bench-storage --dir D --entries N --size B [--batch K]
 *                       [--inflight P] [--report-durable]
 *                       [--segment-bytes S] [--snapshot-every E]
 *       Open (or create) the data directory D and append N entries of B
 *       bytes after whatever it already holds, K entries per store_append
 *       call, with at most P calls in flight (default 1: each batch waits
 *       for the previous one to be durable, like a client waiting for its
 *       reply).  With --report-durable, prints "durable <last-index>" after
 *       every completed fdatasync, flushed at once, so a test can kill -9
 *       the process at any moment and then check that every index reported
 *       is in the log.  With --snapshot-every E, whenever E entries were
 *       made durable since the last snapshot, a 64 KiB snapshot at the last
 *       durable index is written in 16 KiB chunks and the log compacted up
 *       to it (printing "snapshot <index>" once both are durable).  Ends
 *       with one summary line:
 *         append entries=N size=B batch=K inflight=P seconds=T
 *           entries_per_s=X mb_per_s=Y batches=Z
 *
 *   craft-bench-storage --dir D --load [--cold]
 *       Time store_open() of an existing directory (with --cold, after
 *       evicting its files from the page cache):
 *         load entries=N bytes=B seconds=T mb_per_s=X
 *
 *   craft-bench-storage --dir D --fsync-floor --entries N --size B
 *       The raw floor: N times (pwrite B bytes + fdatasync) on a
 *       preallocated file in D:
 *         floor size=B ops=N seconds=T ops_per_s=X us_per_op=Y
 *
 *   craft-bench-storage --dir D --seq-write --size MB
 *       Raw sequential write bandwidth: MB MiB in 1 MiB writes, then one
 *       fdatasync:  seqwrite mb=M seconds=T mb_per_s=X
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "storage/store.h"
#include "util/encoding.h"
#include "util/log.h"

#define EXIT_USAGE 64
#define EXIT_IO 74
/* Calls in flight: each holds a batch, so this bounds memory. */
#define BENCH_INFLIGHT_MAX 1024
/* --snapshot-every: a fixed small snapshot, sent in chunks as a follower
 * would receive it. */
#define BENCH_SNAP_BYTES (64 * 1024)
#define BENCH_SNAP_CHUNKS 4

static const char usage[] =
    "usage: craft-bench-storage --dir D --entries N --size B [--batch K]\n"
    "                           [--inflight P] [--report-durable]\n"
    "                           [--segment-bytes S] [--snapshot-every E]\n"
    "       craft-bench-storage --dir D --load [--cold]\n"
    "       craft-bench-storage --dir D --fsync-floor --entries N --size B\n"
    "       craft-bench-storage --dir D --seq-write --size MIB\n"
    "\n"
    "Appends N entries of B bytes to the storage in D (after what it\n"
    "holds), K per call, P calls in flight (default K=1, P=1).\n"
    "  --report-durable  print 'durable <index>' after every fsync, flushed\n"
    "  --snapshot-every E  snapshot + compact every E durable entries\n"
    "  --load            time loading D instead (--cold: from the disk)\n"
    "  --fsync-floor     time N x (write B bytes + fdatasync) on a raw file\n"
    "  --seq-write       time MIB MiB of sequential writes + one fdatasync\n";

struct args {
    const char *dir;
    uint64_t entries, size, batch, inflight, segment_bytes, snapshot_every;
    bool report, load, cold, floor, seq;
};

struct slot {
    struct store_req req;
    raft_index last;
};

struct bench {
    struct args a;
    uv_loop_t loop;
    struct store *s;
    raft_term term;
    raft_index next;    /* next index to submit */
    raft_index end;     /* one past the last index to write */
    uint64_t in_flight; /* calls */
    uint64_t batches;
    int error;
    uint8_t *payload;
    struct raft_entry *es;
    struct slot *slots;
    struct slot **free_slots;
    size_t n_free;
    /* snapshots */
    raft_index snap_index; /* last snapshot started */
    bool snap_busy;
    struct store_req snap_reqs[BENCH_SNAP_CHUNKS];
    struct store_req compact_req;
    uint8_t snap_data[BENCH_SNAP_BYTES];
};

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    if (s == NULL || *s < '0' || *s > '9') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *v = (uint64_t)x;
    return true;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->batch = 1;
    a->inflight = 1;
    a->segment_bytes = STORE_SEGMENT_BYTES_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        uint64_t *num = NULL;
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (strcmp(o, "--report-durable") == 0) {
            a->report = true;
        } else if (strcmp(o, "--load") == 0) {
            a->load = true;
        } else if (strcmp(o, "--cold") == 0) {
            a->cold = true;
        } else if (strcmp(o, "--fsync-floor") == 0) {
            a->floor = true;
        } else if (strcmp(o, "--seq-write") == 0) {
            a->seq = true;
        } else if (strcmp(o, "--dir") == 0 && i + 1 < argc) {
            a->dir = argv[++i];
        } else if (strcmp(o, "--entries") == 0) {
            num = &a->entries;
        } else if (strcmp(o, "--size") == 0) {
            num = &a->size;
        } else if (strcmp(o, "--batch") == 0) {
            num = &a->batch;
        } else if (strcmp(o, "--inflight") == 0) {
            num = &a->inflight;
        } else if (strcmp(o, "--segment-bytes") == 0) {
            num = &a->segment_bytes;
        } else if (strcmp(o, "--snapshot-every") == 0) {
            num = &a->snapshot_every;
        } else {
            fprintf(stderr, "craft-bench-storage: unknown option '%s'\n\n%s", o,
                    usage);
            return EXIT_USAGE;
        }
        if (num != NULL && (i + 1 >= argc || !parse_u64(argv[++i], num))) {
            fprintf(stderr, "craft-bench-storage: %s needs a number\n\n%s", o,
                    usage);
            return EXIT_USAGE;
        }
    }
    if (a->dir == NULL ||
        (!a->load && !a->seq && (a->entries == 0 || a->size == 0)) ||
        (a->seq && a->size == 0) || a->batch == 0 || a->inflight == 0 ||
        a->inflight > BENCH_INFLIGHT_MAX ||
        a->batch > STORE_RECORD_ENTRIES_MAX ||
        a->size > STORE_ENTRY_BYTES_MAX_DEFAULT) {
        fprintf(stderr,
                "craft-bench-storage: missing or out-of-range "
                "options\n\n%s",
                usage);
        return EXIT_USAGE;
    }
    return 0;
}

static void submit(struct bench *b);

static void fail_status(struct bench *b, const char *what, int status)
{
    if (b->error == 0) {
        fprintf(stderr, "craft-bench-storage: %s: %s\n", what,
                craft_strerror(status));
    }
    b->error = status;
}

static void snap_chunk_cb(struct store_req *req, int status)
{
    struct bench *b = req->data;
    if (status != 0) {
        fail_status(b, "snapshot", status);
    }
}

static void compact_cb(struct store_req *req, int status)
{
    struct bench *b = req->data;
    b->snap_busy = false;
    if (status != 0) {
        fail_status(b, "compact", status);
        return;
    }
    if (b->a.report) {
        printf("snapshot %" PRIu64 "\n", b->snap_index);
        fflush(stdout);
    }
}

/* A snapshot at a durable index, then compaction up to it: all queued at
 * once, behind the appends already queued (the store keeps the order). */
static void snapshot(struct bench *b, raft_index index)
{
    struct raft_snapshot_meta m = {.index = index,
                                   .term = b->term,
                                   .size = BENCH_SNAP_BYTES};
    m.config.n = 3;
    for (unsigned i = 0; i < 3; i++) {
        m.config.ids[i] = i + 1;
    }
    memcpy(b->snap_data, &index, sizeof index);
    size_t chunk = BENCH_SNAP_BYTES / BENCH_SNAP_CHUNKS;
    for (size_t i = 0; i < BENCH_SNAP_CHUNKS; i++) {
        b->snap_reqs[i].data = b;
        int rv = store_snapshot_put(b->s, &b->snap_reqs[i], &m, i * chunk,
                                    b->snap_data + i * chunk, chunk,
                                    i + 1 == BENCH_SNAP_CHUNKS, snap_chunk_cb);
        if (rv != 0) {
            fail_status(b, "snapshot", rv);
            return;
        }
    }
    b->compact_req.data = b;
    int rv = store_compact(b->s, &b->compact_req, index, compact_cb);
    if (rv != 0) {
        fail_status(b, "compact", rv);
        return;
    }
    b->snap_index = index;
    b->snap_busy = true;
}

static void append_cb(struct store_req *req, int status)
{
    struct slot *sl = (struct slot *)req;
    struct bench *b = req->data;
    b->in_flight--;
    b->free_slots[b->n_free++] = sl;
    if (status != 0) {
        if (b->error == 0) {
            fprintf(stderr, "craft-bench-storage: append: %s\n",
                    craft_strerror(status));
        }
        b->error = status;
        return;
    }
    b->batches++;
    if (b->a.report) {
        /* One write(2) per line, so a kill -9 never splits one. */
        printf("durable %" PRIu64 "\n", sl->last);
        fflush(stdout);
    }
    if (b->a.snapshot_every != 0 && !b->snap_busy &&
        sl->last - b->snap_index >= b->a.snapshot_every) {
        snapshot(b, sl->last);
    }
    submit(b);
}

static void submit(struct bench *b)
{
    while (b->error == 0 && b->next < b->end && b->in_flight < b->a.inflight) {
        uint64_t n = b->end - b->next;
        if (n > b->a.batch) {
            n = b->a.batch;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint8_t *p = b->payload + i * b->a.size;
            b->es[i] = (struct raft_entry){.index = b->next + i,
                                           .term = b->term,
                                           .type = RAFT_ENTRY_COMMAND,
                                           .buf = {p, b->a.size}};
            /* Make every entry distinct and checkable from outside: its
             * index (little-endian) in the first bytes, zeros after. */
            uint8_t idx[8];
            put_u64(idx, b->next + i);
            memcpy(p, idx, b->a.size < 8 ? b->a.size : 8);
        }
        struct slot *sl = b->free_slots[--b->n_free];
        sl->req.data = b;
        sl->last = b->next + n - 1;
        int rv = store_append(b->s, &sl->req, NULL, 0, b->es, n, append_cb);
        if (rv != 0) {
            fprintf(stderr, "craft-bench-storage: append: %s\n",
                    craft_strerror(rv));
            b->error = rv;
            b->free_slots[b->n_free++] = sl;
            return;
        }
        b->in_flight++;
        b->next += n;
    }
}

static int open_store(struct bench *b, double *seconds)
{
    struct store_options o;
    store_options_default(&o);
    o.segment_bytes = b->a.segment_bytes;
    if (b->a.size > 0) {
        /* Only this size is written; lets small segments pass the check
         * that a segment holds the largest entry. */
        o.entry_bytes_max = (uint32_t)b->a.size;
    }
    char err[1024];
    double t0 = now_s();
    int rv = store_open(b->a.dir, &o, &b->loop, &b->s, err, sizeof err);
    *seconds = now_s() - t0;
    if (rv != 0) {
        fprintf(stderr, "craft-bench-storage: %s\n", err);
    }
    return rv;
}

/* Drop the directory's files from the page cache (they are clean after
 * the fsyncs that wrote them, so the kernel can simply forget them). */
static void evict(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)fdatasync(fd);
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

static int run_load(struct bench *b)
{
    if (b->a.cold) {
        evict(b->a.dir);
    }
    double t;
    if (open_store(b, &t) != 0) {
        return EXIT_IO;
    }
    const struct store_scan *sc = store_loaded(b->s);
    uint64_t bytes = 0;
    for (size_t i = 0; i < sc->n_segs; i++) {
        bytes += sc->segs[i].end;
    }
    printf("load entries=%zu bytes=%" PRIu64 " seconds=%.3f mb_per_s=%.1f "
           "cache=%s\n",
           sc->n_all_entries, bytes, t, (double)bytes / 1e6 / t,
           b->a.cold ? "cold" : "warm");
    store_close(b->s, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    return 0;
}

static void close_cb(struct store *s)
{
    (void)s;
}

static int run_append(struct bench *b)
{
    double t;
    if (open_store(b, &t) != 0) {
        return EXIT_IO;
    }
    const struct store_scan *sc = store_loaded(b->s);
    raft_index last = sc->log_last;
    if (sc->has_snapshot && sc->snapshot.index > last) {
        last = sc->snapshot.index;
    }
    b->term = sc->hs.term ? sc->hs.term : 1;
    b->snap_index = sc->has_snapshot ? sc->snapshot.index : 0;
    b->next = last + 1;
    b->end = b->next + b->a.entries;
    store_release_loaded(b->s);
    b->payload = calloc(b->a.batch, b->a.size);
    b->es = calloc(b->a.batch, sizeof *b->es);
    b->slots = calloc(b->a.inflight, sizeof *b->slots);
    b->free_slots = calloc(b->a.inflight, sizeof *b->free_slots);
    if (!b->payload || !b->es || !b->slots || !b->free_slots) {
        fprintf(stderr, "craft-bench-storage: out of memory\n");
        return EXIT_IO;
    }
    for (uint64_t i = 0; i < b->a.inflight; i++) {
        b->free_slots[b->n_free++] = &b->slots[i];
    }
    double t0 = now_s();
    submit(b);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    double secs = now_s() - t0;
    store_close(b->s, close_cb);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uint64_t done = b->next - (b->end - b->a.entries);
    printf("append entries=%" PRIu64 " size=%" PRIu64 " batch=%" PRIu64
           " inflight=%" PRIu64 " seconds=%.3f entries_per_s=%.0f "
           "mb_per_s=%.2f batches=%" PRIu64 "\n",
           done, b->a.size, b->a.batch, b->a.inflight, secs,
           (double)done / secs, (double)done * (double)b->a.size / 1e6 / secs,
           b->batches);
    free(b->payload);
    free(b->es);
    free(b->slots);
    free(b->free_slots);
    return b->error ? EXIT_IO : 0;
}

static int raw_file(const char *dir, const char *name, uint64_t prealloc)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "craft-bench-storage: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (prealloc && posix_fallocate(fd, 0, (off_t)prealloc) != 0) ||
        fsync(fd) < 0) {
        fprintf(stderr, "craft-bench-storage: %s: %s\n", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    unlink(path);
    return fd;
}

/* The floor: what one small write + fdatasync costs on this disk, in the
 * same shape the log uses (preallocated file, appending). */
static int run_floor(const struct args *a)
{
    int fd = raw_file(a->dir, "fsync-floor.tmp", a->entries * a->size + 4096);
    if (fd < 0) {
        return EXIT_IO;
    }
    uint8_t *buf = calloc(1, a->size);
    double t0 = now_s();
    for (uint64_t i = 0; i < a->entries; i++) {
        if (pwrite(fd, buf, a->size, (off_t)(i * a->size)) !=
                (ssize_t)a->size ||
            fdatasync(fd) < 0) {
            fprintf(stderr, "craft-bench-storage: write: %s\n",
                    strerror(errno));
            close(fd);
            free(buf);
            return EXIT_IO;
        }
    }
    double secs = now_s() - t0;
    printf("floor size=%" PRIu64 " ops=%" PRIu64
           " seconds=%.3f ops_per_s=%.0f us_per_op=%.1f\n",
           a->size, a->entries, secs, (double)a->entries / secs,
           secs * 1e6 / (double)a->entries);
    close(fd);
    free(buf);
    return 0;
}

static int run_seq(const struct args *a)
{
    enum { CHUNK = 1 << 20 };
    int fd = raw_file(a->dir, "seq-write.tmp", 0);
    if (fd < 0) {
        return EXIT_IO;
    }
    uint8_t *buf = malloc(CHUNK);
    memset(buf, 0xab, CHUNK);
    double t0 = now_s();
    int rv = 0;
    for (uint64_t i = 0; i < a->size && rv == 0; i++) {
        if (pwrite(fd, buf, CHUNK, (off_t)(i * CHUNK)) != CHUNK) {
            rv = EXIT_IO;
        }
    }
    if (rv == 0 && fdatasync(fd) < 0) {
        rv = EXIT_IO;
    }
    double secs = now_s() - t0;
    if (rv != 0) {
        fprintf(stderr, "craft-bench-storage: write: %s\n", strerror(errno));
    } else {
        printf("seqwrite mb=%" PRIu64 " seconds=%.3f mb_per_s=%.1f\n", a->size,
               secs, (double)a->size * CHUNK / 1e6 / secs);
    }
    close(fd);
    free(buf);
    return rv;
}

int main(int argc, char **argv)
{
    struct bench b;
    memset(&b, 0, sizeof b);
    int rv = parse_args(argc, argv, &b.a);
    if (rv != 0) {
        return rv;
    }
    log_set_ident("bench-storage");
    if (b.a.floor) {
        return run_floor(&b.a);
    }
    if (b.a.seq) {
        return run_seq(&b.a);
    }
    if (uv_loop_init(&b.loop) != 0) {
        return EXIT_IO;
    }
    rv = b.a.load ? run_load(&b) : run_append(&b);
    uv_loop_close(&b.loop);
    return rv;
}
