/*
 * Leader election: follower and candidate ticks, pre-vote (thesis §9.6),
 * RequestVote and its reply (Raft paper §5.2, §5.4.1), and leadership
 * transfer (thesis §3.10).
 *
 * Invariants:
 *   1. A vote is granted only to a candidate whose log is at least as
 *      up-to-date as ours (§5.4.1: compare last terms, then last indices).
 *   2. At most one real vote per term: granted only when r->vote is 0 (and
 *      no leader is known) or already names the candidate.
 *   3. A pre-vote changes no state of the voter: neither term nor vote.
 *   4. A candidate counts its own vote only once it is durable, so a crash
 *      cannot make it vote twice in its own term.
 */
#include "raft/core.h"
#include "util/assert.h"

void raft__tick_election(struct raft *r)
{
    CRAFT_ASSERT(r->role != RAFT_LEADER);
    r->election_elapsed++;
    if (r->election_elapsed >= r->election_timeout) {
        /* §5.2: no word from a leader for a whole (randomized) timeout. */
        (void)raft__campaign(r, r->opts.pre_vote, false);
    }
}

static void send_votes(struct raft *r, bool pre, bool transfer)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i == r->self) {
            continue;
        }
        struct raft_message m = {
            .type = RAFT_MSG_VOTE,
            .from = r->id,
            .to = r->config.ids[i],
            /* §9.6: a pre-vote asks about the term we would move to. */
            .term = pre ? r->term + 1 : r->term,
            .vote = {.last_index = raft__log_last(&r->log),
                     .last_term = raft__log_last_term(&r->log),
                     .pre = pre,
                     .transfer = transfer}};
        (void)raft__send(r, &m);
    }
}

int raft__campaign(struct raft *r, bool pre, bool transfer)
{
    CRAFT_ASSERT(r->role != RAFT_LEADER);
    if (pre) {
        raft__become_pre_candidate(r);
    } else {
        raft__become_candidate(r, transfer);
    }
    /* The one request besides a leader's appends that goes out before the
     * state it carries is durable (raft.h, persistence contract): the new
     * term and self-vote are still being written.  Safe, because tally
     * counts the self-vote only once durable (invariant 4); a crash before
     * that loses only this candidacy. */
    send_votes(r, pre, transfer);
    return raft__tally(r);
}

int raft__tally(struct raft *r)
{
    bool pre = r->role == RAFT_PRE_CANDIDATE;
    if (!pre && r->role != RAFT_CANDIDATE) {
        return 0;
    }
    /* Invariant 4: our own vote, and with it the term we would lead,
     * must be durable before we count it or act as leader in that term
     * (a crash would otherwise let us vote again in it). */
    bool own =
        pre || (r->hs_durable.term == r->term && r->hs_durable.vote == r->id);
    int yes = own, no = 0;
    for (unsigned i = 0; i < r->config.n; i++) {
        if (i != r->self) {
            yes += r->granted[i];
            no += r->responded[i] && !r->granted[i];
        }
    }
    if (yes >= raft__quorum(r) && own) {
        if (pre) {
            return raft__campaign(r, false, r->transfer_campaign);
        }
        return raft__become_leader(r);
    }
    if (no >= raft__quorum(r)) {
        /* Lost: wait for a leader or the next timeout as a follower. */
        raft__become_follower(r, 0);
    }
    return 0;
}

static bool log_up_to_date(const struct raft *r, const struct raft_message *m)
{
    raft_term last_term = raft__log_last_term(&r->log);
    if (m->vote.last_term != last_term) {
        return m->vote.last_term > last_term;
    }
    return m->vote.last_index >= raft__log_last(&r->log);
}

int raft__recv_vote(struct raft *r, const struct raft_message *m)
{
    CRAFT_ASSERT(m->term >= r->term);
    bool pre = m->vote.pre;
    /* A live leader never helps depose itself, even without leases. */
    bool can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
                    (pre && m->term > r->term && r->role != RAFT_LEADER);
    bool grant = can_vote && log_up_to_date(r, m);
    struct raft_message resp = {.type = RAFT_MSG_VOTE_RESP,
                                .from = r->id,
                                .to = m->from,
                                .term = r->term,
                                .vote_resp = {.granted = grant, .pre = pre}};
    raft__trace(r, "%s %svote to %llu", grant ? "grants" : "denies",
                pre ? "pre-" : "", (unsigned long long)m->from);
    if (!grant) {
        return raft__send(r, &resp);
    }
    if (pre) {
        /* Invariant 3: the grant is for the term asked about. */
        resp.term = m->term;
        return raft__send(r, &resp);
    }
    CRAFT_ASSERT(r->vote == 0 || r->vote == m->from);
    r->vote = m->from;
    /* Figure 2: granting a vote resets the election timer. */
    raft__reset_election_timer(r);
    return raft__send_ack(r, &resp); /* after the vote is durable */
}

int raft__recv_vote_resp(struct raft *r, const struct raft_message *m)
{
    bool pre = m->vote_resp.pre;
    if (pre != (r->role == RAFT_PRE_CANDIDATE)) {
        return 0; /* a reply to an earlier campaign */
    }
    if (r->role != RAFT_PRE_CANDIDATE && r->role != RAFT_CANDIDATE) {
        return 0;
    }
    if (pre && m->vote_resp.granted && m->term != r->term + 1) {
        return 0; /* a pre-vote grant from an older round */
    }
    int slot = raft__slot(r, m->from);
    r->responded[slot] = true;
    r->granted[slot] = m->vote_resp.granted;
    return raft__tally(r);
}

int raft__recv_timeout_now(struct raft *r, const struct raft_message *m)
{
    if (r->role == RAFT_LEADER || m->from != r->leader) {
        return 0;
    }
    raft__trace(r, "timeout-now from %llu", (unsigned long long)m->from);
    /* Thesis §3.10: the leader asked, so skip pre-vote and leases. */
    return raft__campaign(r, false, true);
}

int raft__transfer(struct raft *r, raft_id peer)
{
    int slot = raft__slot(r, peer);
    if (slot < 0 || peer == r->id) {
        return CRAFT_EINVAL;
    }
    if (r->role != RAFT_LEADER) {
        return CRAFT_ENOTLEADER;
    }
    if (r->transferee == peer) {
        return 0;
    }
    r->transferee = peer;
    r->transfer_elapsed = 0;
    r->timeout_now_sent = false;
    raft__trace(r, "transferring leadership to %llu", (unsigned long long)peer);
    raft__transfer_check(r, &r->prs[slot]);
    return 0;
}

/* Thesis §3.10: once the target's log is up to date, tell it to start an
 * election at once; new proposals are refused meanwhile so it stays so. */
void raft__transfer_check(struct raft *r, struct raft_progress *pr)
{
    if (r->role != RAFT_LEADER || r->transferee != pr->id ||
        r->timeout_now_sent) {
        return;
    }
    if (pr->match != raft__log_last(&r->log)) {
        (void)raft__send_append(r, pr, false);
        return;
    }
    struct raft_message m = {.type = RAFT_MSG_TIMEOUT_NOW,
                             .from = r->id,
                             .to = pr->id,
                             .term = r->term};
    if (raft__send(r, &m) == 0) {
        r->timeout_now_sent = true;
    }
}
