/*
 * raft__invariants_ok: the numbered invariants of the other files, checked
 * after every raft_step in builds with CRAFT_DEBUG_CHECKS (and by the
 * simulator after every event).  O(1) per step (a window of the log); never
 * in a hot release path.  Each failed check names itself through the trace
 * hook, so a failing simulation says which rule broke.
 */
#include "raft/core.h"
#include "util/assert.h"

#define CHECK(r, cond)                                                         \
    do {                                                                       \
        if (!(cond)) {                                                         \
            raft__trace((struct raft *)(r), "invariant failed: %s", #cond);    \
            return false;                                                      \
        }                                                                      \
    } while (0)

/* Entries checked at the end of the log after every step.  The whole log
 * is checked while it is short; beyond that a window keeps each step O(1)
 * (every entry is checked when it is near the end, as it is appended). */
#define LOG_CHECK_WINDOW 64

static bool log_ok(const struct raft *r)
{
    const struct raft_log *l = &r->log;
    size_t from = l->n > LOG_CHECK_WINDOW ? l->n - LOG_CHECK_WINDOW : 0;
    raft_term prev = from > 0 ? l->entries[from - 1].term : l->base_term;
    if (l->n > 0) {
        CHECK(r, l->entries[0].index == l->base_index + 1);
        CHECK(r, l->entries[0].term >= l->base_term);
    }
    for (size_t k = from; k < l->n; k++) {
        const struct raft_entry *e = &l->entries[k];
        CHECK(r, e->index == l->base_index + 1 + k); /* log.h 1 */
        CHECK(r, e->term >= prev);                   /* log.h 2 */
        CHECK(r, e->term <= r->term);
        CHECK(r, (e->buf.base == NULL) == (e->buf.len == 0)); /* log.h 3 */
        prev = e->term;
    }
    return true;
}

static bool leader_ok(const struct raft *r)
{
    raft_index last = raft__log_last(&r->log);
    CHECK(r, r->vote == r->id);
    CHECK(r, r->leader == r->id);
    CHECK(r, r->term_start > r->log.base_index || r->term_start <= r->commit);
    CHECK(r, r->term_start <= last);
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i == r->self) {
            continue;
        }
        const struct raft_progress *pr = &r->prs[i];
        CHECK(r, pr->match < pr->next); /* progress.c 1 */
        CHECK(r, pr->next <= last + 1);
        CHECK(r, pr->in_count <= r->opts.max_inflight); /* progress.c 2 */
        CHECK(r, pr->in_count == 0 || pr->state == RAFT_PROGRESS_REPLICATE);
        CHECK(r, pr->read_round <= r->read_round);
        if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
            /* snapshot.c 4: the pinned snapshot is one we took. */
            CHECK(r, pr->match < pr->snap_index);
            CHECK(r, pr->snap_index <= r->snap.index);
            CHECK(r, pr->snap_acked <= pr->snap_size);
        }
    }
    return true;
}

bool raft__invariants_ok(const struct raft *r)
{
    raft_index last = raft__log_last(&r->log);
    CHECK(r, r->role >= RAFT_FOLLOWER && r->role <= RAFT_LEADER);
    CHECK(r, r->vote == 0 || raft__slot(r, r->vote) >= 0);
    CHECK(r, r->leader == 0 || raft__slot(r, r->leader) >= 0);
    CHECK(r, r->hs_durable.term <= r->hs_issued.term);
    CHECK(r, r->hs_issued.term <= r->term);
    CHECK(r, r->applied <= r->commit); /* persist.c 4 */
    CHECK(r, r->commit <= last);
    CHECK(r, r->applied <= r->durable);           /* persist.c 4 */
    CHECK(r, r->durable <= last);                 /* persist.c 1 */
    CHECK(r, r->log.base_index <= r->snap.index); /* snapshot.c 1 */
    CHECK(r, r->snap.index <= r->applied);
    CHECK(r, r->seq_done <= r->seq_issued);
    for (size_t k = 0; k < r->n_recs; k++) {
        CHECK(r, r->recs[k].seq > r->seq_done);
        CHECK(r, r->recs[k].last <= last);
        CHECK(r, k == 0 || r->recs[k].seq > r->recs[k - 1].seq);
    }
    for (size_t k = 0; k < r->n_held; k++) {
        CHECK(r, r->held[k].msg.term == r->term); /* raft.c 2, persist.c 3 */
        CHECK(r, r->held[k].seq > r->seq_done);
    }
    CHECK(r, r->n_reads == 0 || r->role == RAFT_LEADER); /* readindex.c 1 */
    if (r->role == RAFT_CANDIDATE) {
        CHECK(r, r->vote == r->id);
    }
    if (r->role == RAFT_LEADER && !leader_ok(r)) {
        return false;
    }
    return log_ok(r);
}
