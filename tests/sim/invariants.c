/*
 * tests/sim/invariants.c -- the Raft safety properties, checked after every
 * event (Raft paper, Figure 3), incrementally so that a check costs O(what
 * the event changed).
 *
 * Every log entry is summarised by a prefix hash: the hash chain of all
 * entries up to and including it (index, term, type, data).  Two logs hold
 * the same prefix up to i exactly when their prefix hashes at i are equal,
 * so each property becomes a comparison of two 64-bit values:
 *
 *   1. Election safety: at most one leader per term (leader_of_term).
 *   2. Leader append-only: while a node leads in a term, its log is never
 *      truncated and no entry of it changes.
 *   3. Log matching: if two logs hold an entry with the same index and
 *      term, their prefix hashes there are equal (the (index, term) ->
 *      prefix hash map, filled as entries appear in any node's log).
 *   4. Leader completeness: a node taking office holds the prefix of every
 *      committed index (its prefix hash at commit_max equals the committed
 *      one), and every commit a node reports agrees with the committed
 *      prefix.
 *   5. State machine safety: every node applies index i with the same
 *      prefix hash as the committed one, so no two nodes apply different
 *      commands at one index.
 *   6. Each node applies in order without gaps; a snapshot install jumps
 *      forward, never backwards, and carries the committed prefix hash.
 *   7. Durability before replies (Figure 2: "updated on stable storage
 *      before responding to RPCs"): a granted vote, a successful append
 *      acknowledgement and a finished snapshot reply leave only once what
 *      they promise is durable in the sender's sim_storage.
 *
 * Each node's shadow log (struct sim_shadow) mirrors its core's log: it is
 * brought up to date after every step from the update's hints and
 * raft_entry_at(), and sim_audit() compares all of it with the core.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"
#include "util/assert.h"
#include "util/encoding.h"

#define ID(n) ((unsigned long long)(n)->id)
#define U(x) ((unsigned long long)(x))

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t sim__hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h = mix64(h ^ get_u64(b + i));
    }
    uint64_t tail = 0;
    for (size_t k = 0; i + k < n; k++) {
        tail |= (uint64_t)b[i + k] << (8 * k);
    }
    return mix64(h ^ tail);
}

uint64_t sim__chain(uint64_t prev, raft_index index, raft_term term,
                    uint8_t type, const void *data, size_t len)
{
    uint64_t h = mix64(prev ^ index);
    h = mix64(h ^ term);
    h = mix64(h ^ type);
    return mix64(h ^ sim__hash_bytes(data, len));
}

static uint64_t value_of(const struct raft_entry *e)
{
    uint8_t b[8] = {0};
    if (e->buf.len == 0) {
        return 0;
    }
    memcpy(b, e->buf.base, e->buf.len < 8 ? e->buf.len : 8);
    return get_u64(b);
}

/* ---- growable tables ---------------------------------------------------- */

static struct sim_index_rec *idx_rec(struct sim_cluster *c, raft_index i)
{
    if (i >= c->cap_idx) {
        size_t cap = c->cap_idx ? c->cap_idx : 1024;
        while (cap <= i) {
            cap *= 2;
        }
        struct sim_index_rec *t = realloc(c->idx, cap * sizeof *t);
        CRAFT_ASSERT(t != NULL);
        memset(t + c->cap_idx, 0, (cap - c->cap_idx) * sizeof *t);
        c->idx = t;
        c->cap_idx = cap;
    }
    return &c->idx[i];
}

static raft_id *term_leader(struct sim_cluster *c, raft_term term)
{
    if (term >= c->cap_terms) {
        size_t cap = c->cap_terms ? c->cap_terms : 256;
        while (cap <= term) {
            cap *= 2;
        }
        raft_id *t = realloc(c->leader_of_term, cap * sizeof *t);
        CRAFT_ASSERT(t != NULL);
        memset(t + c->cap_terms, 0, (cap - c->cap_terms) * sizeof *t);
        c->leader_of_term = t;
        c->cap_terms = cap;
    }
    return &c->leader_of_term[term];
}

