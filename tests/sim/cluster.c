/*
 * tests/sim/cluster.c -- the simulated cluster: the event queue and clock,
 * node life cycle (start, crash, restart), carrying out each core update,
 * and the client entry points (propose, read).
 *
 * Invariants of this file:
 *   1. Events run in (time, seq) order; seq is the queueing order, so equal
 *      times never depend on heap layout and a seed replays exactly.
 *   2. A node's events carry the incarnation they were queued for; after a
 *      crash every older event of that node is ignored.
 *   3. An update is carried out completely -- persistence queued, messages
 *      sent, entries applied, reads answered, invariants checked -- before
 *      the same core is stepped again (its pointers die at the next step).
 *   4. RAFT_PERSISTED{seq} is stepped only once every pending persistence
 *      up to seq is durable in the node's sim_storage, in order.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"
#include "util/assert.h"
#include "util/encoding.h"

/* Size of the built-in register's part of a snapshot: applied index and
 * hash chain. */
#define SIM_SNAP_HEADER 16

void sim_options_init(struct sim_options *o)
{
    memset(o, 0, sizeof *o);
    o->n_nodes = 3;
    o->seed = 1;
    o->tick_ms = 10;
    raft_options_default(&o->raft);
    o->fsync_min_ms = 1;
    o->fsync_max_ms = 1;
}

void sim_faults_unreliable(struct sim_link_faults *f)
{
    memset(f, 0, sizeof *f);
    /* labrpc: each request waits 0-26 ms and is lost with probability
     * 100/1000 (requests and replies alike; here every message is one
     * direction of an RPC). */
    f->drop_pm = 100;
    f->delay_min_ms = 0;
    f->delay_max_ms = 26;
}

void sim_faults_reliable(struct sim_link_faults *f)
{
    memset(f, 0, sizeof *f);
    f->delay_min_ms = 1;
    f->delay_max_ms = 1;
}

/* ---- the event queue: a binary min-heap on (time, seq) ------------------ */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

void sim__push(struct sim_cluster *c, const struct sim_event *ev)
{
    CRAFT_ASSERT(ev->time >= c->now);
    if (c->n_heap == c->cap_heap) {
        size_t cap = c->cap_heap ? 2 * c->cap_heap : 256;
        struct sim_event *h = realloc(c->heap, cap * sizeof *h);
        CRAFT_ASSERT(h != NULL);
        c->heap = h;
        c->cap_heap = cap;
    }
    size_t i = c->n_heap++;
    c->heap[i] = *ev;
    c->heap[i].seq = c->seq++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ev_before(&c->heap[i], &c->heap[parent])) {
            break;
        }
        struct sim_event t = c->heap[i];
        c->heap[i] = c->heap[parent];
        c->heap[parent] = t;
        i = parent;
    }
}

