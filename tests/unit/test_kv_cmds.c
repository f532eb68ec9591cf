/* Unit tests for the issue #7 commands of src/kv: active expiry through
 * replicated clock entries, reads evaluated at the leader's time, and the
 * expiry heap of the hash table. */
#include "test_kv_helpers.h"

#include "kv/ht.h"
#include "kv/kvsm_int.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/encoding.h"
#include "util/rng.h"

static int setup(void **state)
{
    return kv_fixture_setup(state, NULL);
}

static int teardown(void **state)
{
    return kv_fixture_teardown(state);
}

struct sink {
    struct buf b;
    size_t off;
};

static int sink_write(void *ctx, const void *p, size_t n)
{
    struct sink *s = ctx;
    return buf_append(&s->b, p, n);
}

static long long sink_read(void *ctx, void *p, size_t n)
{
    struct sink *s = ctx;
    size_t k = s->b.len - s->off < n ? s->b.len - s->off : n;
    memcpy(p, s->b.data + s->off, k);
    s->off += k;
    return (long long)k;
}

/* Apply a clock entry stamped t; returns its reply. */
static const char *clock_at(struct kvsm *sm, uint64_t index, uint64_t t)
{
    static char out[64];
    struct buf e, r;
    buf_init(&e);
    buf_init(&r);
    assert_int_equal(kvsm_clock_encode(t, &e), 0);
    assert_int_equal(kvsm_apply(sm, index, e.data, e.len, &r), 0);
    assert_true(r.len < sizeof out);
    memcpy(out, r.data, r.len);
    out[r.len] = '\0';
    buf_close(&e);
    buf_close(&r);
    return out;
}

static const char *read_at(const struct kvsm *sm, uint64_t at, const char *line)
{
    static char out[256];
    struct words w;
    words_split(&w, line);
    struct buf r;
    buf_init(&r);
    assert_int_equal(kvsm_read_at(sm, at, w.argc, w.argv, w.lens, &r), 0);
    assert_true(r.len < sizeof out);
    memcpy(out, r.data, r.len);
    out[r.len] = '\0';
    buf_close(&r);
    return out;
}

/* A clock entry deletes exactly the keys that came due, on its own, with
 * no write touching them; the count of keys with a TTL follows. */
static void clock_entry_expires_keys(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 0);
    assert_string_equal(APPLY("SET a 1 PX 100"), "+OK\r\n");
    assert_string_equal(APPLY("SET b 2 PX 300"), "+OK\r\n");
    assert_string_equal(APPLY("SET c 3"), "+OK\r\n");
    assert_int_equal(kvsm_expires_count(f->sm), 2);
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 1100);
    assert_string_equal(clock_at(f->sm, ++idx, 1099), "+OK\r\n");
    assert_string_equal(READ("DBSIZE"), ":3\r\n");
    assert_string_equal(clock_at(f->sm, ++idx, 1100), "+OK\r\n");
    assert_int_equal(kvsm_now_ms(f->sm), 1100);
    assert_string_equal(READ("DBSIZE"), ":2\r\n");
    assert_string_equal(READ("GET a"), "$-1\r\n");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 1300);
    /* A stamp behind the clock (a new leader's clock is late) changes
     * nothing. */
    assert_string_equal(clock_at(f->sm, ++idx, 900), "+OK\r\n");
    assert_int_equal(kvsm_now_ms(f->sm), 1100);
    assert_string_equal(READ("GET b"), "$1\r\n2\r\n");
    assert_string_equal(clock_at(f->sm, ++idx, 5000), "+OK\r\n");
    assert_string_equal(READ("DBSIZE"), ":1\r\n");
    assert_int_equal(kvsm_expires_count(f->sm), 0);
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 0);
    assert_int_equal(kvsm_last_applied(f->sm), idx);
}

/* An apply deletes at most KVSM_EXPIRE_PER_APPLY keys; the rest are
 * invisible and go with the next entries, in the same order on replicas
 * whose hash tables differ and one of which reloads from a snapshot. */