/* The (index, term) -> prefix hash map: open addressing, linear probing,
 * key 0 is empty (index 0 never appears). */
static uint64_t match_key(raft_index index, raft_term term)
{
    CRAFT_ASSERT(index > 0 && index < (1ull << 40) && term < (1ull << 24));
    return (index << 24) | term;
}

static void match_grow(struct sim_cluster *c)
{
    size_t cap = c->cap_match ? 2 * c->cap_match : 4096;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint64_t *vals = calloc(cap, sizeof *vals);
    CRAFT_ASSERT(keys != NULL && vals != NULL);
    for (size_t i = 0; i < c->cap_match; i++) {
        if (c->match_keys[i] == 0) {
            continue;
        }
        size_t j = mix64(c->match_keys[i]) & (cap - 1);
        while (keys[j] != 0) {
            j = (j + 1) & (cap - 1);
        }
        keys[j] = c->match_keys[i];
        vals[j] = c->match_vals[i];
    }
    free(c->match_keys);
    free(c->match_vals);
    c->match_keys = keys;
    c->match_vals = vals;
    c->cap_match = cap;
}

/* Find the slot of key; *found says whether it holds key. */
static size_t match_slot(struct sim_cluster *c, uint64_t key, bool *found)
{
    if (2 * (c->n_match + 1) > c->cap_match) {
        match_grow(c);
    }
    size_t j = mix64(key) & (c->cap_match - 1);
    while (c->match_keys[j] != 0 && c->match_keys[j] != key) {
        j = (j + 1) & (c->cap_match - 1);
    }
    *found = c->match_keys[j] == key;
    return j;
}

/* Property 3: register that some log holds (index, term) with prefix hash
 * phash. */
static void match_register(struct sim_cluster *c, struct sim_node *n,
                           raft_index index, raft_term term, uint64_t phash)
{
    bool found;
    size_t j = match_slot(c, match_key(index, term), &found);
    if (!found) {
        c->match_keys[j] = match_key(index, term);
        c->match_vals[j] = phash;
        c->n_match++;
        return;
    }
    if (c->match_vals[j] != phash) {
        sim_fail(c,
                 "log matching violated: n%llu holds entry %llu of term "
                 "%llu but its log up to there differs from another "
                 "log holding that entry",
                 ID(n), U(index), U(term));
    }
}

static bool match_lookup(struct sim_cluster *c, raft_index index,
                         raft_term term, uint64_t *phash)
{
    bool found;
    size_t j = match_slot(c, match_key(index, term), &found);
    if (found) {
        *phash = c->match_vals[j];
    }
    return found;
}

void sim__invariants_close(struct sim_cluster *c)
{
    free(c->leader_of_term);
    free(c->idx);
    free(c->match_keys);
    free(c->match_vals);
}

/* ---- the shadow log ----------------------------------------------------- */

static void entry_at(struct sim_cluster *c, struct sim_node *n, raft_index i,
                     struct raft_entry *e)
{
    int rv = raft_entry_at(n->r, i, e);
    if (rv != 0 || e->index != i) {
        sim_fail(c,
                 "n%llu: raft_entry_at(%llu) failed (%s) although the "
                 "status says the log holds it",
                 ID(n), U(i), rv != 0 ? craft_strerror(rv) : "wrong index");
    }
}

static struct sim_shadow_entry *shadow_at(struct sim_shadow *s, raft_index i)
{
    CRAFT_ASSERT(i > s->base && i <= s->last);
    return &s->e[i - s->base - 1];
}

static uint64_t shadow_hash(struct sim_shadow *s, raft_index i)
{
    return i == s->base ? s->base_hash : shadow_at(s, i)->phash;
}

static void shadow_reserve(struct sim_shadow *s, raft_index last)
{
    size_t need = (size_t)(last - s->base);
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < need) {
            cap *= 2;
        }
        struct sim_shadow_entry *e = realloc(s->e, cap * sizeof *e);
        CRAFT_ASSERT(e != NULL);
        s->e = e;
        s->cap = cap;
    }
}