static struct sim_event heap_pop(struct sim_cluster *c)
{
    CRAFT_ASSERT(c->n_heap > 0);
    struct sim_event top = c->heap[0];
    c->heap[0] = c->heap[--c->n_heap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->n_heap && ev_before(&c->heap[l], &c->heap[m])) {
            m = l;
        }
        if (r < c->n_heap && ev_before(&c->heap[r], &c->heap[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        struct sim_event t = c->heap[i];
        c->heap[i] = c->heap[m];
        c->heap[m] = t;
        i = m;
    }
    return top;
}

/* ---- carrying out an update --------------------------------------------- */

static void queue_persistence(struct sim_cluster *c, struct sim_node *n,
                              const struct raft_update *u)
{
    struct sim_pending *p = sim__pending_new(u);
    if (p == NULL) {
        return;
    }
    if (n->pend_tail != NULL) {
        n->pend_tail->next = p;
    } else {
        n->pend_head = p;
    }
    n->pend_tail = p;
    /* fsyncs finish in the order they were issued. */
    uint64_t done = c->now + rng_range(&c->rng, c->o.fsync_min_ms,
                                       (uint64_t)c->o.fsync_max_ms + 1);
    if (done < n->fsync_free_at) {
        done = n->fsync_free_at;
    }
    n->fsync_free_at = done;
    struct sim_event ev = {.time = done,
                           .type = SIM_EV_PERSIST,
                           .node = (unsigned)(n->id - 1),
                           .incarnation = n->incarnation,
                           .persist_seq = p->seq};
    sim__push(c, &ev);
}

static void install_snapshot(struct sim_cluster *c, struct sim_node *n,
                             const struct raft_snapshot_meta *meta)
{
    struct sim_storage *s = &n->st;
    if (!s->has_snap || s->snap.index != meta->index ||
        s->snap.term != meta->term) {
        sim_fail(c,
                 "n%llu: install of snapshot %llu/%llu that is not the "
                 "durable one",
                 (unsigned long long)n->id, (unsigned long long)meta->index,
                 (unsigned long long)meta->term);
    }
    if (s->snap_len < SIM_SNAP_HEADER || get_u64(s->snap_data) != meta->index) {
        sim_fail(c, "n%llu: snapshot %llu holds the state of another index",
                 (unsigned long long)n->id, (unsigned long long)meta->index);
    }
    uint64_t chain = get_u64(s->snap_data + 8);
    sim__check_install(c, n, meta, chain);
    const struct sim_app_ops *app = c->o.app;
    if (app != NULL &&
        app->restore(app->data, n->app, s->snap_data + SIM_SNAP_HEADER,
                     s->snap_len - SIM_SNAP_HEADER) != 0) {
        sim_fail(c, "n%llu: app could not restore snapshot %llu",
                 (unsigned long long)n->id, (unsigned long long)meta->index);
    }
    n->applied = meta->index;
    n->chain = chain;
    sim__trace(c, (unsigned)n->id, "install snap %llu",
               (unsigned long long)meta->index);
}

static void apply_entries(struct sim_cluster *c, struct sim_node *n,
                          const struct raft_update *u)
{
    for (size_t i = 0; i < u->n_committed; i++) {
        const struct raft_entry *e = &u->committed[i];
        sim__check_apply(c, n, e);
        if (c->o.app != NULL) {
            c->o.app->apply(c->o.app->data, n->app, e);
        }
        if (c->o.apply_cb != NULL) {
            c->o.apply_cb(c->o.apply_cb_data, n->id, e);
        }
    }
    if (u->n_committed > 0) {
        sim__trace(c, (unsigned)n->id, "apply %llu..%llu",
                   (unsigned long long)u->committed[0].index,
                   (unsigned long long)u->committed[u->n_committed - 1].index);
    }
}

/* The core answered read rd: refused, or a ReadIndex to check. */
static void read_answered(struct sim_cluster *c, struct sim_node *n,
                          const struct raft_read *rd)
{
    struct sim_read_req **pp = &n->reads;
    while (*pp != NULL && (*pp)->ctx != rd->ctx) {
        pp = &(*pp)->next;
    }
    if (*pp == NULL || (*pp)->index != 0) {
        sim_fail(c, "n%llu: read answer for unknown or answered ctx %llu",
                 (unsigned long long)n->id, (unsigned long long)rd->ctx);
    }
    struct sim_read_req *req = *pp;
    if (rd->status != 0) {
        sim__trace(c, (unsigned)n->id, "read #%llu refused: %s",
                   (unsigned long long)rd->ctx, craft_strerror(rd->status));
        *pp = req->next;
        free(req);
        c->reads.refused++;
        if (c->o.read_cb != NULL) {
            c->o.read_cb(c->o.apply_cb_data, n->id, rd->ctx, rd->status, 0);
        }
        return;
    }
    if (rd->index < req->need_index) {
        sim_fail(c,
                 "n%llu: stale read: ReadIndex %llu but index %llu "
                 "was committed before the read was issued",
                 (unsigned long long)n->id, (unsigned long long)rd->index,
                 (unsigned long long)req->need_index);
    }
    req->index = rd->index;
    sim__trace(c, (unsigned)n->id, "read #%llu at index %llu",
               (unsigned long long)rd->ctx, (unsigned long long)rd->index);
}

/* ReadIndex answers, then serve every read whose index is applied. */
static void handle_reads(struct sim_cluster *c, struct sim_node *n,
                         const struct raft_update *u)
{
    for (size_t i = 0; i < u->n_reads; i++) {
        read_answered(c, n, &u->reads[i]);
    }
    struct sim_read_req **pp = &n->reads;
    while (*pp != NULL) {
        struct sim_read_req *req = *pp;
        if (req->index == 0 || req->index > n->applied) {
            pp = &req->next;
            continue;
        }
        /* The value read is the register at n->applied, whose chain the
         * apply checks tie to the committed log; it reflects every write
         * acknowledged before the read if it covers them all. */
        if (n->applied < req->need_applied) {
            sim_fail(c,
                     "n%llu: read served at %llu misses write %llu "
                     "acknowledged before it",
                     (unsigned long long)n->id, (unsigned long long)n->applied,
                     (unsigned long long)req->need_applied);
        }
        sim__trace(c, (unsigned)n->id, "read #%llu served at %llu",
                   (unsigned long long)req->ctx,
                   (unsigned long long)n->applied);
        *pp = req->next;
        uint64_t ctx = req->ctx;
        free(req);
        c->reads.served++;
        if (c->o.read_cb != NULL) {
            c->o.read_cb(c->o.apply_cb_data, n->id, ctx, 0, n->applied);
        }
    }
}

static void take_snapshot(struct sim_cluster *c, struct sim_node *n)
{
    if (n->st.has_snap && n->st.snap.index > n->applied) {
        /* A snapshot received from the leader became current while this
         * one was due: the newer one wins, this one is discarded and
         * RAFT_SNAPSHOT not stepped (raft.h). */
        return;
    }
    struct raft_buffer appbuf = {NULL, 0};
    const struct sim_app_ops *app = c->o.app;
    if (app != NULL && app->snapshot(app->data, n->app, &appbuf) != 0) {
        sim_fail(c, "n%llu: app snapshot failed", (unsigned long long)n->id);
    }
    size_t len = SIM_SNAP_HEADER + appbuf.len;
    uint8_t *data = malloc(len);
    CRAFT_ASSERT(data != NULL);
    put_u64(data, n->applied);
    put_u64(data + 8, n->chain);
    if (appbuf.len > 0) {
        memcpy(data + SIM_SNAP_HEADER, appbuf.base, appbuf.len);
    }
    free(appbuf.base);

    struct raft_snapshot_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.index = n->applied;
    CRAFT_ASSERT(n->applied > n->log.base || n->applied == n->log.base);
    meta.term = n->applied == n->log.base
                    ? 0
                    : n->log.e[n->applied - n->log.base - 1].term;
    meta.size = len;
    if (meta.term == 0) {
        free(data);
        return; /* already covered by the current snapshot */
    }
    meta.config.n = c->o.n_nodes;
    for (unsigned i = 0; i < c->o.n_nodes; i++) {
        meta.config.ids[i] = i + 1;
    }
    /* The snapshot file is written synchronously: the event below says it
     * is durable. */
    sim__storage_set_snapshot(&n->st, &meta, data, len);
    free(data);
    sim__trace(c, (unsigned)n->id, "snapshot %llu",
               (unsigned long long)meta.index);
    struct raft_event ev = {.type = RAFT_SNAPSHOT};
    ev.snapshot.index = meta.index;
    ev.snapshot.size = len;
    ev.snapshot.trailing = c->o.snapshot_trailing;
    sim__node_step(c, n, &ev);
}

static int step_once(struct sim_cluster *c, struct sim_node *n,
                     struct raft_event *ev)
{
    struct raft_update u;
    raft_index last_before = n->log.last;
    raft_index applied_before = n->applied;
    CRAFT_ASSERT(n->up);
    int rv = raft_step(n->r, ev, &u);
    c->n_events++;

    queue_persistence(c, n, &u);
    sim__check_update(c, n, &u, last_before);
    for (size_t i = 0; i < u.n_messages; i++) {
        sim__send(c, n, &u.messages[i]);
    }
    if (u.install != NULL) {
        install_snapshot(c, n, u.install);
    }
    apply_entries(c, n, &u);
    if (u.compact_to > 0) {
        sim__storage_compact(&n->st, u.compact_to);
    }
    handle_reads(c, n, &u);

    unsigned every = c->o.snapshot_every;
    bool due = every > 0 && n->applied / every > applied_before / every;
    if (c->o.snapshot_bytes > 0 && n->applied > applied_before &&
        sim__storage_state_size(&n->st) >= c->o.snapshot_bytes) {
        due = true;
    }
    if (due) {
        take_snapshot(c, n); /* steps n again: u is dead from here */
    }
    return rv;
}

static void schedule_retry(struct sim_cluster *c, struct sim_node *n,
                           const struct raft_event *ev);

void sim__node_step(struct sim_cluster *c, struct sim_node *n,
                    struct raft_event *ev)
{
    int rv = step_once(c, n, ev);
    if (rv == CRAFT_ENOMEM && c->alloc_failures > 0) {
        /* An injected failure: the core is unchanged but for lost
         * messages.  A runtime retries a persistence notice; a lost tick,
         * message or snapshot notice is made good by the protocol. */
        sim__trace(c, (unsigned)n->id, "ENOMEM on event %d", ev->type);
        if ((ev->type == RAFT_PERSISTED || ev->type == RAFT_SNAPSHOT) &&
            n->up) {
            schedule_retry(c, n, ev);
        }
        return;
    }
    if (rv != 0) {
        sim_fail(c, "n%llu: raft_step(%d) failed: %s",
                 (unsigned long long)n->id, ev->type, craft_strerror(rv));
    }
}

/* ---- the loop ----------------------------------------------------------- */

static void schedule_tick(struct sim_cluster *c, struct sim_node *n,
                          uint64_t at)
{
    struct sim_event ev = {.time = at,
                           .type = SIM_EV_TICK,
                           .node = (unsigned)(n->id - 1),
                           .incarnation = n->incarnation};
    sim__push(c, &ev);
}

static void commit_pending(struct sim_cluster *c, struct sim_node *n,
                           uint64_t seq)
{
    while (n->pend_head != NULL && n->pend_head->seq <= seq) {
        struct sim_pending *p = n->pend_head;
        sim__storage_commit(c, &n->st, p);
        n->pend_head = p->next;
        if (n->pend_head == NULL) {
            n->pend_tail = NULL;
        }
        sim__pending_free(p);
    }
}

/* Notices a runtime must not lose -- "this is durable", "this snapshot is
 * stored" -- are stepped again 1 ms after an ENOMEM. */
static void schedule_retry(struct sim_cluster *c, struct sim_node *n,
                           const struct raft_event *ev)
{
    struct sim_event e = {.time = c->now + 1,
                          .type = SIM_EV_RETRY,
                          .node = (unsigned)(n->id - 1),
                          .incarnation = n->incarnation,
                          .retry = *ev};
    sim__push(c, &e);
}

static void retry(struct sim_cluster *c, struct sim_node *n,
                  struct raft_event *ev)
{
    if (ev->type == RAFT_SNAPSHOT &&
        (!n->st.has_snap || n->st.snap.index != ev->snapshot.index)) {
        return; /* a newer snapshot's notice supersedes this one */
    }
    sim__node_step(c, n, ev);
}

static void persist_done(struct sim_cluster *c, struct sim_node *n,
                         uint64_t seq)
{
    CRAFT_ASSERT(n->pend_head != NULL && n->pend_head->seq <= seq);
    bool early = (c->o.inject & SIM_INJECT_EARLY_ACK) != 0;
    if (!early) {
        commit_pending(c, n, seq);
    }
    struct raft_event ev = {.type = RAFT_PERSISTED};
    ev.persisted.seq = seq;
    sim__node_step(c, n, &ev);
    if (early && n->up) {
        commit_pending(c, n, seq);
    }
}

/* A healthy cluster of up to 9 nodes takes a few thousand steps per
 * simulated second (ticks, heartbeats, client traffic); a hundred times that
 * is a message storm or a livelock in simulated time, which would otherwise
 * hang the run. */
#define SIM_EVENTS_PER_MS_MAX 200
#define SIM_EVENTS_SLACK 1000000
/* Likewise for events queued at once: a healthy cluster has at most a few
 * thousand messages in flight, even with 2-second reordering delays. */
#define SIM_QUEUED_MAX 50000

static void run_one(struct sim_cluster *c)
{
    if (c->n_events > SIM_EVENTS_SLACK + SIM_EVENTS_PER_MS_MAX * c->now) {
        sim_fail(c, "event storm: %llu events in %llu simulated ms",
                 (unsigned long long)c->n_events, (unsigned long long)c->now);
    }
    if (c->n_heap > SIM_QUEUED_MAX) {
        sim_fail(c, "message storm: %zu events queued at %llu ms", c->n_heap,
                 (unsigned long long)c->now);
    }
    struct sim_event ev = heap_pop(c);
    CRAFT_ASSERT(ev.time >= c->now);
    c->now = ev.time;
    struct sim_node *n = &c->nodes[ev.node];
    switch ((enum sim_event_type)ev.type) {
    case SIM_EV_TICK:
        if (n->up && n->incarnation == ev.incarnation) {
            schedule_tick(c, n, c->now + c->o.tick_ms);
            struct raft_event tick = {.type = RAFT_TICK};
            sim__node_step(c, n, &tick);
        }
        break;
    case SIM_EV_DELIVER:
        sim__deliver(c, &ev);
        break;
    case SIM_EV_PERSIST:
        if (n->up && n->incarnation == ev.incarnation) {
            persist_done(c, n, ev.persist_seq);
        }
        break;
    case SIM_EV_RETRY:
        if (n->up && n->incarnation == ev.incarnation) {
            retry(c, n, &ev.retry);
        }
        break;
    case SIM_EV_UNREACHABLE:
        if (n->up && n->incarnation == ev.incarnation) {
            struct raft_event un = {.type = RAFT_UNREACHABLE};
            un.unreachable.peer = ev.peer;
            sim__trace(c, (unsigned)n->id, "unreachable: n%llu",
                       (unsigned long long)ev.peer);
            sim__node_step(c, n, &un);
        }
        break;
    }
}

uint64_t sim_now(const struct sim_cluster *c)
{
    return c->now;
}

uint64_t sim_events(const struct sim_cluster *c)
{
    return c->n_events;
}

void sim_run_for(struct sim_cluster *c, uint64_t ms)
{
    uint64_t end = c->now + ms;
    while (c->n_heap > 0 && c->heap[0].time <= end) {
        run_one(c);
    }
    c->now = end;
}

bool sim_run_until(struct sim_cluster *c,
                   bool (*pred)(struct sim_cluster *, void *), void *data,
                   uint64_t timeout_ms)
{
    uint64_t end = c->now + timeout_ms;
    if (pred(c, data)) {
        return true;
    }
    while (c->n_heap > 0 && c->heap[0].time <= end) {
        run_one(c);
        if (pred(c, data)) {
            return true;
        }
    }
    c->now = end;
    return pred(c, data);
}

/* ---- the cores' allocator ---------------------------------------------- */

static bool alloc_fails(struct sim_alloc *al)
{
    struct sim_cluster *c = al->node->cluster;
    if (!al->armed || c->alloc_fail_pm == 0 ||
        !rng_chance(&c->rng, c->alloc_fail_pm)) {
        return false;
    }
    c->alloc_failures++;
    return true;
}

static void *al_malloc(void *data, size_t size)
{
    struct sim_alloc *al = data;
    void *p = alloc_fails(al) ? NULL : malloc(size);
    al->live += p != NULL;
    return p;
}

static void *al_calloc(void *data, size_t nmemb, size_t size)
{
    struct sim_alloc *al = data;
    void *p = alloc_fails(al) ? NULL : calloc(nmemb, size);
    al->live += p != NULL;
    return p;
}

static void *al_realloc(void *data, void *ptr, size_t size)
{
    struct sim_alloc *al = data;
    if (alloc_fails(al)) {
        return NULL;
    }
    void *p = realloc(ptr, size);
    al->live += ptr == NULL && p != NULL;
    return p;
}

static void al_free(void *data, void *ptr)
{
    struct sim_alloc *al = data;
    al->live -= ptr != NULL;
    free(ptr);
}

void sim_set_alloc_failures(struct sim_cluster *c, unsigned per_mille)
{
    CRAFT_ASSERT(per_mille <= 1000);
    c->alloc_fail_pm = per_mille;
    sim__trace(c, 0, "allocation failures %u/1000", per_mille);
}

/* ---- node life cycle ---------------------------------------------------- */

static void node_start(struct sim_cluster *c, struct sim_node *n)
{
    struct sim_storage *s = &n->st;
    CRAFT_ASSERT(!n->up);
    struct raft_config config;
    memset(&config, 0, sizeof config);
    config.n = c->o.n_nodes;
    for (unsigned i = 0; i < c->o.n_nodes; i++) {
        config.ids[i] = i + 1;
    }

    if (n->incarnation > 0 && (c->o.inject & SIM_INJECT_FORGET_VOTE)) {
        s->hs.vote = 0;
    }
    if (n->incarnation > 0 && (c->o.inject & SIM_INJECT_LOSE_TAIL) &&
        s->n_log > 0) {
        free(s->log[--s->n_log].buf.base);
    }

    /* Durable entries from the snapshot's own index on (the core checks
     * that entry's term against the snapshot), without a gap after it. */
    raft_index after = s->has_snap ? s->snap.index : 0;
    size_t skip = 0;
    while (skip < s->n_log && s->log[skip].index < after) {
        skip++;
    }
    if (skip < s->n_log && s->log[skip].index > after + 1) {
        sim_fail(c, "n%llu: durable log starts at %llu after snapshot %llu",
                 (unsigned long long)n->id,
                 (unsigned long long)s->log[skip].index,
                 (unsigned long long)after);
    }
    struct raft_restore restore = {.hs = s->hs,
                                   .snapshot = s->has_snap ? &s->snap : NULL,
                                   .entries = s->log + skip,
                                   .n_entries = s->n_log - skip};

    const struct sim_app_ops *app = c->o.app;
    if (app != NULL) {
        n->app = app->open(app->data, n->id);
        CRAFT_ASSERT(n->app != NULL);
    }
    n->applied = 0;
    n->chain = 0;
    if (s->has_snap) {
        CRAFT_ASSERT(s->snap_len >= SIM_SNAP_HEADER);
        n->applied = get_u64(s->snap_data);
        n->chain = get_u64(s->snap_data + 8);
        if (app != NULL &&
            app->restore(app->data, n->app, s->snap_data + SIM_SNAP_HEADER,
                         s->snap_len - SIM_SNAP_HEADER) != 0) {
            sim_fail(c, "n%llu: app could not restore its snapshot",
                     (unsigned long long)n->id);
        }
    }

    struct raft_options opts = c->o.raft;
    opts.trace = sim__raft_trace_hook;
    opts.trace_data = n;
    struct raft *r = NULL;
    n->alloc = (struct sim_alloc){.a = {.data = &n->alloc,
                                        .malloc = al_malloc,
                                        .calloc = al_calloc,
                                        .realloc = al_realloc,
                                        .free = al_free},
                                  .node = n};
    int rv = raft_new(n->id, &config, &opts, rng_next(&c->rng), &restore,
                      &n->alloc.a, &r);
    n->alloc.armed = true;
    if (rv != 0) {
        sim_fail(c, "n%llu: raft_new failed: %s", (unsigned long long)n->id,
                 craft_strerror(rv));
    }
    n->r = r;
    n->up = true;
    n->role = RAFT_FOLLOWER;
    n->term = s->hs.term;
    n->commit = 0; /* the first update says what the new core knows */
    n->fsync_free_at = c->now;
    sim__shadow_rebuild(c, n);
    schedule_tick(c, n, c->now + 1 + n->tick_phase);
}

void sim_crash(struct sim_cluster *c, raft_id id)
{
    struct sim_node *n = sim__node(c, id);
    if (!n->up) {
        return;
    }
    raft_free(n->r);
    n->r = NULL;
    if (n->alloc.live != 0) {
        sim_fail(c, "n%llu: the core leaked %lld allocations",
                 (unsigned long long)id, (long long)n->alloc.live);
    }
    n->up = false;
    n->incarnation++; /* orphans its queued ticks, fsyncs and messages */
    while (n->pend_head != NULL) {
        struct sim_pending *p = n->pend_head;
        n->pend_head = p->next;
        sim__pending_free(p);
    }
    n->pend_tail = NULL;
    while (n->reads != NULL) {
        struct sim_read_req *req = n->reads;
        n->reads = req->next;
        free(req);
    }
    if (c->o.app != NULL) {
        c->o.app->close(c->o.app->data, n->app);
        n->app = NULL;
    }
    /* An incoming snapshot not finished is not durable as a snapshot. */
    n->role = 0;
    n->applied = 0;
    sim__trace(c, (unsigned)id, "CRASH");
}

void sim_restart(struct sim_cluster *c, raft_id id)
{
    struct sim_node *n = sim__node(c, id);
    sim_crash(c, id);
    node_start(c, n);
    sim__trace(c, (unsigned)id, "RESTART (applied %llu)",
               (unsigned long long)n->applied);
}

bool sim_is_up(const struct sim_cluster *c, raft_id id)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    return c->nodes[id - 1].up;
}

/* ---- creation ----------------------------------------------------------- */

int sim_cluster_new(const struct sim_options *o, struct sim_cluster **out)
{
    if (o->n_nodes < 1 || o->n_nodes > SIM_NODES_MAX || o->tick_ms == 0 ||
        o->fsync_min_ms > o->fsync_max_ms) {
        return CRAFT_EINVAL;
    }
    struct sim_cluster *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return CRAFT_ENOMEM;
    }
    c->o = *o;
    rng_init(&c->rng, o->seed);
    struct sim_link_faults reliable;
    sim_faults_reliable(&reliable);
    reliable.long_reorder_pm = 667; /* used once long reordering is on */
    for (unsigned i = 0; i < o->n_nodes; i++) {
        for (unsigned j = 0; j < o->n_nodes; j++) {
            c->link_up[i][j] = true;
            c->faults[i][j] = reliable;
        }
    }
    for (unsigned i = 0; i < o->n_nodes; i++) {
        struct sim_node *n = &c->nodes[i];
        n->cluster = c;
        n->id = i + 1;
        n->connected = true;
        n->tick_phase = rng_range(&c->rng, 0, o->tick_ms);
    }
    for (unsigned i = 0; i < o->n_nodes; i++) {
        node_start(c, &c->nodes[i]);
    }
    *out = c;
    return 0;
}

