/*
 * craft/raft.h -- the Raft consensus core (libcraft).
 *
 * The core is a deterministic state machine that does no I/O: no sockets,
 * files, threads, clock reads or global randomness.  A runtime (craftd's
 * src/node/, or the simulator in tests/sim/) feeds it events with
 * raft_step() and carries out the update that each step returns:
 *
 *     struct raft_event ev = {.type = RAFT_TICK};
 *     struct raft_update u;
 *     rv = raft_step(r, &ev, &u);
 *     1. persist u.hs / u.truncate_from / u.entries / u.snapshot_chunk, in
 *        the order of the updates, and when that is durable feed back
 *        {RAFT_PERSISTED, .persisted.seq = u.persist_seq};
 *     2. send every message of u.messages now (in parallel with 1);
 *     3. if u.install is set, restore the state machine from the snapshot
 *        that was just received, then apply u.committed in order;
 *     4. answer u.reads whose index is <= what has been applied.
 *
 * Everything the update points to is owned by the core and valid until the
 * next call of raft_step() or raft_free() on the same object (as LMDB
 * states its borrowed pointers).  Copy what must live longer.
 *
 * Persistence contract.  The core never puts into u.messages a message that
 * depends on state not yet reported durable: a vote or an append
 * acknowledgement waits inside the core until the RAFT_PERSISTED event that
 * covers what it claims.  Two requests are the exceptions, both safe:
 *   - a leader's own appends go out at once while its write is in flight;
 *     the leader counts itself towards a commit only once its write is
 *     reported durable;
 *   - a candidate's RequestVote goes out at once while its new term and
 *     self-vote are being written; the candidate counts its own vote, and
 *     becomes leader, only once that write is durable, so a crash before
 *     it loses nothing but its own candidacy: its self-vote was never
 *     counted, so voting in that term after the restart is its only
 *     counted vote there, and what the voters granted is theirs to make
 *     durable before they answer.
 * So a runtime may simply send every message it is given at once.
 *
 * The full contract for a runtime, every tunable and every invariant are in
 * docs/raft.md.
 */
#ifndef CRAFT_RAFT_H
#define CRAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "craft/common.h"

typedef uint64_t raft_term;
typedef uint64_t raft_index;
typedef uint64_t raft_id; /* a member id; 0 means "none" */

/* Members of one cluster.  craftd runs 1-7; the core allows up to 16. */
#define RAFT_MEMBERS_MAX 16
/* Commands in one RAFT_PROPOSE event. */
#define RAFT_PROPOSE_MAX 1024
/* Wire limits, enforced by raft_message_decode: bytes of one entry, bytes
 * of one snapshot chunk. */
#define RAFT_ENTRY_BYTES_MAX (64u << 20)
#define RAFT_CHUNK_BYTES_MAX (64u << 20)
/* Version byte of the wire format. */
#define RAFT_WIRE_VERSION 1

/* A byte range, borrowed or owned as each use states. */
struct raft_buffer {
    void *base;
    size_t len;
};

enum raft_entry_type {
    RAFT_ENTRY_COMMAND = 1, /* an application command */
    RAFT_ENTRY_NOOP = 2     /* appended by a leader on taking office */
};

/* One log entry.  Indices start at 1; term 0 and index 0 mean "none". */
struct raft_entry {
    raft_term term;
    raft_index index;
    uint8_t type; /* enum raft_entry_type */
    struct raft_buffer buf;
};

/* The voting members.  Fixed for the life of a cluster (membership changes
 * are not supported yet). */
struct raft_config {
    unsigned n;
    raft_id ids[RAFT_MEMBERS_MAX];
};

/* What a node must have on stable storage before it answers anyone. */
struct raft_hard_state {
    raft_term term;
    raft_id vote; /* 0 when it has not voted in term */
};

/* Describes a snapshot of the application state. */
struct raft_snapshot_meta {
    raft_index index; /* last index the snapshot covers */
    raft_term term;   /* term of that entry */
    struct raft_config config;
    uint64_t size; /* bytes of application data */
};

