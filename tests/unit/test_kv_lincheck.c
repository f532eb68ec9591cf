/* The three building blocks together: clients drive replicated state
 * machines through one log, with lost replies and retries, and every
 * history is checked with the linearizability checker.  With sessions and
 * ReadIndex-style reads the histories must be linearizable; without
 * sessions (retries re-execute) or with reads from lagging replicas the
 * checker must catch the classic bugs. */
#include "test_kv_helpers.h"

#include "lincheck.h"
#include "util/assert.h"
#include "util/rng.h"

enum { REPLICAS = 3, CLIENTS = 5, KEYS = 3, LOG_MAX = 20000 };

struct client {
    uint64_t session;
    uint64_t seq;     /* of the operation in flight, or of the last */
    int busy;         /* an operation is in flight */
    struct lin_op op; /* it, being recorded */
    int is_read;
    uint64_t read_index; /* commit index when the read started */
    char arg[32];
    char key[8];
    int proposals; /* times the write was proposed */
};

struct world {
    struct rng r;
    struct kvsm *rep[REPLICAS];
    uint64_t applied[REPLICAS];
    struct buf log[LOG_MAX];
    int log_client[LOG_MAX];    /* who proposed entry i + 1, or -1 */
    uint64_t log_seq[LOG_MAX];  /* for which of its operations */
    char replies[LOG_MAX][128]; /* entry i + 1's reply, first replica */
    uint64_t n_log;
    uint64_t now;
    struct client c[CLIENTS];
    struct lin_history h;
    int sessions;    /* use CRAFT.EXEC (else retries re-execute) */
    int stale_reads; /* serve reads from any replica */
    char reply[REPLICAS][256];
};

static void propose(struct world *w, int client, const char *line,
                    const struct kvsm_session_ref *s)
{
    CRAFT_ASSERT(w->n_log < LOG_MAX);
    struct words wd;
    words_split(&wd, line);
    struct buf *e = &w->log[w->n_log];
    buf_init(e);
    assert_int_equal(kvsm_cmd_encode(w->now, s, wd.argc, wd.argv, wd.lens, e),
                     0);
    w->log_client[w->n_log] = client;
    w->log_seq[w->n_log] = client >= 0 ? w->c[client].seq : 0;
    w->n_log++;
}

/* Apply the next entry on replica i; replies are identical everywhere. */
static void apply_next(struct world *w, int i, struct buf *reply)
{
    uint64_t idx = ++w->applied[i];
    const struct buf *e = &w->log[idx - 1];
    buf_reset(reply);
    assert_int_equal(kvsm_apply(w->rep[i], idx, e->data, e->len, reply), 0);
    assert_true(reply->len < sizeof w->reply[0]);
    memcpy(w->reply[i], reply->data, reply->len);
    w->reply[i][reply->len] = '\0';
    /* Every replica computes the same reply for the same entry. */
    char *first = w->replies[idx - 1];
    assert_true(reply->len < sizeof w->replies[0]);
    if (first[0] == '\0') {
        memcpy(first, w->reply[i], reply->len + 1);
    } else {
        assert_string_equal(first, w->reply[i]);
    }
}

static void set_value(struct lin_value *v, const char *s, size_t n)
{
    v->nil = false;
    v->p = (uint8_t *)s;
    v->n = n;
}

/* Record the reply of client c's operation and end it. */
static void finish(struct world *w, struct client *c, const char *reply)
{
    c->op.ret = w->now;
    c->op.has_out = false;
    static char out[256];
    if (c->op.kind == LIN_GET) {
        c->op.has_out = true;
        if (strcmp(reply, "$-1\r\n") == 0) {
            c->op.out.nil = true;
            c->op.out.n = 0;
        } else {
            const char *v = strchr(reply, '\n') + 1;
            size_t n = strlen(v) - 2;
            memcpy(out, v, n);
            set_value(&c->op.out, out, n);
        }
    } else if (c->op.kind == LIN_INCR) {
        assert_int_equal(reply[0], ':');
        size_t n = strlen(reply) - 3;
        memcpy(out, reply + 1, n);
        set_value(&c->op.out, out, n);
        c->op.has_out = true;
    }
    assert_int_equal(lin_history_add(&w->h, &c->op), 0);
    c->busy = 0;
}

