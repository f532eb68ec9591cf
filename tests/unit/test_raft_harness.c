/* The in-process cluster of test_raft_harness.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_raft_harness.h"

/* ---- counting allocator --------------------------------------------- */

long h_live_allocs;
long h_fail_at = -1;
static long h_n_allocs;

static bool h_should_fail(void)
{
    h_n_allocs++;
    return h_fail_at >= 0 && h_n_allocs == h_fail_at;
}

static void *h_malloc(void *d, size_t n)
{
    (void)d;
    if (h_should_fail()) {
        return NULL;
    }
    void *p = malloc(n);
    h_live_allocs += p != NULL;
    return p;
}

static void *h_calloc(void *d, size_t k, size_t n)
{
    (void)d;
    if (h_should_fail()) {
        return NULL;
    }
    void *p = calloc(k, n);
    h_live_allocs += p != NULL;
    return p;
}

static void *h_realloc(void *d, void *p, size_t n)
{
    (void)d;
    if (h_should_fail()) {
        return NULL;
    }
    void *q = realloc(p, n);
    h_live_allocs += p == NULL && q != NULL;
    return q;
}

static void h_free(void *d, void *p)
{
    (void)d;
    h_live_allocs -= p != NULL;
    free(p);
}

struct craft_alloc h_alloc = {NULL, h_malloc, h_calloc, h_realloc, h_free};

/* ---- helpers -------------------------------------------------------- */

static uint64_t h_rand(struct h_cluster *c)
{
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ull;
    }
    return h;
}

static void store_truncate(struct h_store *s, raft_index from)
{
    while (s->n > 0 && s->log[s->n - 1].index >= from) {
        free(s->log[--s->n].buf.base);
    }
}

static void store_compact(struct h_store *s, raft_index upto)
{
    size_t k = 0;
    while (k < s->n && s->log[k].index <= upto) {
        free(s->log[k++].buf.base);
    }
    if (k > 0) {
        memmove(s->log, s->log + k, (s->n - k) * sizeof *s->log);
        s->n -= k;
    }
}

static void store_append(struct h_store *s, const struct raft_entry *e)
{
    if (s->n > 0) {
        assert_int_equal(e->index, s->log[s->n - 1].index + 1);
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->log = realloc(s->log, s->cap * sizeof *s->log);
        assert_non_null(s->log);
    }
    struct raft_entry *d = &s->log[s->n++];
    *d = *e;
    d->buf.base = NULL;
    if (e->buf.len > 0) {
        d->buf.base = malloc(e->buf.len);
        memcpy(d->buf.base, e->buf.base, e->buf.len);
    }
}

static void store_close(struct h_store *s)
{
    store_truncate(s, 0);
    free(s->log);
    memset(s, 0, sizeof *s);
}

/* ---- the cluster ---------------------------------------------------- */

static struct raft_config h_config(const struct h_cluster *c)
{
    struct raft_config cfg = {.n = c->n};
    for (unsigned i = 0; i < c->n; i++) {
        cfg.ids[i] = i + 1;
    }
    return cfg;
}

void h_init(struct h_cluster *c, unsigned n, uint64_t seed,
            const struct raft_options *opts)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->seed = seed;
    c->rng = seed ^ 0x5555;
    if (opts != NULL) {
        c->opts = *opts;
    } else {
        raft_options_default(&c->opts);
    }
    for (unsigned i = 0; i < n; i++) {
        for (unsigned j = 0; j < n; j++) {
            c->link[i][j] = true;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        h_start(c, i);
    }
}

void h_close(struct h_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->nodes[i].up) {
            h_crash(c, i);
        }
        store_close(&c->nodes[i].store);
    }
    for (size_t k = 0; k < c->nq; k++) {
        free(c->q[k].bytes);
    }
    free(c->q);
    free(c->c_term);
    free(c->c_hash);
    assert_int_equal(h_live_allocs, 0); /* no leaks in the core */
}

static void sm_restore(struct h_node *nd)
{
    nd->hash = nd->count = 0;
    nd->applied = 0;
    if (nd->store.snap.index > 0) {
        memcpy(&nd->hash, nd->store.snap_data, 8);
        memcpy(&nd->count, nd->store.snap_data + 8, 8);
        memcpy(&nd->applied, nd->store.snap_data + 16, 8);
        assert_int_equal(nd->applied, nd->store.snap.index);
    }
}

void h_start(struct h_cluster *c, unsigned i)
{
    struct h_node *nd = &c->nodes[i];
    assert_false(nd->up);
    struct raft_restore rs = {
        .hs = nd->store.hs,
        .snapshot = nd->store.snap.index > 0 ? &nd->store.snap : NULL,
        .entries = nd->store.log,
        .n_entries = nd->store.n};
    struct raft_config cfg = h_config(c);
    nd->restarts++;
    nd->written_seq = 0; /* a new core numbers its writes from 1 */
    int rv = raft_new(i + 1, &cfg, &c->opts,
                      c->seed * 131 + i * 7919 + nd->restarts * 104729, &rs,
                      &h_alloc, &nd->r);
    assert_int_equal(rv, 0);
    nd->up = true;
    sm_restore(nd);
}