static void expiry_is_bounded_per_entry(void **state)
{
    (void)state;
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *a, *b;
    assert_int_equal(kvsm_new(&c, &a), 0);
    c.hash_seed[0] ^= 0x77;
    assert_int_equal(kvsm_new(&c, &b), 0);
    uint64_t idx = 0;
    size_t total = 2 * KVSM_EXPIRE_PER_APPLY + 500;
    for (size_t i = 0; i < total; i++) {
        char line[64];
        snprintf(line, sizeof line, "SET k%zu v PXAT 2000", i);
        idx++;
        kv_apply(a, idx, 1000, line);
        kv_apply(b, idx, 1000, line);
    }
    assert_string_equal(clock_at(a, ++idx, 3000), "+OK\r\n");
    assert_string_equal(clock_at(b, idx, 3000), "+OK\r\n");
    assert_int_equal(kvsm_key_count(a), total - KVSM_EXPIRE_PER_APPLY);
    assert_string_equal(kv_read(a, "EXISTS k0 k7 k8000", 0), ":0\r\n");
    assert_string_equal(kv_read(a, "KEYS *", 0), "*0\r\n");
    /* b reloads: the leftovers stay, and go in the same order. */
    struct sink s = {.off = 0};
    buf_init(&s.b);
    assert_int_equal(kvsm_snapshot_write(b, sink_write, &s), 0);
    kvsm_free(b);
    c.hash_seed[0] ^= 0x1234;
    assert_int_equal(kvsm_snapshot_load(&c, sink_read, &s, &b), 0);
    buf_close(&s.b);
    assert_int_equal(kvsm_key_count(b), kvsm_key_count(a));
    while (kvsm_key_count(a) > 0) {
        idx++;
        kv_apply(a, idx, 3000, "GET x");
        kv_apply(b, idx, 3000, "GET x");
        assert_int_equal(kvsm_key_count(a), kvsm_key_count(b));
        /* The same keys are left: compare the next one due. */
        assert_int_equal(kvsm_next_expiry_ms(a), kvsm_next_expiry_ms(b));
        struct ht_entry *ea = ht_expire_min(&a->keys);
        struct ht_entry *eb = ht_expire_min(&b->keys);
        assert_true((ea == NULL) == (eb == NULL));
        if (ea != NULL) {
            assert_int_equal(ea->key_len, eb->key_len);
            assert_memory_equal(ea->key, eb->key, ea->key_len);
        }
    }
    assert_true(kvsm_check(a));
    assert_true(kvsm_check(b));
    kvsm_free(a);
    kvsm_free(b);
}

/* Every way of setting, moving or dropping an expiry keeps the count. */
static void expires_count_follows_every_command(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    APPLY("SET k v EX 10");
    APPLY("SET j v");
    APPLY("PEXPIRE j 50");
    assert_int_equal(kvsm_expires_count(f->sm), 2);
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 1050);
    APPLY("PERSIST j");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    APPLY("RENAME k m");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    assert_string_equal(READ("PTTL m"), ":10000\r\n");
    APPLY("SET m w KEEPTTL");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    APPLY("SET m w");
    assert_int_equal(kvsm_expires_count(f->sm), 0);
    APPLY("SET m w PX 5");
    APPLY("SET j w PXAT 2000");
    APPLY("RENAME j m"); /* overwrites m: one expiry left */
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 2000);
    APPLY("SET a 1 PX 7");
    APPLY("GETDEL a");
    APPLY("SET a 1 PX 7");
    APPLY("DEL a");
    APPLY("SET a 1 PX 7");
    APPLY("GETSET a 2");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    APPLY("EXPIRE m 0"); /* a time in the past deletes */
    assert_int_equal(kvsm_expires_count(f->sm), 0);
    APPLY("SET a 1 PX 7");
    APPLY("SET b 1 EX 7");
    APPLY("FLUSHALL");
    assert_int_equal(kvsm_expires_count(f->sm), 0);
    assert_int_equal(kvsm_next_expiry_ms(f->sm), 0);
    APPLY("SET a 1 PX 7");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
}

/* Reads at the leader's time count TTLs down between clock entries, and
 * the clock command is not for clients. */