enum raft_role {
    RAFT_FOLLOWER = 1,
    RAFT_PRE_CANDIDATE,
    RAFT_CANDIDATE,
    RAFT_LEADER
};

/*
 * Tunables.  raft_options_default() fills in the defaults given here; one
 * tick is whatever the runtime makes it (craftd: 10 ms).
 */
struct raft_options {
    /* Election timeout, drawn uniformly from [min, max) ticks at every reset
     * (Raft paper §5.2).  Default 25..50. */
    unsigned election_ticks_min;
    unsigned election_ticks_max;
    /* Leader heartbeat interval.  Default 10 ticks: at 10 ms a tick that is
     * 10 heartbeats per second per follower when idle. */
    unsigned heartbeat_ticks;
    /* Batching: at most this many entries and bytes of entry data in one
     * append message.  Default 64 entries, 1 MiB. */
    unsigned max_msg_entries;
    size_t max_msg_bytes;
    /* Pipelining: append messages in flight per follower in replicate
     * state.  Default 64. */
    unsigned max_inflight;
    /* Snapshot transfer chunk size.  Default 1 MiB. */
    size_t snapshot_chunk_bytes;
    /* Resend a snapshot chunk left unanswered for this many ticks (never
     * sooner than two heartbeat intervals, the default when 0).  The
     * follower answers a chunk once it is durable, so the time must cover
     * sending, writing and syncing one chunk: a shorter one resends chunks
     * whose answer is merely slow. */
    unsigned snapshot_retry_ticks;
    /* Thesis §9.6 pre-vote; check-quorum (a leader that has not heard from
     * a majority for an election timeout steps down).  Default both on. */
    bool pre_vote;
    bool check_quorum;
    /* Optional trace hook for tests and debugging: called synchronously with
     * one human-readable line per notable transition.  May be NULL. */
    void (*trace)(void *data, const char *line);
    void *trace_data;
};

CRAFT_API void raft_options_default(struct raft_options *opts);

/* State handed over at start-up, read back from stable storage. */
struct raft_restore {
    struct raft_hard_state hs;
    /* The latest durable snapshot, or NULL.  The application must already
     * have restored its state from it. */
    const struct raft_snapshot_meta *snapshot;
    /* Durable entries, contiguous, in order, starting at or before
     * snapshot->index + 1 (entries the snapshot covers are skipped; if the
     * entry at snapshot->index disagrees with the snapshot's term, every
     * later entry is discarded and the first update truncates them from
     * storage).  Entries or a snapshot of a term above hs.term (the log
     * became durable but the hard state did not) raise the term, with no
     * vote, and the first update persists it.  Copied. */
    const struct raft_entry *entries;
    size_t n_entries;
};

/* ---- messages ------------------------------------------------------- */

enum raft_msg_type {
    RAFT_MSG_VOTE = 1,      /* RequestVote, or pre-vote when .pre */
    RAFT_MSG_VOTE_RESP,     /* its reply */
    RAFT_MSG_APPEND,        /* AppendEntries; heartbeat when no entries */
    RAFT_MSG_APPEND_RESP,   /* its reply */
    RAFT_MSG_SNAPSHOT,      /* InstallSnapshot, one chunk */
    RAFT_MSG_SNAPSHOT_RESP, /* its reply */
    RAFT_MSG_TIMEOUT_NOW    /* leadership transfer: start an election now */
};

struct raft_msg_vote {
    raft_index last_index;
    raft_term last_term;
    bool pre; /* a pre-vote: term is the term the sender would campaign in */
    /* Sent on a leader's RAFT_MSG_TIMEOUT_NOW: the voter's leader lease
     * (thesis §4.2.3) does not apply, since the leader asked for it. */
    bool transfer;
};

struct raft_msg_vote_resp {
    bool granted;
    bool pre;
};

