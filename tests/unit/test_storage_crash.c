/*
 * Crash-consistency tests for src/storage, through the crash-simulating file
 * layer (storage_memfs.h).
 *
 * A run is a seeded random sequence of requests -- appends, hard-state
 * changes, truncations, chunked snapshots, compactions, snapshots beyond the
 * log followed by appends -- submitted in groups (so that group commit
 * merges them) and drained.  The same seed replays the same file
 * operations, so a crash can be placed before any numbered operation N:
 * the run is repeated with a capture armed at N, and the captured image is
 * crashed in each mode (lose unsynced writes, tear the last write at every
 * byte offset, keep a random subset of its sectors, keep the directory
 * changes but not the unsynced data) and reopened.  Checks:
 *
 *  1. every request acknowledged before N is present: entries identical,
 *     hard state at least as new, snapshot at least as new;
 *  2. every entry found was submitted at that index with that term and
 *     payload; the hard state and snapshot found were submitted;
 *  3. the reopened store accepts and keeps new appends.
 *
 * Fault runs make operation N fail with EIO or ENOSPC instead: the error
 * must reach a callback, later calls must fail, and reopening (with and
 * without a crash) must pass the same checks.  Bit flips in closed segments
 * and snapshots must be reported as corruption naming the file.
 *
 * Every failure of a check prints its seed; `test_storage_crash --seed S`
 * replays that one.  A whole run replays with its seed base:
 * `CRAFT_SEED=B test_storage_crash --seeds N` (both are printed first).
 */
#include "storage_harness.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define IDX_MAX 8192
#define REQS_MAX 2048
#define ENTRIES_PER_REQ_MAX 8
#define PAYLOAD_MAX 300

enum rtype { R_APPEND = 1, R_SNAP, R_COMPACT };

struct rrec {
    struct treq t;
    enum rtype type;
    bool accepted;
    bool has_hs;
    struct raft_hard_state hs;
    raft_index truncate_from;
    raft_index first;
    uint32_t n;
    raft_term terms[ENTRIES_PER_REQ_MAX];
    uint32_t vers[ENTRIES_PER_REQ_MAX];
    struct raft_snapshot_meta meta;
    uint64_t snap_off;
    size_t snap_len;
    bool snap_last;
    raft_index compact_to;
};

struct model {
    raft_index last, snap;
    raft_term snap_term;
    bool has_snap;
    struct raft_snapshot_meta snap_meta;
    struct raft_hard_state hs;
    raft_term term_at[IDX_MAX];
    uint32_t ver_at[IDX_MAX];
};

struct run {
    uint64_t seed;
    struct rrec reqs[REQS_MAX];
    size_t n_reqs;
    struct model m; /* everything submitted */
    /* history: every (term, version) ever submitted at each index */
    raft_term *hist[IDX_MAX];
    uint32_t n_hist[IDX_MAX];
    uint64_t total_ops;
    int fail_code;    /* fault runs: the code the store failed with */
    bool open_failed; /* fault runs: store_open() itself failed */
};

static struct run R;
static uint8_t pbuf[PAYLOAD_MAX + 1];
static uint8_t snapbuf[4096];

static uint8_t snap_byte(raft_index index, raft_term term, uint64_t i)
{
    return (uint8_t)((i * 131 + index * 7 + term * 3) ^ (i >> 8));
}

static void apply(struct model *m, const struct rrec *r)
{
    switch (r->type) {
    case R_APPEND:
        if (r->has_hs) {
            m->hs = r->hs;
        }
        if (r->truncate_from != 0) {
            m->last = r->truncate_from - 1;
        }
        for (uint32_t i = 0; i < r->n; i++) {
            m->term_at[r->first + i] = r->terms[i];
            m->ver_at[r->first + i] = r->vers[i];
        }
        if (r->n > 0) {
            m->last = r->first + r->n - 1;
        }
        break;
    case R_SNAP:
        if (r->snap_last) {
            m->snap = r->meta.index;
            m->snap_term = r->meta.term;
            m->has_snap = true;
            m->snap_meta = r->meta;
            if (m->last < m->snap) {
                m->last = m->snap;
            }
        }
        break;
    case R_COMPACT:
        break;
    }
}

/* ---- one run ---------------------------------------------------------- */

static struct rrec *new_req(enum rtype type)
{
    assert_true(R.n_reqs < REQS_MAX);
    struct rrec *r = &R.reqs[R.n_reqs++];
    memset(r, 0, sizeof *r);
    r->type = type;
    return r;
}