void sim_cluster_free(struct sim_cluster *c)
{
    if (c == NULL) {
        return;
    }
    c->fail_jump = NULL;
    for (unsigned i = 0; i < c->o.n_nodes; i++) {
        struct sim_node *n = &c->nodes[i];
        if (n->up) {
            sim_crash(c, n->id);
        }
        sim__storage_close(&n->st);
        sim__shadow_close(&n->log);
    }
    for (size_t i = 0; i < c->n_heap; i++) {
        if (c->heap[i].type == SIM_EV_DELIVER) {
            sim__msg_free(c->heap[i].msg);
        }
    }
    free(c->heap);
    sim__msg_free(c->delivering);
    sim__invariants_close(c);
    free(c);
}

void sim_set_fail_jump(struct sim_cluster *c, jmp_buf *jb)
{
    c->fail_jump = jb;
}

void sim_fail(struct sim_cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    sim__trace(c, 0, "FAIL: %.60s", c->reason);
    if (c->fail_jump == NULL) {
        fprintf(stderr, "sim: %s\n", c->reason);
        sim_trace_print(c, stderr, 60);
        abort();
    }
    c->failing = true;
    longjmp(*c->fail_jump, 1);
}

const char *sim_fail_reason(const struct sim_cluster *c)
{
    return c->reason;
}