struct raft_msg_append {
    raft_index prev_index;
    raft_term prev_term;
    raft_index commit;
    /* ReadIndex round this message belongs to (echoed in the reply) */
    uint64_t read_round;
    const struct raft_entry *entries;
    size_t n_entries;
};

struct raft_msg_append_resp {
    bool success;
    /* On success: the last index now known to match the leader's log.
     * On failure: fast backtracking hints (Raft paper §5.3, the
     * "conflict term / first index of that term" optimisation): the
     * follower's conflicting term at prev_index (0 if its log is too
     * short) and the first index it holds of that term, or its last index
     * + 1 when too short. */
    raft_index index;
    raft_term conflict_term;
    raft_index conflict_index;
    raft_index rejected; /* prev_index of the append being answered */
    uint64_t read_round;
};

struct raft_msg_snapshot {
    struct raft_snapshot_meta meta;
    uint64_t offset; /* byte offset of this chunk in the snapshot data */
    bool last;       /* this chunk ends the snapshot */
    /* Chunk bytes.  In a message the core hands out, .len says how many
     * bytes to send and .base is NULL: the runtime, which owns the
     * snapshot file, reads [offset, offset + len) of the snapshot
     * (meta.index, meta.term) and attaches them when encoding.  A transfer
     * stays on one snapshot for its whole life, so a runtime SHOULD keep a
     * snapshot readable while a transfer of it is in progress (e.g. keep
     * the old file open after a newer one replaces it).  If it can't, it
     * drops the message; after one retry timeout (two heartbeat
     * intervals) without an answer the core moves the transfer to its
     * newest snapshot from offset 0 -- correct, but a leader that
     * snapshots more often than a transfer takes then never finishes one.
     * In a received message .base points to the bytes, borrowed for the
     * call. */
    struct raft_buffer data;
};

struct raft_msg_snapshot_resp {
    raft_index index;     /* meta.index of the snapshot answered */
    uint64_t next_offset; /* bytes received durably so far */
    bool done;            /* snapshot installed */
};

struct raft_message {
    uint8_t type; /* enum raft_msg_type */
    raft_id from;
    raft_id to;
    raft_term term;
    union {
        struct raft_msg_vote vote;
        struct raft_msg_vote_resp vote_resp;
        struct raft_msg_append append;
        struct raft_msg_append_resp append_resp;
        struct raft_msg_snapshot snapshot;
        struct raft_msg_snapshot_resp snapshot_resp;
    };
};

/* ---- events --------------------------------------------------------- */

enum raft_event_type {
    RAFT_TICK = 1,    /* one tick of the runtime's clock passed */
    RAFT_RECEIVE,     /* a message arrived from a peer */
    RAFT_PROPOSE,     /* the application proposes commands (leader only) */
    RAFT_READ,        /* the application asks for a ReadIndex */
    RAFT_PERSISTED,   /* an update's persistence is durable */
    RAFT_SNAPSHOT,    /* the application stored a snapshot; compact */
    RAFT_UNREACHABLE, /* the runtime could not deliver to a peer */
    RAFT_TRANSFER     /* leader: hand leadership to a peer (thesis §3.10) */
};

struct raft_event {
    uint8_t type; /* enum raft_event_type */
    union {
        struct {
            const struct raft_message *msg; /* borrowed; data copied */
        } receive;
        struct {
            const struct raft_buffer *bufs; /* n commands, copied */
            unsigned n;
            raft_index index; /* OUT: index of the first command */
            raft_term term;   /* OUT: the term they were proposed in */
        } propose;
        struct {
            uint64_t ctx; /* returned in struct raft_read */
        } read;
        struct {
            uint64_t seq; /* u.persist_seq; covers every earlier seq too */
        } persisted;
        struct {
            /* A durable snapshot of the state after applying index; index
             * must be <= the last committed entry handed out.  The newer
             * snapshot always wins: if the runtime's current snapshot is
             * already newer than this one (one received from the leader
             * became current while the application was writing its own),
             * it discards its own and does not step RAFT_SNAPSHOT. */
            raft_index index;
            uint64_t size;
            /* Entries to keep before index so that slightly lagging
             * followers still catch up from the log. */
            raft_index trailing;
        } snapshot;
        struct {
            raft_id peer;
        } unreachable;
        struct {
            raft_id peer; /* an up-to-date member is best */
        } transfer;
    };
};

