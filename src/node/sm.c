/*
 * The node runtime's adapter over the KV state machine (src/kv/kvsm.h).
 * The only file of src/node/ that knows the KV layer's API.
 */
#include "node/sm.h"

#include <stdlib.h>
#include <sys/random.h>
#include <uv.h>

#include "craft/common.h"
#include "kv/kvsm.h"
#include "server/resp.h"
#include "util/assert.h"
#include "util/log.h"

struct node_sm {
    struct kvsm_config config;
    struct kvsm *kv;
    struct buf discard; /* replies nobody waits for (followers) */
};

int node_sm_new(struct node_sm **out)
{
    struct node_sm *sm = calloc(1, sizeof *sm);
    if (sm == NULL) {
        return CRAFT_ENOMEM;
    }
    kvsm_config_default(&sm->config);
    buf_init(&sm->discard);
    /* A per-process hash key, so that no client can predict collisions. */
    if (getrandom(sm->config.hash_seed, sizeof sm->config.hash_seed, 0) !=
        (ssize_t)sizeof sm->config.hash_seed) {
        sm->config.hash_seed[0] = uv_hrtime();
        sm->config.hash_seed[1] = (uint64_t)(uintptr_t)sm;
    }
    int rv = kvsm_new(&sm->config, &sm->kv);
    if (rv != 0) {
        free(sm);
        return rv;
    }
    *out = sm;
    return 0;
}

void node_sm_free(struct node_sm *sm)
{
    buf_close(&sm->discard);
    kvsm_free(sm->kv);
    free(sm);
}

enum node_sm_kind node_sm_classify(struct node_sm *sm, size_t argc,
                                   const uint8_t *const *argv,
                                   const size_t *lens, struct buf *reply)
{
    (void)sm;
    struct kvsm_route r;
    if (kvsm_classify(argc, argv, lens, &r, reply) != 0) {
        return NODE_SM_INVALID;
    }
    switch (r.cls) {
    case KVSM_REJECT:
        return NODE_SM_INVALID;
    case KVSM_TX:
        /* The front end keeps the MULTI queue and never hands these on;
         * refuse rather than run a transaction's commands one by one. */
        buf_reset(reply);
        resp_write_error(reply, "ERR MULTI/EXEC/DISCARD must be handled by "
                                "the connection");
        return NODE_SM_INVALID;
    case KVSM_LOCAL:
    case KVSM_READ:
        return NODE_SM_READ;
    case KVSM_WRITE:
        return NODE_SM_WRITE;
    }
    CRAFT_UNREACHABLE();
    return NODE_SM_INVALID;
}

int node_sm_encode(struct node_sm *sm, size_t argc, const uint8_t *const *argv,
                   const size_t *lens, uint64_t now_ms, struct buf *out,
                   struct buf *reply)
{
    (void)sm;
    struct kvsm_route r;
    int rv = kvsm_classify(argc, argv, lens, &r, reply);
    if (rv != 0) {
        return rv;
    }
    CRAFT_ASSERT(r.cls == KVSM_WRITE);
    CRAFT_ASSERT(r.cmd_offset < argc);
    return kvsm_cmd_encode(now_ms, r.has_session ? &r.s : NULL,
                           argc - r.cmd_offset, argv + r.cmd_offset,
                           lens + r.cmd_offset, out);
}

int node_sm_check(struct node_sm *sm, size_t argc, const uint8_t *const *argv,
                  const size_t *lens, struct buf *reply)
{
    size_t before = reply->len;
    enum node_sm_kind kind = node_sm_classify(sm, argc, argv, lens, reply);
    if (kind == NODE_SM_INVALID) {
        if (reply->len == before) {
            resp_write_error(reply, "ERR out of memory");
        }
        return CRAFT_EINVAL;
    }
    return 0;
}

int node_sm_encode_multi(struct node_sm *sm, size_t n_cmds,
                         const size_t *cmd_argc, const uint8_t *const *argv,
                         const size_t *lens, size_t n_watch,
                         uint8_t *const *watch_keys, const size_t *watch_lens,
                         const uint64_t *watch_versions, uint64_t now_ms,
                         struct buf *out, struct buf *reply)
{
    (void)sm;
    if ((n_cmds == 0 && n_watch == 0) || n_cmds > KVSM_MULTI_MAX) {
        resp_write_error(reply, "ERR too many commands in one MULTI");
        return CRAFT_EINVAL;
    }
    struct kvsm_argv *cmds = calloc(n_cmds > 0 ? n_cmds : 1, sizeof *cmds);
    if (cmds == NULL) {
        return CRAFT_ENOMEM;
    }
    size_t a = 0;
    for (size_t i = 0; i < n_cmds; i++) {
        cmds[i].argc = cmd_argc[i];
        cmds[i].argv = argv + a;
        cmds[i].lens = lens + a;
        a += cmd_argc[i];
    }
    struct kvsm_watch *w = NULL;
    if (n_watch > 0) {
        w = calloc(n_watch, sizeof *w);
        if (w == NULL) {
            free(cmds);
            return CRAFT_ENOMEM;
        }
        for (size_t i = 0; i < n_watch; i++) {
            w[i].key = watch_keys[i];
            w[i].len = watch_lens[i];
            w[i].version = watch_versions[i];
        }
    }
    int rv = n_watch > 0 ? kvsm_multi_encode_watch(now_ms, NULL, n_cmds, cmds,
                                                   n_watch, w, out)
                         : kvsm_multi_encode(now_ms, NULL, n_cmds, cmds, out);
    free(w);
    free(cmds);
    return rv;
}

