/*
 * The craftd node runtime (see node.h).
 *
 * One loop, one thread.  Events reach the Raft core through node_step()
 * only; each step returns an update that is carried out completely before
 * the next step (the update's pointers die with the next step):
 *
 *   tick timer ------------.
 *   peer message (net) ----+--> node_step --> raft_step --> update:
 *   store callback --------|      1. persist: store_append/snapshot_put
 *   proposal batch --------'         (group commit on the thread pool)
 *                                 2. send: net_peer_send, in parallel
 *                                    with the leader's own fsync
 *                                 3. install / apply committed entries,
 *                                    answer the proposing clients
 *                                 4. ReadIndex answers -> serve reads
 *                                 5. role changes: a leader that steps
 *                                    down fails its waiting clients now
 *
 * Client commands arrive from the front end (srv) at any time, also from
 * inside step 3 (a reply lets a pipelined client send more); they are only
 * queued there.  A check handle, run once per loop iteration right after
 * it polls, proposes all queued writes in one RAFT_PROPOSE and starts one
 * ReadIndex round for all queued reads.  So writes arriving while the disk
 * is busy form one batch (group commit) and concurrent reads share one
 * confirmation round.
 *
 * Invariants:
 *  1. node_step() is never re-entered: events produced while an update is
 *     carried out (unreachable peers, persistence that needed no I/O) are
 *     deferred and stepped after it.
 *  2. n->props holds the proposed ops in index order; each is answered
 *     exactly once: with its reply when its entry applies in the term it
 *     was proposed in, with CRAFT_ELEADERLOST otherwise.  An op gets
 *     CRAFT_ENOTLEADER (MOVED/CLUSTERDOWN) only if it was never proposed.
 *  3. applied only grows, by one entry at a time or to an installed
 *     snapshot's index.
 *  4. Nothing is acknowledged to a client before its entry is committed,
 *     which the core only reports once a majority (counting this node only
 *     after its own write is durable) has it on stable storage.
 */
#include "node/node.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "craft/raft.h"
#include "net/net.h"
#include "node/cfgcmd.h"
#include "node/ident.h"
#include "node/metrics.h"
#include "node/peer_timeout.h"
#include "node/report.h"
#include "node/sm.h"
#include "node/snapload.h"
#include "server/cluster.h"
#include "server/resp.h"
#include "server/srv.h"
#include "storage/store.h"
#include "util/assert.h"
#include "util/log.h"
#include "util/obs.h"

/* The one message type on the Raft port. */
#define NODE_MSG_RAFT 1
/* Entries one decoded append may carry; the core sends at most
 * max_msg_entries (64 by default), so this leaves a wide margin. */
#define NODE_DECODE_ENTRIES_MAX 4096
/* The largest command a client may write: it must fit, with its framing,
 * in one append message (NET_FRAME_MAX_DEFAULT, 16 MiB) and one log record
 * entry (STORE_ENTRY_BYTES_MAX_DEFAULT, 16 MiB).  8 MiB keeps a 2x margin. */
#define NODE_ENTRY_BYTES_MAX (8u << 20)
/* After a snapshot, keep this many entries in the log so that a follower
 * a little behind catches up from the log rather than a whole snapshot. */
#define NODE_SNAPSHOT_TRAILING 4096
/* Snapshot data is handed to the store in chunks of this size, one at a
 * time, so the loop never copies more than this in one go. */
#define NODE_SNAPSHOT_CHUNK (1u << 20)
/* The slowest transfer rate (link, write and fdatasync of a chunk on the
 * follower) at which an InstallSnapshot chunk is not resent while its
 * answer is on the way: 2 MB/s, so 1 MiB chunks are resent after 524 ms
 * (two heartbeats, 200 ms at the defaults, before). */
#define NODE_SNAPSHOT_RETRY_BYTES_PER_MS 2000u
/* How often the loop checks whether the snapshot child has finished. */
#define NODE_SNAPSHOT_POLL_MS 10
/* Entry bytes handed to the store and not yet durable above which a leader
 * stops proposing (commands wait in the front end's queues, and clients
 * see latency instead of the node running out of memory).  64 MiB is many
 * group commits' worth, and well below the store's own limit
 * (STORE_PENDING_BYTES_MAX_DEFAULT, 256 MiB), which must never be hit. */
#define NODE_PERSIST_BYTES_MAX (64u << 20)
/* Append messages in flight to one follower.  A message carries at most
 * max_msg_bytes (1 MiB) or one entry of up to NODE_ENTRY_BYTES_MAX, so a
 * follower never has more than 16 x 9 MiB queued for its disk -- below the
 * store's limit (STORE_PENDING_BYTES_MAX_DEFAULT, 256 MiB), which would
 * stop it.  16 messages of up to 64 entries keep a thousand entries in
 * flight, more than a fsync's worth on any disk. */
#define NODE_INFLIGHT_MAX 16
/* Command bytes in one RAFT_PROPOSE: with the limit above, what is in
 * flight to the store never passes 64 + 16 + 8 MiB (one command may be
 * NODE_ENTRY_BYTES_MAX), far from the store's own limit. */
#define NODE_PROPOSE_BYTES_MAX (16u << 20)
/* Background expiry: keys that come due with no read waiting for them are
 * deleted by a clock entry proposed at most this often (Redis's active
 * expiry runs at hz 10), so continuous expiry costs at most 10 log entries
 * a second; a read that needs the clock gets one at once. */
#define NODE_EXPIRE_PERIOD_MS 100
/* How long a stopping leader waits for the peer it hands leadership to:
 * the peer is caught up at once in the common case and wins its election
 * in one round trip; beyond this the cluster elects one the normal way. */
#define NODE_TRANSFER_WAIT_MS 500

struct persist_req {
    struct store_req req;
    struct node *n;
    uint64_t seq;   /* 0 unless this request completes an update */
    uint64_t bytes; /* entry bytes it carries, for n->persist_bytes */
};

/* One ReadIndex round, shared by every read queued when it started. */
struct read_group {
    struct read_group *next;
    uint64_t ctx;
    bool ready; /* the core confirmed leadership: serve at index */
    raft_index index;
    uint64_t at_ms;     /* this node's clock when the round started */
    struct srv_op *ops; /* linked through bnext */
};

struct op_list {
    struct srv_op *head, *tail;
    unsigned n;
};

enum snap_state {
    SNAP_IDLE = 0,
    SNAP_CHILD,   /* a forked child is writing the data file */
    SNAP_STORING, /* handing the data file to the store, chunk by chunk */
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    int lock_fd;
    int exit_code;
    char raft_dir[NODE_PATH_MAX + 16];

    struct raft *raft;
    struct store *store;
    struct net_server *rserver;
    struct net_peer *peers[NODE_MEMBERS_MAX]; /* NULL for self */
    struct node_sm *sm;
    struct srv *srv;

    uv_timer_t ticker;
    uv_check_t batcher;
    uv_signal_t sigterm, sigint;
    uv_timer_t stop_timer;
    uv_timer_t snap_timer;

    /* The core's view, from the last update. */
    uint8_t role;
    raft_term term;
    raft_id leader;
    raft_id last_leader;     /* the latest non-zero leader (CLUSTER) */
    uint64_t leader_lost_ms; /* uv_now() when leader last became 0 */
    raft_index commit;
    raft_index applied;
    raft_term applied_term;

    /* Step machinery. */
    bool stepping;
    uint32_t unreachable; /* bit i: member i could not be sent to */
    uint64_t deferred_persisted;
    uint64_t persist_bytes; /* entry bytes submitted, not yet durable */
    /* What the store holds once everything submitted is done: the last
     * log index and the index of the current snapshot. */
    raft_index store_last;
    raft_index store_snap;
    struct raft_entry *scratch;
    struct buf sendbuf;

    /* Client commands. */
    struct op_list writes; /* encoded, not yet proposed */
    struct buf wdata;      /* their payloads; op->bindex/bterm = off/len */
    struct op_list props;  /* proposed, waiting to apply, index order */
    struct op_list reads;  /* waiting for the next ReadIndex round */
    struct read_group *groups, *groups_tail;
    uint64_t next_read_ctx;

    /* Expiry (see "the leader's clock entries"): one clock entry at most
     * in flight, at clock_index; reads wait for the clock to reach
     * clock_want_ms. */
    bool clock_inflight;
    raft_index clock_index;
    uint64_t clock_want_ms;
    uint64_t clock_last; /* uv_now() of the last background clock entry */

    /* READONLY reads: the commit index of the first append this process
     * accepted from a leader, and whether it has applied that much, after
     * which it serves them (a restarted or blank member does not answer
     * from a state older than the cluster's when it started). */
    raft_index ro_target;
    bool ro_ready;

    /* Snapshots. */
    enum snap_state snap;
    pid_t snap_pid;
    raft_index snap_index;
    raft_term snap_term;
    uint64_t snap_size;
    uint64_t snap_off;
    uint64_t snap_started_ns;
    int snap_fd;
    bool remote_snap;          /* the leader is sending us a snapshot */
    struct snapload *snapload; /* parsing it as it arrives, or NULL */
    uint64_t snap_gen;         /* increments with every local snapshot */
    pid_t pid;                 /* of this process (not of a snapshot child) */
    uint8_t *snap_chunk;
    uint64_t log_bytes; /* entry bytes persisted since the last snapshot */
    raft_index snapshot_index;
    /* The transfer's last chunk: its snapshot index, the term it came in
     * and uv_now() (see transfer_check()). */
    raft_index remote_snap_index;
    raft_term remote_snap_term;
    uint64_t remote_snap_ms;

    /* Stopping. */
    bool stopping;
    bool transferring; /* handing leadership over before closing */
    bool shut;         /* node_shutdown() ran: the core is not stepped */
    bool srv_stopped;
    unsigned open_handles;

    /* Observability (report.h, metrics.h): the /metrics server, and the
     * vote last logged. */
    struct node_metrics *metrics;
    raft_id logged_vote;
};

static void node_step(struct node *n, struct raft_event *ev);
static void node_shutdown(struct node *n);
static void snap_abandon(struct node *n, const char *why);

/* ---- helpers -------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int member_index(const struct node *n, raft_id id)
{
    for (unsigned i = 0; i < n->cfg.n_members; i++) {
        if (n->cfg.members[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

static bool leader_addr(const struct node *n, char *out, size_t cap);

/* ---- observability: log context, events, the report ---------------- */

/* What every log line says about the node (util/log.h): a copy, so that
 * lines written after the node is freed ("stopped") still read it. */
static struct {
    raft_term term;
    const char *role;
} log_view = {0, "follower"};

static void node_log_context(void *arg, uint64_t *term, const char **role)
{
    (void)arg;
    *term = log_view.term;
    *role = log_view.role;
}

static void node_log_view(const struct node *n)
{
    log_view.term = n->term;
    log_view.role = raft_role_name(n->role);
}