static raft_index next_of(const struct model *m)
{
    return (m->last > m->snap ? m->last : m->snap) + 1;
}

static void submit(struct henv *e, struct rrec *r)
{
    r->t.fs = e->fs;
    int rv = 0;
    if (r->type == R_APPEND) {
        struct raft_entry es[ENTRIES_PER_REQ_MAX];
        static uint8_t data[ENTRIES_PER_REQ_MAX][PAYLOAD_MAX + 1];
        for (uint32_t i = 0; i < r->n; i++) {
            es[i] = (struct raft_entry){.index = r->first + i,
                                        .term = r->terms[i],
                                        .type = RAFT_ENTRY_COMMAND};
            es[i].buf.base = data[i];
            es[i].buf.len = payload(r->first + i, r->terms[i], r->vers[i],
                                    PAYLOAD_MAX, data[i]);
        }
        rv = store_append(e->s, &r->t.req, r->has_hs ? &r->hs : NULL,
                          r->truncate_from, es, r->n, treq_cb);
    } else if (r->type == R_SNAP) {
        for (size_t i = 0; i < r->snap_len; i++) {
            snapbuf[i] =
                snap_byte(r->meta.index, r->meta.term, r->snap_off + i);
        }
        rv = store_snapshot_put(e->s, &r->t.req, &r->meta, r->snap_off, snapbuf,
                                r->snap_len, r->snap_last, treq_cb);
    } else {
        rv = store_compact(e->s, &r->t.req, r->compact_to, treq_cb);
    }
    if (rv == 0) {
        r->accepted = true;
        apply(&R.m, r);
        if (r->type == R_APPEND) {
            for (uint32_t i = 0; i < r->n; i++) {
                raft_index x = r->first + i;
                R.hist[x] =
                    realloc(R.hist[x], (R.n_hist[x] + 1) * sizeof *R.hist[x]);
                R.hist[x][R.n_hist[x]++] = r->terms[i];
            }
        }
    } else {
        /* Only a failed store refuses a well-formed request here. */
        assert_int_equal(rv, store_error(e->s));
        R.n_reqs--;
    }
}

static void gen_append(struct henv *e, struct rng *g, raft_index at,
                       raft_index truncate_from, uint32_t n, raft_term term,
                       bool with_hs)
{
    struct rrec *r = new_req(R_APPEND);
    r->truncate_from = truncate_from;
    r->first = at;
    r->n = n;
    for (uint32_t i = 0; i < n; i++) {
        r->terms[i] = term;
        r->vers[i] = R.n_hist[at + i];
    }
    if (with_hs) {
        r->has_hs = true;
        r->hs = R.m.hs;
        /* As in Raft: the term only grows, a vote is cast once a term. */
        if (rng_chance(g, 500) || r->hs.term < term || r->hs.vote != 0) {
            r->hs.term = r->hs.term < term ? term : r->hs.term + 1;
            r->hs.vote = 0;
        } else {
            r->hs.vote = rng_range(g, 1, 4);
        }
    }
    assert_true(at + n < IDX_MAX);
    submit(e, r);
}

static void gen_snapshot(struct henv *e, struct rng *g, raft_index index,
                         raft_term term)
{
    size_t size = (size_t)rng_range(g, 0, 3000);
    struct raft_snapshot_meta meta = {
        .index = index, .term = term, .size = size};
    meta.config.n = (unsigned)rng_range(g, 1, 6);
    for (unsigned i = 0; i < meta.config.n; i++) {
        meta.config.ids[i] = i + 1;
    }
    uint64_t off = 0;
    do {
        size_t n = (size_t)rng_range(g, 1, 1500);
        if (n > size - off) {
            n = size - off;
        }
        struct rrec *r = new_req(R_SNAP);
        r->meta = meta;
        r->snap_off = off;
        r->snap_len = n;
        r->snap_last = off + n == size;
        submit(e, r);
        off += n;
    } while (off < size);
}

