/*
 * check.c -- the Wing-Gong/Lowe search, per key, with a memo cache.
 *
 * For one key with m operations, the calls and returns are put in one list
 * ordered by time (a call before a return at the same instant, so touching
 * intervals count as concurrent, the permissive choice).  The search walks
 * the list: at a call it tries to linearize that operation now (the model
 * must accept it and the resulting (linearized set, state) must be new to
 * the cache); if so the operation's call and return are lifted out of the
 * list and the walk restarts at the front.  Reaching a return means that
 * operation should already have been linearized: undo the last choice and
 * try the next call after it.  An empty list means success; backtracking
 * with nothing to undo means the key's history is not linearizable.
 *
 * Unknown outcomes have their return at +infinity, so they may be
 * linearized anywhere after their call, including after everything else
 * (which, for a write whose output nobody saw, is the same as never).
 *
 * Model states are interned (each distinct value stored once, by id), so a
 * cache entry is a bitset of m bits plus a state id.
 *
 * Invariants:
 *  1. A key's search never holds more than its memory budget in interned
 *     values, state and memo tables and work arrays (struct budget counts
 *     each allocation before making it); reaching the budget ends the
 *     key's search with LIN_UNKNOWN, never an unbounded allocation.
 *  2. Setting an unseen unknown append aside (prune_unseen) never changes
 *     a key's verdict.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lincheck.h"
#include "util/assert.h"

void lin__print_op(FILE *f, const struct lin_op *op);

/* ---- the memory budget of one key's search ---- */

struct budget {
    uint64_t used, max;
};

/* Count n more bytes, or -1 (nothing counted) if that passes the budget. */
static int budget_take(struct budget *b, uint64_t n)
{
    CRAFT_ASSERT(b->used <= b->max);
    if (n > b->max - b->used) {
        return -1;
    }
    b->used += n;
    return 0;
}

static void budget_give(struct budget *b, uint64_t n)
{
    CRAFT_ASSERT(n <= b->used);
    b->used -= n;
}

/* ---- interned states ---- */

struct states {
    struct lin_value *v;
    uint64_t *hash;
    size_t n, cap;
    uint32_t *index; /* open addressing: id + 1, 0 empty */
    size_t index_cap;
    struct budget *mem;
};

/* Bytes counted per state slot, besides the value's own bytes. */
#define STATE_SLOT_BYTES (sizeof(struct lin_value) + sizeof(uint64_t))

static uint64_t fnv(const struct lin_value *v)
{
    uint64_t h = v->nil ? 0x9ae16a3b2f90404full : 0xcbf29ce484222325ull;
    for (size_t i = 0; i < v->n; i++) {
        h = (h ^ v->p[i]) * 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static int same(const struct lin_value *a, const struct lin_value *b)
{
    if (a->nil || b->nil) {
        return a->nil == b->nil;
    }
    return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

static void states_close(struct states *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].p);
    }
    free(s->v);
    free(s->hash);
    free(s->index);
    memset(s, 0, sizeof *s);
}

/* 0, -1 out of memory, -2 over the budget. */
static int states_rehash(struct states *s, size_t cap)
{
    if (budget_take(s->mem, cap * sizeof *s->index) != 0) {
        return -2;
    }
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (idx == NULL) {
        budget_give(s->mem, cap * sizeof *s->index);
        return -1;
    }
    for (size_t i = 0; i < s->n; i++) {
        size_t b = s->hash[i] & (cap - 1);
        while (idx[b] != 0) {
            b = (b + 1) & (cap - 1);
        }
        idx[b] = (uint32_t)(i + 1);
    }
    free(s->index);
    budget_give(s->mem, s->index_cap * sizeof *s->index);
    s->index = idx;
    s->index_cap = cap;
    return 0;
}

