/*
 * Unit tests for src/mr: run files, the k-way merge and its value
 * iterator, the map-side sort buffer with spills and combining, reduce over
 * more runs than one merge takes, atomic output, input splits, and the
 * coordinator's task state machine in simulated time.
 *
 * Randomised tests print their seed; set MR_TEST_SEED to replay one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "craft/common.h"
#include "craft/mr.h"
#include "mr/merge.h"
#include "mr/output.h"
#include "mr/plugin.h"
#include "mr/run.h"
#include "mr/sched.h"
#include "mr/split.h"
#include "mr/task.h"
#include "mr/wire.h"
#include "util/rng.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_mr.XXXXXX", t ? t : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t test_seed(void)
{
    const char *s = getenv("MR_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)getpid() * 7919u;
    printf("# seed %llu (MR_TEST_SEED to replay)\n", (unsigned long long)seed);
    return seed;
}

static char *path_in(const char *name)
{
    static char p[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(p[i], sizeof p[i], "%s/%s", tmpdir, name);
    return p[i];
}

/* ---- partition hash ----------------------------------------------------- */

static void partition_is_fnv1a_masked(void **state)
{
    (void)state;
    /* FNV-1a("") is the offset basis 2166136261 = 0x811c9dc5; masked to
     * 31 bits it is 0x011c9dc5 = 18652613. */
    assert_int_equal(mr_partition("", 0, 1000000000u), 18652613u % 1000000000u);
    /* FNV-1a("a") = 0xe40c292c, masked 0x640c292c = 1678518572. */
    assert_int_equal(mr_partition("a", 1, 10), 1678518572u % 10);
    assert_int_equal(mr_partition("a", 1, 7), 1678518572u % 7);
}

/* ---- run files ---------------------------------------------------------- */

static void run_roundtrip_and_corruption(void **state)
{
    (void)state;
    char err[256];
    struct mr_run_writer w;
    const char *path = path_in("run1");
    assert_int_equal(mr_run_writer_open(&w, path, 3, err, sizeof err), 0);
    assert_int_equal(mr_run_writer_add(&w, 0, "a", 1, "1", 1), 0);
    assert_int_equal(mr_run_writer_add(&w, 0, "b", 1, "", 0), 0);
    /* partition 1 stays empty */
    assert_int_equal(mr_run_writer_add(&w, 2, "zz", 2, "22", 2), 0);
    /* Not yet visible under its name. */
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(mr_run_writer_finish(&w, err, sizeof err), 0);
    assert_int_equal(access(path, F_OK), 0);

    struct mr_segment *segs;
    assert_int_equal(mr_run_read_index(path, 3, &segs, err, sizeof err), 0);
    assert_int_equal(segs[0].n_records, 2);
    assert_int_equal(segs[1].length, 0);
    assert_int_equal(segs[2].offset, segs[0].length);
    struct mr_seg_reader r;
    assert_int_equal(
        mr_seg_reader_open(&r, path, -1, &segs[2], err, sizeof err), 0);
    assert_int_equal(mr_seg_reader_next(&r, err, sizeof err), 1);
    assert_memory_equal(r.key, "zz", 2);
    assert_memory_equal(r.value, "22", 2);
    assert_int_equal(mr_seg_reader_next(&r, err, sizeof err), 0);
    mr_seg_reader_close(&r);
    /* Wrong partition count is caught by the footer. */
    struct mr_segment *bad;
    assert_int_equal(mr_run_read_index(path, 4, &bad, err, sizeof err),
                     CRAFT_ECORRUPT);

    /* Flip one value byte: the segment crc catches it at the end. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, (long)(segs[2].offset + 8 + 2), SEEK_SET);
    fputc('X', f);
    fclose(f);
    assert_int_equal(
        mr_seg_reader_open(&r, path, -1, &segs[2], err, sizeof err), 0);
    assert_int_equal(mr_seg_reader_next(&r, err, sizeof err), 1);
    assert_int_equal(mr_seg_reader_next(&r, err, sizeof err), CRAFT_ECORRUPT);
    mr_seg_reader_close(&r);
    free(segs);

    /* A truncated file has no valid footer. */
    assert_int_equal(truncate(path, 10), 0);
    assert_int_equal(mr_run_read_index(path, 3, &bad, err, sizeof err),
                     CRAFT_ECORRUPT);
}

