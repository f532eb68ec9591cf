/*
 * commands.c -- the string commands of craftd, with Redis 7's replies and
 * error wording, and the command table.
 *
 * Keys may carry an expiry time (SET EX/PX/EXAT/PXAT, EXPIRE, PEXPIRE) in
 * leader-stamped milliseconds.  A key is expired when its time is <= the
 * state's clock (the largest leader stamp applied), so every replica agrees
 * on it.  Expired keys are invisible to every command and are deleted
 * lazily by the next write that touches them, on every replica alike.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv/glob.h"
#include "kv/kvsm_int.h"
#include "server/resp.h"
#include "util/assert.h"

#define E_NOT_INT "ERR value is not an integer or out of range"
#define E_OVERFLOW "ERR increment or decrement would overflow"
#define E_SYNTAX "ERR syntax error"
#define E_TOO_BIG "ERR string exceeds maximum allowed size (proto-max-bulk-len)"

static int printable_len(const uint8_t *p, size_t n, size_t max);

static int expired(uint64_t now_ms, const struct ht_entry *e)
{
    return e->expire_ms > 0 && (uint64_t)e->expire_ms <= now_ms;
}

/* The live entry for a key at the command's time, or NULL. */
static struct ht_entry *lookup(const struct kvsm_exec *x, const uint8_t *k,
                               size_t n)
{
    struct ht_entry *e = ht_find(&x->ro->keys, k, n);
    return e != NULL && !expired(x->now_ms, e) ? e : NULL;
}

/* As lookup(), deleting the key if it has expired (write path only, where
 * the command's time is the state's clock). */
static struct ht_entry *lookup_w(struct kvsm *sm, const uint8_t *k, size_t n)
{
    struct ht_entry *e = ht_find(&sm->keys, k, n);
    if (e != NULL && expired(sm->now_ms, e)) {
        ht_delete(&sm->keys, k, n);
        return NULL;
    }
    return e;
}

/* Set key to value, keeping the expiry if keep_ttl, else clearing it. */
static int store(struct kvsm *sm, const uint8_t *k, size_t kn, const uint8_t *v,
                 size_t vn, int keep_ttl)
{
    struct ht_entry *e;
    int created;
    int rv = ht_upsert(&sm->keys, k, kn, &e, &created);
    if (rv != 0) {
        return rv;
    }
    rv = ht_entry_set(&sm->keys, e, v, vn);
    if (rv != 0) {
        if (created) {
            ht_delete(&sm->keys, k, kn);
        }
        return rv;
    }
    if (!keep_ttl || created) {
        rv = ht_set_expire(&sm->keys, e, 0);
        CRAFT_ASSERT(rv == 0); /* clearing never allocates */
    }
    return 0;
}

static int reply_value(struct buf *out, const struct ht_entry *e)
{
    return e ? resp_write_bulk(out, e->val, e->val_len) : resp_write_null(out);
}

static int arg_ll(const struct kvsm_exec *x, size_t i, long long *v)
{
    return resp_strtoll(x->argv[i], x->lens[i], v);
}

static int is_opt(const struct kvsm_exec *x, size_t i, const char *name)
{
    size_t n = strlen(name);
    return x->lens[i] == n &&
           strncasecmp((const char *)x->argv[i], name, n) == 0;
}

/* ---- reads ---- */

static int cmd_get(struct kvsm_exec *x)
{
    return reply_value(x->out, lookup(x, x->argv[1], x->lens[1]));
}

static int cmd_mget(struct kvsm_exec *x)
{
    int rv = resp_write_array(x->out, x->argc - 1);
    for (size_t i = 1; rv == 0 && i < x->argc; i++) {
        rv = reply_value(x->out, lookup(x, x->argv[i], x->lens[i]));
    }
    return rv;
}

static int cmd_exists(struct kvsm_exec *x)
{
    long long n = 0;
    for (size_t i = 1; i < x->argc; i++) {
        n += lookup(x, x->argv[i], x->lens[i]) != NULL;
    }
    return resp_write_int(x->out, n);
}

static int cmd_strlen(struct kvsm_exec *x)
{
    const struct ht_entry *e = lookup(x, x->argv[1], x->lens[1]);
    return resp_write_int(x->out, e ? (long long)e->val_len : 0);
}

static int cmd_dbsize(struct kvsm_exec *x)
{
    return resp_write_int(x->out, (long long)ht_count(&x->ro->keys));
}

static int cmd_type(struct kvsm_exec *x)
{
    const struct ht_entry *e = lookup(x, x->argv[1], x->lens[1]);
    return resp_write_simple(x->out, e ? "string" : "none");
}

static int cmd_getrange(struct kvsm_exec *x)
{
    long long start, end;
    if (arg_ll(x, 2, &start) != 0 || arg_ll(x, 3, &end) != 0) {
        return resp_write_error(x->out, E_NOT_INT);
    }
    const struct ht_entry *e = lookup(x, x->argv[1], x->lens[1]);
    long long len = e ? (long long)e->val_len : 0;
    /* Redis's getrangeCommand(): negative offsets count from the end. */
    if (start < 0 && end < 0 && start > end) {
        return resp_write_bulk(x->out, "", 0);
    }
    if (start < 0) {
        start = len + start;
    }
    if (end < 0) {
        end = len + end;
    }
    if (start < 0) {
        start = 0;
    }
    if (end < 0) {
        end = 0;
    }
    if (end >= len) {
        end = len - 1;
    }
    if (len == 0 || start > end) {
        return resp_write_bulk(x->out, "", 0);
    }
    return resp_write_bulk(x->out, e->val + start, (size_t)(end - start + 1));
}

