/*
 * Start-up: read and validate a data directory (store_scan) and make it
 * ready for writing (store_repair).
 *
 * Rules, in the order they are applied:
 *  1. Metadata: of meta1 and meta2, the valid one with the higher seq wins.
 *     One invalid file is a torn write of a value never reported durable
 *     (the other file still holds the previous value) and is logged; both
 *     invalid is corruption.  (store_open() creates meta2 with seq 0 in a
 *     new directory, so a lone invalid file is a torn initialisation.)
 *  2. Snapshot: the snap-<index>-<term> file with the highest index is
 *     current and must validate completely (it was renamed into place only
 *     after an fsync).  snap.tmp and older snapshots are stale.
 *  3. Closed segments must validate completely, match their names and be
 *     contiguous.  The open segment may end in a torn record: a record that
 *     fails validation with no record written after it.  A record written
 *     after an invalid one means a record that was once synced is damaged,
 *     which is corruption (store.h invariant 3); see written_after() for
 *     why a record-shaped payload never passes for one.
 *  4. The log must start at 1, or at most at the snapshot index + 1.
 *  5. Terms: the hard state's term is at least the snapshot's and the last
 *     entry's (check_terms()); and rule 1 again: with a log or a snapshot
 *     present, no valid metadata at all is corruption.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/store.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/log.h"

void store_options_default(struct store_options *o)
{
    memset(o, 0, sizeof *o);
    o->segment_bytes = STORE_SEGMENT_BYTES_DEFAULT;
    o->entry_bytes_max = STORE_ENTRY_BYTES_MAX_DEFAULT;
    o->pending_bytes_max = STORE_PENDING_BYTES_MAX_DEFAULT;
}

int store__errno_code(int neg_errno)
{
    switch (-neg_errno) {
    case 0:
        return 0;
    case ENOMEM:
        return CRAFT_ENOMEM;
    case ENOSPC:
        return CRAFT_ENOSPC;
    case EDQUOT:
        return CRAFT_EDQUOT;
    case EROFS:
        return CRAFT_EROFS;
    case ENOENT:
        return CRAFT_ENOENT;
    case EEXIST:
        return CRAFT_EEXIST;
    case EINVAL:
        return CRAFT_EINVAL;
    default:
        return CRAFT_EIO;
    }
}

static void set_err(char *errmsg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errmsg, size_t len, const char *fmt, ...)
{
    if (errmsg == NULL || len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, len, fmt, ap);
    va_end(ap);
}

struct scan_ctx {
    struct store_vfs *vfs;
    const char *dir;
    const struct store_options *o;
    struct store_scan *sc;
    char *errmsg;
    size_t errmsg_len;
    /* directory listing */
    bool meta_present[3];
    bool open_present;
    bool tmp_present;
    struct store_seg_info *closed;
    size_t n_closed, cap_closed;
    raft_index snap_index;
    raft_term snap_term;
    bool snap_found;
    unsigned n_snaps;
};

static void path_of(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    CRAFT_ASSERT(n > 0 && (size_t)n < len);
}