/* Room for one more state: 0, -1 out of memory, -2 over the budget. */
static int states_reserve(struct states *s)
{
    if (s->n < s->cap) {
        return 0;
    }
    size_t cap = s->cap ? s->cap * 2 : 64;
    if (budget_take(s->mem, (cap - s->cap) * STATE_SLOT_BYTES) != 0) {
        return -2;
    }
    struct lin_value *nv = realloc(s->v, cap * sizeof *nv);
    if (nv != NULL) {
        s->v = nv;
    }
    uint64_t *nh = nv != NULL ? realloc(s->hash, cap * sizeof *nh) : NULL;
    if (nh == NULL) {
        /* s->v may have grown: harmless, cap still says the old size. */
        budget_give(s->mem, (cap - s->cap) * STATE_SLOT_BYTES);
        return -1;
    }
    s->hash = nh;
    s->cap = cap;
    return 0;
}

/* The id of value v, taking ownership of v->p (freed if already known).
 * Returns -1 if out of memory, -2 if a new state would pass the budget
 * (v untouched on both). */
static long long states_intern(struct states *s, struct lin_value *v)
{
    uint64_t h = fnv(v);
    if (s->index_cap > 0) {
        size_t b = h & (s->index_cap - 1);
        for (; s->index[b] != 0; b = (b + 1) & (s->index_cap - 1)) {
            size_t id = s->index[b] - 1;
            if (s->hash[id] == h && same(&s->v[id], v)) {
                free(v->p);
                v->p = NULL;
                return (long long)id;
            }
        }
    }
    if (s->n >= UINT32_MAX - 1) {
        return -2;
    }
    int rv = states_reserve(s);
    if (rv != 0) {
        return rv;
    }
    if (2 * (s->n + 1) > s->index_cap) {
        rv = states_rehash(s, s->index_cap ? s->index_cap * 2 : 128);
        if (rv != 0) {
            return rv;
        }
    }
    if (budget_take(s->mem, v->n) != 0) {
        return -2;
    }
    s->v[s->n] = *v;
    s->hash[s->n] = h;
    v->p = NULL;
    s->n++;
    size_t b = h & (s->index_cap - 1);
    while (s->index[b] != 0) {
        b = (b + 1) & (s->index_cap - 1);
    }
    s->index[b] = (uint32_t)s->n;
    CRAFT_ASSERT(2 * s->n <= s->index_cap);
    return (long long)(s->n - 1);
}

/* ---- the memo cache: (bitset, state id) ---- */

struct cache {
    size_t words;    /* 64-bit words per bitset */
    uint64_t *arena; /* entry i: state id, then words of bitset */
    size_t n, cap;
    uint64_t *index; /* entry + 1, 0 empty */
    size_t index_cap;
    struct budget *mem;
};