static void gen_step(struct henv *e, struct rng *g)
{
    struct model *m = &R.m;
    raft_term term = m->hs.term ? m->hs.term : 1;
    unsigned p = (unsigned)rng_range(g, 0, 100);
    raft_index next = next_of(m);
    if (next + 16 >= IDX_MAX) {
        p = 99; /* only hard-state changes once the index space is used */
    }
    if (p < 45) {
        gen_append(e, g, next, 0, (uint32_t)rng_range(g, 1, 9), term,
                   rng_chance(g, 200));
    } else if (p < 60 && m->last > m->snap) {
        /* Half of the truncations reach far back, into closed segments. */
        raft_index lo = m->snap + 1;
        raft_index t = rng_chance(g, 500)
                           ? rng_range(g, lo, lo + (m->last + 1 - lo) / 2 + 1)
                           : rng_range(g, lo, m->last + 1);
        gen_append(e, g, t, t, (uint32_t)rng_range(g, 0, 4), term + 1, true);
    } else if (p < 72 && m->last > m->snap) {
        raft_index x = rng_range(g, m->snap + 1, m->last + 1);
        gen_snapshot(e, g, x, m->term_at[x]);
        if (rng_chance(g, 600)) {
            struct rrec *r = new_req(R_COMPACT);
            r->compact_to = rng_range(g, x > 20 ? x - 20 : 0, x + 1);
            submit(e, r);
        }
    } else if (p < 77) {
        raft_index x = next + rng_range(g, 0, 5);
        gen_snapshot(e, g, x, term);
        gen_append(e, g, x + 1, 0, (uint32_t)rng_range(g, 1, 4), term, false);
    } else {
        gen_append(e, g, next, 0, 0, term, true);
    }
}

static void drain(struct henv *e, size_t from)
{
    henv_run(e);
    for (size_t i = from; i < R.n_reqs; i++) {
        assert_int_equal(R.reqs[i].t.done, 1);
    }
}

/* Run seed; arm a capture or a fault at operation n (0: neither). */
static void run_seed(struct henv *e, uint64_t seed, uint64_t capture_n,
                     uint64_t fail_n, int fail_err)
{
    for (size_t i = 0; i < IDX_MAX; i++) {
        free(R.hist[i]);
    }
    memset(&R, 0, sizeof R);
    R.seed = seed;
    struct rng g;
    rng_init(&g, seed);
    henv_init(e, rng_chance(&g, 500) ? 4096 : 16384);
    if (capture_n) {
        memfs_capture_at(e->fs, capture_n);
    }
    if (fail_n) {
        memfs_fail_at(e->fs, fail_n, fail_err);
    }
    int rv = henv_open(e);
    if (rv != 0 && fail_n != 0) {
        /* The fault hit start-up itself: open reports it. */
        R.fail_code = rv;
        R.open_failed = true;
        return;
    }
    assert_int_equal(rv, 0);
    unsigned steps = (unsigned)rng_range(&g, 20, 60);
    for (unsigned s = 0; s < steps && store_error(e->s) == 0; s++) {
        size_t from = R.n_reqs;
        unsigned group = (unsigned)rng_range(&g, 1, 5);
        for (unsigned k = 0; k < group && store_error(e->s) == 0; k++) {
            gen_step(e, &g);
        }
        drain(e, from);
    }
    R.fail_code = store_error(e->s);
    R.total_ops = memfs_ops(e->fs);
    henv_close_store(e);
}

/* ---- checking a reopened store ------------------------------------- */

static int hs_cmp(struct raft_hard_state a, struct raft_hard_state b)
{
    if (a.term != b.term) {
        return a.term < b.term ? -1 : 1;
    }
    return a.vote < b.vote ? -1 : a.vote > b.vote;
}

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            print_error("seed %" PRIu64 " %s: ", R.seed, where);               \
            print_error(__VA_ARGS__);                                          \
            print_error("\n");                                                 \
            fail();                                                            \
        }                                                                      \
    } while (0)

static bool was_submitted(const struct raft_entry *en)
{
    raft_index x = en->index;
    if (x >= IDX_MAX) {
        return false;
    }
    for (uint32_t v = 0; v < R.n_hist[x]; v++) {
        if (R.hist[x][v] != en->term) {
            continue;
        }
        size_t len = payload(x, en->term, v, PAYLOAD_MAX, pbuf);
        if (len == en->buf.len && memcmp(pbuf, en->buf.base, len) == 0) {
            return true;
        }
    }
    return false;
}

/* Check the store opened on fs against the requests acknowledged before
 * operation n (all of them when n is 0), then append to it. */