static int list_fn(void *arg, const char *name)
{
    struct scan_ctx *c = arg;
    raft_index a, b;
    raft_term t;
    if (strcmp(name, "meta1") == 0 || strcmp(name, "meta2") == 0) {
        c->meta_present[name[4] - '0'] = true;
    } else if (strcmp(name, "open") == 0) {
        c->open_present = true;
    } else if (strcmp(name, "snap.tmp") == 0) {
        c->tmp_present = true;
    } else if (strcmp(name, "LOCK") == 0) {
        /* the directory lock (store_lock()) */
    } else if (store__seg_name_parse(name, &a, &b)) {
        if (c->n_closed == c->cap_closed) {
            size_t cap = c->cap_closed ? 2 * c->cap_closed : 16;
            void *p = realloc(c->closed, cap * sizeof *c->closed);
            if (p == NULL) {
                return CRAFT_ENOMEM;
            }
            c->closed = p;
            c->cap_closed = cap;
        }
        struct store_seg_info *si = &c->closed[c->n_closed++];
        memset(si, 0, sizeof *si);
        snprintf(si->name, sizeof si->name, "%s", name);
        si->first = a;
        si->last = b;
    } else if (store__snap_name_parse(name, &a, &t)) {
        c->n_snaps++;
        if (!c->snap_found || a > c->snap_index ||
            (a == c->snap_index && t > c->snap_term)) {
            c->snap_found = true;
            c->snap_index = a;
            c->snap_term = t;
        }
    } else {
        LOG_WARNF("storage: %s/%s: not a storage file, left alone", c->dir,
                  name);
    }
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct store_seg_info *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Read a whole file into a new buffer (or map it when mapped is not NULL
 * and the file layer can).  *size is set to its length. */
static int read_file(struct scan_ctx *c, const char *name, uint8_t **out,
                     uint64_t *size, bool *mapped)
{
    char path[4096];
    path_of(path, sizeof path, c->dir, name);
    int fd = c->vfs->open(c->vfs, path, O_RDONLY, 0);
    if (fd < 0) {
        set_err(c->errmsg, c->errmsg_len, "%s: open: %s", path, strerror(-fd));
        return store__errno_code(fd);
    }
    uint64_t n = 0;
    int rv = c->vfs->fsize(c->vfs, fd, &n);
    uint8_t *buf = NULL;
    if (rv == 0 && mapped != NULL && c->vfs->map != NULL && n > 0) {
        void *p = NULL;
        rv = c->vfs->map(c->vfs, fd, n, &p);
        if (rv == 0) {
            c->vfs->close(c->vfs, fd);
            *mapped = true;
            *out = p;
            *size = n;
            return 0;
        }
        rv = 0; /* fall back to reading */
    }
    if (rv == 0) {
        buf = malloc(n ? n : 1);
        rv = buf ? 0 : -ENOMEM;
    }
    if (rv == 0) {
        ssize_t got = c->vfs->pread(c->vfs, fd, buf, n, 0);
        rv = got < 0 ? (int)got : ((uint64_t)got == n ? 0 : -EIO);
    }
    c->vfs->close(c->vfs, fd);
    if (rv != 0) {
        free(buf);
        set_err(c->errmsg, c->errmsg_len, "%s: read: %s", path, strerror(-rv));
        return store__errno_code(rv);
    }
    *out = buf;
    *size = n;
    return 0;
}

static int load_meta(struct scan_ctx *c)
{
    struct store_meta m[3];
    bool ok[3] = {false, false, false};
    int n_bad = 0;
    for (int i = 1; i <= 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "meta%d", i);
        if (!c->meta_present[i]) {
            continue;
        }
        uint8_t *buf;
        uint64_t size;
        int rv = read_file(c, name, &buf, &size, NULL);
        if (rv != 0) {
            return rv;
        }
        rv = size >= STORE_META_BYTES ? store__meta_decode(buf, &m[i])
                                      : CRAFT_ECORRUPT;
        free(buf);
        if (rv == CRAFT_EVERSION) {
            set_err(c->errmsg, c->errmsg_len,
                    "%s/%s: offset 8: unsupported format version (expected "
                    "%u)",
                    c->dir, name, STORE_FORMAT_VERSION);
            return rv;
        }
        ok[i] = rv == 0 && (m[i].seq & 1u) == (unsigned)(i & 1);
        if (!ok[i]) {
            n_bad++;
            LOG_WARNF("storage: %s/%s: invalid (a torn write of a value "
                      "never reported durable); using the other file",
                      c->dir, name);
        }
    }
    if (n_bad == 2) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/meta1 and %s/meta2: offset 0: both invalid (expected "
                "at least one valid metadata record with its CRC)",
                c->dir, c->dir);
        return CRAFT_ECORRUPT;
    }
    int best = 0;
    for (int i = 1; i <= 2; i++) {
        if (ok[i] && (best == 0 || m[i].seq > m[best].seq)) {
            best = i;
        }
    }
    /* store_open() writes meta2 before anything else, so a log or a
     * snapshot without valid metadata lost its term and vote: falling back
     * to term 0 could let the node vote twice in a term. */
    if (best == 0 && (c->n_closed > 0 || c->open_present || c->snap_found)) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/meta1, %s/meta2: offset 0: %s (expected a valid "
                "metadata record: the directory holds %s)",
                c->dir, c->dir,
                n_bad > 0 ? "no valid metadata" : "metadata files missing",
                c->snap_found ? "a snapshot" : "log segments");
        return CRAFT_ECORRUPT;
    }
    if (best != 0) {
        c->sc->hs = m[best].hs;
        c->sc->meta_file = best;
        c->sc->meta_seq = m[best].seq;
    }
    return 0;
}

/* The snapshot's data against the CRC in its header, read in bounded
 * chunks: snapshots may be large. */
static int check_snap_data(struct scan_ctx *c, int fd, const char *path,
                           uint32_t want_crc)
{
    enum { CHUNK = 1 << 20 };
    uint64_t size = c->sc->snapshot.size;
    uint8_t *buf = malloc(CHUNK);
    uint32_t crc = 0;
    int rv = buf ? 0 : CRAFT_ENOMEM;
    for (uint64_t off = 0; rv == 0 && off < size;) {
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        ssize_t got =
            c->vfs->pread(c->vfs, fd, buf, n, STORE_SNAP_HDR_BYTES + off);
        if (got < 0 || (size_t)got != n) {
            set_err(c->errmsg, c->errmsg_len, "%s: read: %s", path,
                    got < 0 ? strerror((int)-got) : "short read");
            rv = got < 0 ? store__errno_code((int)got) : CRAFT_EIO;
            break;
        }
        crc = crc32c(crc, buf, n);
        off += n;
    }
    free(buf);
    if (rv == 0 && crc != want_crc) {
        set_err(c->errmsg, c->errmsg_len,
                "%s: offset %u: data CRC %08" PRIx32 " (expected %08" PRIx32
                " from the header)",
                path, STORE_SNAP_HDR_BYTES, crc, want_crc);
        rv = CRAFT_ECORRUPT;
    }
    return rv;
}