/* ---- clients ------------------------------------------------------------ */

int sim_propose(struct sim_cluster *c, raft_id id, const void *data, size_t len,
                raft_index *index, raft_term *term)
{
    struct sim_node *n = sim__node(c, id);
    if (!n->up) {
        return CRAFT_ENOTLEADER;
    }
    struct raft_buffer buf = {(void *)(uintptr_t)data, len};
    struct raft_event ev = {.type = RAFT_PROPOSE};
    ev.propose.bufs = &buf;
    ev.propose.n = 1;
    int rv = step_once(c, n, &ev);
    if (rv == CRAFT_ENOTLEADER) {
        return rv;
    }
    if (rv == CRAFT_ENOMEM && c->alloc_failures > 0) {
        sim__trace(c, (unsigned)id, "propose: ENOMEM");
        return rv;
    }
    if (rv != 0) {
        sim_fail(c, "n%llu: propose failed: %s", (unsigned long long)id,
                 craft_strerror(rv));
    }
    sim__trace(c, (unsigned)id, "propose -> %llu",
               (unsigned long long)ev.propose.index);
    if (index != NULL) {
        *index = ev.propose.index;
    }
    if (term != NULL) {
        *term = ev.propose.term;
    }
    return 0;
}

int sim_propose_u64(struct sim_cluster *c, raft_id id, uint64_t value,
                    raft_index *index, raft_term *term)
{
    uint8_t b[8];
    put_u64(b, value);
    return sim_propose(c, id, b, sizeof b, index, term);
}