static int ttl_reply(struct kvsm_exec *x, int ms)
{
    const struct ht_entry *e = lookup(x, x->argv[1], x->lens[1]);
    if (e == NULL) {
        return resp_write_int(x->out, -2);
    }
    if (e->expire_ms == 0) {
        return resp_write_int(x->out, -1);
    }
    long long left = e->expire_ms - (long long)x->now_ms;
    CRAFT_ASSERT(left > 0);
    return resp_write_int(x->out, ms ? left : (left + 500) / 1000);
}

static int cmd_ttl(struct kvsm_exec *x)
{
    return ttl_reply(x, 0);
}

static int cmd_pttl(struct kvsm_exec *x)
{
    return ttl_reply(x, 1);
}

/* Keys collected by KEYS and SCAN: the entries are stable because the
 * read path never modifies the table. */
struct collect {
    const struct kvsm *sm;
    uint64_t now_ms;
    const uint8_t *pat;
    size_t pat_len;  /* 0 with pat NULL: match everything */
    int type_ok;     /* TYPE filter: 1 keep strings, 0 drop everything */
    struct buf keys; /* RESP bulks of the matching keys */
    size_t n;        /* keys in it */
    size_t visited;  /* keys looked at, matching or not */
    int rv;
};

static void collect_key(void *ctx, const struct ht_entry *e)
{
    struct collect *c = ctx;
    c->visited++;
    if (c->rv != 0 || expired(c->now_ms, e) || !c->type_ok ||
        (c->pat != NULL &&
         !kvsm__glob_match(c->pat, c->pat_len, e->key, e->key_len))) {
        return;
    }
    c->rv = resp_write_bulk(&c->keys, e->key, e->key_len);
    c->n += c->rv == 0;
}

static int reply_collected(struct buf *out, struct collect *c)
{
    int rv = c->rv;
    if (rv == 0) {
        rv = resp_write_array(out, c->n);
    }
    if (rv == 0) {
        rv = buf_append(out, c->keys.data, c->keys.len);
    }
    buf_close(&c->keys);
    return rv;
}

static int cmd_keys(struct kvsm_exec *x)
{
    struct collect c = {.sm = x->ro,
                        .now_ms = x->now_ms,
                        .pat = x->argv[1],
                        .pat_len = x->lens[1],
                        .type_ok = 1};
    if (x->lens[1] == 1 && x->argv[1][0] == '*') {
        c.pat = NULL;
    }
    buf_init(&c.keys);
    struct ht_iter it;
    ht_iter_init(&it, &x->ro->keys);
    for (const struct ht_entry *e; (e = ht_iter_next(&it)) != NULL;) {
        collect_key(&c, e);
    }
    return reply_collected(x->out, &c);
}

/* Redis's parseScanCursorOrReply(): strtoul, no leading blank. */
static int parse_cursor(const uint8_t *p, size_t n, uint64_t *v)
{
    char tmp[128];
    if (n == 0 || n >= sizeof tmp || isspace(p[0])) {
        return -1;
    }
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long c = strtoull(tmp, &end, 10);
    if (*end != '\0' || errno == ERANGE || (size_t)(end - tmp) != n) {
        return -1;
    }
    *v = c;
    return 0;
}

/* SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] */
static int cmd_scan(struct kvsm_exec *x)
{
    uint64_t cursor;
    if (parse_cursor(x->argv[1], x->lens[1], &cursor) != 0) {
        return resp_write_error(x->out, "ERR invalid cursor");
    }
    struct collect c = {.sm = x->ro, .now_ms = x->now_ms, .type_ok = 1};
    long long count = 10;
    for (size_t i = 2; i < x->argc; i += 2) {
        if (i + 1 >= x->argc) {
            return resp_write_error(x->out, E_SYNTAX);
        }
        if (is_opt(x, i, "COUNT")) {
            if (arg_ll(x, i + 1, &count) != 0) {
                return resp_write_error(x->out, E_NOT_INT);
            }
            if (count < 1) {
                return resp_write_error(x->out, E_SYNTAX);
            }
        } else if (is_opt(x, i, "MATCH")) {
            c.pat = x->argv[i + 1];
            c.pat_len = x->lens[i + 1];
            if (c.pat_len == 1 && c.pat[0] == '*') {
                c.pat = NULL;
            }
        } else if (is_opt(x, i, "TYPE")) {
            c.type_ok = is_opt(x, i + 1, "string");
        } else {
            return resp_write_error(x->out, E_SYNTAX);
        }
    }
    /* As Redis: visit buckets until count keys were looked at or
     * 10 * count buckets were visited, so a sparse table cannot stall. */
    buf_init(&c.keys);
    long long budget = count > LLONG_MAX / 10 ? LLONG_MAX : count * 10;
    do {
        cursor = ht_scan(&x->ro->keys, cursor, collect_key, &c);
    } while (cursor != 0 && budget-- > 0 && c.rv == 0 &&
             c.visited < (unsigned long long)count);
    char digits[24];
    int dn =
        snprintf(digits, sizeof digits, "%llu", (unsigned long long)cursor);
    int rv = c.rv == 0 ? resp_write_array(x->out, 2) : c.rv;
    if (rv == 0) {
        rv = resp_write_bulk(x->out, digits, (size_t)dn);
    }
    if (rv != 0) {
        buf_close(&c.keys);
        return rv;
    }
    return reply_collected(x->out, &c);
}