void sim__shadow_close(struct sim_shadow *s)
{
    free(s->e);
    memset(s, 0, sizeof *s);
}

/* The prefix hash at a node's new log base: known from its old shadow if
 * the base moved inside it (compaction), else from the committed record or
 * the log matching map (a snapshot installed or restored). */
static uint64_t base_hash_for(struct sim_cluster *c, struct sim_node *n,
                              const struct raft_status *st, raft_index base)
{
    struct sim_shadow *s = &n->log;
    if (base == 0) {
        return 0;
    }
    if (base >= s->base && base <= s->last && s->e != NULL) {
        return shadow_hash(s, base);
    }
    if (base < c->cap_idx && c->idx[base].committed) {
        return c->idx[base].chain;
    }
    uint64_t h;
    if (base == st->snapshot_index &&
        match_lookup(c, base, st->snapshot_term, &h)) {
        return h;
    }
    sim_fail(c,
             "n%llu: its log starts after index %llu, which no node "
             "ever committed",
             ID(n), U(base));
}

/* Recompute the shadow from index `from` to the core's last index. */
static void shadow_fill(struct sim_cluster *c, struct sim_node *n,
                        raft_index from, raft_index last)
{
    struct sim_shadow *s = &n->log;
    CRAFT_ASSERT(from > s->base);
    shadow_reserve(s, last);
    s->last = last;
    uint64_t prev = shadow_hash(s, from - 1);
    for (raft_index i = from; i <= last; i++) {
        struct raft_entry e;
        entry_at(c, n, i, &e);
        uint64_t h = sim__chain(prev, i, e.term, e.type, e.buf.base, e.buf.len);
        struct sim_shadow_entry *se = shadow_at(s, i);
        se->term = e.term;
        se->phash = h;
        match_register(c, n, i, e.term, h);
        prev = h;
    }
}

/* Move the base to new_base (its prefix hash given), keeping the entries
 * above it. */
static void shadow_rebase(struct sim_shadow *s, raft_index new_base,
                          uint64_t base_hash)
{
    if (new_base > s->base && new_base <= s->last) {
        size_t drop = (size_t)(new_base - s->base);
        memmove(s->e, s->e + drop, (size_t)(s->last - new_base) * sizeof *s->e);
    } else {
        s->last = new_base;
    }
    s->base = new_base;
    s->base_hash = base_hash;
}

void sim__shadow_rebuild(struct sim_cluster *c, struct sim_node *n)
{
    struct raft_status st;
    raft_status(n->r, &st);
    raft_index base = st.first_index > 0 ? st.first_index - 1 : 0;
    uint64_t h = base_hash_for(c, n, &st, base);
    n->log.base = base;
    n->log.base_hash = h;
    n->log.last = base;
    if (st.last_index > base) {
        shadow_fill(c, n, base + 1, st.last_index);
    }
}

/* Bring the shadow up to date after an update; returns the lowest index
 * whose entry may have changed (last + 1 if none). */
static raft_index shadow_sync(struct sim_cluster *c, struct sim_node *n,
                              const struct raft_update *u,
                              const struct raft_status *st)
{
    struct sim_shadow *s = &n->log;
    raft_index base = st->first_index > 0 ? st->first_index - 1 : 0;
    raft_index from = st->last_index + 1;
    if (u->truncate_from != 0 && u->truncate_from < from) {
        from = u->truncate_from;
    }
    if (u->n_entries > 0 && u->entries[0].index < from) {
        from = u->entries[0].index;
    }
    if (s->last + 1 < from) {
        from = s->last + 1;
    }
    if (base != s->base) {
        uint64_t h = base_hash_for(c, n, st, base);
        bool inside = base > s->base && base <= s->last;
        shadow_rebase(s, base, h);
        if (!inside) {
            from = base + 1;
        }
    }
    if (from <= base) {
        from = base + 1;
    }
    /* Cheap guard against a log change the update did not announce: the
     * entry below `from` must still have the term we recorded. */
    if (from - 1 > base && from - 1 <= st->last_index) {
        struct raft_entry e;
        entry_at(c, n, from - 1, &e);
        if (e.term != shadow_at(s, from - 1)->term) {
            from = base + 1;
        }
    }
    if (st->last_index < s->last) {
        s->last = st->last_index < base ? base : st->last_index;
    }
    if (from <= st->last_index) {
        shadow_fill(c, n, from, st->last_index);
    } else {
        s->last = st->last_index > base ? st->last_index : base;
    }
    return from;
}