int node_sm_apply(struct node_sm *sm, raft_index index, const void *data,
                  size_t len, struct buf *reply)
{
    buf_reset(&sm->discard);
    int rv = kvsm_apply(sm->kv, index, data, len,
                        reply != NULL ? reply : &sm->discard);
    /* Keep the buffer for the next entry, unless a large reply grew it. */
    if (sm->discard.cap > (1u << 20)) {
        buf_close(&sm->discard);
    }
    return rv;
}

void node_sm_skip(struct node_sm *sm, raft_index index)
{
    kvsm_skip(sm->kv, index);
}

int node_sm_read(struct node_sm *sm, size_t argc, const uint8_t *const *argv,
                 const size_t *lens, struct buf *reply)
{
    return node_sm_read_at(sm, 0, argc, argv, lens, reply);
}

int node_sm_read_at(struct node_sm *sm, uint64_t at_ms, size_t argc,
                    const uint8_t *const *argv, const size_t *lens,
                    struct buf *reply)
{
    struct kvsm_route r;
    int rv = kvsm_classify(argc, argv, lens, &r, reply);
    if (rv != 0) {
        return rv;
    }
    CRAFT_ASSERT(r.cls == KVSM_READ || r.cls == KVSM_LOCAL);
    rv = kvsm_read_at(sm->kv, at_ms, argc - r.cmd_offset, argv + r.cmd_offset,
                      lens + r.cmd_offset, reply);
    /* CRAFT_EINVAL comes with its error reply written. */
    return rv == CRAFT_EINVAL && reply->len > 0 ? 0 : rv;
}

static int write_file(void *ctx, const void *p, size_t n)
{
    return fwrite(p, 1, n, ctx) == n ? 0 : CRAFT_EIO;
}

int node_sm_snapshot_write(struct node_sm *sm, FILE *f)
{
    return kvsm_snapshot_write(sm->kv, write_file, f);
}

struct load_ctx {
    node_sm_read_cb cb;
    void *data;
};

static long long read_cb(void *ctx, void *p, size_t n)
{
    struct load_ctx *l = ctx;
    return (long long)l->cb(l->data, p, n);
}

int node_sm_snapshot_load(struct node_sm *sm, node_sm_read_cb cb, void *data)
{
    struct load_ctx l = {.cb = cb, .data = data};
    struct kvsm *fresh;
    int rv = kvsm_snapshot_load(&sm->config, read_cb, &l, &fresh);
    if (rv == CRAFT_EVERSION) {
        LOG_ERRORF("the snapshot's KV format is not version %d: format 1 "
                   "(before craftd kept per-key WATCH versions) cannot be "
                   "loaded; start from an empty data dir and restore the "
                   "keys, or use the craftd that wrote it",
                   KVSM_SNAPSHOT_VERSION);
    }
    if (rv != 0) {
        return rv;
    }
    /* Swap: an install replaces the state atomically. */
    kvsm_free(sm->kv);
    sm->kv = fresh;
    return 0;
}

struct node_sm_parsed {
    struct kvsm_config config; /* a copy: the parse may run on a thread */
    struct kvsm *kv;           /* NULL until parsed */
};

struct node_sm_parsed *node_sm_parsed_new(const struct node_sm *sm)
{
    struct node_sm_parsed *p = calloc(1, sizeof *p);
    if (p != NULL) {
        p->config = sm->config;
    }
    return p;
}

int node_sm_snapshot_parse(struct node_sm_parsed *p, node_sm_read_cb cb,
                           void *data)
{
    CRAFT_ASSERT(p != NULL && p->kv == NULL);
    struct load_ctx l = {.cb = cb, .data = data};
    return kvsm_snapshot_load(&p->config, read_cb, &l, &p->kv);
}

void node_sm_snapshot_swap(struct node_sm *sm, struct node_sm_parsed *p)
{
    CRAFT_ASSERT(p != NULL && p->kv != NULL);
    kvsm_free(sm->kv);
    sm->kv = p->kv;
    free(p);
}

void node_sm_parsed_free(struct node_sm_parsed *p)
{
    if (p->kv != NULL) {
        kvsm_free(p->kv);
    }
    free(p);
}

uint64_t node_sm_keys(const struct node_sm *sm)
{
    return kvsm_key_count(sm->kv);
}

uint64_t node_sm_now_ms(const struct node_sm *sm)
{
    return kvsm_now_ms(sm->kv);
}

uint64_t node_sm_next_expiry_ms(const struct node_sm *sm)
{
    return kvsm_next_expiry_ms(sm->kv);
}

uint64_t node_sm_expires(const struct node_sm *sm)
{
    return kvsm_expires_count(sm->kv);
}

int node_sm_clock_encode(uint64_t now_ms, struct buf *out)
{
    return kvsm_clock_encode(now_ms, out);
}