static int load_snapshot(struct scan_ctx *c)
{
    if (!c->snap_found) {
        return 0;
    }
    struct store_scan *sc = c->sc;
    char name[STORE_NAME_MAX], path[4096];
    store__snap_name(name, c->snap_index, c->snap_term);
    path_of(path, sizeof path, c->dir, name);
    int fd = c->vfs->open(c->vfs, path, O_RDONLY, 0);
    if (fd < 0) {
        set_err(c->errmsg, c->errmsg_len, "%s: open: %s", path, strerror(-fd));
        return store__errno_code(fd);
    }
    uint8_t hdr[STORE_SNAP_HDR_BYTES];
    uint64_t size = 0;
    int rv = c->vfs->fsize(c->vfs, fd, &size);
    ssize_t got = rv == 0 ? c->vfs->pread(c->vfs, fd, hdr, sizeof hdr, 0) : 0;
    if (rv != 0 || got < 0) {
        rv = rv != 0 ? rv : (int)got;
        set_err(c->errmsg, c->errmsg_len, "%s: read: %s", path, strerror(-rv));
        c->vfs->close(c->vfs, fd);
        return store__errno_code(rv);
    }
    uint32_t want_crc = 0;
    rv = (size_t)got == sizeof hdr
             ? store__snap_hdr_decode(hdr, &sc->snapshot, &want_crc)
             : CRAFT_ECORRUPT;
    if (rv != 0) {
        set_err(c->errmsg, c->errmsg_len,
                "%s: offset 0: %s (expected a snapshot header of %u bytes "
                "with a valid CRC and version %u)",
                path, craft_strerror(rv), STORE_SNAP_HDR_BYTES,
                STORE_FORMAT_VERSION);
        c->vfs->close(c->vfs, fd);
        return rv;
    }
    if (sc->snapshot.index != c->snap_index ||
        sc->snapshot.term != c->snap_term ||
        sc->snapshot.size != size - STORE_SNAP_HDR_BYTES) {
        set_err(c->errmsg, c->errmsg_len,
                "%s: offset 0: header says index %" PRIu64 " term %" PRIu64
                " size %" PRIu64 " (expected the name's index and term and "
                "%" PRIu64 " data bytes)",
                path, sc->snapshot.index, sc->snapshot.term, sc->snapshot.size,
                size - STORE_SNAP_HDR_BYTES);
        c->vfs->close(c->vfs, fd);
        return CRAFT_ECORRUPT;
    }
    rv = check_snap_data(c, fd, path, want_crc);
    c->vfs->close(c->vfs, fd);
    if (rv == 0) {
        sc->has_snapshot = true;
        sc->snapshot_crc = want_crc;
        snprintf(sc->snapshot_name, sizeof sc->snapshot_name, "%s", name);
    }
    return rv;
}

static int push_entry(struct store_scan *sc, const struct raft_entry *e)
{
    if (sc->n_entries == sc->cap_entries) {
        size_t cap = sc->cap_entries ? 2 * sc->cap_entries : 1024;
        void *p = realloc(sc->entries, cap * sizeof *sc->entries);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        sc->entries = p;
        sc->cap_entries = cap;
    }
    sc->entries[sc->n_entries++] = *e;
    return 0;
}

/* Why a record at off is not acceptable, or 0 with *rec_len set.  Checks
 * everything except how first_index fits the log. */
