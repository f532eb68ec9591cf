/*
 * raft_new/raft_free/raft_step: creation, event dispatch, the term rule and
 * role transitions, and assembling each step's update.
 *
 * Invariants kept here (checked by raft__invariants_ok after every step):
 *   1. r->term only grows, and only raft__term_advance changes it; it clears
 *      r->vote in the same breath (Raft paper Figure 2, "Rules for all
 *      servers": if a message reveals a newer term, adopt it and become a
 *      follower).
 *   2. A node votes at most once per term: r->vote is set only while 0, and
 *      a granted vote leaves the core only after it is durable.
 *   3. Messages from older terms change nothing except that a stale leader
 *      is told the newer term (so it steps down).
 *   4. The update of a step carries everything the step changed; nothing
 *      the core holds internally is lost when the runtime carries it out in
 *      order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "raft/core.h"
#include "util/alloc.h"
#include "util/assert.h"

/* Defaults of struct raft_options.  With craftd's 10 ms tick: elections
 * after 250-500 ms of silence, 100 ms heartbeats (10 per second per
 * follower when idle), so several heartbeats fit in the shortest election
 * timeout (Raft paper §5.6: broadcastTime << electionTimeout). */
#define DEFAULT_ELECTION_MIN 25
#define DEFAULT_ELECTION_MAX 50
#define DEFAULT_HEARTBEAT 10
/* 64 entries or 1 MiB per append: large enough to amortise per-message
 * costs, small enough to keep a follower's write and our send short. */
#define DEFAULT_MSG_ENTRIES 64
#define DEFAULT_MSG_BYTES (1u << 20)
/* 64 appends in flight per follower cover a 1 ms round trip at 64k ops/s
 * without unbounded memory in the transport. */
#define DEFAULT_INFLIGHT 64
#define DEFAULT_CHUNK_BYTES (1u << 20)

void raft_options_default(struct raft_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->election_ticks_min = DEFAULT_ELECTION_MIN;
    opts->election_ticks_max = DEFAULT_ELECTION_MAX;
    opts->heartbeat_ticks = DEFAULT_HEARTBEAT;
    opts->max_msg_entries = DEFAULT_MSG_ENTRIES;
    opts->max_msg_bytes = DEFAULT_MSG_BYTES;
    opts->max_inflight = DEFAULT_INFLIGHT;
    opts->snapshot_chunk_bytes = DEFAULT_CHUNK_BYTES;
    opts->pre_vote = true;
    opts->check_quorum = true;
}

static bool options_valid(const struct raft_options *o)
{
    return o->election_ticks_min >= 2 &&
           o->election_ticks_max > o->election_ticks_min &&
           o->heartbeat_ticks >= 1 &&
           o->heartbeat_ticks < o->election_ticks_min &&
           o->max_msg_entries >= 1 && o->max_msg_bytes >= 1 &&
           o->max_inflight >= 1 && o->max_inflight <= 1u << 16 &&
           o->snapshot_chunk_bytes >= 1 &&
           o->snapshot_chunk_bytes <= RAFT_CHUNK_BYTES_MAX;
}

static bool config_valid(raft_id id, const struct raft_config *c)
{
    if (c->n == 0 || c->n > RAFT_MEMBERS_MAX) {
        return false;
    }
    bool found = false;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->ids[i] == 0) {
            return false;
        }
        for (unsigned j = 0; j < i; j++) {
            if (c->ids[j] == c->ids[i]) {
                return false;
            }
        }
        found = found || c->ids[i] == id;
    }
    return found;
}

int raft__slot(const struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        if (r->config.ids[i] == id) {
            return (int)i;
        }
    }
    return -1;
}

int raft__quorum(const struct raft *r)
{
    return (int)(r->config.n / 2 + 1);
}

void raft__trace(struct raft *r, const char *fmt, ...)
{
    if (r->opts.trace == NULL) {
        return;
    }
    char line[256];
    int n = snprintf(line, sizeof line,
                     "n%llu t%llu %s: ", (unsigned long long)r->id,
                     (unsigned long long)r->term, raft_role_name(r->role));
    if (n < 0 || (size_t)n >= sizeof line) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    r->opts.trace(r->opts.trace_data, line);
}

/* ---- creation ------------------------------------------------------- */

