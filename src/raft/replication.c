/*
 * Log replication: proposals, AppendEntries and its reply, heartbeats and
 * the commit rule (Raft paper §5.3, §5.4).
 *
 * Invariants:
 *   1. A follower appends only after the consistency check on (prev_index,
 *      prev_term) passes, and truncates only at the first entry whose term
 *      conflicts (§5.3) -- never an entry <= its commit index.
 *   2. The leader never overwrites or deletes its own entries (Figure 3,
 *      Leader Append-Only).
 *   3. The leader commits index N only if an entry of its current term is
 *      at N and a majority holds N durably (§5.4.2, Figure 8); itself only
 *      up to its durable index.
 *   4. The commit index never decreases, on any node.
 *   5. Each reply is matched to the request it answers: a success moves
 *      match only forward; a rejection counts only if it answers the
 *      current probe (rejected == next - 1) or, when pipelining, rejects
 *      an index above match.
 */
#include "raft/core.h"
#include "util/alloc.h"
#include "util/assert.h"

int raft__propose(struct raft *r, struct raft_event *ev)
{
    if (r->role != RAFT_LEADER || r->transferee != 0) {
        return CRAFT_ENOTLEADER;
    }
    unsigned n = ev->propose.n;
    if (n == 0 || n > RAFT_PROPOSE_MAX || ev->propose.bufs == NULL) {
        return CRAFT_EINVAL;
    }
    for (unsigned k = 0; k < n; k++) {
        if (ev->propose.bufs[k].len > RAFT_ENTRY_BYTES_MAX) {
            return CRAFT_ETOOBIG; /* could never be sent */
        }
    }
    if (raft__log_reserve(&r->log, n) != 0) {
        return CRAFT_ENOMEM;
    }
    raft_index first = raft__log_last(&r->log) + 1;
    for (unsigned k = 0; k < n; k++) {
        if (raft__log_append(&r->log, r->term, RAFT_ENTRY_COMMAND,
                             &ev->propose.bufs[k]) != 0) {
            /* Nothing was handed out yet: drop the partial batch. */
            raft__log_truncate(&r->log, first);
            return CRAFT_ENOMEM;
        }
    }
    raft__appended(r, first);
    ev->propose.index = first;
    ev->propose.term = r->term;
    /* Send at once, pipelined, while our own write is in flight. */
    raft__broadcast_append(r);
    return 0;
}

/* ---- leader: sending ------------------------------------------------ */

static struct raft_message append_msg(const struct raft *r,
                                      const struct raft_progress *pr,
                                      raft_index prev, raft_term prev_term)
{
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .from = r->id,
                             .to = pr->id,
                             .term = r->term,
                             .append = {.prev_index = prev,
                                        .prev_term = prev_term,
                                        .commit = r->commit,
                                        .read_round = r->read_round}};
    return m;
}

/* Entries from `from` that fit one message (at least one if any). */
static size_t batch(const struct raft *r, raft_index from)
{
    raft_index last = raft__log_last(&r->log);
    size_t n = 0, bytes = 0;
    for (raft_index i = from; i <= last && n < r->opts.max_msg_entries; i++) {
        size_t len = raft__log_get(&r->log, i)->buf.len;
        if (n > 0 && bytes + len > r->opts.max_msg_bytes) {
            break;
        }
        bytes += len;
        n++;
    }
    return n;
}

/* Send entries from pr->next (probe: even none, to find where our logs
 * agree).  Falls back to a snapshot when next - 1 is compacted away. */
int raft__send_append(struct raft *r, struct raft_progress *pr, bool probe)
{
    CRAFT_ASSERT(r->role == RAFT_LEADER);
    if (pr->state == RAFT_PROGRESS_SNAPSHOT ||
        (pr->state == RAFT_PROGRESS_REPLICATE && raft__inflight_full(r, pr))) {
        return 0; /* flow control: the window decides */
    }
    raft_index prev = pr->next - 1;
    bool known;
    raft_term prev_term = raft__log_term(&r->log, prev, &known);
    if (!known) {
        CRAFT_ASSERT(prev < r->log.base_index);
        raft__progress_snapshot(pr, &r->snap);
        return raft__send_snapshot(r, pr);
    }
    /* A repeated probe carries no entries: the follower may be down, and
     * resending a full batch every heartbeat would waste bandwidth. */
    size_t n = probe && pr->probe_sent ? 0 : batch(r, pr->next);
    if (n == 0 && !probe) {
        return 0;
    }
    struct raft_message m = append_msg(r, pr, prev, prev_term);
    m.append.n_entries = n;
    int rv = raft__send(r, &m);
    if (rv != 0) {
        return rv;
    }
    if (pr->state == RAFT_PROGRESS_REPLICATE && n > 0) {
        pr->next += n;
        raft__inflight_add(r, pr, pr->next - 1);
    } else if (pr->state == RAFT_PROGRESS_PROBE) {
        pr->probe_sent = true;
    }
    return 0;
}

