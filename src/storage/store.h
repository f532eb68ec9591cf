/*
 * store -- the durable state of one Raft node: the log in segment files,
 * the hard state (term, vote) in two alternating metadata files, and the
 * latest snapshot.  On-disk formats: format.h and docs/storage.md.
 *
 * Threads.  A store lives on one libuv loop.  Every function here is called
 * on the loop thread.  Writes are queued and carried out by one job at a
 * time on the libuv thread pool (uv_queue_work), so the loop never waits
 * for a disk; callbacks fire on the loop thread, in submission order.
 *
 * Group commit.  Everything submitted while a job is in flight is merged
 * into the next job: appends to the open segment become one record, written
 * with one pwritev() and made durable with one fdatasync().
 *
 * Invariants (checked by the tests through a crash-simulating file layer):
 *  1. A request whose callback reported 0 is durable: after a crash at any
 *     instant, reopening yields it (entries present and identical, hard
 *     state at least as new, snapshot present).
 *  2. Nothing appears that was never submitted, and a truncated entry
 *     never reappears once the truncation was reported durable.
 *  3. On one file, at most one record is written between two fsyncs, so a
 *     crash can tear only the last record of the open segment; start-up
 *     cuts it back (and logs the cut).  A bad checksum anywhere else is
 *     corruption and start-up refuses with the file, offset and expectation.
 *  4. After any I/O error the store is failed (see store_append): nothing
 *     more is written, so what was durable stays durable.
 *  5. A snapshot becomes durable only after every record queued before
 *     it (e.g. the truncation of a suffix it conflicts with), so a crash
 *     never leaves a new snapshot over a log that misses such a record.
 *     (The metadata of a job is written first, so it may be ahead.)
 *
 * Ownership.  Entry payloads, hard state and snapshot chunks are copied at
 * submission; the caller may free them when the call returns.  A struct
 * store_req is the caller's and must stay valid until its callback.
 */
#ifndef CRAFT_STORAGE_STORE_H
#define CRAFT_STORAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "craft/raft.h"
#include "storage/format.h"
#include "storage/vfs.h"

/* Segment size: large enough that segment turnover (close, rename, create,
 * preallocate) is rare next to appends, small enough that compaction frees
 * space in useful steps and start-up reads files of a reasonable size. */
#define STORE_SEGMENT_BYTES_DEFAULT ((uint64_t)64 << 20)
/* The smallest segment accepted; tests use it to get many segments. */
#define STORE_SEGMENT_BYTES_MIN ((uint64_t)4096)
/* Largest entry payload.  An entry never spans segments, so a segment must
 * hold at least one entry of this size (checked by store_open). */
#define STORE_ENTRY_BYTES_MAX_DEFAULT ((uint32_t)16 << 20)
/* Bytes queued but not yet handed to the disk; beyond this store_append()
 * returns CRAFT_ELIMIT, which bounds memory when the disk falls behind. */
#define STORE_PENDING_BYTES_MAX_DEFAULT ((uint64_t)256 << 20)
/* Entries in one record; bounds the descriptor array of a record (24 bytes
 * each) and the work of verifying one record. */
#define STORE_RECORD_ENTRIES_MAX ((uint32_t)1 << 20)

struct store_options {
    uint64_t segment_bytes;
    uint32_t entry_bytes_max;
    uint64_t pending_bytes_max;
    /* The file layer; NULL means the real file system. */
    struct store_vfs *vfs;
};

void store_options_default(struct store_options *o);

/* One segment file as found by store_scan(). */
struct store_seg_info {
    char name[STORE_NAME_MAX];
    bool open;
    raft_index first, last; /* last < first when empty */
    raft_term first_term, last_term;
    uint64_t salt;       /* from the segment header (format.h) */
    uint64_t end;        /* offset after the last valid record */
    uint64_t file_bytes; /* size of the file */
    uint32_t n_records;
    bool no_header; /* open segment whose header is missing or torn */
    bool torn;      /* open segment: a torn tail at [end, end + torn_bytes) */
    uint64_t torn_bytes;
};