/* Role changes and votes as events, before role_change() logs the new
 * leader (so a timeline reads became_leader, then leader_changed). */
static void log_role_events(struct node *n, const struct raft_update *u,
                            uint8_t old, raft_term old_term)
{
    if (u->role != old &&
        (u->role == RAFT_PRE_CANDIDATE ||
         (u->role == RAFT_CANDIDATE && old != RAFT_PRE_CANDIDATE))) {
        obs.elections++;
    }
    if (u->role == RAFT_PRE_CANDIDATE && old != RAFT_PRE_CANDIDATE) {
        log_event(LOG_INFO, "became_pre_candidate", "prev_term=%llu",
                  (unsigned long long)old_term);
    } else if (u->role == RAFT_CANDIDATE &&
               (old != RAFT_CANDIDATE || u->term != old_term)) {
        log_event(LOG_INFO, "became_candidate", "prev_term=%llu",
                  (unsigned long long)old_term);
    } else if (u->role == RAFT_LEADER && old != RAFT_LEADER) {
        log_event(LOG_INFO, "became_leader", "commit=%llu last=%llu",
                  (unsigned long long)u->commit_index,
                  (unsigned long long)n->store_last);
    } else if (u->role == RAFT_FOLLOWER && old != RAFT_FOLLOWER) {
        log_event(LOG_INFO, "became_follower", "prev_role=%s prev_term=%llu",
                  raft_role_name(old), (unsigned long long)old_term);
    }
    if (u->hs_changed && u->hs.vote != n->logged_vote) {
        n->logged_vote = u->hs.vote;
        if (u->hs.vote != 0 && u->hs.vote != n->cfg.id) {
            log_event(LOG_INFO, "voted", "for=%llu",
                      (unsigned long long)u->hs.vote);
        }
    }
}

static const char *progress_state_name(uint8_t s)
{
    switch ((enum raft_progress_state)s) {
    case RAFT_PROGRESS_PROBE:
        return "probe";
    case RAFT_PROGRESS_REPLICATE:
        return "replicate";
    case RAFT_PROGRESS_SNAPSHOT:
        return "snapshot";
    }
    return "-";
}

static void report_peer(const struct node *n, const struct raft_status *st,
                        unsigned i, struct node_report_peer *p)
{
    const struct node_member *m = &n->cfg.members[i];
    memset(p, 0, sizeof *p);
    p->id = m->id;
    p->index = i;
    snprintf(p->addr, sizeof p->addr, "%s:%u", m->host,
             (unsigned)m->client_port);
    snprintf(p->raft_addr, sizeof p->raft_addr, "%s:%u", m->host,
             (unsigned)m->raft_port);
    p->state = "-";
    p->last_contact_ms = -1;
    if (n->peers[i] != NULL) {
        struct net_peer_stats ps;
        net_peer_get_stats(n->peers[i], &ps);
        p->connected = ps.connected != 0;
        p->connects = ps.connects;
        p->connect_fails = ps.connect_fails;
        p->frames_sent = ps.frames_sent;
        p->bytes_sent = ps.bytes_sent;
        p->frames_dropped = ps.frames_dropped;
        p->bytes_dropped = ps.bytes_dropped;
    }
    if (i < OBS_PEERS_MAX) {
        p->bytes_received = obs.peer_bytes_in[i];
        p->frames_received = obs.peer_frames_in[i];
    }
    for (unsigned j = 0; st->role == RAFT_LEADER && j < st->n_progress; j++) {
        const struct raft_progress_status *pr = &st->progress[j];
        if (pr->id != m->id) {
            continue;
        }
        p->has_progress = true;
        p->match = pr->match;
        p->next = pr->next;
        p->lag = st->last_index > pr->match ? st->last_index - pr->match : 0;
        p->state = progress_state_name(pr->state);
        p->last_contact_ms =
            (int64_t)(pr->ticks_since_contact * n->cfg.tick_ms);
    }
}

/* Everything INFO and /metrics show, copied out of the live node. */
static void node_report_fill(const struct node *n, struct node_report *r)
{
    struct raft_status st;
    raft_status(n->raft, &st);
    memset(r, 0, sizeof *r);
    r->cfg = &n->cfg;
    r->id = n->cfg.id;
    r->n_members = n->cfg.n_members;
    r->role = raft_role_name(st.role);
    r->leader = st.role == RAFT_LEADER;
    r->term = st.term;
    r->vote = st.vote;
    r->leader_id = st.leader;
    leader_addr(n, r->leader_addr, sizeof r->leader_addr);
    r->commit = st.commit;
    r->applied = n->applied;
    r->first_index = st.first_index;
    r->last_index = st.last_index;
    r->durable_index = st.durable_index;
    r->snapshot_index = st.snapshot_index;
    r->snapshot_term = st.snapshot_term;
    r->log_bytes = n->log_bytes;
    r->persist_bytes = n->persist_bytes;
    r->pending_proposals = n->props.n;
    r->snapshot_in_progress = n->snap != SNAP_IDLE;
    r->receiving_snapshot = n->remote_snap;
    r->keys = node_sm_keys(n->sm);
    r->expires = node_sm_expires(n->sm);
    r->clients = n->srv != NULL ? srv_clients(n->srv) : 0;
    r->max_clients = n->cfg.max_clients;
    r->stopping = n->stopping;
    for (unsigned i = 0; i < n->cfg.n_members; i++) {
        if (i != n->cfg.self) {
            report_peer(n, &st, i, &r->peers[r->n_peers++]);
        }
    }
    CRAFT_ASSERT(r->n_peers + 1 == n->cfg.n_members);
}

static int metrics_page(void *data, struct buf *out)
{
    struct node *n = data;
    struct node_report r;
    if (n->raft == NULL) {
        return CRAFT_EINVAL;
    }
    node_report_fill(n, &r);
    return node_metrics_write(&r, out);
}

static void on_metrics_closed(void *data)
{
    struct node *n = data;
    CRAFT_ASSERT(n->open_handles > 0);
    n->open_handles--;
}

/* A failure that makes going on unsafe: the disk failed (the page cache
 * may have dropped writes, so nothing more may be acknowledged) or a
 * committed entry is corrupt.  What is durable stays durable; a restart
 * recovers from it. */
__attribute__((noreturn)) static void node_fatal(struct node *n,
                                                 const char *what, int rv)
{
    (void)n;
    char q[256], q2[128];
    log_event(LOG_ERROR, "fatal",
              "what=%s error=%s -- stopping at once (acknowledged writes are "
              "on disk; restart to recover)",
              log_quote(what, q, sizeof q),
              log_quote(craft_strerror(rv), q2, sizeof q2));
    _exit(1);
}

static void list_push(struct op_list *l, struct srv_op *op)
{
    op->bnext = NULL;
    if (l->tail != NULL) {
        l->tail->bnext = op;
    } else {
        l->head = op;
    }
    l->tail = op;
    l->n++;
}

static struct srv_op *list_pop(struct op_list *l)
{
    struct srv_op *op = l->head;
    if (op != NULL) {
        l->head = op->bnext;
        if (l->head == NULL) {
            l->tail = NULL;
        }
        l->n--;
        op->bnext = NULL;
    }
    return op;
}

static void list_fail(struct op_list *l, int status)
{
    struct srv_op *op;
    while ((op = list_pop(l)) != NULL) {
        srv_op_done(op, status);
    }
}

static void groups_fail(struct node *n, int status)
{
    while (n->groups != NULL) {
        struct read_group *g = n->groups;
        n->groups = g->next;
        struct srv_op *op = g->ops;
        while (op != NULL) {
            struct srv_op *next = op->bnext;
            srv_op_done(op, status);
            op = next;
        }
        free(g);
    }
    n->groups_tail = NULL;
}

/* ---- persistence ---------------------------------------------------- */

static void on_persisted(struct store_req *req, int status)
{
    struct persist_req *p = req->data;
    struct node *n = p->n;
    uint64_t seq = p->seq;
    CRAFT_ASSERT(n->persist_bytes >= p->bytes);
    n->persist_bytes -= p->bytes;
    free(p);
    if (status != 0) {
        node_fatal(n, "writing the Raft log", status);
    }
    if (seq != 0) {
        struct raft_event ev = {.type = RAFT_PERSISTED};
        ev.persisted.seq = seq;
        node_step(n, &ev);
    }
}

static struct persist_req *persist_req_new(struct node *n, uint64_t seq)
{
    struct persist_req *p = calloc(1, sizeof *p);
    if (p == NULL) {
        node_fatal(n, "allocating a write request", CRAFT_ENOMEM);
    }
    p->n = n;
    p->seq = seq;
    p->req.data = p;
    return p;
}

/*
 * The core asks to drop entries >= truncate_from; the store refuses a
 * truncation at or below its snapshot, whose entries compaction removes
 * (and which the store drops by itself when the next append starts after
 * the snapshot).  So a truncation below the snapshot becomes one just
 * after it, or none when the log holds nothing beyond the snapshot.
 */
static raft_index store_truncation(const struct node *n,
                                   raft_index truncate_from)
{
    if (truncate_from == 0 || truncate_from > n->store_snap) {
        return truncate_from;
    }
    return n->store_last > n->store_snap ? n->store_snap + 1 : 0;
}

static void snapload_drop(struct node *n)
{
    if (n->snapload != NULL) {
        snapload_cancel(n->snapload);
        n->snapload = NULL;
    }
}

/* Hand a chunk the store is writing to the parse running beside the
 * transfer (snapload.h); a first chunk starts a new one.  A snapload that
 * cannot follow is dropped: install() then loads the durable file. */
static void stream_chunk(struct node *n, const struct raft_snapshot_chunk *c)
{
    if (c->offset == 0) {
        snapload_drop(n);
        if (snapload_start(n->sm, &c->meta, &n->snapload) != 0) {
            n->snapload = NULL;
            return;
        }
    }
    if (n->snapload != NULL && snapload_feed(n->snapload, &c->meta, c->offset,
                                             c->data.base, c->data.len) != 0) {
        snapload_drop(n);
    }
}

/*
 * Forget a transfer from the leader that can no longer finish (review2 B),
 * else its snapload (a thread and a partial state machine) and remote_snap
 * (which stops maybe_snapshot()) stay for the life of the process:
 *   - applied reached its index through the log: the core answers any
 *     further chunk of it "done" without handing it to us, and never
 *     installs a snapshot at or below applied;
 * and, while chunks are still missing (once the last one is queued the
 * core installs it when durable, whatever the term):
 *   - the term moved: the core forgot the transfer (in_snap), so the next
 *     chunk it accepts is an offset 0, which restarts the store's file;
 *   - no chunk for NODE_TRANSFER_IDLE_TIMEOUTS election timeouts in the
 *     same term: only the snapload goes (install() loads from disk); the
 *     core would still accept the next chunk of it, which the store must
 *     be able to append, so no local snapshot may start meanwhile.
 */