/* ---- merge -------------------------------------------------------------- */

static void write_run(const char *path, const char *const *keys, size_t n)
{
    char err[256];
    struct mr_run_writer w;
    assert_int_equal(mr_run_writer_open(&w, path, 1, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "%s@%zu", path + strlen(path) - 1, i);
        assert_int_equal(
            mr_run_writer_add(&w, 0, keys[i], strlen(keys[i]), v, (uint32_t)vl),
            0);
    }
    assert_int_equal(mr_run_writer_finish(&w, err, sizeof err), 0);
}

static void merge_groups_values_and_skips(void **state)
{
    (void)state;
    static const char *a[] = {"apple", "cherry", "cherry", "kiwi"};
    static const char *b[] = {"", "apple", "banana", "cherry"};
    static const char *c[] = {"apple", "apples"};
    write_run(path_in("mA"), a, 4);
    write_run(path_in("mB"), b, 4);
    write_run(path_in("mC"), c, 2);
    const char *paths[3] = {path_in("mA"), path_in("mB"), path_in("mC")};
    char err[256];
    struct mr_seg_reader *rd = calloc(3, sizeof *rd);
    struct mr_segment *segs[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            mr_run_read_index(paths[i], 1, &segs[i], err, sizeof err), 0);
        assert_int_equal(
            mr_seg_reader_open(&rd[i], paths[i], -1, segs[i], err, sizeof err),
            0);
    }
    struct mr_merge m;
    assert_int_equal(mr_merge_init(&m, rd, 3, err, sizeof err), 0);
    static const char *want_keys[] = {"",       "apple",  "apples",
                                      "banana", "cherry", "kiwi"};
    static const int want_counts[] = {1, 3, 1, 1, 3, 1};
    const void *k, *v;
    size_t kl, vl;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(mr_merge_next_key(&m, &k, &kl), 1);
        assert_int_equal(kl, strlen(want_keys[i]));
        assert_memory_equal(k, want_keys[i], kl);
        if (i == 4) {
            /* Read one value of "cherry" only: next_key skips the rest. */
            assert_int_equal(mr_merge_next_value(&m, &v, &vl), 1);
            continue;
        }
        int n = 0;
        while (mr_merge_next_value(&m, &v, &vl) == 1) {
            n++;
        }
        assert_int_equal(n, want_counts[i]);
        if (i == 1) {
            /* Stable order: run A's value before B's before C's. */
        }
    }
    assert_int_equal(mr_merge_next_key(&m, &k, &kl), 0);
    mr_merge_close(&m);
    for (int i = 0; i < 3; i++) {
        free(segs[i]);
    }
}

/* ---- a plugin defined in the test ---------------------------------------- */

static int sum_map(void *state, const char *filename, const void *contents,
                   size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    /* contents: lines "key" -> emit (key, "1") */
    const char *s = contents;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : len - i;
        int rv = out->emit(out->host, s + i, n, "1", 1);
        if (rv != 0) {
            return rv;
        }
        i += n + 1;
    }
    return 0;
}

static int sum_reduce(void *state, const void *key, size_t key_len,
                      struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    const void *v;
    size_t n;
    unsigned long long sum = 0;
    int rv;
    while ((rv = values->next(values->host, &v, &n)) == 1) {
        char tmp[32];
        memcpy(tmp, v, n);
        tmp[n] = '\0';
        sum += strtoull(tmp, NULL, 10);
    }
    if (rv < 0) {
        return rv;
    }
    char num[32];
    int k = snprintf(num, sizeof num, "%llu", sum);
    return out->emit(out->host, key, key_len, num, (size_t)k);
}

static int bad_combine(void *state, const void *key, size_t key_len,
                       struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    (void)key;
    (void)key_len;
    (void)values;
    return out->emit(out->host, "other", 5, "1", 1);
}

static const struct mr_plugin_v1 sum_v1 = {
    MR_ABI_VERSION, sizeof(struct mr_plugin_v1),
    "sum",          NULL,
    NULL,           sum_map,
    sum_reduce,     NULL};
static const struct mr_plugin_v1 sum_comb_v1 = {
    MR_ABI_VERSION, sizeof(struct mr_plugin_v1),
    "sumc",         NULL,
    NULL,           sum_map,
    sum_reduce,     sum_reduce};