static void read_at_leader_time(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    APPLY("SET k v PX 1000");
    assert_string_equal(read_at(f->sm, 0, "PTTL k"), ":1000\r\n");
    assert_string_equal(read_at(f->sm, 1400, "PTTL k"), ":600\r\n");
    assert_string_equal(read_at(f->sm, 1400, "TTL k"), ":1\r\n");
    assert_string_equal(read_at(f->sm, 1999, "GET k"), "$1\r\nv\r\n");
    /* An at_ms behind the clock is the clock. */
    assert_string_equal(read_at(f->sm, 10, "PTTL k"), ":1000\r\n");
    /* At the expiry time the key is invisible (the caller must not ask
     * before a clock entry makes it so for everyone, see kvsm.h). */
    assert_string_equal(read_at(f->sm, 2000, "GET k"), "$-1\r\n");
    assert_string_equal(read_at(f->sm, 2000, "KEYS *"), "*0\r\n");
    assert_string_equal(read_at(f->sm, 2000, "PTTL k"), ":-2\r\n");
    struct kvsm_route r;
    struct buf err;
    buf_init(&err);
    const uint8_t *argv[] = {(const uint8_t *)"CRAFT.CLOCK"};
    size_t lens[] = {11};
    assert_int_equal(kvsm_classify(1, argv, lens, &r, &err), 0);
    assert_int_equal(r.cls, KVSM_REJECT);
    assert_true(err.len > 0);
    assert_memory_equal(err.data, "-ERR unknown command 'CRAFT.CLOCK'", 34);
    buf_close(&err);
    assert_string_equal(kv_read(f->sm, "craft.clock", 0),
                        "-ERR unknown command 'craft.clock', with args "
                        "beginning with: \r\n");
}

/* Two replicas, one of which reloads from a snapshot midway, delete the
 * same keys at the same entries. */
static void replicas_expire_alike(void **state)
{
    (void)state;
    struct rng rng;
    rng_init(&rng, test_seed("replicas_expire_alike", 7));
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *a, *b;
    assert_int_equal(kvsm_new(&c, &a), 0);
    c.hash_seed[0] ^= 0x5555; /* another layout, as another node has */
    assert_int_equal(kvsm_new(&c, &b), 0);
    uint64_t now = 1000;
    for (uint64_t idx = 1; idx <= 3000; idx++) {
        char line[64];
        unsigned k = (unsigned)rng_next(&rng) % 200;
        switch (rng_next(&rng) % 4) {
        case 0:
            snprintf(line, sizeof line, "SET k%u v PX %u", k,
                     1 + (unsigned)(rng_next(&rng) % 50));
            break;
        case 1:
            snprintf(line, sizeof line, "PEXPIRE k%u %u", k,
                     (unsigned)(rng_next(&rng) % 40));
            break;
        case 2:
            snprintf(line, sizeof line, "PERSIST k%u", k);
            break;
        default:
            snprintf(line, sizeof line, "SET k%u w", k);
            break;
        }
        now += rng_next(&rng) % 3;
        /* kv_apply()'s buffer is static: keep a's reply apart. */
        char *ra = strdup(kv_apply(a, idx, now, line));
        assert_non_null(ra);
        assert_string_equal(ra, kv_apply(b, idx, now, line));
        free(ra);
        assert_int_equal(kvsm_key_count(a), kvsm_key_count(b));
        assert_int_equal(kvsm_expires_count(a), kvsm_expires_count(b));
        assert_int_equal(kvsm_next_expiry_ms(a), kvsm_next_expiry_ms(b));
        if (idx % 1000 == 0) {
            /* b restarts from a snapshot of itself. */
            struct sink s = {.off = 0};
            buf_init(&s.b);
            assert_int_equal(kvsm_snapshot_write(b, sink_write, &s), 0);
            struct kvsm *fresh;
            assert_int_equal(kvsm_snapshot_load(&c, sink_read, &s, &fresh), 0);
            buf_close(&s.b);
            kvsm_free(b);
            b = fresh;
            assert_true(kvsm_check(b));
        }
    }
    assert_true(kvsm_check(a));
    assert_true(kvsm_check(b));
    kvsm_free(a);
    kvsm_free(b);
}