static const char *check_record(const uint8_t *buf, uint64_t size, uint64_t off,
                                uint64_t salt, struct store_rec_hdr *h,
                                uint64_t *rec_len)
{
    if (size - off < STORE_REC_HDR_BYTES) {
        return "a record header";
    }
    if (store__rec_hdr_decode(buf + off, salt, off, h) != 0) {
        return "a record header with its magic and CRC";
    }
    /* The fields are covered by the header CRC; these bounds only keep the
     * arithmetic below in range.  entry_bytes_max limits new appends, not
     * what may be read: a directory stays readable with a smaller limit. */
    if (h->n_entries > STORE_RECORD_ENTRIES_MAX || h->data_len > size ||
        h->flags != 0) {
        return "a record within the format's limits";
    }
    uint64_t len = store__rec_bytes(h->n_entries, h->data_len);
    if (len > size - off) {
        return "a record that fits in the file";
    }
    const uint8_t *d = buf + off + STORE_REC_HDR_BYTES;
    if (crc32c(0, d, (size_t)h->n_entries * STORE_DESC_BYTES) != h->body_crc) {
        return "entry descriptors matching the body CRC";
    }
    const uint8_t *p = d + (size_t)h->n_entries * STORE_DESC_BYTES;
    uint64_t total = 0;
    for (uint32_t i = 0; i < h->n_entries; i++) {
        struct store_desc ds;
        store__desc_decode(d + (size_t)i * STORE_DESC_BYTES, &ds);
        if (total + ds.len > h->data_len) {
            return "entry lengths adding up to the record's data length";
        }
        if (crc32c(0, p + total, ds.len) != ds.crc) {
            return "entry payloads matching their CRCs";
        }
        total += ds.len;
    }
    if (total != h->data_len) {
        return "entry lengths adding up to the record's data length";
    }
    for (uint64_t i = total; i < ((total + 7u) & ~(uint64_t)7u); i++) {
        if (p[i] != 0) {
            return "zero padding after the entry payloads";
        }
    }
    *rec_len = len;
    return NULL;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
    /* Each byte equals the next and the first is zero; memcmp runs at
     * memory speed over the preallocated tail of the open segment. */
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, (size_t)n - 1) == 0);
}

/* Take the entries of a checked record into the log.  next is the index
 * the log expects; seg_first the segment's first index (0: none yet). */
static int take_record(struct scan_ctx *c, struct store_seg_info *si,
                       const uint8_t *buf, uint64_t off,
                       const struct store_rec_hdr *h)
{
    struct store_scan *sc = c->sc;
    CRAFT_ASSERT(h->n_entries <= STORE_RECORD_ENTRIES_MAX);
    bool empty = si->last < si->first;
    raft_index next = empty ? si->first : si->last + 1;
    if (!empty && h->first_index < next) {
        /* A truncation record: drop entries >= first_index first. */
        uint64_t drop = next - h->first_index;
        CRAFT_ASSERT(drop <= sc->n_entries);
        sc->n_entries -= drop;
        si->last = h->first_index - 1;
    }
    const uint8_t *d = buf + off + STORE_REC_HDR_BYTES;
    const uint8_t *p = d + (size_t)h->n_entries * STORE_DESC_BYTES;
    for (uint32_t i = 0; i < h->n_entries; i++) {
        struct store_desc ds;
        store__desc_decode(d + (size_t)i * STORE_DESC_BYTES, &ds);
        struct raft_entry e = {.term = ds.term,
                               .index = h->first_index + i,
                               .type = ds.type,
                               .buf = {(void *)p, ds.len}};
        int rv = push_entry(sc, &e);
        if (rv != 0) {
            return rv;
        }
        p += ds.len;
    }
    si->last = h->first_index + h->n_entries - 1;
    si->n_records++;
    CRAFT_DASSERT(sc->n_entries == 0 ||
                  sc->entries[sc->n_entries - 1].index == si->last);
    return 0;
}

/* How a record's first_index must relate to the segment: the first record
 * sets the segment's start (which must be want_first when known); later
 * ones continue at next or truncate back, never below the segment start. */
static bool index_fits(const struct store_seg_info *si, bool started,
                       raft_index want_first, raft_index first_index)
{
    if (!started) {
        return want_first == 0 || first_index == want_first;
    }
    raft_index next = si->last + 1;
    return first_index >= si->first && first_index <= next;
}

/* Take the records of a segment from off on, until the end, the zeroed
 * preallocated rest (open segment), or a record that fails its checks
 * (*why says what was expected there).  *off ends after the last record
 * taken.  A checksummed record at the wrong index is corruption at once. */
static int take_records(struct scan_ctx *c, struct store_seg_info *si,
                        const uint8_t *buf, uint64_t size,
                        raft_index want_first, uint64_t *off, const char **why)
{
    bool started = false;
    while (*why == NULL && *off < size) {
        struct store_rec_hdr h;
        uint64_t len = 0;
        if (si->open && size - *off >= STORE_REC_HDR_BYTES &&
            all_zero(buf + *off, STORE_REC_HDR_BYTES) &&
            all_zero(buf + *off, size - *off)) {
            break; /* the preallocated, never written rest */
        }
        *why = check_record(buf, size, *off, si->salt, &h, &len);
        if (*why != NULL) {
            break;
        }
        if (!index_fits(si, started, want_first, h.first_index)) {
            /* A whole, checksummed record in the wrong place is never a
             * torn write (e.g. a segment before it went missing). */
            set_err(c->errmsg, c->errmsg_len,
                    "%s/%s: offset %" PRIu64 ": record for index %" PRIu64
                    " (expected index %" PRIu64 ")",
                    c->dir, si->name, *off, h.first_index,
                    started ? si->last + 1 : want_first);
            return CRAFT_ECORRUPT;
        }
        if (!started) {
            si->first = h.first_index;
            si->last = h.first_index - 1;
            started = true;
        }
        int rv = take_record(c, si, buf, *off, &h);
        if (rv != 0) {
            return rv;
        }
        *off += len;
    }
    CRAFT_ASSERT(*off <= size || *why != NULL);
    return 0;
}

