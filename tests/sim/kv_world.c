/*
 * tests/sim/kv_world.c -- KV servers, client network, clerks and history
 * of the simulated key-value store; see kv_world.h.
 *
 * Client messages live in the world's own event queue.  kv_run_for()
 * advances the cluster one simulated millisecond at a time and after each
 * runs the client events due by then, so a client event at time t runs
 * after the cluster's events of time t: a run is still a pure function of
 * the seed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kvsm.h"
#include "kv_world.h"
#include "server/resp.h"
#include "util/assert.h"

#define U(x) ((unsigned long long)(x))

/* Most arguments of a request: CRAFT.EXEC id seq first-unacked APPEND key
 * value. */
#define KV_ARGS_MAX 8

/* A request as a server receives it after RESP parsing: an argument
 * vector in one allocation. */
struct kv_args {
    size_t argc;
    const uint8_t *argv[KV_ARGS_MAX];
    size_t lens[KV_ARGS_MAX];
    uint8_t *store;
};

enum kv_status {
    KV_S_OK,           /* a RESP reply is attached */
    KV_S_WRONG_LEADER, /* not (or no longer) the leader: try another */
    KV_S_FAILED        /* the call failed: lost, refused, timed out */
};

enum kv_ev_type {
    KV_EV_REQUEST = 1, /* a request reaches a server */
    KV_EV_REPLY,       /* a reply (or a failure) reaches a clerk */
    KV_EV_TIMEOUT,     /* a clerk's call timer */
    KV_EV_RESEND       /* a clerk's pause after a round of failures ends */
};

struct kv_event {
    uint64_t time, seq;
    uint8_t type;
    uint8_t status; /* enum kv_status, for KV_EV_REPLY */
    unsigned clerk;
    raft_id server;
    uint64_t call;
    struct kv_args req; /* KV_EV_REQUEST: owned */
    struct buf reply;   /* KV_EV_REPLY: owned */
};

/* A request a server holds until its entry commits or its read is
 * served. */
struct kv_pending {
    struct kv_pending *next;
    bool is_read;
    unsigned clerk;
    uint64_t call;
    raft_index index; /* write: where it was proposed */
    raft_term term;
    uint64_t read_ctx;  /* read: the cluster's read number */
    struct kv_args cmd; /* read: the command to run; owned */
};

/* The application state of one node: its state machine. */
struct kv_node {
    struct kv_world *w;
    raft_id id;
    struct kvsm *sm;
};

struct kv_clerk {
    struct kv_world *w;
    unsigned idx;
    char name[16];
    raft_id servers[SIM_NODES_MAX]; /* shuffled */
    unsigned n_servers;
    bool enabled[SIM_NODES_MAX + 1];
    unsigned leader;  /* position in servers of the cached leader */
    unsigned misses;  /* failed calls since the last success */
    uint64_t session; /* 0 until opened */
    uint64_t seq;     /* of the current write */
    uint64_t call;    /* call in flight, 0 if none */
    bool busy;        /* an operation is running */
    bool opening;     /* its current call opens the session */
    bool dead;        /* abandoned: sends nothing more */
    enum kv_op op;
    char *key, *value;
    uint64_t call_stamp;
    struct buf result; /* NUL-terminated */
    bool result_nil;
    kv_done_cb cb;
    void *cb_data;
    uint64_t n_calls;
};

/* A read answer that came before its request was pending. */
struct early_read {
    bool valid;
    uint64_t ctx;
    int status;
    raft_index applied;
};

/* Scenario cleanups one world holds (kv_defer). */
#define KV_CLEANUPS_MAX 8

struct kv_world {
    struct sim_test *t;
    struct sim_cluster *c;
    struct kv_world_opts o;
    struct sim_app_ops ops;
    jmp_buf jb;
    struct kv_pending *pending[SIM_NODES_MAX + 1];
    struct kv_clerk *clerks[KV_CLERKS_MAX];
    unsigned n_clerks;
    struct kv_event *heap;
    size_t n_heap, cap_heap;
    uint64_t ev_seq, call_seq, last_stamp;
    struct rng rng;
    bool unreliable;
    struct lin_history hist;
    size_t snap_max;
    uint64_t lin_steps;  /* search budget per key; 0 for the default */
    unsigned inject;     /* enum kv_inject bits */
    bool lin_report;     /* print the verdict of a legal history too */
    unsigned dup_pm;     /* client requests delivered twice, per mille */
    size_t n_unknown;    /* operations given up */
    bool in_read;        /* inside sim_read() */
    struct kv_event cur; /* the client event running, if has_cur */
    bool has_cur;
    /* Cleanups of scenario state, run by world_free(). */
    void (*cleanup[KV_CLEANUPS_MAX])(void *);
    void *cleanup_arg[KV_CLEANUPS_MAX];
    unsigned n_cleanups;
    struct early_read early;
};