/* The heap of the hash table against a brute-force minimum. */
static void ht_expiry_heap_matches_reference(void **state)
{
    (void)state;
    struct rng rng;
    rng_init(&rng, test_seed("ht_expiry_heap_matches_reference", 11));
    struct ht h;
    assert_int_equal(ht_init(&h, NULL, 1, 2), 0);
    for (int step = 0; step < 20000; step++) {
        char key[16];
        int n =
            snprintf(key, sizeof key, "k%u", (unsigned)(rng_next(&rng) % 300));
        unsigned op = (unsigned)(rng_next(&rng) % 10);
        if (op < 5) {
            struct ht_entry *e;
            int created;
            assert_int_equal(ht_upsert(&h, key, (size_t)n, &e, &created), 0);
            int64_t ms = (int64_t)(rng_next(&rng) % 1000);
            assert_int_equal(ht_set_expire(&h, e, ms), 0);
        } else if (op < 9) {
            ht_delete(&h, key, (size_t)n);
        } else if (rng_next(&rng) % 50 == 0) {
            assert_int_equal(ht_clear(&h), 0);
        }
        int64_t min = 0;
        size_t with = 0;
        struct ht_iter it;
        ht_iter_init(&it, &h);
        for (const struct ht_entry *e; (e = ht_iter_next(&it)) != NULL;) {
            if (e->expire_ms != 0) {
                with++;
                min = min == 0 || e->expire_ms < min ? e->expire_ms : min;
            }
        }
        assert_int_equal(ht_expires(&h), with);
        const struct ht_entry *m = ht_expire_min(&h);
        assert_int_equal(m ? m->expire_ms : 0, min);
        if (step % 500 == 0) {
            assert_true(ht_check(&h));
        }
    }
    assert_true(ht_check(&h));
    ht_close(&h);
}

/* SET with EXAT/PXAT in the past writes and deletes the key at once, so no
 * due key stays in the state and a snapshot taken right then loads. */
static void set_past_time_deletes(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 5000;
    assert_string_equal(APPLY("SET k v PXAT 10"), "+OK\r\n");
    assert_true(kvsm_check(f->sm));
    assert_string_equal(READ("DBSIZE"), ":0\r\n");
    assert_string_equal(APPLY("SET k v"), "+OK\r\n");
    assert_string_equal(APPLY("SET k w EXAT 1 GET"), "$1\r\nv\r\n");
    assert_string_equal(READ("EXISTS k"), ":0\r\n");
    assert_string_equal(APPLY("SET k w PXAT 5000"), "+OK\r\n"); /* = now */
    assert_string_equal(APPLY("SET k w PXAT 5001 NX"), "+OK\r\n");
    assert_string_equal(READ("PTTL k"), ":1\r\n");
    assert_int_equal(kvsm_expires_count(f->sm), 1);
    assert_true(kvsm_check(f->sm));
    struct sink s = {.off = 0};
    buf_init(&s.b);
    assert_int_equal(kvsm_snapshot_write(f->sm, sink_write, &s), 0);
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *copy;
    assert_int_equal(kvsm_snapshot_load(&c, sink_read, &s, &copy), 0);
    kvsm_free(copy);
    buf_close(&s.b);
}

/* Rewrite the header (and so the footer) CRCs of a snapshot in s after
 * patching its header fields. */
static void reseal(struct buf *b)
{
    put_u32(b->data + 48, crc32c(0, b->data, 48));
    put_u32(b->data + b->len - 4, crc32c(0, b->data, b->len - 4));
}

/* Format 1 is refused; a snapshot holding a due key (as a build before
 * this check could write) loads with the key dropped. */
static void snapshot_versions_and_due_keys(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    APPLY("SET k v PX 100");
    APPLY("SET j v");
    struct sink s = {.off = 0};
    buf_init(&s.b);
    assert_int_equal(kvsm_snapshot_write(f->sm, sink_write, &s), 0);
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *copy = NULL;
    put_u32(s.b.data + 8, 1);
    reseal(&s.b);
    assert_int_equal(kvsm_snapshot_load(&c, sink_read, &s, &copy),
                     CRAFT_EVERSION);
    assert_null(copy);
    put_u32(s.b.data + 8, KVSM_SNAPSHOT_VERSION);
    put_u64(s.b.data + 24, 5000); /* the clock passed k's time */
    reseal(&s.b);
    s.off = 0;
    assert_int_equal(kvsm_snapshot_load(&c, sink_read, &s, &copy), 0);
    assert_true(kvsm_check(copy));
    /* Kept as the writer had it, invisible, and deleted by the next entry
     * as on every other replica. */
    assert_int_equal(kvsm_key_count(copy), 2);
    assert_string_equal(kv_read(copy, "GET k", 0), "$-1\r\n");
    assert_string_equal(kv_read(copy, "GET j", 0), "$1\r\nv\r\n");
    assert_string_equal(clock_at(copy, idx + 1, 5000), "+OK\r\n");
    assert_int_equal(kvsm_key_count(copy), 1);
    assert_int_equal(kvsm_expires_count(copy), 0);
    kvsm_free(copy);
    buf_close(&s.b);
}

