/*
 * Snapshots: compacting the log after the application saved its state, and
 * InstallSnapshot (Raft paper §7, thesis §5) in bounded chunks.
 *
 * The core never sees snapshot bytes on the sending side: its chunks name
 * (meta.index, meta.term, offset, len) and the runtime attaches the bytes
 * from its snapshot file.  On the receiving side each accepted chunk is
 * handed to the runtime to write (u.snapshot_chunk) and acknowledged once
 * durable, so a transfer resumes from the durable offset after loss.
 *
 * Invariants:
 *   1. The log base never passes the snapshot: base_index <= snap.index.
 *   2. Installing never moves the state machine backwards: a snapshot at or
 *      below the applied index is never installed.
 *   3. Entries after an installed snapshot are kept when the log agrees
 *      with it at its index (§7: "if existing log entry has same index and
 *      term as snapshot's last included entry, retain log entries
 *      following it"); otherwise the whole log is discarded.
 *   4. A transfer sends one snapshot, pinned in the follower's progress
 *      (index, term, size) from its first chunk to its end; only the retry
 *      timeout moves it to a newer one.
 *   5. At most one chunk per follower is in flight, and only the reply to
 *      it (or the retry timer) sends the next.
 */
#include <string.h>

#include "raft/core.h"
#include "util/alloc.h"
#include "util/assert.h"

/* Resend an unanswered chunk after this many heartbeat intervals. */
#define CHUNK_RETRY_BEATS 2

int raft__compact(struct raft *r, const struct raft_event *ev)
{
    raft_index index = ev->snapshot.index;
    if (index > r->applied || index == 0) {
        return CRAFT_EINVAL;
    }
    if (index <= r->snap.index) {
        return 0; /* not newer than what we have */
    }
    bool known;
    raft_term term = raft__log_term(&r->log, index, &known);
    CRAFT_ASSERT(known); /* base <= snap.index < index <= applied */
    r->snap.index = index;
    r->snap.term = term;
    r->snap.config = r->config;
    r->snap.size = ev->snapshot.size;
    raft_index trailing = ev->snapshot.trailing;
    raft_index base = index > trailing ? index - trailing : 0;
    if (base > r->log.base_index) {
        raft__log_compact(&r->log, base);
        r->out.compact_to = base;
    }
    raft__trace(r, "snapshot at %llu, log from %llu", (unsigned long long)index,
                (unsigned long long)raft__log_first(&r->log));
    return 0;
}

/* ---- leader --------------------------------------------------------- */

/* Send the next chunk of the snapshot pinned in pr, unless one is in
 * flight (invariant 5). */
int raft__send_snapshot(struct raft *r, struct raft_progress *pr)
{
    CRAFT_ASSERT(pr->state == RAFT_PROGRESS_SNAPSHOT);
    CRAFT_ASSERT(pr->snap_index > 0 && pr->snap_index <= r->snap.index);
    if (pr->snap_sent > pr->snap_acked) {
        return 0; /* invariant 5 */
    }
    if (pr->snap_acked >= pr->snap_size) {
        pr->snap_acked = 0; /* acked all yet not installed: start over */
    }
    uint64_t off = pr->snap_acked;
    uint64_t len = pr->snap_size - off;
    if (len > r->opts.snapshot_chunk_bytes) {
        len = r->opts.snapshot_chunk_bytes;
    }
    struct raft_message m = {
        .type = RAFT_MSG_SNAPSHOT,
        .from = r->id,
        .to = pr->id,
        .term = r->term,
        .snapshot = {.meta = {.index = pr->snap_index,
                              .term = pr->snap_term,
                              .config = r->config,
                              .size = pr->snap_size},
                     .offset = off,
                     .last = off + len == pr->snap_size,
                     .data = {.base = NULL, .len = (size_t)len}}};
    int rv = raft__send(r, &m);
    if (rv == 0) {
        pr->snap_sent = off + len;
        /* An empty snapshot is one empty chunk; mark it sent. */
        if (len == 0) {
            pr->snap_sent = 1;
        }
        pr->snap_idle = 0;
    }
    return rv;
}

/*
 * The retry timer of a transfer.  A chunk unanswered for CHUNK_RETRY_BEATS
 * heartbeat intervals (or opts.snapshot_retry_ticks if longer) was lost -- by
 * the network, or by the runtime, which drops chunks of a snapshot it no longer
 * holds (raft.h).  The transfer stays pinned to its snapshot while it
 * progresses, so a leader that compacts more often than one transfer takes
 * still gets its followers across; only on this timeout, if a newer snapshot
 * has replaced the pinned one, does it move to the newest from offset 0.
 */
