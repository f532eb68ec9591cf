/*
 * The coordinator: the network side of sched.h.  See coordinator.h.
 *
 * Invariants:
 *   1. Every connection's data pointer is its worker id (0 before HELLO).
 *      When a connection closes, that worker is lost (sched) and its
 *      unfinished uploads are removed: a worker is known by its
 *      connection, so kill -9 is noticed at once, not after a timeout.
 *   2. mr-out-<r> appears only through mr_output_commit() (fsync, rename,
 *      fsync dir) of an upload whose size and crc32c match what the
 *      reducer computed, and only for the first accepted completion of r
 *      (`committing` keeps a second one out while the first commits).
 *   3. The job ends (JOB_OVER to every worker, then exit) only when
 *      sched says every reduce is DONE -- i.e. after every commit -- or
 *      the job has failed.
 */
#include "mr/coordinator.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "craft/common.h"
#include "mr/output.h"
#include "mr/run.h"
#include "mr/sched.h"
#include "mr/split.h"
#include "mr/wire.h"
#include "net/net.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/log.h"

/* Plugins are shipped whole in memory; 256 MiB is far beyond any plugin
 * and keeps a mistaken --plugin (a disk image, say) from eating memory. */
#define MR_PLUGIN_BYTES_MAX (256u * 1024u * 1024u)

/* After JOB_OVER, wait this long at most for workers to hang up (they do
 * within a round trip; a worker that misses it finds the coordinator gone
 * and exits after its --connect-timeout). */
#define COORD_LINGER_MS 1000u
/* Timeouts are checked and progress drawn every 100 ms: fine next to task
 * and worker timeouts of seconds, and nothing else waits on the tick (job
 * completion and task hand-out react to events at once). */
#define COORD_TICK_MS 100u

/* One reduce output being received from one attempt. */
struct upload {
    uint32_t reduce, worker;
    uint64_t attempt;
    struct mr_output out;
    struct upload *next;
};

/* A TASK request with nothing to hand out yet, answered as soon as
 * something changes (a completion, a failure, a lost worker, a timeout) or
 * after COORD_PARK_MS with WAIT.  Long polling gives an idle worker its
 * next task within a round trip instead of a polling period. */
struct waiter {
    struct net_request *req;
    uint32_t worker;
    uint64_t since_ms;
    struct waiter *next;
};

/* How long a parked TASK request waits before it is answered WAIT (the
 * worker then asks again): short enough that a worker notices a dead
 * coordinator through its RPC timeout, long enough to cost nothing. */
#define COORD_PARK_MS 1000u

struct commit_work {
    uv_work_t work;
    struct coord *c;
    struct upload *up;
    struct net_request *req;
    int rv;
    char errmsg[256];
};

struct coord {
    const struct mr_coord_config *cfg;
    uv_loop_t *loop;
    struct net_server *srv;
    uv_timer_t tick;
    struct mr_sched sched;
    uint8_t *plugin;
    size_t plugin_size;
    uint32_t plugin_crc;
    char plugin_name[64];
    struct mr_split *splits;
    uint32_t n_splits;
    struct mr_segment **map_index; /* [map][reduce], set when DONE */
    uint8_t *committing;           /* [reduce] */
    struct upload *uploads;
    struct net_conn **conns;
    size_t n_conns, cap_conns;
    struct waiter *waiters; /* parked TASK requests (long poll) */
    int finishing;
    uint64_t finish_ms, start_ms;
    uint64_t bytes_in, bytes_out, total_in;
    uint64_t last_progress_ms;
    int tty;
    int exit_code;
};

static uint64_t now_ms(struct coord *c)
{
    return uv_now(c->loop);
}

/* ---- connections -------------------------------------------------------- */

static void on_open(void *data, struct net_conn *conn)
{
    struct coord *c = data;
    if (c->n_conns == c->cap_conns) {
        size_t cap = c->cap_conns ? 2 * c->cap_conns : 16;
        struct net_conn **p = realloc(c->conns, cap * sizeof *p);
        if (!p) {
            LOG_ERRORF("out of memory accepting a worker");
            net_conn_close(conn);
            return;
        }
        c->conns = p;
        c->cap_conns = cap;
    }
    c->conns[c->n_conns++] = conn;
    net_conn_set_data(conn, NULL);
}

static void drop_uploads_of(struct coord *c, uint32_t worker)
{
    struct upload **pp = &c->uploads;
    while (*pp) {
        struct upload *u = *pp;
        if (u->worker == worker && u->out.fd >= 0) {
            mr_output_abort(&u->out);
            *pp = u->next;
            free(u);
        } else {
            pp = &u->next;
        }
    }
}