#define NODE_TRANSFER_IDLE_TIMEOUTS 4

static void transfer_check(struct node *n)
{
    if (!n->remote_snap && n->snapload == NULL) {
        return;
    }
    const char *why = NULL;
    if (n->applied >= n->remote_snap_index) {
        why = "applied_past_it";
    } else if (!n->remote_snap) {
        return; /* all of it queued: the install follows once durable */
    } else if (n->term != n->remote_snap_term) {
        why = "term_changed";
    } else if (n->snapload != NULL &&
               uv_now(n->loop) - n->remote_snap_ms >=
                   NODE_TRANSFER_IDLE_TIMEOUTS *
                       (uint64_t)n->cfg.election_ms_max) {
        log_event(LOG_INFO, "snapshot_parse_dropped",
                  "index=%llu reason=idle -- no chunk for %u election "
                  "timeouts",
                  (unsigned long long)n->remote_snap_index,
                  NODE_TRANSFER_IDLE_TIMEOUTS);
        snapload_drop(n);
        return;
    } else {
        return;
    }
    log_event(LOG_INFO, "snapshot_transfer_dropped",
              "index=%llu applied=%llu term=%llu reason=%s",
              (unsigned long long)n->remote_snap_index,
              (unsigned long long)n->applied, (unsigned long long)n->term, why);
    snapload_drop(n);
    n->remote_snap = false;
}

static void persist(struct node *n, const struct raft_update *u)
{
    if (u->persist_seq == 0) {
        return;
    }
    bool log = u->hs_changed || u->truncate_from != 0 || u->n_entries > 0;
    const struct raft_snapshot_chunk *chunk = u->snapshot_chunk;
    if (!log && chunk == NULL) {
        n->deferred_persisted = u->persist_seq;
        return;
    }
    if (log) {
        struct persist_req *p =
            persist_req_new(n, chunk == NULL ? u->persist_seq : 0);
        raft_index truncate_from = store_truncation(n, u->truncate_from);
        /*
         * Entries at or below the store's snapshot are covered by it.  This
         * happens when a follower has queued the last chunk of a snapshot
         * from the leader (the store's snapshot index moves when it is
         * queued) and, before it is durable, accepts an append that goes on
         * from its older log: the core installs the snapshot only once it
         * is durable.  The store would refuse them; they are dropped here
         * instead.  Acknowledging them stays safe: this request completes
         * after the snapshot is durable (the store finishes requests in
         * order), and the snapshot holds their effect.
         */
        size_t skip = 0;
        while (skip < u->n_entries && u->entries[skip].index <= n->store_snap) {
            skip++;
        }
        const struct raft_entry *entries = u->entries + skip;
        size_t n_entries = u->n_entries - skip;
        if (skip > 0) {
            log_event(LOG_INFO, "entries_covered",
                      "from=%llu count=%zu snapshot=%llu -- covered by the "
                      "snapshot being stored: not written",
                      (unsigned long long)u->entries[0].index, skip,
                      (unsigned long long)n->store_snap);
        }
        int rv = store_append(n->store, &p->req, u->hs_changed ? &u->hs : NULL,
                              truncate_from, entries, n_entries, on_persisted);
        if (rv != 0) {
            free(p);
            char what[160];
            snprintf(
                what, sizeof what,
                "queueing a Raft log write (truncate_from %llu, %zu "
                "entries from %llu, snapshot %llu)",
                (unsigned long long)u->truncate_from, u->n_entries,
                (unsigned long long)(u->n_entries ? u->entries[0].index : 0),
                (unsigned long long)n->snapshot_index);
            node_fatal(n, what, rv);
        }
        for (size_t i = 0; i < n_entries; i++) {
            p->bytes += entries[i].buf.len + 32;
        }
        n->log_bytes += p->bytes;
        n->persist_bytes += p->bytes;
        if (truncate_from != 0) {
            n->store_last = truncate_from - 1;
        }
        if (n_entries > 0) {
            n->store_last = entries[n_entries - 1].index;
        }
    }
    if (chunk != NULL) {
        /* A snapshot from the leader replaces whatever we were making. */
        if (n->snap != SNAP_IDLE) {
            snap_abandon(n, "the leader is sending a snapshot");
        }
        n->remote_snap = !chunk->last;
        n->remote_snap_index = chunk->meta.index;
        n->remote_snap_term = u->term;
        n->remote_snap_ms = uv_now(n->loop);
        if (chunk->offset == 0) {
            /* bench/kv times an install from this line. */
            log_event(LOG_INFO, "snapshot_receiving",
                      "index=%llu snap_term=%llu bytes=%llu",
                      (unsigned long long)chunk->meta.index,
                      (unsigned long long)chunk->meta.term,
                      (unsigned long long)chunk->meta.size);
        }
        struct persist_req *p = persist_req_new(n, u->persist_seq);
        int rv = store_snapshot_put(n->store, &p->req, &chunk->meta,
                                    chunk->offset, chunk->data.base,
                                    chunk->data.len, chunk->last, on_persisted);
        if (rv != 0) {
            free(p);
            node_fatal(n, "queueing a snapshot chunk", rv);
        }
        if (chunk->last) {
            n->store_snap = chunk->meta.index;
        }
        stream_chunk(n, chunk);
    }
}

/* ---- sending -------------------------------------------------------- */

/* A snapshot transfer's first and last chunks, as events (a transfer
 * restarted after a timeout starts again at offset 0). */
static void log_snapshot_send(const struct raft_message *m)
{
    CRAFT_ASSERT(m->type == RAFT_MSG_SNAPSHOT);
    if (m->snapshot.offset == 0) {
        log_event(LOG_INFO, "snapshot_send_started",
                  "to=%llu index=%llu bytes=%llu", (unsigned long long)m->to,
                  (unsigned long long)m->snapshot.meta.index,
                  (unsigned long long)m->snapshot.meta.size);
    }
    if (m->snapshot.last) {
        log_event(LOG_INFO, "snapshot_sent", "to=%llu index=%llu bytes=%llu",
                  (unsigned long long)m->to,
                  (unsigned long long)m->snapshot.meta.index,
                  (unsigned long long)m->snapshot.meta.size);
    }
}

static void send_message(struct node *n, const struct raft_message *m)
{
    int idx = member_index(n, m->to);
    CRAFT_ASSERT(idx >= 0 && (unsigned)idx != n->cfg.self);
    if (n->peers[idx] == NULL) {
        return; /* stopping: the peers are closed; Raft tolerates loss */
    }
    size_t hdr = raft_message_encoded_size(m);
    size_t extra = m->type == RAFT_MSG_SNAPSHOT ? m->snapshot.data.len : 0;
    buf_reset(&n->sendbuf);
    if (buf_reserve(&n->sendbuf, hdr + extra) != 0) {
        LOG_WARNF("out of memory encoding a %s for node %llu; dropped",
                  raft_msg_type_name(m->type), (unsigned long long)m->to);
        return;
    }
    int len = raft_message_encode(m, n->sendbuf.data, n->sendbuf.cap);
    CRAFT_ASSERT(len > 0);
    size_t total = (size_t)len;
    if (extra > 0) {
        /* Attach the chunk the core asked for (raft.h: the runtime owns the
         * snapshot data), from the snapshot the transfer is pinned to (raft
         * snapshot.c invariant 4).  A snapshot taken meanwhile does not
         * stop it: the store keeps the one it replaced readable through
         * its open descriptor (store.h).  Only once a second snapshot has
         * replaced it too (CRAFT_ESTALE) is the chunk dropped; the core's
         * retry timer then restarts the transfer with the newest. */
        struct raft_snapshot_meta meta;
        int64_t got = store_snapshot_read(
            n->store, m->snapshot.meta.index, m->snapshot.offset,
            n->sendbuf.data + total, extra, &meta);
        if (got == CRAFT_ESTALE) {
            LOG_DEBUGF("snapshot %llu replaced by two newer; chunk dropped",
                       (unsigned long long)m->snapshot.meta.index);
            return;
        }
        if (got != (int64_t)extra) {
            LOG_WARNF("snapshot %llu unreadable at offset %llu (%s); chunk "
                      "dropped",
                      (unsigned long long)m->snapshot.meta.index,
                      (unsigned long long)m->snapshot.offset,
                      got < 0 ? craft_strerror((int)got) : "short read");
            return;
        }
        total += extra;
    }
    int rv =
        net_peer_send(n->peers[idx], NODE_MSG_RAFT, n->sendbuf.data, total);
    if (rv != 0) {
        n->unreachable |= 1u << idx;
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        log_snapshot_send(m);
    }
}

/* ---- applying ------------------------------------------------------- */

static void apply_entry(struct node *n, const struct raft_entry *e)
{
    CRAFT_ASSERT(e->index == n->applied + 1);
    /* Ops proposed at lower indices cannot be waiting any more: their
     * entries were replaced (a snapshot or another leader's log). */
    while (n->props.head != NULL && n->props.head->bindex < e->index) {
        srv_op_done(list_pop(&n->props), CRAFT_ELEADERLOST);
    }
    struct srv_op *op = NULL;
    if (n->props.head != NULL && n->props.head->bindex == e->index) {
        op = list_pop(&n->props);
    }
    bool ours = op != NULL && op->bterm == e->term;
    if (e->type == RAFT_ENTRY_COMMAND) {
        int rv = node_sm_apply(n->sm, e->index, e->buf.base, e->buf.len,
                               ours ? &op->reply : NULL);
        if (rv != 0) {
            node_fatal(n, "applying a committed entry", rv);
        }
    } else {
        node_sm_skip(n->sm, e->index);
        ours = false;
    }
    n->applied = e->index;
    n->applied_term = e->term;
    if (n->clock_inflight && e->index >= n->clock_index) {
        n->clock_inflight = false;
    }
    if (op != NULL) {
        srv_op_done(op, ours ? 0 : CRAFT_ELEADERLOST);
    }
}

struct snap_reader {
    struct node *n;
    raft_index index;
    uint64_t off;
};

static int64_t read_store_snapshot(void *data, void *buf, size_t len)
{
    struct snap_reader *r = data;
    struct raft_snapshot_meta meta;
    int64_t got =
        store_snapshot_read(r->n->store, r->index, r->off, buf, len, &meta);
    if (got > 0) {
        r->off += (uint64_t)got;
    }
    return got;
}