void raft__tick_snapshot(struct raft *r, struct raft_progress *pr)
{
    CRAFT_ASSERT(pr->state == RAFT_PROGRESS_SNAPSHOT);
    /* Resend only to a follower that answers at all (its heartbeat
     * replies reset ticks_since_contact): chunks are large. */
    unsigned retry = CHUNK_RETRY_BEATS * r->opts.heartbeat_ticks;
    if (r->opts.snapshot_retry_ticks > retry) {
        retry = r->opts.snapshot_retry_ticks;
    }
    if (++pr->snap_idle < retry ||
        pr->ticks_since_contact >= r->opts.election_ticks_max) {
        return;
    }
    if (pr->snap_index != r->snap.index || pr->snap_term != r->snap.term) {
        raft__trace(r, "snapshot %llu to %llu unanswered, sending %llu",
                    (unsigned long long)pr->snap_index,
                    (unsigned long long)pr->id,
                    (unsigned long long)r->snap.index);
        raft__progress_snapshot(pr, &r->snap);
    } else {
        pr->snap_sent = pr->snap_acked; /* presumed lost: resend */
    }
    (void)raft__send_snapshot(r, pr);
}

int raft__recv_snapshot_resp(struct raft *r, const struct raft_message *m)
{
    if (r->role != RAFT_LEADER) {
        return 0;
    }
    const struct raft_msg_snapshot_resp *s = &m->snapshot_resp;
    struct raft_progress *pr = &r->prs[raft__slot(r, m->from)];
    if (s->done) {
        if (s->index > raft__log_last(&r->log)) {
            return CRAFT_EPROTO;
        }
        /* Like a successful append reply: match only moves forward.  Only
         * the transfer in progress ends here; a duplicate or late "done"
         * (the network may repeat it) changes nothing else. */
        if (s->index > pr->match) {
            pr->match = s->index;
            if (pr->next <= pr->match) {
                pr->next = pr->match + 1;
            }
            raft__inflight_free_to(r, pr, pr->match);
        }
        if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
            if (pr->match >= pr->next - 1) {
                raft__progress_replicate(pr);
            } else {
                raft__progress_probe(pr);
            }
        }
        raft__maybe_commit(r);
        raft__pump(r, pr);
        return 0;
    }
    if (pr->state != RAFT_PROGRESS_SNAPSHOT || s->index != pr->snap_index ||
        s->next_offset > pr->snap_size) {
        return 0; /* stale */
    }
    if (pr->snap_sent > pr->snap_acked && s->next_offset == pr->snap_sent) {
        /* The reply to the chunk in flight: send the next one.  Only this
         * reply may trigger a send -- answering duplicates or stale
         * replies as well would multiply the chunks in flight. */
        pr->snap_acked = s->next_offset;
        return raft__send_snapshot(r, pr);
    }
    if (s->next_offset < pr->snap_acked) {
        /* The follower lost its partial copy (it restarted): the retry
         * timer resumes from where it is. */
        pr->snap_acked = s->next_offset;
    }
    return 0;
}

/* ---- follower ------------------------------------------------------- */

bool raft__chunk_valid(const struct raft_message *m)
{
    const struct raft_msg_snapshot *s = &m->snapshot;
    if (s->meta.term == 0 || s->meta.term > m->term || s->meta.config.n == 0 ||
        s->meta.config.n > RAFT_MEMBERS_MAX ||
        s->data.len > RAFT_CHUNK_BYTES_MAX || s->offset > s->meta.size ||
        s->data.len > s->meta.size - s->offset) {
        return false;
    }
    /* The snapshot's members: real ids (0 means "none"), each once. */
    for (unsigned i = 0; i < s->meta.config.n; i++) {
        if (s->meta.config.ids[i] == 0) {
            return false;
        }
        for (unsigned j = 0; j < i; j++) {
            if (s->meta.config.ids[j] == s->meta.config.ids[i]) {
                return false;
            }
        }
    }
    return s->last == (s->offset + s->data.len == s->meta.size);
}