/* ---- the checks --------------------------------------------------------- */

/* Property 4 for a node taking office in term L: it holds every entry
 * committed in a term before L.  (Entries committed in L or later terms --
 * a stale partition may elect a leader of an old term -- are not its
 * business.)  Scanning down over newer commits is short: only a stale node
 * elected behind the cluster's back has any. */
static void check_complete(struct sim_cluster *c, struct sim_node *n)
{
    raft_index m = c->commit_max;
    while (m > 0 && c->idx[m].commit_term >= n->term) {
        m--;
    }
    struct sim_shadow *s = &n->log;
    if (m == 0 || m <= s->base) {
        return;
    }
    if (s->last < m || shadow_hash(s, m) != c->idx[m].chain) {
        sim_fail(c,
                 "leader completeness violated: n%llu leads term %llu "
                 "without entry %llu committed in term %llu",
                 ID(n), U(n->term), U(m), U(c->idx[m].commit_term));
    }
}

/* Property 4 for an entry committed for the first time in term T: every
 * current leader of a later term holds it. */
static void check_leaders_hold(struct sim_cluster *c, raft_index i)
{
    const struct sim_index_rec *rec = &c->idx[i];
    for (unsigned k = 0; k < c->o.n_nodes; k++) {
        struct sim_node *l = &c->nodes[k];
        if (!l->up || l->role != RAFT_LEADER || l->term <= rec->commit_term ||
            i <= l->log.base) {
            continue;
        }
        if (l->log.last < i || shadow_hash(&l->log, i) != rec->chain) {
            sim_fail(c,
                     "leader completeness violated: n%llu leads term "
                     "%llu without entry %llu committed in term %llu",
                     ID(l), U(l->term), U(i), U(rec->commit_term));
        }
    }
}

/* Record and check the commit index a node reports. */
static void check_commit(struct sim_cluster *c, struct sim_node *n,
                         raft_index commit)
{
    struct sim_shadow *s = &n->log;
    if (commit < n->commit) {
        sim_fail(c, "n%llu: commit index went back from %llu to %llu", ID(n),
                 U(n->commit), U(commit));
    }
    n->commit = commit;
    if (commit > s->last) {
        sim_fail(c, "n%llu: commit %llu beyond its last index %llu", ID(n),
                 U(commit), U(s->last));
    }
    if (commit <= s->base) {
        return;
    }
    if (commit <= c->commit_max) {
        if (shadow_hash(s, commit) != c->idx[commit].chain) {
            sim_fail(c,
                     "n%llu: commits a different entry at %llu than "
                     "another node did",
                     ID(n), U(commit));
        }
        return;
    }
    for (raft_index i = c->commit_max + 1; i <= commit; i++) {
        struct sim_index_rec *rec = idx_rec(c, i);
        if (i <= s->base) {
            sim_fail(c,
                     "n%llu: commits %llu past entries no node "
                     "committed",
                     ID(n), U(commit));
        }
        rec->committed = true;
        rec->term = shadow_at(s, i)->term;
        rec->commit_term = n->term;
        rec->chain = shadow_at(s, i)->phash;
        c->commit_max = i;
        check_leaders_hold(c, i);
    }
}