/* Send whatever flow control allows to one follower. */
void raft__pump(struct raft *r, struct raft_progress *pr)
{
    switch ((enum raft_progress_state)pr->state) {
    case RAFT_PROGRESS_PROBE:
        if (!pr->probe_sent) {
            (void)raft__send_append(r, pr, true);
        }
        break;
    case RAFT_PROGRESS_REPLICATE:
        while (pr->state == RAFT_PROGRESS_REPLICATE &&
               pr->next <= raft__log_last(&r->log) &&
               !raft__inflight_full(r, pr)) {
            if (raft__send_append(r, pr, false) != 0) {
                break;
            }
        }
        break;
    case RAFT_PROGRESS_SNAPSHOT:
        break;
    }
}

void raft__broadcast_append(struct raft *r)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i != r->self) {
            raft__pump(r, &r->prs[i]);
        }
    }
}

/* A heartbeat proves leadership (§5.2) and carries the commit index.  Its
 * prev is the follower's match, which the follower is known to hold, so
 * it never truncates and lets commit = min(commit, match) through. */
void raft__send_heartbeat(struct raft *r, struct raft_progress *pr)
{
    if (pr->state == RAFT_PROGRESS_PROBE) {
        (void)raft__send_append(r, pr, true); /* re-probe */
        return;
    }
    if (pr->state == RAFT_PROGRESS_REPLICATE &&
        pr->next <= raft__log_last(&r->log) && !raft__inflight_full(r, pr)) {
        raft__pump(r, pr); /* entries waiting (an earlier send failed) */
        return;
    }
    bool known;
    raft_index prev = pr->match;
    raft_term prev_term = raft__log_term(&r->log, prev, &known);
    if (!known) {
        prev = 0; /* compacted: a bare heartbeat */
        prev_term = 0;
    }
    struct raft_message m = append_msg(r, pr, prev, prev_term);
    (void)raft__send(r, &m);
}

void raft__broadcast_heartbeat(struct raft *r)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i != r->self) {
            raft__send_heartbeat(r, &r->prs[i]);
        }
    }
}

static bool quorum_active(struct raft *r)
{
    int active = 1; /* ourselves */
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i != r->self &&
            r->prs[i].ticks_since_contact < r->opts.election_ticks_max) {
            active++;
        }
    }
    return active >= raft__quorum(r);
}

/* Loss detection in REPLICATE, measured in time: appends in flight and
 * match unmoved for two heartbeat intervals means one was probably lost
 * (the transport gives no notice; a lost append in the middle of the
 * window shows up sooner, as a rejection of the next one).  Probe from
 * match to resend.  Counting ticks, not heartbeats sent, keeps extra
 * heartbeats (ReadIndex rounds) from demoting a healthy follower. */
static void tick_stall(struct raft *r, struct raft_progress *pr)
{
    if (pr->in_count == 0) {
        pr->stall_ticks = 0;
        return;
    }
    if (++pr->stall_ticks < 2 * (uint64_t)r->opts.heartbeat_ticks) {
        return;
    }
    raft__trace(r, "no progress from %llu for %llu ticks, probing",
                (unsigned long long)pr->id,
                (unsigned long long)pr->stall_ticks);
    raft__progress_probe(pr);
    (void)raft__send_append(r, pr, true);
}

void raft__tick_leader(struct raft *r)
{
    CRAFT_ASSERT(r->role == RAFT_LEADER);
    r->heartbeat_elapsed++;
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i != r->self) {
            r->prs[i].ticks_since_contact++;
        }
    }
    /* Thesis §6.2 check-quorum: a leader that has not heard from a
     * majority within an election timeout may have been deposed; step
     * down so that its clients go elsewhere. */
    if (r->opts.check_quorum && !quorum_active(r)) {
        raft__trace(r, "check-quorum failed, stepping down");
        raft__become_follower(r, 0);
        return;
    }
    if (r->transferee != 0 &&
        ++r->transfer_elapsed >= r->opts.election_ticks_max) {
        raft__trace(r, "leadership transfer timed out");
        r->transferee = 0;
    }
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i == r->self) {
            continue;
        }
        struct raft_progress *pr = &r->prs[i];
        if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
            raft__tick_snapshot(r, pr);
        } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
            tick_stall(r, pr);
        }
    }
    if (r->heartbeat_elapsed >= r->opts.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        raft__broadcast_heartbeat(r);
    }
}

