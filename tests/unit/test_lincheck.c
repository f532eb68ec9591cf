/* Unit tests for tools/lincheck: known linearizable and non-linearizable
 * histories, the text format, random histories that are linearizable by
 * construction, the search budgets (steps and memory), setting unseen
 * unknown appends aside, and the CLI's exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lincheck.h"
#include "util/rng.h"

static enum lin_verdict check_text(const char *text, struct lin_result *out)
{
    struct lin_history h;
    lin_history_init(&h);
    char err[256];
    if (lin_history_parse(&h, text, strlen(text), err, sizeof err) != 0) {
        fail_msg("parse: %s", err);
    }
    struct lin_result r;
    assert_int_equal(lin_check(&h, NULL, &r), 0);
    enum lin_verdict v = r.verdict;
    if (v == LIN_ILLEGAL) {
        lin_report(stdout, &h, &r, "test");
    }
    if (out) {
        *out = r;
    } else {
        lin_result_close(&r);
    }
    lin_history_close(&h);
    return v;
}

static void known_histories(void **state)
{
    (void)state;
    struct {
        const char *name;
        const char *text;
        enum lin_verdict want;
    } cases[] = {
        {"sequential",
         "a 0 1 put x 1\na 2 3 get x -> 1\n"
         "a 4 5 append x 2\na 6 7 get x -> 12\n",
         LIN_OK},
        {"absent is nil", "a 0 1 get x -> nil\n", LIN_OK},
        {"absent is not empty", "a 0 1 get x -> \"\"\n", LIN_ILLEGAL},
        {"stale read",
         "a 0 10 put x 1\na 20 30 put x 2\n"
         "b 40 50 get x -> 1\n",
         LIN_ILLEGAL},
        {"lost write", "a 0 10 put x 1\nb 20 30 get x -> nil\n", LIN_ILLEGAL},
        {"read concurrent with write may see either",
         "a 0 100 put x 1\nb 10 20 get x -> nil\nc 30 40 get x -> 1\n", LIN_OK},
        {"no going back",
         "a 0 100 put x 1\nb 10 20 get x -> 1\n"
         "c 30 40 get x -> nil\n",
         LIN_ILLEGAL},
        {"concurrent puts, reads agree on an order",
         "a 0 100 put x 1\nb 0 100 put x 2\nc 110 120 get x -> 2\n"
         "c 130 140 get x -> 2\n",
         LIN_OK},
        {"concurrent puts, reads disagree",
         "a 0 100 put x 1\nb 0 100 put x 2\nc 110 120 get x -> 2\n"
         "d 130 140 get x -> 1\n",
         LIN_ILLEGAL},
        {"duplicate append", "a 0 10 append x a\nb 20 30 get x -> aa\n",
         LIN_ILLEGAL},
        {"duplicate append via retry (two ops) is fine",
         "a 0 10 append x a\na 11 20 append x a\nb 30 40 get x -> aa\n",
         LIN_OK},
        {"unknown append may not have happened",
         "a 0 ? append x a\nb 20 30 get x -> nil\n", LIN_OK},
        {"unknown append may happen late",
         "a 0 ? append x a\nb 20 30 get x -> nil\nb 40 50 get x -> a\n",
         LIN_OK},
        {"unknown append cannot un-happen",
         "a 0 ? append x a\nb 20 30 get x -> a\nb 40 50 get x -> nil\n",
         LIN_ILLEGAL},
        {"unknown append not before its call",
         "b 0 10 get x -> a\na 20 ? append x a\n", LIN_ILLEGAL},
        {"two unknown appends, one order",
         "a 0 ? append x a\nb 0 ? append x b\nc 20 30 get x -> ba\n", LIN_OK},
        {"unknown appends happen at most once",
         "a 0 ? append x a\nc 20 30 get x -> aa\n", LIN_ILLEGAL},
        {"unknown get is ignored", "a 0 10 put x 1\nb 20 ? get x\n", LIN_OK},
        {"incr",
         "a 0 10 incr n 1 -> 1\nb 5 15 incr n 2 -> 3\n"
         "c 20 30 get n -> 3\n",
         LIN_OK},
        {"incr twice seen once", "a 0 10 incr n 1 -> 1\nb 5 15 incr n 1 -> 1\n",
         LIN_ILLEGAL},
        {"incr of a non-integer must fail",
         "a 0 1 put n x\nb 2 3 incr n 1 -> 1\n", LIN_ILLEGAL},
        {"del", "a 0 1 put x 1\na 2 3 del x\na 4 5 get x -> nil\n", LIN_OK},
        {"keys are independent",
         "a 0 10 put x 1\nb 0 10 put y 1\nc 20 30 get y -> 1\n"
         "c 40 50 get x -> 2\n",
         LIN_ILLEGAL},
        {"touching intervals count as concurrent",
         "a 0 10 put x 1\nb 10 20 get x -> nil\n", LIN_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum lin_verdict v = check_text(cases[i].text, NULL);
        if (v != cases[i].want) {
            fail_msg("%s: verdict %d, want %d", cases[i].name, v,
                     cases[i].want);
        }
    }
}

static void report_names_window(void **state)
{
    (void)state;
    struct lin_result r;
    const char *text = "a 0 10 put x 1\n"
                       "a 20 30 put x 2\n"
                       "z 0 5 put other 9\n"
                       "b 35 60 put x 3\n"
                       "c 40 50 get x -> 1\n";
    assert_int_equal(check_text(text, &r), LIN_ILLEGAL);
    /* The blocked op is the stale get (index 4); the window holds it, the
     * write concurrent with it, and the write it should have seen. */
    assert_int_equal(r.blocked, 4);
    assert_int_equal(r.n_window, 3);
    assert_int_equal(r.window[0], 1);
    assert_int_equal(r.window[1], 3);
    assert_int_equal(r.window[2], 4);
    assert_int_equal(r.key_ops, 4);
    lin_result_close(&r);
}

