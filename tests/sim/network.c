/*
 * tests/sim/network.c -- the simulated network.
 *
 * A message is deep-copied when it is sent (entries, their data and the
 * snapshot chunk land in one allocation owned by the queued event), so the
 * sender's core may reuse its buffers at once, as a real transport allows.
 *
 * Rules, after labrpc:
 *   1. A message passes only if both ends are connected and the directed
 *      link is up, both when it is sent and when it arrives.
 *   2. Per link: loss (drop_pm), duplication (dup_pm, the copy with its own
 *      delay), delay uniform in [min, max], and with long reordering on,
 *      long_reorder_pm of the replies (never the requests, as in labrpc)
 *      wait 200 + rand(rand(2000)) ms.
 *   3. A message to a node that restarted after it was sent is lost: the
 *      connection it travelled on died with the old process.
 *   4. Counters: out when queued (also for messages then lost), in when
 *      delivered.
 *   5. A message to a crashed node fails like a refused connection: the
 *      sender is stepped RAFT_UNREACHABLE 1 ms later, at most once per
 *      link per UNREACHABLE_EVERY_MS.
 */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"
#include "util/assert.h"

/* A runtime reconnects with a back-off; one report per 100 ms per link
 * matches a reconnect timer and keeps a dead peer from flooding the core. */
#define UNREACHABLE_EVERY_MS 100

static bool is_request(uint8_t type)
{
    switch ((enum raft_msg_type)type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_APPEND:
    case RAFT_MSG_SNAPSHOT:
    case RAFT_MSG_TIMEOUT_NOW:
        return true;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_SNAPSHOT_RESP:
        return false;
    }
    return false;
}

/* Copy m, with `chunk` (len bytes) as the snapshot data if it is one. */
static struct sim_msg *msg_copy(const struct raft_message *m, const void *chunk,
                                size_t chunk_len)
{
    size_t n_entries = 0, data = chunk_len;
    if (m->type == RAFT_MSG_APPEND) {
        n_entries = m->append.n_entries;
        for (size_t i = 0; i < n_entries; i++) {
            data += m->append.entries[i].buf.len;
        }
    }
    size_t size =
        sizeof(struct sim_msg) + n_entries * sizeof(struct raft_entry) + data;
    struct sim_msg *sm = malloc(size);
    CRAFT_ASSERT(sm != NULL);
    sm->m = *m;
    sm->dest_incarnation = 0;
    sm->bytes = raft_message_encoded_size(m) + chunk_len;
    struct raft_entry *entries = (struct raft_entry *)(sm + 1);
    uint8_t *p = (uint8_t *)(entries + n_entries);
    if (m->type == RAFT_MSG_APPEND) {
        sm->m.append.entries = n_entries > 0 ? entries : NULL;
        for (size_t i = 0; i < n_entries; i++) {
            entries[i] = m->append.entries[i];
            size_t len = entries[i].buf.len;
            if (len > 0) {
                memcpy(p, m->append.entries[i].buf.base, len);
                entries[i].buf.base = p;
                p += len;
            } else {
                entries[i].buf.base = NULL;
            }
        }
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        if (chunk_len > 0) {
            memcpy(p, chunk, chunk_len);
        }
        sm->m.snapshot.data.base = chunk_len > 0 ? p : NULL;
        sm->m.snapshot.data.len = chunk_len;
    }
    return sm;
}

void sim__msg_free(struct sim_msg *m)
{
    free(m);
}

static bool link_passes(const struct sim_cluster *c, unsigned from, unsigned to)
{
    return c->nodes[from].connected && c->nodes[to].connected &&
           c->link_up[from][to];
}

/* True for the messages that answer another: labrpc's replies. */
static bool is_reply(uint8_t type)
{
    return type == RAFT_MSG_VOTE_RESP || type == RAFT_MSG_APPEND_RESP ||
           type == RAFT_MSG_SNAPSHOT_RESP;
}

static uint64_t draw_delay(struct sim_cluster *c,
                           const struct sim_link_faults *f, uint8_t type)
{
    /* labrpc holds back only replies (the handler has already run when
     * the reply is delayed), never requests. */
    if (c->long_reorder && f->long_reorder_pm > 0 && is_reply(type) &&
        rng_chance(&c->rng, f->long_reorder_pm)) {
        /* labrpc's long reordering: 200 + rand(0..rand(2000)) ms. */
        uint64_t upper = rng_range(&c->rng, 0, 2000);
        return 200 + rng_range(&c->rng, 0, upper + 1);
    }
    return rng_range(&c->rng, f->delay_min_ms, (uint64_t)f->delay_max_ms + 1);
}

