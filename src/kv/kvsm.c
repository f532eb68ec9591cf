/*
 * kvsm.c -- the KV state machine: routing, apply, the exactly-once session
 * protocol and the read-only path.  See kvsm.h for the contract and
 * docs/craftd.md for the client-visible protocol.
 *
 * Session protocol, applied to an entry carrying (id, seq, first_unacked):
 *
 *   session unknown or expired       -> NOSESSION error, nothing runs
 *   first_unacked > seq or seq == 0  -> error, nothing runs
 *   otherwise: raise the session's first_unacked (forgetting the replies
 *   below it) and refresh its last-used time, then
 *     seq < first_unacked            -> STALESEQ error (reply forgotten)
 *     reply for seq saved            -> the saved bytes again (duplicate)
 *     replies_max replies or
 *     bytes_max bytes saved          -> SESSIONFULL error, nothing runs
 *     else                           -> run the command, save its reply
 *
 * Every branch depends only on the session table and the entry, so every
 * replica takes the same one; and no branch runs a (session, seq) twice,
 * because a run reply stays saved until the client acknowledges it.
 */
#include <string.h>
#include <strings.h>

#include "kv/kvsm_int.h"
#include "server/resp.h"
#include "util/alloc.h"
#include "util/assert.h"

void kvsm_config_default(struct kvsm_config *c)
{
    CRAFT_ASSERT(c != NULL);
    memset(c, 0, sizeof *c);
    c->hash_seed[0] = 0x0123456789abcdefull;
    c->hash_seed[1] = 0xfedcba9876543210ull;
    c->sessions_max = KVSM_SESSIONS_MAX;
    c->session_timeout_ms = KVSM_SESSION_TIMEOUT_MS;
    c->session_replies_max = KVSM_SESSION_REPLIES_MAX;
    c->session_bytes_max = KVSM_SESSION_BYTES_MAX;
}

int kvsm_new(const struct kvsm_config *c, struct kvsm **out)
{
    CRAFT_ASSERT(c != NULL && out != NULL);
    if (c->sessions_max == 0 || c->session_timeout_ms == 0 ||
        c->session_replies_max == 0 || c->session_bytes_max == 0) {
        return CRAFT_EINVAL;
    }
    struct kvsm *sm = craft_calloc(c->alloc, 1, sizeof *sm);
    if (sm == NULL) {
        return CRAFT_ENOMEM;
    }
    sm->cfg = *c;
    int rv = ht_init(&sm->keys, c->alloc, c->hash_seed[0], c->hash_seed[1]);
    if (rv != 0) {
        goto err_keys;
    }
    rv = kvsm__sessions_init(&sm->sessions, c->alloc, c->sessions_max);
    if (rv != 0) {
        goto err_sessions;
    }
    *out = sm;
    return 0;

err_sessions:
    ht_close(&sm->keys);
err_keys:
    craft_free(c->alloc, sm);
    return rv;
}

void kvsm_free(struct kvsm *sm)
{
    if (sm == NULL) {
        return;
    }
    kvsm__sessions_close(&sm->sessions);
    ht_close(&sm->keys);
    craft_free(sm->cfg.alloc, sm);
}

uint64_t kvsm_last_applied(const struct kvsm *sm)
{
    return sm->last_applied;
}

uint64_t kvsm_now_ms(const struct kvsm *sm)
{
    return sm->now_ms;
}

size_t kvsm_key_count(const struct kvsm *sm)
{
    return ht_count(&sm->keys);
}

size_t kvsm_expires_count(const struct kvsm *sm)
{
    return ht_expires(&sm->keys);
}

uint64_t kvsm_next_expiry_ms(const struct kvsm *sm)
{
    const struct ht_entry *e = ht_expire_min(&sm->keys);
    return e != NULL ? (uint64_t)e->expire_ms : 0;
}