static void parse_errors_and_round_trip(void **state)
{
    (void)state;
    const char *bad[] = {
        "a 0 1 frob x\n",        "a 0 1 get x\n",
        "a 1 0 put x 1\n",       "a 0 ? get x -> 1\n",
        "a 0 1 put x\n",         "a x 1 put x 1\n",
        "a 0 1 put x \"1\n",     "a 0 1 put x 1 junk\n",
        "a 0 1 put nil 1\n",     "a 0 1 put x \"\\q\"\n",
        "ok 0 1 put x 1\na 0\n", "a 0 1 put x \"\\x4\"\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct lin_history h;
        lin_history_init(&h);
        char err[256] = "";
        assert_int_equal(
            lin_history_parse(&h, bad[i], strlen(bad[i]), err, sizeof err), -1);
        assert_memory_equal(err, "line ", 5);
        lin_history_close(&h);
    }
    const char *text = "# comment\n\n"
                       "c1 5 9 put \"a key\" \"v\\x00\\n\\\"\"\n"
                       "c2 6 ? append \"a key\" nil-ish\n"
                       "c3 7 8 get \"a key\" -> nil\n"
                       "c3 9 10 get k -> \"nil\"\n"
                       "c4 1 2 incr n -3 -> -3\n"
                       "c4 3 4 del n";
    struct lin_history h, h2;
    lin_history_init(&h);
    lin_history_init(&h2);
    char err[256];
    assert_int_equal(lin_history_parse(&h, text, strlen(text), err, sizeof err),
                     0);
    assert_int_equal(h.n, 6);
    assert_int_equal(h.ops[0].arg.n, 4);
    assert_memory_equal(h.ops[0].arg.p, "v\0\n\"", 4);
    assert_true(h.ops[2].out.nil);
    assert_false(h.ops[3].out.nil);
    assert_int_equal(h.ops[1].ret, LIN_TIME_UNKNOWN);
    char *printed = NULL;
    size_t plen = 0;
    FILE *f = open_memstream(&printed, &plen);
    lin_history_print(f, &h);
    fclose(f);
    assert_int_equal(lin_history_parse(&h2, printed, plen, err, sizeof err), 0);
    assert_int_equal(h2.n, h.n);
    for (size_t i = 0; i < h.n; i++) {
        assert_int_equal(h.ops[i].kind, h2.ops[i].kind);
        assert_int_equal(h.ops[i].call, h2.ops[i].call);
        assert_int_equal(h.ops[i].ret, h2.ops[i].ret);
        assert_int_equal(h.ops[i].arg.n, h2.ops[i].arg.n);
        assert_int_equal(h.ops[i].out.nil, h2.ops[i].out.nil);
        assert_int_equal(h.ops[i].key.n, h2.ops[i].key.n);
    }
    free(printed);
    lin_history_close(&h);
    lin_history_close(&h2);
}