/* The answer to one RAFT_READ. */
struct raft_read {
    uint64_t ctx;
    int status;       /* 0, CRAFT_ENOTLEADER or CRAFT_ELEADERLOST */
    raft_index index; /* serve the read once applied >= index */
};

/* A chunk of an incoming snapshot for the runtime to write. */
struct raft_snapshot_chunk {
    struct raft_snapshot_meta meta;
    uint64_t offset; /* 0 starts a new snapshot, dropping any partial one */
    struct raft_buffer data;
    /* After writing the last chunk, make this snapshot durable and
     * current -- unless the runtime already holds a snapshot with a higher
     * index (the application may have stored its own, newer one while
     * this write was in flight); then drop it.  Symmetrically, an
     * application snapshot older than the current one is discarded (see
     * RAFT_SNAPSHOT): storage orders snapshots by index and the newer one
     * always wins.  The core assumes exactly
     * this rule. */
    bool last;
};

struct raft_update {
    /* -- 1. persist, in this order; then step RAFT_PERSISTED{persist_seq}.
     * persist_seq is 0 when there is nothing to persist. */
    uint64_t persist_seq;
    bool hs_changed;
    struct raft_hard_state hs;
    raft_index truncate_from; /* 0, or drop every entry >= it first */
    const struct raft_entry *entries;
    size_t n_entries;
    const struct raft_snapshot_chunk *snapshot_chunk; /* or NULL */

    /* -- 2. send, now. */
    const struct raft_message *messages;
    size_t n_messages;

    /* -- 3. apply: first install (if set: restore the state machine from
     * the snapshot just received, which is durable), then the committed
     * entries, in order.  Each index is handed out exactly once. */
    const struct raft_snapshot_meta *install;
    const struct raft_entry *committed;
    size_t n_committed;
    raft_index commit_index;
    /* Log entries <= compact_to are covered by a durable snapshot and may
     * be deleted from storage at once (0: nothing new to delete).  Should
     * a write still in flight add such entries afterwards, they are kept
     * or removed by a later truncate_from; a restore skips them. */
    raft_index compact_to;

    /* -- 4. ReadIndex answers. */
    const struct raft_read *reads;
    size_t n_reads;

    /* -- role and leadership, always filled in. */
    bool role_changed;
    uint8_t role; /* enum raft_role */
    raft_term term;
    raft_id leader; /* 0 when unknown */
};

/* ---- the API -------------------------------------------------------- */

struct raft; /* opaque */

/*
 * Create a core for member `id` of `config` (copied).  `opts` may be NULL
 * for the defaults; `seed` drives every random choice (election timeouts);
 * `restore` may be NULL for a brand-new node; `alloc` may be NULL for
 * malloc.  Returns 0 and sets *out, or CRAFT_EINVAL / CRAFT_ENOMEM and
 * leaves *out untouched.
 */
CRAFT_API int raft_new(raft_id id, const struct raft_config *config,
                       const struct raft_options *opts, uint64_t seed,
                       const struct raft_restore *restore,
                       const struct craft_alloc *alloc, struct raft **out);

CRAFT_API void raft_free(struct raft *r);