static void on_server_closed(void *data);
static void after_change(struct coord *c);

static void on_close(void *data, struct net_conn *conn, int status)
{
    struct coord *c = data;
    for (size_t i = 0; i < c->n_conns; i++) {
        if (c->conns[i] == conn) {
            c->conns[i] = c->conns[--c->n_conns];
            break;
        }
    }
    uint32_t id = (uint32_t)(uintptr_t)net_conn_data(conn);
    if (id != 0 && !c->finishing) {
        if (mr_sched_worker(&c->sched, id)) {
            LOG_INFOF("worker %u disconnected (%s); its tasks will run "
                      "again",
                      id, status ? craft_strerror(status) : "closed");
        }
        mr_sched_worker_lost(&c->sched, id);
        drop_uploads_of(c, id);
        after_change(c);
    }
    if (c->finishing && c->n_conns == 0 && c->srv) {
        uv_timer_stop(&c->tick);
        net_server_close(c->srv, c, on_server_closed);
        c->srv = NULL;
    }
}

/* ---- replies ------------------------------------------------------------ */

static void reply_wbuf(struct net_request *req, struct mr_wbuf *w)
{
    if (w->oom) {
        net_reply(req, CRAFT_ENOMEM, NULL, 0);
    } else {
        net_reply(req, 0, w->b.data, w->b.len);
    }
    mr_w_close(w);
}

static void reply_err(struct net_request *req, int status, const char *msg)
{
    net_reply(req, status, msg, msg ? strlen(msg) : 0);
}

/* The live worker a request names, or NULL after answering ENOENT. */
static struct mr_worker_rec *req_worker(struct coord *c,
                                        struct net_request *req, uint32_t id)
{
    struct mr_worker_rec *w = mr_sched_worker(&c->sched, id);
    struct net_conn *conn = net_request_conn(req);
    if (!w || !conn || (uint32_t)(uintptr_t)net_conn_data(conn) != id) {
        reply_err(req, CRAFT_ENOENT, "unknown worker; register again");
        return NULL;
    }
    mr_sched_touch(&c->sched, id, now_ms(c));
    return w;
}

/* ---- handlers ----------------------------------------------------------- */

static void handle_hello(struct coord *c, struct net_conn *conn,
                         struct net_request *req, struct mr_rbuf *r)
{
    uint32_t proto = mr_r_u32(r);
    uint16_t port = mr_r_u16(r);
    uint32_t pid = mr_r_u32(r);
    if (!mr_r_ok(r) || proto != MR_PROTO_VERSION || port == 0) {
        reply_err(req, CRAFT_EVERSION, "craft-mr protocol mismatch");
        return;
    }
    if (c->finishing || c->sched.failed) {
        reply_err(req, CRAFT_ESHUTDOWN, "the job is over");
        return;
    }
    char peer[NET_ADDR_FMT_MAX], host[NET_HOST_MAX], addr[80];
    uint16_t ignored;
    net_conn_peer_addr(conn, peer, sizeof peer);
    if (net_addr_parse(peer, host, sizeof host, &ignored, 1, NULL, 0) != 0) {
        reply_err(req, CRAFT_EINVAL, "cannot parse the worker's address");
        return;
    }
    snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             port);
    uint32_t old = (uint32_t)(uintptr_t)net_conn_data(conn);
    if (old != 0) {
        mr_sched_worker_lost(&c->sched, old);
        drop_uploads_of(c, old);
    }
    uint32_t id = mr_sched_add_worker(&c->sched, addr, now_ms(c));
    if (id == 0) {
        reply_err(req, CRAFT_ENOMEM, "out of memory");
        return;
    }
    net_conn_set_data(conn, (void *)(uintptr_t)id);
    LOG_INFOF("worker %u registered: pid %u, map output at %s", id, pid, addr);
    struct mr_wbuf w;
    mr_w_init(&w);
    mr_w_u32(&w, id);
    mr_w_u32(&w, c->n_splits);
    mr_w_u32(&w, c->cfg->n_reduces);
    mr_w_u64(&w, c->plugin_size);
    mr_w_u32(&w, c->plugin_crc);
    mr_w_str(&w, c->plugin_name);
    mr_w_u32(&w, (uint32_t)c->cfg->args->n);
    for (size_t i = 0; i < c->cfg->args->n; i++) {
        mr_w_str(&w, c->cfg->args->keys[i]);
        mr_w_str(&w, c->cfg->args->values[i]);
    }
    mr_w_u64(&w, c->cfg->split_bytes);
    reply_wbuf(req, &w);
}