int sim_read(struct sim_cluster *c, raft_id id, uint64_t *ctx)
{
    struct sim_node *n = sim__node(c, id);
    if (!n->up) {
        return CRAFT_ENOTLEADER;
    }
    struct sim_read_req *req = calloc(1, sizeof *req);
    CRAFT_ASSERT(req != NULL);
    req->ctx = ++c->read_ctx;
    req->need_index = c->commit_max;
    req->need_applied = c->applied_max;
    req->issued_at = c->now;
    req->next = n->reads;
    n->reads = req;
    c->reads.issued++;
    sim__trace(c, (unsigned)id, "read #%llu", (unsigned long long)req->ctx);
    if (ctx != NULL) {
        *ctx = req->ctx;
    }
    if ((c->o.inject & SIM_INJECT_LOCAL_READ) && n->role == RAFT_LEADER) {
        /* The injected bug: a "leader" answers from its own commit index
         * without confirming that it still leads. */
        struct raft_read rd = {.ctx = req->ctx, .index = n->commit};
        struct raft_update none;
        memset(&none, 0, sizeof none);
        read_answered(c, n, &rd);
        handle_reads(c, n, &none);
        return 0;
    }
    struct raft_event ev = {.type = RAFT_READ};
    ev.read.ctx = req->ctx;
    int rv = step_once(c, n, &ev);
    if (rv == CRAFT_ENOMEM && c->alloc_failures > 0 && n->up) {
        /* Refused before it started: the client sees the error. */
        struct raft_read rd = {.ctx = req->ctx, .status = CRAFT_ENOMEM};
        read_answered(c, n, &rd);
        return CRAFT_ENOMEM;
    }
    if (rv != 0) {
        sim_fail(c, "n%llu: read failed: %s", (unsigned long long)id,
                 craft_strerror(rv));
    }
    return 0;
}

