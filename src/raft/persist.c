/*
 * Persistence bookkeeping: what the runtime was asked to write, what it
 * reported durable, and the acknowledgements that wait for it.
 *
 * Every step that changes the hard state, the log or an incoming snapshot
 * hands the runtime one write, numbered persist_seq.  RAFT_PERSISTED{seq}
 * reports every write numbered <= seq durable (writes are carried out in
 * order).  From that the core keeps:
 *
 *   1. r->durable: the log is durable up to here.  It never exceeds the
 *      last index, and it drops to from - 1 when entries >= from are
 *      truncated, even if the write that truncates is still in flight,
 *      because the entries now in memory at >= from are not the ones on
 *      disk.  Each pending write remembers the last index it makes
 *      durable, clamped the same way, so completions only move it forward
 *      to indices whose current content has been written.
 *   2. r->hs_durable: the hard state on disk.  A candidate counts its own
 *      vote only once it is durable (Raft paper §5.2 and Figure 2: a
 *      server must persist currentTerm and votedFor before responding; the
 *      same holds before acting on its own vote).
 *   3. Acknowledgements (vote grants, append and snapshot replies) created
 *      while a write is pending wait until every write issued so far is
 *      durable (Figure 2: "persistent state ... updated on stable storage
 *      before responding to RPCs") -- unless they claim nothing pending:
 *      the hard state is durable and an append reply's index is at most
 *      r->durable.  Those of an older term are dropped when the term
 *      advances.
 *   4. Committed entries are handed out for applying only up to
 *      r->durable, strictly in order, each exactly once.
 */
#include <string.h>

#include "raft/core.h"
#include "util/alloc.h"
#include "util/assert.h"

void raft__held_drop(struct raft *r)
{
    r->n_held = 0;
    r->out.n_acks = 0;
}

static int held_push(struct raft *r, uint64_t seq, const struct raft_message *m)
{
    if (r->n_held == r->cap_held) {
        size_t cap = r->cap_held ? r->cap_held * 2 : 16;
        struct raft_held *h = craft_realloc(r->alloc, r->held, cap * sizeof *h);
        if (h == NULL) {
            return CRAFT_ENOMEM;
        }
        r->held = h;
        r->cap_held = cap;
    }
    r->held[r->n_held].seq = seq;
    r->held[r->n_held].msg = *m;
    r->n_held++;
    return 0;
}

static void release_held(struct raft *r)
{
    size_t keep = 0;
    for (size_t k = 0; k < r->n_held; k++) {
        if (r->held[k].seq <= r->seq_done) {
            /* A lost ack is like a lost message: the leader retries. */
            (void)raft__send(r, &r->held[k].msg);
        } else {
            r->held[keep++] = r->held[k];
        }
    }
    r->n_held = keep;
}

int raft__persisted(struct raft *r, uint64_t seq)
{
    if (seq > r->seq_issued) {
        return CRAFT_EINVAL;
    }
    if (seq <= r->seq_done) {
        return 0;
    }
    size_t k = 0;
    for (; k < r->n_recs && r->recs[k].seq <= seq; k++) {
        const struct raft_persist_rec *rec = &r->recs[k];
        if (rec->last > r->durable) {
            r->durable = rec->last;
        }
        r->hs_durable = rec->hs;
        if (rec->chunk) {
            raft__snapshot_durable(r, rec);
        }
    }
    memmove(r->recs, r->recs + k, (r->n_recs - k) * sizeof *r->recs);
    r->n_recs -= k;
    r->seq_done = seq;
    CRAFT_ASSERT(r->durable <= raft__log_last(&r->log));
    release_held(r);
    switch ((enum raft_role)r->role) {
    case RAFT_LEADER:
        raft__maybe_commit(r);
        break;
    case RAFT_CANDIDATE:
        return raft__tally(r);
    case RAFT_FOLLOWER:
    case RAFT_PRE_CANDIDATE:
        break;
    }
    return 0;
}

int raft__persist_reserve(struct raft *r)
{
    if (r->n_recs < r->cap_recs) {
        return 0;
    }
    size_t cap = r->cap_recs ? r->cap_recs * 2 : 16;
    struct raft_persist_rec *p =
        craft_realloc(r->alloc, r->recs, cap * sizeof *p);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    r->recs = p;
    r->cap_recs = cap;
    return 0;
}