static void start_op(struct world *w, int ci)
{
    struct client *c = &w->c[ci];
    memset(&c->op, 0, sizeof c->op);
    static char name[CLIENTS][8];
    snprintf(name[ci], sizeof name[ci], "c%d", ci);
    c->op.client = name[ci];
    c->op.call = w->now;
    c->op.kind = (enum lin_kind)rng_range(&w->r, 0, 4);
    /* Counters and strings live on different keys, so INCR never meets a
     * string (that would be an error reply with no value to check). */
    int counter = c->op.kind == LIN_INCR ||
                  (c->op.kind == LIN_GET && rng_chance(&w->r, 300));
    snprintf(c->key, sizeof c->key, "%c%d", counter ? 'n' : 'k',
             (int)rng_range(&w->r, 0, KEYS));
    set_value(&c->op.key, c->key, strlen(c->key));
    c->busy = 1;
    c->proposals = 0;
    c->is_read = c->op.kind == LIN_GET;
    if (c->is_read) {
        /* ReadIndex: the read must see everything committed so far. */
        c->read_index = w->n_log;
        return;
    }
    if (c->op.kind == LIN_INCR) {
        snprintf(c->arg, sizeof c->arg, "%d", (int)rng_range(&w->r, 1, 4));
    } else {
        snprintf(c->arg, sizeof c->arg, "%c%llu.", "pa"[c->op.kind - 1],
                 (unsigned long long)w -> now);
    }
    set_value(&c->op.arg, c->arg, strlen(c->arg));
    c->seq++;
}

static void propose_write(struct world *w, int ci)
{
    struct client *c = &w->c[ci];
    static const char *verbs[] = {"GET", "SET", "APPEND", "INCRBY"};
    char line[96];
    snprintf(line, sizeof line, "%s %s %s", verbs[c->op.kind], c->key, c->arg);
    struct kvsm_session_ref s = {c->session, c->seq, c->seq};
    propose(w, ci, line, w->sessions ? &s : NULL);
    c->proposals++;
}