/* WATCH key [key ...] as the state machine sees it: a read whose reply is
 * the array of the keys' versions (the index of the entry that last
 * created or changed the key, 0 for no key).  The front end keeps them
 * for EXEC, which carries them in the transaction entry (kvsm_watch), and
 * answers the client +OK. */
static int cmd_watch(struct kvsm_exec *x)
{
    int rv = resp_write_array(x->out, x->argc - 1);
    for (size_t i = 1; rv == 0 && i < x->argc; i++) {
        const struct ht_entry *e = lookup(x, x->argv[i], x->lens[i]);
        rv = resp_write_int(x->out, e ? (long long)e->mod_index : 0);
    }
    return rv;
}

/* ---- stateless ---- */

/* UNWATCH is the connection's business; queued inside MULTI it runs here
 * with nothing to do, as in Redis. */
static int cmd_unwatch(struct kvsm_exec *x)
{
    return resp_write_simple(x->out, "OK");
}

static int cmd_ping(struct kvsm_exec *x)
{
    if (x->argc > 2) {
        return resp_write_error(
            x->out, "ERR wrong number of arguments for 'ping' command");
    }
    if (x->argc == 2) {
        return resp_write_bulk(x->out, x->argv[1], x->lens[1]);
    }
    return resp_write_simple(x->out, "PONG");
}

static int cmd_echo(struct kvsm_exec *x)
{
    return resp_write_bulk(x->out, x->argv[1], x->lens[1]);
}

/* ---- writes ---- */

/* An absolute expiry time from a relative or absolute argument, as Redis's
 * getExpireMillisecondsOrReply(): <= 0 and overflow are errors. */
static int expire_arg(struct kvsm_exec *x, size_t i, long long unit_ms,
                      int absolute, const char *cmd, long long *at_ms)
{
    long long v;
    if (arg_ll(x, i, &v) != 0) {
        return resp_write_error(x->out, E_NOT_INT) == 0 ? 1 : CRAFT_ENOMEM;
    }
    if (v <= 0 || v > LLONG_MAX / unit_ms) {
        return resp_write_errorf(x->out,
                                 "ERR invalid expire time in '%s' "
                                 "command",
                                 cmd) == 0
                   ? 1
                   : CRAFT_ENOMEM;
    }
    v *= unit_ms;
    if (!absolute) {
        if (v > LLONG_MAX - (long long)x->rw->now_ms) {
            return resp_write_errorf(x->out,
                                     "ERR invalid expire time in "
                                     "'%s' command",
                                     cmd) == 0
                       ? 1
                       : CRAFT_ENOMEM;
        }
        v += (long long)x->rw->now_ms;
    }
    *at_ms = v;
    return 0;
}

/* SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL] */
static int cmd_set(struct kvsm_exec *x)
{
    int nx = 0, xx = 0, get = 0, keep = 0, has_exp = 0;
    long long at = 0;
    for (size_t i = 3; i < x->argc; i++) {
        static const struct {
            const char *name;
            long long unit;
            int absolute;
        } exp[] = {
            {"EX", 1000, 0}, {"PX", 1, 0}, {"EXAT", 1000, 1}, {"PXAT", 1, 1}};
        size_t k = 0;
        while (k < 4 && !is_opt(x, i, exp[k].name)) {
            k++;
        }
        if (k < 4) {
            if (has_exp || keep || i + 1 >= x->argc) {
                return resp_write_error(x->out, E_SYNTAX);
            }
            int rv =
                expire_arg(x, ++i, exp[k].unit, exp[k].absolute, "set", &at);
            if (rv != 0) {
                return rv > 0 ? 0 : rv;
            }
            has_exp = 1;
        } else if (is_opt(x, i, "NX") && !xx) {
            nx = 1;
        } else if (is_opt(x, i, "XX") && !nx) {
            xx = 1;
        } else if (is_opt(x, i, "GET")) {
            get = 1;
        } else if (is_opt(x, i, "KEEPTTL") && !has_exp) {
            keep = 1;
        } else {
            return resp_write_error(x->out, E_SYNTAX);
        }
    }
    struct kvsm *sm = x->rw;
    /* Room in the expiry heap first, so the write is all or nothing. */
    if (has_exp && ht_expire_reserve(&sm->keys, 1) != 0) {
        return CRAFT_ENOMEM;
    }
    /* Without NX, XX, GET or KEEPTTL a SET needs no look-up of its own:
     * store() finds the key (an expired one too: overwritten with its
     * expiry cleared, the same state as deleting it first), and a look-up
     * is a hash and a probe per write.  KEEPTTL must not keep an expired
     * key's expiry, so it looks up (and deletes such a key) first. */
    struct ht_entry *e =
        get || nx || xx || keep ? lookup_w(sm, x->argv[1], x->lens[1]) : NULL;
    int rv = 0;
    if (get) {
        rv = reply_value(x->out, e);
    }
    if ((nx && e != NULL) || (xx && e == NULL)) {
        return get || rv != 0 ? rv : resp_write_null(x->out);
    }
    if (rv != 0) {
        return rv;
    }
    size_t mark = x->out->len;
    rv = get ? 0 : resp_write_simple(x->out, "OK");
    if (rv == 0) {
        rv = store(sm, x->argv[1], x->lens[1], x->argv[2], x->lens[2], keep);
    }
    if (rv != 0) {
        x->out->len = mark;
        return rv;
    }
    if (has_exp) {
        struct ht_entry *n = ht_find(&sm->keys, x->argv[1], x->lens[1]);
        CRAFT_ASSERT(n != NULL);
        rv = ht_set_expire(&sm->keys, n, at);
        CRAFT_ASSERT(rv == 0); /* reserved above */
    }
    return rv;
}