static int restore(struct raft *r, const struct raft_restore *rs)
{
    r->term = rs->hs.term;
    r->vote = rs->hs.vote;
    if (r->vote != 0 && raft__slot(r, r->vote) < 0) {
        return CRAFT_EINVAL;
    }
    raft_index next = 1;
    raft_term snap_term = 0;
    if (rs->snapshot != NULL) {
        r->snap = *rs->snapshot;
        if (r->snap.index == 0 || r->snap.term == 0) {
            return CRAFT_EINVAL;
        }
        raft__log_reset(&r->log, r->snap.index, r->snap.term);
        r->commit = r->applied = r->snap.index;
        next = r->snap.index + 1;
        snap_term = r->snap.term;
    }
    if (rs->n_entries > 0 && rs->entries[0].index > next) {
        return CRAFT_EINVAL; /* a gap after the snapshot */
    }
    for (size_t k = 0; k < rs->n_entries; k++) {
        const struct raft_entry *e = &rs->entries[k];
        if (e->index == 0 || e->index != rs->entries[0].index + k ||
            e->term == 0 ||
            (e->type != RAFT_ENTRY_COMMAND && e->type != RAFT_ENTRY_NOOP)) {
            return CRAFT_EINVAL;
        }
        if (e->index < next - 1) {
            continue; /* covered by the snapshot */
        }
        if (e->index == next - 1) {
            if (e->term != snap_term) {
                /* Disagrees with the snapshot: the suffix is from a log
                 * the snapshot superseded; drop it (see raft.h). */
                r->restore_truncate = next;
                break;
            }
            continue;
        }
        if (e->term < raft__log_last_term(&r->log)) {
            return CRAFT_EINVAL;
        }
        int rv = raft__log_append(&r->log, e->term, e->type, &e->buf);
        if (rv != 0) {
            return rv;
        }
    }
    r->durable = raft__log_last(&r->log);
    raft_term last_term = raft__log_last_term(&r->log);
    if (last_term > r->term) {
        /* The log reached the disk but the hard state of its term did not
         * (a runtime that writes them to different files).  Nothing was
         * acknowledged from that log, and adopting the term with no vote
         * is always safe; the first update persists it. */
        r->term = last_term;
        r->vote = 0;
    }
    return 0;
}

int raft_new(raft_id id, const struct raft_config *config,
             const struct raft_options *opts, uint64_t seed,
             const struct raft_restore *rs, const struct craft_alloc *alloc,
             struct raft **out)
{
    struct raft_options defaults;
    if (opts == NULL) {
        raft_options_default(&defaults);
        opts = &defaults;
    }
    if (id == 0 || config == NULL || !config_valid(id, config) ||
        !options_valid(opts)) {
        return CRAFT_EINVAL;
    }
    struct raft *r = craft_calloc(alloc, 1, sizeof *r);
    if (r == NULL) {
        return CRAFT_ENOMEM;
    }
    r->alloc = alloc;
    r->id = id;
    r->config = *config;
    r->self = (unsigned)raft__slot(r, id);
    r->opts = *opts;
    rng_init(&r->rng, seed);
    r->role = RAFT_FOLLOWER;
    raft__log_init(&r->log, alloc);
    int rv = raft__progress_init(r);
    if (rv == 0) {
        /* Room for the first persistence record now: a restore may leave
         * a hard state for the first step to persist, which that step
         * must record even if it cannot allocate. */
        rv = raft__persist_reserve(r);
    }
    if (rv == 0 && rs != NULL) {
        rv = restore(r, rs);
    }
    if (rv != 0) {
        raft_free(r);
        return rv;
    }
    if (rs != NULL) {
        r->hs_issued = r->hs_durable = rs->hs;
    }
    raft__reset_election_timer(r);
    CRAFT_DASSERT(raft__invariants_ok(r));
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    if (r == NULL) {
        return;
    }
    raft__log_close(&r->log);
    raft__progress_close(r);
    craft_free(r->alloc, r->reads);
    craft_free(r->alloc, r->recs);
    craft_free(r->alloc, r->held);
    craft_free(r->alloc, r->out.msgs);
    craft_free(r->alloc, r->out.msg_first);
    craft_free(r->alloc, r->out.acks);
    craft_free(r->alloc, r->out.reads);
    craft_free(r->alloc, r->out.chunk_data);
    craft_free(r->alloc, r);
}