/*
 * Is there, after the damaged data at off in the open segment, a record that
 * was written after it?  If so the damaged data was once synced (store.h
 * invariant 3) and is corruption, not a torn write.  A candidate must
 * validate completely at its own offset with this file's salt -- so a copy
 * of a record inside an entry payload never counts (format.h) -- and its
 * first_index must fit the log: it continues or truncates where the
 * damaged record would have left the log, with no more entries in between
 * than the damaged bytes could hold.  When the damaged record's header is
 * valid, its declared length is skipped first: its payload is client data.
 */
static bool written_after(const struct store_seg_info *si,
                          raft_index want_first, const uint8_t *buf,
                          uint64_t size, uint64_t off, uint64_t *found)
{
    bool started = si->n_records > 0;
    /* Candidates start at lo or later and at most at next plus what fits
     * in the gap [from, candidate); next 0: unknown (a new log). */
    raft_index lo = started ? si->first : (want_first ? want_first : 1);
    raft_index next = started ? si->last + 1 : want_first;
    uint64_t from = off + 8;
    struct store_rec_hdr h;
    if (size - off >= STORE_REC_HDR_BYTES &&
        store__rec_hdr_decode(buf + off, si->salt, off, &h) == 0 &&
        h.n_entries <= STORE_RECORD_ENTRIES_MAX && h.data_len <= size) {
        uint64_t len = store__rec_bytes(h.n_entries, h.data_len);
        from = len < size - off ? off + len : size;
        if (!started) {
            lo = h.first_index;
        }
        next = h.first_index + h.n_entries;
    }
    for (uint64_t p = (from + 7) & ~(uint64_t)7;
         p + STORE_REC_HDR_BYTES <= size; p += 8) {
        uint64_t len;
        if (check_record(buf, size, p, si->salt, &h, &len) != NULL) {
            continue;
        }
        uint64_t room = (p - off) / STORE_DESC_BYTES;
        if (h.first_index >= lo &&
            (next == 0 || h.first_index <= next + room)) {
            *found = p;
            return true;
        }
    }
    return false;
}

/* The open segment stopped at damaged data: a torn tail, or corruption if
 * a record written after it survives (written_after()).  With a damaged
 * segment header the salt is unknown, but the header was synced before any
 * record was written (store.c op_create), so only an all-zero rest is a
 * torn creation. */
static int classify_tail(struct scan_ctx *c, struct store_seg_info *si,
                         raft_index want_first, const uint8_t *buf,
                         uint64_t size, uint64_t off, const char *why)
{
    CRAFT_ASSERT(si->open);
    CRAFT_ASSERT(why != NULL);
    uint64_t found;
    if (si->no_header) {
        uint64_t rest = size > STORE_SEG_HDR_BYTES ? STORE_SEG_HDR_BYTES : size;
        if (!all_zero(buf + rest, size - rest)) {
            set_err(c->errmsg, c->errmsg_len,
                    "%s/%s: offset 0: damaged segment header (expected %s) "
                    "followed by data: not a torn write",
                    c->dir, si->name, why);
            return CRAFT_ECORRUPT;
        }
    } else if (written_after(si, want_first, buf, size, off, &found)) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/%s: offset %" PRIu64 ": damaged data (expected %s) "
                "followed by a valid record at offset %" PRIu64
                ": not a torn write",
                c->dir, si->name, off, why, found);
        return CRAFT_ECORRUPT;
    }
    uint64_t end = size;
    while (end > off && buf[end - 1] == 0) {
        end--;
    }
    si->torn = end > off;
    si->torn_bytes = end - off;
    c->sc->torn = c->sc->torn || si->torn;
    if (si->torn) {
        LOG_WARNF("storage: %s/%s: torn tail of %" PRIu64
                  " bytes at offset %" PRIu64 " (expected %s)",
                  c->dir, si->name, si->torn_bytes, off, why);
    }
    return 0;
}