/* The slot was reserved before the step changed anything. */
static void record(struct raft *r)
{
    CRAFT_ASSERT(r->n_recs < r->cap_recs);
    struct raft_persist_rec *rec = &r->recs[r->n_recs++];
    memset(rec, 0, sizeof *rec);
    rec->seq = ++r->seq_issued;
    rec->last = raft__log_last(&r->log);
    rec->hs.term = r->term;
    rec->hs.vote = r->vote;
    if (r->out.has_chunk) {
        const struct raft_snapshot_chunk *c = &r->out.chunk;
        rec->chunk = true;
        rec->chunk_last = c->last;
        rec->chunk_end = c->offset + c->data.len;
        rec->chunk_meta = c->meta;
    }
    r->hs_issued = rec->hs;
}

/* Whether an acknowledgement depends on nothing still being written: the
 * hard state of its term is durable and, for an append reply, the entries
 * it claims are.  Such acks (heartbeat replies above all) need not queue
 * behind an unrelated write, which keeps ReadIndex rounds and check-quorum
 * contact fast while entries stream in. */
static bool ack_ready(const struct raft *r, const struct raft_message *m)
{
    if (r->hs_durable.term != r->term || r->hs_durable.vote != r->vote) {
        return false;
    }
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_APPEND_RESP:
        return !m->append_resp.success || m->append_resp.index <= r->durable;
    case RAFT_MSG_VOTE_RESP:
        return true;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_APPEND:
    case RAFT_MSG_SNAPSHOT:
    case RAFT_MSG_SNAPSHOT_RESP:
    case RAFT_MSG_TIMEOUT_NOW:
        return false;
    }
    return false;
}

/* Resolve the entries of the appends queued in this step; the log does not
 * change after this point of a step. */
static void resolve_messages(struct raft *r)
{
    struct raft_out *o = &r->out;
    for (size_t k = 0; k < o->n_msgs; k++) {
        struct raft_message *m = &o->msgs[k];
        if (o->msg_first[k] != 0) {
            CRAFT_ASSERT(m->append.prev_index + m->append.n_entries <=
                         raft__log_last(&r->log));
            m->append.entries = raft__log_get(&r->log, o->msg_first[k]);
        }
    }
}

void raft__apply(struct raft *r, struct raft_update *u)
{
    raft_index upto = r->commit < r->durable ? r->commit : r->durable;
    if (r->out.has_install) {
        u->install = &r->out.install;
    }
    if (upto > r->applied) {
        CRAFT_ASSERT(r->applied >= r->log.base_index);
        CRAFT_ASSERT(upto <= raft__log_last(&r->log));
        u->committed = raft__log_get(&r->log, r->applied + 1);
        u->n_committed = (size_t)(upto - r->applied);
        r->applied = upto;
    }
    u->commit_index = r->commit;
}

int raft__persist_finish(struct raft *r, struct raft_update *u)
{
    struct raft_out *o = &r->out;
    int rv = 0;
    memset(u, 0, sizeof *u);
    bool hs_changed =
        r->term != r->hs_issued.term || r->vote != r->hs_issued.vote;
    if (hs_changed || o->truncate_from != 0 || o->dirty_from != 0 ||
        o->has_chunk) {
        record(r);
        u->persist_seq = r->seq_issued;
        u->hs_changed = hs_changed;
        u->hs.term = r->term;
        u->hs.vote = r->vote;
        u->truncate_from = o->truncate_from;
        if (o->dirty_from != 0 && o->dirty_from <= raft__log_last(&r->log)) {
            u->entries = raft__log_get(&r->log, o->dirty_from);
            u->n_entries =
                (size_t)(raft__log_last(&r->log) - o->dirty_from + 1);
        }
        if (o->has_chunk) {
            u->snapshot_chunk = &o->chunk;
        }
    }
    /* Acknowledgements go out now if nothing they claim is pending, else
     * wait for every write issued so far. */
    for (size_t k = 0; k < o->n_acks; k++) {
        if (r->seq_issued == r->seq_done || ack_ready(r, &o->acks[k].msg)) {
            (void)raft__send(r, &o->acks[k].msg);
        } else if (held_push(r, r->seq_issued, &o->acks[k].msg) != 0) {
            rv = CRAFT_ENOMEM; /* the ack is lost; the leader retries */
        }
    }
    o->n_acks = 0;
    resolve_messages(r);
    u->messages = o->msgs;
    u->n_messages = o->n_msgs;
    raft__apply(r, u);
    u->compact_to = o->compact_to;
    u->reads = o->reads;
    u->n_reads = o->n_reads;
    return rv;
}