static int cmd_setnx(struct kvsm_exec *x)
{
    if (lookup_w(x->rw, x->argv[1], x->lens[1]) != NULL) {
        return resp_write_int(x->out, 0);
    }
    int rv = store(x->rw, x->argv[1], x->lens[1], x->argv[2], x->lens[2], 0);
    return rv ? rv : resp_write_int(x->out, 1);
}

static int cmd_getset(struct kvsm_exec *x)
{
    struct ht_entry *e = lookup_w(x->rw, x->argv[1], x->lens[1]);
    size_t mark = x->out->len;
    int rv = reply_value(x->out, e);
    if (rv == 0) {
        rv = store(x->rw, x->argv[1], x->lens[1], x->argv[2], x->lens[2], 0);
    }
    if (rv != 0) {
        x->out->len = mark;
    }
    return rv;
}

static int cmd_getdel(struct kvsm_exec *x)
{
    struct ht_entry *e = lookup_w(x->rw, x->argv[1], x->lens[1]);
    int rv = reply_value(x->out, e);
    if (rv == 0 && e != NULL) {
        ht_delete(&x->rw->keys, x->argv[1], x->lens[1]);
    }
    return rv;
}

static int cmd_append(struct kvsm_exec *x)
{
    struct kvsm *sm = x->rw;
    struct ht_entry *e = lookup_w(sm, x->argv[1], x->lens[1]);
    size_t cur = e ? e->val_len : 0;
    if (cur + x->lens[2] > KVSM_VALUE_MAX) {
        return resp_write_error(x->out, E_TOO_BIG);
    }
    if (e == NULL) {
        int rv = store(sm, x->argv[1], x->lens[1], x->argv[2], x->lens[2], 0);
        return rv ? rv : resp_write_int(x->out, (long long)x->lens[2]);
    }
    int rv = ht_entry_append(&sm->keys, e, x->argv[2], x->lens[2]);
    return rv ? rv : resp_write_int(x->out, (long long)e->val_len);
}

static int cmd_del(struct kvsm_exec *x)
{
    long long n = 0;
    for (size_t i = 1; i < x->argc; i++) {
        if (lookup_w(x->rw, x->argv[i], x->lens[i]) != NULL) {
            n += ht_delete(&x->rw->keys, x->argv[i], x->lens[i]);
        }
    }
    return resp_write_int(x->out, n);
}

static int incr_by(struct kvsm_exec *x, long long by)
{
    struct kvsm *sm = x->rw;
    struct ht_entry *e = lookup_w(sm, x->argv[1], x->lens[1]);
    long long cur = 0;
    if (e != NULL && resp_strtoll(e->val, e->val_len, &cur) != 0) {
        return resp_write_error(x->out, E_NOT_INT);
    }
    if ((by < 0 && cur < 0 && by < LLONG_MIN - cur) ||
        (by > 0 && cur > 0 && by > LLONG_MAX - cur)) {
        return resp_write_error(x->out, E_OVERFLOW);
    }
    cur += by;
    char digits[32];
    size_t mark = x->out->len;
    int rv = resp_write_int(x->out, cur);
    if (rv != 0) {
        return rv;
    }
    /* The digits are exactly the integer reply's, between ':' and CRLF. */
    size_t n = x->out->len - mark - 3;
    CRAFT_ASSERT(n < sizeof digits);
    memcpy(digits, x->out->data + mark + 1, n);
    rv = store(sm, x->argv[1], x->lens[1], (const uint8_t *)digits, n, 1);
    if (rv != 0) {
        x->out->len = mark;
    }
    return rv;
}

static int cmd_incr(struct kvsm_exec *x)
{
    return incr_by(x, 1);
}

static int cmd_decr(struct kvsm_exec *x)
{
    return incr_by(x, -1);
}

static int cmd_incrby(struct kvsm_exec *x)
{
    long long by;
    if (arg_ll(x, 2, &by) != 0) {
        return resp_write_error(x->out, E_NOT_INT);
    }
    return incr_by(x, by);
}

