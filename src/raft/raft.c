/* Temporary skeleton so that dependents can build against raft.h; the real
 * core replaces it in the next commits. */
#include <string.h>

#include "craft/raft.h"
#include "util/alloc.h"

struct raft {
    raft_id id;
    struct raft_config config;
    struct raft_options opts;
    const struct craft_alloc *alloc;
};

void raft_options_default(struct raft_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->election_ticks_min = 25;
    opts->election_ticks_max = 50;
    opts->heartbeat_ticks = 10;
    opts->max_msg_entries = 64;
    opts->max_msg_bytes = 1u << 20;
    opts->max_inflight = 64;
    opts->snapshot_chunk_bytes = 1u << 20;
    opts->pre_vote = true;
    opts->check_quorum = true;
}

int raft_new(raft_id id, const struct raft_config *config,
             const struct raft_options *opts, uint64_t seed,
             const struct raft_restore *restore,
             const struct craft_alloc *alloc, struct raft **out)
{
    (void)seed;
    (void)restore;
    struct raft *r = craft_calloc(alloc, 1, sizeof *r);
    if (r == NULL) {
        return CRAFT_ENOMEM;
    }
    r->id = id;
    r->config = *config;
    if (opts != NULL) {
        r->opts = *opts;
    } else {
        raft_options_default(&r->opts);
    }
    r->alloc = alloc;
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    if (r != NULL) {
        craft_free(r->alloc, r);
    }
}

int raft_step(struct raft *r, struct raft_event *ev, struct raft_update *u)
{
    (void)ev;
    memset(u, 0, sizeof *u);
    u->role = RAFT_FOLLOWER;
    (void)r;
    return 0;
}

void raft_status(const struct raft *r, struct raft_status *st)
{
    memset(st, 0, sizeof *st);
    st->id = r->id;
    st->role = RAFT_FOLLOWER;
}

int raft_entry_at(const struct raft *r, raft_index i, struct raft_entry *out)
{
    (void)r;
    (void)i;
    (void)out;
    return CRAFT_ENOTFOUND;
}

size_t raft_message_encoded_size(const struct raft_message *m)
{
    (void)m;
    return 0;
}

int raft_message_encode(const struct raft_message *m, uint8_t *buf, size_t cap)
{
    (void)m;
    (void)buf;
    (void)cap;
    return CRAFT_ETOOBIG;
}

int raft_message_decode(const uint8_t *buf, size_t len,
                        struct raft_entry *scratch, size_t n_scratch,
                        struct raft_message *m)
{
    (void)buf;
    (void)len;
    (void)scratch;
    (void)n_scratch;
    (void)m;
    return CRAFT_EPROTO;
}

const char *raft_role_name(int role)
{
    (void)role;
    return "?";
}

const char *raft_msg_type_name(int type)
{
    (void)type;
    return "?";
}
