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
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lincheck.h"
#include "util/assert.h"

void lin__print_op(FILE *f, const struct lin_op *op);

/* ---- interned states ---- */

struct states {
    struct lin_value *v;
    uint64_t *hash;
    size_t n, cap;
    uint32_t *index; /* open addressing: id + 1, 0 empty */
    size_t index_cap;
};

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

static int states_rehash(struct states *s, size_t cap)
{
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (idx == NULL) {
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
    s->index = idx;
    s->index_cap = cap;
    return 0;
}

/* The id of value v, taking ownership of v->p (freed if already known).
 * Returns -1 if out of memory. */
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
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct lin_value *nv = realloc(s->v, cap * sizeof *nv);
        if (nv == NULL) {
            return -1;
        }
        s->v = nv;
        uint64_t *nh = realloc(s->hash, cap * sizeof *nh);
        if (nh == NULL) {
            return -1;
        }
        s->hash = nh;
        s->cap = cap;
    }
    if (s->n >= UINT32_MAX - 1) {
        return -1;
    }
    s->v[s->n] = *v;
    s->hash[s->n] = h;
    v->p = NULL;
    s->n++;
    if (2 * s->n > s->index_cap) {
        if (states_rehash(s, s->index_cap ? s->index_cap * 2 : 128) != 0) {
            s->n--;
            *v = s->v[s->n];
            return -1;
        }
    } else {
        size_t b = h & (s->index_cap - 1);
        while (s->index[b] != 0) {
            b = (b + 1) & (s->index_cap - 1);
        }
        s->index[b] = (uint32_t)s->n;
    }
    return (long long)(s->n - 1);
}

/* ---- the memo cache: (bitset, state id) ---- */

struct cache {
    size_t words;    /* 64-bit words per bitset */
    uint64_t *arena; /* entry i: state id, then words of bitset */
    size_t n, cap;
    uint64_t *index; /* entry + 1, 0 empty */
    size_t index_cap;
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

static int cache_grow_index(struct cache *c)
{
    size_t cap = c->index_cap ? c->index_cap * 2 : 1024;
    uint64_t *idx = calloc(cap, sizeof *idx);
    if (idx == NULL) {
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
    c->index = idx;
    c->index_cap = cap;
    return 0;
}

/* Insert (bits, st) unless present.  1 inserted, 0 present, -1 no memory,
 * -2 the cache reached LIN_CACHE_BYTES_MAX. */
static int cache_add(struct cache *c, const uint64_t *bits, uint64_t st)
{
    if ((c->cap * (c->words + 1) + c->index_cap) * 8 > LIN_CACHE_BYTES_MAX) {
        return -2;
    }
    if (2 * (c->n + 1) > c->index_cap && cache_grow_index(c) != 0) {
        return -1;
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
        size_t cap = c->cap ? c->cap * 2 : 1024;
        uint64_t *a = realloc(c->arena, cap * (c->words + 1) * 8);
        if (a == NULL) {
            return -1;
        }
        c->arena = a;
        c->cap = cap;
    }
    uint64_t *e = c->arena + c->n * (c->words + 1);
    e[0] = st;
    memcpy(e + 1, bits, c->words * 8);
    c->index[b] = ++c->n;
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

/* Returns LIN_OK, LIN_ILLEGAL or LIN_UNKNOWN, or -1 out of memory. */
static int search_key(struct search *s, uint64_t steps_max, double deadline,
                      uint64_t *steps)
{
    size_t m = s->m, words = (m + 63) / 64;
    s->cache.words = words;
    s->bits = calloc(words ? words : 1, 8);
    s->best_bits = calloc(words ? words : 1, 8);
    struct frame *stack = malloc((m ? m : 1) * sizeof *stack);
    struct lin_value init = {true, NULL, 0};
    long long st = states_intern(&s->states, &init);
    if (s->bits == NULL || s->best_bits == NULL || stack == NULL || st < 0 ||
        build_list(s) != 0) {
        free(stack);
        return -1;
    }
    size_t state = (size_t)st, depth = 0;
    long head = (long)(2 * m);
    long e = s->nodes[head].next;
    int verdict = LIN_OK;
    s->blocked = -1;
    while (s->nodes[head].next >= 0) {
        if (++*steps > steps_max ||
            ((*steps & 1023) == 0 && deadline > 0 && now_ms() > deadline)) {
            verdict = LIN_UNKNOWN;
            break;
        }
        CRAFT_ASSERT(e >= 0);
        const struct node *n = &s->nodes[e];
        if (!n->is_ret) {
            const struct lin_op *op = &s->h->ops[s->ops[n->op]];
            struct lin_value next;
            int ok = lin_model_step(&s->states.v[state], op, &next);
            if (ok < 0) {
                verdict = -1;
                break;
            }
            if (ok) {
                long long ns = states_intern(&s->states, &next);
                if (ns < 0) {
                    free(next.p);
                    verdict = -1;
                    break;
                }
                s->bits[n->op / 64] |= 1ull << (n->op % 64);
                int added = cache_add(&s->cache, s->bits, (uint64_t)ns);
                if (added < 0) {
                    verdict = added == -2 ? LIN_UNKNOWN : -1;
                    break;
                }
                if (added) {
                    stack[depth++] = (struct frame){e, state};
                    state = (size_t)ns;
                    lift(s->nodes, e);
                    if (depth > s->best_depth) {
                        s->best_depth = depth;
                        s->best_state = state;
                        memcpy(s->best_bits, s->bits, words * 8);
                    }
                    e = s->nodes[head].next;
                    continue;
                }
                s->bits[n->op / 64] &= ~(1ull << (n->op % 64));
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

int lin_check(const struct lin_history *h, const struct lin_options *o,
              struct lin_result *r)
{
    CRAFT_ASSERT(h != NULL && r != NULL);
    memset(r, 0, sizeof *r);
    struct lin_options opt = {0};
    if (o != NULL) {
        opt = *o;
    }
    uint64_t steps_max = opt.steps_max ? opt.steps_max : LIN_STEPS_MAX;
    double deadline = opt.time_ms ? now_ms() + (double)opt.time_ms : 0;
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
        struct search s;
        memset(&s, 0, sizeof s);
        s.h = h;
        s.ops = idx + start;
        s.m = end - start;
        r->n_ops += s.m;
        /* The budget is per key (lincheck.h): one expensive key must not
         * starve the keys after it. */
        uint64_t key_steps = 0;
        int v = search_key(&s, steps_max, deadline, &key_steps);
        r->steps += key_steps;
        r->n_keys++;
        if (v < 0) {
            rv = -1;
        } else if (v == LIN_UNKNOWN) {
            r->keys_unknown++;
            r->verdict = LIN_UNKNOWN;
        } else if (v == LIN_ILLEGAL) {
            r->verdict = LIN_ILLEGAL;
            r->bad_key_op = idx[start];
            if (make_window(&s, r) != 0) {
                rv = -1;
            }
        }
        search_close(&s);
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

void lin_report(FILE *f, const struct lin_history *h,
                const struct lin_result *r, const char *path)
{
    if (r->verdict == LIN_OK) {
        fprintf(f, "linearizable: %zu operations on %zu keys (%llu steps)\n",
                r->n_ops, r->n_keys, (unsigned long long)r->steps);
        return;
    }
    if (r->verdict == LIN_UNKNOWN) {
        fprintf(f,
                "unknown: the search budget ran out on %zu of %zu keys "
                "(%llu steps); no violation found\n",
                r->keys_unknown, r->n_keys, (unsigned long long)r->steps);
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