static int cmd_decrby(struct kvsm_exec *x)
{
    long long by;
    if (arg_ll(x, 2, &by) != 0) {
        return resp_write_error(x->out, E_NOT_INT);
    }
    if (by == LLONG_MIN) {
        return resp_write_error(x->out, "ERR decrement would overflow");
    }
    return incr_by(x, -by);
}

static int mset_generic(struct kvsm_exec *x, int nx)
{
    if (x->argc % 2 == 0) {
        return resp_write_errorf(
            x->out, "ERR wrong number of arguments for '%s' command",
            nx ? "msetnx" : "mset");
    }
    if (nx) {
        for (size_t i = 1; i < x->argc; i += 2) {
            if (lookup_w(x->rw, x->argv[i], x->lens[i]) != NULL) {
                return resp_write_int(x->out, 0);
            }
        }
    }
    for (size_t i = 1; i < x->argc; i += 2) {
        int rv = store(x->rw, x->argv[i], x->lens[i], x->argv[i + 1],
                       x->lens[i + 1], 0);
        if (rv != 0) {
            return rv;
        }
    }
    return nx ? resp_write_int(x->out, 1) : resp_write_simple(x->out, "OK");
}

static int cmd_mset(struct kvsm_exec *x)
{
    return mset_generic(x, 0);
}

static int cmd_msetnx(struct kvsm_exec *x)
{
    return mset_generic(x, 1);
}

#define EXP_NX 1
#define EXP_XX 2
#define EXP_GT 4
#define EXP_LT 8

/* The NX | XX | GT | LT options of EXPIRE, as Redis 7 parses them.
 * Returns 0 with *flags, or 1 with an error reply written, or an error. */
static int expire_flags(struct kvsm_exec *x, int *flags)
{
    static const char *names[] = {"NX", "XX", "GT", "LT"};
    *flags = 0;
    for (size_t i = 3; i < x->argc; i++) {
        size_t k = 0;
        while (k < 4 && !is_opt(x, i, names[k])) {
            k++;
        }
        if (k == 4) {
            int rv =
                resp_write_errorf(x->out, "ERR Unsupported option %.*s",
                                  printable_len(x->argv[i], x->lens[i], 128),
                                  (const char *)x->argv[i]);
            return rv ? rv : 1;
        }
        *flags |= 1 << k;
    }
    const char *err = NULL;
    if ((*flags & EXP_NX) && (*flags & (EXP_XX | EXP_GT | EXP_LT))) {
        err = "ERR NX and XX, GT or LT options at the same time are not "
              "compatible";
    } else if ((*flags & EXP_GT) && (*flags & EXP_LT)) {
        err = "ERR GT and LT options at the same time are not compatible";
    }
    if (err != NULL) {
        int rv = resp_write_error(x->out, err);
        return rv ? rv : 1;
    }
    return 0;
}

/* EXPIRE / PEXPIRE key time [NX | XX | GT | LT]: Redis's
 * expireGenericCommand(), with the state's clock as "now". */
static int expire_generic(struct kvsm_exec *x, long long unit_ms,
                          const char *name)
{
    int flags, rv = expire_flags(x, &flags);
    if (rv != 0) {
        return rv > 0 ? 0 : rv;
    }
    long long when;
    if (arg_ll(x, 2, &when) != 0) {
        return resp_write_error(x->out, E_NOT_INT);
    }
    struct kvsm *sm = x->rw;
    long long now = (long long)sm->now_ms;
    if (when > LLONG_MAX / unit_ms || when < LLONG_MIN / unit_ms ||
        when * unit_ms > LLONG_MAX - now) {
        return resp_write_errorf(
            x->out, "ERR invalid expire time in '%s' command", name);
    }
    when = when * unit_ms + now;
    struct ht_entry *e = lookup_w(sm, x->argv[1], x->lens[1]);
    if (e == NULL) {
        return resp_write_int(x->out, 0);
    }
    long long cur = e->expire_ms ? e->expire_ms : -1;
    if (((flags & EXP_NX) && cur != -1) || ((flags & EXP_XX) && cur == -1) ||
        ((flags & EXP_GT) && (cur == -1 || when <= cur)) ||
        ((flags & EXP_LT) && cur != -1 && when >= cur)) {
        return resp_write_int(x->out, 0);
    }
    /* A time already past deletes the key, as in Redis. */
    if (when <= now) {
        ht_delete(&sm->keys, x->argv[1], x->lens[1]);
    } else {
        rv = ht_set_expire(&sm->keys, e, when);
        if (rv != 0) {
            return rv;
        }
    }
    return resp_write_int(x->out, 1);
}

static int cmd_expire(struct kvsm_exec *x)
{
    return expire_generic(x, 1000, "expire");
}

static int cmd_pexpire(struct kvsm_exec *x)
{
    return expire_generic(x, 1, "pexpire");
}

static int cmd_persist(struct kvsm_exec *x)
{
    struct ht_entry *e = lookup_w(x->rw, x->argv[1], x->lens[1]);
    if (e == NULL || e->expire_ms == 0) {
        return resp_write_int(x->out, 0);
    }
    int rv = ht_set_expire(&x->rw->keys, e, 0);
    CRAFT_ASSERT(rv == 0);
    return resp_write_int(x->out, 1);
}