static int load_segment(struct scan_ctx *c, struct store_seg_info *si,
                        raft_index want_first)
{
    struct store_scan *sc = c->sc;
    uint8_t *buf;
    uint64_t size;
    bool mapped = false;
    int rv = read_file(c, si->name, &buf, &size, &mapped);
    if (rv != 0) {
        return rv;
    }
    sc->bufs[sc->n_bufs] = buf;
    sc->buf_sizes[sc->n_bufs] = size;
    sc->buf_mapped[sc->n_bufs] = mapped;
    sc->n_bufs++;
    si->file_bytes = size;
    size_t base = sc->n_entries;
    raft_index name_first = si->first, name_last = si->last;
    /* Empty until a record says where it starts (last = first - 1). */
    si->first = want_first ? want_first : 1;
    si->last = si->first - 1;
    uint64_t off = STORE_SEG_HDR_BYTES;
    const char *why = NULL;
    int hv = size >= STORE_SEG_HDR_BYTES ? store__seg_hdr_decode(buf, &si->salt)
                                         : CRAFT_ECORRUPT;
    if (hv == CRAFT_EVERSION) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/%s: offset 8: unsupported format version (expected %u)",
                c->dir, si->name, STORE_FORMAT_VERSION);
        return hv;
    }
    if (hv != 0) {
        why = "a segment header with its magic and CRC";
        off = 0;
    }
    rv = take_records(c, si, buf, size, want_first, &off, &why);
    si->end = off;
    if (rv == 0 && why != NULL && si->open) {
        si->no_header = hv != 0;
        rv = classify_tail(c, si, want_first, buf, size, off, why);
        why = NULL;
    }
    if (rv != 0) {
        return rv;
    }
    if (why != NULL) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/%s: offset %" PRIu64 ": damaged data (expected %s)", c->dir,
                si->name, off, why);
        return CRAFT_ECORRUPT;
    }
    if (!si->open && (si->first != name_first || si->last != name_last)) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/%s: offset %" PRIu64 ": holds entries %" PRIu64 "..%" PRIu64
                " (expected %" PRIu64 "..%" PRIu64 " as named)",
                c->dir, si->name, off, si->first, si->last, name_first,
                name_last);
        return CRAFT_ECORRUPT;
    }
    if (sc->n_entries > base) {
        si->first_term = sc->entries[base].term;
        si->last_term = sc->entries[sc->n_entries - 1].term;
    }
    return 0;
}

static int load_segments(struct scan_ctx *c)
{
    struct store_scan *sc = c->sc;
    size_t n = c->n_closed + (c->open_present ? 1 : 0);
    if (c->n_closed > 0) {
        qsort(c->closed, c->n_closed, sizeof *c->closed, cmp_seg);
    }
    sc->segs = calloc(n ? n : 1, sizeof *sc->segs);
    sc->bufs = calloc(n ? n : 1, sizeof *sc->bufs);
    sc->buf_sizes = calloc(n ? n : 1, sizeof *sc->buf_sizes);
    sc->buf_mapped = calloc(n ? n : 1, sizeof *sc->buf_mapped);
    sc->vfs = c->vfs;
    if (sc->segs == NULL || sc->bufs == NULL || sc->buf_sizes == NULL ||
        sc->buf_mapped == NULL) {
        return CRAFT_ENOMEM;
    }
    if (c->n_closed) {
        memcpy(sc->segs, c->closed, c->n_closed * sizeof *c->closed);
    }
    if (c->open_present) {
        struct store_seg_info *si = &sc->segs[c->n_closed];
        snprintf(si->name, sizeof si->name, "open");
        si->open = true;
    }
    sc->n_segs = n;
    raft_index next = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_seg_info *si = &sc->segs[i];
        if (!si->open && next != 0 && si->first != next) {
            set_err(c->errmsg, c->errmsg_len,
                    "%s/%s: offset 0: starts at index %" PRIu64
                    " (expected %" PRIu64 ", right after %s)",
                    c->dir, si->name, si->first, next, sc->segs[i - 1].name);
            return CRAFT_ECORRUPT;
        }
        int rv = load_segment(c, si, next);
        if (rv != 0) {
            return rv;
        }
        if (si->last >= si->first) {
            next = si->last + 1;
        } else if (i + 1 < n) {
            /* Only the open segment (the last one) may be empty. */
            set_err(c->errmsg, c->errmsg_len, "%s/%s: empty closed segment",
                    c->dir, si->name);
            return CRAFT_ECORRUPT;
        }
    }
    if (sc->n_entries > 0) {
        sc->log_first = sc->entries[0].index;
        sc->log_last = sc->entries[sc->n_entries - 1].index;
    }
    return 0;
}

/* Rule 5: the term never went backwards.  Entries and snapshots of a term
 * are written only after that term is durable in the metadata (store.h,
 * store_append), so a hard state behind them is damage or a lost write. */