static void enqueue(struct sim_cluster *c, unsigned to, struct sim_msg *sm,
                    uint64_t delay)
{
    struct sim_event ev = {.time = c->now + delay,
                           .type = SIM_EV_DELIVER,
                           .node = to,
                           .incarnation = sm->dest_incarnation,
                           .msg = sm};
    sim__push(c, &ev);
}

/* The bytes of a snapshot chunk the core asked to send, from the sender's
 * durable snapshot, or the one it replaced (kept readable for a transfer in
 * progress); NULL if that snapshot is gone (then the message is not sent
 * and the core moves the transfer to its newest one). */
static const uint8_t *chunk_bytes(struct sim_cluster *c, struct sim_node *n,
                                  const struct raft_message *m)
{
    const struct sim_storage *s = &n->st;
    const struct raft_msg_snapshot *sn = &m->snapshot;
    const uint8_t *data;
    size_t len;
    if (s->has_snap && s->snap.index == sn->meta.index &&
        s->snap.term == sn->meta.term) {
        data = s->snap_data;
        len = s->snap_len;
    } else if (s->has_prev && s->prev.index == sn->meta.index &&
               s->prev.term == sn->meta.term) {
        data = s->prev_data;
        len = s->prev_len;
    } else {
        return NULL;
    }
    if (sn->offset > len || sn->data.len > len - sn->offset) {
        sim_fail(c,
                 "n%llu: snapshot chunk [%llu, +%zu) beyond snapshot "
                 "%llu of %zu bytes",
                 (unsigned long long)n->id, (unsigned long long)sn->offset,
                 sn->data.len, (unsigned long long)sn->meta.index, len);
    }
    if (sn->last && sn->offset + sn->data.len != len) {
        sim_fail(c,
                 "n%llu: last chunk of snapshot %llu ends at %llu, not "
                 "at its size %zu",
                 (unsigned long long)n->id, (unsigned long long)sn->meta.index,
                 (unsigned long long)(sn->offset + sn->data.len), len);
    }
    return data + sn->offset;
}

static void report_unreachable(struct sim_cluster *c, struct sim_node *from,
                               raft_id peer)
{
    uint64_t *last = &c->unreachable_at[from->id - 1][peer - 1];
    if (*last != 0 && c->now - *last < UNREACHABLE_EVERY_MS) {
        return;
    }
    *last = c->now;
    struct sim_event ev = {.time = c->now + 1,
                           .type = SIM_EV_UNREACHABLE,
                           .node = (unsigned)(from->id - 1),
                           .incarnation = from->incarnation,
                           .peer = peer};
    sim__push(c, &ev);
}

void sim__send(struct sim_cluster *c, struct sim_node *from,
               const struct raft_message *m)
{
    if (m->to < 1 || m->to > c->o.n_nodes || m->to == from->id ||
        m->from != from->id) {
        sim_fail(c, "n%llu: message %s from %llu to %llu",
                 (unsigned long long)from->id, raft_msg_type_name(m->type),
                 (unsigned long long)m->from, (unsigned long long)m->to);
    }
    sim__check_reply_durable(c, from, m);
    const void *chunk = NULL;
    size_t chunk_len = 0;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        chunk = chunk_bytes(c, from, m);
        if (chunk == NULL) {
            sim__trace(c, (unsigned)from->id, "drop stale snap chunk");
            return;
        }
        chunk_len = m->snapshot.data.len;
    }
    unsigned f = (unsigned)(from->id - 1), t = (unsigned)(m->to - 1);
    size_t bytes = raft_message_encoded_size(m) + chunk_len;
    from->cnt.msgs_out++;
    from->cnt.bytes_out += bytes;
    if (is_request(m->type)) {
        from->cnt.rpcs_out++;
    }
    if (!link_passes(c, f, t)) {
        return;
    }
    if (!c->nodes[t].up) {
        report_unreachable(c, from, m->to);
        return;
    }
    const struct sim_link_faults *lf = &c->faults[f][t];
    if (lf->drop_pm > 0 && rng_chance(&c->rng, lf->drop_pm)) {
        return;
    }
    unsigned copies = 1;
    if (lf->dup_pm > 0 && rng_chance(&c->rng, lf->dup_pm)) {
        copies = 2;
    }
    for (unsigned i = 0; i < copies; i++) {
        struct sim_msg *sm = msg_copy(m, chunk, chunk_len);
        if ((c->o.inject & SIM_INJECT_CORRUPT) &&
            sm->m.type == RAFT_MSG_APPEND && sm->m.append.n_entries > 0 &&
            rng_chance(&c->rng, 50)) {
            struct raft_entry *e = (struct raft_entry *)sm->m.append.entries;
            if (e->buf.len > 0) {
                ((uint8_t *)e->buf.base)[0] ^= 0x40;
            }
        }
        sm->dest_incarnation = c->nodes[t].incarnation;
        enqueue(c, t, sm, draw_delay(c, lf, sm->m.type));
    }
}