/* ---- terms and roles ------------------------------------------------ */

void raft__reset_election_timer(struct raft *r)
{
    r->election_elapsed = 0;
    r->election_timeout = (unsigned)rng_range(
        &r->rng, r->opts.election_ticks_min, r->opts.election_ticks_max);
}

/* The single place where the term moves (invariant 1). */
void raft__term_advance(struct raft *r, raft_term term)
{
    CRAFT_ASSERT(term > r->term);
    r->term = term;
    r->vote = 0;
    /* Acknowledgements made in an older term must never go out: the log
     * they describe may be truncated by this term's leader. */
    raft__held_drop(r);
    r->in_snap = false;
}

void raft__become_follower(struct raft *r, raft_id leader)
{
    bool was_leader = r->role == RAFT_LEADER;
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transferee = 0;
    r->transfer_campaign = false;
    raft__reset_election_timer(r);
    if (was_leader) {
        /* Thesis §6.4: a leader that steps down cannot vouch for reads. */
        raft__reads_fail(r, CRAFT_ELEADERLOST);
    }
    raft__trace(r, "follower of %llu", (unsigned long long)leader);
}

static void clear_votes(struct raft *r)
{
    memset(r->granted, 0, sizeof r->granted);
    memset(r->responded, 0, sizeof r->responded);
}

void raft__become_pre_candidate(struct raft *r)
{
    CRAFT_ASSERT(r->role != RAFT_LEADER);
    r->role = RAFT_PRE_CANDIDATE;
    r->leader = 0;
    clear_votes(r);
    raft__reset_election_timer(r);
    raft__trace(r, "pre-candidate");
}

void raft__become_candidate(struct raft *r, bool transfer)
{
    CRAFT_ASSERT(r->role != RAFT_LEADER);
    raft__term_advance(r, r->term + 1);
    r->vote = r->id; /* counted only once durable, see raft__tally */
    r->role = RAFT_CANDIDATE;
    r->leader = 0;
    r->transfer_campaign = transfer;
    clear_votes(r);
    raft__reset_election_timer(r);
    raft__trace(r, "candidate");
}

int raft__become_leader(struct raft *r)
{
    CRAFT_ASSERT(r->role == RAFT_CANDIDATE);
    CRAFT_ASSERT(r->hs_durable.term == r->term);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->transferee = 0;
    r->heartbeat_elapsed = 0;
    r->election_elapsed = 0;
    raft__progress_reset(r);
    /* Raft paper §5.4.2 / thesis §6.4: a no-op of the new term lets the
     * leader commit (and learn the commit index of) everything before it. */
    int rv = raft__log_append(&r->log, r->term, RAFT_ENTRY_NOOP, NULL);
    if (rv != 0) {
        /* Without its no-op a leader could never commit: give up the
         * office; a later election retries. */
        raft__become_follower(r, 0);
        return rv;
    }
    r->term_start = raft__log_last(&r->log);
    raft__appended(r, r->term_start);
    raft__trace(r, "leader, no-op at %llu", (unsigned long long)r->term_start);
    raft__broadcast_append(r);
    raft__maybe_commit(r); /* a single-member cluster */
    return 0;
}

/* ---- log changes that the runtime must persist ---------------------- */

void raft__truncate(struct raft *r, raft_index from)
{
    CRAFT_ASSERT(from > r->commit);
    CRAFT_ASSERT(from > r->log.base_index);
    raft__log_truncate(&r->log, from);
    if (r->out.truncate_from == 0 || from < r->out.truncate_from) {
        r->out.truncate_from = from;
    }
    if (r->out.dirty_from >= from) {
        r->out.dirty_from = 0;
    }
    /* Entries >= from now differ from whatever is on disk or being
     * written there: nothing at or after from counts as durable until
     * rewritten (see persist.c). */
    if (r->durable >= from) {
        r->durable = from - 1;
    }
    for (size_t k = 0; k < r->n_recs; k++) {
        if (r->recs[k].last >= from) {
            r->recs[k].last = from - 1;
        }
    }
}

void raft__appended(struct raft *r, raft_index index)
{
    if (r->out.dirty_from == 0) {
        r->out.dirty_from = index;
    }
}

/* ---- outgoing messages ---------------------------------------------- */