static int check_terms(struct scan_ctx *c)
{
    struct store_scan *sc = c->sc;
    raft_term term = sc->hs.term;
    if (sc->has_snapshot && sc->snapshot.term > term) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/meta%d: offset 24: term %" PRIu64 " (expected at least "
                "the term %" PRIu64 " of %s/%s: the term went backwards)",
                c->dir, sc->meta_file, term, sc->snapshot.term, c->dir,
                sc->snapshot_name);
        return CRAFT_ECORRUPT;
    }
    /* Nor within the log, nor from the snapshot to the log after it (the
     * Log Matching property rests on it; found by fuzz_storage). */
    for (size_t i = 0; i < sc->n_all_entries; i++) {
        const struct raft_entry *e = &sc->all_entries[i];
        raft_term before = i > 0 ? sc->all_entries[i - 1].term : 0;
        const char *what = "entry";
        if (sc->has_snapshot && e->index == sc->snapshot.index + 1) {
            before = sc->snapshot.term;
            what = "the snapshot at";
        }
        if (e->term < before) {
            set_err(c->errmsg, c->errmsg_len,
                    "%s: term %" PRIu64 " of log entry %" PRIu64
                    " (expected at least the term %" PRIu64 " of %s %" PRIu64
                    ": the term went backwards)",
                    c->dir, e->term, e->index, before, what, e->index - 1);
            return CRAFT_ECORRUPT;
        }
    }
    if (sc->n_all_entries > 0) {
        const struct raft_entry *last = &sc->all_entries[sc->n_all_entries - 1];
        if (last->term > term) {
            set_err(c->errmsg, c->errmsg_len,
                    "%s/meta%d: offset 24: term %" PRIu64
                    " (expected at least the term %" PRIu64
                    " of log entry %" PRIu64 ": the term went backwards)",
                    c->dir, sc->meta_file, term, last->term, last->index);
            return CRAFT_ECORRUPT;
        }
    }
    return 0;
}

/* Rule 4 and dropping the entries the snapshot covers. */
static int join_snapshot(struct scan_ctx *c)
{
    struct store_scan *sc = c->sc;
    raft_index snap = sc->has_snapshot ? sc->snapshot.index : 0;
    if (sc->n_entries > 0 && sc->log_first > snap + 1) {
        set_err(c->errmsg, c->errmsg_len,
                "%s/%s: offset %u: log starts at index %" PRIu64
                " (expected at most %" PRIu64 ", right after the %s)",
                c->dir, sc->segs[0].name, STORE_SEG_HDR_BYTES, sc->log_first,
                snap + 1, sc->has_snapshot ? "snapshot" : "empty log");
        return CRAFT_ECORRUPT;
    }
    size_t skip = 0;
    while (skip < sc->n_entries && sc->entries[skip].index <= snap) {
        skip++;
    }
    sc->all_entries = sc->entries;
    sc->n_all_entries = sc->n_entries;
    if (skip > 0) { /* entries may be NULL when the log is empty */
        sc->entries += skip;
    }
    sc->n_entries -= skip;
    return 0;
}

int store_scan(const char *dir, const struct store_options *o,
               struct store_scan *sc, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(dir != NULL);
    CRAFT_ASSERT(sc != NULL);
    memset(sc, 0, sizeof *sc);
    struct scan_ctx c = {.vfs = o->vfs ? o->vfs : store_vfs_posix(),
                         .dir = dir,
                         .o = o,
                         .sc = sc,
                         .errmsg = errmsg,
                         .errmsg_len = errmsg_len};
    set_err(errmsg, errmsg_len, "ok");
    int rv = c.vfs->list(c.vfs, dir, list_fn, &c);
    if (rv < 0 && rv > -4096) {
        set_err(errmsg, errmsg_len, "%s: %s", dir, strerror(-rv));
        rv = store__errno_code(rv);
    }
    if (rv == 0) {
        rv = load_meta(&c);
    }
    if (rv == 0) {
        rv = load_snapshot(&c);
    }
    if (rv == 0) {
        rv = load_segments(&c);
    }
    if (rv == 0) {
        rv = join_snapshot(&c);
    }
    if (rv == 0) {
        rv = check_terms(&c);
    }
    sc->stale_files = c.tmp_present || c.n_snaps > 1;
    free(c.closed);
    if (rv != 0) {
        if (rv == CRAFT_ENOMEM) {
            set_err(errmsg, errmsg_len, "%s: out of memory", dir);
        }
        store_scan_close(sc);
    }
    return rv;
}

void store_scan_close(struct store_scan *sc)
{
    for (size_t i = 0; i < sc->n_bufs; i++) {
        if (sc->buf_mapped[i]) {
            sc->vfs->unmap(sc->vfs, sc->bufs[i], sc->buf_sizes[i]);
        } else {
            free(sc->bufs[i]);
        }
    }
    free(sc->bufs);
    free(sc->buf_sizes);
    free(sc->buf_mapped);
    free(sc->segs);
    free(sc->all_entries != NULL ? sc->all_entries : sc->entries);
    memset(sc, 0, sizeof *sc);
}

