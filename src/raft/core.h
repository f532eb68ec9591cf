/*
 * The state of one Raft core and the functions its files share.
 *
 * Files, one per concern (each handler lives beside its reply handler):
 *   raft.c        raft_new/raft_free/raft_step dispatch, term and role
 *                 transitions, assembling the update
 *   persist.c     persistence bookkeeping, held acknowledgements, apply
 *   election.c    ticks of followers and candidates, (pre-)votes,
 *                 leadership transfer
 *   replication.c proposals, AppendEntries and its reply, commit
 *   progress.c    per-follower flow control (probe/replicate/snapshot)
 *   snapshot.c    compaction, InstallSnapshot chunks and their replies
 *   readindex.c   ReadIndex reads (thesis §6.4)
 *   codec.c       the wire format
 *   status.c      raft_status, raft_entry_at, names
 *   invariants.c  raft__invariants_ok
 *
 * Role transitions (Raft paper Figure 4, thesis §9.6 pre-vote):
 *
 *   from \ event     timeout         quorum of   higher term   leader of
 *                                    grants      seen          term seen
 *   follower         pre-candidate*  -           follower      follower
 *   pre-candidate    pre-candidate*  candidate   follower      follower
 *   candidate        pre-candidate*  leader      follower      follower
 *   leader           (check-quorum   -           follower      -
 *                     fails: follower)
 *   (* candidate directly when pre_vote is off or on RAFT_MSG_TIMEOUT_NOW)
 *
 * Only raft__become_* change r->role, and only raft__term_advance changes
 * r->term (and it always clears r->vote).
 */
#ifndef CRAFT_RAFT_CORE_H
#define CRAFT_RAFT_CORE_H

#include "craft/raft.h"
#include "raft/log.h"
#include "util/rng.h"

/* Per-follower replication state, kept by the leader (slot of config). */
struct raft_progress {
    raft_id id;
    uint8_t state;    /* enum raft_progress_state */
    raft_index match; /* highest index known replicated durably */
    raft_index next;  /* next index to send */
    bool probe_sent;  /* PROBE: an append is outstanding */
    uint64_t ticks_since_contact;
    /* REPLICATE: ticks with appends in flight since match last moved (a
     * tail append was probably lost when this grows too large). */
    uint64_t stall_ticks;
    uint64_t read_round; /* highest ReadIndex round acknowledged */
    /* REPLICATE: last index of each append in flight, a ring. */
    raft_index *inflight;
    unsigned in_head;
    unsigned in_count;
    /* SNAPSHOT: which snapshot is being sent and how far.  The snapshot
     * is pinned for the life of the transfer (a newer one taken meanwhile
     * does not restart it); see raft__tick_snapshot. */
    raft_index snap_index;
    raft_term snap_term;
    uint64_t snap_size;
    uint64_t snap_acked; /* bytes the follower holds durably */
    uint64_t snap_sent;  /* bytes sent */
    unsigned snap_idle;  /* ticks without progress */
};

/* A write handed to the runtime, not yet reported durable. */
struct raft_persist_rec {
    uint64_t seq;
    raft_index last;           /* log last index once it is durable */
    struct raft_hard_state hs; /* hard state once it is durable */
    bool chunk;                /* carries a snapshot chunk */
    bool chunk_last;
    uint64_t chunk_end; /* offset after the chunk */
    struct raft_snapshot_meta chunk_meta;
};

/* An acknowledgement waiting for the write it depends on. */
struct raft_held {
    uint64_t seq;
    struct raft_message msg;
};

struct raft_pending_read {
    uint64_t ctx;
    raft_index index;
    uint64_t round; /* the heartbeat round that must confirm it */
};

/* What one raft_step produces; reset at the start of every step. */
struct raft_out {
    struct raft_message *msgs;
    raft_index *msg_first; /* first entry index of each append, or 0 */
    size_t n_msgs, cap_msgs;
    struct raft_held *acks; /* acks created in this step */
    size_t n_acks, cap_acks;
    struct raft_read *reads;
    size_t n_reads, cap_reads;
    raft_index truncate_from; /* 0 or lowest truncation this step */
    raft_index dirty_from;    /* 0 or first index appended this step */
    struct raft_snapshot_chunk chunk;
    bool has_chunk;
    void *chunk_data; /* owned copy of the chunk bytes */
    struct raft_snapshot_meta install;
    bool has_install;
    raft_index compact_to;
    raft_index apply_from; /* first index handed out this step, or 0 */
};

struct raft {
    const struct craft_alloc *alloc;
    raft_id id;
    unsigned self; /* slot of id in config */
    struct raft_config config;
    struct raft_options opts;
    struct rng rng;

    /* Hard state (in memory; durable copy below). */
    raft_term term;
    raft_id vote;

    uint8_t role;
    raft_id leader;
    raft_index commit;
    raft_index applied; /* last index handed out for applying */
    struct raft_log log;
    struct raft_snapshot_meta snap; /* latest durable snapshot; index 0 none */

    /* Timers, in ticks. */
    unsigned election_elapsed;
    unsigned election_timeout; /* randomized, in [min, max) */
    unsigned heartbeat_elapsed;

    /* Candidates: granted votes by slot. */
    bool granted[RAFT_MEMBERS_MAX];
    bool responded[RAFT_MEMBERS_MAX];
    bool transfer_campaign; /* campaigning on RAFT_MSG_TIMEOUT_NOW */