int sim_transfer(struct sim_cluster *c, raft_id id, raft_id peer)
{
    struct sim_node *n = sim__node(c, id);
    if (!n->up) {
        return CRAFT_ENOTLEADER;
    }
    struct raft_event ev = {.type = RAFT_TRANSFER};
    ev.transfer.peer = peer;
    int rv = step_once(c, n, &ev);
    if (rv != 0 && rv != CRAFT_ENOTLEADER && rv != CRAFT_EINVAL &&
        !(rv == CRAFT_ENOMEM && c->alloc_failures > 0)) {
        sim_fail(c, "n%llu: transfer failed: %s", (unsigned long long)id,
                 craft_strerror(rv));
    }
    sim__trace(c, (unsigned)id, "transfer to %llu: %s",
               (unsigned long long)peer, rv == 0 ? "ok" : craft_strerror(rv));
    return rv;
}

void sim_read_stats(const struct sim_cluster *c, struct sim_read_stats *s)
{
    *s = c->reads;
    s->oldest_pending = UINT64_MAX;
    for (unsigned i = 0; i < c->o.n_nodes; i++) {
        const struct sim_node *n = &c->nodes[i];
        for (const struct sim_read_req *r = n->reads; n->up && r != NULL;
             r = r->next) {
            if (r->issued_at < s->oldest_pending) {
                s->oldest_pending = r->issued_at;
            }
        }
    }
}