static void install(struct node *n, const struct raft_snapshot_meta *meta)
{
    if (n->snap != SNAP_IDLE) {
        snap_abandon(n, "a snapshot from the leader was installed");
    }
    uint64_t t0 = uv_hrtime();
    /* The state parsed while the snapshot arrived, if it followed all of
     * this one; otherwise (or if that parse failed) the durable file. */
    struct node_sm_parsed *parsed = NULL;
    const char *how = "loaded_from_disk";
    if (n->snapload != NULL && snapload_complete(n->snapload, meta)) {
        int rv = snapload_finish(n->snapload, &parsed);
        n->snapload = NULL;
        if (rv != 0) {
            char q[128];
            log_event(LOG_WARN, "snapshot_parse_failed",
                      "index=%llu error=%s then=load_from_disk",
                      (unsigned long long)meta->index,
                      log_quote(craft_strerror(rv), q, sizeof q));
            parsed = NULL;
        } else {
            how = "parsed_on_arrival";
        }
    }
    snapload_drop(n);
    if (parsed != NULL) {
        node_sm_snapshot_swap(n->sm, parsed);
    } else {
        struct snap_reader r = {.n = n, .index = meta->index, .off = 0};
        int rv = node_sm_snapshot_load(n->sm, read_store_snapshot, &r);
        if (rv != 0) {
            node_fatal(n, "loading a snapshot received from the leader", rv);
        }
    }
    obs.snapshots_installed++;
    log_event(LOG_INFO, "snapshot_installed",
              "index=%llu snap_term=%llu bytes=%llu how=%s ms=%llu",
              (unsigned long long)meta->index, (unsigned long long)meta->term,
              (unsigned long long)meta->size, how,
              (unsigned long long)((uv_hrtime() - t0) / 1000000u));
    n->applied = meta->index;
    n->applied_term = meta->term;
    n->snapshot_index = meta->index;
    n->log_bytes = 0;
    n->remote_snap = false;
    if (n->clock_inflight && meta->index >= n->clock_index) {
        n->clock_inflight = false;
    }
    while (n->props.head != NULL && n->props.head->bindex <= meta->index) {
        srv_op_done(list_pop(&n->props), CRAFT_ELEADERLOST);
    }
}

static void on_compacted(struct store_req *req, int status)
{
    struct persist_req *p = req->data;
    struct node *n = p->n;
    free(p);
    if (status != 0) {
        node_fatal(n, "compacting the Raft log", status);
    }
}

static void compact(struct node *n, raft_index to)
{
    struct persist_req *p = persist_req_new(n, 0);
    int rv = store_compact(n->store, &p->req, to, on_compacted);
    if (rv != 0) {
        free(p);
        char q[96];
        log_event(LOG_WARN, "compaction_refused", "to=%llu error=%s",
                  (unsigned long long)to,
                  log_quote(craft_strerror(rv), q, sizeof q));
    }
}

/* ---- reads ---------------------------------------------------------- */

static void read_answer(struct node *n, const struct raft_read *r)
{
    for (struct read_group *g = n->groups; g != NULL; g = g->next) {
        if (g->ctx != r->ctx) {
            continue;
        }
        if (r->status == 0) {
            g->ready = true;
            g->index = r->index;
            return;
        }
        /* Not confirmed: nothing was executed, so the client may safely
         * go to the leader (MOVED) or retry. */
        struct srv_op *op = g->ops;
        g->ops = NULL;
        g->ready = true;
        g->index = 0;
        while (op != NULL) {
            struct srv_op *next = op->bnext;
            srv_op_done(op, CRAFT_ENOTLEADER);
            op = next;
        }
        return;
    }
}

/* Whether a round that started at g->at_ms (this leader's clock) may be
 * served from the state now: no key comes due between the state's clock
 * and at_ms, so the state shows what it would show at at_ms; or a clock
 * entry stamped at or after at_ms has applied.  Otherwise a key this
 * leader's clock says has expired would still be returned. */
static bool read_time_ok(const struct node *n, const struct read_group *g)
{
    uint64_t due = node_sm_next_expiry_ms(n->sm);
    return g->ops == NULL || due == 0 || due > g->at_ms ||
           node_sm_now_ms(n->sm) >= g->at_ms;
}

/* Serve the confirmed rounds, oldest first, whose index has applied. */
static void serve_reads(struct node *n)
{
    n->clock_want_ms = 0; /* set again below if a round still waits */
    while (n->groups != NULL && n->groups->ready &&
           n->groups->index <= n->applied) {
        struct read_group *g = n->groups;
        if (!read_time_ok(n, g)) {
            /* on_batch proposes the clock entry (not inside a step). */
            if (g->at_ms > n->clock_want_ms) {
                n->clock_want_ms = g->at_ms;
            }
            break;
        }
        n->groups = g->next;
        if (n->groups == NULL) {
            n->groups_tail = NULL;
        }
        struct srv_op *op = g->ops;
        while (op != NULL) {
            struct srv_op *next = op->bnext;
            int rv = node_sm_read_at(n->sm, g->at_ms, op->argc,
                                     (const uint8_t *const *)op->argv, op->lens,
                                     &op->reply);
            op->read_at_ms = g->at_ms;
            srv_op_done(op, rv);
            op = next;
        }
        free(g);
    }
}

/* ---- the update ----------------------------------------------------- */

static void role_change(struct node *n, const struct raft_update *u)
{
    uint8_t old = n->role;
    raft_term old_term = n->term;
    n->role = u->role;
    n->term = u->term;
    node_log_view(n);
    log_role_events(n, u, old, old_term);
    if (u->leader != n->leader) {
        n->leader = u->leader;
        if (u->leader == 0) {
            n->leader_lost_ms = uv_now(n->loop);
        } else {
            n->last_leader = u->leader;
            obs.leader_changes++;
            char addr[NODE_HOST_MAX + 16] = "-";
            leader_addr(n, addr, sizeof addr);
            log_event(LOG_INFO, "leader_changed", "leader=%llu addr=%s",
                      (unsigned long long)u->leader, addr);
        }
    }
    if (old == RAFT_LEADER && u->role != RAFT_LEADER) {
        /* A leader that steps down fails its waiting clients at once: the
         * outcome of what it proposed is unknown, what it did not propose
         * may be retried at the new leader. */
        log_event(LOG_INFO, "stepped_down",
                  "failed_proposals=%u failed_writes=%u", n->props.n,
                  n->writes.n);
        list_fail(&n->props, CRAFT_ELEADERLOST);
        list_fail(&n->writes, CRAFT_ENOTLEADER);
        buf_reset(&n->wdata);
        list_fail(&n->reads, CRAFT_ENOTLEADER);
        groups_fail(n, CRAFT_ENOTLEADER);
        n->clock_inflight = false;
        n->clock_want_ms = 0;
    }
}

/* After a step: a stopping leader whose transfer went through closes now,
 * once the update (with the TimeoutNow message) has been handed to net.
 * The peers are closed on a later loop turn, after that message is
 * written. */
static void after_step(struct node *n)
{
    if (n->transferring && n->role != RAFT_LEADER) {
        n->transferring = false;
        log_event(LOG_INFO, "leadership_transferred",
                  "-- leadership handed over");
        uv_timer_stop(&n->stop_timer);
        node_shutdown(n);
    }
}

static void maybe_snapshot(struct node *n);

#if defined(CRAFT_DEBUG_CHECKS) && CRAFT_DEBUG_CHECKS
/* The invariants of the file header that can be checked from here: O(n)
 * in the ops waiting, so only in builds with debug checks. */
static bool node_invariants_ok(const struct node *n)
{
    /* 2: proposals in strictly increasing index order, none applied yet
     * (a leader's are answered as their entries apply). */
    raft_index prev = n->applied;
    unsigned count = 0;
    for (const struct srv_op *op = n->props.head; op != NULL; op = op->bnext) {
        if (op->bindex <= prev) {
            return false;
        }
        prev = op->bindex;
        count++;
    }
    if (count != n->props.n) {
        return false;
    }
    /* 3 and 4: nothing applied beyond the commit index. */
    if (n->applied > n->commit && n->commit != 0) {
        return false;
    }
    /* Only a leader holds client operations for the log or reads. */
    if (n->role != RAFT_LEADER &&
        (n->props.n != 0 || n->writes.n != 0 || n->groups != NULL)) {
        return false;
    }
    return true;
}
#endif

static void handle_update(struct node *n, const struct raft_update *u)
{
    persist(n, u);
    for (size_t i = 0; i < u->n_messages; i++) {
        send_message(n, &u->messages[i]);
    }
    if (u->install != NULL) {
        install(n, u->install);
    }
    for (size_t i = 0; i < u->n_committed; i++) {
        apply_entry(n, &u->committed[i]);
    }
    n->commit = u->commit_index;
    if (u->compact_to != 0) {
        compact(n, u->compact_to);
    }
    for (size_t i = 0; i < u->n_reads; i++) {
        read_answer(n, &u->reads[i]);
    }
    role_change(n, u);
    serve_reads(n);
    transfer_check(n);
    maybe_snapshot(n);
    CRAFT_DASSERT(node_invariants_ok(n));
}

/* Called between raft_step() and carrying out its update, for the caller
 * to record what the step returned (the indices of proposals). */
typedef void (*step_hook)(struct node *n, const struct raft_event *ev, int rv,
                          void *arg);

static int node_step_hooked(struct node *n, struct raft_event *ev,
                            step_hook hook, void *arg)
{
    if (n->shut) {
        /* Closing: the store and the peers are going away, and nobody
         * waits for an answer any more; what is durable stays durable. */
        if (hook != NULL) {
            hook(n, ev, CRAFT_ESHUTDOWN, arg);
        }
        return CRAFT_ESHUTDOWN;
    }
    CRAFT_ASSERT(!n->stepping);
    CRAFT_ASSERT(n->raft != NULL);
    n->stepping = true;
    struct raft_update u;
    int rv = raft_step(n->raft, ev, &u);
    if (rv != 0 && rv != CRAFT_ENOTLEADER && rv != CRAFT_EPROTO) {
        LOG_WARNF("raft_step(%d): %s", ev->type, craft_strerror(rv));
    }
    if (hook != NULL) {
        hook(n, ev, rv, arg);
    }
    handle_update(n, &u);
    n->stepping = false;
    /* Invariant 1: deferred events, stepped after the update is done. */
    if (n->deferred_persisted != 0) {
        struct raft_event pe = {.type = RAFT_PERSISTED};
        pe.persisted.seq = n->deferred_persisted;
        n->deferred_persisted = 0;
        node_step(n, &pe);
    }
    while (n->unreachable != 0) {
        unsigned i = (unsigned)__builtin_ctz(n->unreachable);
        n->unreachable &= ~(1u << i);
        struct raft_event ue = {.type = RAFT_UNREACHABLE};
        ue.unreachable.peer = n->cfg.members[i].id;
        node_step(n, &ue);
    }
    after_step(n);
    return rv;
}

static void node_step(struct node *n, struct raft_event *ev)
{
    node_step_hooked(n, ev, NULL, NULL);
}

/* ---- proposals and reads from the front end ------------------------- */

struct proposal_batch {
    struct srv_op **ops;
    unsigned n;
};