/* RENAME and RENAMENX: the value moves (no copy) and keeps its expiry. */
static int rename_generic(struct kvsm_exec *x, int nx)
{
    struct kvsm *sm = x->rw;
    struct ht_entry *src = lookup_w(sm, x->argv[1], x->lens[1]);
    if (src == NULL) {
        return resp_write_error(x->out, "ERR no such key");
    }
    if (x->lens[1] == x->lens[2] &&
        memcmp(x->argv[1], x->argv[2], x->lens[1]) == 0) {
        return nx ? resp_write_int(x->out, 0) : resp_write_simple(x->out, "OK");
    }
    if (nx && lookup_w(sm, x->argv[2], x->lens[2]) != NULL) {
        return resp_write_int(x->out, 0);
    }
    size_t mark = x->out->len;
    int rv = nx ? resp_write_int(x->out, 1) : resp_write_simple(x->out, "OK");
    if (rv != 0) {
        return rv;
    }
    struct ht_entry *dst;
    int created;
    rv = ht_upsert(&sm->keys, x->argv[2], x->lens[2], &dst, &created);
    if (rv == 0) {
        rv = ht_set_expire(&sm->keys, dst, src->expire_ms);
        if (rv != 0 && created) {
            ht_delete(&sm->keys, x->argv[2], x->lens[2]);
        }
    }
    if (rv != 0) {
        x->out->len = mark;
        return rv;
    }
    /* Swap the value buffers; deleting src then frees dst's old value.
     * Entries do not move when the table grows, so src is still valid. */
    uint8_t *v = dst->val;
    size_t vl = dst->val_len, vc = dst->val_cap;
    dst->val = src->val;
    dst->val_len = src->val_len;
    dst->val_cap = src->val_cap;
    src->val = v;
    src->val_len = vl;
    src->val_cap = vc;
    ht_delete(&sm->keys, x->argv[1], x->lens[1]);
    return 0;
}

static int cmd_rename(struct kvsm_exec *x)
{
    return rename_generic(x, 0);
}

static int cmd_renamenx(struct kvsm_exec *x)
{
    return rename_generic(x, 1);
}

/* SETRANGE key offset value: Redis's setrangeCommand(), zero padding. */
static int cmd_setrange(struct kvsm_exec *x)
{
    struct kvsm *sm = x->rw;
    long long off;
    if (arg_ll(x, 2, &off) != 0) {
        return resp_write_error(x->out, E_NOT_INT);
    }
    if (off < 0) {
        return resp_write_error(x->out, "ERR offset is out of range");
    }
    struct ht_entry *e = lookup_w(sm, x->argv[1], x->lens[1]);
    size_t n = x->lens[3];
    if (n == 0) {
        return resp_write_int(x->out, e ? (long long)e->val_len : 0);
    }
    if ((unsigned long long)off + n > KVSM_VALUE_MAX) {
        return resp_write_error(x->out, E_TOO_BIG);
    }
    int created = 0, rv = 0;
    if (e == NULL) {
        rv = ht_upsert(&sm->keys, x->argv[1], x->lens[1], &e, &created);
        if (rv != 0) {
            return rv;
        }
    }
    size_t cur = e->val_len, end = (size_t)off + n;
    if (end > cur) {
        /* Appending zeros keeps the growth amortised like APPEND. */
        static const uint8_t zeros[4096];
        for (size_t pad = end - cur; rv == 0 && pad > 0;) {
            size_t k = pad < sizeof zeros ? pad : sizeof zeros;
            rv = ht_entry_append(&sm->keys, e, zeros, k);
            pad -= k;
        }
        if (rv != 0) {
            if (created) {
                ht_delete(&sm->keys, x->argv[1], x->lens[1]);
            } else {
                e->val_len = cur;
            }
            return rv;
        }
    }
    memcpy(e->val + off, x->argv[3], n);
    e->mod_index = sm->keys.mod_stamp;
    return resp_write_int(x->out, (long long)e->val_len);
}

/* Redis's string2ld(): strtold, refusing leading blanks, trailing bytes,
 * NaN and overflow. */
static int parse_ld(const uint8_t *p, size_t n, long double *v)
{
    char tmp[5 * 1024];
    if (n == 0 || n >= sizeof tmp) {
        return -1;
    }
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long double d = strtold(tmp, &end);
    if (isspace((unsigned char)tmp[0]) || *end != '\0' ||
        (size_t)(end - tmp) != n ||
        (errno == ERANGE &&
         (d == HUGE_VALL || d == -HUGE_VALL || fpclassify(d) == FP_ZERO)) ||
        isnan(d)) {
        return -1;
    }
    *v = d;
    return 0;
}

/* INCRBYFLOAT key increment.  The result is formatted as Redis's
 * ld2string(LD_STR_HUMAN) does: %.17Lf without trailing zeros.  Long
 * double arithmetic is deterministic on one architecture, which a cluster
 * is assumed to share. */