static int grow(const struct craft_alloc *a, void **p, size_t *cap, size_t n,
                size_t size)
{
    if (n < *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap * 2 : 16;
    void *np = craft_realloc(a, *p, ncap * size);
    if (np == NULL) {
        return CRAFT_ENOMEM;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

int raft__send(struct raft *r, const struct raft_message *m)
{
    struct raft_out *o = &r->out;
    CRAFT_ASSERT(m->from == r->id);
    CRAFT_ASSERT(m->to != r->id && raft__slot(r, m->to) >= 0);
    size_t cap = o->cap_msgs;
    if (grow(r->alloc, (void **)&o->msgs, &cap, o->n_msgs, sizeof *o->msgs)) {
        return CRAFT_ENOMEM;
    }
    size_t cap2 = o->cap_msgs;
    if (grow(r->alloc, (void **)&o->msg_first, &cap2, o->n_msgs,
             sizeof *o->msg_first)) {
        return CRAFT_ENOMEM;
    }
    CRAFT_ASSERT(cap == cap2);
    o->cap_msgs = cap;
    o->msgs[o->n_msgs] = *m;
    o->msg_first[o->n_msgs] = 0;
    if (m->type == RAFT_MSG_APPEND && m->append.n_entries > 0) {
        o->msg_first[o->n_msgs] = m->append.prev_index + 1;
    }
    o->n_msgs++;
    return 0;
}

int raft__send_ack(struct raft *r, const struct raft_message *m)
{
    struct raft_out *o = &r->out;
    CRAFT_ASSERT(m->term == r->term);
    if (grow(r->alloc, (void **)&o->acks, &o->cap_acks, o->n_acks,
             sizeof *o->acks)) {
        return CRAFT_ENOMEM;
    }
    o->acks[o->n_acks].seq = 0;
    o->acks[o->n_acks].msg = *m;
    o->n_acks++;
    return 0;
}

/* ---- dispatch ------------------------------------------------------- */

/* Thesis §4.2.3: a server that heard from a live leader within the minimum
 * election timeout does not help anyone depose it.  A leader keeps the same
 * lease while check-quorum confirms it still has a majority. */
static bool in_lease(const struct raft *r)
{
    if (r->role == RAFT_LEADER) {
        return r->opts.check_quorum;
    }
    return r->leader != 0 && r->election_elapsed < r->opts.election_ticks_min;
}

/* Everything that can be checked before a message changes anything, so
 * that CRAFT_EPROTO always means "nothing changed". */
static bool message_valid(const struct raft *r, const struct raft_message *m)
{
    if (m->to != r->id || m->from == r->id || raft__slot(r, m->from) < 0 ||
        m->term == 0) {
        return false;
    }
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_SNAPSHOT_RESP:
    case RAFT_MSG_TIMEOUT_NOW:
        return true;
    case RAFT_MSG_APPEND:
        return (m->append.n_entries == 0 || m->append.entries != NULL) &&
               raft__entries_valid(m);
    case RAFT_MSG_SNAPSHOT:
        return m->snapshot.meta.index > 0 &&
               (m->snapshot.data.len == 0 || m->snapshot.data.base != NULL) &&
               raft__chunk_valid(m);
    }
    return false;
}

/* Messages from an older term (invariant 3). */
static int stale_term(struct raft *r, const struct raft_message *m)
{
    struct raft_message resp = {.from = r->id, .to = m->from, .term = r->term};
    if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT) {
        /* Tell a deposed leader about the newer term; with check-quorum
         * and pre-vote it might otherwise never learn it. */
        resp.type = RAFT_MSG_APPEND_RESP;
        resp.append_resp.rejected =
            m->type == RAFT_MSG_APPEND ? m->append.prev_index : 0;
        return raft__send(r, &resp);
    }
    if (m->type == RAFT_MSG_VOTE && m->vote.pre) {
        resp.type = RAFT_MSG_VOTE_RESP;
        resp.vote_resp.pre = true;
        return raft__send(r, &resp);
    }
    return 0;
}

static int receive(struct raft *r, const struct raft_message *m)
{
    if (!message_valid(r, m)) {
        return CRAFT_EPROTO;
    }
    if (m->term > r->term) {
        bool vote = m->type == RAFT_MSG_VOTE;
        if (vote && !m->vote.transfer && in_lease(r)) {
            raft__trace(r, "ignores vote of %llu: in lease",
                        (unsigned long long)m->from);
            return 0;
        }
        bool keep =
            (vote && m->vote.pre) || (m->type == RAFT_MSG_VOTE_RESP &&
                                      m->vote_resp.pre && m->vote_resp.granted);
        if (!keep) {
            bool from_leader = m->type == RAFT_MSG_APPEND ||
                               m->type == RAFT_MSG_SNAPSHOT ||
                               m->type == RAFT_MSG_TIMEOUT_NOW;
            raft__term_advance(r, m->term);
            raft__become_follower(r, from_leader ? m->from : 0);
        }
    } else if (m->term < r->term) {
        return stale_term(r, m);
    }
    if (r->role == RAFT_LEADER) {
        int slot = raft__slot(r, m->from);
        r->prs[slot].ticks_since_contact = 0;
    }
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE:
        return raft__recv_vote(r, m);
    case RAFT_MSG_VOTE_RESP:
        return raft__recv_vote_resp(r, m);
    case RAFT_MSG_APPEND:
        return raft__recv_append(r, m);
    case RAFT_MSG_APPEND_RESP:
        return raft__recv_append_resp(r, m);
    case RAFT_MSG_SNAPSHOT:
        return raft__recv_snapshot(r, m);
    case RAFT_MSG_SNAPSHOT_RESP:
        return raft__recv_snapshot_resp(r, m);
    case RAFT_MSG_TIMEOUT_NOW:
        return raft__recv_timeout_now(r, m);
    }
    return CRAFT_EPROTO;
}