int kvsm_clock_encode(uint64_t time_ms, struct buf *out)
{
    static const uint8_t name[] = "craft.clock";
    const uint8_t *argv[1] = {name};
    size_t lens[1] = {sizeof name - 1};
    return kvsm_cmd_encode(time_ms, NULL, 1, argv, lens, out);
}

size_t kvsm_session_count(const struct kvsm *sm)
{
    return sm->sessions.count;
}

/* ---- routing ---- */

static int parse_u64(const uint8_t *p, size_t n, uint64_t *v)
{
    long long ll;
    if (resp_strtoll(p, n, &ll) != 0 || ll < 1) {
        return -1;
    }
    *v = (uint64_t)ll;
    return 0;
}

static enum kvsm_class class_of(const struct kvsm_command *c)
{
    if (c->flags & KVSM_CMD_TX) {
        return KVSM_TX;
    }
    if (c->flags & KVSM_CMD_READ) {
        return KVSM_READ;
    }
    if (c->flags & KVSM_CMD_LOCAL) {
        return KVSM_LOCAL;
    }
    return KVSM_WRITE;
}

/* The CRAFT.EXEC envelope: <id> <seq> [<first-unacked>] <command> ...
 * A command name is never an integer, so the optional field is
 * unambiguous. */
static int classify_exec(size_t argc, const uint8_t *const *argv,
                         const size_t *lens, struct kvsm_route *r,
                         struct buf *err)
{
    if (parse_u64(argv[1], lens[1], &r->s.id) != 0) {
        return resp_write_error(err, "ERR CRAFT.EXEC: invalid session id");
    }
    if (parse_u64(argv[2], lens[2], &r->s.seq) != 0) {
        return resp_write_error(err, "ERR CRAFT.EXEC: invalid sequence number");
    }
    size_t off = 3;
    r->s.first_unacked = r->s.seq;
    long long ll;
    if (resp_strtoll(argv[3], lens[3], &ll) == 0) {
        if (ll < 1 || (uint64_t)ll > r->s.seq) {
            return resp_write_error(
                err, "ERR CRAFT.EXEC: first-unacked must be in [1, seq]");
        }
        r->s.first_unacked = (uint64_t)ll;
        off = 4;
    }
    if (off >= argc) {
        return resp_write_error(
            err, "ERR wrong number of arguments for 'craft.exec' command");
    }
    int rv;
    const struct kvsm_command *c = kvsm__command_check(
        argc - off, argv + off, lens + off, err, &rv, false);
    if (c == NULL) {
        return rv;
    }
    /* A session-wrapped transaction is CRAFT.EXEC <id> <seq> EXEC: the
     * queued commands become one entry carrying the session. */
    if ((c->flags & KVSM_CMD_SESSION) ||
        ((c->flags & KVSM_CMD_TX) && strcmp(c->name, "exec") != 0)) {
        return resp_write_errorf(err, "ERR CRAFT.EXEC cannot wrap %s", c->name);
    }
    r->cls = class_of(c);
    r->cmd_offset = off;
    r->has_session = true;
    return 0;
}

int kvsm_classify(size_t argc, const uint8_t *const *argv, const size_t *lens,
                  struct kvsm_route *out, struct buf *err_reply)
{
    CRAFT_ASSERT(argc >= 1);
    CRAFT_ASSERT(out != NULL && err_reply != NULL);
    struct kvsm_route r;
    memset(&r, 0, sizeof r);
    r.cls = KVSM_REJECT;
    int rv;
    const struct kvsm_command *c =
        kvsm__command_check(argc, argv, lens, err_reply, &rv, false);
    if (c != NULL && strcmp(c->name, "craft.exec") == 0) {
        rv = classify_exec(argc, argv, lens, &r, err_reply);
    } else if (c != NULL) {
        r.cls = class_of(c);
    }
    *out = r;
    return rv;
}

/* ---- apply ---- */