/* Record where the proposed ops went, before the update is carried out. */
static void proposed(struct node *n, const struct raft_event *ev, int rv,
                     void *arg)
{
    struct proposal_batch *b = arg;
    for (unsigned i = 0; i < b->n; i++) {
        struct srv_op *op = b->ops[i];
        if (rv == 0) {
            op->bindex = ev->propose.index + i;
            op->bterm = ev->propose.term;
            list_push(&n->props, op);
        } else {
            /* Not proposed: CRAFT_ENOTLEADER becomes MOVED/CLUSTERDOWN. */
            srv_op_done(op, rv);
        }
    }
}

/* Propose the queued writes, at most RAFT_PROPOSE_MAX commands and
 * NODE_PROPOSE_BYTES_MAX bytes per step, while the bytes on their way to
 * the disk stay below NODE_PERSIST_BYTES_MAX; the rest wait in the queue
 * (their payloads stay in n->wdata) for the next pass. */
static void flush_writes(struct node *n)
{
    while (n->writes.n > 0 && n->persist_bytes < NODE_PERSIST_BYTES_MAX) {
        struct raft_buffer bufs[RAFT_PROPOSE_MAX];
        struct srv_op *ops[RAFT_PROPOSE_MAX];
        unsigned k = 0;
        size_t bytes = 0;
        while (k < RAFT_PROPOSE_MAX && n->writes.head != NULL &&
               (k == 0 ||
                bytes + n->writes.head->bterm <= NODE_PROPOSE_BYTES_MAX)) {
            struct srv_op *op = list_pop(&n->writes);
            ops[k] = op;
            bufs[k].base = n->wdata.data + op->bindex;
            bufs[k].len = (size_t)op->bterm;
            bytes += bufs[k].len;
            k++;
        }
        struct raft_event ev = {.type = RAFT_PROPOSE};
        ev.propose.bufs = bufs;
        ev.propose.n = k;
        struct proposal_batch b = {.ops = ops, .n = k};
        node_step_hooked(n, &ev, proposed, &b);
    }
    if (n->writes.n == 0) {
        buf_reset(&n->wdata);
        if (n->wdata.cap > (64u << 20)) {
            buf_close(&n->wdata);
        }
    }
}

static void flush_reads(struct node *n)
{
    struct read_group *g = calloc(1, sizeof *g);
    if (g == NULL) {
        list_fail(&n->reads, CRAFT_ENOMEM);
        return;
    }
    g->ctx = ++n->next_read_ctx;
    g->at_ms = now_ms();
    g->ops = n->reads.head;
    n->reads.head = n->reads.tail = NULL;
    n->reads.n = 0;
    if (n->groups_tail != NULL) {
        n->groups_tail->next = g;
    } else {
        n->groups = g;
    }
    n->groups_tail = g;
    uint64_t at_ms = g->at_ms;
    struct raft_event ev = {.type = RAFT_READ};
    ev.read.ctx = g->ctx;
    node_step(n, &ev); /* may serve and free g already (one member) */
    /* If a key is due by the round's time, the round will wait for a clock
     * entry (read_time_ok): ask for it now, so that it commits while the
     * ReadIndex round runs rather than after it.  (If the round was served
     * already, the clock entry is one a read soon will want anyway.) */
    uint64_t due = node_sm_next_expiry_ms(n->sm);
    if (due != 0 && due <= at_ms && n->role == RAFT_LEADER &&
        at_ms > n->clock_want_ms) {
        n->clock_want_ms = at_ms;
    }
}

/* ---- expiry: the leader's clock entries ---------------------------- */

static void clock_proposed(struct node *n, const struct raft_event *ev, int rv,
                           void *arg)
{
    (void)arg;
    if (rv == 0) {
        n->clock_inflight = true;
        n->clock_index = ev->propose.index;
    }
}

/*
 * Keys expire only when an applied entry's stamp reaches their time
 * (kvsm.h, invariant 6), so a leader proposes a small clock entry, stamped
 * with its clock, when the earliest expiry time has come or a read waits
 * for the clock (read_time_ok).  At most one is in flight and this runs at
 * most once per tick and loop iteration, so the rate is bounded by the
 * commit latency; with no key due and no read waiting nothing is proposed.
 * Called from the tick timer and on_batch, never inside a step.
 */
static void clock_maybe_propose(struct node *n)
{
    if (n->role != RAFT_LEADER || n->clock_inflight || n->stopping || n->shut ||
        n->stepping) {
        return;
    }
    uint64_t due = node_sm_next_expiry_ms(n->sm);
    bool want = n->clock_want_ms > node_sm_now_ms(n->sm);
    if (due == 0 && !want) {
        return;
    }
    /* Due keys left behind a full batch (KVSM_EXPIRE_PER_APPLY) go on at
     * once, one entry at a time. */
    bool backlog = due != 0 && due <= node_sm_now_ms(n->sm);
    if (!want && !backlog &&
        uv_now(n->loop) - n->clock_last < NODE_EXPIRE_PERIOD_MS) {
        return;
    }
    uint64_t t = now_ms();
    if (!want && due > t) {
        return;
    }
    if (!want) {
        n->clock_last = uv_now(n->loop);
    }
    if (n->clock_want_ms > t) {
        t = n->clock_want_ms; /* our clock stepped back: never below */
    }
    struct buf b;
    buf_init(&b);
    if (node_sm_clock_encode(t, &b) == 0) {
        struct raft_buffer rb = {.base = b.data, .len = b.len};
        struct raft_event ev = {.type = RAFT_PROPOSE};
        ev.propose.bufs = &rb;
        ev.propose.n = 1;
        node_step_hooked(n, &ev, clock_proposed, NULL);
    }
    buf_close(&b);
}

/*
 * Runs once per loop iteration right after the poll for I/O (a check
 * handle), when the commands that arrived in it are queued.  Not a prepare
 * handle: the transport flushes its connections from prepare handles it
 * starts when a message is queued, and a message queued from inside the
 * prepare phase would wait for the next wake-up (up to a tick) before it
 * is written.  Commands queued while this runs (a reply lets a pipelined
 * client go on) are taken in the same pass.
 */
static void on_batch(uv_check_t *h)
{
    struct node *n = h->data;
    clock_maybe_propose(n);
    for (int pass = 0; pass < 64; pass++) {
        /* Past the limit, the writes wait here for the disk to catch up;
         * the store callback that lowers persist_bytes wakes the loop. */
        bool writes =
            n->writes.n > 0 && n->persist_bytes < NODE_PERSIST_BYTES_MAX;
        if (!writes && n->reads.n == 0) {
            return;
        }
        if (writes) {
            flush_writes(n);
        }
        if (n->reads.n > 0) {
            flush_reads(n);
            clock_maybe_propose(n);
        }
    }
}

/* Reads and writes are told apart before submission: the front end never
 * has both in flight on one connection (srv.h, invariant 5), so a
 * pipelined read sees the connection's earlier writes and not its later
 * ones.  A transaction is a write even if it only reads. */
static int backend_classify(void *data, struct srv_op *op)
{
    struct node *n = data;
    if (op->is_exec) {
        return SRV_OP_WRITE;
    }
    switch (node_sm_classify(n->sm, op->argc, (const uint8_t *const *)op->argv,
                             op->lens, &op->reply)) {
    case NODE_SM_READ:
        return SRV_OP_READ;
    case NODE_SM_WRITE:
        return SRV_OP_WRITE;
    case NODE_SM_INVALID:
        break;
    }
    return SRV_OP_ANSWERED;
}

/*
 * A READONLY connection's read on a non-leader: served at once from the
 * applied state, with no round to the leader, so possibly stale (by the
 * replication lag, or without bound while this node is cut off).  It
 * never goes back in time on the connection: applied only grows while
 * this process runs (invariant 3), and the connection's highest index
 * served is checked all the same.  Expiry is the state's, by its applied
 * clock entries, never by this node's clock.
 */
static void follower_read(struct node *n, struct srv_op *op)
{
    n->ro_ready =
        n->ro_ready || (n->ro_target != 0 && n->applied >= n->ro_target);
    if (!n->ro_ready) {
        resp_write_errorf(&op->reply,
                          "TRYAGAIN this node has not caught up with a "
                          "leader since it started (applied %llu of %llu); "
                          "retry, or read from the leader",
                          (unsigned long long)n->applied,
                          (unsigned long long)n->ro_target);
        srv_op_done(op, 0);
        return;
    }
    if (n->applied < op->read_index) {
        resp_write_errorf(&op->reply,
                          "TRYAGAIN this node has applied up to %llu, "
                          "behind the %llu this connection has seen",
                          (unsigned long long)n->applied,
                          (unsigned long long)op->read_index);
        srv_op_done(op, 0);
        return;
    }
    /* At the latest time this connection was served at (on this node
     * while it led), so a TTL it saw never counts back up; a key due by
     * then was invisible to it already and stays so. */
    int rv =
        node_sm_read_at(n->sm, op->read_at_ms, op->argc,
                        (const uint8_t *const *)op->argv, op->lens, &op->reply);
    op->read_index = n->applied;
    if (node_sm_now_ms(n->sm) > op->read_at_ms) {
        op->read_at_ms = node_sm_now_ms(n->sm);
    }
    srv_op_done(op, rv);
}

static void backend_submit(void *data, struct srv_op *op)
{
    struct node *n = data;
    if (n->stopping) {
        srv_op_done(op, CRAFT_ESHUTDOWN);
        return;
    }
    if (op->kind == SRV_OP_READ && op->readonly && n->role != RAFT_LEADER) {
        follower_read(n, op);
        return;
    }
    if (n->role != RAFT_LEADER) {
        srv_op_done(op, CRAFT_ENOTLEADER);
        return;
    }
    if (op->kind == SRV_OP_READ) {
        list_push(&n->reads, op);
        return;
    }
    /* The entry's size, known before anything is copied (entry.c's
     * layout, within a few bytes of header). */
    size_t need = 64 + (op->watch ? op->watch->bytes : 0) + 4 * op->n_cmds;
    for (size_t i = 0; i < op->argc; i++) {
        need += 4 + op->lens[i];
    }
    if (need > NODE_ENTRY_BYTES_MAX + 64) {
        resp_write_errorf(&op->reply,
                          "ERR command too large to replicate (limit %u "
                          "bytes)",
                          NODE_ENTRY_BYTES_MAX);
        srv_op_done(op, 0);
        return;
    }
    size_t off = n->wdata.len;
    const uint8_t *const *argv = (const uint8_t *const *)op->argv;
    int rv = op->is_exec
                 ? node_sm_encode_multi(n->sm, op->n_cmds, op->cmd_argc, argv,
                                        op->lens, op->watch ? op->watch->n : 0,
                                        op->watch ? op->watch->keys : NULL,
                                        op->watch ? op->watch->lens : NULL,
                                        op->watch ? op->watch->versions : NULL,
                                        now_ms(), &n->wdata, &op->reply)
                 : node_sm_encode(n->sm, op->argc, argv, op->lens, now_ms(),
                                  &n->wdata, &op->reply);
    if (rv != 0) {
        n->wdata.len = off;
        srv_op_done(op, op->reply.len > 0 ? 0 : rv);
        return;
    }
    if (n->wdata.len - off > NODE_ENTRY_BYTES_MAX) {
        n->wdata.len = off;
        resp_write_errorf(&op->reply,
                          "ERR command too large to replicate (limit %u "
                          "bytes)",
                          NODE_ENTRY_BYTES_MAX);
        srv_op_done(op, 0);
        return;
    }
    op->bindex = off;
    op->bterm = n->wdata.len - off;
    list_push(&n->writes, op);
}