/* ---- leader: commit ------------------------------------------------- */

void raft__maybe_commit(struct raft *r)
{
    CRAFT_ASSERT(r->role == RAFT_LEADER);
    raft_index m[RAFT_MEMBERS_MAX];
    unsigned n = r->config.n;
    for (unsigned i = 0; i < n; i++) {
        m[i] = i == r->self ? r->durable : r->prs[i].match;
    }
    /* Insertion sort, descending: n <= 16. */
    for (unsigned i = 1; i < n; i++) {
        raft_index v = m[i];
        unsigned j = i;
        for (; j > 0 && m[j - 1] < v; j--) {
            m[j] = m[j - 1];
        }
        m[j] = v;
    }
    raft_index idx = m[raft__quorum(r) - 1];
    CRAFT_ASSERT(idx <= raft__log_last(&r->log));
    bool known;
    if (idx > r->commit && raft__log_term(&r->log, idx, &known) == r->term) {
        /* Invariant 3 (Figure 8): only a current-term entry commits by
         * counting; earlier ones commit with it. */
        r->commit = idx;
        raft__read_check(r);
    }
}

/* ---- follower ------------------------------------------------------- */

/* Entries must be numbered on from prev and have sane terms; a leader that
 * sends anything else is broken or not a Raft peer.  Every entry has a
 * term >= 1 (terms start at 1; a restore refuses term 0, so accepting one
 * would leave the node unable to restart), and only the empty prefix
 * (prev_index 0) has term 0. */
bool raft__entries_valid(const struct raft_message *m)
{
    if ((m->append.prev_index == 0) != (m->append.prev_term == 0)) {
        return false;
    }
    raft_term t = m->append.prev_term;
    for (size_t k = 0; k < m->append.n_entries; k++) {
        const struct raft_entry *e = &m->append.entries[k];
        if (e->index != m->append.prev_index + 1 + k || e->term == 0 ||
            e->term < t || e->term > m->term ||
            (e->type != RAFT_ENTRY_COMMAND && e->type != RAFT_ENTRY_NOOP) ||
            (e->buf.len > 0 && e->buf.base == NULL)) {
            return false;
        }
        t = e->term;
    }
    return m->append.prev_term <= m->term;
}

static int reject(struct raft *r, const struct raft_message *m, raft_index prev)
{
    struct raft_message resp = {
        .type = RAFT_MSG_APPEND_RESP,
        .from = r->id,
        .to = m->from,
        .term = r->term,
        .append_resp = {.rejected = prev, .read_round = m->append.read_round}};
    bool known;
    raft_term t = raft__log_term(&r->log, prev, &known);
    if (!known) {
        /* Too short: next should be right after our last entry. */
        resp.append_resp.conflict_index = raft__log_last(&r->log) + 1;
    } else {
        /* §5.3 optimisation: skip the whole conflicting term at once. */
        resp.append_resp.conflict_term = t;
        resp.append_resp.conflict_index =
            prev > r->log.base_index ? raft__log_first_of_term(&r->log, prev)
                                     : prev;
    }
    /* A rejection depends on nothing durable: it only says "not here". */
    return raft__send(r, &resp);
}