static uint64_t cache_hash(const uint64_t *bits, size_t words, uint64_t st)
{
    uint64_t h = st * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < words; i++) {
        h = (h ^ bits[i]) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static const uint64_t *cache_entry(const struct cache *c, size_t i)
{
    return c->arena + i * (c->words + 1);
}

/* 0, -1 out of memory, -2 over the budget. */
static int cache_grow_index(struct cache *c)
{
    size_t cap = c->index_cap ? c->index_cap * 2 : 1024;
    if (budget_take(c->mem, cap * sizeof *c->index) != 0) {
        return -2;
    }
    uint64_t *idx = calloc(cap, sizeof *idx);
    if (idx == NULL) {
        budget_give(c->mem, cap * sizeof *c->index);
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        const uint64_t *e = cache_entry(c, i);
        size_t b = cache_hash(e + 1, c->words, e[0]) & (cap - 1);
        while (idx[b] != 0) {
            b = (b + 1) & (cap - 1);
        }
        idx[b] = i + 1;
    }
    free(c->index);
    budget_give(c->mem, c->index_cap * sizeof *c->index);
    c->index = idx;
    c->index_cap = cap;
    return 0;
}

/* 0, -1 out of memory, -2 over the budget. */
static int cache_grow_arena(struct cache *c)
{
    size_t cap = c->cap ? c->cap * 2 : 1024;
    size_t entry = (c->words + 1) * sizeof *c->arena;
    if (budget_take(c->mem, (cap - c->cap) * entry) != 0) {
        return -2;
    }
    uint64_t *a = realloc(c->arena, cap * entry);
    if (a == NULL) {
        budget_give(c->mem, (cap - c->cap) * entry);
        return -1;
    }
    c->arena = a;
    c->cap = cap;
    return 0;
}

/* Insert (bits, st) unless present.  1 inserted, 0 present, -1 no memory,
 * -2 the search reached its memory budget. */
static int cache_add(struct cache *c, const uint64_t *bits, uint64_t st)
{
    if (2 * (c->n + 1) > c->index_cap) {
        int rv = cache_grow_index(c);
        if (rv != 0) {
            return rv;
        }
    }
    uint64_t h = cache_hash(bits, c->words, st);
    size_t b = h & (c->index_cap - 1);
    for (; c->index[b] != 0; b = (b + 1) & (c->index_cap - 1)) {
        const uint64_t *e = cache_entry(c, c->index[b] - 1);
        if (e[0] == st && memcmp(e + 1, bits, c->words * 8) == 0) {
            return 0;
        }
    }
    if (c->n == c->cap) {
        int rv = cache_grow_arena(c);
        if (rv != 0) {
            return rv;
        }
    }
    uint64_t *e = c->arena + c->n * (c->words + 1);
    e[0] = st;
    memcpy(e + 1, bits, c->words * 8);
    c->index[b] = ++c->n;
    CRAFT_ASSERT(2 * c->n <= c->index_cap);
    return 1;
}

static void cache_close(struct cache *c)
{
    free(c->arena);
    free(c->index);
    memset(c, 0, sizeof *c);
}

/* ---- one key ---- */

struct node {
    uint64_t time;
    int is_ret;
    size_t op;  /* local op index */
    long match; /* for a call: its return node */
    long prev, next;
};

struct search {
    const struct lin_history *h;
    const size_t *ops; /* history indices of this key's ops */
    size_t m;
    struct node *nodes; /* 2m nodes + head sentinel at 2m */
    struct states states;
    struct cache cache;
    uint64_t *bits;
    /* Best attempt, for the report. */
    size_t best_depth;
    uint64_t *best_bits;
    size_t best_state;
    long blocked; /* local op, or -1 */
    size_t blocked_depth;
    /* Invariant 1; and for LIN_UNKNOWN, which budget ran out. */
    struct budget mem;
    enum lin_limit limit;
};

static int node_cmp(const void *a, const void *b)
{
    const struct node *x = a, *y = b;
    if (x->time != y->time) {
        return x->time < y->time ? -1 : 1;
    }
    if (x->is_ret != y->is_ret) {
        return x->is_ret - y->is_ret;
    }
    return x->op < y->op ? -1 : x->op > y->op;
}

static void lift(struct node *n, long i)
{
    long r = n[i].match;
    n[n[i].prev].next = n[i].next;
    if (n[i].next >= 0) {
        n[n[i].next].prev = n[i].prev;
    }
    n[n[r].prev].next = n[r].next;
    if (n[r].next >= 0) {
        n[n[r].next].prev = n[r].prev;
    }
}

static void unlift(struct node *n, long i)
{
    long r = n[i].match;
    n[n[r].prev].next = r;
    if (n[r].next >= 0) {
        n[n[r].next].prev = r;
    }
    n[n[i].prev].next = i;
    if (n[i].next >= 0) {
        n[n[i].next].prev = i;
    }
}

static int build_list(struct search *s)
{
    size_t m = s->m;
    s->nodes = calloc(2 * m + 1, sizeof *s->nodes);
    if (s->nodes == NULL) {
        return -1;
    }
    for (size_t i = 0; i < m; i++) {
        const struct lin_op *op = &s->h->ops[s->ops[i]];
        s->nodes[2 * i] = (struct node){op->call, 0, i, -1, 0, 0};
        s->nodes[2 * i + 1] = (struct node){op->ret, 1, i, -1, 0, 0};
    }
    qsort(s->nodes, 2 * m, sizeof *s->nodes, node_cmp);
    long *ret_of = malloc(m * sizeof *ret_of);
    if (ret_of == NULL) {
        return -1;
    }
    for (size_t i = 0; i < 2 * m; i++) {
        if (s->nodes[i].is_ret) {
            ret_of[s->nodes[i].op] = (long)i;
        }
    }
    long head = (long)(2 * m);
    for (size_t i = 0; i < 2 * m; i++) {
        if (!s->nodes[i].is_ret) {
            s->nodes[i].match = ret_of[s->nodes[i].op];
        }
        s->nodes[i].prev = i == 0 ? head : (long)i - 1;
        s->nodes[i].next = i + 1 < 2 * m ? (long)i + 1 : -1;
    }
    s->nodes[head].next = m > 0 ? 0 : -1;
    s->nodes[head].prev = -1;
    free(ret_of);
    return 0;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

struct frame {
    long node;
    size_t state;
};

/* The work arrays and the initial (nil) state: 0, -1 out of memory, -2
 * over the budget. */
static int search_setup(struct search *s, struct frame **stack, size_t *state)
{
    size_t m = s->m, words = (m + 63) / 64;
    s->states.mem = s->cache.mem = &s->mem;
    s->cache.words = words;
    s->blocked = -1;
    uint64_t fixed = 2 * (words ? words : 1) * 8 +
                     (m ? m : 1) * sizeof **stack +
                     (2 * m + 1) * sizeof *s->nodes;
    if (budget_take(&s->mem, fixed) != 0) {
        return -2;
    }
    s->bits = calloc(words ? words : 1, 8);
    s->best_bits = calloc(words ? words : 1, 8);
    *stack = malloc((m ? m : 1) * sizeof **stack);
    if (s->bits == NULL || s->best_bits == NULL || *stack == NULL ||
        build_list(s) != 0) {
        return -1;
    }
    struct lin_value init = {true, NULL, 0};
    long long st = states_intern(&s->states, &init);
    if (st < 0) {
        return (int)st;
    }
    *state = (size_t)st;
    return 0;
}

/* Linearize the call at node e from state, if the model accepts it and
 * (linearized set, next state) is new: 1 done (*next_state set), 0 not
 * possible now, -1 out of memory, -2 over the budget. */
static int try_call(struct search *s, long e, size_t state, size_t *next_state)
{
    const struct node *n = &s->nodes[e];
    const struct lin_op *op = &s->h->ops[s->ops[n->op]];
    struct lin_value next;
    int ok = lin_model_step(&s->states.v[state], op, &next);
    if (ok <= 0) {
        return ok;
    }
    long long ns = states_intern(&s->states, &next);
    if (ns < 0) {
        free(next.p);
        return (int)ns;
    }
    s->bits[n->op / 64] |= 1ull << (n->op % 64);
    int added = cache_add(&s->cache, s->bits, (uint64_t)ns);
    if (added <= 0) {
        s->bits[n->op / 64] &= ~(1ull << (n->op % 64));
        return added;
    }
    *next_state = (size_t)ns;
    return 1;
}

/* Returns LIN_OK, LIN_ILLEGAL or LIN_UNKNOWN (s->limit says why), or -1
 * out of memory. */
static int search_key(struct search *s, uint64_t steps_max, double deadline,
                      uint64_t *steps)
{
    size_t m = s->m, words = (m + 63) / 64;
    struct frame *stack = NULL;
    size_t state = 0, depth = 0;
    int rv = search_setup(s, &stack, &state);
    if (rv != 0) {
        free(stack);
        s->limit = LIN_LIMIT_MEMORY;
        return rv == -2 ? LIN_UNKNOWN : -1;
    }
    long head = (long)(2 * m);
    long e = s->nodes[head].next;
    int verdict = LIN_OK;
    while (s->nodes[head].next >= 0) {
        if (++*steps > steps_max) {
            s->limit = LIN_LIMIT_STEPS;
            verdict = LIN_UNKNOWN;
            break;
        }
        if ((*steps & 1023) == 0 && deadline > 0 && now_ms() > deadline) {
            s->limit = LIN_LIMIT_TIME;
            verdict = LIN_UNKNOWN;
            break;
        }
        CRAFT_ASSERT(e >= 0);
        const struct node *n = &s->nodes[e];
        if (!n->is_ret) {
            size_t ns = 0;
            rv = try_call(s, e, state, &ns);
            if (rv < 0) {
                s->limit = LIN_LIMIT_MEMORY;
                verdict = rv == -2 ? LIN_UNKNOWN : -1;
                break;
            }
            if (rv > 0) {
                stack[depth++] = (struct frame){e, state};
                state = ns;
                lift(s->nodes, e);
                if (depth > s->best_depth) {
                    s->best_depth = depth;
                    s->best_state = state;
                    memcpy(s->best_bits, s->bits, words * 8);
                }
                e = s->nodes[head].next;
                continue;
            }
            e = n->next;
        } else {
            if (depth == s->best_depth && s->blocked_depth != depth + 1) {
                s->blocked = (long)n->op;
                s->blocked_depth = depth + 1;
            }
            if (depth == 0) {
                verdict = LIN_ILLEGAL;
                break;
            }
            struct frame f = stack[--depth];
            state = f.state;
            size_t op = s->nodes[f.node].op;
            s->bits[op / 64] &= ~(1ull << (op % 64));
            unlift(s->nodes, f.node);
            e = s->nodes[f.node].next;
        }
        /* Every call before a live return can be tried; e walks forward and
         * always meets a return or a liftable call before the end. */
        CRAFT_ASSERT(e >= 0);
    }
    CRAFT_ASSERT(s->mem.used <= s->mem.max);
    free(stack);
    return verdict;
}

static void search_close(struct search *s)
{
    states_close(&s->states);
    cache_close(&s->cache);
    free(s->nodes);
    free(s->bits);
    free(s->best_bits);
}

/* ---- the whole history ---- */

static int by_key_then_call(const void *a, const void *b, void *arg)
{
    const struct lin_history *h = arg;
    const struct lin_op *x = &h->ops[*(const size_t *)a];
    const struct lin_op *y = &h->ops[*(const size_t *)b];
    size_t n = x->key.n < y->key.n ? x->key.n : y->key.n;
    int c = n ? memcmp(x->key.p, y->key.p, n) : 0;
    if (c != 0) {
        return c;
    }
    if (x->key.n != y->key.n) {
        return x->key.n < y->key.n ? -1 : 1;
    }
    if (x->call != y->call) {
        return x->call < y->call ? -1 : 1;
    }
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static int key_is(const struct lin_op *op, const struct lin_value *k)
{
    return k == NULL || (op->key.n == k->n &&
                         (k->n == 0 || memcmp(op->key.p, k->p, k->n) == 0));
}

static int same_key(const struct lin_op *a, const struct lin_op *b)
{
    return a->key.n == b->key.n &&
           (a->key.n == 0 || memcmp(a->key.p, b->key.p, a->key.n) == 0);
}

/* The failure window, in call order (ops[] is sorted by call): the ops
 * not placed in the longest linearizable prefix that were called before
 * the blocked op returned; the placed ops overlapping that span; and the
 * last placed write before it, which set the state the window starts
 * from. */
static int make_window(struct search *s, struct lin_result *r)
{
    r->window = malloc((s->m ? s->m : 1) * sizeof *r->window);
    if (r->window == NULL) {
        return -1;
    }
    const struct lin_op *b =
        s->blocked >= 0 ? &s->h->ops[s->ops[s->blocked]] : NULL;
    uint64_t span = b ? b->call : 0;
    for (size_t i = 0; b && i < s->m; i++) {
        const struct lin_op *op = &s->h->ops[s->ops[i]];
        int placed = (s->best_bits[i / 64] >> (i % 64)) & 1;
        if (!placed && op->call <= b->ret && op->call < span) {
            span = op->call;
        }
    }
    long last_write = -1;
    for (size_t i = 0; i < s->m; i++) {
        const struct lin_op *op = &s->h->ops[s->ops[i]];
        int placed = (s->best_bits[i / 64] >> (i % 64)) & 1;
        if (placed && op->ret < span && op->kind != LIN_GET &&
            (last_write < 0 || op->ret > s->h->ops[s->ops[last_write]].ret)) {
            last_write = (long)i;
        }
    }
    for (size_t i = 0; i < s->m; i++) {
        const struct lin_op *op = &s->h->ops[s->ops[i]];
        int placed = (s->best_bits[i / 64] >> (i % 64)) & 1;
        int in = b == NULL || (long)i == last_write ||
                 (placed ? op->call <= b->ret && op->ret >= span
                         : op->call <= b->ret);
        if (in) {
            r->window[r->n_window++] = s->ops[i];
        }
    }
    r->blocked = b ? s->ops[s->blocked] : s->ops[0];
    r->prefix_len = s->best_depth;
    r->key_ops = s->m;
    const struct lin_value *v = &s->states.v[s->best_state];
    r->state.nil = v->nil;
    r->state.n = v->n;
    r->state.p = v->n ? malloc(v->n) : NULL;
    if (v->n && r->state.p == NULL) {
        return -1;
    }
    if (v->n) {
        memcpy(r->state.p, v->p, v->n);
    }
    return 0;
}

/*
 * Invariant 2: set aside the unknown appends nobody could have seen.  An
 * unknown append A with a non-empty argument, on a key without incr,
 * whose argument occurs in the output of no known read that could follow
 * it (one returning at or after A's call), changes no verdict:
 *
 *   Take a legal linearization L of the key's operations with A in it, and
 *   drop A.  From A's place up to the next put or del in L, the state
 *   without A is the state with A minus A's argument at one position (nil
 *   reads as empty there).  An append keeps that so; a get with an output
 *   in that stretch saw a value containing A's argument, and none exists
 *   (those returning before A's call precede A in L); a get without an
 *   output checks nothing; there is no incr; a put or del makes both
 *   states equal again.  So L without A is legal with the same outputs.
 *   Conversely, a linearization without A is one where A, whose outcome
 *   is unknown, never took effect.
 *
 * Such appends are what a client that timed out leaves behind, and each
 * one may otherwise be placed at every later point.  ops[0, m) (by call
 * time) are compacted in place, keeping their order; returns how many
 * are kept.  The scan is bounded by LIN_PRUNE_SCAN_BYTES_MAX; past it,
 * the rest are kept, which is correct, only slower.
 */
static size_t prune_unseen(const struct lin_history *h, size_t *ops, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        if (h->ops[ops[i]].kind == LIN_INCR) {
            return m;
        }
    }
    uint64_t scanned = 0;
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) {
        const struct lin_op *a = &h->ops[ops[i]];
        bool unseen =
            a->kind == LIN_APPEND && a->ret == LIN_TIME_UNKNOWN && a->arg.n > 0;
        for (size_t j = 0; unseen && j < m; j++) {
            const struct lin_op *g = &h->ops[ops[j]];
            if (g->kind != LIN_GET || !g->has_out || g->out.nil ||
                g->ret < a->call || g->out.n < a->arg.n) {
                continue;
            }
            scanned += g->out.n;
            if (scanned > LIN_PRUNE_SCAN_BYTES_MAX ||
                memmem(g->out.p, g->out.n, a->arg.p, a->arg.n) != NULL) {
                unseen = false;
            }
        }
        if (!unseen) {
            ops[kept++] = ops[i];
        }
    }
    CRAFT_ASSERT(kept <= m);
    return kept;
}

struct budgets {
    uint64_t steps_max;
    double deadline; /* now_ms() time, or 0 */
    uint64_t time_ms;
    uint64_t memory_bytes;
    bool keep_unseen;
};

/* Check the m ops of one key (ops, sorted by call time, may be compacted)
 * and fold the verdict into r.  0, or -1 out of memory. */
static int check_key(const struct lin_history *h, size_t *ops, size_t m,
                     const struct budgets *b, struct lin_result *r)
{
    CRAFT_ASSERT(m > 0);
    size_t key_op = ops[0];
    size_t kept = b->keep_unseen ? m : prune_unseen(h, ops, m);
    r->n_unseen += m - kept;
    struct search s;
    memset(&s, 0, sizeof s);
    s.h = h;
    s.ops = ops;
    s.m = kept;
    s.mem.max = b->memory_bytes;
    r->n_ops += s.m;
    /* The budgets are per key (lincheck.h): one expensive key must not
     * starve the keys after it. */
    uint64_t key_steps = 0;
    int v = search_key(&s, b->steps_max, b->deadline, &key_steps);
    r->steps += key_steps;
    r->n_keys++;
    int rv = 0;
    if (v < 0) {
        rv = -1;
    } else if (v == LIN_UNKNOWN) {
        if (r->keys_unknown++ == 0) {
            r->unknown_key_op = key_op;
            r->limit = s.limit;
            r->limit_value = s.limit == LIN_LIMIT_STEPS  ? b->steps_max
                             : s.limit == LIN_LIMIT_TIME ? b->time_ms
                                                         : b->memory_bytes;
            r->unknown_steps = key_steps;
            r->unknown_bytes = s.mem.used;
        }
        r->verdict = LIN_UNKNOWN;
    } else if (v == LIN_ILLEGAL) {
        r->verdict = LIN_ILLEGAL;
        r->bad_key_op = key_op;
        if (make_window(&s, r) != 0) {
            rv = -1;
        }
    }
    search_close(&s);
    return rv;
}

int lin_check(const struct lin_history *h, const struct lin_options *o,
              struct lin_result *r)
{
    CRAFT_ASSERT(h != NULL && r != NULL);
    memset(r, 0, sizeof *r);
    struct lin_options opt = {0};
    if (o != NULL) {
        opt = *o;
    }
    struct budgets b = {
        .steps_max = opt.steps_max ? opt.steps_max : LIN_STEPS_MAX,
        .deadline = opt.time_ms ? now_ms() + (double)opt.time_ms : 0,
        .time_ms = opt.time_ms,
        .memory_bytes =
            opt.memory_bytes ? opt.memory_bytes : LIN_MEMORY_BYTES_DEFAULT,
        .keep_unseen = opt.keep_unseen};
    /* Unknown reads cannot change anything: leave them out. */
    size_t *idx = malloc((h->n ? h->n : 1) * sizeof *idx);
    if (idx == NULL) {
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const struct lin_op *op = &h->ops[i];
        if ((op->kind == LIN_GET && op->ret == LIN_TIME_UNKNOWN) ||
            !key_is(op, opt.only_key)) {
            continue;
        }
        idx[n++] = i;
    }
    qsort_r(idx, n, sizeof *idx, by_key_then_call, (void *)h);
    int rv = 0;
    for (size_t start = 0; start < n && r->verdict != LIN_ILLEGAL;) {
        size_t end = start + 1;
        while (end < n && same_key(&h->ops[idx[start]], &h->ops[idx[end]])) {
            end++;
        }
        rv = check_key(h, idx + start, end - start, &b, r);
        if (rv != 0) {
            break;
        }
        start = end;
    }
    free(idx);
    if (rv != 0) {
        lin_result_close(r);
    }
    return rv;
}

void lin_result_close(struct lin_result *r)
{
    free(r->window);
    free(r->state.p);
    r->window = NULL;
    r->state.p = NULL;
    r->n_window = 0;
}

static void print_key(FILE *f, const struct lin_value *k)
{
    for (size_t i = 0; i < k->n; i++) {
        uint8_t c = k->p[i];
        if (c >= 33 && c < 127 && c != '\'' && c != '\\') {
            fputc(c, f);
        } else {
            fprintf(f, "\\x%02x", c);
        }
    }
}

/* Which budget ran out, on which key, and the option that raises it. */
static void report_unknown(FILE *f, const struct lin_history *h,
                           const struct lin_result *r)
{
    CRAFT_ASSERT(r->verdict == LIN_UNKNOWN);
    CRAFT_ASSERT(r->keys_unknown > 0);
    fprintf(f, "unknown: key ");
    print_key(f, &h->ops[r->unknown_key_op].key);
    unsigned long long v = (unsigned long long)r->limit_value;
    switch (r->limit) {
    case LIN_LIMIT_NONE:
        CRAFT_UNREACHABLE();
        break;
    case LIN_LIMIT_STEPS:
        fprintf(f, " used up the step budget (--steps %llu)", v);
        break;
    case LIN_LIMIT_TIME:
        fprintf(f,
                " was being searched when the time budget ran out "
                "(--timeout-ms %llu)",
                v);
        break;
    case LIN_LIMIT_MEMORY:
        fprintf(f,
                " reached the memory budget (--memory-mb %llu: %.1f MiB of "
                "states, memo cache and work arrays)",
                (v + (1u << 20) - 1) >> 20,
                (double)r->unknown_bytes / (1024.0 * 1024.0));
        break;
    }
    fprintf(f,
            " after %llu steps; %zu of %zu keys unknown (%llu steps in all); "
            "no violation found\n",
            (unsigned long long)r->unknown_steps, r->keys_unknown, r->n_keys,
            (unsigned long long)r->steps);
}

void lin_report(FILE *f, const struct lin_history *h,
                const struct lin_result *r, const char *path)
{
    if (r->verdict == LIN_OK) {
        fprintf(f, "linearizable: %zu operations on %zu keys (%llu steps",
                r->n_ops, r->n_keys, (unsigned long long)r->steps);
        if (r->n_unseen > 0) {
            fprintf(f, "; %zu unknown appends nobody read set aside",
                    r->n_unseen);
        }
        fputs(")\n", f);
        return;
    }
    if (r->verdict == LIN_UNKNOWN) {
        report_unknown(f, h, r);
        return;
    }
    const struct lin_op *k = &h->ops[r->bad_key_op];
    fprintf(f, "NOT linearizable: key ");
    print_key(f, &k->key);
    fprintf(f,
            " (%zu operations): at most %zu could be linearized; then "
            "this operation returned before it could take effect:\n  ",
            r->key_ops, r->prefix_len);
    lin__print_op(f, &h->ops[r->blocked]);
    if (h->ops[r->blocked].line > 0) {
        fprintf(f, "    (line %zu)", h->ops[r->blocked].line);
    }
    fprintf(f, "\nstate after the longest linearizable prefix: ");
    if (r->state.nil) {
        fputs("nil\n", f);
    } else {
        fprintf(f, "\"%.*s\"%s\n", (int)(r->state.n > 200 ? 200 : r->state.n),
                (const char *)r->state.p, r->state.n > 200 ? "..." : "");
    }
    fprintf(f, "smallest failing window (%zu operations, by call time):\n",
            r->n_window);
    for (size_t i = 0; i < r->n_window; i++) {
        const struct lin_op *op = &h->ops[r->window[i]];
        fputs("  ", f);
        lin__print_op(f, op);
        if (op->line > 0) {
            fprintf(f, "    (line %zu)", op->line);
        }
        fprintf(f, "%s\n", r->window[i] == r->blocked ? "  <- blocked" : "");
    }
    fprintf(f, "replay: craft-lincheck --key '");
    print_key(f, &k->key);
    fprintf(f, "' %s\n", path ? path : "FILE");
}