void sim__check_update(struct sim_cluster *c, struct sim_node *n,
                       const struct raft_update *u, raft_index last_before)
{
    bool was_leader = n->role == RAFT_LEADER;
    raft_term old_term = n->term;
    if (u->term < n->term) {
        sim_fail(c, "n%llu: term went back from %llu to %llu", ID(n),
                 U(n->term), U(u->term));
    }

    /* By the persistence contract every change of the log is in the
     * update: entries or a truncation to persist, a snapshot chunk, an
     * install or a compaction.  Without any, the shadow stays as it is
     * (sim_audit() checks that assumption). */
    struct sim_shadow *s = &n->log;
    bool leading_on =
        was_leader && u->role == RAFT_LEADER && u->term == old_term;
    uint64_t old_tail = last_before > s->base ? shadow_hash(s, last_before) : 0;
    raft_index from = s->last + 1;
    if (u->persist_seq != 0 || u->n_entries > 0 || u->truncate_from != 0 ||
        u->snapshot_chunk != NULL || u->install != NULL || u->compact_to != 0) {
        struct raft_status st;
        raft_status(n->r, &st);
        if (u->role != st.role || u->term != st.term) {
            sim_fail(c, "n%llu: update says %s/%llu, status %s/%llu", ID(n),
                     raft_role_name(u->role), U(u->term),
                     raft_role_name(st.role), U(st.term));
        }
        from = shadow_sync(c, n, u, &st);
    }

    /* Property 2, against the hash of the old last entry. */
    if (leading_on) {
        if (u->truncate_from != 0 || s->last < last_before ||
            (from <= last_before && last_before > s->base &&
             shadow_hash(s, last_before) != old_tail)) {
            sim_fail(c,
                     "leader append-only violated: n%llu changed its "
                     "log below %llu while leading term %llu",
                     ID(n), U(last_before), U(u->term));
        }
    }

    n->term = u->term;
    n->role = u->role;

    /* Property 1. */
    if (u->role == RAFT_LEADER) {
        raft_id *who = term_leader(c, u->term);
        if (*who == 0) {
            *who = n->id;
        } else if (*who != n->id) {
            sim_fail(c,
                     "election safety violated: n%llu and n%llu both "
                     "lead term %llu",
                     U(*who), ID(n), U(u->term));
        }
    }
    if (u->commit_index != n->commit || from <= u->commit_index) {
        check_commit(c, n, u->commit_index);
    }
    if (u->role == RAFT_LEADER && !leading_on) {
        check_complete(c, n);
    }
}

void sim__check_apply(struct sim_cluster *c, struct sim_node *n,
                      const struct raft_entry *e)
{
    if (e->index != n->applied + 1) {
        sim_fail(c, "n%llu: applied %llu after %llu (out of order or a gap)",
                 ID(n), U(e->index), U(n->applied));
    }
    if (e->index > n->commit) {
        sim_fail(c, "n%llu: applied %llu beyond its commit index %llu", ID(n),
                 U(e->index), U(n->commit));
    }
    uint64_t h = sim__chain(n->chain, e->index, e->term, e->type, e->buf.base,
                            e->buf.len);
    struct sim_index_rec *rec = idx_rec(c, e->index);
    if (!rec->committed || rec->chain != h) {
        sim_fail(c,
                 "state machine safety violated: n%llu applied at %llu "
                 "an entry (term %llu) that differs from the committed "
                 "one (term %llu)",
                 ID(n), U(e->index), U(e->term), U(rec->term));
    }
    if (!rec->applied) {
        rec->applied = true;
        rec->type = e->type;
        rec->value = value_of(e);
    }
    n->applied = e->index;
    n->chain = h;
    if (e->index > c->applied_max) {
        c->applied_max = e->index;
    }
}

void sim__check_install(struct sim_cluster *c, struct sim_node *n,
                        const struct raft_snapshot_meta *meta, uint64_t chain)
{
    if (meta->index < n->applied) {
        sim_fail(c,
                 "n%llu: snapshot install at %llu moves its state back "
                 "from %llu",
                 ID(n), U(meta->index), U(n->applied));
    }
    if (meta->index >= c->cap_idx || !c->idx[meta->index].committed ||
        c->idx[meta->index].chain != chain) {
        sim_fail(c,
                 "n%llu: installed snapshot %llu does not hold the "
                 "committed state at that index",
                 ID(n), U(meta->index));
    }
    if (meta->index > n->commit) {
        n->commit = meta->index;
    }
}