static const struct mr_plugin_v1 bad_comb_v1 = {
    MR_ABI_VERSION, sizeof(struct mr_plugin_v1),
    "badc",         NULL,
    NULL,           sum_map,
    sum_reduce,     bad_combine};

/* Random keys; map (with spills when sort_bytes is small) -> reduce, and
 * compare every output line with a count kept here. */
static void check_map_reduce(const struct mr_plugin_v1 *v1, size_t sort_bytes,
                             uint32_t n_part, uint64_t seed, int expect_spills)
{
    struct rng r;
    rng_init(&r, seed);
    enum { NKEYS = 5000, NREC = 60000 };
    static unsigned counts[NKEYS];
    memset(counts, 0, sizeof counts);
    size_t cap = NREC * 16, len = 0;
    char *input = malloc(cap);
    for (int i = 0; i < NREC; i++) {
        unsigned k = (unsigned)rng_range(&r, 0, NKEYS);
        counts[k]++;
        len += (size_t)sprintf(input + len, "key%u\n", k);
    }
    struct mr_plugin p = {.v1 = v1};
    snprintf(p.name, sizeof p.name, "%s", v1->name);
    char err[256];
    struct mr_map_stats st;
    const char *out = path_in("map.out");
    assert_int_equal(mr_map_run(&p, "map 0", "in", input, len, n_part,
                                sort_bytes, out, &st, err, sizeof err),
                     0);
    assert_int_equal(st.records, NREC);
    if (expect_spills) {
        assert_true(st.spills > 1);
    } else {
        assert_int_equal(st.spills, 0);
    }
    unsigned seen = 0;
    for (uint32_t part = 0; part < n_part; part++) {
        struct mr_output o;
        const char *res = path_in("result");
        assert_int_equal(mr_output_open(&o, res, err, sizeof err), 0);
        const char *paths[1] = {out};
        assert_int_equal(mr_reduce_run(&p, "reduce", paths, 1, n_part, part,
                                       tmpdir, &o, err, sizeof err),
                         0);
        assert_int_equal(mr_output_commit(&o, err, sizeof err), 0);
        FILE *f = fopen(res, "r");
        char line[128], prev[128] = "";
        unsigned k, c;
        while (fgets(line, sizeof line, f)) {
            assert_int_equal(sscanf(line, "key%u %u", &k, &c), 2);
            assert_true(k < NKEYS);
            assert_int_equal(c, counts[k]);
            assert_int_equal(mr_partition(line, strcspn(line, " "), n_part),
                             part);
            assert_true(strcmp(prev, line) < 0); /* sorted, distinct */
            snprintf(prev, sizeof prev, "%s", line);
            seen++;
        }
        fclose(f);
    }
    unsigned distinct = 0;
    for (int i = 0; i < NKEYS; i++) {
        distinct += counts[i] > 0;
    }
    assert_int_equal(seen, distinct);
    free(input);
}

static void map_in_memory(void **state)
{
    (void)state;
    check_map_reduce(&sum_v1, 64u << 20, 4, test_seed(), 0);
}

static void map_spills_and_merges(void **state)
{
    (void)state;
    uint64_t seed = test_seed();
    check_map_reduce(&sum_v1, MR_SORT_BYTES_MIN, 4, seed, 1);
    check_map_reduce(&sum_comb_v1, MR_SORT_BYTES_MIN, 3, seed + 1, 1);
}

static void combiner_must_keep_its_key(void **state)
{
    (void)state;
    struct mr_plugin p = {.v1 = &bad_comb_v1, .name = "badc"};
    char err[256] = "";
    const char in[] = "a\nb\n";
    int rv = mr_map_run(&p, "map 7", "in", in, sizeof in - 1, 2, 1 << 20,
                        path_in("bc.out"), NULL, err, sizeof err);
    assert_int_equal(rv, CRAFT_EPLUGIN);
    assert_non_null(strstr(err, "badc"));
    assert_non_null(strstr(err, "map 7"));
    assert_int_not_equal(access(path_in("bc.out"), F_OK), 0);
}