static void check_reopen(struct henv *e, uint64_t n, const char *where)
{
    int rv = henv_open(e);
    CHECK(rv == 0, "open failed: %s: %s", craft_errname(rv), e->err);
    const struct store_scan *sc = store_loaded(e->s);
    static struct model a;
    memset(&a, 0, sizeof a);
    raft_index low_t = UINT64_MAX;
    bool prefix = true;
    for (size_t i = 0; i < R.n_reqs; i++) {
        const struct rrec *r = &R.reqs[i];
        bool acked = r->t.status == 0 && (n == 0 || r->t.ack_ops < n);
        CHECK(!acked || prefix, "acknowledgements out of order at req %zu", i);
        if (acked) {
            apply(&a, r);
        } else {
            prefix = false;
            if (r->type == R_APPEND && r->truncate_from != 0 &&
                r->truncate_from < low_t) {
                low_t = r->truncate_from;
            }
        }
    }
    /* Hard state. */
    CHECK(hs_cmp(sc->hs, a.hs) >= 0,
          "hard state went back: term %" PRIu64 " < acked %" PRIu64,
          sc->hs.term, a.hs.term);
    CHECK(hs_cmp(sc->hs, R.m.hs) <= 0, "hard state from nowhere");
    /* Snapshot. */
    raft_index snap = sc->has_snapshot ? sc->snapshot.index : 0;
    CHECK(!a.has_snap || (sc->has_snapshot && snap >= a.snap),
          "acked snapshot %" PRIu64 " lost (found %" PRIu64 ")", a.snap, snap);
    if (sc->has_snapshot) {
        bool found = false;
        for (size_t i = 0; i < R.n_reqs && !found; i++) {
            const struct rrec *r = &R.reqs[i];
            found = r->type == R_SNAP && r->snap_last &&
                    r->meta.index == snap &&
                    r->meta.term == sc->snapshot.term &&
                    r->meta.size == sc->snapshot.size &&
                    r->meta.config.n == sc->snapshot.config.n;
        }
        CHECK(found, "snapshot %" PRIu64 " was never written", snap);
        uint64_t off = 0;
        int64_t got;
        while ((got = store_snapshot_read(e->s, snap, off, snapbuf, 1000,
                                          NULL)) > 0) {
            for (int64_t i = 0; i < got; i++) {
                CHECK(snapbuf[i] ==
                          snap_byte(snap, sc->snapshot.term, off + (uint64_t)i),
                      "snapshot byte %" PRIu64 " differs", off + i);
            }
            off += (uint64_t)got;
        }
        CHECK(got == 0 && off == sc->snapshot.size, "snapshot read");
    }
    /* Entries: contiguous from the snapshot, all submitted, acked ones
     * present. */
    for (size_t i = 0; i < sc->n_entries; i++) {
        const struct raft_entry *en = &sc->entries[i];
        CHECK(en->index == snap + 1 + i, "entry %zu has index %" PRIu64, i,
              en->index);
        CHECK(was_submitted(en),
              "entry %" PRIu64 " term %" PRIu64 " was never submitted",
              en->index, en->term);
    }
    raft_index last = snap + sc->n_entries;
    raft_index need_to = a.last < low_t ? a.last : low_t - 1;
    for (raft_index x = snap + 1; x <= need_to; x++) {
        CHECK(x <= last,
              "acked entry %" PRIu64 " lost (log ends at %" PRIu64 ")", x,
              last);
        const struct raft_entry *en = &sc->entries[x - snap - 1];
        size_t len = payload(x, a.term_at[x], a.ver_at[x], PAYLOAD_MAX, pbuf);
        CHECK(en->term == a.term_at[x] && en->buf.len == len &&
                  memcmp(en->buf.base, pbuf, len) == 0,
              "acked entry %" PRIu64 " differs", x);
    }
    /* The recovered store takes new writes and keeps them. */
    store_release_loaded(e->s);
    raft_index at = last + 1;
    uint8_t p[8] = {9, 9, 9};
    struct raft_entry en[3];
    for (int i = 0; i < 3; i++) {
        en[i] = (struct raft_entry){.index = at + (raft_index)i,
                                    .term = sc->hs.term + 1000,
                                    .buf = {p, sizeof p}};
    }
    struct treq t = {.fs = e->fs};
    rv = store_append(e->s, &t.req, NULL, 0, en, 3, treq_cb);
    CHECK(rv == 0, "append after recovery: %s", craft_errname(rv));
    henv_run(e);
    CHECK(t.done == 1 && t.status == 0, "append after recovery failed");
    henv_close_store(e);
    rv = henv_open(e);
    CHECK(rv == 0, "second open failed: %s", e->err);
    sc = store_loaded(e->s);
    CHECK(sc->n_entries >= 3 &&
              sc->entries[sc->n_entries - 1].index == at + 2 &&
              sc->entries[sc->n_entries - 1].term == en[0].term,
          "entries appended after recovery lost");
    henv_close_store(e);
}

