/*
 * Per-follower flow control on the leader (after etcd-io/raft's Progress):
 *
 *   state      sends                               leaves when
 *   PROBE      one append at next - 1, again each   a success: REPLICATE;
 *              heartbeat until answered             next-1 compacted: SNAPSHOT
 *   REPLICATE  pipelined appends from next, at      a rejection above match,
 *              most max_inflight unanswered         unreachable, stall: PROBE
 *   SNAPSHOT   chunks of one pinned snapshot, one   installed: REPLICATE
 *              in flight
 *
 * Invariants:
 *   1. match < next <= last index + 1.
 *   2. In REPLICATE the in-flight ring holds the increasing last indices of
 *      unanswered appends, all >= next - 1 ... > match, at most
 *      max_inflight of them; it is empty in other states.
 */
#include <string.h>

#include "raft/core.h"
#include "util/alloc.h"
#include "util/assert.h"

int raft__progress_init(struct raft *r)
{
    size_t per = r->opts.max_inflight;
    raft_index *block =
        craft_calloc(r->alloc, (size_t)r->config.n * per, sizeof *block);
    if (block == NULL) {
        return CRAFT_ENOMEM;
    }
    for (unsigned i = 0; i < r->config.n; i++) {
        r->prs[i].id = r->config.ids[i];
        r->prs[i].inflight = block + (size_t)i * per;
    }
    return 0;
}

void raft__progress_close(struct raft *r)
{
    craft_free(r->alloc, r->prs[0].inflight);
    r->prs[0].inflight = NULL;
}

void raft__progress_reset(struct raft *r)
{
    raft_index next = raft__log_last(&r->log) + 1;
    for (unsigned i = 0; i < r->config.n; i++) {
        struct raft_progress *pr = &r->prs[i];
        raft_index *ring = pr->inflight;
        raft_id id = pr->id;
        memset(pr, 0, sizeof *pr);
        pr->id = id;
        pr->inflight = ring;
        pr->state = RAFT_PROGRESS_PROBE;
        pr->next = next;
    }
}

void raft__progress_probe(struct raft_progress *pr)
{
    pr->state = RAFT_PROGRESS_PROBE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->in_count = 0;
    pr->stall_ticks = 0;
}

void raft__progress_replicate(struct raft_progress *pr)
{
    pr->state = RAFT_PROGRESS_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    pr->in_count = 0;
    pr->stall_ticks = 0;
}

void raft__progress_snapshot(struct raft_progress *pr,
                             const struct raft_snapshot_meta *snap)
{
    CRAFT_ASSERT(snap->index > pr->match && snap->term > 0);
    pr->state = RAFT_PROGRESS_SNAPSHOT;
    pr->snap_index = snap->index;
    pr->snap_term = snap->term;
    pr->snap_size = snap->size;
    pr->snap_acked = pr->snap_sent = 0;
    pr->snap_idle = 0;
    pr->probe_sent = false;
    pr->in_count = 0;
}

bool raft__inflight_full(const struct raft *r, const struct raft_progress *pr)
{
    return pr->in_count >= r->opts.max_inflight;
}

void raft__inflight_add(const struct raft *r, struct raft_progress *pr,
                        raft_index last)
{
    unsigned cap = r->opts.max_inflight;
    CRAFT_ASSERT(pr->in_count < cap);
    unsigned pos = (pr->in_head + pr->in_count) % cap;
    CRAFT_ASSERT(pr->in_count == 0 ||
                 pr->inflight[(pos + cap - 1) % cap] < last);
    pr->inflight[pos] = last;
    pr->in_count++;
}

void raft__inflight_free_to(const struct raft *r, struct raft_progress *pr,
                            raft_index index)
{
    unsigned cap = r->opts.max_inflight;
    while (pr->in_count > 0 && pr->inflight[pr->in_head] <= index) {
        pr->in_head = (pr->in_head + 1) % cap;
        pr->in_count--;
    }
}