static void reduce_over_many_runs(void **state)
{
    (void)state;
    /* More runs than one merge pass takes: an intermediate pass is needed.
     * Run i holds keys k0..k9, each with value "1". */
    enum { NRUNS = MR_MERGE_FANIN + 7 };
    char err[256];
    char *paths[NRUNS];
    for (int i = 0; i < NRUNS; i++) {
        char name[32];
        snprintf(name, sizeof name, "many%d", i);
        paths[i] = strdup(path_in(name));
        struct mr_run_writer w;
        assert_int_equal(mr_run_writer_open(&w, paths[i], 1, err, sizeof err),
                         0);
        for (int k = 0; k < 10; k++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", k);
            assert_int_equal(mr_run_writer_add(&w, 0, key, 2, "1", 1), 0);
        }
        assert_int_equal(mr_run_writer_finish(&w, err, sizeof err), 0);
    }
    struct mr_plugin p = {.v1 = &sum_v1, .name = "sum"};
    struct mr_output o;
    const char *res = path_in("many.result");
    assert_int_equal(mr_output_open(&o, res, err, sizeof err), 0);
    assert_int_equal(mr_reduce_run(&p, "reduce 0", (const char *const *)paths,
                                   NRUNS, 1, 0, tmpdir, &o, err, sizeof err),
                     0);
    assert_int_equal(mr_output_commit(&o, err, sizeof err), 0);
    FILE *f = fopen(res, "r");
    char line[64];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char want[64];
        snprintf(want, sizeof want, "k%d %d\n", n, NRUNS);
        assert_string_equal(line, want);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 10);
    for (int i = 0; i < NRUNS; i++) {
        free(paths[i]);
    }
}

/* ---- output ------------------------------------------------------------- */

static void output_is_atomic(void **state)
{
    (void)state;
    char err[256];
    const char *final = path_in("mr-out-3");
    struct mr_output o;
    assert_int_equal(mr_output_open(&o, final, err, sizeof err), 0);
    assert_int_equal(mr_output_line(&o, "k", 1, "v", 1), 0);
    assert_int_not_equal(access(final, F_OK), 0);
    mr_output_abort(&o);
    assert_int_not_equal(access(final, F_OK), 0);
    assert_int_equal(mr_output_open(&o, final, err, sizeof err), 0);
    assert_int_equal(mr_output_line(&o, "k", 1, "v", 1), 0);
    assert_int_equal(mr_output_commit(&o, err, sizeof err), 0);
    FILE *f = fopen(final, "r");
    char line[16];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "k v\n");
    fclose(f);
    /* No temporary left behind. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep '^\\.mr-out')\"",
             tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---- splits ------------------------------------------------------------- */

