/*
 * session.h -- the client session table of the KV state machine: which
 * (session, seq) pairs have run and the replies the client has not yet
 * acknowledged.
 *
 * Invariants:
 *   1. Sessions are in a list ordered by last_ms, oldest first (every touch
 *      moves a session to the tail, and the clock never goes backwards), so
 *      expiry and eviction take from the head in O(1) and give the same
 *      result on every replica.
 *   2. A session's saved replies are sorted by seq, all >= first_unacked,
 *      and there are at most the configured replies_max of them.
 *   3. count <= sessions_max; every listed session is in exactly one hash
 *      chain, under bucket (id * golden) >> shift.
 */
#ifndef CRAFT_KV_SESSION_H
#define CRAFT_KV_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "craft/common.h"

struct kvsm_saved {
    uint64_t seq;
    uint8_t *data; /* the RESP reply bytes */
    size_t len;
};

struct kvsm_session {
    uint64_t id;
    uint64_t last_ms;       /* leader time of the last request */
    uint64_t first_unacked; /* replies below this seq are forgotten */
    struct kvsm_session *hnext;
    struct kvsm_session *prev, *next; /* age list */
    struct kvsm_saved *saved;
    size_t n_saved;
    size_t cap_saved;
    size_t saved_bytes; /* sum of the saved replies' lengths */
};

struct kvsm_sessions {
    const struct craft_alloc *alloc;
    struct kvsm_session **buckets;
    size_t n_buckets; /* a power of two >= sessions_max */
    struct kvsm_session *head, *tail;
    size_t count;
};

int kvsm__sessions_init(struct kvsm_sessions *ss,
                        const struct craft_alloc *alloc, size_t sessions_max);
void kvsm__sessions_close(struct kvsm_sessions *ss);

struct kvsm_session *kvsm__sessions_find(const struct kvsm_sessions *ss,
                                         uint64_t id);

/* Add a session at the tail (it must not exist).  0 or CRAFT_ENOMEM. */
int kvsm__sessions_add(struct kvsm_sessions *ss, uint64_t id, uint64_t now_ms,
                       struct kvsm_session **out);

void kvsm__sessions_remove(struct kvsm_sessions *ss, struct kvsm_session *s);

/* Drop sessions idle for timeout_ms or longer.  Returns how many. */
size_t kvsm__sessions_expire(struct kvsm_sessions *ss, uint64_t now_ms,
                             uint64_t timeout_ms);

/* Mark activity: last_ms = now_ms and move to the tail. */
void kvsm__sessions_touch(struct kvsm_sessions *ss, struct kvsm_session *s,
                          uint64_t now_ms);

/* Raise first_unacked (never lowers it) and free replies below it. */
void kvsm__session_ack(struct kvsm_sessions *ss, struct kvsm_session *s,
                       uint64_t first_unacked);

/* The saved reply for seq, or NULL. */
const struct kvsm_saved *kvsm__session_saved(const struct kvsm_session *s,
                                             uint64_t seq);

/* Save a copy of a reply under seq (not yet saved).  0 or CRAFT_ENOMEM. */
int kvsm__session_save(struct kvsm_sessions *ss, struct kvsm_session *s,
                       uint64_t seq, const uint8_t *data, size_t len);

/* O(n) consistency check.  1 if consistent. */
int kvsm__sessions_check(const struct kvsm_sessions *ss, size_t sessions_max,
                         size_t replies_max);

#endif /* CRAFT_KV_SESSION_H */