static void fail(struct kv_world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void fail(struct kv_world *w, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sim_fail(w->c, "%s", msg);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CRAFT_ASSERT(p != NULL);
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* ---- argument vectors --------------------------------------------------- */

static void args_build(struct kv_args *a, size_t argc, const char *const *s)
{
    CRAFT_ASSERT(argc >= 1);
    CRAFT_ASSERT(argc <= KV_ARGS_MAX);
    size_t total = 0;
    for (size_t i = 0; i < argc; i++) {
        total += strlen(s[i]);
    }
    a->store = xmalloc(total);
    a->argc = argc;
    size_t off = 0;
    for (size_t i = 0; i < argc; i++) {
        a->lens[i] = strlen(s[i]);
        memcpy(a->store + off, s[i], a->lens[i]);
        a->argv[i] = a->store + off;
        off += a->lens[i];
    }
}

/* A copy of argv[from..argc) of a. */
static void args_suffix(struct kv_args *dst, const struct kv_args *a,
                        size_t from)
{
    CRAFT_ASSERT(from < a->argc);
    size_t total = 0;
    for (size_t i = from; i < a->argc; i++) {
        total += a->lens[i];
    }
    dst->store = xmalloc(total);
    dst->argc = a->argc - from;
    size_t off = 0;
    for (size_t i = 0; i < dst->argc; i++) {
        dst->lens[i] = a->lens[from + i];
        memcpy(dst->store + off, a->argv[from + i], dst->lens[i]);
        dst->argv[i] = dst->store + off;
        off += dst->lens[i];
    }
}

static void args_free(struct kv_args *a)
{
    free(a->store);
    a->store = NULL;
    a->argc = 0;
}

/* ---- the client event queue: a min-heap on (time, seq) ------------------ */

static bool ev_before(const struct kv_event *a, const struct kv_event *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void ev_push(struct kv_world *w, struct kv_event *ev)
{
    CRAFT_ASSERT(ev->time >= sim_now(w->c));
    if (w->n_heap == w->cap_heap) {
        w->cap_heap = w->cap_heap ? 2 * w->cap_heap : 64;
        w->heap = realloc(w->heap, w->cap_heap * sizeof *w->heap);
        CRAFT_ASSERT(w->heap != NULL);
    }
    ev->seq = w->ev_seq++;
    size_t i = w->n_heap++;
    w->heap[i] = *ev;
    while (i > 0 && ev_before(&w->heap[i], &w->heap[(i - 1) / 2])) {
        struct kv_event tmp = w->heap[i];
        w->heap[i] = w->heap[(i - 1) / 2];
        w->heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static struct kv_event ev_pop(struct kv_world *w)
{
    CRAFT_ASSERT(w->n_heap > 0);
    struct kv_event top = w->heap[0];
    w->heap[0] = w->heap[--w->n_heap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->n_heap && ev_before(&w->heap[l], &w->heap[m])) {
            m = l;
        }
        if (r < w->n_heap && ev_before(&w->heap[r], &w->heap[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        struct kv_event tmp = w->heap[i];
        w->heap[i] = w->heap[m];
        w->heap[m] = tmp;
        i = m;
    }
    return top;
}

static void ev_free(struct kv_event *ev)
{
    args_free(&ev->req);
    buf_close(&ev->reply);
}

/* ---- the client network ------------------------------------------------- */

/* One direction of a client call: true if the message gets through, with
 * its delay; labrpc's unreliable network loses 10% and delays 0-26 ms. */
static bool net_pass(struct kv_world *w, uint64_t *delay)
{
    if (!w->unreliable) {
        *delay = 1;
        return true;
    }
    *delay = rng_range(&w->rng, 0, 27);
    return !rng_chance(&w->rng, 100);
}

/* A failed call is noticed after 0-100 ms (labrpc's short delay). */
static uint64_t fail_delay(struct kv_world *w)
{
    return rng_range(&w->rng, 0, 101);
}

static void send_reply(struct kv_world *w, raft_id server, unsigned clerk,
                       uint64_t call, enum kv_status status,
                       const struct buf *reply)
{
    struct kv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = KV_EV_REPLY;
    ev.clerk = clerk;
    ev.server = server;
    ev.call = call;
    uint64_t delay;
    if (!net_pass(w, &delay)) {
        status = KV_S_FAILED;
        delay = fail_delay(w);
    }
    ev.status = (uint8_t)status;
    ev.time = sim_now(w->c) + delay;
    if (status == KV_S_OK) {
        CRAFT_ASSERT(reply != NULL);
        buf_init(&ev.reply);
        CRAFT_ASSERT(buf_append(&ev.reply, reply->data, reply->len) == 0);
    }
    ev_push(w, &ev);
}

/* The clerk's call failed (refused, or the connection broke). */
static void call_failed(struct kv_world *w, raft_id server, unsigned clerk,
                        uint64_t call)
{
    struct kv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = KV_EV_REPLY;
    ev.status = KV_S_FAILED;
    ev.clerk = clerk;
    ev.server = server;
    ev.call = call;
    ev.time = sim_now(w->c) + fail_delay(w);
    ev_push(w, &ev);
}

/* ---- the server front end ----------------------------------------------- */

static void pending_add(struct kv_world *w, raft_id id, struct kv_pending *p)
{
    p->next = w->pending[id];
    w->pending[id] = p;
}

static void pending_free(struct kv_pending *p)
{
    args_free(&p->cmd);
    free(p);
}

/* Answer and drop every pending request of server id that matches. */
static void answer_where(struct kv_world *w, raft_id id,
                         bool (*match)(const struct kv_pending *, void *),
                         void *arg, enum kv_status status)
{
    struct kv_pending **pp = &w->pending[id];
    while (*pp != NULL) {
        struct kv_pending *p = *pp;
        if (!match(p, arg)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (status == KV_S_FAILED) {
            call_failed(w, id, p->clerk, p->call);
        } else {
            send_reply(w, id, p->clerk, p->call, status, NULL);
        }
        pending_free(p);
    }
}

static bool match_all(const struct kv_pending *p, void *arg)
{
    (void)p;
    (void)arg;
    return true;
}

static void server_error(struct kv_world *w, raft_id id, unsigned clerk,
                         uint64_t call, const struct buf *err)
{
    send_reply(w, id, clerk, call, KV_S_OK, err);
}

/* A write: encode with the leader's clock and propose. */
static void server_write(struct kv_world *w, raft_id id, unsigned clerk,
                         uint64_t call, const struct kv_args *a,
                         const struct kvsm_route *rt)
{
    struct buf entry;
    buf_init(&entry);
    int rv = kvsm_cmd_encode(sim_now(w->c), rt->has_session ? &rt->s : NULL,
                             a->argc - rt->cmd_offset, a->argv + rt->cmd_offset,
                             a->lens + rt->cmd_offset, &entry);
    if (rv != 0) {
        fail(w, "kvsm_cmd_encode: %s", craft_strerror(rv));
    }
    raft_index index;
    raft_term term;
    rv = sim_propose(w->c, id, entry.data, entry.len, &index, &term);
    buf_close(&entry);
    if (rv != 0) {
        send_reply(w, id, clerk, call, KV_S_WRONG_LEADER, NULL);
        return;
    }
    if ((w->inject & KV_INJECT_EARLY_REPLY) && rt->has_session) {
        /* The bug: the reply a commit would give, before the commit. */
        bool set = a->lens[rt->cmd_offset] == 3;
        struct buf r;
        buf_init(&r);
        CRAFT_ASSERT(buf_append(&r, set ? "+OK\r\n" : ":0\r\n", set ? 5 : 4) ==
                     0);
        send_reply(w, id, clerk, call, KV_S_OK, &r);
        buf_close(&r);
        return;
    }
    struct kv_pending *p = xmalloc(sizeof *p);
    memset(p, 0, sizeof *p);
    p->clerk = clerk;
    p->call = call;
    p->index = index;
    p->term = term;
    pending_add(w, id, p);
}

static void on_read(void *data, raft_id id, uint64_t ctx, int status,
                    raft_index applied);

static void server_read(struct kv_world *w, raft_id id, unsigned clerk,
                        uint64_t call, const struct kv_args *a,
                        const struct kvsm_route *rt)
{
    if (w->inject & KV_INJECT_LOCAL_READ) {
        struct buf reply;
        buf_init(&reply);
        const struct kv_node *node = sim_app_state(w->c, id);
        struct kv_args cmd;
        args_suffix(&cmd, a, rt->cmd_offset);
        CRAFT_ASSERT(
            kvsm_read(node->sm, cmd.argc, cmd.argv, cmd.lens, &reply) == 0);
        send_reply(w, id, clerk, call, KV_S_OK, &reply);
        args_free(&cmd);
        buf_close(&reply);
        return;
    }
    /* The core may answer within sim_read() itself (a follower refuses at
     * once): on_read() keeps that answer until the request is pending. */
    uint64_t ctx;
    w->in_read = true;
    w->early.valid = false;
    int rv = sim_read(w->c, id, &ctx);
    w->in_read = false;
    if (rv != 0) {
        send_reply(w, id, clerk, call, KV_S_WRONG_LEADER, NULL);
        return;
    }
    struct kv_pending *p = xmalloc(sizeof *p);
    memset(p, 0, sizeof *p);
    p->is_read = true;
    p->clerk = clerk;
    p->call = call;
    p->read_ctx = ctx;
    args_suffix(&p->cmd, a, rt->cmd_offset);
    pending_add(w, id, p);
    if (w->early.valid) {
        CRAFT_ASSERT(w->early.ctx == ctx);
        w->early.valid = false;
        on_read(w, id, ctx, w->early.status, w->early.applied);
    }
}

/* A request arrives at server id. */
static void server_request(struct kv_world *w, raft_id id, unsigned clerk,
                           uint64_t call, const struct kv_args *a)
{
    if (!sim_is_up(w->c, id)) {
        call_failed(w, id, clerk, call); /* connection refused */
        return;
    }
    struct kvsm_route rt;
    struct buf err;
    buf_init(&err);
    if (kvsm_classify(a->argc, a->argv, a->lens, &rt, &err) != 0) {
        buf_close(&err);
        fail(w, "kvsm_classify: out of memory");
    }
    switch (rt.cls) {
    case KVSM_REJECT:
        server_error(w, id, clerk, call, &err);
        break;
    case KVSM_WRITE:
        server_write(w, id, clerk, call, a, &rt);
        break;
    case KVSM_READ:
        server_read(w, id, clerk, call, a, &rt);
        break;
    case KVSM_LOCAL:
    case KVSM_TX:
        buf_close(&err);
        fail(w, "clerk sent a command of class %d", (int)rt.cls);
    }
    buf_close(&err);
}

static bool match_write_upto(const struct kv_pending *p, void *arg)
{
    const raft_index *index = arg;
    return !p->is_read && p->index <= *index;
}

/* Server id applied the entry at (index, term) with this reply: answer the
 * write proposed there -- its reply if the term matches, else the entry was
 * replaced and the outcome of the request is unknown. */
static void server_applied(struct kv_world *w, raft_id id, raft_index index,
                           raft_term term, const struct buf *reply)
{
    struct kv_pending **pp = &w->pending[id];
    while (*pp != NULL) {
        struct kv_pending *p = *pp;
        if (p->is_read || p->index != index) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (p->term == term && reply != NULL) {
            send_reply(w, id, p->clerk, p->call, KV_S_OK, reply);
        } else {
            send_reply(w, id, p->clerk, p->call, KV_S_WRONG_LEADER, NULL);
        }
        pending_free(p);
    }
    /* Anything proposed at or below an index applied by other means (a
     * snapshot) has an unknown outcome. */
    answer_where(w, id, match_write_upto, &index, KV_S_WRONG_LEADER);
}

struct lost_arg {
    bool leader;
    raft_term term;
    raft_index applied;
};

static bool match_lost(const struct kv_pending *p, void *arg)
{
    const struct lost_arg *x = arg;
    if (p->is_read) {
        return false; /* the core refuses its reads itself */
    }
    return !x->leader || x->term != p->term || p->index <= x->applied;
}

/* Leadership lost or a new term: every write a server holds has an
 * unknown outcome now (it may still commit, or be replaced). */
static void server_poll(struct kv_world *w, raft_id id)
{
    if (w->pending[id] == NULL) {
        return;
    }
    struct raft_status st;
    if (!sim_status(w->c, id, &st)) {
        answer_where(w, id, match_all, NULL, KV_S_FAILED);
        return;
    }
    const struct kv_node *node = sim_app_state(w->c, id);
    CRAFT_ASSERT(node != NULL);
    struct lost_arg x = {st.role == RAFT_LEADER, st.term,
                         kvsm_last_applied(node->sm)};
    answer_where(w, id, match_lost, &x, KV_S_WRONG_LEADER);
}

/* The cluster's read callback: serve or refuse a pending read. */
static void on_read(void *data, raft_id id, uint64_t ctx, int status,
                    raft_index applied)
{
    struct kv_world *w = data;
    struct kv_pending **pp = &w->pending[id];
    while (*pp != NULL && !((*pp)->is_read && (*pp)->read_ctx == ctx)) {
        pp = &(*pp)->next;
    }
    if (*pp == NULL && w->in_read) {
        CRAFT_ASSERT(!w->early.valid);
        w->early = (struct early_read){true, ctx, status, applied};
        return;
    }
    if (*pp == NULL) {
        return; /* a read the crash of its server already failed */
    }
    struct kv_pending *p = *pp;
    *pp = p->next;
    if (status != 0) {
        send_reply(w, id, p->clerk, p->call, KV_S_WRONG_LEADER, NULL);
        pending_free(p);
        return;
    }
    const struct kv_node *node = sim_app_state(w->c, id);
    CRAFT_ASSERT(node != NULL);
    if (kvsm_last_applied(node->sm) != applied) {
        fail(w, "n%llu: read served at %llu but the state machine is at %llu",
             U(id), U(applied), U(kvsm_last_applied(node->sm)));
    }
    struct buf reply;
    buf_init(&reply);
    int rv = kvsm_read(node->sm, p->cmd.argc, p->cmd.argv, p->cmd.lens, &reply);
    if (rv != 0) {
        buf_close(&reply);
        fail(w, "kvsm_read: %s", craft_strerror(rv));
    }
    send_reply(w, id, p->clerk, p->call, KV_S_OK, &reply);
    buf_close(&reply);
    pending_free(p);
}

/* ---- the state machine on each node (struct sim_app_ops) ---------------- */

static void node_config(struct kv_world *w, raft_id id, struct kvsm_config *c)
{
    kvsm_config_default(c);
    /* A different hash key per node, as craftd picks one at random: the
     * replicas must agree on everything but their table layout. */
    c->hash_seed[0] = w->t->seed * 0x9e3779b97f4a7c15ull + id;
    c->hash_seed[1] = id * 0xc2b2ae3d27d4eb4full;
}

static void *app_open(void *data, raft_id id)
{
    struct kv_world *w = data;
    struct kv_node *n = xmalloc(sizeof *n);
    n->w = w;
    n->id = id;
    struct kvsm_config cfg;
    node_config(w, id, &cfg);
    int rv = kvsm_new(&cfg, &n->sm);
    CRAFT_ASSERT(rv == 0);
    return n;
}

static void app_close(void *data, void *state)
{
    (void)data;
    struct kv_node *n = state;
    kvsm_free(n->sm);
    free(n);
}

static void app_apply(void *data, void *state, const struct raft_entry *e)
{
    struct kv_world *w = data;
    struct kv_node *n = state;
    if (e->type != RAFT_ENTRY_COMMAND) {
        kvsm_skip(n->sm, e->index);
        server_applied(w, n->id, e->index, e->term, NULL);
        return;
    }
    struct buf reply;
    buf_init(&reply);
    int rv = kvsm_apply(n->sm, e->index, e->buf.base, e->buf.len, &reply);
    if (rv != 0) {
        buf_close(&reply);
        fail(w, "n%llu: kvsm_apply(%llu): %s", U(n->id), U(e->index),
             craft_strerror(rv));
    }
    CRAFT_DASSERT(kvsm_check(n->sm));
    server_applied(w, n->id, e->index, e->term, &reply);
    buf_close(&reply);
}

static int write_to_buf(void *ctx, const void *p, size_t n)
{
    return buf_append(ctx, p, n);
}

static int app_snapshot(void *data, void *state, struct raft_buffer *out)
{
    struct kv_world *w = data;
    struct kv_node *n = state;
    struct buf b;
    buf_init(&b);
    int rv = kvsm_snapshot_write(n->sm, write_to_buf, &b);
    if (rv != 0) {
        buf_close(&b);
        return rv;
    }
    if (b.len > w->snap_max) {
        w->snap_max = b.len;
    }
    out->base = b.data; /* buf memory comes from realloc: taken by free() */
    out->len = b.len;
    return 0;
}

struct mem_reader {
    const uint8_t *p;
    size_t left;
};

static long long read_from_mem(void *ctx, void *p, size_t n)
{
    struct mem_reader *r = ctx;
    size_t k = n < r->left ? n : r->left;
    memcpy(p, r->p, k);
    r->p += k;
    r->left -= k;
    return (long long)k;
}

static int app_restore(void *data, void *state, const void *buf, size_t len)
{
    struct kv_world *w = data;
    struct kv_node *n = state;
    struct kvsm_config cfg;
    node_config(w, n->id, &cfg);
    struct mem_reader r = {buf, len};
    struct kvsm *fresh;
    int rv = kvsm_snapshot_load(&cfg, read_from_mem, &r, &fresh);
    if (rv != 0) {
        return rv;
    }
    kvsm_free(n->sm);
    n->sm = fresh;
    return 0;
}

/* ---- clerks ------------------------------------------------------------- */

static uint64_t stamp(struct kv_world *w)
{
    /* Simulated ms scaled to "ns", strictly increasing so that events of
     * one millisecond keep their real order in the history. */
    uint64_t t = sim_now(w->c) * 1000000u;
    w->last_stamp = t > w->last_stamp ? t : w->last_stamp + 1;
    return w->last_stamp;
}

static void clerk_send(struct kv_clerk *ck)
{
    struct kv_world *w = ck->w;
    CRAFT_ASSERT(ck->busy);
    CRAFT_ASSERT(ck->call == 0);
    ck->call = ++w->call_seq;
    ck->n_calls++;
    raft_id server = ck->servers[ck->leader];

    struct kv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.clerk = ck->idx;
    ev.server = server;
    ev.call = ck->call;
    char id[24], seq[24];
    snprintf(id, sizeof id, "%llu", U(ck->session));
    snprintf(seq, sizeof seq, "%llu", U(ck->seq));
    if (ck->opening) {
        const char *argv[] = {"CRAFT.SESSION"};
        args_build(&ev.req, 1, argv);
    } else if (ck->op == KV_GET) {
        const char *argv[] = {"GET", ck->key};
        args_build(&ev.req, 2, argv);
    } else if (w->inject & KV_INJECT_NO_SESSION) {
        const char *argv[] = {ck->op == KV_PUT ? "SET" : "APPEND", ck->key,
                              ck->value};
        args_build(&ev.req, 3, argv);
    } else {
        /* first-unacked = seq: one call at a time, every earlier reply
         * was received, so the session keeps only this one. */
        const char *argv[] = {"CRAFT.EXEC",
                              id,
                              seq,
                              seq,
                              ck->op == KV_PUT ? "SET" : "APPEND",
                              ck->key,
                              ck->value};
        args_build(&ev.req, 7, argv);
    }
    uint64_t delay;
    if (!ck->enabled[server] || !net_pass(w, &delay)) {
        args_free(&ev.req);
        ev.type = KV_EV_REPLY;
        ev.status = KV_S_FAILED;
        ev.time = sim_now(w->c) + fail_delay(w);
    } else {
        ev.type = KV_EV_REQUEST;
        ev.time = sim_now(w->c) + delay;
        if (w->dup_pm > 0 && rng_chance(&w->rng, w->dup_pm)) {
            struct kv_event copy = ev;
            args_suffix(&copy.req, &ev.req, 0);
            copy.time += rng_range(&w->rng, 1, 200);
            ev_push(w, &copy);
        }
    }
    ev_push(w, &ev);

    struct kv_event to;
    memset(&to, 0, sizeof to);
    to.type = KV_EV_TIMEOUT;
    to.clerk = ck->idx;
    to.call = ck->call;
    to.time = sim_now(w->c) + KV_CALL_TIMEOUT_MS;
    ev_push(w, &to);
}

static void clerk_retry(struct kv_clerk *ck)
{
    struct kv_world *w = ck->w;
    ck->leader = (ck->leader + 1) % ck->n_servers;
    if (++ck->misses % ck->n_servers != 0) {
        clerk_send(ck);
        return;
    }
    struct kv_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = KV_EV_RESEND;
    ev.clerk = ck->idx;
    ev.time = sim_now(w->c) + KV_ROUND_PAUSE_MS;
    ev_push(w, &ev);
}

static void clerk_complete(struct kv_clerk *ck, bool nil, const uint8_t *val,
                           size_t len)
{
    struct kv_world *w = ck->w;
    buf_reset(&ck->result);
    CRAFT_ASSERT(buf_append(&ck->result, val, len) == 0);
    CRAFT_ASSERT(buf_append(&ck->result, "", 1) == 0);
    ck->result_nil = nil;

    static const enum lin_kind kinds[] = {LIN_GET, LIN_PUT, LIN_APPEND};
    struct lin_op op;
    memset(&op, 0, sizeof op);
    op.client = ck->name;
    op.kind = kinds[ck->op];
    op.key = (struct lin_value){false, (uint8_t *)ck->key, strlen(ck->key)};
    if (ck->op != KV_GET) {
        op.arg =
            (struct lin_value){false, (uint8_t *)ck->value, strlen(ck->value)};
    } else {
        op.has_out = true;
        op.out = (struct lin_value){nil, (uint8_t *)(uintptr_t)val, len};
    }
    op.call = ck->call_stamp;
    op.ret = stamp(w);
    CRAFT_ASSERT(lin_history_add(&w->hist, &op) == 0);

    ck->busy = false;
    free(ck->key);
    free(ck->value);
    ck->key = ck->value = NULL;
    if (ck->cb != NULL) {
        ck->cb(ck, ck->cb_data);
    }
}

/* A successful call: the RESP reply of the server. */
static void clerk_reply(struct kv_clerk *ck, const struct buf *r)
{
    struct kv_world *w = ck->w;
    const char *p = (const char *)r->data;
    size_t n = r->len;
    if (n < 3 || p[n - 2] != '\r' || p[n - 1] != '\n') {
        fail(w, "%s: malformed reply", ck->name);
    }
    if (p[0] == '-') {
        fail(w, "%s: error reply %.*s", ck->name, (int)(n - 2), p);
    }
    long long v = 0;
    if (ck->opening || ck->op == KV_APPEND) {
        if (p[0] != ':' || resp_strtoll(r->data + 1, n - 3, &v) != 0) {
            fail(w, "%s: expected an integer, got %.*s", ck->name, (int)(n - 2),
                 p);
        }
        if (ck->opening) {
            ck->session = (uint64_t)v;
            ck->opening = false;
            clerk_send(ck);
            return;
        }
        clerk_complete(ck, false, NULL, 0);
    } else if (ck->op == KV_PUT) {
        if (n != 5 || memcmp(p, "+OK\r\n", 5) != 0) {
            fail(w, "%s: expected +OK, got %.*s", ck->name, (int)(n - 2), p);
        }
        clerk_complete(ck, false, NULL, 0);
    } else if (n == 5 && memcmp(p, "$-1\r\n", 5) == 0) {
        clerk_complete(ck, true, NULL, 0);
    } else {
        const char *crlf = memchr(p, '\r', n);
        if (p[0] != '$' ||
            resp_strtoll(r->data + 1, (size_t)(crlf - p - 1), &v) != 0 ||
            v < 0 || (size_t)(crlf - p) + 2 + (size_t)v + 2 != n) {
            fail(w, "%s: expected a bulk string, got %.*s", ck->name,
                 (int)(n - 2), p);
        }
        clerk_complete(ck, false, (const uint8_t *)crlf + 2, (size_t)v);
    }
}

static void clerk_event(struct kv_world *w, struct kv_event *ev)
{
    CRAFT_ASSERT(ev->clerk < w->n_clerks);
    struct kv_clerk *ck = w->clerks[ev->clerk];
    if (ck->dead) {
        return;
    }
    if (ev->type == KV_EV_RESEND) {
        if (ck->busy && ck->call == 0) {
            clerk_send(ck);
        }
        return;
    }
    if (!ck->busy || ev->call != ck->call) {
        return; /* the answer to an abandoned call */
    }
    ck->call = 0;
    if (ev->type == KV_EV_TIMEOUT || ev->status != KV_S_OK) {
        clerk_retry(ck);
        return;
    }
    ck->misses = 0;
    clerk_reply(ck, &ev->reply);
}

struct kv_clerk *kv_clerk_new(struct kv_world *w)
{
    if (w->n_clerks == KV_CLERKS_MAX) {
        fail(w, "more than %d clerks", KV_CLERKS_MAX);
    }
    struct kv_clerk *ck = xmalloc(sizeof *ck);
    memset(ck, 0, sizeof *ck);
    ck->w = w;
    ck->idx = w->n_clerks;
    snprintf(ck->name, sizeof ck->name, "c%u", ck->idx);
    ck->n_servers = w->o.n_servers;
    for (unsigned i = 0; i < ck->n_servers; i++) {
        ck->servers[i] = i + 1;
        ck->enabled[i + 1] = true;
    }
    for (unsigned i = ck->n_servers - 1; i > 0; i--) {
        unsigned j = (unsigned)rng_range(&w->rng, 0, i + 1);
        raft_id tmp = ck->servers[i];
        ck->servers[i] = ck->servers[j];
        ck->servers[j] = tmp;
    }
    buf_init(&ck->result);
    CRAFT_ASSERT(buf_append(&ck->result, "", 1) == 0);
    w->clerks[w->n_clerks++] = ck;
    return ck;
}

void kv_clerk_connect(struct kv_clerk *ck, const raft_id *to, unsigned n)
{
    for (unsigned i = 1; i <= ck->n_servers; i++) {
        ck->enabled[i] = false;
    }
    for (unsigned i = 0; i < n; i++) {
        CRAFT_ASSERT(to[i] >= 1 && to[i] <= ck->n_servers);
        ck->enabled[to[i]] = true;
    }
}

unsigned kv_clerk_index(const struct kv_clerk *ck)
{
    return ck->idx;
}

void kv_start(struct kv_clerk *ck, enum kv_op op, const char *key,
              const char *value, kv_done_cb cb, void *data)
{
    CRAFT_ASSERT(!ck->busy);
    CRAFT_ASSERT(op == KV_GET || value != NULL);
    ck->busy = true;
    ck->op = op;
    ck->key = xstrdup(key);
    ck->value = value != NULL ? xstrdup(value) : NULL;
    ck->cb = cb;
    ck->cb_data = data;
    ck->misses = 0;
    ck->call_stamp = stamp(ck->w);
    if (op != KV_GET) {
        ck->seq++;
        ck->opening =
            ck->session == 0 && !(ck->w->inject & KV_INJECT_NO_SESSION);
    }
    clerk_send(ck);
}

bool kv_busy(const struct kv_clerk *ck)
{
    return ck->busy;
}

const char *kv_result(const struct kv_clerk *ck)
{
    return (const char *)ck->result.data;
}

uint64_t kv_calls(const struct kv_clerk *ck)
{
    return ck->n_calls;
}

static void clerk_free(struct kv_clerk *ck)
{
    free(ck->key);
    free(ck->value);
    buf_close(&ck->result);
    free(ck);
}

/* ---- time --------------------------------------------------------------- */

static void run_client_events(struct kv_world *w)
{
    uint64_t now = sim_now(w->c);
    /* Completion callbacks start operations, they never run the loop. */
    CRAFT_ASSERT(!w->has_cur);
    while (w->n_heap > 0 && w->heap[0].time <= now) {
        /* Kept in the world while it runs: a failing check unwinds from
         * inside, and world_free() releases it. */
        w->cur = ev_pop(w);
        w->has_cur = true;
        if (w->cur.type == KV_EV_REQUEST) {
            server_request(w, w->cur.server, w->cur.clerk, w->cur.call,
                           &w->cur.req);
        } else {
            clerk_event(w, &w->cur);
        }
        ev_free(&w->cur);
        w->has_cur = false;
    }
    for (raft_id id = 1; id <= w->o.n_servers; id++) {
        server_poll(w, id);
    }
}

void kv_run_for(struct kv_world *w, uint64_t ms)
{
    for (uint64_t i = 0; i < ms; i++) {
        sim_run_for(w->c, 1);
        run_client_events(w);
    }
}

bool kv_wait(struct kv_world *w, struct kv_clerk *ck, uint64_t timeout_ms)
{
    for (uint64_t i = 0; i < timeout_ms && ck->busy; i++) {
        kv_run_for(w, 1);
    }
    return !ck->busy;
}

static bool any_busy(struct kv_world *w)
{
    for (unsigned i = 0; i < w->n_clerks; i++) {
        if (w->clerks[i]->busy) {
            return true;
        }
    }
    return false;
}

bool kv_wait_all(struct kv_world *w, uint64_t timeout_ms)
{
    for (uint64_t i = 0; i < timeout_ms && any_busy(w); i++) {
        kv_run_for(w, 1);
    }
    return !any_busy(w);
}

/* ---- synchronous helpers ------------------------------------------------ */

#define KV_SYNC_TIMEOUT_MS 30000

static void sync_op(struct kv_world *w, struct kv_clerk *ck, enum kv_op op,
                    const char *key, const char *value)
{
    kv_start(ck, op, key, value, NULL, NULL);
    if (!kv_wait(w, ck, KV_SYNC_TIMEOUT_MS)) {
        fail(w, "%s: %s %s did not complete within %d ms", ck->name,
             op == KV_GET   ? "Get"
             : op == KV_PUT ? "Put"
                            : "Append",
             key, KV_SYNC_TIMEOUT_MS);
    }
}

void kv_put(struct kv_world *w, struct kv_clerk *ck, const char *key,
            const char *value)
{
    sync_op(w, ck, KV_PUT, key, value);
}

void kv_append(struct kv_world *w, struct kv_clerk *ck, const char *key,
               const char *value)
{
    sync_op(w, ck, KV_APPEND, key, value);
}

const char *kv_get(struct kv_world *w, struct kv_clerk *ck, const char *key)
{
    sync_op(w, ck, KV_GET, key, NULL);
    return kv_result(ck);
}

void kv_check(struct kv_world *w, struct kv_clerk *ck, const char *key,
              const char *expect)
{
    const char *v = kv_get(w, ck, key);
    if (strcmp(v, expect) != 0) {
        fail(w, "Get(%s): expected \"%.80s\", got \"%.80s\"", key, expect, v);
    }
}

/* ---- faults ------------------------------------------------------------- */

struct sim_cluster *kv_cluster(struct kv_world *w)
{
    return w->c;
}

void kv_partition(struct kv_world *w, const unsigned *group)
{
    for (raft_id a = 1; a <= w->o.n_servers; a++) {
        for (raft_id b = 1; b <= w->o.n_servers; b++) {
            if (a != b) {
                sim_link_set(w->c, a, b, group[a - 1] == group[b - 1]);
            }
        }
    }
}

void kv_connect_all(struct kv_world *w)
{
    for (raft_id a = 1; a <= w->o.n_servers; a++) {
        for (raft_id b = 1; b <= w->o.n_servers; b++) {
            if (a != b) {
                sim_link_set(w->c, a, b, true);
            }
        }
    }
}

void kv_crash(struct kv_world *w, raft_id id)
{
    sim_crash(w->c, id);
    /* Its clients' connections break: their calls fail. */
    answer_where(w, id, match_all, NULL, KV_S_FAILED);
}

void kv_restart(struct kv_world *w, raft_id id)
{
    kv_crash(w, id);
    sim_restart(w->c, id);
}

void kv_set_unreliable(struct kv_world *w, bool unreliable)
{
    w->unreliable = unreliable;
    sim_set_unreliable(w->c, unreliable);
}

raft_id kv_leader(struct kv_world *w)
{
    raft_id best = 0;
    raft_term best_term = 0;
    for (raft_id id = 1; id <= w->o.n_servers; id++) {
        struct raft_status st;
        if (sim_status(w->c, id, &st) && st.role == RAFT_LEADER &&
            st.term >= best_term) {
            best = id;
            best_term = st.term;
        }
    }
    return best;
}

/* ---- measurements and the history --------------------------------------- */

size_t kv_log_size(struct kv_world *w)
{
    size_t max = 0;
    for (raft_id id = 1; id <= w->o.n_servers; id++) {
        size_t s = sim_log_state_size(w->c, id);
        max = s > max ? s : max;
    }
    return max;
}

size_t kv_snapshot_size_max(struct kv_world *w)
{
    return w->snap_max;
}

bool kv_any_snapshot(struct kv_world *w)
{
    for (raft_id id = 1; id <= w->o.n_servers; id++) {
        if (sim_has_snapshot(w->c, id)) {
            return true;
        }
    }
    return false;
}

size_t kv_history_len(struct kv_world *w)
{
    return w->hist.n;
}

/* Record the clerk's running operation with an unknown outcome (a read
 * is left out: the checker would drop it). */
static void add_unknown(struct kv_world *w, const struct kv_clerk *ck)
{
    CRAFT_ASSERT(ck->busy);
    if (ck->op == KV_GET) {
        return;
    }
    struct lin_op op;
    memset(&op, 0, sizeof op);
    op.client = (char *)(uintptr_t)ck->name;
    op.kind = ck->op == KV_PUT ? LIN_PUT : LIN_APPEND;
    op.key = (struct lin_value){false, (uint8_t *)ck->key, strlen(ck->key)};
    op.arg = (struct lin_value){false, (uint8_t *)ck->value, strlen(ck->value)};
    op.call = ck->call_stamp;
    op.ret = LIN_TIME_UNKNOWN;
    CRAFT_ASSERT(lin_history_add(&w->hist, &op) == 0);
    w->n_unknown++;
}

/* Operations still running have an unknown outcome. */
static void add_unfinished(struct kv_world *w)
{
    for (unsigned i = 0; i < w->n_clerks; i++) {
        if (w->clerks[i]->busy) {
            add_unknown(w, w->clerks[i]);
        }
    }
}

void kv_abandon(struct kv_clerk *ck)
{
    if (ck->busy) {
        add_unknown(ck->w, ck);
        ck->busy = false;
    }
    ck->dead = true;
    ck->call = 0;
}

size_t kv_history_unknown(struct kv_world *w)
{
    return w->n_unknown;
}

void kv_set_duplicates(struct kv_world *w, unsigned per_mille)
{
    CRAFT_ASSERT(per_mille <= 1000);
    w->dup_pm = per_mille;
}

static bool all_applied_equal(struct kv_world *w, raft_index *at)
{
    raft_index first = 0;
    bool seen = false;
    for (raft_id id = 1; id <= w->o.n_servers; id++) {
        const struct kv_node *n = sim_app_state(w->c, id);
        if (n == NULL) {
            continue;
        }
        raft_index a = kvsm_last_applied(n->sm);
        if (seen && a != first) {
            return false;
        }
        first = a;
        seen = true;
    }
    *at = first;
    return true;
}

/* Every live server's value of key, compared. */
static void compare_key(struct kv_world *w, const struct lin_value *key)
{
    struct buf first, other;
    buf_init(&first);
    buf_init(&other);
    raft_id first_id = 0;
    for (raft_id id = 1; id <= w->o.n_servers; id++) {
        const struct kv_node *n = sim_app_state(w->c, id);
        if (n == NULL) {
            continue;
        }
        const uint8_t *argv[] = {(const uint8_t *)"GET", key->p};
        const size_t lens[] = {3, key->n};
        struct buf *b = first_id == 0 ? &first : &other;
        buf_reset(b);
        CRAFT_ASSERT(kvsm_read(n->sm, 2, argv, lens, b) == 0);
        if (first_id == 0) {
            first_id = id;
        } else if (other.len != first.len ||
                   memcmp(other.data, first.data, first.len) != 0) {
            buf_close(&first);
            buf_close(&other);
            fail(w, "replicas n%llu and n%llu disagree on key %.*s",
                 U(first_id), U(id), (int)key->n, (char *)key->p);
        }
    }
    buf_close(&first);
    buf_close(&other);
}

void kv_check_replicas(struct kv_world *w, uint64_t timeout_ms)
{
    raft_index at = 0;
    for (uint64_t i = 0; i < timeout_ms && !all_applied_equal(w, &at); i++) {
        kv_run_for(w, 1);
    }
    if (!all_applied_equal(w, &at)) {
        fail(w, "servers did not reach the same applied index in %llu ms",
             U(timeout_ms));
    }
    for (size_t i = 0; i < w->hist.n; i++) {
        compare_key(w, &w->hist.ops[i].key);
    }
}

void kv_check_linearizable(struct kv_world *w)
{
    struct lin_history h;
    lin_history_init(&h);
    for (size_t i = 0; i < w->hist.n; i++) {
        CRAFT_ASSERT(lin_history_add(&h, &w->hist.ops[i]) == 0);
    }
    struct lin_history saved = w->hist;
    w->hist = h;
    add_unfinished(w);
    struct lin_options lo = {.steps_max = w->lin_steps};
    struct lin_result r;
    CRAFT_ASSERT(lin_check(&w->hist, &lo, &r) == 0);
    if (r.verdict == LIN_UNKNOWN || (r.verdict == LIN_OK && w->lin_report)) {
        printf("%s (seed %llu): ", w->t->name, U(w->t->seed));
        lin_report(stdout, &w->hist, &r, NULL);
    }
    if (r.verdict == LIN_ILLEGAL) {
        char path[256];
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/craft-sim-%s-%llu.history",
                 dir != NULL ? dir : "/tmp", w->t->name, U(w->t->seed));
        /* A self-test's expected failures leave no files behind. */
        FILE *f = w->t->quiet ? NULL : fopen(path, "w");
        if (f != NULL) {
            lin_history_print(f, &w->hist);
            fclose(f);
        }
        lin_report(stderr, &w->hist, &r, f != NULL ? path : NULL);
        lin_result_close(&r);
        lin_history_close(&w->hist);
        w->hist = saved;
        fail(w, "history is not linearizable (%zu operations)", w->hist.n);
    }
    lin_result_close(&r);
    lin_history_close(&w->hist);
    w->hist = saved;
}

void kv_defer(struct kv_world *w, void (*fn)(void *), void *arg)
{
    CRAFT_ASSERT(w->n_cleanups < KV_CLEANUPS_MAX);
    w->cleanup[w->n_cleanups] = fn;
    w->cleanup_arg[w->n_cleanups++] = arg;
}

void kv_set_lin_steps(struct kv_world *w, uint64_t steps)
{
    w->lin_steps = steps;
}

void kv_set_lin_report(struct kv_world *w, bool on)
{
    w->lin_report = on;
}

/* Position of the only occurrence of needle in hay, or -1. */
static long find_once(const char *hay, const char *needle)
{
    const char *at = strstr(hay, needle);
    if (at == NULL || strstr(at + 1, needle) != NULL) {
        return -1;
    }
    return at - hay;
}

void kv_check_append_order(struct kv_world *w, const char *key,
                           const char *value)
{
    size_t klen = strlen(key);
    const struct lin_op *ops = w->hist.ops;
    for (size_t i = 0; i < w->hist.n; i++) {
        const struct lin_op *a = &ops[i];
        if (a->kind != LIN_APPEND || a->key.n != klen ||
            memcmp(a->key.p, key, klen) != 0) {
            continue;
        }
        char arg[64];
        snprintf(arg, sizeof arg, "%.*s", (int)a->arg.n, (char *)a->arg.p);
        long pa = find_once(value, arg);
        if (pa < 0) {
            fail(w, "append %s is not in the value exactly once", arg);
        }
        for (size_t j = 0; j < w->hist.n; j++) {
            const struct lin_op *b = &ops[j];
            if (b->kind != LIN_APPEND || b->key.n != klen ||
                memcmp(b->key.p, key, klen) != 0 || a->ret >= b->call) {
                continue;
            }
            char brg[64];
            snprintf(brg, sizeof brg, "%.*s", (int)b->arg.n, (char *)b->arg.p);
            long pb = find_once(value, brg);
            if (pb < 0 || pb < pa) {
                fail(w,
                     "not linearizable: append %s returned before append %s "
                     "was called, but comes after it in the value",
                     arg, brg);
            }
        }
    }
}

/* ---- the world ---------------------------------------------------------- */

struct kv_world *kv_world_new(struct sim_test *t, const struct kv_world_opts *o)
{
    CRAFT_ASSERT(t->c == NULL);
    CRAFT_ASSERT(o->n_servers >= 1 && o->n_servers <= SIM_NODES_MAX);
    struct kv_world *w = xmalloc(sizeof *w);
    memset(w, 0, sizeof *w);
    w->t = t;
    w->o = *o;
    rng_init(&w->rng, t->seed ^ 0xc1e7c1e7ull);
    lin_history_init(&w->hist);
    w->ops = (struct sim_app_ops){app_open,     app_close,   app_apply,
                                  app_snapshot, app_restore, w};
    struct sim_options so;
    sim_options_init(&so);
    so.n_nodes = o->n_servers;
    so.seed = t->seed;
    so.verbose = t->verbose;
    so.inject = t->inject & ~KV_INJECT_MASK;
    so.app = &w->ops;
    so.read_cb = on_read;
    so.apply_cb_data = w;
    /* Snapshots as the classic server takes them: everything applied,
     * nothing kept behind (a lagging follower gets InstallSnapshot). */
    so.snapshot_bytes = o->maxraftstate;
    so.snapshot_trailing = 0;
    int rv = sim_cluster_new(&so, &t->c);
    if (rv != 0) {
        free(w);
        st_fail(t, "sim_cluster_new: %s", craft_strerror(rv));
    }
    w->c = t->c;
    w->inject = t->inject & KV_INJECT_MASK;
    w->lin_report = true;
    sim_set_fail_jump(t->c, &t->jb);
    kv_set_unreliable(w, o->unreliable);
    return w;
}

/* Free the cluster (its nodes' state machines use w->ops) and then the
 * world; t->c is left NULL with the run's figures in t. */
static void world_free(struct kv_world *w)
{
    struct sim_test *t = w->t;
    t->end_ms = sim_now(w->c);
    t->end_events = sim_events(w->c);
    sim_cluster_free(w->c);
    t->c = NULL;
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++) {
        while (w->pending[id] != NULL) {
            struct kv_pending *p = w->pending[id];
            w->pending[id] = p->next;
            pending_free(p);
        }
    }
    for (unsigned i = 0; i < w->n_clerks; i++) {
        clerk_free(w->clerks[i]);
    }
    for (size_t i = 0; i < w->n_heap; i++) {
        ev_free(&w->heap[i]);
    }
    if (w->has_cur) {
        ev_free(&w->cur);
    }
    for (unsigned i = w->n_cleanups; i-- > 0;) {
        w->cleanup[i](w->cleanup_arg[i]);
    }
    free(w->heap);
    lin_history_close(&w->hist);
    free(w);
}

void kv_scenario_run(struct sim_test *t, const struct kv_world_opts *o,
                     void (*body)(struct sim_test *, struct kv_world *, void *),
                     void *arg)
{
    /* volatile: read after longjmp. */
    struct kv_world *volatile w = kv_world_new(t, o);
    if (setjmp(w->jb) == 0) {
        sim_set_fail_jump(w->c, &w->jb);
        body(t, w, arg);
        sim_audit(w->c);
        world_free(w);
        return;
    }
    fprintf(stderr, "FAIL %s (seed %llu) at %llu ms: %s\n", t->name, U(t->seed),
            U(sim_now(w->c)), sim_fail_reason(w->c));
    if (!t->quiet) {
        sim_trace_print(w->c, stderr, 60);
    }
    world_free(w);
    longjmp(t->jb, 1);
}