void sim__deliver(struct sim_cluster *c, struct sim_event *ev)
{
    struct sim_msg *sm = ev->msg;
    struct sim_node *to = &c->nodes[ev->node];
    unsigned from = (unsigned)(sm->m.from - 1);
    if (!to->up || to->incarnation != sm->dest_incarnation ||
        !link_passes(c, from, ev->node)) {
        sim__msg_free(sm);
        return;
    }
    to->cnt.msgs_in++;
    to->cnt.bytes_in += sm->bytes;
    if (is_request(sm->m.type)) {
        to->cnt.rpcs_in++;
    }
    if (sm->m.type == RAFT_MSG_SNAPSHOT) {
        to->cnt.snapshots_in++;
    }
    sim__trace_receive(c, &sm->m);
    struct raft_event rev = {.type = RAFT_RECEIVE};
    rev.receive.msg = &sm->m;
    /* The cluster frees the copy if the step fails and unwinds. */
    c->delivering = sm;
    sim__node_step(c, to, &rev);
    c->delivering = NULL;
    sim__msg_free(sm);
}

/* ---- fault controls ----------------------------------------------------- */

void sim_connect(struct sim_cluster *c, raft_id id)
{
    sim__node(c, id)->connected = true;
    sim__trace(c, (unsigned)id, "CONNECT");
}

void sim_disconnect(struct sim_cluster *c, raft_id id)
{
    sim__node(c, id)->connected = false;
    sim__trace(c, (unsigned)id, "DISCONNECT");
}

bool sim_is_connected(const struct sim_cluster *c, raft_id id)
{
    CRAFT_ASSERT(id >= 1 && id <= c->o.n_nodes);
    return c->nodes[id - 1].connected;
}

void sim_link_set(struct sim_cluster *c, raft_id from, raft_id to, bool up)
{
    sim__node(c, from);
    sim__node(c, to);
    c->link_up[from - 1][to - 1] = up;
}

void sim_set_link_faults(struct sim_cluster *c, raft_id from, raft_id to,
                         const struct sim_link_faults *f)
{
    sim__node(c, from);
    sim__node(c, to);
    CRAFT_ASSERT(f->delay_min_ms <= f->delay_max_ms);
    c->faults[from - 1][to - 1] = *f;
}

void sim_set_faults(struct sim_cluster *c, const struct sim_link_faults *f)
{
    for (raft_id i = 1; i <= c->o.n_nodes; i++) {
        for (raft_id j = 1; j <= c->o.n_nodes; j++) {
            sim_set_link_faults(c, i, j, f);
        }
    }
}

void sim_set_unreliable(struct sim_cluster *c, bool unreliable)
{
    struct sim_link_faults f;
    if (unreliable) {
        sim_faults_unreliable(&f);
    } else {
        sim_faults_reliable(&f);
    }
    /* labrpc reorders 600 of every 900 replies when long reordering is on
     * (draw_delay applies it to replies only). */
    f.long_reorder_pm = 667;
    sim_set_faults(c, &f);
    sim__trace(c, 0, "network %s", unreliable ? "UNRELIABLE" : "reliable");
}

void sim_set_long_reordering(struct sim_cluster *c, bool on)
{
    c->long_reorder = on;
    sim__trace(c, 0, "long reordering %s", on ? "ON" : "off");
}
