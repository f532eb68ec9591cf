/*
 * Read-only views of a core: raft_status, raft_entry_at and the names of
 * roles and message types.  Nothing here changes state, so these may be
 * called between steps at any time (never concurrently with a step).
 */
#include <string.h>

#include "raft/core.h"
#include "util/assert.h"

void raft_status(const struct raft *r, struct raft_status *st)
{
    CRAFT_ASSERT(r != NULL && st != NULL);
    memset(st, 0, sizeof *st);
    st->id = r->id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->leader;
    st->commit = r->commit;
    st->applied = r->applied;
    st->first_index = raft__log_first(&r->log);
    st->last_index = raft__log_last(&r->log);
    st->last_term = raft__log_last_term(&r->log);
    st->durable_index = r->durable;
    st->snapshot_index = r->snap.index;
    st->snapshot_term = r->snap.term;
    if (r->role != RAFT_LEADER) {
        return;
    }
    for (unsigned i = 0; i < r->config.n; i++) {
        const struct raft_progress *pr = &r->prs[i];
        struct raft_progress_status *ps = &st->progress[st->n_progress++];
        ps->id = r->config.ids[i];
        ps->match = i == r->self ? r->durable : pr->match;
        ps->next = i == r->self ? raft__log_last(&r->log) + 1 : pr->next;
        ps->state = i == r->self ? RAFT_PROGRESS_REPLICATE : pr->state;
        ps->ticks_since_contact = i == r->self ? 0 : pr->ticks_since_contact;
        CRAFT_DASSERT(ps->match < ps->next);
    }
    CRAFT_ASSERT(st->n_progress == r->config.n);
}

int raft_entry_at(const struct raft *r, raft_index i, struct raft_entry *out)
{
    if (i == 0 || i > raft__log_last(&r->log)) {
        return CRAFT_ENOTFOUND;
    }
    if (i <= r->log.base_index) {
        return CRAFT_ECOMPACTED;
    }
    *out = *raft__log_get(&r->log, i);
    CRAFT_DASSERT(out->index == i && out->term > 0);
    return 0;
}

const char *raft_role_name(int role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    default:
        return "unknown";
    }
}

const char *raft_msg_type_name(int type)
{
    switch (type) {
    case RAFT_MSG_VOTE:
        return "vote";
    case RAFT_MSG_VOTE_RESP:
        return "vote-resp";
    case RAFT_MSG_APPEND:
        return "append";
    case RAFT_MSG_APPEND_RESP:
        return "append-resp";
    case RAFT_MSG_SNAPSHOT:
        return "snapshot";
    case RAFT_MSG_SNAPSHOT_RESP:
        return "snapshot-resp";
    case RAFT_MSG_TIMEOUT_NOW:
        return "timeout-now";
    default:
        return "unknown";
    }
}