static uint64_t seed_base = 1;
/* The sanitizer build runs about 3x slower; it gets half the seeds (the
 * release build runs every seed with the same code). */
#if defined(CRAFT_TEST_BUILD)
static unsigned n_seeds = 6;
#else
static unsigned n_seeds = 12;
#endif
static bool one_seed = false;

static uint64_t seed_at(unsigned i)
{
    return one_seed ? seed_base : seed_base + i * 7919u;
}

/* Crashes before random operations, in every mode. */
static void crash_at_random_points(void **state)
{
    (void)state;
    struct henv e;
    char where[128];
    for (unsigned si = 0; si < n_seeds; si++) {
        uint64_t seed = seed_at(si);
        run_seed(&e, seed, 0, 0, 0);
        uint64_t total = R.total_ops;
        henv_close(&e);
        struct rng g;
        rng_init(&g, seed ^ 0xc4a5);
        for (int c = 0; c < 12; c++) {
            uint64_t n = rng_range(&g, 1, total + 1);
            run_seed(&e, seed, n, 0, 0);
            struct memfs *img = memfs_take_capture(e.fs);
            assert_non_null(img);
            memfs_free(e.fs);
            size_t len = memfs_last_write_len(img);
            /* Lose every unsynced write. */
            e.fs = memfs_clone(img);
            memfs_crash(e.fs, MEMFS_LOSE, 0, 0);
            snprintf(where, sizeof where, "crash before op %" PRIu64 " lose",
                     n);
            check_reopen(&e, n, where);
            memfs_free(e.fs);
            /* Tear the last write at every byte offset (a stride past the
             * first 64 for long writes, to bound the run time). */
            for (size_t k = 0; k <= len; k += (k < 64 ? 1 : 1 + len / 64)) {
                e.fs = memfs_clone(img);
                memfs_crash(e.fs, MEMFS_TEAR, k, 0);
                snprintf(where, sizeof where,
                         "crash before op %" PRIu64 " tear at %zu", n, k);
                check_reopen(&e, n, where);
                memfs_free(e.fs);
            }
            e.fs = memfs_clone(img);
            memfs_crash(e.fs, MEMFS_DIRNOW, 0, 0);
            snprintf(where, sizeof where,
                     "crash before op %" PRIu64 " directory kept", n);
            check_reopen(&e, n, where);
            memfs_free(e.fs);
            for (uint64_t s = 1; s <= 3; s++) {
                e.fs = memfs_clone(img);
                memfs_crash(e.fs, MEMFS_SECTORS, 0, s);
                snprintf(where, sizeof where,
                         "crash before op %" PRIu64 " sectors %" PRIu64, n, s);
                check_reopen(&e, n, where);
                memfs_free(e.fs);
            }
            e.fs = img;
            henv_close(&e);
        }
    }
}

/* A crash before every single operation of a run (fewer seeds). */
static void crash_before_every_op(void **state)
{
    (void)state;
    struct henv e;
    char where[128];
    unsigned seeds = n_seeds < 3 ? n_seeds : 3;
    for (unsigned si = 0; si < seeds; si++) {
        uint64_t seed = seed_at(si) ^ 0x5eed;
        if (one_seed) {
            seed = seed_at(si);
        }
        run_seed(&e, seed, 0, 0, 0);
        uint64_t total = R.total_ops;
        henv_close(&e);
        for (uint64_t n = 1; n <= total; n++) {
            run_seed(&e, seed, n, 0, 0);
            struct memfs *img = memfs_take_capture(e.fs);
            assert_non_null(img);
            memfs_free(e.fs);
            size_t len = memfs_last_write_len(img);
            size_t tears[3] = {0, len / 2, len ? len - 1 : 0};
            for (int m = 0; m < 6; m++) {
                e.fs = memfs_clone(img);
                if (m == 0) {
                    memfs_crash(e.fs, MEMFS_LOSE, 0, 0);
                } else if (m == 5) {
                    memfs_crash(e.fs, MEMFS_DIRNOW, 0, 0);
                } else if (m < 4) {
                    memfs_crash(e.fs, MEMFS_TEAR, tears[m - 1], 0);
                } else {
                    memfs_crash(e.fs, MEMFS_SECTORS, 0, n);
                }
                snprintf(where, sizeof where,
                         "crash before op %" PRIu64 " mode %d", n, m);
                check_reopen(&e, n, where);
                memfs_free(e.fs);
            }
            e.fs = img;
            henv_close(&e);
        }
    }
}

