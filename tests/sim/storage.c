/*
 * tests/sim/storage.c -- a node's simulated stable storage.
 *
 * Only what an fsync completed is here: an update's persistence waits in a
 * sim_pending record (a deep copy, since the update's pointers die at the
 * next step) until its simulated fsync finishes, and a crash discards the
 * pending records.  The durable log is a contiguous array of entries with
 * owned data.
 *
 * Invariants:
 *   1. log[k].index == log[0].index + k (no gaps).
 *   2. Appended entries follow the durable log without a gap after the
 *      update's truncation; an update that breaks this is a core bug and
 *      fails the run.
 *   3. A snapshot becomes durable only with its last chunk, and only if it
 *      is newer than the durable one.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"
#include "util/assert.h"

/* Size of a log entry as a durable record: term, index, type, length and
 * data, as the wire format frames it.  Used for the 2D log-size bound. */
#define SIM_ENTRY_OVERHEAD (8 + 8 + 1 + 4)
#define SIM_HARD_STATE_SIZE (8 + 8)

static void *dup_bytes(const void *p, size_t n)
{
    if (n == 0) {
        return NULL;
    }
    void *q = malloc(n);
    CRAFT_ASSERT(q != NULL);
    memcpy(q, p, n);
    return q;
}

static void entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    dst->buf.base = dup_bytes(src->buf.base, src->buf.len);
}

struct sim_pending *sim__pending_new(const struct raft_update *u)
{
    if (u->persist_seq == 0) {
        return NULL;
    }
    struct sim_pending *p = calloc(1, sizeof *p);
    CRAFT_ASSERT(p != NULL);
    p->seq = u->persist_seq;
    p->hs_changed = u->hs_changed;
    p->hs = u->hs;
    p->truncate_from = u->truncate_from;
    if (u->n_entries > 0) {
        p->entries = calloc(u->n_entries, sizeof *p->entries);
        CRAFT_ASSERT(p->entries != NULL);
        for (size_t i = 0; i < u->n_entries; i++) {
            entry_copy(&p->entries[i], &u->entries[i]);
        }
        p->n_entries = u->n_entries;
    }
    if (u->snapshot_chunk != NULL) {
        p->has_chunk = true;
        p->chunk = *u->snapshot_chunk;
        p->chunk.data.base = dup_bytes(u->snapshot_chunk->data.base,
                                       u->snapshot_chunk->data.len);
    }
    return p;
}

void sim__pending_free(struct sim_pending *p)
{
    for (size_t i = 0; i < p->n_entries; i++) {
        free(p->entries[i].buf.base);
    }
    free(p->entries);
    free(p->chunk.data.base);
    free(p);
}

static void truncate_log(struct sim_storage *s, raft_index from)
{
    while (s->n_log > 0 && s->log[s->n_log - 1].index >= from) {
        free(s->log[--s->n_log].buf.base);
    }
}

static void append_entry(struct sim_cluster *c, struct sim_storage *s,
                         const struct raft_entry *e)
{
    if (s->n_log > 0 && e->index != s->log[s->n_log - 1].index + 1) {
        sim_fail(c, "storage: entry %llu appended after %llu",
                 (unsigned long long)e->index,
                 (unsigned long long)s->log[s->n_log - 1].index);
    }
    if (s->n_log == s->cap_log) {
        size_t cap = s->cap_log ? 2 * s->cap_log : 64;
        struct raft_entry *log = realloc(s->log, cap * sizeof *log);
        CRAFT_ASSERT(log != NULL);
        s->log = log;
        s->cap_log = cap;
    }
    entry_copy(&s->log[s->n_log++], e);
}

/* The current snapshot becomes the previous one (still readable for a
 * transfer in progress); the one before is deleted. */
static void retire_snapshot(struct sim_storage *s)
{
    free(s->prev_data);
    s->has_prev = s->has_snap;
    s->prev = s->snap;
    s->prev_data = s->snap_data;
    s->prev_len = s->snap_len;
    s->snap_data = NULL;
    s->snap_len = 0;
}

static void write_chunk(struct sim_cluster *c, struct sim_storage *s,
                        const struct raft_snapshot_chunk *ch)
{
    if (ch->offset == 0) {
        free(s->part_data);
        s->part_data = NULL;
        s->part_len = 0;
        s->has_part = true;
        s->part = ch->meta;
    }
    if (!s->has_part || s->part.index != ch->meta.index ||
        s->part.term != ch->meta.term || ch->offset != s->part_len) {
        sim_fail(c,
                 "storage: snapshot chunk %llu@%llu does not continue "
                 "the partial snapshot",
                 (unsigned long long)ch->meta.index,
                 (unsigned long long)ch->offset);
    }
    if (ch->data.len > 0) {
        uint8_t *d = realloc(s->part_data, s->part_len + ch->data.len);
        CRAFT_ASSERT(d != NULL);
        memcpy(d + s->part_len, ch->data.base, ch->data.len);
        s->part_data = d;
        s->part_len += ch->data.len;
    }
    if (ch->last && s->has_snap && s->snap.index > s->part.index) {
        /* The application took a newer snapshot while this one was being
         * written (it applied the same entries from its log): keep the
         * newer one, as raft.h (struct raft_snapshot_chunk) requires. */
        free(s->part_data);
        s->has_part = false;
        s->part_data = NULL;
        s->part_len = 0;
        return;
    }
    if (ch->last) {
        retire_snapshot(s);
        s->has_snap = true;
        s->snap = s->part;
        s->snap_data = s->part_data;
        s->snap_len = s->part_len;
        s->has_part = false;
        s->part_data = NULL;
        s->part_len = 0;
    }
}

void sim__storage_commit(struct sim_cluster *c, struct sim_storage *s,
                         const struct sim_pending *p)
{
    if (p->hs_changed) {
        s->hs = p->hs;
    }
    if (p->truncate_from != 0) {
        truncate_log(s, p->truncate_from);
    }
    if (p->n_entries > 0 && s->n_log > 0 &&
        p->entries[0].index <= s->log[s->n_log - 1].index) {
        /* Appending at or below the durable tail overwrites it. */
        truncate_log(s, p->entries[0].index);
    }
    for (size_t i = 0; i < p->n_entries; i++) {
        append_entry(c, s, &p->entries[i]);
    }
    if (p->has_chunk) {
        write_chunk(c, s, &p->chunk);
    }
}

void sim__storage_compact(struct sim_storage *s, raft_index index)
{
    size_t k = 0;
    while (k < s->n_log && s->log[k].index <= index) {
        free(s->log[k].buf.base);
        k++;
    }
    if (k > 0) {
        memmove(s->log, s->log + k, (s->n_log - k) * sizeof *s->log);
        s->n_log -= k;
    }
}

void sim__storage_set_snapshot(struct sim_storage *s,
                               const struct raft_snapshot_meta *meta,
                               const void *data, size_t len)
{
    retire_snapshot(s);
    s->has_snap = true;
    s->snap = *meta;
    s->snap_data = dup_bytes(data, len);
    s->snap_len = len;
}

size_t sim__storage_state_size(const struct sim_storage *s)
{
    size_t size = SIM_HARD_STATE_SIZE;
    for (size_t i = 0; i < s->n_log; i++) {
        size += SIM_ENTRY_OVERHEAD + s->log[i].buf.len;
    }
    return size;
}

void sim__storage_close(struct sim_storage *s)
{
    truncate_log(s, 0);
    free(s->log);
    free(s->snap_data);
    free(s->prev_data);
    free(s->part_data);
    memset(s, 0, sizeof *s);
}