static int backend_check(void *data, size_t argc, const uint8_t *const *argv,
                         const size_t *lens, struct buf *err)
{
    struct node *n = data;
    return node_sm_check(n->sm, argc, argv, lens, err);
}

/* The known leader's client address. */
static bool leader_addr(const struct node *n, char *out, size_t cap)
{
    int i = member_index(n, n->leader);
    if (n->leader == 0 || i < 0) {
        return false;
    }
    const struct node_member *m = &n->cfg.members[i];
    snprintf(out, cap, "%s:%u", m->host, (unsigned)m->client_port);
    return true;
}

/* Where to send a client that this node turned away: never to itself (a
 * leader that refuses, because it is handing over or stepping down,
 * answers CLUSTERDOWN until the new leader is known). */
static bool backend_leader(void *data, char *out, size_t cap)
{
    struct node *n = data;
    return n->leader != n->cfg.id && leader_addr(n, out, cap);
}

/* INFO [section ...] (report.h, info.c). */
static int backend_info(void *data, size_t argc, const uint8_t *const *argv,
                        const size_t *lens, struct buf *b)
{
    struct node *n = data;
    struct node_report r;
    node_report_fill(n, &r);
    return node_info_write(&r, node_info_sections(argc, argv, lens), b);
}

/* CONFIG GET/SET of the node's parameters (node/cfgcmd.c). */
static const char *backend_config_get(void *data, size_t i, char *v, size_t cap)
{
    struct node *n = data;
    return node__config_get(&n->cfg, i, v, cap);
}

static int backend_config_set(void *data, const char *name, const char *value,
                              bool apply, char *err, size_t cap)
{
    struct node *n = data;
    return node__config_set(&n->cfg, name, value, apply, err, cap);
}

/* The CLUSTER command's view (server/cluster.h): the members, the leader
 * this node knows, and the replication offsets it knows (its own applied
 * index; a leader also knows each follower's match index). */
/* How many of the longest election timeouts CLUSTER goes on naming the
 * last leader after losing it: one election usually settles within one
 * timeout, a split vote within two or three. */
#define CLUSTER_LAST_LEADER_TIMEOUTS 3

static int backend_cluster(void *data, struct srv_cluster_view *out)
{
    struct node *n = data;
    struct raft_status st;
    raft_status(n->raft, &st);
    _Static_assert(NODE_MEMBERS_MAX <= SRV_CLUSTER_MEMBERS_MAX, "members");
    _Static_assert(NODE_HOST_MAX <= SRV_CLUSTER_HOST_MAX, "host");
    out->cluster_id = n->cfg.cluster_id;
    out->term = st.term;
    out->n_members = n->cfg.n_members;
    out->self = n->cfg.self;
    out->leader = n->leader != 0 ? member_index(n, n->leader) : -1;
    /* While no leader is known, name the last one (server/cluster.h,
     * invariant 2) during what a normal election takes, a few election
     * timeouts; never this node itself (it lost leadership: it is cut off,
     * or stepping down); and not later (this node is probably on a
     * minority side, and cluster clients that get CLUSTERDOWN from it ask
     * another node). */
    out->last_leader = out->leader;
    if (out->leader < 0 && n->last_leader != 0 && n->last_leader != n->cfg.id &&
        uv_now(n->loop) - n->leader_lost_ms <
            CLUSTER_LAST_LEADER_TIMEOUTS * (uint64_t)n->cfg.election_ms_max) {
        out->last_leader = member_index(n, n->last_leader);
    }
    for (unsigned i = 0; i < n->cfg.n_members; i++) {
        const struct node_member *m = &n->cfg.members[i];
        struct srv_cluster_member *cm = &out->members[i];
        cm->id = m->id;
        snprintf(cm->host, sizeof cm->host, "%s", m->host);
        cm->port = m->client_port;
        cm->bus_port = m->raft_port;
        cm->offset = i == n->cfg.self ? n->applied : 0;
        cm->connected = i == n->cfg.self;
        if (n->peers[i] != NULL) {
            struct net_peer_stats ps;
            net_peer_get_stats(n->peers[i], &ps);
            cm->connected = ps.connected != 0;
        }
        for (unsigned j = 0; j < st.n_progress && st.role == RAFT_LEADER; j++) {
            if (st.progress[j].id == m->id && i != n->cfg.self) {
                cm->offset = st.progress[j].match;
            }
        }
    }
    return 0;
}

/* ---- snapshots ------------------------------------------------------ */

/* Each snapshot child writes its own file, so that a child left over from
 * an earlier process (it dies with its parent, see snap_child, but may
 * still be finishing) never writes into a newer child's file. */
static void snap_path(const struct node *n, char *out, size_t cap)
{
    snprintf(out, cap, "%s/snapshot-%ld-%llu.tmp", n->cfg.data_dir,
             (long)n->pid, (unsigned long long)n->snap_gen);
}

/* Remove the data files of snapshots that earlier processes left behind. */
static void snap_cleanup(const struct node *n)
{
    DIR *d = opendir(n->cfg.data_dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "snapshot-", 9) == 0 && len > 4 &&
            strcmp(e->d_name + len - 4, ".tmp") == 0) {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
}

static void snap_finish(struct node *n, const char *why)
{
    if (n->snap_fd >= 0) {
        close(n->snap_fd);
        n->snap_fd = -1;
    }
    char path[NODE_PATH_MAX + 32];
    snap_path(n, path, sizeof path);
    unlink(path);
    uv_timer_stop(&n->snap_timer);
    n->snap = SNAP_IDLE;
    if (why != NULL) {
        char q[160];
        obs.snapshots_failed++;
        obs.snapshot_last_abandoned = true;
        log_event(LOG_WARN, "snapshot_abandoned", "index=%llu reason=%s",
                  (unsigned long long)n->snap_index,
                  log_quote(why, q, sizeof q));
    }
}

/* Stop making a local snapshot, whatever stage it is in. */
static void snap_abandon(struct node *n, const char *why)
{
    if (n->snap_pid > 0) {
        kill(n->snap_pid, SIGKILL);
        waitpid(n->snap_pid, NULL, 0);
        n->snap_pid = 0;
    }
    if (n->snap != SNAP_IDLE) {
        snap_finish(n, why);
    }
}

static void snap_store_next(struct node *n);

static void on_snap_chunk(struct store_req *req, int status)
{
    struct persist_req *p = req->data;
    struct node *n = p->n;
    uint64_t gen = p->seq;
    free(p);
    if (status != 0) {
        node_fatal(n, "writing a snapshot", status);
    }
    if (n->snap != SNAP_STORING || gen != n->snap_gen) {
        return; /* abandoned meanwhile */
    }
    if (n->snap_off < n->snap_size) {
        snap_store_next(n);
        return;
    }
    /* Durable and current in the store: let the core compact. */
    uint64_t ms = (uv_hrtime() - n->snap_started_ns) / 1000000u;
    obs.snapshots++;
    obs.snapshot_last_abandoned = false;
    obs_hist_observe(&obs.snapshot,
                     (double)(uv_hrtime() - n->snap_started_ns) / 1e9);
    obs.snapshot_last_unix_ms = obs_unix_ms();
    obs.snapshot_last_index = n->snap_index;
    obs.snapshot_last_bytes = n->snap_size;
    log_event(LOG_INFO, "snapshot_taken",
              "index=%llu bytes=%llu duration_ms=%llu",
              (unsigned long long)n->snap_index,
              (unsigned long long)n->snap_size, (unsigned long long)ms);
    n->snapshot_index = n->snap_index;
    snap_finish(n, NULL);
    struct raft_event ev = {.type = RAFT_SNAPSHOT};
    ev.snapshot.index = n->snap_index;
    ev.snapshot.size = n->snap_size;
    ev.snapshot.trailing = NODE_SNAPSHOT_TRAILING;
    node_step(n, &ev);
}

static void snap_store_next(struct node *n)
{
    uint64_t left = n->snap_size - n->snap_off;
    size_t len =
        left < NODE_SNAPSHOT_CHUNK ? (size_t)left : NODE_SNAPSHOT_CHUNK;
    ssize_t got =
        len > 0 ? pread(n->snap_fd, n->snap_chunk, len, (off_t)n->snap_off) : 0;
    if (got != (ssize_t)len) {
        snap_finish(n, "cannot read the data file");
        return;
    }
    struct raft_snapshot_meta meta = {
        .index = n->snap_index, .term = n->snap_term, .size = n->snap_size};
    meta.config.n = n->cfg.n_members;
    for (unsigned i = 0; i < n->cfg.n_members; i++) {
        meta.config.ids[i] = n->cfg.members[i].id;
    }
    uint64_t off = n->snap_off;
    n->snap_off += len;
    /* The request's seq field carries the snapshot generation, so that a
     * callback of an abandoned snapshot is recognised. */
    struct persist_req *p = persist_req_new(n, n->snap_gen);
    bool last = n->snap_off == n->snap_size;
    int rv = store_snapshot_put(n->store, &p->req, &meta, off, n->snap_chunk,
                                len, last, on_snap_chunk);
    if (rv != 0) {
        free(p);
        snap_finish(n, craft_strerror(rv));
        return;
    }
    if (last) {
        n->store_snap = n->snap_index;
    }
}

static void on_snap_poll(uv_timer_t *t)
{
    struct node *n = t->data;
    int status;
    pid_t pid = waitpid(n->snap_pid, &status, WNOHANG);
    if (pid == 0) {
        return;
    }
    uv_timer_stop(&n->snap_timer);
    n->snap_pid = 0;
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snap_finish(n, "the snapshot child failed");
        return;
    }
    char path[NODE_PATH_MAX + 32];
    snap_path(n, path, sizeof path);
    n->snap_fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (n->snap_fd < 0 || fstat(n->snap_fd, &st) != 0) {
        snap_finish(n, "cannot open the data file");
        return;
    }
    n->snap_size = (uint64_t)st.st_size;
    n->snap_off = 0;
    n->snap = SNAP_STORING;
    snap_store_next(n);
}

/* The child: write the state as of the fork to the data file and exit.  It
 * shares nothing with the parent but the copy-on-write memory image. */