/* Operation n fails with EIO or ENOSPC. */
static void faults_reach_the_caller(void **state)
{
    (void)state;
    struct henv e;
    char where[128];
    int errs[] = {EIO, ENOSPC};
    int codes[] = {CRAFT_EIO, CRAFT_ENOSPC};
    for (unsigned si = 0; si < n_seeds; si++) {
        uint64_t seed = seed_at(si);
        run_seed(&e, seed, 0, 0, 0);
        uint64_t total = R.total_ops;
        henv_close(&e);
        struct rng g;
        rng_init(&g, seed ^ 0xfa17);
        for (int c = 0; c < 8; c++) {
            uint64_t n = rng_range(&g, 1, total + 1);
            int k = c % 2;
            run_seed(&e, seed, 0, n, errs[k]);
            snprintf(where, sizeof where, "fault %s at op %" PRIu64,
                     craft_errname(codes[k]), n);
            CHECK(R.fail_code == codes[k], "store error %s",
                  craft_errname(R.fail_code));
            bool seen = R.open_failed;
            for (size_t i = 0; i < R.n_reqs; i++) {
                seen = seen || R.reqs[i].t.status == codes[k];
                CHECK(R.reqs[i].t.status == 0 || R.reqs[i].t.status == codes[k],
                      "request %zu: %s", i, craft_errname(R.reqs[i].t.status));
            }
            CHECK(seen, "no callback saw the error");
            /* The process stops and restarts (the OS kept its cache). */
            struct memfs *img = memfs_clone(e.fs);
            check_reopen(&e, 0, where);
            /* Or the machine crashed as well. */
            memfs_free(e.fs);
            e.fs = img;
            memfs_crash(e.fs, MEMFS_LOSE, 0, 0);
            check_reopen(&e, 0, where);
            henv_close(&e);
        }
    }
}

/* A flipped bit in a closed segment or the snapshot is corruption. */
static void bit_flips_are_corruption(void **state)
{
    (void)state;
    struct henv e;
    char where[128];
    for (unsigned si = 0; si < n_seeds; si++) {
        uint64_t seed = seed_at(si);
        run_seed(&e, seed, 0, 0, 0);
        static char names[512][64];
        size_t nn = memfs_list(e.fs, names, 512);
        struct rng g;
        rng_init(&g, seed ^ 0xb17f);
        for (size_t i = 0; i < nn; i++) {
            raft_index a, b;
            bool seg = store__seg_name_parse(names[i], &a, &b);
            bool snap = store__snap_name_parse(names[i], &a, &b);
            if (!seg && !snap) {
                continue;
            }
            int64_t size = memfs_size(e.fs, names[i]);
            for (int f = 0; f < 6 && size > 0; f++) {
                struct memfs *orig = e.fs;
                e.fs = memfs_clone(orig);
                uint64_t off = rng_range(&g, 0, (uint64_t)size);
                int bit = (int)rng_range(&g, 0, 8);
                assert_true(memfs_flip(e.fs, names[i], off, bit));
                snprintf(where, sizeof where, "flip %s byte %" PRIu64, names[i],
                         off);
                int rv = henv_open(&e);
                CHECK(rv == CRAFT_ECORRUPT, "open gave %s", craft_errname(rv));
                CHECK(strstr(e.err, names[i]) != NULL,
                      "message does not name the file: %s", e.err);
                memfs_free(e.fs);
                e.fs = orig;
            }
        }
        henv_close(&e);
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed_base = strtoull(argv[++i], NULL, 0);
            one_seed = true;
            n_seeds = 1;
        } else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) {
            n_seeds = (unsigned)strtoul(argv[++i], NULL, 0);
        } else {
            fprintf(stderr, "usage: %s [--seed S] [--seeds N]\n", argv[0]);
            return 2;
        }
    }
    if (!one_seed) {
        const char *env = getenv("CRAFT_SEED");
        seed_base = env ? strtoull(env, NULL, 0) : (uint64_t)uv_hrtime();
    }
    printf("storage crash tests: seed base %" PRIu64 " (%u seeds; replay one "
           "with --seed S)\n",
           seed_base, n_seeds);
    log_set_level(LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crash_at_random_points),
        cmocka_unit_test(crash_before_every_op),
        cmocka_unit_test(faults_reach_the_caller),
        cmocka_unit_test(bit_flips_are_corruption),
    };
    return cmocka_run_group_tests_name("storage_crash", tests, NULL, NULL);
}