void sim_audit(struct sim_cluster *c)
{
    for (unsigned k = 0; k < c->o.n_nodes; k++) {
        struct sim_node *n = &c->nodes[k];
        if (!n->up) {
            continue;
        }
        struct raft_status st;
        raft_status(n->r, &st);
        struct sim_shadow *s = &n->log;
        if (s->last != st.last_index) {
            sim_fail(c, "audit: n%llu shadow ends at %llu, core at %llu", ID(n),
                     U(s->last), U(st.last_index));
        }
        uint64_t prev = s->base_hash;
        for (raft_index i = s->base + 1; i <= s->last; i++) {
            struct raft_entry e;
            entry_at(c, n, i, &e);
            prev = sim__chain(prev, i, e.term, e.type, e.buf.base, e.buf.len);
            if (prev != shadow_at(s, i)->phash) {
                sim_fail(c,
                         "audit: n%llu entry %llu changed without an "
                         "update announcing it",
                         ID(n), U(i));
            }
        }
    }
}

/* The durable entry at index i, or NULL. */
static const struct raft_entry *durable_entry(const struct sim_storage *st,
                                              raft_index i)
{
    if (st->n_log == 0 || i < st->log[0].index ||
        i > st->log[st->n_log - 1].index) {
        return NULL;
    }
    return &st->log[i - st->log[0].index];
}

void sim__check_reply_durable(struct sim_cluster *c, struct sim_node *n,
                              const struct raft_message *m)
{
    const struct sim_storage *st = &n->st;
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE_RESP:
        if (m->vote_resp.granted && !m->vote_resp.pre &&
            (st->hs.term != m->term || st->hs.vote != m->to)) {
            sim_fail(c,
                     "n%llu grants its vote in term %llu to n%llu before "
                     "that vote is durable (durable: term %llu vote %llu)",
                     ID(n), U(m->term), U(m->to), U(st->hs.term),
                     U(st->hs.vote));
        }
        break;
    case RAFT_MSG_APPEND_RESP: {
        raft_index i = m->append_resp.index;
        if (!m->append_resp.success) {
            break;
        }
        if (st->hs.term < m->term) {
            sim_fail(c,
                     "n%llu acknowledges an append of term %llu before "
                     "that term is durable (durable term %llu)",
                     ID(n), U(m->term), U(st->hs.term));
        }
        if (i == 0 || (st->has_snap && i <= st->snap.index)) {
            break;
        }
        const struct raft_entry *e = durable_entry(st, i);
        struct raft_entry mine;
        if (e == NULL || raft_entry_at(n->r, i, &mine) != 0 ||
            mine.term != e->term) {
            sim_fail(c, "n%llu acknowledges entry %llu before it is durable",
                     ID(n), U(i));
        }
        break;
    }
    case RAFT_MSG_SNAPSHOT_RESP: {
        /* Done: a durable snapshot covers the index, or the durable log
         * already holds it (the follower had the entries anyway). */
        raft_index i = m->snapshot_resp.index;
        const struct raft_entry *e = durable_entry(st, i);
        struct raft_entry mine;
        bool in_log = e != NULL && raft_entry_at(n->r, i, &mine) == 0 &&
                      mine.term == e->term;
        if (m->snapshot_resp.done && !in_log &&
            (!st->has_snap || st->snap.index < i)) {
            sim_fail(c,
                     "n%llu reports snapshot %llu installed before it is "
                     "durable",
                     ID(n), U(i));
        }
        break;
    }
    case RAFT_MSG_VOTE:
    case RAFT_MSG_APPEND:
    case RAFT_MSG_SNAPSHOT:
    case RAFT_MSG_TIMEOUT_NOW:
        break;
    }
}