void h_crash(struct h_cluster *c, unsigned i)
{
    struct h_node *nd = &c->nodes[i];
    assert_true(nd->up);
    raft_free(nd->r);
    nd->r = NULL;
    nd->up = false;
}

static void record_commit(struct h_cluster *c, const struct raft_entry *e)
{
    if (e->index >= c->c_cap) {
        size_t cap = c->c_cap ? c->c_cap : 256;
        while (cap <= e->index) {
            cap *= 2;
        }
        c->c_term = realloc(c->c_term, cap * sizeof *c->c_term);
        c->c_hash = realloc(c->c_hash, cap * sizeof *c->c_hash);
        memset(c->c_term + c->c_cap, 0, (cap - c->c_cap) * sizeof *c->c_term);
        c->c_cap = cap;
    }
    uint64_t h = fnv(e->buf.base, e->buf.len) ^ e->type;
    if (c->c_term[e->index] == 0) {
        c->c_term[e->index] = e->term;
        c->c_hash[e->index] = h;
    } else {
        /* State Machine Safety (Raft paper Figure 3). */
        assert_int_equal(c->c_term[e->index], e->term);
        assert_true(c->c_hash[e->index] == h);
    }
}

static void apply(struct h_cluster *c, struct h_node *nd,
                  const struct raft_entry *e)
{
    /* Applied strictly in order, each exactly once. */
    assert_int_equal(e->index, nd->applied + 1);
    record_commit(c, e);
    if (e->type == RAFT_ENTRY_COMMAND) {
        nd->hash = nd->hash * 1000003 ^ fnv(e->buf.base, e->buf.len);
        nd->count++;
    }
    nd->applied = e->index;
}

static void enqueue(struct h_cluster *c, unsigned from,
                    const struct raft_message *m)
{
    unsigned to = (unsigned)m->to - 1;
    c->sent[m->type]++;
    c->rejects += m->type == RAFT_MSG_APPEND_RESP && !m->append_resp.success;
    if (!c->link[from][to] ||
        (c->drop_per_mille && h_rand(c) % 1000 < c->drop_per_mille)) {
        return;
    }
    size_t size = raft_message_encoded_size(m);
    size_t extra = 0;
    const struct h_store *s = &c->nodes[from].store;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        /* The runtime attaches the chunk bytes from its snapshot file;
         * if that snapshot is gone it drops the message. */
        if (s->snap.index != m->snapshot.meta.index ||
            s->snap.term != m->snapshot.meta.term) {
            return;
        }
        extra = m->snapshot.data.len;
    }
    uint8_t *b = malloc(size + extra + 1);
    int n = raft_message_encode(m, b, size);
    assert_int_equal(n, (int)size);
    if (extra > 0) {
        memcpy(b + size, s->snap_data + m->snapshot.offset, extra);
    }
    if (c->nq == c->capq) {
        c->capq = c->capq ? c->capq * 2 : 256;
        c->q = realloc(c->q, c->capq * sizeof *c->q);
    }
    c->q[c->nq++] = (struct h_msg){.to = to,
                                   .from = from,
                                   .type = m->type,
                                   .bytes = b,
                                   .len = size + extra};
    if (c->dup_per_mille && h_rand(c) % 1000 < c->dup_per_mille) {
        if (c->nq == c->capq) {
            c->capq *= 2;
            c->q = realloc(c->q, c->capq * sizeof *c->q);
        }
        c->q[c->nq] = c->q[c->nq - 1];
        c->q[c->nq].bytes = malloc(size + extra + 1);
        memcpy(c->q[c->nq].bytes, b, size + extra);
        c->nq++;
    }
}

static void take_snapshot(struct h_cluster *c, unsigned i)
{
    struct h_node *nd = &c->nodes[i];
    struct raft_entry e;
    assert_int_equal(raft_entry_at(nd->r, nd->applied, &e), 0);
    nd->store.snap.index = nd->applied;
    nd->store.snap.term = e.term;
    nd->store.snap.config = h_config(c);
    nd->store.snap.size = H_SNAP_PAD;
    memset(nd->store.snap_data, (int)(nd->applied & 0xff), H_SNAP_PAD);
    memcpy(nd->store.snap_data, &nd->hash, 8);
    memcpy(nd->store.snap_data + 8, &nd->count, 8);
    memcpy(nd->store.snap_data + 16, &nd->applied, 8);
    struct raft_event ev = {.type = RAFT_SNAPSHOT,
                            .snapshot = {.index = nd->applied,
                                         .size = H_SNAP_PAD,
                                         .trailing = nd->snap_trailing}};
    assert_int_equal(h_step(c, i, &ev), 0);
}