static void snap_child(struct node *n)
{
    /* Die with the parent: a snapshot nobody will store is wasted work.
     * And hold none of its sockets and files: a child still finishing
     * after its parent was killed must not keep the ports bound. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != n->pid) {
        _exit(5);
    }
    close_range(3, ~0u, 0);
    char path[NODE_PATH_MAX + 32];
    snap_path(n, path, sizeof path);
    /* 0600 whatever the umask, like every file in the data dir. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 && fchmod(fd, 0600) == 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        _exit(2);
    }
    static char iobuf[1 << 20];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    int rv = node_sm_snapshot_write(n->sm, f);
    if (rv != 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        _exit(3);
    }
    _exit(fclose(f) == 0 ? 0 : 4);
}

static void maybe_snapshot(struct node *n)
{
    if (n->snap != SNAP_IDLE || n->stopping || n->remote_snap ||
        n->log_bytes < n->cfg.snapshot_bytes ||
        n->applied <= n->snapshot_index) {
        return;
    }
    n->snap_index = n->applied;
    n->snap_term = n->applied_term;
    n->snap_gen++;
    n->snap_started_ns = uv_hrtime();
    pid_t pid = fork();
    if (pid < 0) {
        char q[96];
        obs.snapshots_failed++;
        obs.snapshot_last_abandoned = true;
        log_event(LOG_WARN, "snapshot_abandoned", "index=%llu reason=%s",
                  (unsigned long long)n->applied,
                  log_quote(strerror(errno), q, sizeof q));
        return;
    }
    if (pid == 0) {
        snap_child(n);
    }
    uint64_t stall_us = (uv_hrtime() - n->snap_started_ns) / 1000u;
    log_event(LOG_INFO, "snapshot_started",
              "index=%llu log_bytes=%llu fork_stall_us=%llu -- fork stalled "
              "the loop %llu us",
              (unsigned long long)n->snap_index,
              (unsigned long long)n->log_bytes, (unsigned long long)stall_us,
              (unsigned long long)stall_us);
    n->snap = SNAP_CHILD;
    n->snap_pid = pid;
    n->log_bytes = 0;
    uv_timer_start(&n->snap_timer, on_snap_poll, NODE_SNAPSHOT_POLL_MS,
                   NODE_SNAPSHOT_POLL_MS);
}

/* ---- peers ---------------------------------------------------------- */

static void peer_on_open(void *data, struct net_conn *conn)
{
    struct node *n = data;
    uint64_t id = net_conn_peer_id(conn);
    int i = member_index(n, id);
    if (i < 0 || (unsigned)i == n->cfg.self) {
        char addr[NET_ADDR_FMT_MAX];
        net_conn_peer_addr(conn, addr, sizeof addr);
        log_event(LOG_WARN, "peer_rejected",
                  "peer=%llu addr=%s reason=\"not a member\"",
                  (unsigned long long)id, addr);
        net_conn_close(conn);
    }
}

static void peer_on_message(void *data, struct net_conn *conn, uint16_t type,
                            const uint8_t *payload, size_t len)
{
    struct node *n = data;
    uint64_t from = net_conn_peer_id(conn);
    const char *why = NULL;
    struct raft_message m;
    if (n->raft == NULL || n->shut) {
        return;
    }
    int pi = member_index(n, from);
    if (pi >= 0 && pi < OBS_PEERS_MAX) {
        obs.peer_bytes_in[pi] += len;
        obs.peer_frames_in[pi]++;
    }
    if (type != NODE_MSG_RAFT) {
        why = "unknown message type";
    } else if (raft_message_decode(payload, len, n->scratch,
                                   NODE_DECODE_ENTRIES_MAX, &m) < 0) {
        why = "malformed Raft message";
    } else if (m.from != from || m.to != n->cfg.id) {
        why = "message for another sender or recipient";
    }
    if (why == NULL) {
        struct raft_event ev = {.type = RAFT_RECEIVE};
        ev.receive.msg = &m;
        bool append = m.type == RAFT_MSG_APPEND;
        raft_term term = m.term;
        raft_index commit = append ? m.append.commit : 0;
        if (node_step_hooked(n, &ev, NULL, NULL) == CRAFT_EPROTO) {
            why = "impossible Raft message";
        } else if (append && n->ro_target == 0 && commit > 0 &&
                   term == n->term && n->leader == from) {
            n->ro_target = commit; /* follower_read waits for this */
        }
    }
    if (why != NULL) {
        char q[96];
        log_event(LOG_WARN, "peer_rejected", "peer=%llu reason=%s",
                  (unsigned long long)from, log_quote(why, q, sizeof q));
        net_conn_close(conn);
    }
}

static const struct net_handlers peer_handlers_template = {
    .on_open = peer_on_open,
    .on_message = peer_on_message,
};

static void tick(uv_timer_t *t)
{
    struct node *n = t->data;
    struct raft_event ev = {.type = RAFT_TICK};
    obs_tick(uv_now(n->loop));
    node_step(n, &ev);
    clock_maybe_propose(n);
}

/* ---- start-up ------------------------------------------------------- */

struct load_reader {
    struct store *store;
    uint64_t off;
};

static int64_t read_loaded_snapshot(void *data, void *buf, size_t len)
{
    struct load_reader *r = data;
    struct raft_snapshot_meta meta;
    int64_t got = store_snapshot_read(r->store, 0, r->off, buf, len, &meta);
    if (got > 0) {
        r->off += (uint64_t)got;
    }
    return got;
}

/* Load the store and the state machine, and create the core from them. */
static int start_core(struct node *n, char *errmsg, size_t len)
{
    const struct node_config *c = &n->cfg;
    snprintf(n->raft_dir, sizeof n->raft_dir, "%s/raft", c->data_dir);
    struct store_options so;
    store_options_default(&so);
    int rv = store_open(n->raft_dir, &so, n->loop, &n->store, errmsg, len);
    if (rv != 0) {
        return rv;
    }
    rv = node_sm_new(&n->sm);
    if (rv != 0) {
        snprintf(errmsg, len, "cannot create the state machine: %s",
                 craft_strerror(rv));
        return rv;
    }
    const struct store_scan *l = store_loaded(n->store);
    if (l->has_snapshot) {
        struct load_reader r = {.store = n->store, .off = 0};
        rv = node_sm_snapshot_load(n->sm, read_loaded_snapshot, &r);
        if (rv != 0) {
            snprintf(errmsg, len, "cannot load snapshot %s/%s: %s", n->raft_dir,
                     l->snapshot_name, craft_strerror(rv));
            return rv;
        }
        n->applied = n->snapshot_index = l->snapshot.index;
        n->applied_term = l->snapshot.term;
    }
    for (size_t i = 0; i < l->n_entries; i++) {
        n->log_bytes += l->entries[i].buf.len + 32;
    }
    n->store_last = l->log_last;
    n->store_snap = l->has_snapshot ? l->snapshot.index : 0;
    struct raft_restore restore = {.hs = l->hs,
                                   .snapshot =
                                       l->has_snapshot ? &l->snapshot : NULL,
                                   .entries = l->entries,
                                   .n_entries = l->n_entries};
    struct raft_config config = {.n = c->n_members};
    for (unsigned i = 0; i < c->n_members; i++) {
        config.ids[i] = c->members[i].id;
    }
    struct raft_options o;
    raft_options_default(&o);
    o.election_ticks_min = c->election_ms_min / c->tick_ms;
    o.election_ticks_max = c->election_ms_max / c->tick_ms;
    o.heartbeat_ticks = c->heartbeat_ms / c->tick_ms;
    o.max_inflight = NODE_INFLIGHT_MAX;
    /* A chunk is answered once durable on the follower: resend it only
     * after it could have crossed a slow link and disk (review2 G). */
    o.snapshot_retry_ticks =
        (unsigned)(o.snapshot_chunk_bytes / NODE_SNAPSHOT_RETRY_BYTES_PER_MS /
                   c->tick_ms);
    uint64_t seed = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ c->id;
    n->term = l->hs.term;
    n->logged_vote = l->hs.vote;
    node_log_view(n);
    log_event(LOG_INFO, "loaded", "vote=%llu snapshot=%llu entries=%zu",
              (unsigned long long)l->hs.vote,
              (unsigned long long)n->snapshot_index, l->n_entries);
    rv = raft_new(c->id, &config, &o, seed, &restore, NULL, &n->raft);
    store_release_loaded(n->store);
    if (rv != 0) {
        snprintf(errmsg, len, "cannot start the Raft core: %s",
                 craft_strerror(rv));
        return rv;
    }
    return 0;
}

static int start_net(struct node *n, char *errmsg, size_t len)
{
    const struct node_config *c = &n->cfg;
    const struct node_member *self = &c->members[c->self];
    struct net_config nc;
    net_config_init(&nc);
    nc.node_id = c->id;
    nc.cluster_id = c->cluster_id;
    nc.bind_host = self->host;
    nc.user_timeout_ms = node_peer_user_timeout_ms(c->election_ms_max);
    if (c->cluster_secret_len > 0) {
        nc.secret = c->cluster_secret;
        nc.secret_len = c->cluster_secret_len;
    }
    struct net_handlers h = peer_handlers_template;
    h.data = n;
    char addr[NODE_HOST_MAX + 16];
    snprintf(addr, sizeof addr, "%s:%u", self->host, (unsigned)self->raft_port);
    int rv = net_server_new(n->loop, &nc, addr, &h, &n->rserver, errmsg, len);
    if (rv != 0) {
        return rv;
    }
    for (unsigned i = 0; i < c->n_members; i++) {
        if (i == c->self) {
            continue;
        }
        snprintf(addr, sizeof addr, "%s:%u", c->members[i].host,
                 (unsigned)c->members[i].raft_port);
        rv = net_peer_new(n->loop, &nc, addr, &h, &n->peers[i]);
        if (rv != 0) {
            snprintf(errmsg, len, "cannot set up peer %s: %s", addr,
                     craft_strerror(rv));
            return rv;
        }
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct node *n = h->data;
    if (n->stopping) {
        log_event(LOG_WARN, "shutdown_forced", "signal=%d", signum);
        _exit(1);
    }
    log_event(LOG_INFO, "shutdown_requested", "signal=%d", signum);
    node_stop(n);
}

static void start_handles(struct node *n)
{
    uv_timer_init(n->loop, &n->ticker);
    uv_check_init(n->loop, &n->batcher);
    uv_signal_init(n->loop, &n->sigterm);
    uv_signal_init(n->loop, &n->sigint);
    uv_timer_init(n->loop, &n->stop_timer);
    uv_timer_init(n->loop, &n->snap_timer);
    n->ticker.data = n->batcher.data = n;
    n->sigterm.data = n->sigint.data = n;
    n->stop_timer.data = n->snap_timer.data = n;
    n->open_handles += 6;
    uv_timer_start(&n->ticker, tick, n->cfg.tick_ms, n->cfg.tick_ms);
    uv_check_start(&n->batcher, on_batch);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
}

/* The client listener of a start that failed later is closed. */
static void on_srv_start_failed(struct srv *s, void *data)
{
    struct node *n = data;
    CRAFT_ASSERT(s == n->srv);
    CRAFT_ASSERT(n->shut);
    srv_free(s);
    n->srv = NULL;
}

int node_start(uv_loop_t *loop, const struct node_config *cfg,
               struct node **out, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(cfg->self < cfg->n_members);
    struct node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    n->loop = loop;
    n->cfg = *cfg;
    n->lock_fd = -1;
    n->snap_fd = -1;
    n->pid = getpid();
    n->role = RAFT_FOLLOWER;
    log_set_node(cfg->id, node_log_context, NULL);
    buf_init(&n->sendbuf);
    buf_init(&n->wdata);
    /* A data dir that has an identity has a log: without it this node
     * would forget its votes and acknowledged entries, which breaks Raft's
     * safety, so refuse rather than start empty. */
    char path[NODE_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", cfg->data_dir, NODE_IDENT_FILE);
    bool had_ident = access(path, F_OK) == 0;
    snprintf(path, sizeof path, "%s/raft", cfg->data_dir);
    bool had_log = access(path, F_OK) == 0;
    bool first = false;
    int rv = node_ident_lock(cfg, &n->lock_fd, &first, errmsg, errmsg_len);
    if (rv == 0 && had_ident && !had_log) {
        snprintf(errmsg, errmsg_len,
                 "data dir %s has an identity but no raft/ log; refusing to "
                 "start empty (restore the directory, or remove all of it to "
                 "re-create this node)",
                 cfg->data_dir);
        close(n->lock_fd);
        rv = CRAFT_ECORRUPT;
    }
    if (rv != 0) {
        free(n);
        return rv;
    }
    snap_cleanup(n);
    n->scratch = calloc(NODE_DECODE_ENTRIES_MAX, sizeof *n->scratch);
    n->snap_chunk = malloc(NODE_SNAPSHOT_CHUNK);
    if (n->scratch == NULL || n->snap_chunk == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        rv = CRAFT_ENOMEM;
    }
    if (rv == 0) {
        rv = start_core(n, errmsg, errmsg_len);
    }
    if (rv == 0) {
        rv = start_net(n, errmsg, errmsg_len);
    }
    /* Before the client port: a node that cannot serve its metrics stops
     * before any client sees it (node_shutdown() closes this, not srv). */
    if (rv == 0 && cfg->metrics_port != 0) {
        rv = node_metrics_start(loop, cfg->metrics_host, cfg->metrics_port,
                                metrics_page, n, &n->metrics, errmsg,
                                errmsg_len);
    }
    if (rv == 0) {
        const struct node_member *self = &cfg->members[cfg->self];
        struct srv_options so = {.host = self->host,
                                 .port = self->client_port,
                                 .max_clients = cfg->max_clients,
                                 /* Somewhat above what fits in a log
                                  * entry, so that most oversized commands
                                  * get the clear "too large to replicate"
                                  * rather than a protocol error. */
                                 .command_max = 2 * NODE_ENTRY_BYTES_MAX,
                                 .requirepass = cfg->requirepass,
                                 .fsync = true};
        struct srv_backend be = {.data = n,
                                 .classify = backend_classify,
                                 .submit = backend_submit,
                                 .check = backend_check,
                                 .leader = backend_leader,
                                 .info = backend_info,
                                 .config_get = backend_config_get,
                                 .config_set = backend_config_set,
                                 .cluster = backend_cluster};
        rv = srv_start(loop, &so, &be, &n->srv, errmsg, errmsg_len);
    }
    if (rv == 0 && first) {
        /* Only now, with both addresses bound, does the directory belong
         * to this node and cluster.  Nothing has run yet: the log that a
         * failed first start may have left is empty. */
        rv = node_ident_write(cfg, errmsg, errmsg_len);
    }
    start_handles(n);
    if (rv != 0) {
        /* Close whatever was opened, the client listener too (a failure
         * after srv_start(): node_shutdown() leaves srv to node_stop()), or
         * the loop would never end; the caller runs the loop to let the
         * handles go, then frees. */
        n->exit_code = 1;
        n->stopping = true;
        node_shutdown(n);
        if (n->srv != NULL) {
            srv_stop(n->srv, on_srv_start_failed, n);
        }
        *out = n;
        return rv;
    }
    const struct node_member *self = &cfg->members[cfg->self];
    char dir[NODE_PATH_MAX + 8];
    /* The tail keeps the line ending in " ready" (what scripts wait
     * for). */
    log_event(LOG_INFO, "ready",
              "members=%u client=%s:%u raft=%s:%u metrics=%s:%u data_dir=%s "
              "-- ready",
              cfg->n_members, self->host, (unsigned)self->client_port,
              self->host, (unsigned)self->raft_port,
              cfg->metrics_port ? cfg->metrics_host : "off",
              (unsigned)cfg->metrics_port,
              log_quote(cfg->data_dir, dir, sizeof dir));
    *out = n;
    return 0;
}

/* ---- stopping ------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct node *n = h->data;
    CRAFT_ASSERT(n->open_handles > 0);
    n->open_handles--;
}

static void on_net_closed(void *data)
{
    struct node *n = data;
    CRAFT_ASSERT(n->open_handles > 0);
    n->open_handles--;
}

static void on_store_closed(struct store *s)
{
    /* The store frees itself after this returns; its last request ends
     * uv_run() once nothing else is open. */
    (void)s;
}

static void node_shutdown(struct node *n)
{
    CRAFT_ASSERT(n->stopping);
    CRAFT_ASSERT(!n->stepping);
    n->shut = true;
    snap_abandon(n, "stopping");
    snapload_drop(n);
    uv_handle_t *handles[] = {
        (uv_handle_t *)&n->ticker,     (uv_handle_t *)&n->batcher,
        (uv_handle_t *)&n->sigterm,    (uv_handle_t *)&n->sigint,
        (uv_handle_t *)&n->stop_timer, (uv_handle_t *)&n->snap_timer};
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(handles); i++) {
        if (!uv_is_closing(handles[i])) {
            uv_close(handles[i], on_handle_closed);
        }
    }
    if (n->metrics != NULL) {
        n->open_handles++;
        node_metrics_stop(n->metrics, on_metrics_closed, n);
        n->metrics = NULL;
    }
    if (n->rserver != NULL) {
        n->open_handles++;
        net_server_close(n->rserver, n, on_net_closed);
        n->rserver = NULL;
    }
    for (unsigned i = 0; i < n->cfg.n_members; i++) {
        if (n->peers[i] != NULL) {
            n->open_handles++;
            net_peer_close(n->peers[i], n, on_net_closed);
            n->peers[i] = NULL;
        }
    }
    if (n->store != NULL) {
        store_close(n->store, on_store_closed);
        n->store = NULL;
    }
}

static void on_transfer_timeout(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->transferring) {
        n->transferring = false;
        log_event(LOG_INFO, "leadership_transfer_timeout", "wait_ms=%d",
                  NODE_TRANSFER_WAIT_MS);
        node_shutdown(n);
    }
}