/* A random history that is linearizable by construction: every op gets a
 * linearization point inside its interval, and outputs come from applying
 * the ops in that order.  Some outcomes are made unknown; an unknown write
 * takes effect or not at random. */
static void random_history_ex(struct lin_history *h, struct rng *r, int n_ops,
                              int n_keys, int n_clients, int unknown_per_mille,
                              bool incr)
{
    struct pending {
        struct lin_op op;
        uint64_t lp;
        int effect;
    } *ops = calloc((size_t)n_ops, sizeof *ops);
    uint64_t *client_time = calloc((size_t)n_clients, sizeof *client_time);
    char keybuf[32], argbuf[32];
    for (int i = 0; i < n_ops; i++) {
        int c = (int)rng_range(r, 0, (uint64_t)n_clients);
        struct lin_op *op = &ops[i].op;
        static char cname[] = "c";
        op->client = cname;
        op->call = client_time[c] + rng_range(r, 0, 50);
        ops[i].lp = op->call + rng_range(r, 0, 100);
        op->ret = ops[i].lp + rng_range(r, 0, 100);
        client_time[c] = op->ret + 1;
        op->kind = (enum lin_kind)rng_range(r, 0, 5);
        if (!incr && op->kind == LIN_INCR) {
            op->kind = LIN_APPEND;
        }
        int k = snprintf(keybuf, sizeof keybuf, "k%d",
                         (int)rng_range(r, 0, (uint64_t)n_keys));
        op->key.p = (uint8_t *)strndup(keybuf, (size_t)k);
        op->key.n = (size_t)k;
        int a =
            op->kind == LIN_INCR
                ? snprintf(argbuf, sizeof argbuf, "%d", (int)rng_range(r, 0, 5))
                : snprintf(argbuf, sizeof argbuf, "%d.", i);
        op->arg.p = (uint8_t *)strndup(argbuf, (size_t)a);
        op->arg.n = (size_t)a;
        ops[i].effect = 1;
        if (rng_chance(r, (unsigned)unknown_per_mille)) {
            op->ret = LIN_TIME_UNKNOWN;
            ops[i].effect = (int)rng_range(r, 0, 2);
            /* A client that timed out moves on. */
            client_time[c] = ops[i].lp + 1;
        }
    }
    /* Apply in linearization-point order. */
    int *order = malloc((size_t)n_ops * sizeof *order);
    for (int i = 0; i < n_ops; i++) {
        order[i] = i;
    }
    for (int i = 1; i < n_ops; i++) {
        for (int j = i; j > 0 && ops[order[j]].lp < ops[order[j - 1]].lp; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    struct lin_value *state = calloc((size_t)n_keys, sizeof *state);
    for (int i = 0; i < n_keys; i++) {
        state[i].nil = true;
    }
    for (int i = 0; i < n_ops; i++) {
        struct pending *p = &ops[order[i]];
        int k = atoi((const char *)p->op.key.p + 1);
        /* Incr on a non-integer fails in the store; avoid by resetting. */
        struct lin_value next;
        p->op.has_out = false;
        if (p->op.kind == LIN_INCR && !state[k].nil) {
            /* The store would refuse to increment a non-integer. */
            char *end;
            char tmp[40];
            snprintf(tmp, sizeof tmp, "%.*s", (int)state[k].n,
                     (const char *)state[k].p);
            strtoll(tmp, &end, 10);
            if (state[k].n == 0 || *end != '\0') {
                p->op.kind = LIN_PUT;
            }
        }
        int ok = lin_model_step(&state[k], &p->op, &next);
        assert_int_equal(ok, 1);
        if (p->op.ret != LIN_TIME_UNKNOWN &&
            (p->op.kind == LIN_GET || p->op.kind == LIN_INCR)) {
            p->op.has_out = true;
            p->op.out = next;
            p->op.out.p = next.n ? malloc(next.n) : NULL;
            if (next.n) {
                memcpy(p->op.out.p, next.p, next.n);
            }
        }
        if (p->effect) {
            free(state[k].p);
            state[k] = next;
        } else {
            free(next.p);
        }
    }
    for (int i = 0; i < n_ops; i++) {
        assert_int_equal(lin_history_add(h, &ops[i].op), 0);
        free(ops[i].op.key.p);
        free(ops[i].op.arg.p);
        free(ops[i].op.out.p);
    }
    for (int i = 0; i < n_keys; i++) {
        free(state[i].p);
    }
    free(state);
    free(order);
    free(client_time);
    free(ops);
}

static void random_history(struct lin_history *h, struct rng *r, int n_ops,
                           int n_keys, int n_clients, int unknown_per_mille)
{
    random_history_ex(h, r, n_ops, n_keys, n_clients, unknown_per_mille, true);
}

static uint64_t seed_of(const char *name, uint64_t dflt)
{
    const char *env = getenv("CRAFT_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : dflt;
    printf("%s: seed=%llu (replay: --seed %llu)\n", name,
           (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

static void random_linearizable_pass(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, seed_of("random_linearizable_pass", 21));
    for (int iter = 0; iter < 200; iter++) {
        struct lin_history h;
        lin_history_init(&h);
        random_history(&h, &r, 60, 3, 5, 100);
        struct lin_result res;
        assert_int_equal(lin_check(&h, NULL, &res), 0);
        if (res.verdict != LIN_OK) {
            lin_history_print(stdout, &h);
            lin_report(stdout, &h, &res, "-");
            fail_msg("iteration %d: verdict %d", iter, res.verdict);
        }
        lin_result_close(&res);
        lin_history_close(&h);
    }
}

/* A read of a value nobody wrote is never linearizable. */
static void random_corrupted_fail(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, seed_of("random_corrupted_fail", 22));
    int corrupted = 0;
    for (int iter = 0; iter < 200; iter++) {
        struct lin_history h;
        lin_history_init(&h);
        random_history(&h, &r, 40, 2, 4, 50);
        size_t gets[64], n = 0;
        for (size_t i = 0; i < h.n && n < 64; i++) {
            if (h.ops[i].kind == LIN_GET && h.ops[i].has_out) {
                gets[n++] = i;
            }
        }
        if (n == 0) {
            lin_history_close(&h);
            continue;
        }
        struct lin_op *g = &h.ops[gets[rng_range(&r, 0, n)]];
        free(g->out.p);
        g->out.nil = false;
        g->out.p = (uint8_t *)strdup("never-written");
        g->out.n = strlen("never-written");
        corrupted++;
        struct lin_result res;
        assert_int_equal(lin_check(&h, NULL, &res), 0);
        assert_int_equal(res.verdict, LIN_ILLEGAL);
        assert_true(res.n_window >= 1);
        lin_result_close(&res);
        lin_history_close(&h);
    }
    assert_true(corrupted > 100);
}

static void budget_gives_unknown(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, 23);
    struct lin_history h;
    lin_history_init(&h);
    random_history(&h, &r, 200, 1, 8, 300);
    struct lin_options o = {.steps_max = 20};
    struct lin_result res;
    assert_int_equal(lin_check(&h, &o, &res), 0);
    assert_int_equal(res.verdict, LIN_UNKNOWN);
    assert_int_equal(res.keys_unknown, 1);
    lin_result_close(&res);
    lin_history_close(&h);
}

/* Unknown appends nobody read are set aside (check.c, invariant 2), and
 * only those: the ones a read saw, the empty ones and those on a key with
 * incr stay.  Each case gives the verdict and how many were set aside. */
static void unseen_appends_set_aside(void **state)
{
    (void)state;
    struct {
        const char *name;
        const char *text;
        enum lin_verdict want;
        size_t unseen;
    } cases[] = {
        {"seen later: kept", "a 0 ? append x A\nb 10 20 get x -> A\n", LIN_OK,
         0},
        {"never seen: set aside", "a 0 ? append x A\nb 10 20 get x -> nil\n",
         LIN_OK, 1},
        {"seen only before its call: set aside",
         "a 0 1 put x B\nb 2 3 get x -> B\nc 10 ? append x B\n"
         "d 20 30 put x C\ne 40 50 get x -> C\n",
         LIN_OK, 1},
        {"a read that may follow it counts",
         "a 0 1 put x B\nb 2 30 get x -> BB\nc 10 ? append x B\n", LIN_OK, 0},
        {"incr on the key: kept", "a 0 ? append x 1\nb 10 20 incr x 1 -> 2\n",
         LIN_OK, 0},
        {"empty append: kept", "a 0 ? append x \"\"\nb 10 20 get x -> \"\"\n",
         LIN_OK, 0},
        {"set aside, the violation stays",
         "a 0 ? append x A\nb 10 20 put x B\nc 30 40 get x -> nil\n",
         LIN_ILLEGAL, 1},
        {"two keys",
         "a 0 ? append x A\na 1 ? append y A\nb 10 20 get x -> nil\n"
         "b 30 40 get y -> A\n",
         LIN_OK, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct lin_result r;
        enum lin_verdict v = check_text(cases[i].text, &r);
        size_t unseen = r.n_unseen;
        lin_result_close(&r);
        if (v != cases[i].want || unseen != cases[i].unseen) {
            fail_msg("%s: verdict %d, want %d; %zu set aside, want %zu",
                     cases[i].name, v, cases[i].want, unseen, cases[i].unseen);
        }
    }
}

/* Setting unseen appends aside never changes a verdict: random histories
 * without incr (so that it applies), many unknown outcomes, half of them
 * with one read's output replaced by another read's of the same key (a
 * stale or early read, a violation or not), checked both ways. */
static void unseen_appends_keep_verdicts(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, seed_of("unseen_appends_keep_verdicts", 25));
    size_t set_aside = 0, illegal = 0;
    for (int iter = 0; iter < 300; iter++) {
        struct lin_history h;
        lin_history_init(&h);
        random_history_ex(&h, &r, 36, 2, 4, 250, false);
        for (int tries = 0; iter % 2 == 1 && tries < 50; tries++) {
            struct lin_op *x = &h.ops[rng_range(&r, 0, h.n)];
            struct lin_op *y = &h.ops[rng_range(&r, 0, h.n)];
            if (x->kind == LIN_GET && y->kind == LIN_GET && x->has_out &&
                y->has_out && x->key.n == y->key.n &&
                memcmp(x->key.p, y->key.p, x->key.n) == 0 &&
                (x->out.nil != y->out.nil || x->out.n != y->out.n)) {
                free(x->out.p);
                x->out = y->out;
                x->out.p = y->out.n ? malloc(y->out.n) : NULL;
                if (y->out.n) {
                    memcpy(x->out.p, y->out.p, y->out.n);
                }
                break;
            }
        }
        struct lin_options keep = {.keep_unseen = true};
        struct lin_result with, without;
        assert_int_equal(lin_check(&h, NULL, &with), 0);
        assert_int_equal(lin_check(&h, &keep, &without), 0);
        assert_int_equal(without.n_unseen, 0);
        if (with.verdict != without.verdict && with.verdict != LIN_UNKNOWN &&
            without.verdict != LIN_UNKNOWN) {
            lin_history_print(stdout, &h);
            fail_msg("iteration %d: verdict %d with %zu set aside, %d "
                     "without",
                     iter, with.verdict, with.n_unseen, without.verdict);
        }
        set_aside += with.n_unseen;
        illegal += with.verdict == LIN_ILLEGAL;
        lin_result_close(&with);
        lin_result_close(&without);
        lin_history_close(&h);
    }
    printf("%zu unknown appends set aside, %zu violations\n", set_aside,
           illegal);
    assert_true(set_aside > 100);
    assert_true(illegal > 10);
}

/* A key no budget of steps saves: a 256 KiB value, then 12 concurrent
 * appends and a read no order explains, so the search tries every order,
 * and every order is a new 256 KiB state.  A second key is fine. */
#define BIG_BASE_BYTES (256u * 1024u)
static void pathological_history(struct lin_history *h)
{
    lin_history_init(h);
    uint8_t *base = malloc(BIG_BASE_BYTES + 8);
    assert_non_null(base);
    memset(base, 'v', BIG_BASE_BYTES);
    static char cname[] = "c";
    struct lin_op op = {.client = cname, .kind = LIN_PUT, .call = 0, .ret = 1};
    op.key = (struct lin_value){false, (uint8_t *)"big", 3};
    op.arg = (struct lin_value){false, base, BIG_BASE_BYTES};
    assert_int_equal(lin_history_add(h, &op), 0);
    char arg[16];
    for (int i = 0; i < 12; i++) {
        snprintf(arg, sizeof arg, "a%d", i);
        op.kind = LIN_APPEND;
        op.call = 10 + (uint64_t)i;
        op.ret = 1000;
        op.arg = (struct lin_value){false, (uint8_t *)arg, strlen(arg)};
        assert_int_equal(lin_history_add(h, &op), 0);
    }
    memcpy(base + BIG_BASE_BYTES, "never", 5);
    op.kind = LIN_GET;
    op.call = 2000;
    op.ret = 2010;
    op.arg = (struct lin_value){true, NULL, 0};
    op.has_out = true;
    op.out = (struct lin_value){false, base, BIG_BASE_BYTES + 5};
    assert_int_equal(lin_history_add(h, &op), 0);
    op.key = (struct lin_value){false, (uint8_t *)"small", 5};
    op.out = (struct lin_value){true, NULL, 0};
    assert_int_equal(lin_history_add(h, &op), 0);
    free(base);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void memory_budget_gives_unknown(void **state)
{
    (void)state;
    struct lin_history h;
    pathological_history(&h);
    const uint64_t budget = 16u << 20;
    struct lin_options o = {.memory_bytes = budget};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct lin_result r;
    assert_int_equal(lin_check(&h, &o, &r), 0);
    double ms = ms_since(&t0);
    printf("unknown after %.1f ms, %llu steps, %llu bytes of %llu\n", ms,
           (unsigned long long)r.steps, (unsigned long long)r.unknown_bytes,
           (unsigned long long)budget);
    assert_int_equal(r.verdict, LIN_UNKNOWN);
    assert_int_equal(r.limit, LIN_LIMIT_MEMORY);
    assert_int_equal(r.limit_value, budget);
    assert_true(r.unknown_bytes <= budget);
    /* It stopped for memory, near the budget (one more state did not
     * fit), long before the step budget. */
    assert_true(r.unknown_bytes + 2 * BIG_BASE_BYTES > budget);
    assert_true(r.steps < LIN_STEPS_MAX);
    assert_int_equal(r.n_keys, 2);
    assert_int_equal(r.keys_unknown, 1);
    assert_true(ms < 10000);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    lin_report(f, &h, &r, "h");
    fclose(f);
    printf("%s", text);
    assert_non_null(strstr(text, "unknown: key big "));
    assert_non_null(strstr(text, "memory budget (--memory-mb 16"));
    assert_non_null(strstr(text, "1 of 2 keys unknown"));
    free(text);
    lin_result_close(&r);
    lin_history_close(&h);
}

/* The budget bounds the process, not only the count: a child checks the
 * pathological history with a 32 MiB budget and its peak resident size
 * stays near that.  (Sanitizer builds keep freed memory in quarantine and
 * map shadow memory, so there only the verdict is checked.) */
#if defined(__SANITIZE_ADDRESS__)
#define LIN_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LIN_TEST_ASAN 1
#endif
#endif
static void memory_budget_bounds_rss(void **state)
{
    (void)state;
    struct lin_history h;
    pathological_history(&h);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct lin_options o = {.memory_bytes = 32u << 20};
        struct lin_result r;
        int rv = lin_check(&h, &o, &r);
        _exit(rv == 0 && r.verdict == LIN_UNKNOWN && r.limit == LIN_LIMIT_MEMORY
                  ? 0
                  : 1);
    }
    lin_history_close(&h);
    int st = 0;
    struct rusage ru;
    assert_int_equal(wait4(pid, &st, 0, &ru), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    printf("child peak RSS %ld KiB with a 32 MiB budget\n", ru.ru_maxrss);
#ifndef LIN_TEST_ASAN
    /* 32 MiB, the test process (a few MiB) and malloc's slack. */
    assert_true(ru.ru_maxrss < 96 * 1024);
#endif
}

static void ten_thousand_ops(void **state)
{
    (void)state;
    struct rng r;
    rng_init(&r, seed_of("ten_thousand_ops", 24));
    /* 10k ops on 40 keys (about 250 per key), light and heavy
     * concurrency, with some unknown outcomes. */
    static const int clients[] = {10, 40};
    static const int unknown[] = {20, 50};
    for (int c = 0; c < 2; c++) {
        struct lin_history h;
        lin_history_init(&h);
        random_history(&h, &r, 10000, 40, clients[c], unknown[c]);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        struct lin_result res;
        assert_int_equal(lin_check(&h, NULL, &res), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("%d clients, %d/1000 unknown: checked %zu ops on %zu keys in "
               "%.1f ms (%llu steps)\n",
               clients[c], unknown[c], res.n_ops, res.n_keys, ms,
               (unsigned long long)res.steps);
        assert_int_equal(res.verdict, LIN_OK);
        lin_result_close(&res);
        lin_history_close(&h);
    }
}

/* The CLI: exit codes 0, 1, 2 on real files.  The binary is found through
 * CRAFT_BUILD_DIR (set by ctest) or next to this test (build/tests/ ->
 * build/bin/). */
static int run_cli_out(const char *args, const char *out)
{
    char bin[512];
    const char *dir = getenv("CRAFT_BUILD_DIR");
    if (dir != NULL) {
        snprintf(bin, sizeof bin, "%s/bin/craft-lincheck", dir);
    } else {
        char self[400];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        assert_true(n > 0);
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        snprintf(bin, sizeof bin, "%s/../bin/craft-lincheck", self);
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>&1", bin, args, out);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_cli(const char *args)
{
    return run_cli_out(args, "/dev/null");
}

static void cli_exit_codes(void **state)
{
    (void)state;
    char dir[] = "/tmp/craft-lincheck-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *files[][2] = {
        {"ok", "a 0 1 put x 1\na 2 3 get x -> 1\n"},
        {"bad", "a 0 1 put x 1\nb 2 3 get x -> nil\n"},
        {"junk", "a 0 1 frob x\n"},
    };
    char path[3][128];
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", dir, files[i][0]);
        FILE *f = fopen(path[i], "w");
        if (f != NULL) {
            fputs(files[i][1], f);
            fclose(f);
        }
    }
    /* The pathological history, for --memory-mb. */
    char patho[128], out[128];
    snprintf(patho, sizeof patho, "%s/patho", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    struct lin_history h;
    pathological_history(&h);
    FILE *pf = fopen(patho, "w");
    if (pf != NULL) {
        lin_history_print(pf, &h);
        fclose(pf);
    }
    lin_history_close(&h);
    /* Run everything, clean up, then check, so a failure leaves no files. */
    char args[512];
    int got[11];
    got[0] = run_cli(path[0]);
    got[1] = run_cli(path[1]);
    snprintf(args, sizeof args, "--key y %s", path[1]);
    got[2] = run_cli(args);
    got[3] = run_cli(path[2]);
    snprintf(args, sizeof args, "%s/missing", dir);
    got[4] = run_cli(args);
    got[5] = run_cli("--bogus");
    got[6] = run_cli("");
    snprintf(args, sizeof args, "--memory-mb 0 %s", path[0]);
    got[7] = run_cli(args);
    snprintf(args, sizeof args, "--memory-mb 1x %s", path[0]);
    got[8] = run_cli(args);
    snprintf(args, sizeof args, "--memory-mb 1 %s", path[0]);
    got[9] = run_cli(args);
    snprintf(args, sizeof args, "--memory-mb 8 %s", patho);
    got[10] = run_cli_out(args, out);
    char text[1024] = "";
    FILE *of = fopen(out, "r");
    if (of != NULL) {
        text[fread(text, 1, sizeof text - 1, of)] = '\0';
        fclose(of);
    }
    for (int i = 0; i < 3; i++) {
        unlink(path[i]);
    }
    unlink(patho);
    unlink(out);
    rmdir(dir);
    const int want[11] = {0, 1, 0, 2, 2, 2, 2, 2, 2, 0, 2};
    for (int i = 0; i < 11; i++) {
        if (got[i] != want[i]) {
            fail_msg("case %d: exit %d, want %d", i, got[i], want[i]);
        }
    }
    if (strstr(text, "unknown: key big reached the memory budget "
                     "(--memory-mb 8") == NULL) {
        fail_msg("--memory-mb 8 on the pathological history said: %s", text);
    }
}

int main(int argc, char **argv)
{
    /* --seed N replays the randomised tests (same as CRAFT_SEED=N). */
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) {
        setenv("CRAFT_SEED", argv[2], 1);
    }
    const struct CMUnitTest tests[] = {
        /* First, while the process is small (a forked child's RSS counts
         * its parent's resident pages). */
        cmocka_unit_test(memory_budget_bounds_rss),
        cmocka_unit_test(known_histories),
        cmocka_unit_test(report_names_window),
        cmocka_unit_test(parse_errors_and_round_trip),
        cmocka_unit_test(random_linearizable_pass),
        cmocka_unit_test(random_corrupted_fail),
        cmocka_unit_test(budget_gives_unknown),
        cmocka_unit_test(memory_budget_gives_unknown),
        cmocka_unit_test(unseen_appends_set_aside),
        cmocka_unit_test(unseen_appends_keep_verdicts),
        cmocka_unit_test(ten_thousand_ops),
        cmocka_unit_test(cli_exit_codes),
    };
    return cmocka_run_group_tests_name("lincheck", tests, NULL, NULL);
}