/* ---- WATCH ---- */

static uint64_t version_of(const struct kvsm *sm, const char *key)
{
    char line[64];
    snprintf(line, sizeof line, "WATCH %s", key);
    const char *r = kv_read(sm, line, 0);
    assert_memory_equal(r, "*1\r\n:", 5);
    return strtoull(r + 5, NULL, 10);
}

/* Apply MULTI <cmds> EXEC (cmds separated by ';') after WATCH of the keys
 * in watch[] at the versions in ver[]. */
static const char *exec_watch(struct kvsm *sm, uint64_t index, uint64_t now,
                              size_t n_watch, const char *const *keys,
                              const uint64_t *ver, const char *cmds)
{
    static char out[1024];
    struct words w[8];
    struct kvsm_argv argv[8];
    char copy[256];
    snprintf(copy, sizeof copy, "%s", cmds);
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ";", &save); t && n < 8;
         t = strtok_r(NULL, ";", &save)) {
        words_split(&w[n], t);
        argv[n] = (struct kvsm_argv){w[n].argc, w[n].argv, w[n].lens};
        n++;
    }
    struct kvsm_watch wk[8];
    for (size_t i = 0; i < n_watch; i++) {
        wk[i] = (struct kvsm_watch){(const uint8_t *)keys[i], strlen(keys[i]),
                                    ver[i]};
    }
    struct buf e, r;
    buf_init(&e);
    buf_init(&r);
    assert_int_equal(
        kvsm_multi_encode_watch(now, NULL, n, argv, n_watch, wk, &e), 0);
    struct kvsm_cmd c;
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), 0);
    assert_int_equal(c.n_watch, n_watch);
    assert_int_equal(kvsm_apply(sm, index, e.data, e.len, &r), 0);
    assert_true(r.len < sizeof out);
    memcpy(out, r.data, r.len);
    out[r.len] = '\0';
    buf_close(&e);
    buf_close(&r);
    return out;
}

#define EXEC1(key, ver, cmds)                                                  \
    exec_watch(f->sm, ++idx, now, 1, (const char *[]){key},                    \
               (const uint64_t[]){ver}, (cmds))

/* Every kind of change to a watched key aborts EXEC, which then changes
 * nothing; no change lets it run. */