static int stale_fn(void *arg, const char *name)
{
    struct scan_ctx *c = arg;
    raft_index i;
    raft_term t;
    bool stale = strcmp(name, "snap.tmp") == 0 ||
                 (store__snap_name_parse(name, &i, &t) &&
                  strcmp(name, c->sc->snapshot_name) != 0);
    if (!stale) {
        return 0;
    }
    char path[4096];
    path_of(path, sizeof path, c->dir, name);
    int rv = c->vfs->unlink(c->vfs, path);
    if (rv != 0) {
        set_err(c->errmsg, c->errmsg_len, "%s: unlink: %s", path,
                strerror(-rv));
        return rv;
    }
    LOG_INFOF("storage: removed stale %s", path);
    return 0;
}

/* Remove snap.tmp and every snapshot other than the current one. */
static int remove_stale(struct scan_ctx *c)
{
    int rv = c->vfs->list(c->vfs, c->dir, stale_fn, c);
    return rv == 0 ? c->vfs->fsync_dir(c->vfs, c->dir) : rv;
}

/* Cut the open segment back to its last whole record and make the cut
 * durable before anything new is written after it. */
static int cut_open(struct scan_ctx *c, struct store_seg_info *si)
{
    char path[4096];
    path_of(path, sizeof path, c->dir, si->name);
    int fd = c->vfs->open(c->vfs, path, O_RDWR, 0600);
    if (fd < 0) {
        set_err(c->errmsg, c->errmsg_len, "%s: open: %s", path, strerror(-fd));
        return fd;
    }
    int rv = 0;
    if (si->no_header) {
        uint8_t hdr[STORE_SEG_HDR_BYTES];
        si->salt = store__salt_new();
        store__seg_hdr_encode(si->salt, hdr);
        struct iovec iov = {hdr, sizeof hdr};
        rv = c->vfs->ftruncate(c->vfs, fd, 0);
        rv = rv ? rv : c->vfs->pwritev(c->vfs, fd, &iov, 1, 0);
        si->end = STORE_SEG_HDR_BYTES;
    } else {
        rv = c->vfs->ftruncate(c->vfs, fd, si->end);
    }
    rv = rv ? rv : c->vfs->fallocate(c->vfs, fd, c->o->segment_bytes);
    rv = rv ? rv : c->vfs->fsync(c->vfs, fd);
    c->vfs->close(c->vfs, fd);
    if (rv != 0) {
        set_err(c->errmsg, c->errmsg_len, "%s: cutting the torn tail: %s", path,
                strerror(-rv));
        return rv;
    }
    if (si->torn) {
        LOG_WARNF("storage: %s: cut a torn tail of %" PRIu64
                  " bytes at offset %" PRIu64 " (entries up to %" PRIu64
                  " kept)",
                  path, si->torn_bytes, si->end, si->last);
    }
    si->torn = false;
    si->no_header = false;
    si->torn_bytes = 0;
    si->file_bytes =
        c->o->segment_bytes > si->end ? c->o->segment_bytes : si->end;
    return 0;
}

int store_lock(const char *dir, const struct store_options *o, int *handle,
               char *errmsg, size_t errmsg_len)
{
    struct store_vfs *vfs = o->vfs ? o->vfs : store_vfs_posix();
    *handle = -1;
    if (vfs->lock == NULL) {
        return 0;
    }
    int rv = vfs->lock(vfs, dir, handle);
    if (rv == -EWOULDBLOCK) {
        set_err(errmsg, errmsg_len,
                "%s: in use by another process (it holds %s/LOCK)", dir, dir);
        return CRAFT_EBUSY;
    }
    if (rv != 0) {
        set_err(errmsg, errmsg_len, "%s/LOCK: %s", dir, strerror(-rv));
        return store__errno_code(rv);
    }
    return 0;
}

void store_unlock(const struct store_options *o, int handle)
{
    struct store_vfs *vfs = o->vfs ? o->vfs : store_vfs_posix();
    if (handle >= 0 && vfs->unlock != NULL) {
        vfs->unlock(vfs, handle);
    }
}

int store_repair(const char *dir, const struct store_options *o,
                 struct store_scan *sc, char *errmsg, size_t errmsg_len)
{
    struct scan_ctx c = {.vfs = o->vfs ? o->vfs : store_vfs_posix(),
                         .dir = dir,
                         .o = o,
                         .sc = sc,
                         .errmsg = errmsg,
                         .errmsg_len = errmsg_len};
    int rv = 0;
    if (sc->stale_files) {
        rv = remove_stale(&c);
        sc->stale_files = rv != 0;
    }
    for (size_t i = 0; rv == 0 && i < sc->n_segs; i++) {
        struct store_seg_info *si = &sc->segs[i];
        if (si->open && (si->torn || si->no_header)) {
            rv = cut_open(&c, si);
        }
    }
    sc->torn = rv != 0 && sc->torn;
    return rv < 0 ? store__errno_code(rv) : rv;
}