static void handle_plugin(struct coord *c, struct net_request *req,
                          struct mr_rbuf *r)
{
    uint64_t off = mr_r_u64(r);
    if (!mr_r_ok(r) || off > c->plugin_size) {
        reply_err(req, CRAFT_EPROTO, "bad plugin request");
        return;
    }
    size_t n = (size_t)(c->plugin_size - off);
    net_reply(req, 0, c->plugin + off, n < MR_CHUNK_BYTES ? n : MR_CHUNK_BYTES);
}

static void encode_reduce(struct coord *c, struct mr_wbuf *w, uint32_t r)
{
    mr_w_u32(w, c->n_splits);
    for (uint32_t m = 0; m < c->n_splits; m++) {
        const struct mr_task *t = &c->sched.maps[m];
        const struct mr_worker_rec *h = &c->sched.workers[t->worker - 1];
        const struct mr_segment *s = &c->map_index[m][r];
        mr_w_str(w, h->addr);
        mr_w_u32(w, t->worker);
        mr_w_u64(w, t->attempt);
        mr_w_u64(w, s->length);
        mr_w_u64(w, s->n_records);
        mr_w_u32(w, s->crc);
    }
}

static void reply_assignment(struct coord *c, struct net_request *req,
                             uint32_t id, struct mr_assignment a)
{
    if (c->finishing) {
        a.reply = MR_REPLY_EXIT;
    }
    struct mr_wbuf w;
    mr_w_init(&w);
    mr_w_u8(&w, (uint8_t)a.reply);
    if (a.reply == MR_REPLY_TASK) {
        mr_w_u8(&w, (uint8_t)a.kind);
        mr_w_u32(&w, a.task);
        mr_w_u64(&w, a.attempt);
        if (a.kind == MR_MAP) {
            const struct mr_split *s = &c->splits[a.task];
            mr_w_str(&w, c->cfg->inputs[s->file]);
            mr_w_u64(&w, s->length);
        } else {
            encode_reduce(c, &w, a.task);
        }
        LOG_DEBUGF("%s %u (attempt %" PRIu64 ") to worker %u",
                   a.kind == MR_MAP ? "map" : "reduce", a.task, a.attempt, id);
    }
    reply_wbuf(req, &w);
}

/* Answers parked TASK requests that can be answered now: with a task or
 * EXIT, with WAIT once parked for COORD_PARK_MS, and (freeing it) when the
 * worker is gone. */
static void serve_waiters(struct coord *c)
{
    struct waiter **pp = &c->waiters;
    while (*pp) {
        struct waiter *wt = *pp;
        struct mr_assignment a = {MR_REPLY_WAIT, MR_MAP, 0, 0};
        int answer = 0;
        if (!net_request_conn(wt->req) ||
            !mr_sched_worker(&c->sched, wt->worker)) {
            net_reply(wt->req, CRAFT_ENOENT, NULL, 0);
        } else {
            a = mr_sched_request(&c->sched, wt->worker, now_ms(c));
            answer = a.reply != MR_REPLY_WAIT || c->finishing ||
                     now_ms(c) >= wt->since_ms + COORD_PARK_MS;
            if (!answer) {
                pp = &wt->next;
                continue;
            }
            reply_assignment(c, wt->req, wt->worker, a);
        }
        *pp = wt->next;
        free(wt);
    }
}

static void handle_task(struct coord *c, struct net_request *req,
                        struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r);
    if (!mr_r_ok(r)) {
        reply_err(req, CRAFT_EPROTO, "bad task request");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    struct mr_assignment a = mr_sched_request(&c->sched, id, now_ms(c));
    if (a.reply == MR_REPLY_WAIT && !c->finishing) {
        /* Nothing to hand out: park the request (long poll) so that the
         * next completion, failure or loss answers it at once.  Without
         * memory for that, answer WAIT now and let the worker poll. */
        struct waiter *wt = malloc(sizeof *wt);
        if (wt != NULL) {
            *wt = (struct waiter){req, id, now_ms(c), c->waiters};
            c->waiters = wt;
            return;
        }
    }
    reply_assignment(c, req, id, a);
}

/* An input chunk read on the thread pool: a cold or slow disk must not
 * stall the loop every worker talks to (one event loop per process; slow
 * work off-loop). */
