/*
 * The in-memory Raft log: the entries after a base point, which is either
 * the start of time (index 0, term 0) or a point up to which the log was
 * compacted into a snapshot.
 *
 * Invariants:
 *   1. entries[k] has index base_index + 1 + k (indices are contiguous).
 *   2. Terms never decrease along the log, and the first entry's term is
 *      >= base_term.
 *   3. Every entry owns its payload (buf.base is NULL iff buf.len == 0).
 *
 * The term of base_index is kept so that an append whose prev_index is the
 * base can still be checked (Raft paper §5.3, consistency check).
 */
#ifndef CRAFT_RAFT_LOG_H
#define CRAFT_RAFT_LOG_H

#include "craft/raft.h"

struct raft_log {
    const struct craft_alloc *alloc;
    raft_index base_index; /* last index no longer held (0: none) */
    raft_term base_term;   /* its term */
    struct raft_entry *entries;
    size_t n;   /* entries held */
    size_t cap; /* slots allocated */
};

void raft__log_init(struct raft_log *l, const struct craft_alloc *alloc);
void raft__log_close(struct raft_log *l);

static inline raft_index raft__log_last(const struct raft_log *l)
{
    return l->base_index + l->n;
}

static inline raft_index raft__log_first(const struct raft_log *l)
{
    return l->base_index + 1;
}

/* The term of entry i: base_term for the base, 0 for index 0, and 0 with
 * *known false when i is compacted away or beyond the end. */
raft_term raft__log_term(const struct raft_log *l, raft_index i, bool *known);

raft_term raft__log_last_term(const struct raft_log *l);

/* Entry i, which must be held (base_index < i <= last). */
const struct raft_entry *raft__log_get(const struct raft_log *l, raft_index i);

/* Append one entry at last + 1 with a copy of buf.  0 or CRAFT_ENOMEM
 * (log unchanged). */
int raft__log_append(struct raft_log *l, raft_term term, uint8_t type,
                     const struct raft_buffer *buf);

/* Room for n more entries, so that a following run of n appends that only
 * copy payloads cannot fail half-way on the array.  0 or CRAFT_ENOMEM. */
int raft__log_reserve(struct raft_log *l, size_t n);

/* Drop entries >= i (base_index < i). */
void raft__log_truncate(struct raft_log *l, raft_index i);

/* Drop entries <= i (base_index <= i <= last) making i the base. */
void raft__log_compact(struct raft_log *l, raft_index i);

/* Drop everything and restart the log after (index, term). */
void raft__log_reset(struct raft_log *l, raft_index index, raft_term term);

/* The last index of term t at or before `from`, or 0 if none held. */
raft_index raft__log_last_of_term(const struct raft_log *l, raft_term t,
                                  raft_index from);

/* The first index of the run of term t ending at i (i held). */
raft_index raft__log_first_of_term(const struct raft_log *l, raft_index i);

#endif /* CRAFT_RAFT_LOG_H */