    /* Leaders. */
    struct raft_progress prs[RAFT_MEMBERS_MAX];
    raft_index term_start; /* index of this term's no-op */
    raft_id transferee;    /* leadership transfer target, or 0 */
    unsigned transfer_elapsed;
    bool timeout_now_sent;

    /* ReadIndex. */
    uint64_t read_round; /* last round started */
    bool round_pending;  /* reads wait for a round not yet started */
    struct raft_pending_read *reads;
    size_t n_reads, cap_reads;

    /* Persistence. */
    uint64_t seq_issued;
    uint64_t seq_done;
    struct raft_persist_rec *recs;
    size_t n_recs, cap_recs;
    struct raft_hard_state hs_issued;  /* last hard state handed out */
    struct raft_hard_state hs_durable; /* last hard state durable */
    raft_index durable;                /* log durable up to here */
    struct raft_held *held;
    size_t n_held, cap_held;

    /* Followers: an incoming snapshot. */
    bool in_snap;
    struct raft_snapshot_meta in_meta;
    uint64_t in_offset; /* bytes accepted (durable or being written) */

    /* Restore found a log tail contradicting the snapshot: the first
     * update truncates it from storage. */
    raft_index restore_truncate;

    struct raft_out out;
};

/* raft.c */
int raft__quorum(const struct raft *r);
int raft__slot(const struct raft *r, raft_id id); /* -1 if not a member */
void raft__trace(struct raft *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void raft__term_advance(struct raft *r, raft_term term);
void raft__become_follower(struct raft *r, raft_id leader);
void raft__become_pre_candidate(struct raft *r);
void raft__become_candidate(struct raft *r, bool transfer);
int raft__become_leader(struct raft *r);
void raft__reset_election_timer(struct raft *r);
/* Queue a message to send now; entries (first..first+n-1) are resolved at
 * the end of the step.  Returns 0 or CRAFT_ENOMEM (message dropped). */
int raft__send(struct raft *r, const struct raft_message *m);
/* Queue an acknowledgement that waits for every write issued so far. */
int raft__send_ack(struct raft *r, const struct raft_message *m);
void raft__truncate(struct raft *r, raft_index from);
void raft__appended(struct raft *r, raft_index index);

/* persist.c */
int raft__persist_reserve(struct raft *r);
int raft__persisted(struct raft *r, uint64_t seq);
int raft__persist_finish(struct raft *r, struct raft_update *u);
void raft__held_drop(struct raft *r);
void raft__apply(struct raft *r, struct raft_update *u);

/* election.c */
void raft__tick_election(struct raft *r);
int raft__campaign(struct raft *r, bool pre, bool transfer);
int raft__recv_vote(struct raft *r, const struct raft_message *m);
int raft__recv_vote_resp(struct raft *r, const struct raft_message *m);
int raft__recv_timeout_now(struct raft *r, const struct raft_message *m);
int raft__tally(struct raft *r);
int raft__transfer(struct raft *r, raft_id peer);
void raft__transfer_check(struct raft *r, struct raft_progress *pr);

/* replication.c */
int raft__propose(struct raft *r, struct raft_event *ev);
/* Whether an append's entries are numbered on from prev_index with sane
 * terms and types (checked before the message changes anything). */
bool raft__entries_valid(const struct raft_message *m);
int raft__recv_append(struct raft *r, const struct raft_message *m);
int raft__recv_append_resp(struct raft *r, const struct raft_message *m);
void raft__tick_leader(struct raft *r);
void raft__broadcast_append(struct raft *r);
void raft__broadcast_heartbeat(struct raft *r);
void raft__maybe_commit(struct raft *r);
void raft__send_heartbeat(struct raft *r, struct raft_progress *pr);
int raft__send_append(struct raft *r, struct raft_progress *pr, bool probe);
/* Send whatever flow control allows to one follower. */
void raft__pump(struct raft *r, struct raft_progress *pr);

/* progress.c */
int raft__progress_init(struct raft *r);
void raft__progress_close(struct raft *r);
void raft__progress_reset(struct raft *r);
void raft__progress_probe(struct raft_progress *pr);
void raft__progress_replicate(struct raft_progress *pr);
void raft__progress_snapshot(struct raft_progress *pr,
                             const struct raft_snapshot_meta *snap);
bool raft__inflight_full(const struct raft *r, const struct raft_progress *pr);
void raft__inflight_add(const struct raft *r, struct raft_progress *pr,
                        raft_index last);
void raft__inflight_free_to(const struct raft *r, struct raft_progress *pr,
                            raft_index index);

/* snapshot.c */
int raft__compact(struct raft *r, const struct raft_event *ev);
int raft__send_snapshot(struct raft *r, struct raft_progress *pr);
void raft__tick_snapshot(struct raft *r, struct raft_progress *pr);
/* Whether a snapshot chunk's fields are consistent. */
bool raft__chunk_valid(const struct raft_message *m);
int raft__recv_snapshot(struct raft *r, const struct raft_message *m);
int raft__recv_snapshot_resp(struct raft *r, const struct raft_message *m);
void raft__snapshot_durable(struct raft *r, const struct raft_persist_rec *rec);

/* readindex.c */
int raft__read(struct raft *r, uint64_t ctx);
void raft__read_check(struct raft *r);
void raft__reads_fail(struct raft *r, int status);
int raft__read_answer(struct raft *r, uint64_t ctx, int status,
                      raft_index index);

/* invariants.c */
bool raft__invariants_ok(const struct raft *r);

#endif /* CRAFT_RAFT_CORE_H */