int raft__recv_append(struct raft *r, const struct raft_message *m)
{
    if (r->role == RAFT_LEADER) {
        return CRAFT_EPROTO; /* two leaders in one term (§5.2 forbids) */
    }
    CRAFT_DASSERT(raft__entries_valid(m)); /* checked on receipt */
    if (r->role != RAFT_FOLLOWER || r->leader != m->from) {
        raft__become_follower(r, m->from);
    }
    r->election_elapsed = 0;
    raft_index prev = m->append.prev_index;
    raft_term prev_term = m->append.prev_term;
    const struct raft_entry *es = m->append.entries;
    size_t n = m->append.n_entries;
    struct raft_message resp = {
        .type = RAFT_MSG_APPEND_RESP,
        .from = r->id,
        .to = m->from,
        .term = r->term,
        .append_resp = {.success = true, .read_round = m->append.read_round}};
    if (prev < r->commit) {
        /* Our log matches every leader's up to commit (§5.4.3, Leader
         * Completeness), and may be compacted there: skip that part. */
        size_t skip = (size_t)(r->commit - prev);
        if (skip >= n) {
            resp.append_resp.index = r->commit;
            return raft__send_ack(r, &resp);
        }
        bool known;
        es += skip;
        n -= skip;
        prev = r->commit;
        prev_term = raft__log_term(&r->log, prev, &known);
        CRAFT_ASSERT(known);
        if (es[-1].term != prev_term) {
            return CRAFT_EPROTO; /* contradicts a committed entry */
        }
    } else {
        bool known;
        raft_term t = raft__log_term(&r->log, prev, &known);
        if (!known || t != prev_term) {
            return reject(r, m, prev);
        }
    }
    for (size_t k = 0; k < n; k++) {
        raft_index idx = prev + 1 + k;
        bool known;
        raft_term t = raft__log_term(&r->log, idx, &known);
        if (known && t == es[k].term) {
            continue; /* already have it */
        }
        if (known) {
            raft__trace(r, "conflict at %llu, truncating",
                        (unsigned long long)idx);
            raft__truncate(r, idx); /* invariant 1: idx > commit */
        }
        if (raft__log_append(&r->log, es[k].term, es[k].type, &es[k].buf)) {
            return CRAFT_ENOMEM; /* persist what we have; no ack */
        }
        raft__appended(r, idx);
    }
    raft_index matched = prev + n;
    CRAFT_ASSERT(matched <= raft__log_last(&r->log));
    raft_index c = m->append.commit < matched ? m->append.commit : matched;
    if (c > r->commit) {
        r->commit = c; /* invariant 4 */
    }
    CRAFT_ASSERT(r->commit <= raft__log_last(&r->log));
    resp.append_resp.index = matched;
    return raft__send_ack(r, &resp);
}

/* ---- leader: replies ------------------------------------------------ */

static raft_index backtrack(const struct raft *r,
                            const struct raft_progress *pr,
                            const struct raft_msg_append_resp *a)
{
    raft_index next = a->conflict_index;
    if (a->conflict_term != 0) {
        raft_index j =
            raft__log_last_of_term(&r->log, a->conflict_term, a->rejected);
        if (j != 0) {
            next = j + 1;
        }
    }
    if (next > a->rejected) {
        next = a->rejected; /* always move back */
    }
    if (next <= pr->match) {
        next = pr->match + 1;
    }
    return next;
}

static void on_success(struct raft *r, struct raft_progress *pr,
                       raft_index index)
{
    if (pr->state == RAFT_PROGRESS_PROBE && index + 1 >= pr->next) {
        /* The probe was answered: the logs agree up to index. */
        pr->match = index > pr->match ? index : pr->match;
        raft__progress_replicate(pr);
    } else if (index > pr->match) {
        pr->match = index;
        pr->stall_ticks = 0;
        if (pr->next <= index) {
            pr->next = index + 1;
        }
        raft__inflight_free_to(r, pr, index);
        if (pr->state == RAFT_PROGRESS_SNAPSHOT && index >= pr->snap_index) {
            raft__progress_replicate(pr);
        }
    } else {
        return;
    }
    raft__maybe_commit(r);
    raft__transfer_check(r, pr);
}

int raft__recv_append_resp(struct raft *r, const struct raft_message *m)
{
    if (r->role != RAFT_LEADER) {
        return 0;
    }
    const struct raft_msg_append_resp *a = &m->append_resp;
    struct raft_progress *pr = &r->prs[raft__slot(r, m->from)];
    if (a->success && a->index > raft__log_last(&r->log)) {
        return CRAFT_EPROTO; /* claims entries we never had */
    }
    if (a->read_round > pr->read_round && a->read_round <= r->read_round) {
        pr->read_round = a->read_round;
    }
    if (a->success) {
        on_success(r, pr, a->index);
    } else if ((pr->state == RAFT_PROGRESS_REPLICATE &&
                a->rejected > pr->match) ||
               (pr->state == RAFT_PROGRESS_PROBE &&
                a->rejected + 1 == pr->next)) {
        raft_index next = backtrack(r, pr, a);
        raft__progress_probe(pr);
        pr->next = next;
        raft__trace(r, "%llu rejected %llu, next %llu",
                    (unsigned long long)m->from,
                    (unsigned long long)a->rejected, (unsigned long long)next);
    }
    raft__pump(r, pr);
    raft__read_check(r);
    return 0;
}