static void splits_end_at_newlines(void **state)
{
    (void)state;
    const char *path = path_in("input.txt");
    FILE *f = fopen(path, "w");
    size_t total = 0;
    for (int i = 0; i < 1000; i++) {
        total += (size_t)fprintf(
            f, "line %d %.*s\n", i, i % 50,
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    }
    fclose(f);
    struct mr_split *s = NULL;
    uint32_t n = 0;
    char err[256];
    assert_int_equal(mr_split_file(path, 5, 1000, &s, &n, err, sizeof err), 0);
    assert_true(n > 10);
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(s[i].file, 5);
        assert_int_equal(s[i].offset, off);
        void *data;
        assert_int_equal(mr_split_read(path, &s[i], &data, err, sizeof err), 0);
        assert_int_equal(((char *)data)[s[i].length - 1], '\n');
        assert_true(s[i].length <= 1000);
        assert_true(s[i].length > 900 || i == n - 1); /* lines < 100 B */
        free(data);
        off += s[i].length;
    }
    assert_int_equal(off, total);
    free(s);
    /* A line longer than a split makes one longer split, cut at its end. */
    const char *longp = path_in("long.txt");
    f = fopen(longp, "w");
    fprintf(f, "short\n");
    for (int i = 0; i < 3000; i++) {
        fputc('x', f);
    }
    fprintf(f, "\nshort again\n");
    fclose(f);
    s = NULL;
    n = 0;
    assert_int_equal(mr_split_file(longp, 0, 1000, &s, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(s[0].length, 6);
    assert_int_equal(s[1].length, 3001);
    assert_int_equal(s[2].length, 12);
    free(s);
    /* A missing input is an error with its name, not a crash. */
    s = NULL;
    n = 0;
    assert_int_equal(
        mr_split_file(path_in("nope"), 0, 1000, &s, &n, err, sizeof err),
        CRAFT_EIO);
    assert_non_null(strstr(err, "nope"));
    free(s);
}

/* ---- the coordinator state machine ------------------------------------- */

static void sched_new(struct mr_sched *s, uint32_t maps, uint32_t reduces)
{
    struct mr_sched_config cfg = {maps, reduces, 10000, 3000, 3, 10};
    assert_int_equal(mr_sched_init(s, &cfg), 0);
}

static void sched_happy_path(void **state)
{
    (void)state;
    struct mr_sched s;
    sched_new(&s, 2, 2);
    uint32_t w1 = mr_sched_add_worker(&s, "a:1", 0);
    uint32_t w2 = mr_sched_add_worker(&s, "b:1", 0);
    struct mr_assignment a1 = mr_sched_request(&s, w1, 0);
    struct mr_assignment a2 = mr_sched_request(&s, w2, 0);
    assert_int_equal(a1.reply, MR_REPLY_TASK);
    assert_int_equal(a1.kind, MR_MAP);
    assert_int_equal(a2.task, 1);
    assert_int_not_equal(a1.attempt, a2.attempt);
    /* No reduce while a map runs: WAIT, not EXIT. */
    uint32_t w3 = mr_sched_add_worker(&s, "c:1", 0);
    assert_int_equal(mr_sched_request(&s, w3, 1).reply, MR_REPLY_WAIT);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, 0, w1, a1.attempt), 1);
    assert_int_equal(mr_sched_request(&s, w1, 2).reply, MR_REPLY_WAIT);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, 1, w2, a2.attempt), 1);
    /* A duplicate completion changes nothing. */
    assert_int_equal(mr_sched_complete(&s, MR_MAP, 1, w2, a2.attempt), 0);
    assert_int_equal(s.maps_done, 2);
    struct mr_assignment r0 = mr_sched_request(&s, w1, 3);
    struct mr_assignment r1 = mr_sched_request(&s, w3, 3);
    assert_int_equal(r0.kind, MR_REDUCE);
    assert_int_equal(r1.task, 1);
    assert_int_equal(mr_sched_complete(&s, MR_REDUCE, 0, w1, r0.attempt), 1);
    assert_false(mr_sched_done(&s));
    assert_int_equal(mr_sched_request(&s, w2, 4).reply, MR_REPLY_WAIT);
    assert_int_equal(mr_sched_complete(&s, MR_REDUCE, 1, w3, r1.attempt), 1);
    assert_true(mr_sched_done(&s));
    assert_int_equal(mr_sched_request(&s, w2, 5).reply, MR_REPLY_EXIT);
    assert_true(mr_sched_check(&s));
    mr_sched_close(&s);
}

static void sched_timeout_reissues_and_late_completion(void **state)
{
    (void)state;
    struct mr_sched s;
    sched_new(&s, 1, 1);
    uint32_t w1 = mr_sched_add_worker(&s, "a:1", 0);
    uint32_t w2 = mr_sched_add_worker(&s, "b:1", 0);
    struct mr_assignment a = mr_sched_request(&s, w1, 0);
    /* Not before the timeout (the job-count test counts executions). */
    mr_sched_touch(&s, w1, 9999);
    mr_sched_touch(&s, w2, 9999);
    assert_int_equal(mr_sched_tick(&s, 9999), 0);
    assert_int_equal(mr_sched_request(&s, w2, 9999).reply, MR_REPLY_WAIT);
    mr_sched_touch(&s, w1, 10000);
    assert_int_equal(mr_sched_tick(&s, 10000), 1);
    struct mr_assignment b = mr_sched_request(&s, w2, 10000);
    assert_int_equal(b.reply, MR_REPLY_TASK);
    assert_int_equal(b.task, 0);
    /* The first attempt finishes late: accepted; the second is ignored. */
    assert_int_equal(mr_sched_complete(&s, MR_MAP, 0, w1, a.attempt), 1);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, 0, w2, b.attempt), 0);
    assert_int_equal(s.maps[0].worker, w1);
    mr_sched_close(&s);
}