static void handle(struct h_cluster *c, unsigned i, const struct raft_update *u)
{
    struct h_node *nd = &c->nodes[i];
    struct h_store *s = &nd->store;
    if (u->persist_seq != 0) {
        assert_true(u->persist_seq > nd->written_seq);
        if (u->hs_changed) {
            assert_true(u->hs.term >= s->hs.term);
            s->hs = u->hs;
        }
        if (u->truncate_from != 0) {
            store_truncate(s, u->truncate_from);
        }
        for (size_t k = 0; k < u->n_entries; k++) {
            store_truncate(s, u->entries[k].index);
            store_append(s, &u->entries[k]);
        }
        if (u->snapshot_chunk != NULL) {
            const struct raft_snapshot_chunk *ch = u->snapshot_chunk;
            assert_true(ch->offset + ch->data.len <= H_SNAP_PAD);
            memcpy(s->in_data + ch->offset, ch->data.base, ch->data.len);
            if (ch->last) {
                if (ch->meta.index > s->snap.index) {
                    s->snap = ch->meta;
                    memcpy(s->snap_data, s->in_data, H_SNAP_PAD);
                }
            }
        }
        nd->written_seq = u->persist_seq;
    }
    if (u->compact_to != 0) {
        assert_true(u->compact_to <= s->snap.index);
        store_compact(s, u->compact_to);
    }
    for (size_t k = 0; k < u->n_messages; k++) {
        assert_int_equal(u->messages[k].from, i + 1);
        enqueue(c, i, &u->messages[k]);
    }
    if (u->install != NULL) {
        assert_int_equal(u->install->index, s->snap.index);
        assert_true(u->install->index > nd->applied);
        sm_restore(nd);
    }
    for (size_t k = 0; k < u->n_committed; k++) {
        apply(c, nd, &u->committed[k]);
    }
    for (size_t k = 0; k < u->n_reads; k++) {
        struct h_read *rd = &c->reads[u->reads[k].ctx];
        assert_false(rd->answered);
        rd->answered = true;
        rd->status = u->reads[k].status;
        rd->index = u->reads[k].index;
    }
    if (u->role == RAFT_LEADER) {
        /* Election Safety (Figure 3): one leader per term. */
        assert_true(u->term < 4096);
        raft_id *l = &c->leader_of_term[u->term];
        assert_true(*l == 0 || *l == i + 1);
        *l = i + 1;
    }
}

int h_step(struct h_cluster *c, unsigned i, struct raft_event *ev)
{
    struct h_node *nd = &c->nodes[i];
    assert_true(nd->up);
    struct raft_update u;
    int rv = raft_step(nd->r, ev, &u);
    handle(c, i, &u);
    if (u.persist_seq != 0 && !nd->manual_persist) {
        struct raft_event p = {.type = RAFT_PERSISTED,
                               .persisted = {.seq = u.persist_seq}};
        assert_int_equal(h_step(c, i, &p), 0);
    }
    if (nd->snap_every != 0 && nd->up &&
        nd->applied >= nd->store.snap.index + nd->snap_every) {
        take_snapshot(c, i);
    }
    return rv;
}

void h_persist_all(struct h_cluster *c, unsigned i)
{
    struct raft_event p = {.type = RAFT_PERSISTED,
                           .persisted = {.seq = c->nodes[i].written_seq}};
    if (p.persisted.seq > 0) {
        assert_int_equal(h_step(c, i, &p), 0);
    }
}