static int cmd_incrbyfloat(struct kvsm_exec *x)
{
    struct kvsm *sm = x->rw;
    struct ht_entry *e = lookup_w(sm, x->argv[1], x->lens[1]);
    long double cur = 0, by;
    if ((e != NULL && parse_ld(e->val, e->val_len, &cur) != 0) ||
        parse_ld(x->argv[2], x->lens[2], &by) != 0) {
        return resp_write_error(x->out, "ERR value is not a valid float");
    }
    cur += by;
    if (isnan(cur) || isinf(cur)) {
        return resp_write_error(x->out,
                                "ERR increment would produce NaN or Infinity");
    }
    char buf[5 * 1024];
    int l = snprintf(buf, sizeof buf, "%.17Lf", cur);
    if (l < 0 || (size_t)l + 1 > sizeof buf) {
        return resp_write_error(x->out,
                                "ERR increment would produce NaN or Infinity");
    }
    if (strchr(buf, '.') != NULL) {
        while (buf[l - 1] == '0') {
            l--;
        }
        if (buf[l - 1] == '.') {
            l--;
        }
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    size_t mark = x->out->len;
    int rv = resp_write_bulk(x->out, buf, (size_t)l);
    if (rv == 0) {
        rv = store(sm, x->argv[1], x->lens[1], (const uint8_t *)buf, (size_t)l,
                   1);
    }
    if (rv != 0) {
        x->out->len = mark;
    }
    return rv;
}

static int cmd_flushall(struct kvsm_exec *x)
{
    /* FLUSHALL/FLUSHDB [ASYNC|SYNC]: both run synchronously here. */
    if (x->argc > 2 ||
        (x->argc == 2 && !is_opt(x, 1, "ASYNC") && !is_opt(x, 1, "SYNC"))) {
        return resp_write_error(x->out, E_SYNTAX);
    }
    int rv = ht_clear(&x->rw->keys);
    return rv ? rv : resp_write_simple(x->out, "OK");
}

/* The leader's clock entry (kvsm_clock_encode()): applying any entry
 * advances the clock and deletes the keys it made due, so this command has
 * nothing left to do.  Clients cannot send it (KVSM_CMD_INTERNAL). */
static int cmd_craft_clock(struct kvsm_exec *x)
{
    return resp_write_simple(x->out, "OK");
}

/* CRAFT.SESSION and CRAFT.EXEC are handled by kvsm.c before dispatch; the
 * table rows exist for routing and arity.  Reaching a handler means the
 * command was nested inside CRAFT.EXEC. */
static int cmd_craft_nested(struct kvsm_exec *x)
{
    return resp_write_errorf(x->out, "ERR CRAFT.EXEC cannot wrap %.*s",
                             (int)(x->lens[0] > 32 ? 32 : x->lens[0]),
                             (const char *)x->argv[0]);
}

/* MULTI, EXEC and DISCARD are the connection's business (kvsm_classify()
 * says KVSM_TX); the state machine sees a transaction only as a whole
 * entry.  Reaching this handler is a server bug, answered politely. */
static int cmd_tx_misrouted(struct kvsm_exec *x)
{
    return resp_write_errorf(
        x->out, "ERR %.*s must be handled by the connection",
        (int)(x->lens[0] > 16 ? 16 : x->lens[0]), (const char *)x->argv[0]);
}

#define R KVSM_CMD_READ
#define W KVSM_CMD_WRITE
#define L KVSM_CMD_LOCAL
#define S KVSM_CMD_SESSION
#define T KVSM_CMD_TX
#define I KVSM_CMD_INTERNAL

static const struct kvsm_command commands[] = {
    {"get", 2, R, cmd_get},
    {"mget", -2, R, cmd_mget},
    {"exists", -2, R, cmd_exists},
    {"strlen", 2, R, cmd_strlen},
    {"dbsize", 1, R, cmd_dbsize},
    {"type", 2, R, cmd_type},
    {"getrange", 4, R, cmd_getrange},
    {"ttl", 2, R, cmd_ttl},
    {"keys", 2, R, cmd_keys},
    {"scan", -2, R, cmd_scan},
    {"pttl", 2, R, cmd_pttl},
    {"watch", -2, R, cmd_watch},
    {"unwatch", 1, L, cmd_unwatch},
    {"ping", -1, L, cmd_ping},
    {"echo", 2, L, cmd_echo},
    {"set", -3, W, cmd_set},
    {"setnx", 3, W, cmd_setnx},
    {"getset", 3, W, cmd_getset},
    {"getdel", 2, W, cmd_getdel},
    {"append", 3, W, cmd_append},
    {"del", -2, W, cmd_del},
    {"incr", 2, W, cmd_incr},
    {"decr", 2, W, cmd_decr},
    {"incrby", 3, W, cmd_incrby},
    {"decrby", 3, W, cmd_decrby},
    {"mset", -3, W, cmd_mset},
    {"msetnx", -3, W, cmd_msetnx},
    {"rename", 3, W, cmd_rename},
    {"renamenx", 3, W, cmd_renamenx},
    {"setrange", 4, W, cmd_setrange},
    {"incrbyfloat", 3, W, cmd_incrbyfloat},
    {"expire", -3, W, cmd_expire},
    {"pexpire", -3, W, cmd_pexpire},
    {"persist", 2, W, cmd_persist},
    {"flushall", -1, W, cmd_flushall},
    {"flushdb", -1, W, cmd_flushall},
    {"multi", 1, T, cmd_tx_misrouted},
    {"exec", 1, T, cmd_tx_misrouted},
    {"discard", 1, T, cmd_tx_misrouted},
    {"craft.session", 1, W | S, cmd_craft_nested},
    {"craft.exec", -4, W | S, cmd_craft_nested},
    {"craft.clock", 1, W | I, cmd_craft_clock},
};

#undef R
#undef W
#undef L
#undef S
#undef T
#undef I

/*
 * The name index: an open-addressing table of command numbers (+1, 0 for
 * an empty slot) by a hash of the lower-cased name.  Every command is
 * looked up at least twice per write on the leader (classify, encode) and
 * once per apply on every replica; a scan of the table with strlen and
 * strncasecmp per entry was a fifth of a follower's instructions per SET.
 * Built once on first use; a race builds identical tables (as crc32c's).
 */
#define CMD_INDEX_SLOTS 256u /* a power of two, > 2x the commands */
#define CMD_NAME_MAX 32u     /* longer names are no command */

_Static_assert(CRAFT_ARRAY_LEN(commands) < CMD_INDEX_SLOTS / 2,
               "the command index must stay at most half full");

static uint8_t cmd_index[CMD_INDEX_SLOTS];
static uint8_t cmd_len[CRAFT_ARRAY_LEN(commands)]; /* strlen of each name */
static atomic_int cmd_index_ready;

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* FNV-1a of the lower-cased name. */
static uint32_t name_hash(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ lower(p[i])) * 16777619u;
    }
    return h;
}