struct input_read {
    uv_work_t work;
    struct coord *c;
    struct net_request *req;
    const char *path; /* from the command line; outlives the job */
    uint64_t off;
    size_t n;
    int rv;
    uint8_t data[]; /* n bytes */
};

static void input_read_work(uv_work_t *work)
{
    struct input_read *ir = work->data;
    int fd = open(ir->path, O_RDONLY | O_CLOEXEC);
    ir->rv = fd < 0 ? -errno : mr_pread_all(fd, ir->data, ir->n, ir->off);
    if (fd >= 0) {
        close(fd);
    }
}

static void input_read_done(uv_work_t *work, int status)
{
    (void)status;
    struct input_read *ir = work->data;
    struct coord *c = ir->c;
    if (ir->rv != 0) {
        /* The coordinator's own input is gone or unreadable: no worker can
         * fix that, so the job fails rather than retrying forever. */
        char msg[512];
        snprintf(msg, sizeof msg, "cannot read input %s: %s", ir->path,
                 ir->rv == CRAFT_ECORRUPT ? "the file shrank"
                                          : strerror(-ir->rv));
        LOG_ERRORF("%s", msg);
        mr_sched_abort(&c->sched, msg);
        reply_err(ir->req, CRAFT_ESHUTDOWN, msg);
        free(ir);
        after_change(c);
        return;
    }
    c->bytes_in += ir->n;
    net_reply(ir->req, 0, ir->data, ir->n);
    free(ir);
}

static void handle_input(struct coord *c, struct net_request *req,
                         struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r), map = mr_r_u32(r);
    (void)mr_r_u64(r); /* attempt: any attempt may read its input */
    uint64_t off = mr_r_u64(r);
    if (!mr_r_ok(r) || map >= c->n_splits || off > c->splits[map].length) {
        reply_err(req, CRAFT_EPROTO, "bad input request");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    const struct mr_split *s = &c->splits[map];
    uint64_t left = s->length - off;
    size_t n = left < MR_CHUNK_BYTES ? (size_t)left : MR_CHUNK_BYTES;
    struct input_read *ir = malloc(sizeof *ir + n);
    if (!ir) {
        reply_err(req, CRAFT_ENOMEM, "out of memory");
        return;
    }
    *ir = (struct input_read){.c = c,
                              .req = req,
                              .path = c->cfg->inputs[s->file],
                              .off = s->offset + off,
                              .n = n};
    ir->work.data = ir;
    int rv =
        uv_queue_work(c->loop, &ir->work, input_read_work, input_read_done);
    CRAFT_ASSERT(rv == 0); /* fails only for a NULL callback */
}

static void handle_heartbeat(struct coord *c, struct net_request *req,
                             struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r);
    (void)mr_r_u8(r);
    (void)mr_r_u32(r);
    (void)mr_r_u64(r);
    if (!mr_r_ok(r)) {
        reply_err(req, CRAFT_EPROTO, "bad heartbeat");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    uint8_t go_on = !c->finishing && !c->sched.failed;
    net_reply(req, 0, &go_on, 1);
}

static void handle_map_done(struct coord *c, struct net_request *req,
                            struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r), map = mr_r_u32(r);
    uint64_t attempt = mr_r_u64(r);
    uint32_t n = mr_r_u32(r);
    if (r->err || map >= c->n_splits || n != c->cfg->n_reduces) {
        reply_err(req, CRAFT_EPROTO, "bad map completion");
        return;
    }
    struct mr_segment *segs = calloc(n, sizeof *segs);
    if (!segs) {
        reply_err(req, CRAFT_ENOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        segs[i].length = mr_r_u64(r);
        segs[i].n_records = mr_r_u64(r);
        segs[i].crc = mr_r_u32(r);
    }
    if (!mr_r_ok(r)) {
        free(segs);
        reply_err(req, CRAFT_EPROTO, "bad map completion");
        return;
    }
    if (!req_worker(c, req, id)) {
        free(segs);
        return;
    }
    if (mr_sched_complete(&c->sched, MR_MAP, map, id, attempt)) {
        free(c->map_index[map]);
        c->map_index[map] = segs;
        LOG_DEBUGF("map %u done by worker %u", map, id);
    } else {
        free(segs);
        LOG_DEBUGF("map %u: duplicate completion from worker %u ignored", map,
                   id);
    }
    net_reply(req, 0, NULL, 0);
}

static struct upload *find_upload(struct coord *c, uint32_t reduce,
                                  uint64_t attempt, uint32_t worker)
{
    for (struct upload *u = c->uploads; u; u = u->next) {
        if (u->reduce == reduce && u->attempt == attempt &&
            u->worker == worker) {
            return u;
        }
    }
    return NULL;
}