static void watch_aborts_on_any_change(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    assert_int_equal(version_of(f->sm, "k"), 0);
    APPLY("SET k 1");
    uint64_t v = version_of(f->sm, "k");
    assert_int_equal(v, idx);
    APPLY("SET other 1"); /* another key: no effect */
    assert_int_equal(version_of(f->sm, "k"), v);
    assert_string_equal(EXEC1("k", v, "INCR k;GET k"),
                        "*2\r\n:2\r\n$1\r\n2\r\n");
    /* The transaction changed k itself: a second EXEC with the old
     * version aborts, and changes nothing. */
    assert_string_equal(EXEC1("k", v, "SET k boom;SET z 1"), "*-1\r\n");
    assert_string_equal(READ("GET k"), "$1\r\n2\r\n");
    assert_string_equal(READ("EXISTS z"), ":0\r\n");
    static const char *const changes[] = {
        "SET k 2",      "APPEND k x",  "INCRBY k 0",      "SETRANGE k 0 a",
        "EXPIRE k 100", "PERSIST k",   "DEL k",           "FLUSHDB",
        "GETDEL k",     "RENAME k k2", "SET k 2 KEEPTTL", "INCRBYFLOAT k 0",
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        APPLY("SET k 2 EX 1000");
        APPLY("SET k 2");
        v = version_of(f->sm, "k");
        const char *r = APPLY(changes[i]);
        if (strcmp(changes[i], "PERSIST k") == 0) {
            assert_string_equal(r, ":0\r\n"); /* no TTL: nothing changed */
            assert_string_equal(EXEC1("k", v, "SET w 1"), "*1\r\n+OK\r\n");
            continue;
        }
        assert_string_equal(EXEC1("k", v, "SET w 1"), "*-1\r\n");
    }
    /* Reads and failed writes are not changes. */
    APPLY("SET k 2");
    v = version_of(f->sm, "k");
    APPLY("GET k");
    APPLY("SETNX k 9");
    APPLY("SET k 9 NX");
    assert_string_equal(EXEC1("k", v, "SET w 2"), "*1\r\n+OK\r\n");
    /* Expiry by a clock entry is a change. */
    APPLY("SET t 1 PX 10");
    v = version_of(f->sm, "t");
    assert_string_equal(clock_at(f->sm, ++idx, now + 10), "+OK\r\n");
    assert_string_equal(EXEC1("t", v, "SET w 3"), "*-1\r\n");
    /* Nothing queued: *0, or the null array if a watched key changed. */
    APPLY("SET q 1");
    v = version_of(f->sm, "q");
    assert_string_equal(exec_watch(f->sm, ++idx, now, 1, (const char *[]){"q"},
                                   (const uint64_t[]){v}, ""),
                        "*0\r\n");
    APPLY("SET q 2");
    assert_string_equal(exec_watch(f->sm, ++idx, now, 1, (const char *[]){"q"},
                                   (const uint64_t[]){v}, ""),
                        "*-1\r\n");
    /* Absent then and now: unchanged. */
    assert_string_equal(EXEC1("nokey", 0, "SET w 4"), "*1\r\n+OK\r\n");
    APPLY("SET nokey 1");
    assert_string_equal(EXEC1("nokey", 0, "SET w 5"), "*-1\r\n");
    assert_string_equal(READ("GET w"), "$1\r\n4\r\n");
}

/* The versions survive a snapshot, so a replica that installed one decides
 * EXEC as the others do. */
static void watch_versions_in_snapshots(void **state)
{
    struct kv_fixture *f = *state;
    uint64_t idx = 0, now = 1000;
    APPLY("SET a 1");
    APPLY("SET b 1");
    APPLY("SET a 2");
    uint64_t va = version_of(f->sm, "a"), vb = version_of(f->sm, "b");
    assert_int_equal(va, 3);
    assert_int_equal(vb, 2);
    struct sink s = {.off = 0};
    buf_init(&s.b);
    assert_int_equal(kvsm_snapshot_write(f->sm, sink_write, &s), 0);
    struct kvsm_config c;
    kvsm_config_default(&c);
    struct kvsm *copy;
    assert_int_equal(kvsm_snapshot_load(&c, sink_read, &s, &copy), 0);
    assert_int_equal(version_of(copy, "a"), va);
    assert_int_equal(version_of(copy, "b"), vb);
    kvsm_free(copy);
    buf_close(&s.b);
}