/* ---- observation -------------------------------------------------------- */

unsigned sim_n_nodes(const struct sim_cluster *c)
{
    return c->o.n_nodes;
}

bool sim_status(const struct sim_cluster *c, raft_id id, struct raft_status *st)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    const struct sim_node *n = &c->nodes[id - 1];
    if (!n->up) {
        return false;
    }
    raft_status(n->r, st);
    return true;
}

raft_index sim_applied(const struct sim_cluster *c, raft_id id)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    const struct sim_node *n = &c->nodes[id - 1];
    return n->up ? n->applied : 0;
}

bool sim_applied_at(const struct sim_cluster *c, raft_index index,
                    uint8_t *type, uint64_t *value)
{
    if (index == 0 || index >= c->cap_idx || !c->idx[index].applied) {
        return false;
    }
    *type = c->idx[index].type;
    *value = c->idx[index].value;
    return true;
}

raft_index sim_commit_max(const struct sim_cluster *c)
{
    return c->commit_max;
}

size_t sim_log_state_size(const struct sim_cluster *c, raft_id id)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    return sim__storage_state_size(&c->nodes[id - 1].st);
}

bool sim_has_snapshot(const struct sim_cluster *c, raft_id id)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    return c->nodes[id - 1].st.has_snap;
}

uint64_t sim_digest(const struct sim_cluster *c)
{
    uint64_t chain = c->commit_max > 0 ? c->idx[c->commit_max].chain : 0;
    uint64_t parts[5] = {c->now, c->n_events, c->commit_max, chain, c->n_trace};
    return sim__hash_bytes(parts, sizeof parts);
}

void *sim_app_state(const struct sim_cluster *c, raft_id id)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    const struct sim_node *n = &c->nodes[id - 1];
    return n->up ? n->app : NULL;
}

void sim_counters(const struct sim_cluster *c, raft_id id,
                  struct sim_counters *out)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    *out = c->nodes[id - 1].cnt;
}

void sim_counters_total(const struct sim_cluster *c, struct sim_counters *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < c->o.n_nodes; i++) {
        const struct sim_counters *k = &c->nodes[i].cnt;
        out->msgs_out += k->msgs_out;
        out->msgs_in += k->msgs_in;
        out->rpcs_out += k->rpcs_out;
        out->rpcs_in += k->rpcs_in;
        out->bytes_out += k->bytes_out;
        out->bytes_in += k->bytes_in;
        out->snapshots_in += k->snapshots_in;
    }
}