/* A stopping leader hands leadership to its most up-to-date peer (thesis
 * §3.10), so that the cluster does not wait an election timeout for a new
 * one.  Returns true if a transfer started; node_shutdown() then follows
 * the role change (or NODE_TRANSFER_WAIT_MS). */
static bool start_transfer(struct node *n)
{
    if (n->role != RAFT_LEADER || n->cfg.n_members < 2) {
        return false;
    }
    struct raft_status st;
    raft_status(n->raft, &st);
    raft_id best = 0;
    raft_index best_match = 0;
    for (unsigned i = 0; i < st.n_progress; i++) {
        const struct raft_progress_status *p = &st.progress[i];
        if (p->id != n->cfg.id && (best == 0 || p->match > best_match)) {
            best = p->id;
            best_match = p->match;
        }
    }
    if (best == 0) {
        return false;
    }
    log_event(LOG_INFO, "leadership_transfer", "to=%llu match=%llu",
              (unsigned long long)best, (unsigned long long)best_match);
    n->transferring = true;
    struct raft_event ev = {.type = RAFT_TRANSFER};
    ev.transfer.peer = best;
    if (node_step_hooked(n, &ev, NULL, NULL) != 0 || !n->transferring) {
        n->transferring = false;
        return n->role != RAFT_LEADER; /* already done, or refused */
    }
    uv_timer_start(&n->stop_timer, on_transfer_timeout, NODE_TRANSFER_WAIT_MS,
                   0);
    return true;
}

static void on_srv_stopped(struct srv *s, void *data)
{
    struct node *n = data;
    CRAFT_ASSERT(s == n->srv);
    /* Ops of clients that disconnected may still wait for their entry. */
    list_fail(&n->props, CRAFT_ELEADERLOST);
    srv_free(s);
    n->srv = NULL;
    log_event(LOG_INFO, "clients_closed", "-- closing peers and the log");
    uv_timer_stop(&n->stop_timer);
    if (!start_transfer(n)) {
        node_shutdown(n);
    }
}

static void on_stop_grace(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->props.n > 0) {
        log_event(LOG_WARN, "shutdown_proposals_failed",
                  "proposals=%u grace_ms=%d", n->props.n, NODE_STOP_GRACE_MS);
    }
    list_fail(&n->props, CRAFT_ELEADERLOST);
}

void node_stop(struct node *n)
{
    if (n->stopping) {
        return;
    }
    n->stopping = true;
    log_event(LOG_INFO, "shutdown", "proposals_in_flight=%u", n->props.n);
    list_fail(&n->writes, CRAFT_ESHUTDOWN);
    buf_reset(&n->wdata);
    list_fail(&n->reads, CRAFT_ESHUTDOWN);
    groups_fail(n, CRAFT_ESHUTDOWN);
    uv_timer_start(&n->stop_timer, on_stop_grace, NODE_STOP_GRACE_MS, 0);
    srv_stop(n->srv, on_srv_stopped, n);
}

int node_exit_code(const struct node *n)
{
    return n->exit_code;
}

void node_free(struct node *n)
{
    CRAFT_ASSERT(n->open_handles == 0);
    CRAFT_ASSERT(n->srv == NULL);
    if (n->raft != NULL) {
        raft_free(n->raft);
    }
    snapload_drop(n); /* before the state machine it reads */
    if (n->sm != NULL) {
        node_sm_free(n->sm);
    }
    free(n->scratch);
    free(n->snap_chunk);
    buf_close(&n->sendbuf);
    buf_close(&n->wdata);
    if (n->lock_fd >= 0) {
        close(n->lock_fd);
    }
    free(n);
}