/*
 * Feed one event; fill *u (OUT) with what the runtime must do.  Returns 0,
 * or:
 *   RAFT_PROPOSE   CRAFT_ENOTLEADER (not the leader, or handing leadership
 *                  over), CRAFT_EINVAL (n == 0 or more than
 *                  RAFT_PROPOSE_MAX commands), CRAFT_ETOOBIG (a command
 *                  above RAFT_ENTRY_BYTES_MAX), CRAFT_ENOMEM;
 *   RAFT_RECEIVE   CRAFT_EPROTO (an impossible message: wrong recipient,
 *                  unknown sender, inconsistent fields), which changed
 *                  nothing;
 *   RAFT_SNAPSHOT  CRAFT_EINVAL when index is beyond what was handed out
 *                  for applying;
 *   RAFT_TRANSFER  CRAFT_ENOTLEADER, CRAFT_EINVAL (not a peer);
 *   any event      CRAFT_ENOMEM: the step did part of its work, never
 *                  breaking an invariant.  Messages or acknowledgements
 *                  may have been lost (safe: Raft tolerates message loss),
 *                  and a received append may have been taken in part (a
 *                  conflicting suffix truncated, some of its entries
 *                  appended, none acknowledged); *u then carries exactly
 *                  those changes, and the leader resends the rest.
 * *u is filled in on every return, so a runtime always carries it out.
 */
CRAFT_API int raft_step(struct raft *r, struct raft_event *ev,
                        struct raft_update *u);

/* A snapshot of the core's state, for status displays and tests. */
enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,     /* one append at a time, finding next */
    RAFT_PROGRESS_REPLICATE = 1, /* pipelined appends */
    RAFT_PROGRESS_SNAPSHOT = 2   /* sending a snapshot */
};

struct raft_progress_status {
    raft_id id;
    raft_index match;
    raft_index next;
    uint8_t state; /* enum raft_progress_state */
    uint64_t ticks_since_contact;
};

struct raft_status {
    raft_id id;
    uint8_t role;
    raft_term term;
    raft_id vote;
    raft_id leader;
    raft_index commit;
    raft_index applied; /* last index handed out for applying */
    raft_index first_index;
    raft_index last_index;
    raft_term last_term;
    raft_index durable_index; /* last index reported durable */
    raft_index snapshot_index;
    raft_term snapshot_term;
    unsigned n_progress; /* leader only */
    struct raft_progress_status progress[RAFT_MEMBERS_MAX];
};

CRAFT_API void raft_status(const struct raft *r, struct raft_status *st);

/*
 * A borrowed view of log entry i (valid until the next raft_step), for
 * tests and checkers.  Returns 0 and fills *out (OUT), CRAFT_ECOMPACTED if
 * i is covered by a snapshot and no longer in the log, or CRAFT_ENOTFOUND
 * if i is beyond the last index.
 */
CRAFT_API int raft_entry_at(const struct raft *r, raft_index i,
                            struct raft_entry *out);

/* Wire format of messages (pure, no I/O), shared by every transport; the
 * layout is documented in src/raft/codec.c.  raft_message_encoded_size
 * gives the exact size raft_message_encode writes.  raft_message_encode
 * writes at most `cap` bytes and returns the count, CRAFT_ETOOBIG (cap too
 * small) or CRAFT_EINVAL (unknown type, fields above the wire limits); a
 * RAFT_MSG_SNAPSHOT is encoded without its data, which the runtime appends
 * (data.len bytes).  raft_message_decode fills *m (OUT, untouched on
 * error) with entries and data pointing into `buf` (borrowed) and the
 * entry array in `scratch` (caller-owned, n_scratch entries); it returns
 * the bytes consumed (a message may be followed by others), CRAFT_ETOOBIG
 * when there are more than n_scratch entries, or CRAFT_EPROTO for any
 * malformed, truncated or oversized input.  It never reads outside
 * [buf, buf + len). */
CRAFT_API size_t raft_message_encoded_size(const struct raft_message *m);
CRAFT_API int raft_message_encode(const struct raft_message *m, uint8_t *buf,
                                  size_t cap);
CRAFT_API int raft_message_decode(const uint8_t *buf, size_t len,
                                  struct raft_entry *scratch, size_t n_scratch,
                                  struct raft_message *m);

CRAFT_API const char *raft_role_name(int role);
CRAFT_API const char *raft_msg_type_name(int type);

#endif /* CRAFT_RAFT_H */