static enum lin_verdict run(uint64_t seed, int sessions, int stale_reads)
{
    struct world *w = calloc(1, sizeof *w);
    rng_init(&w->r, seed);
    w->sessions = sessions;
    w->stale_reads = stale_reads;
    lin_history_init(&w->h);
    struct kvsm_config cfg;
    kvsm_config_default(&cfg);
    for (int i = 0; i < REPLICAS; i++) {
        cfg.hash_seed[0] = (uint64_t)i;
        assert_int_equal(kvsm_new(&cfg, &w->rep[i]), 0);
    }
    struct buf reply;
    buf_init(&reply);
    /* Open one session per client (the ids are the log indices). */
    for (int ci = 0; ci < CLIENTS; ci++) {
        propose(w, -1, "CRAFT.SESSION", NULL);
        w->c[ci].session = w->n_log;
    }
    for (int i = 0; i < REPLICAS; i++) {
        while (w->applied[i] < w->n_log) {
            apply_next(w, i, &reply);
        }
    }
    for (int step = 0; step < 6000 && w->n_log < LOG_MAX - 10; step++) {
        w->now++;
        int ci = (int)rng_range(&w->r, 0, CLIENTS);
        struct client *c = &w->c[ci];
        int i = (int)rng_range(&w->r, 0, REPLICAS);
        switch (rng_range(&w->r, 0, 4)) {
        case 0: /* a client acts */
            if (!c->busy) {
                start_op(w, ci);
            } else if (!c->is_read && c->proposals == 0) {
                propose_write(w, ci);
            } else if (!c->is_read && rng_chance(&w->r, 100)) {
                /* The reply was lost or slow: retry the same request. */
                propose_write(w, ci);
            } else if (c->is_read) {
                /* Serve the read from a replica that has applied the read
                 * index (or, to show the bug, from the most lagging one, a
                 * follower that serves reads from its own state). */
                if (w->stale_reads) {
                    for (int j = 0; j < REPLICAS; j++) {
                        i = w->applied[j] < w->applied[i] ? j : i;
                    }
                }
                if (w->stale_reads || w->applied[i] >= c->read_index) {
                    char line[32];
                    snprintf(line, sizeof line, "GET %s", c->key);
                    finish(w, c, kv_read(w->rep[i], line, 0));
                }
            }
            break;
        default: /* a replica applies an entry; the last one is slow */
            if (w->applied[i] < w->n_log &&
                (i != REPLICAS - 1 || rng_chance(&w->r, 150))) {
                uint64_t idx = w->applied[i] + 1;
                apply_next(w, i, &reply);
                int who = w->log_client[idx - 1];
                struct client *p = who >= 0 ? &w->c[who] : NULL;
                /* The proposer hears back when the leader (replica 0)
                 * applies one of its proposals, unless it is lost. */
                if (i == 0 && p != NULL && p->busy && !p->is_read &&
                    w->log_seq[idx - 1] == p->seq && !rng_chance(&w->r, 200)) {
                    finish(w, p, w->reply[0]);
                }
            }
            break;
        }
    }
    /* Whatever is still in flight has an unknown outcome. */
    for (int ci = 0; ci < CLIENTS; ci++) {
        struct client *c = &w->c[ci];
        if (c->busy && !c->is_read) {
            c->op.ret = LIN_TIME_UNKNOWN;
            c->op.has_out = false;
            assert_int_equal(lin_history_add(&w->h, &c->op), 0);
        }
    }
    struct lin_result res;
    assert_int_equal(lin_check(&w->h, NULL, &res), 0);
    enum lin_verdict v = res.verdict;
    if (v == LIN_ILLEGAL && sessions && !stale_reads) {
        lin_report(stdout, &w->h, &res, "-");
    }
    lin_result_close(&res);
    for (int i = 0; i < REPLICAS; i++) {
        assert_true(kvsm_check(w->rep[i]));
        kvsm_free(w->rep[i]);
    }
    for (uint64_t k = 0; k < w->n_log; k++) {
        buf_close(&w->log[k]);
    }
    buf_close(&reply);
    lin_history_close(&w->h);
    free(w);
    return v;
}

static void sessions_and_read_index_are_linearizable(void **state)
{
    (void)state;
    uint64_t seed = test_seed("sessions_and_read_index_are_linearizable", 41);
    for (uint64_t k = 0; k < 10; k++) {
        enum lin_verdict v = run(seed + k, 1, 0);
        if (v != LIN_OK) {
            fail_msg("seed %llu: verdict %d", (unsigned long long)(seed + k),
                     v);
        }
    }
}

static void checker_catches_duplicates_and_stale_reads(void **state)
{
    (void)state;
    uint64_t seed = test_seed("checker_catches_duplicates_and_stale_reads", 51);
    int dup = 0, stale = 0;
    for (uint64_t k = 0; k < 10; k++) {
        dup += run(seed + k, 0, 0) == LIN_ILLEGAL;
        stale += run(seed + k, 1, 1) == LIN_ILLEGAL;
    }
    printf("illegal histories found: %d/10 without sessions, %d/10 with "
           "stale reads\n",
           dup, stale);
    assert_true(dup >= 5);
    assert_true(stale >= 5);
}

int main(int argc, char **argv)
{
    /* --seed N replays the randomised tests (same as CRAFT_SEED=N). */
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) {
        setenv("CRAFT_SEED", argv[2], 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sessions_and_read_index_are_linearizable),
        cmocka_unit_test(checker_catches_duplicates_and_stale_reads),
    };
    return cmocka_run_group_tests_name("kv_lincheck", tests, NULL, NULL);
}