static void unlink_upload(struct coord *c, struct upload *up)
{
    for (struct upload **pp = &c->uploads; *pp; pp = &(*pp)->next) {
        if (*pp == up) {
            *pp = up->next;
            return;
        }
    }
}

/* The coordinator's own disk failed: no worker can fix that, so the job
 * fails (workers are told to exit) rather than retrying forever. */
static void output_failed(struct coord *c, uint32_t reduce, const char *why)
{
    char msg[512];
    snprintf(msg, sizeof msg, "cannot write the output of reduce %u in %s: %s",
             reduce, c->cfg->output_dir, why);
    LOG_ERRORF("%s", msg);
    mr_sched_abort(&c->sched, msg);
}

static void handle_output(struct coord *c, struct net_request *req,
                          struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r), reduce = mr_r_u32(r);
    uint64_t attempt = mr_r_u64(r), off = mr_r_u64(r);
    size_t n;
    const uint8_t *bytes = mr_r_rest(r, &n);
    if (r->err || reduce >= c->cfg->n_reduces || n > MR_CHUNK_BYTES) {
        reply_err(req, CRAFT_EPROTO, "bad output chunk");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    struct upload *u = find_upload(c, reduce, attempt, id);
    if (!u && off == 0) {
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/mr-out-%u", c->cfg->output_dir, reduce);
        u = calloc(1, sizeof *u);
        if (!u || mr_output_open(&u->out, path, err, sizeof err) != 0) {
            output_failed(c, reduce, u ? err : "out of memory");
            free(u);
            reply_err(req, CRAFT_EIO, "the coordinator cannot write output");
            return;
        }
        u->reduce = reduce;
        u->attempt = attempt;
        u->worker = id;
        u->next = c->uploads;
        c->uploads = u;
    }
    if (!u || u->out.fd < 0 || u->out.bytes != off) {
        reply_err(req, CRAFT_EPROTO, "output chunk out of order");
        return;
    }
    int rv = mr_output_write(&u->out, bytes, n);
    if (rv != 0) {
        LOG_ERRORF("reduce %u: writing output: %s", reduce, craft_strerror(rv));
        reply_err(req, rv, "the coordinator cannot write output");
        return;
    }
    c->bytes_out += n;
    net_reply(req, 0, NULL, 0);
}

static void commit_work(uv_work_t *work)
{
    struct commit_work *cw = work->data;
    cw->rv = mr_output_commit(&cw->up->out, cw->errmsg, sizeof cw->errmsg);
}

static void commit_done(uv_work_t *work, int status)
{
    (void)status;
    struct commit_work *cw = work->data;
    struct coord *c = cw->c;
    struct upload *up = cw->up;
    c->committing[up->reduce] = 0;
    uint8_t accepted = 0;
    if (cw->rv != 0) {
        output_failed(c, up->reduce, cw->errmsg);
    } else {
        /* Complete even if the worker was lost meanwhile: the output is
         * final and correct, which is all a reduce owes the job. */
        accepted = (uint8_t)mr_sched_complete(&c->sched, MR_REDUCE, up->reduce,
                                              up->worker, up->attempt);
        LOG_DEBUGF("reduce %u committed", up->reduce);
    }
    net_reply(cw->req, cw->rv, &accepted, 1);
    free(up);
    free(cw);
    after_change(c);
}