void h_deliver(struct h_cluster *c)
{
    static struct raft_entry scratch[1024];
    size_t head = 0;
    struct h_msg *later = NULL;
    size_t n_later = 0;
    unsigned long storm = 0;
    while (head < c->nq) {
        if (c->reorder_per_mille && c->nq - head > 1 &&
            h_rand(c) % 1000 < c->reorder_per_mille) {
            size_t span = c->nq - head < 8 ? c->nq - head : 8;
            size_t j = head + h_rand(c) % span;
            struct h_msg t = c->q[head];
            c->q[head] = c->q[j];
            c->q[j] = t;
        }
        struct h_msg m = c->q[head++];
        if (c->delay_per_mille && h_rand(c) % 1000 < c->delay_per_mille) {
            later = realloc(later, (n_later + 1) * sizeof *later);
            later[n_later++] = m;
            continue;
        }
        if (c->nodes[m.to].up && c->link[m.from][m.to]) {
            struct raft_message msg;
            int n = raft_message_decode(m.bytes, m.len, scratch, 1024, &msg);
            assert_int_equal(n, (int)m.len);
            struct raft_event ev = {.type = RAFT_RECEIVE,
                                    .receive = {.msg = &msg}};
            c->delivered[m.to]++;
            /* A message storm (messages begetting messages without end
             * within one tick) is a bug: name the traffic and fail. */
            if (++storm > 200000) {
                print_message("storm: %u -> %u %s\n", m.from + 1, m.to + 1,
                              raft_msg_type_name(msg.type));
                if (storm > 200020) {
                    fail_msg("message storm within one tick");
                }
            }
            assert_int_equal(h_step(c, m.to, &ev), 0);
        }
        free(m.bytes);
        if (head > 4096 && head * 2 > c->nq) {
            memmove(c->q, c->q + head, (c->nq - head) * sizeof *c->q);
            c->nq -= head;
            head = 0;
        }
    }
    c->nq = 0;
    for (size_t k = 0; k < n_later; k++) {
        if (c->nq == c->capq) {
            c->capq = c->capq ? c->capq * 2 : 256;
            c->q = realloc(c->q, c->capq * sizeof *c->q);
        }
        c->q[c->nq++] = later[k];
    }
    free(later);
}

void h_tick(struct h_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->nodes[i].up) {
            struct raft_event ev = {.type = RAFT_TICK};
            assert_int_equal(h_step(c, i, &ev), 0);
        }
    }
    h_deliver(c);
}

void h_run(struct h_cluster *c, unsigned ticks)
{
    for (unsigned t = 0; t < ticks; t++) {
        h_tick(c);
    }
}

struct raft_status h_status(struct h_cluster *c, unsigned i)
{
    struct raft_status st;
    raft_status(c->nodes[i].r, &st);
    return st;
}

int h_leader(struct h_cluster *c)
{
    int leader = -1;
    raft_term best = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->nodes[i].up) {
            continue;
        }
        struct raft_status st = h_status(c, i);
        if (st.role == RAFT_LEADER && st.term >= best) {
            best = st.term;
            leader = (int)i;
        }
    }
    return leader;
}

int h_wait_leader(struct h_cluster *c, unsigned max_ticks)
{
    for (unsigned t = 0; t < max_ticks; t++) {
        int l = h_leader(c);
        if (l >= 0) {
            return l;
        }
        h_tick(c);
    }
    return h_leader(c);
}

void h_isolate(struct h_cluster *c, unsigned i, bool cut)
{
    for (unsigned j = 0; j < c->n; j++) {
        if (j != i) {
            c->link[i][j] = c->link[j][i] = !cut;
        }
    }
}

void h_heal(struct h_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        for (unsigned j = 0; j < c->n; j++) {
            c->link[i][j] = true;
        }
    }
}

int h_propose(struct h_cluster *c, unsigned i, const char *cmd,
              raft_index *index)
{
    struct raft_buffer b = {(void *)cmd, strlen(cmd)};
    struct raft_event ev = {.type = RAFT_PROPOSE,
                            .propose = {.bufs = &b, .n = 1}};
    int rv = h_step(c, i, &ev);
    if (rv == 0 && index != NULL) {
        *index = ev.propose.index;
    }
    return rv;
}

bool h_wait_applied(struct h_cluster *c, raft_index index, unsigned max_ticks,
                    unsigned n_nodes_needed)
{
    for (unsigned t = 0; t <= max_ticks; t++) {
        unsigned k = 0;
        for (unsigned i = 0; i < c->n; i++) {
            k += c->nodes[i].up && c->nodes[i].applied >= index;
        }
        if (k >= n_nodes_needed) {
            return true;
        }
        h_tick(c);
    }
    return false;
}

uint64_t h_read(struct h_cluster *c, unsigned i)
{
    assert_true(c->n_reads < 256);
    uint64_t ctx = c->n_reads++;
    c->reads[ctx] = (struct h_read){.ctx = ctx};
    struct raft_event ev = {.type = RAFT_READ, .read = {.ctx = ctx}};
    assert_int_equal(h_step(c, i, &ev), 0);
    return ctx;
}

void h_fill(struct h_cluster *c, unsigned i, raft_term hs_term,
            const raft_term *terms, size_t n)
{
    struct h_node *nd = &c->nodes[i];
    assert_false(nd->up);
    store_close(&nd->store);
    nd->store.hs.term = hs_term;
    for (size_t k = 0; k < n; k++) {
        char cmd[32];
        snprintf(cmd, sizeof cmd, "fill %zu/%llu", k,
                 (unsigned long long)terms[k]);
        struct raft_entry e = {.term = terms[k],
                               .index = k + 1,
                               .type = RAFT_ENTRY_COMMAND,
                               .buf = {cmd, strlen(cmd)}};
        store_append(&nd->store, &e);
    }
}