int raft__recv_snapshot(struct raft *r, const struct raft_message *m)
{
    if (r->role == RAFT_LEADER) {
        return CRAFT_EPROTO;
    }
    CRAFT_DASSERT(raft__chunk_valid(m)); /* checked on receipt */
    if (r->role != RAFT_FOLLOWER || r->leader != m->from) {
        raft__become_follower(r, m->from);
    }
    r->election_elapsed = 0;
    const struct raft_msg_snapshot *s = &m->snapshot;
    struct raft_message resp = {.type = RAFT_MSG_SNAPSHOT_RESP,
                                .from = r->id,
                                .to = m->from,
                                .term = r->term,
                                .snapshot_resp = {.index = s->meta.index}};
    if (s->meta.index <= r->commit) {
        /* We already hold all of it (invariant 2). */
        resp.snapshot_resp.done = true;
        resp.snapshot_resp.next_offset = s->meta.size;
        return raft__send_ack(r, &resp);
    }
    bool same = r->in_snap && r->in_meta.index == s->meta.index &&
                r->in_meta.term == s->meta.term &&
                r->in_meta.size == s->meta.size;
    if (s->offset != 0 && !(same && s->offset == r->in_offset)) {
        /* Out of order: tell the leader where to resume. */
        resp.snapshot_resp.next_offset = same ? r->in_offset : 0;
        return raft__send_ack(r, &resp);
    }
    void *copy = NULL;
    if (s->data.len > 0) {
        copy = craft_malloc(r->alloc, s->data.len);
        if (copy == NULL) {
            return CRAFT_ENOMEM;
        }
        memcpy(copy, s->data.base, s->data.len);
    }
    CRAFT_ASSERT(!r->out.has_chunk);
    r->out.chunk_data = copy;
    r->out.has_chunk = true;
    r->out.chunk.meta = s->meta;
    r->out.chunk.offset = s->offset;
    r->out.chunk.data.base = copy;
    r->out.chunk.data.len = s->data.len;
    r->out.chunk.last = s->last;
    r->in_snap = !s->last;
    r->in_meta = s->meta;
    r->in_offset = s->offset + s->data.len;
    if (s->last) {
        bool known;
        raft_term t = raft__log_term(&r->log, s->meta.index, &known);
        if (known && t != s->meta.term) {
            /* The log disagrees with the snapshot: its tail was never
             * committed.  Cut it in the same write, so that a crash
             * cannot leave the new snapshot beside a contradicting log. */
            raft__truncate(r, s->meta.index);
        }
    }
    resp.snapshot_resp.next_offset = r->in_offset;
    resp.snapshot_resp.done = s->last;
    return raft__send_ack(r, &resp);
}

/* A chunk is durable; if it was the last, the snapshot is current. */
void raft__snapshot_durable(struct raft *r, const struct raft_persist_rec *rec)
{
    if (!rec->chunk_last) {
        return;
    }
    const struct raft_snapshot_meta *meta = &rec->chunk_meta;
    if (meta->index <= r->snap.index) {
        return;
    }
    r->snap = *meta;
    if (meta->index <= r->applied) {
        /* Invariant 2: the state machine is already past it; it only
         * serves as our durable snapshot from now on. */
        return;
    }
    bool known;
    raft_term t = raft__log_term(&r->log, meta->index, &known);
    if (known && t == meta->term) {
        raft__log_compact(&r->log, meta->index); /* invariant 3 */
    } else {
        /* Drop the whole old log from storage, in order after the writes
         * still in flight: they may carry entries below the snapshot that
         * would otherwise land after compact_to already cleared them. */
        raft_index from = r->log.base_index + 1;
        if (r->out.truncate_from == 0 || from < r->out.truncate_from) {
            r->out.truncate_from = from;
        }
        raft__log_reset(&r->log, meta->index, meta->term);
        for (size_t k = 0; k < r->n_recs; k++) {
            if (r->recs[k].last > meta->index) {
                r->recs[k].last = meta->index;
            }
        }
        if (r->role != RAFT_FOLLOWER) {
            /* Voters judged our old log (§5.4.1); a campaign must not
             * go on with a different one. */
            CRAFT_ASSERT(r->role != RAFT_LEADER);
            raft__become_follower(r, 0);
        }
    }
    if (r->durable < meta->index) {
        r->durable = meta->index;
    }
    if (r->durable > raft__log_last(&r->log)) {
        r->durable = raft__log_last(&r->log);
    }
    if (r->commit < meta->index) {
        r->commit = meta->index;
    }
    r->applied = meta->index;
    CRAFT_ASSERT(r->log.base_index == meta->index);
    CRAFT_ASSERT(r->durable >= r->applied);
    r->out.install = *meta;
    r->out.has_install = true;
    r->out.compact_to = meta->index;
    raft__trace(r, "installed snapshot %llu", (unsigned long long)meta->index);
}