static void handle_reduce_done(struct coord *c, struct net_request *req,
                               struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r), reduce = mr_r_u32(r);
    uint64_t attempt = mr_r_u64(r), size = mr_r_u64(r);
    uint32_t crc = mr_r_u32(r);
    if (!mr_r_ok(r) || reduce >= c->cfg->n_reduces) {
        reply_err(req, CRAFT_EPROTO, "bad reduce completion");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    struct upload *u = find_upload(c, reduce, attempt, id);
    uint8_t accepted = 0;
    if (size == 0 && !u) {
        /* An empty partition: nothing was uploaded; commit an empty file. */
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/mr-out-%u", c->cfg->output_dir, reduce);
        u = calloc(1, sizeof *u);
        if (!u || mr_output_open(&u->out, path, err, sizeof err) != 0) {
            output_failed(c, reduce, u ? err : "out of memory");
            free(u);
            reply_err(req, CRAFT_EIO, "the coordinator cannot write output");
            return;
        }
        u->reduce = reduce;
        u->worker = id;
        u->attempt = attempt;
        u->next = c->uploads;
        c->uploads = u;
    }
    if (!u || u->out.bytes != size || u->out.crc != crc) {
        reply_err(req, CRAFT_ECORRUPT, "output size or checksum mismatch");
        if (u) {
            mr_output_abort(&u->out);
            unlink_upload(c, u);
            free(u);
        }
        return;
    }
    unlink_upload(c, u);
    if (c->committing[reduce] ||
        !mr_sched_would_accept(&c->sched, MR_REDUCE, reduce, id)) {
        mr_output_abort(&u->out);
        free(u);
        net_reply(req, 0, &accepted, 1);
        return;
    }
    struct commit_work *cw = calloc(1, sizeof *cw);
    if (!cw) {
        mr_output_abort(&u->out);
        free(u);
        reply_err(req, CRAFT_ENOMEM, "out of memory");
        return;
    }
    *cw = (struct commit_work){.c = c, .up = u, .req = req};
    cw->work.data = cw;
    c->committing[reduce] = 1;
    int rv = uv_queue_work(c->loop, &cw->work, commit_work, commit_done);
    CRAFT_ASSERT(rv == 0); /* fails only for a NULL callback */
}

static void handle_fail(struct coord *c, struct net_request *req,
                        struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r);
    uint8_t kind = mr_r_u8(r);
    uint32_t task = mr_r_u32(r);
    uint64_t attempt = mr_r_u64(r);
    char msg[MR_STR_MAX + 1];
    mr_r_str(r, msg, sizeof msg);
    if (!mr_r_ok(r) || kind > MR_REDUCE) {
        reply_err(req, CRAFT_EPROTO, "bad failure report");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    LOG_WARNF("worker %u: %s", id, msg);
    mr_sched_fail(&c->sched, (enum mr_task_kind)kind, task, id, attempt, msg);
    net_reply(req, 0, NULL, 0);
}

static void handle_fetch_failed(struct coord *c, struct net_request *req,
                                struct mr_rbuf *r)
{
    uint32_t id = mr_r_u32(r), reduce = mr_r_u32(r);
    uint64_t attempt = mr_r_u64(r);
    uint32_t map = mr_r_u32(r), holder = mr_r_u32(r);
    if (!mr_r_ok(r)) {
        reply_err(req, CRAFT_EPROTO, "bad fetch failure report");
        return;
    }
    if (!req_worker(c, req, id)) {
        return;
    }
    if (mr_sched_worker(&c->sched, holder)) {
        LOG_INFOF("worker %u cannot fetch map %u from worker %u: worker %u "
                  "is lost and its maps will run again",
                  id, map, holder, holder);
    }
    mr_sched_fetch_failed(&c->sched, reduce, id, attempt, map, holder);
    net_reply(req, 0, NULL, 0);
}

static void finish(struct coord *c);

/* After anything that may change the schedule: end the job the moment it
 * is done (invariant 3), else hand out what became available. */
static void after_change(struct coord *c)
{
    if (!c->finishing && (mr_sched_done(&c->sched) || c->sched.failed)) {
        finish(c);
    }
    serve_waiters(c);
}

static void on_request(void *data, struct net_conn *conn,
                       struct net_request *req)
{
    struct coord *c = data;
    struct mr_rbuf r;
    mr_r_init(&r, req->payload, req->len);
    uint16_t type = req->type; /* req is freed by the reply */
    switch (type) {
    case MR_MSG_HELLO:
        handle_hello(c, conn, req, &r);
        break;
    case MR_MSG_PLUGIN:
        handle_plugin(c, req, &r);
        break;
    case MR_MSG_TASK:
        handle_task(c, req, &r);
        break;
    case MR_MSG_INPUT:
        handle_input(c, req, &r);
        break;
    case MR_MSG_HEARTBEAT:
        handle_heartbeat(c, req, &r);
        break;
    case MR_MSG_MAP_DONE:
        handle_map_done(c, req, &r);
        break;
    case MR_MSG_OUTPUT:
        handle_output(c, req, &r);
        break;
    case MR_MSG_REDUCE_DONE:
        handle_reduce_done(c, req, &r);
        break;
    case MR_MSG_FAIL:
        handle_fail(c, req, &r);
        break;
    case MR_MSG_FETCH_FAILED:
        handle_fetch_failed(c, req, &r);
        break;
    default:
        reply_err(req, CRAFT_EPROTO, "unknown request type");
        break;
    }
    if (type != MR_MSG_TASK) {
        after_change(c);
    }
}

/* ---- progress, timeouts, the end ---------------------------------------- */