/* The watch part of an entry is decoded strictly. */
static void watch_entry_codec(void **state)
{
    (void)state;
    const uint8_t *argv[] = {(const uint8_t *)"SET", (const uint8_t *)"k",
                             (const uint8_t *)"v"};
    size_t lens[] = {3, 1, 1};
    struct kvsm_argv cmd = {3, argv, lens};
    struct kvsm_watch w[2] = {{(const uint8_t *)"k", 1, 7},
                              {(const uint8_t *)"", 0, 0}};
    struct buf e;
    buf_init(&e);
    assert_int_equal(kvsm_multi_encode_watch(5, NULL, 1, &cmd, 0, w, &e),
                     CRAFT_EINVAL);
    assert_int_equal(kvsm_multi_encode_watch(5, NULL, 1, &cmd, 2, w, &e), 0);
    struct kvsm_cmd c;
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), 0);
    assert_int_equal(c.n_watch, 2);
    size_t off = 0;
    struct kvsm_watch got;
    kvsm_cmd_watch(&c, &off, &got);
    assert_int_equal(got.version, 7);
    assert_int_equal(got.len, 1);
    kvsm_cmd_watch(&c, &off, &got);
    assert_int_equal(got.len, 0);
    /* Every truncation is refused. */
    for (size_t n = 0; n < e.len; n++) {
        assert_int_not_equal(kvsm_cmd_decode(e.data, n, &c), 0);
    }
    /* An EXEC with nothing queued carries only the watched keys. */
    buf_reset(&e);
    assert_int_equal(kvsm_multi_encode_watch(5, NULL, 0, &cmd, 1, w, &e), 0);
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), 0);
    assert_int_equal(c.n_cmds, 0);
    assert_int_equal(kvsm_multi_encode(5, NULL, 0, &cmd, &e), CRAFT_EINVAL);
    e.data[1] = 0x02; /* drop the watch flag: zero commands is corrupt */
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), CRAFT_ECORRUPT);
    buf_reset(&e);
    assert_int_equal(kvsm_multi_encode_watch(5, NULL, 1, &cmd, 2, w, &e), 0);
    /* Version 1 entries had no watch part. */
    e.data[0] = 1;
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), CRAFT_ECORRUPT);
    e.data[0] = KVSM_ENTRY_VERSION;
    /* The watch flag without the transaction flag is corrupt. */
    e.data[1] = 0x04;
    assert_int_equal(kvsm_cmd_decode(e.data, e.len, &c), CRAFT_ECORRUPT);
    buf_close(&e);
}

/* Every allocation failure in the expiry and WATCH paths is clean: the
 * apply reports CRAFT_ENOMEM with no reply, the state stays consistent
 * (kvsm_check, invariant 6 included) and nothing leaks. */
static void alloc_failures_are_clean(void **state)
{
    (void)state;
    for (long n = 1; n < 300; n++) {
        struct test_alloc ta = {.fail_at = n};
        struct craft_alloc al = test_alloc_of(&ta);
        struct kvsm_config c;
        kvsm_config_default(&c);
        c.alloc = &al;
        struct kvsm *sm;
        if (kvsm_new(&c, &sm) != 0) {
            assert_int_equal(ta.live, 0);
            continue;
        }
        static const char *const script[] = {
            "SET a 1 PX 50",   "SET b 2 EX 10",    "PEXPIRE c 5",
            "SET c 3",         "PEXPIRE c 20",     "RENAME b d",
            "SET e 1 KEEPTTL", "RENAME a e",       "SETRANGE f 3 xy",
            "INCRBYFLOAT g 1", "SET h 1 PXAT 2000"};
        uint64_t idx = 0, now = 1000;
        for (size_t i = 0; i < CRAFT_ARRAY_LEN(script); i++) {
            struct words w;
            words_split(&w, script[i]);
            struct buf e, rep;
            buf_init(&e);
            buf_init(&rep);
            if (kvsm_cmd_encode(now, NULL, w.argc, w.argv, w.lens, &e) == 0) {
                int rv = kvsm_apply(sm, idx + 1, e.data, e.len, &rep);
                assert_true(rv == 0 || rv == CRAFT_ENOMEM);
                idx += rv == 0;
                assert_true(rv == 0 || rep.len == 0);
            }
            buf_close(&e);
            buf_close(&rep);
            now += 10;
            assert_true(kvsm_check(sm));
        }
        kvsm_free(sm);
        assert_int_equal(ta.live, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--seed") == 0) {
        setenv("CRAFT_SEED", argv[2], 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(clock_entry_expires_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(expires_count_follows_every_command,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(read_at_leader_time, setup, teardown),
        cmocka_unit_test(replicas_expire_alike),
        cmocka_unit_test(expiry_is_bounded_per_entry),
        cmocka_unit_test(ht_expiry_heap_matches_reference),
        cmocka_unit_test_setup_teardown(watch_aborts_on_any_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(watch_versions_in_snapshots, setup,
                                        teardown),
        cmocka_unit_test(watch_entry_codec),
        cmocka_unit_test(alloc_failures_are_clean),
        cmocka_unit_test_setup_teardown(set_past_time_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_versions_and_due_keys, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("kv_cmds", tests, NULL, NULL);
}