/*
 * Delete the keys whose expiry time the clock has reached, at most
 * KVSM_EXPIRE_PER_APPLY of them (invariant 6), earliest first in the
 * heap's total order (time, then key), so every replica deletes the same
 * keys at the same entry, also after loading a snapshot.  Returns how many
 * it deleted.
 */
size_t kvsm__expire_due(struct kvsm *sm)
{
    size_t n = 0;
    struct ht_entry *e;
    while (n < KVSM_EXPIRE_PER_APPLY &&
           (e = ht_expire_min(&sm->keys)) != NULL &&
           (uint64_t)e->expire_ms <= sm->now_ms) {
        int gone = ht_delete(&sm->keys, e->key, e->key_len);
        CRAFT_ASSERT(gone == 1);
        n++;
    }
    return n;
}

/* Run one command on the write path, appending its reply. */
static int execute(struct kvsm *sm, uint64_t index, size_t argc,
                   const uint8_t *const *argv, const size_t *lens,
                   struct buf *reply)
{
    int rv;
    const struct kvsm_command *c =
        kvsm__command_check(argc, argv, lens, reply, &rv, true);
    if (c == NULL) {
        return rv;
    }
    struct kvsm_exec x = {.ro = sm,
                          .rw = sm,
                          .index = index,
                          .now_ms = sm->now_ms,
                          .argc = argc,
                          .argv = argv,
                          .lens = lens,
                          .out = reply};
    return c->fn(&x);
}

static int open_session(struct kvsm *sm, uint64_t index, struct buf *reply)
{
    struct kvsm_sessions *ss = &sm->sessions;
    /* A full table evicts the least recently used session: deterministic,
     * because the age order is a function of the log alone. */
    if (ss->count >= sm->cfg.sessions_max) {
        kvsm__sessions_remove(ss, ss->head);
    }
    struct kvsm_session *s;
    int rv = kvsm__sessions_add(ss, index, sm->now_ms, &s);
    if (rv != 0) {
        return rv;
    }
    CRAFT_ASSERT(ss->count <= sm->cfg.sessions_max);
    return resp_write_int(reply, (long long)index);
}

#define ARGS_ON_STACK 16

/* Run the next command of an entry (at *off), appending its reply.  In a
 * transaction, session and transaction commands are refused per element,
 * as Redis refuses them while queueing. */