static void sched_lost_worker_reruns_its_maps(void **state)
{
    (void)state;
    struct mr_sched s;
    sched_new(&s, 2, 1);
    uint32_t w1 = mr_sched_add_worker(&s, "a:1", 0);
    uint32_t w2 = mr_sched_add_worker(&s, "b:1", 0);
    struct mr_assignment m0 = mr_sched_request(&s, w1, 0);
    struct mr_assignment m1 = mr_sched_request(&s, w2, 0);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, m0.task, w1, m0.attempt), 1);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, m1.task, w2, m1.attempt), 1);
    struct mr_assignment r = mr_sched_request(&s, w2, 1);
    assert_int_equal(r.kind, MR_REDUCE);
    /* The reducer cannot fetch map 0 from w1: w1 is lost, map 0 runs again
     * and the reduce waits for it without counting a failure. */
    mr_sched_fetch_failed(&s, 0, w2, r.attempt, m0.task, w1);
    assert_null(mr_sched_worker(&s, w1));
    assert_int_equal(s.maps_done, 1);
    assert_int_equal(s.reduces[0].failures, 0);
    struct mr_assignment again = mr_sched_request(&s, w2, 2);
    assert_int_equal(again.kind, MR_MAP);
    assert_int_equal(again.task, m0.task);
    /* A completion from the lost worker is a duplicate now. */
    assert_int_equal(mr_sched_complete(&s, MR_MAP, m0.task, w1, m0.attempt), 0);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, m0.task, w2, again.attempt),
                     1);
    r = mr_sched_request(&s, w2, 3);
    assert_int_equal(r.kind, MR_REDUCE);
    assert_int_equal(mr_sched_complete(&s, MR_REDUCE, 0, w2, r.attempt), 1);
    /* Once every reduce is done, losing a map holder changes nothing. */
    mr_sched_worker_lost(&s, w2);
    assert_true(mr_sched_done(&s));
    assert_true(mr_sched_check(&s));
    mr_sched_close(&s);
}

static void sched_loss_limit_counts_losses_in_a_row(void **state)
{
    (void)state;
    struct mr_sched s;
    struct mr_sched_config cfg = {1, 1, 10000, 3000, 3, 3};
    assert_int_equal(mr_sched_init(&s, &cfg), 0);
    /* The map's holder dies after each completion, many times over: the
     * map runs again each time but the job does not fail. */
    for (int round = 0; round < 10; round++) {
        uint32_t w = mr_sched_add_worker(&s, "a:1", 0);
        uint32_t x = mr_sched_add_worker(&s, "b:1", 0);
        struct mr_assignment a = mr_sched_request(&s, w, 0);
        assert_int_equal(a.kind, MR_MAP);
        mr_sched_worker_lost(&s, w); /* dies running it: one loss */
        a = mr_sched_request(&s, x, 0);
        assert_int_equal(mr_sched_complete(&s, MR_MAP, 0, x, a.attempt), 1);
        mr_sched_worker_lost(&s, x); /* dies holding it: runs again */
        assert_int_equal(s.maps_done, 0);
        assert_false(s.failed);
    }
    /* But max_losses in a row fail the job. */
    for (int i = 0; i < 3; i++) {
        uint32_t w = mr_sched_add_worker(&s, "c:1", 0);
        mr_sched_request(&s, w, 0);
        mr_sched_worker_lost(&s, w);
    }
    assert_true(s.failed);
    assert_non_null(strstr(s.errmsg, "lost its worker 3 times"));
    mr_sched_close(&s);
}

static void sched_silent_worker_is_lost(void **state)
{
    (void)state;
    struct mr_sched s;
    sched_new(&s, 1, 1);
    uint32_t w1 = mr_sched_add_worker(&s, "a:1", 0);
    uint32_t w2 = mr_sched_add_worker(&s, "b:1", 0);
    mr_sched_request(&s, w1, 0);
    mr_sched_touch(&s, w2, 2999);
    assert_int_equal(mr_sched_tick(&s, 2999), 0);
    mr_sched_touch(&s, w2, 3000);
    assert_int_equal(mr_sched_tick(&s, 3000), 1);
    assert_null(mr_sched_worker(&s, w1));
    assert_int_equal(s.maps[0].state, MR_IDLE);
    assert_int_equal(s.maps[0].losses, 1);
    assert_int_equal(mr_sched_request(&s, w2, 3000).reply, MR_REPLY_TASK);
    mr_sched_close(&s);
}

