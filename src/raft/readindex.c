/*
 * ReadIndex reads (thesis §6.4): a linearizable read without writing to the
 * log.  The leader records its commit index when the read arrives, proves
 * it is still the leader by a round of heartbeats that a majority
 * acknowledges, and answers once it has committed an entry of its own term
 * (its no-op); the application then serves the read once it has applied
 * up to the answered index.
 *
 * Rounds are numbered: r->read_round is the last round started and every
 * append or heartbeat carries it; followers echo it back.  A read waits
 * for a round started after it arrived (its `round` = read_round + 1 at
 * arrival), so reads arriving together share one round, and at most one
 * round is in flight at a time.
 *
 * Invariants:
 *   1. Pending reads exist only on a leader; losing leadership fails them
 *      at once with CRAFT_ELEADERLOST.
 *   2. A read is answered only when (a) a majority including the leader
 *      acknowledged a round >= its round, in the leader's term, and (b) the
 *      commit index reached term_start.
 *   3. The answered index is >= the commit index at arrival and >=
 *      term_start, so it covers every write completed before the read.
 */
#include "raft/core.h"
#include "util/alloc.h"
#include "util/assert.h"

/* Room for n answers in this step's update.  0 or CRAFT_ENOMEM. */
static int answers_reserve(struct raft *r, size_t n)
{
    struct raft_out *o = &r->out;
    if (o->n_reads + n <= o->cap_reads) {
        return 0;
    }
    size_t cap = o->cap_reads ? o->cap_reads : 16;
    while (cap < o->n_reads + n) {
        cap *= 2;
    }
    struct raft_read *p = craft_realloc(r->alloc, o->reads, cap * sizeof *p);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    o->reads = p;
    o->cap_reads = cap;
    return 0;
}

int raft__read_answer(struct raft *r, uint64_t ctx, int status,
                      raft_index index)
{
    struct raft_out *o = &r->out;
    if (answers_reserve(r, 1) != 0) {
        return CRAFT_ENOMEM;
    }
    o->reads[o->n_reads].ctx = ctx;
    o->reads[o->n_reads].status = status;
    o->reads[o->n_reads].index = index;
    o->n_reads++;
    return 0;
}

static void start_round(struct raft *r)
{
    CRAFT_ASSERT(r->role == RAFT_LEADER && r->n_reads > 0);
    r->read_round++;
    raft__broadcast_heartbeat(r);
}

int raft__read(struct raft *r, uint64_t ctx)
{
    if (r->role != RAFT_LEADER || r->transferee != 0) {
        return raft__read_answer(r, ctx, CRAFT_ENOTLEADER, 0);
    }
    if (r->n_reads == r->cap_reads) {
        size_t cap = r->cap_reads ? r->cap_reads * 2 : 16;
        struct raft_pending_read *p =
            craft_realloc(r->alloc, r->reads, cap * sizeof *p);
        if (p == NULL) {
            return CRAFT_ENOMEM;
        }
        r->reads = p;
        r->cap_reads = cap;
    }
    /* Every pending read must be answerable in any one later step (losing
     * leadership answers all of them at once) without allocating, or a
     * client could wait forever: keep that room from now on. */
    if (answers_reserve(r, r->n_reads + 1) != 0) {
        return CRAFT_ENOMEM;
    }
    CRAFT_ASSERT(r->role == RAFT_LEADER);
    struct raft_pending_read *p = &r->reads[r->n_reads++];
    p->ctx = ctx;
    p->index = r->commit > r->term_start ? r->commit : r->term_start;
    p->round = r->read_round + 1;
    CRAFT_DASSERT(p->index >= r->commit && p->index >= r->term_start);
    raft__read_check(r);
    return 0;
}

/* The highest round a majority (with us) has acknowledged. */
static uint64_t confirmed_round(const struct raft *r)
{
    uint64_t v[RAFT_MEMBERS_MAX];
    unsigned n = r->config.n;
    for (unsigned i = 0; i < n; i++) {
        v[i] = i == r->self ? r->read_round : r->prs[i].read_round;
    }
    for (unsigned i = 1; i < n; i++) {
        uint64_t x = v[i];
        unsigned j = i;
        for (; j > 0 && v[j - 1] < x; j--) {
            v[j] = v[j - 1];
        }
        v[j] = x;
    }
    uint64_t done = v[raft__quorum(r) - 1];
    CRAFT_DASSERT(done <= r->read_round);
    return done;
}

void raft__read_check(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->n_reads == 0) {
        return;
    }
    uint64_t done = confirmed_round(r);
    bool own_commit = r->commit >= r->term_start;
    size_t keep = 0;
    bool waiting_unstarted = false, waiting_started = false;
    for (size_t k = 0; k < r->n_reads; k++) {
        struct raft_pending_read *p = &r->reads[k];
        if (p->round <= done && own_commit &&
            raft__read_answer(r, p->ctx, 0, p->index) == 0) {
            continue;
        }
        waiting_unstarted |= p->round > r->read_round;
        waiting_started |= p->round <= r->read_round && p->round > done;
        r->reads[keep++] = *p;
    }
    CRAFT_DASSERT(keep <= r->n_reads);
    r->n_reads = keep;
    if (waiting_unstarted && !waiting_started) {
        start_round(r);
        if (r->config.n == 1) {
            raft__read_check(r); /* confirmed by ourselves alone */
        }
    }
}

void raft__reads_fail(struct raft *r, int status)
{
    CRAFT_ASSERT(status != 0);
    for (size_t k = 0; k < r->n_reads; k++) {
        (void)raft__read_answer(r, r->reads[k].ctx, status, 0);
    }
    r->n_reads = 0;
}