static void progress(struct coord *c, int final)
{
    if (c->cfg->quiet) {
        return;
    }
    double secs = (double)(now_ms(c) - c->start_ms) / 1000.0;
    double mbs = secs > 0 ? (double)c->bytes_in / 1e6 / secs : 0;
    const struct mr_sched *s = &c->sched;
    if (final) {
        if (c->tty) {
            fputs("\r\033[K", stderr);
        }
        if (s->failed) {
            fprintf(stderr, "craft-mr: job FAILED after %.2f s: %s\n", secs,
                    s->errmsg);
        } else {
            fprintf(stderr,
                    "craft-mr: job done in %.2f s: %u maps, %u reduces, %u "
                    "workers, %" PRIu64 " re-issued, %.1f MB in, %.1f MB "
                    "out, %.1f MB/s\n",
                    secs, s->cfg.n_maps, s->cfg.n_reduces, s->n_workers,
                    s->reissues, (double)c->total_in / 1e6,
                    (double)c->bytes_out / 1e6, mbs);
        }
        return;
    }
    uint64_t every = c->tty ? 200 : 1000;
    if (now_ms(c) < c->last_progress_ms + every) {
        return;
    }
    c->last_progress_ms = now_ms(c);
    fprintf(stderr, "%smaps %u/%u  reduces %u/%u  workers %u  %.1f MB/s%s",
            c->tty ? "\r\033[K" : "craft-mr: ", s->maps_done, s->cfg.n_maps,
            s->reduces_done, s->cfg.n_reduces, s->n_alive, mbs,
            c->tty ? "" : "\n");
}

static void on_server_closed(void *data)
{
    struct coord *c = data;
    uv_close((uv_handle_t *)&c->tick, NULL);
}

static void finish(struct coord *c)
{
    CRAFT_ASSERT(!c->finishing);
    c->finishing = 1;
    c->finish_ms = now_ms(c);
    c->exit_code = c->sched.failed ? 1 : 0;
    /* Tell every worker to exit; they hang up, or we stop waiting after
     * COORD_LINGER_MS.  A worker that misses this asks for a task, gets
     * EXIT, or finds the coordinator gone. */
    for (size_t i = 0; i < c->n_conns; i++) {
        (void)net_send(c->conns[i], MR_MSG_JOB_OVER, NULL, 0);
    }
    progress(c, 1);
}

static void on_tick(uv_timer_t *t)
{
    struct coord *c = t->data;
    if (c->finishing) {
        if (c->srv &&
            (c->n_conns == 0 || now_ms(c) >= c->finish_ms + COORD_LINGER_MS)) {
            uv_timer_stop(&c->tick);
            net_server_close(c->srv, c, on_server_closed);
            c->srv = NULL;
        }
        return;
    }
    mr_sched_tick(&c->sched, now_ms(c));
    after_change(c);
    if (!c->finishing) {
        progress(c, 0);
    }
}

/* ---- setup -------------------------------------------------------------- */

static int load_plugin_bytes(struct coord *c)
{
    const char *path = c->cfg->plugin_path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "craft-mr coordinator: plugin %s: %s\n", path,
                strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return CRAFT_EIO;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uint64_t)st.st_size > MR_PLUGIN_BYTES_MAX) {
        fprintf(stderr,
                "craft-mr coordinator: plugin %s: not a plugin file "
                "(empty, too big or not a regular file)\n",
                path);
        close(fd);
        return CRAFT_EINVAL;
    }
    c->plugin_size = (size_t)st.st_size;
    c->plugin = malloc(c->plugin_size);
    int rv = c->plugin ? mr_pread_all(fd, c->plugin, c->plugin_size, 0)
                       : CRAFT_ENOMEM;
    close(fd);
    if (rv != 0) {
        fprintf(stderr, "craft-mr coordinator: cannot read plugin %s\n", path);
        return CRAFT_EIO;
    }
    c->plugin_crc = crc32c(0, c->plugin, c->plugin_size);
    const char *base = strrchr(path, '/');
    snprintf(c->plugin_name, sizeof c->plugin_name, "%s",
             base ? base + 1 : path);
    return 0;
}