static int run_one(struct kvsm *sm, uint64_t index, const struct kvsm_cmd *c,
                   size_t *off, struct buf *reply)
{
    size_t argc = kvsm_cmd_next(c, off);
    const uint8_t *argv_stack[ARGS_ON_STACK];
    size_t lens_stack[ARGS_ON_STACK];
    const uint8_t **argv = argv_stack;
    size_t *lens = lens_stack;
    int rv = 0;
    if (argc > ARGS_ON_STACK) {
        argv = craft_malloc(sm->cfg.alloc, argc * sizeof *argv);
        lens = craft_malloc(sm->cfg.alloc, argc * sizeof *lens);
        if (argv == NULL || lens == NULL) {
            rv = CRAFT_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < argc; i++) {
        kvsm_cmd_arg(c, off, &argv[i], &lens[i]);
    }
    const struct kvsm_command *cmd = kvsm__command_find(argv[0], lens[0]);
    if (c->multi && cmd != NULL &&
        (cmd->flags & (KVSM_CMD_SESSION | KVSM_CMD_TX))) {
        rv = resp_write_errorf(reply, "ERR %s is not allowed inside MULTI",
                               cmd->name);
    } else {
        rv = execute(sm, index, argc, argv, lens, reply);
    }
out:
    if (argv != argv_stack) {
        craft_free(sm->cfg.alloc, (void *)argv);
        craft_free(sm->cfg.alloc, lens);
    }
    return rv;
}

/* Whether every watched key of a transaction still has the version WATCH
 * read: no key is 0, a key is the index that last created or changed it,
 * so a key deleted (or expired, or flushed) and one changed since both
 * differ.  A key absent at WATCH and absent now counts as unchanged even
 * if it existed in between: the transaction then runs on exactly the
 * state its WATCH observed. */
static bool watch_ok(const struct kvsm *sm, const struct kvsm_cmd *c)
{
    size_t off = 0;
    for (size_t i = 0; i < c->n_watch; i++) {
        struct kvsm_watch w;
        kvsm_cmd_watch(c, &off, &w);
        const struct ht_entry *e = ht_find(&sm->keys, w.key, w.len);
        if (e != NULL && e->expire_ms > 0 &&
            (uint64_t)e->expire_ms <= sm->now_ms) {
            e = NULL; /* due, awaiting deletion: gone for every command */
        }
        if ((e != NULL ? e->mod_index : 0) != w.version) {
            return false;
        }
    }
    return true;
}

/* Run every command of an entry: one reply, or an array for MULTI. */
static int run_entry(struct kvsm *sm, uint64_t index, const struct kvsm_cmd *c,
                     struct buf *reply)
{
    if (c->n_watch > 0 && !watch_ok(sm, c)) {
        return resp_write_null_array(reply); /* EXEC aborted by WATCH */
    }
    int rv = c->multi ? resp_write_array(reply, c->n_cmds) : 0;
    size_t off = 0;
    for (size_t i = 0; rv == 0 && i < c->n_cmds; i++) {
        rv = run_one(sm, index, c, &off, reply);
    }
    CRAFT_ASSERT(rv != 0 || off == c->cmds_len);
    return rv;
}

static int session_exec(struct kvsm *sm, uint64_t index,
                        const struct kvsm_cmd *c, struct buf *reply)
{
    const struct kvsm_session_ref *ref = &c->s;
    struct kvsm_sessions *ss = &sm->sessions;
    struct kvsm_session *s = kvsm__sessions_find(ss, ref->id);
    if (s == NULL) {
        return resp_write_errorf(reply,
                                 "NOSESSION session %llu is unknown or has "
                                 "expired; open a new one with CRAFT.SESSION",
                                 (unsigned long long)ref->id);
    }
    if (ref->seq == 0 || ref->first_unacked == 0 ||
        ref->first_unacked > ref->seq) {
        return resp_write_error(
            reply, "ERR CRAFT.EXEC: first-unacked must be in [1, seq]");
    }
    kvsm__session_ack(ss, s, ref->first_unacked);
    kvsm__sessions_touch(ss, s, sm->now_ms);
    if (ref->seq < s->first_unacked) {
        return resp_write_errorf(
            reply,
            "STALESEQ seq %llu of session %llu was acknowledged and its "
            "reply discarded",
            (unsigned long long)ref->seq, (unsigned long long)ref->id);
    }
    const struct kvsm_saved *saved = kvsm__session_saved(s, ref->seq);
    if (saved != NULL) {
        return buf_append(reply, saved->data, saved->len);
    }
    if (s->n_saved >= sm->cfg.session_replies_max ||
        s->saved_bytes >= sm->cfg.session_bytes_max) {
        return resp_write_errorf(
            reply,
            "SESSIONFULL session %llu holds %zu unacknowledged replies "
            "(%zu bytes); raise first-unacked before sending more",
            (unsigned long long)ref->id, s->n_saved, s->saved_bytes);
    }
    size_t mark = reply->len;
    int rv = run_entry(sm, index, c, reply);
    if (rv != 0) {
        return rv;
    }
    return kvsm__session_save(ss, s, ref->seq, reply->data + mark,
                              reply->len - mark);
}

/* A plain, session-less CRAFT.SESSION entry. */
static int is_session_open(const struct kvsm_cmd *c)
{
    if (c->multi || c->has_session || c->argc != 1) {
        return 0;
    }
    size_t off = 0, n;
    const uint8_t *p;
    kvsm_cmd_next(c, &off);
    kvsm_cmd_arg(c, &off, &p, &n);
    return n == 13 && strncasecmp((const char *)p, "craft.session", 13) == 0;
}

int kvsm_apply(struct kvsm *sm, uint64_t index, const void *payload, size_t len,
               struct buf *reply)
{
    CRAFT_ASSERT(sm != NULL && reply != NULL);
    CRAFT_ASSERT(index > sm->last_applied);
    struct kvsm_cmd c;
    int rv = kvsm_cmd_decode(payload, len, &c);
    if (rv != 0) {
        return rv;
    }
    if (c.time_ms > sm->now_ms) {
        sm->now_ms = c.time_ms;
    }
    sm->keys.mod_stamp = index;
    size_t expired = kvsm__expire_due(sm);
    kvsm__sessions_expire(&sm->sessions, sm->now_ms,
                          sm->cfg.session_timeout_ms);
    size_t mark = reply->len;
    if (is_session_open(&c)) {
        rv = open_session(sm, index, reply);
    } else if (c.has_session) {
        rv = session_exec(sm, index, &c, reply);
    } else {
        rv = run_entry(sm, index, &c, reply);
    }
    if (rv != 0) {
        reply->len = mark;
        return rv;
    }
    sm->last_applied = index;
    /* Invariant 6, O(1): due keys are left only behind a full batch (every
     * command that sets an expiry time sets a future one or deletes). */
    const struct ht_entry *due = ht_expire_min(&sm->keys);
    CRAFT_ASSERT(due == NULL || (uint64_t)due->expire_ms > sm->now_ms ||
                 expired == KVSM_EXPIRE_PER_APPLY);
    /* The O(n) check in debug builds, on states small enough for it to
     * run after every entry (unit and simulator tests). */
    CRAFT_DASSERT(ht_count(&sm->keys) > 4096 || kvsm_check(sm));
    size_t n = 0;
    CRAFT_DASSERT(resp_reply_len(reply->data + mark, reply->len - mark, &n) ==
                      RESP_OK &&
                  n == reply->len - mark);
    (void)n;
    return 0;
}

void kvsm_skip(struct kvsm *sm, uint64_t index)
{
    CRAFT_ASSERT(index > sm->last_applied);
    sm->last_applied = index;
}

/* ---- read-only path ---- */

int kvsm_read(const struct kvsm *sm, size_t argc, const uint8_t *const *argv,
              const size_t *lens, struct buf *reply)
{
    return kvsm_read_at(sm, 0, argc, argv, lens, reply);
}

int kvsm_read_at(const struct kvsm *sm, uint64_t at_ms, size_t argc,
                 const uint8_t *const *argv, const size_t *lens,
                 struct buf *reply)
{
    CRAFT_ASSERT(sm != NULL && reply != NULL);
    CRAFT_ASSERT(argc >= 1);
    int rv;
    const struct kvsm_command *c =
        kvsm__command_check(argc, argv, lens, reply, &rv, false);
    if (c == NULL) {
        return rv;
    }
    if (!(c->flags & (KVSM_CMD_READ | KVSM_CMD_LOCAL))) {
        rv = resp_write_errorf(reply, "ERR '%s' is not a read-only command",
                               c->name);
        return rv ? rv : CRAFT_EINVAL;
    }
    struct kvsm_exec x = {.ro = sm,
                          .rw = NULL,
                          .index = 0,
                          .now_ms = at_ms > sm->now_ms ? at_ms : sm->now_ms,
                          .argc = argc,
                          .argv = argv,
                          .lens = lens,
                          .out = reply};
    return c->fn(&x);
}

int kvsm_check(const struct kvsm *sm)
{
    return ht_check(&sm->keys) && kvsm__check_all_but_keys(sm);
}

int kvsm__check_all_but_keys(const struct kvsm *sm)
{
    if (!kvsm__sessions_check(&sm->sessions, sm->cfg.sessions_max,
                              sm->cfg.session_replies_max)) {
        return 0;
    }
    return sm->sessions.tail == NULL ||
           sm->sessions.tail->last_ms <= sm->now_ms;
}