static void tick(struct raft *r)
{
    if (r->role == RAFT_LEADER) {
        raft__tick_leader(r);
    } else {
        raft__tick_election(r);
    }
}

static void out_reset(struct raft *r)
{
    struct raft_out *o = &r->out;
    o->n_msgs = 0;
    o->n_acks = 0;
    o->n_reads = 0;
    o->truncate_from = 0;
    o->dirty_from = 0;
    o->has_chunk = false;
    o->has_install = false;
    o->compact_to = 0;
    o->apply_from = 0;
    craft_free(r->alloc, o->chunk_data);
    o->chunk_data = NULL;
}

static int unreachable(struct raft *r, raft_id peer)
{
    int slot = raft__slot(r, peer);
    if (slot < 0 || peer == r->id) {
        return CRAFT_EINVAL;
    }
    struct raft_progress *pr = &r->prs[slot];
    if (r->role == RAFT_LEADER && pr->state == RAFT_PROGRESS_REPLICATE) {
        /* Appends in flight may be lost: find next again. */
        raft__progress_probe(pr);
    }
    return 0;
}

static int dispatch(struct raft *r, struct raft_event *ev)
{
    switch ((enum raft_event_type)ev->type) {
    case RAFT_TICK:
        tick(r);
        return 0;
    case RAFT_RECEIVE:
        return receive(r, ev->receive.msg);
    case RAFT_PROPOSE:
        return raft__propose(r, ev);
    case RAFT_READ:
        return raft__read(r, ev->read.ctx);
    case RAFT_PERSISTED:
        return raft__persisted(r, ev->persisted.seq);
    case RAFT_SNAPSHOT:
        return raft__compact(r, ev);
    case RAFT_UNREACHABLE:
        return unreachable(r, ev->unreachable.peer);
    case RAFT_TRANSFER:
        return raft__transfer(r, ev->transfer.peer);
    }
    return CRAFT_EINVAL;
}

int raft_step(struct raft *r, struct raft_event *ev, struct raft_update *u)
{
    CRAFT_ASSERT(r != NULL && ev != NULL && u != NULL);
    uint8_t role0 = r->role;
    out_reset(r);
    /* The one allocation a step cannot do without comes first, so that a
     * failure leaves the core untouched. */
    int rv = raft__persist_reserve(r);
    if (rv == 0) {
        r->out.truncate_from = r->restore_truncate;
        r->restore_truncate = 0;
        rv = dispatch(r, ev);
    }
    int rv2 = raft__persist_finish(r, u);
    if (rv == 0) {
        rv = rv2;
    }
    u->role_changed = r->role != role0;
    u->role = r->role;
    u->term = r->term;
    u->leader = r->leader;
    CRAFT_DASSERT(raft__invariants_ok(r));
    return rv;
}