/*
 * What a data directory holds, fully validated.  entries are the log
 * entries after the snapshot, contiguous; their payloads point into buffers
 * owned by the scan and live until store_scan_close().
 */
struct store_scan {
    struct raft_hard_state hs;
    int meta_file;     /* 1 or 2: the file the hard state came from; 0 none */
    uint64_t meta_seq; /* its seq */
    bool has_snapshot;
    struct raft_snapshot_meta snapshot;
    uint32_t snapshot_crc;
    char snapshot_name[STORE_NAME_MAX];
    struct store_seg_info *segs;
    size_t n_segs;
    struct raft_entry *entries;
    size_t n_entries;
    /* Every entry in the segments, including those the snapshot covers
     * that compaction has not removed yet (entries points into it). */
    struct raft_entry *all_entries;
    size_t n_all_entries;
    raft_index log_first, log_last; /* all entries in segments; 0,0: none */
    bool torn;        /* a torn tail was found (and not yet cut) */
    bool stale_files; /* snap.tmp or older snapshots to remove */
    /* private */
    uint8_t **bufs;
    uint64_t *buf_sizes;
    bool *buf_mapped;
    size_t n_bufs;
    struct store_vfs *vfs;
    size_t cap_entries;
};

/*
 * Read and validate everything in dir without changing it.  Returns 0 when
 * the directory is consistent (possibly with a torn tail: scan->torn), or
 * CRAFT_ECORRUPT / CRAFT_EVERSION with errmsg naming the file, the offset
 * and what was expected, CRAFT_ENOENT if dir does not exist, CRAFT_EIO etc.
 * On failure scan is left empty (store_scan_close() is still safe).
 */
int store_scan(const char *dir, const struct store_options *o,
               struct store_scan *scan, char *errmsg, size_t errmsg_len);
void store_scan_close(struct store_scan *scan);

/*
 * Make a scanned directory ready for writing: cut a torn tail back to the
 * last whole record (logged), rewrite a torn open-segment header, remove
 * snap.tmp and superseded snapshots, and make all of it durable.  0 or an
 * I/O error code.
 */
int store_repair(const char *dir, const struct store_options *o,
                 struct store_scan *scan, char *errmsg, size_t errmsg_len);

/*
 * Lock the directory against other processes (an exclusive flock() on
 * dir/LOCK, which the kernel releases when the process dies).  store_open()
 * holds it until store_close(); craft-cli takes it for --repair.  0 (with
 * *handle for store_unlock()), CRAFT_EBUSY if another process holds it, or
 * an I/O error.  A no-op with a file layer that has no lock.
 */
int store_lock(const char *dir, const struct store_options *o, int *handle,
               char *errmsg, size_t errmsg_len);
void store_unlock(const struct store_options *o, int handle);

struct store;
struct store_req;

/* status is 0 (durable) or a negative CRAFT_E* code. */
typedef void (*store_cb)(struct store_req *req, int status);
typedef void (*store_close_cb)(struct store *s);

struct store_req {
    void *data; /* for the caller */
    /* private */
    store_cb cb;
    struct store_req *next;
};

/*
 * Open (creating if needed, mode 0700) the data directory dir, validate and
 * load it (store_scan), repair it (store_repair) and prepare for writing.
 * Files are created with mode 0600.  Runs synchronously on the calling
 * (loop) thread.  On success *out is set and store_loaded() gives what was
 * loaded.  Errors as store_scan(), plus CRAFT_EINVAL for options that do
 * not fit together and CRAFT_EBUSY when another process has the directory
 * open (store_lock()); errmsg explains.  The store must be closed with
 * store_close() before the loop is closed.
 */
int store_open(const char *dir, const struct store_options *o, uv_loop_t *loop,
               struct store **out, char *errmsg, size_t errmsg_len);

/* The state read at open, for the Raft core's restore.  Valid until
 * store_release_loaded() or store_close(). */
const struct store_scan *store_loaded(const struct store *s);
void store_release_loaded(struct store *s);