static void sched_failures_fail_the_job(void **state)
{
    (void)state;
    struct mr_sched s;
    sched_new(&s, 1, 1);
    for (int i = 0; i < 3; i++) {
        uint32_t w = mr_sched_add_worker(&s, "a:1", (uint64_t)i);
        struct mr_assignment a = mr_sched_request(&s, w, (uint64_t)i);
        assert_int_equal(a.reply, MR_REPLY_TASK);
        /* A failure report for an old attempt is ignored. */
        mr_sched_fail(&s, MR_MAP, 0, w, a.attempt + 100, "stale");
        mr_sched_fail(&s, MR_MAP, 0, w, a.attempt,
                      "plugin segv.so, map 0: crashed");
    }
    assert_true(s.failed);
    assert_non_null(strstr(s.errmsg, "map task 0 failed 3 times"));
    assert_non_null(strstr(s.errmsg, "segv.so"));
    uint32_t w = mr_sched_add_worker(&s, "z:1", 9);
    assert_int_equal(mr_sched_request(&s, w, 9).reply, MR_REPLY_EXIT);
    mr_sched_close(&s);
}

static void sched_reduce_completes_after_its_worker_is_lost(void **state)
{
    (void)state;
    struct mr_sched s;
    sched_new(&s, 1, 1);
    uint32_t w1 = mr_sched_add_worker(&s, "a:1", 0);
    struct mr_assignment m = mr_sched_request(&s, w1, 0);
    assert_int_equal(mr_sched_complete(&s, MR_MAP, 0, w1, m.attempt), 1);
    struct mr_assignment r = mr_sched_request(&s, w1, 1);
    assert_int_equal(r.kind, MR_REDUCE);
    /* The coordinator committed the reduce's output; meanwhile the worker
     * was declared lost (so map 0 is to run again).  The reduce still
     * counts: its output is final. */
    mr_sched_worker_lost(&s, w1);
    assert_int_equal(mr_sched_complete(&s, MR_REDUCE, 0, w1, r.attempt), 1);
    assert_true(mr_sched_done(&s));
    /* A map from a lost worker never counts. */
    struct mr_sched s2;
    sched_new(&s2, 1, 1);
    uint32_t w = mr_sched_add_worker(&s2, "a:1", 0);
    struct mr_assignment m2 = mr_sched_request(&s2, w, 0);
    mr_sched_worker_lost(&s2, w);
    assert_int_equal(mr_sched_complete(&s2, MR_MAP, 0, w, m2.attempt), 0);
    mr_sched_close(&s);
    mr_sched_close(&s2);
}

/* ---- wire decoding never trusts its input ---------------------------------
 */

static void wire_roundtrip_and_malformed(void **state)
{
    (void)state;
    struct mr_wbuf w;
    mr_w_init(&w);
    mr_w_u8(&w, 7);
    mr_w_u16(&w, 65000);
    mr_w_u32(&w, 123456789);
    mr_w_u64(&w, 1ull << 40);
    mr_w_str(&w, "pg-grimm.txt");
    mr_w_bytes(&w, "tail", 4);
    assert_false(w.oom);
    struct mr_rbuf r;
    char str[64];
    mr_r_init(&r, w.b.data, w.b.len);
    assert_int_equal(mr_r_u8(&r), 7);
    assert_int_equal(mr_r_u16(&r), 65000);
    assert_int_equal(mr_r_u32(&r), 123456789);
    assert_true(mr_r_u64(&r) == 1ull << 40);
    mr_r_str(&r, str, sizeof str);
    assert_string_equal(str, "pg-grimm.txt");
    size_t n;
    const uint8_t *rest = mr_r_rest(&r, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(rest, "tail", 4);
    assert_true(mr_r_ok(&r));
    /* Every truncation of the payload is caught, never read past. */
    for (size_t len = 0; len < 1 + 2 + 4 + 8 + 4 + 12; len++) {
        mr_r_init(&r, w.b.data, len);
        (void)mr_r_u8(&r);
        (void)mr_r_u16(&r);
        (void)mr_r_u32(&r);
        (void)mr_r_u64(&r);
        mr_r_str(&r, str, sizeof str);
        assert_true(r.err);
    }
    /* A string longer than the destination, or with a NUL inside. */
    mr_r_init(&r, w.b.data + 15, w.b.len - 15);
    mr_r_str(&r, str, 8);
    assert_true(r.err);
    uint8_t nul[] = {3, 0, 0, 0, 'a', 0, 'b'};
    mr_r_init(&r, nul, sizeof nul);
    mr_r_str(&r, str, sizeof str);
    assert_true(r.err);
    /* A length field claiming 4 GiB. */
    uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 'x'};
    mr_r_init(&r, huge, sizeof huge);
    mr_r_str(&r, str, sizeof str);
    assert_true(r.err);
    /* Trailing bytes make a payload malformed too. */
    mr_r_init(&r, w.b.data, 2);
    (void)mr_r_u8(&r);
    assert_false(mr_r_ok(&r));
    mr_w_close(&w);
}

