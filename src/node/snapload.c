/*
 * snapload.c -- a snapshot parsed on its own thread as it arrives.  See
 * snapload.h.
 */
#include "node/snapload.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "craft/common.h"
#include "util/assert.h"

struct chunk {
    struct chunk *next;
    size_t len, pos; /* data[pos, len) not yet handed to the parser */
    uint8_t data[];
};

struct snapload {
    raft_index index;
    raft_term term;
    uint64_t size;
    uint64_t fed; /* bytes queued so far (loop thread only) */
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    /* Under mu. */
    struct chunk *head, *tail;
    size_t queued;     /* bytes in the chunks */
    uint64_t consumed; /* bytes handed to the parser */
    bool cancel;
    bool done; /* the parse has returned (rv is its result) */
    /* Created with the snapload; filled by the thread, which writes rv
     * under mu before it ends (also read after the join). */
    struct node_sm_parsed *parsed;
    int rv;
};

/* The parser's read callback (on the snapload thread): block until bytes
 * are queued, the whole snapshot has been consumed (0: the end) or the
 * snapload is cancelled. */
static int64_t stream_read(void *data, void *buf, size_t len)
{
    struct snapload *l = data;
    uv_mutex_lock(&l->mu);
    while (l->head == NULL && !l->cancel && l->consumed < l->size) {
        uv_cond_wait(&l->cv, &l->mu);
    }
    int64_t got = 0;
    struct chunk *done = NULL;
    if (l->cancel) {
        got = CRAFT_ECANCELED;
    } else if (l->head != NULL) {
        struct chunk *c = l->head;
        size_t k = c->len - c->pos < len ? c->len - c->pos : len;
        memcpy(buf, c->data + c->pos, k);
        c->pos += k;
        l->queued -= k;
        l->consumed += k;
        got = (int64_t)k;
        if (c->pos == c->len) {
            l->head = c->next;
            if (l->head == NULL) {
                l->tail = NULL;
            }
            done = c;
        }
    }
    uv_mutex_unlock(&l->mu);
    free(done);
    return got;
}

static void run(void *arg)
{
    struct snapload *l = arg;
    int rv = node_sm_snapshot_parse(l->parsed, stream_read, l);
    /* From now on nobody consumes the queue: feed refuses. */
    uv_mutex_lock(&l->mu);
    l->rv = rv;
    l->done = true;
    uv_mutex_unlock(&l->mu);
}

int snapload_start(const struct node_sm *sm,
                   const struct raft_snapshot_meta *meta, struct snapload **out)
{
    CRAFT_ASSERT(sm != NULL && meta != NULL && out != NULL);
    struct snapload *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return CRAFT_ENOMEM;
    }
    l->parsed = node_sm_parsed_new(sm);
    if (l->parsed == NULL) {
        free(l);
        return CRAFT_ENOMEM;
    }
    l->index = meta->index;
    l->term = meta->term;
    l->size = meta->size;
    if (uv_mutex_init(&l->mu) != 0) {
        node_sm_parsed_free(l->parsed);
        free(l);
        return CRAFT_ENOMEM;
    }
    if (uv_cond_init(&l->cv) != 0) {
        uv_mutex_destroy(&l->mu);
        node_sm_parsed_free(l->parsed);
        free(l);
        return CRAFT_ENOMEM;
    }
    if (uv_thread_create(&l->thread, run, l) != 0) {
        uv_cond_destroy(&l->cv);
        uv_mutex_destroy(&l->mu);
        node_sm_parsed_free(l->parsed);
        free(l);
        return CRAFT_ENOMEM;
    }
    *out = l;
    return 0;
}

static bool same_snapshot(const struct snapload *l,
                          const struct raft_snapshot_meta *meta)
{
    return meta->index == l->index && meta->term == l->term &&
           meta->size == l->size;
}

int snapload_feed(struct snapload *l, const struct raft_snapshot_meta *meta,
                  uint64_t offset, const void *data, size_t len)
{
    CRAFT_ASSERT(l != NULL && meta != NULL);
    if (!same_snapshot(l, meta) || offset != l->fed || len > l->size - l->fed) {
        return CRAFT_EINVAL;
    }
    /* A parse that has ended (an error: a success consumes exactly size
     * bytes, after which nothing is fed) takes nothing more. */
    uv_mutex_lock(&l->mu);
    int ended = !l->done ? 0 : l->rv != 0 ? l->rv : CRAFT_EINVAL;
    uv_mutex_unlock(&l->mu);
    if (ended != 0) {
        return ended;
    }
    if (len == 0) {
        return 0;
    }
    struct chunk *c = malloc(sizeof *c + len);
    if (c == NULL) {
        return CRAFT_ENOMEM;
    }
    memcpy(c->data, data, len);
    c->next = NULL;
    c->len = len;
    c->pos = 0;
    int rv = 0;
    uv_mutex_lock(&l->mu);
    if (l->done) {
        rv = l->rv != 0 ? l->rv : CRAFT_EINVAL;
    } else if (l->queued + len > SNAPLOAD_QUEUE_MAX) {
        rv = CRAFT_ELIMIT;
    } else {
        if (l->tail != NULL) {
            l->tail->next = c;
        } else {
            l->head = c;
        }
        l->tail = c;
        l->queued += len;
        uv_cond_signal(&l->cv);
    }
    uv_mutex_unlock(&l->mu);
    if (rv != 0) {
        free(c);
        return rv;
    }
    l->fed += len;
    CRAFT_ASSERT(l->fed <= l->size);
    return 0;
}

bool snapload_complete(const struct snapload *l,
                       const struct raft_snapshot_meta *meta)
{
    return same_snapshot(l, meta) && l->fed == l->size;
}

static void snapload_free(struct snapload *l)
{
    while (l->head != NULL) {
        struct chunk *c = l->head;
        l->head = c->next;
        free(c);
    }
    if (l->parsed != NULL) {
        node_sm_parsed_free(l->parsed);
    }
    uv_cond_destroy(&l->cv);
    uv_mutex_destroy(&l->mu);
    free(l);
}

int snapload_finish(struct snapload *l, struct node_sm_parsed **out)
{
    CRAFT_ASSERT(l != NULL && out != NULL);
    CRAFT_ASSERT(l->fed == l->size);
    uv_thread_join(&l->thread);
    int rv = l->rv;
    if (rv == 0) {
        *out = l->parsed;
        l->parsed = NULL;
    }
    snapload_free(l);
    return rv;
}

void snapload_cancel(struct snapload *l)
{
    CRAFT_ASSERT(l != NULL);
    uv_mutex_lock(&l->mu);
    l->cancel = true;
    uv_cond_signal(&l->cv);
    uv_mutex_unlock(&l->mu);
    uv_thread_join(&l->thread);
    snapload_free(l);
}