/*
 * Persist, in this order: the hard state hs (if not NULL); dropping every
 * entry >= truncate_from (if not 0); then entries[0..n), whose indices must
 * follow on: entries[0].index is truncate_from when that is set, otherwise
 * the next index of the log, or the snapshot index + 1 when the log is all
 * covered by a snapshot (older segments are then removed first).
 *
 * Returns 0 and then calls cb exactly once, on the loop thread, when all of
 * it is durable (status 0) or has failed (status < 0).  Returns an error
 * and never calls cb for: CRAFT_EINVAL (indices do not follow, truncation
 * at or below the snapshot, or an entry whose term is above the hard
 * state's -- hs, else the latest submitted: as Raft requires, a term is
 * persisted no later than the first entry of that term, and start-up
 * refuses a directory where it is not), CRAFT_ETOOBIG (an entry above
 * entry_bytes_max), CRAFT_ELIMIT (pending_bytes_max reached),
 * CRAFT_ESHUTDOWN (closing), or the error that failed the store.  Running
 * out of memory while queueing (CRAFT_ENOMEM) also fails the store: the
 * plan and the queue can no longer be trusted to agree.
 *
 * Failure policy.  When a write, fsync, rename or preallocation fails (EIO,
 * ENOSPC, EDQUOT, EROFS) the request and everything queued behind it fail
 * with that code and the store stays failed: every later call returns the
 * same code.  A failed fsync leaves the page cache in an unknown state
 * (Linux may have dropped the dirty pages), so retrying it could report
 * data durable that is not; the node must stop and be restarted, and
 * start-up then cuts whatever partial record the failure left.
 */
int store_append(struct store *s, struct store_req *req,
                 const struct raft_hard_state *hs, raft_index truncate_from,
                 const struct raft_entry *entries, size_t n, store_cb cb);

/*
 * Write one chunk of a snapshot.  offset 0 starts a new snapshot (dropping
 * any partial one); further chunks must follow on exactly.  With last set,
 * the written size must equal meta->size; the snapshot is then made durable
 * (fsync, rename, directory fsync) and becomes current, and older snapshot
 * files are removed after that.  Callback and errors as store_append();
 * CRAFT_EINVAL also when meta->term is above the latest hard state term
 * submitted.
 */
int store_snapshot_put(struct store *s, struct store_req *req,
                       const struct raft_snapshot_meta *meta, uint64_t offset,
                       const void *data, size_t len, bool last, store_cb cb);

/*
 * Remove log entries <= to, which a current (or queued) snapshot covers:
 * whole segments are deleted, oldest first, so a crash leaves a contiguous
 * log.  If to covers the whole log every segment goes.  Callback and
 * errors as store_append(); CRAFT_EINVAL if to is above the snapshot.
 */
int store_compact(struct store *s, struct store_req *req, raft_index to,
                  store_cb cb);

/*
 * Read up to len bytes of the current durable snapshot's data at offset
 * (synchronously: the file is immutable and usually in the page cache).
 * *meta gets its description.  index 0 names the current snapshot; the
 * index of the snapshot the current one replaced also works, until another
 * replaces it: its descriptor stays open (its file is unlinked, so it
 * still takes its disk space), so that a transfer to a follower pinned to
 * it (raft snapshot.c invariant 4) finishes instead of restarting from the
 * newest one.  Returns the number of bytes read (0 at the end),
 * CRAFT_ENOENT if there is no snapshot, CRAFT_ESTALE if index is neither
 * of those two, or an I/O error.
 */
int64_t store_snapshot_read(struct store *s, raft_index index, uint64_t offset,
                            void *buf, size_t len,
                            struct raft_snapshot_meta *meta);

/* 0, or the error that failed the store. */
int store_error(const struct store *s);

/* Queued writes are carried out first; then cb fires (on the loop thread)
 * and the store is freed.  Later calls return CRAFT_ESHUTDOWN. */
void store_close(struct store *s, store_close_cb cb);

/* Translate a negative errno into a CRAFT_E* code. */
int store__errno_code(int neg_errno);

#endif /* CRAFT_STORAGE_STORE_H */