/* Random schedule of requests, completions, failures, losses and ticks:
 * the invariants hold after every event and the job finishes once workers
 * stop failing. */
static void sched_random_schedules(void **state)
{
    (void)state;
    uint64_t seed = test_seed();
    for (int round = 0; round < 200; round++) {
        struct rng r;
        rng_init(&r, seed + (uint64_t)round);
        struct mr_sched s;
        struct mr_sched_config cfg = {(uint32_t)rng_range(&r, 0, 8),
                                      (uint32_t)rng_range(&r, 1, 5),
                                      100,
                                      50,
                                      1000,
                                      1000};
        assert_int_equal(mr_sched_init(&s, &cfg), 0);
        uint64_t now = 0;
        uint32_t live[64];
        int n_live = 0;
        for (int step = 0; step < 3000 && !mr_sched_done(&s); step++) {
            now += rng_range(&r, 0, 20);
            int calm = step > 1500; /* then no more faults */
            if (n_live == 0 || (n_live < 64 && rng_chance(&r, 50))) {
                live[n_live++] = mr_sched_add_worker(&s, "w", now);
            }
            int i = (int)rng_range(&r, 0, (uint64_t)n_live);
            uint32_t w = live[i];
            if (!mr_sched_worker(&s, w)) {
                live[i] = live[--n_live];
                continue;
            }
            mr_sched_touch(&s, w, now);
            struct mr_assignment a = mr_sched_request(&s, w, now);
            if (a.reply == MR_REPLY_TASK) {
                unsigned dice = (unsigned)rng_range(&r, 0, 100);
                if (calm || dice < 70) {
                    mr_sched_complete(&s, a.kind, a.task, w, a.attempt);
                } else if (dice < 80) {
                    mr_sched_fail(&s, a.kind, a.task, w, a.attempt, "x");
                } else if (dice < 90) {
                    mr_sched_worker_lost(&s, w);
                } else if (a.kind == MR_REDUCE && s.cfg.n_maps > 0) {
                    uint32_t m = (uint32_t)rng_range(&r, 0, s.cfg.n_maps);
                    mr_sched_fetch_failed(&s, a.task, w, a.attempt, m,
                                          s.maps[m].worker);
                }
            }
            mr_sched_tick(&s, now);
            assert_true(mr_sched_check(&s));
        }
        assert_true(mr_sched_done(&s));
        assert_false(s.failed);
        mr_sched_close(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(partition_is_fnv1a_masked),
        cmocka_unit_test(run_roundtrip_and_corruption),
        cmocka_unit_test(merge_groups_values_and_skips),
        cmocka_unit_test(map_in_memory),
        cmocka_unit_test(map_spills_and_merges),
        cmocka_unit_test(combiner_must_keep_its_key),
        cmocka_unit_test(reduce_over_many_runs),
        cmocka_unit_test(output_is_atomic),
        cmocka_unit_test(splits_end_at_newlines),
        cmocka_unit_test(sched_happy_path),
        cmocka_unit_test(sched_timeout_reissues_and_late_completion),
        cmocka_unit_test(sched_lost_worker_reruns_its_maps),
        cmocka_unit_test(sched_loss_limit_counts_losses_in_a_row),
        cmocka_unit_test(sched_silent_worker_is_lost),
        cmocka_unit_test(sched_failures_fail_the_job),
        cmocka_unit_test(sched_reduce_completes_after_its_worker_is_lost),
        cmocka_unit_test(sched_random_schedules),
        cmocka_unit_test(wire_roundtrip_and_malformed),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