static int split_inputs(struct coord *c)
{
    const struct mr_coord_config *cfg = c->cfg;
    char err[512];
    for (uint32_t i = 0; i < cfg->n_inputs; i++) {
        int rv = mr_split_file(cfg->inputs[i], i, cfg->split_bytes, &c->splits,
                               &c->n_splits, err, sizeof err);
        if (rv != 0) {
            fprintf(stderr, "craft-mr coordinator: %s\n", err);
            return rv;
        }
    }
    for (uint32_t m = 0; m < c->n_splits; m++) {
        c->total_in += c->splits[m].length;
    }
    c->map_index = calloc(c->n_splits ? c->n_splits : 1, sizeof *c->map_index);
    c->committing = calloc(cfg->n_reduces, 1);
    return c->map_index && c->committing ? 0 : CRAFT_ENOMEM;
}

static int check_output_dir(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "craft-mr coordinator: --output-dir %s: %s\n", dir,
                strerror(errno));
        return CRAFT_EIO;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr,
                "craft-mr coordinator: --output-dir %s: not a writable "
                "directory\n",
                dir);
        return CRAFT_EIO;
    }
    return 0;
}

static int write_port_file(const char *path, uint16_t port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return CRAFT_EIO;
    }
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        return CRAFT_EIO;
    }
    return 0;
}

static int start_server(struct coord *c)
{
    struct net_config ncfg;
    net_config_init(&ncfg);
    /* Bulk chunks are MR_CHUNK_BYTES plus a small header. */
    ncfg.frame_max = 4 * MR_CHUNK_BYTES;
    struct net_handlers h = {c, on_open, NULL, on_request, on_close};
    char err[256];
    int rv = net_server_new(c->loop, &ncfg, c->cfg->listen, &h, &c->srv, err,
                            sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft-mr coordinator: cannot listen on %s: %s\n",
                c->cfg->listen, err);
        return rv;
    }
    uint16_t port = net_server_port(c->srv);
    if (c->cfg->port_file && write_port_file(c->cfg->port_file, port) != 0) {
        fprintf(stderr, "craft-mr coordinator: cannot write %s\n",
                c->cfg->port_file);
        return CRAFT_EIO;
    }
    if (!c->cfg->quiet) {
        char host[NET_HOST_MAX];
        uint16_t ignored;
        if (net_addr_parse(c->cfg->listen, host, sizeof host, &ignored, 1, NULL,
                           0) != 0) {
            snprintf(host, sizeof host, "?");
        }
        fprintf(stderr,
                "craft-mr coordinator: listening on %s:%u; %u map tasks, %u "
                "reduce tasks, plugin %s\n",
                host, port, c->n_splits, c->cfg->n_reduces, c->plugin_name);
    }
    return 0;
}

static void coord_free(struct coord *c)
{
    CRAFT_ASSERT(c->waiters == NULL);
    while (c->uploads) {
        struct upload *u = c->uploads;
        c->uploads = u->next;
        mr_output_abort(&u->out);
        free(u);
    }
    for (uint32_t m = 0; c->map_index && m < c->n_splits; m++) {
        free(c->map_index[m]);
    }
    free(c->map_index);
    free(c->committing);
    free(c->splits);
    free(c->plugin);
    free(c->conns);
    mr_sched_close(&c->sched);
}

int mr_coordinator_run(const struct mr_coord_config *cfg)
{
    CRAFT_ASSERT(cfg->n_reduces > 0 && cfg->n_inputs > 0);
    struct coord c;
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    c.exit_code = 1;
    c.tty = isatty(2);
    log_set_ident("mr-coordinator");
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        return 1;
    }
    c.loop = &loop;
    int rv = check_output_dir(cfg->output_dir);
    if (rv == 0) {
        rv = load_plugin_bytes(&c);
    }
    if (rv == 0) {
        rv = split_inputs(&c);
    }
    if (rv == 0) {
        struct mr_sched_config scfg = {.n_maps = c.n_splits,
                                       .n_reduces = cfg->n_reduces,
                                       .task_timeout_ms = cfg->task_timeout_ms,
                                       .worker_timeout_ms =
                                           cfg->worker_timeout_ms,
                                       .max_failures = cfg->max_failures,
                                       .max_losses = cfg->max_losses,
                                       .plugin = c.plugin_name};
        rv = mr_sched_init(&c.sched, &scfg);
    }
    if (rv == 0) {
        rv = start_server(&c);
    }
    if (rv == 0) {
        c.start_ms = uv_now(&loop);
        uv_timer_init(&loop, &c.tick);
        c.tick.data = &c;
        uv_timer_start(&c.tick, on_tick, COORD_TICK_MS, COORD_TICK_MS);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (c.exit_code != 0 && cfg->quiet) {
            fprintf(stderr, "craft-mr coordinator: %s\n", c.sched.errmsg);
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop);
    coord_free(&c);
    return rv == 0 ? c.exit_code : 1;
}