static void cmd_index_build(void)
{
    memset(cmd_index, 0, sizeof cmd_index);
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(commands); i++) {
        const char *name = commands[i].name;
        size_t n = strlen(name);
        CRAFT_ASSERT(n <= CMD_NAME_MAX);
        for (size_t j = 0; j < n; j++) {
            CRAFT_ASSERT(lower((uint8_t)name[j]) == (uint8_t)name[j]);
        }
        cmd_len[i] = (uint8_t)n;
        uint32_t slot = name_hash((const uint8_t *)name, n);
        while (cmd_index[slot & (CMD_INDEX_SLOTS - 1)] != 0) {
            slot++;
        }
        cmd_index[slot & (CMD_INDEX_SLOTS - 1)] = (uint8_t)(i + 1);
    }
    atomic_store_explicit(&cmd_index_ready, 1, memory_order_release);
}

const struct kvsm_command *kvsm__command_find(const uint8_t *name, size_t n)
{
    if (!atomic_load_explicit(&cmd_index_ready, memory_order_acquire)) {
        cmd_index_build();
    }
    if (n > CMD_NAME_MAX) {
        return NULL;
    }
    uint32_t slot = name_hash(name, n);
    for (;; slot++) {
        unsigned k = cmd_index[slot & (CMD_INDEX_SLOTS - 1)];
        if (k == 0) {
            return NULL;
        }
        /* Names in the table are lower case (checked when the index is
         * built); the one asked for may hold any byte, NUL included. */
        if (cmd_len[k - 1] == n) {
            const char *want = commands[k - 1].name;
            size_t i = 0;
            while (i < n && lower(name[i]) == (uint8_t)want[i]) {
                i++;
            }
            if (i == n) {
                return &commands[k - 1];
            }
        }
    }
}

/* Redis prints user bytes in errors with %s: they end at a NUL byte, and
 * rejectCommandFormat() turns CR and LF into spaces (resp_write_errorf). */
static int printable_len(const uint8_t *p, size_t n, size_t max)
{
    const uint8_t *z = memchr(p, 0, n);
    size_t len = z ? (size_t)(z - p) : n;
    return (int)(len > max ? max : len);
}

static int unknown_command(size_t argc, const uint8_t *const *argv,
                           const size_t *lens, struct buf *out)
{
    /* Redis 7's processCommand(): up to 128 bytes of arguments. */
    char args[160];
    size_t used = 0;
    args[0] = '\0';
    for (size_t i = 1; i < argc && used < 128; i++) {
        int n = printable_len(argv[i], lens[i], 128 - used);
        int w = snprintf(args + used, sizeof args - used, "'%.*s' ", n,
                         (const char *)argv[i]);
        CRAFT_ASSERT(w > 0 && (size_t)w < sizeof args - used);
        used += (size_t)w;
    }
    return resp_write_errorf(
        out, "ERR unknown command '%.*s', with args beginning with: %s",
        printable_len(argv[0], lens[0], 128), (const char *)argv[0], args);
}

const struct kvsm_command *
kvsm__command_check(size_t argc, const uint8_t *const *argv, const size_t *lens,
                    struct buf *out, int *rv, bool internal_ok)
{
    CRAFT_ASSERT(argc >= 1);
    const struct kvsm_command *c = kvsm__command_find(argv[0], lens[0]);
    if (c == NULL || ((c->flags & KVSM_CMD_INTERNAL) && !internal_ok)) {
        *rv = unknown_command(argc, argv, lens, out);
        return NULL;
    }
    if ((c->arity > 0 && argc != (size_t)c->arity) ||
        (c->arity < 0 && argc < (size_t)-c->arity)) {
        *rv = resp_write_errorf(
            out, "ERR wrong number of arguments for '%s' command", c->name);
        return NULL;
    }
    *rv = 0;
    return c;
}
