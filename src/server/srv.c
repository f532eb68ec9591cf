/*
 * The Redis protocol front end (see srv.h for the contract).
 *
 * Life of a command on one connection:
 *
 *   read_cb -> client_process -> resp_parse -> local command: reply now
 *                                           -> otherwise: srv_op queued,
 *                                              backend->submit(op)
 *   srv_op_done -> client_drain: finished ops at the head of the queue
 *                  move their replies to c->out, in arrival order
 *   before the loop sleeps (prepare handle) -> client_write: one write per
 *                  connection per loop iteration, as Redis's beforeSleep
 *
 * A client's state only ever moves forward:
 *
 *   OPEN --(QUIT, protocol error, srv_stop)--> DRAINING --(queue empty and
 *   output written)--> CLOSING --(uv close callback)--> freed
 *   OPEN or DRAINING --(read/write error, EOF)--> CLOSING
 *
 * In DRAINING no more input is parsed.  Ops still queued when a connection
 * reaches CLOSING are orphaned (op->client = NULL) and freed when the
 * backend finishes them.
 */
#include "server/srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "server/auth.h"
#include "server/cluster.h"
#include "server/resp.h"
#include "server/srv_cmds.h"
#include "util/assert.h"
#include "util/log.h"
#include "util/obs.h"

enum client_state { CLIENT_OPEN = 1, CLIENT_DRAINING, CLIENT_CLOSING };

struct srv_client {
    uv_tcp_t tcp;
    struct srv *srv;
    struct srv_client *prev, *next; /* srv->clients */
    struct srv_client *wnext;       /* srv->writers, when queued_write */
    uint64_t id;
    enum client_state state;
    bool reading;
    bool processing; /* inside client_process(), which is not reentrant */
    bool queued_write;
    bool writing;
    bool authed;
    struct buf in; /* query buffer */
    struct resp_parser parser;
    struct srv_op *head, *tail; /* ops in arrival order */
    unsigned n_ops;
    /* Invariant 5: ops from held on (those not done) wait for submission;
     * n_flight ops of kind flight_kind are with the backend. */
    struct srv_op *held;
    unsigned n_flight;
    uint8_t flight_kind;
    bool dispatching; /* inside client_dispatch(), not reentrant */
    struct buf out;   /* replies not yet handed to the kernel */
    struct buf wbuf;  /* replies being written */
    uv_write_t wreq;
    /* MULTI: the queued commands (not submitted), and whether one of them
     * was refused, which makes EXEC fail. */
    bool in_multi;
    bool multi_dirty;
    /* READONLY (possibly stale reads on a follower), and the highest
     * applied index a read of this connection was served at, so that
     * reads never go back in time on the connection. */
    bool readonly;
    uint64_t read_index;
    uint64_t read_at_ms;
    struct srv_op *mhead, *mtail;
    size_t n_multi;
    size_t multi_bytes; /* of the queued commands, SRV_MULTI_BYTES_MAX */
    /* WATCH: the watched keys and versions, and whether a WATCH is with
     * the backend (parsing waits for it, so that the list is complete
     * whenever a later EXEC, UNWATCH or DISCARD is parsed). */
    struct srv_watch *watch;
    bool watch_pending;
    bool watch_failed; /* a WATCH failed: the next EXEC answers *-1 */
    bool resp3;        /* HELLO 3: replies in RESP3 (srv__resp3_append) */
    char *name;        /* CLIENT SETNAME, NULL for none */
    /* CLIENT LIST: when it connected and last sent a command (loop time,
     * ms), and that command's name ("client|list" for a subcommand). */
    uint64_t ctime_ms, last_ms;
    char last_cmd[40];
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_prepare_t flusher;
    struct srv_backend backend;
    struct srv_options opts;
    char host[64];
    char pass[513];
    uint16_t port;
    unsigned n_clients;
    size_t querybuf_max;   /* per client */
    size_t querybuf_total; /* sum of querybuf_large() over the clients */
    unsigned n_handles;    /* open uv handles: listener, flusher, clients */
    uint64_t next_client_id;
    struct srv_client *clients;
    struct srv_client *writers; /* clients with output to write */
    bool stopping;
    bool flusher_closed;
    srv_stop_cb stop_cb;
    void *stop_data;
    /* Freed ops kept for reuse (op_new), with their reply buffers. */
    struct srv_op *op_pool;
    unsigned n_op_pool;
};

static void client_process(struct srv_client *c);
static void client_close(struct srv_client *c);
static void multi_reset(struct srv_client *c);
static void client_maybe_finish(struct srv_client *c);
static void client_dispatch(struct srv_client *c);
static void on_srv_handle_close(uv_handle_t *h);
static void op_observe(const struct srv_op *op);

bool srv_arg_is(const uint8_t *arg, size_t len, const char *name)
{
    /* Command names are letters: most mismatches show in the first one
     * (| 0x20 folds case; other bytes may pass here, not below). */
    if (len == 0 || (arg[0] | 0x20) != (name[0] | 0x20)) {
        return false;
    }
    return strlen(name) == len &&
           strncasecmp((const char *)arg, name, len) == 0;
}

/* ---- output --------------------------------------------------------- */

/* Queue c for the writer that runs before the loop sleeps. */
static void client_want_write(struct srv_client *c)
{
    if (!c->queued_write && c->state != CLIENT_CLOSING) {
        c->queued_write = true;
        c->wnext = c->srv->writers;
        c->srv->writers = c;
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct srv_client *c = req->data;
    CRAFT_ASSERT(c->writing);
    c->writing = false;
    buf_reset(&c->wbuf);
    /* Give back memory a burst of large replies made us keep. */
    if (c->wbuf.cap > 4 * SRV_READ_CHUNK) {
        buf_close(&c->wbuf);
    }
    if (status < 0) {
        if (status != UV_ECANCELED) {
            LOG_DEBUGF("client %llu: write failed: %s",
                       (unsigned long long)c->id, uv_strerror(status));
        }
        client_close(c);
        return;
    }
    if (c->out.len > 0) {
        client_want_write(c);
    }
    client_maybe_finish(c);
    if (c->state == CLIENT_OPEN && !c->reading) {
        client_process(c);
    }
}

static void client_write(struct srv_client *c)
{
    if (c->writing || c->out.len == 0 || c->state == CLIENT_CLOSING) {
        return;
    }
    /* Most replies fit in the socket buffer: write them now, without a
     * write request and the loop turn its callback takes. */
    uv_buf_t now = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
    if (n > 0) {
        buf_consume(&c->out, (size_t)n);
        if (c->out.len == 0) {
            if (c->out.cap > 4 * SRV_READ_CHUNK) {
                buf_close(&c->out); /* give back what a burst took */
            }
            if (c->state == CLIENT_OPEN && !c->reading) {
                client_process(c); /* the output limit may have paused it */
            }
            return;
        }
    } else if (n != UV_EAGAIN) {
        LOG_DEBUGF("client %llu: write failed: %s", (unsigned long long)c->id,
                   uv_strerror(n));
        client_close(c);
        return;
    }
    /* Swap: out becomes the buffer in flight, the old wbuf collects more. */
    struct buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    CRAFT_ASSERT(c->out.len == 0);
    uv_buf_t b = uv_buf_init((char *)c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rv = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rv != 0) {
        LOG_DEBUGF("client %llu: write failed: %s", (unsigned long long)c->id,
                   uv_strerror(rv));
        buf_reset(&c->wbuf);
        client_close(c);
        return;
    }
    c->writing = true;
}

/* Runs once per loop iteration, just before it waits for I/O, so that the
 * replies of all commands finished in one iteration leave in one write. */
static void on_prepare(uv_prepare_t *h)
{
    struct srv *s = h->data;
    while (s->writers != NULL) {
        struct srv_client *c = s->writers;
        s->writers = c->wnext;
        c->queued_write = false;
        client_write(c);
        client_maybe_finish(c);
    }
}

/* ---- ops ------------------------------------------------------------ */

/*
 * Ops whose command fits in SRV_OP_POOL_BYTES (a SET of a value up to a
 * few hundred bytes, any GET of a short key) are blocks of that size,
 * reused through s->op_pool with their reply buffers: a malloc and free
 * of the op and of its reply per command were a tenth of the leader's
 * instructions per pipelined SET.  At most SRV_OP_POOL_MAX are kept (2 MiB
 * plus their replies of at most SRV_OP_REPLY_KEEP bytes each).
 */
#define SRV_OP_POOL_BYTES 512
#define SRV_OP_POOL_MAX 4096
#if defined(__SANITIZE_ADDRESS__)
/* AddressSanitizer sees a use after free only of memory really freed. */
#define SRV_OP_POOL_ON 0
#else
#define SRV_OP_POOL_ON 1
#endif
#define SRV_OP_REPLY_KEEP 1024

static struct srv_op *op_new(struct srv_client *c, const struct resp_cmd *cmd)
{
    size_t bytes = 0;
    for (size_t i = 0; i < cmd->argc; i++) {
        bytes += cmd->lens[i] + 1; /* NUL-terminate for convenience */
    }
    size_t head = sizeof(struct srv_op) +
                  cmd->argc * (sizeof(uint8_t *) + sizeof(size_t));
    struct srv *s = c->srv;
    bool pooled = head + bytes <= SRV_OP_POOL_BYTES;
    struct srv_op *op;
    struct buf reply;
    if (pooled && s->op_pool != NULL) {
        op = s->op_pool;
        s->op_pool = op->next;
        s->n_op_pool--;
        reply = op->reply;
        CRAFT_ASSERT(op->pooled && reply.len == 0);
    } else {
        op = malloc(pooled ? SRV_OP_POOL_BYTES : head + bytes);
        if (op == NULL) {
            return NULL;
        }
        buf_init(&reply);
    }
    memset(op, 0, sizeof *op);
    op->pooled = pooled;
    op->reply = reply;
    op->srv = c->srv;
    op->client = c;
    op->client_id = c->id;
    op->start_ns = uv_hrtime();
    op->argc = cmd->argc;
    op->argv = (uint8_t **)(op + 1);
    op->lens = (size_t *)(op->argv + cmd->argc);
    uint8_t *p = (uint8_t *)(op->lens + cmd->argc);
    for (size_t i = 0; i < cmd->argc; i++) {
        op->argv[i] = p;
        op->lens[i] = cmd->lens[i];
        memcpy(p, cmd->argv[i], cmd->lens[i]);
        p[cmd->lens[i]] = '\0';
        p += cmd->lens[i] + 1;
    }
    return op;
}

static void op_free(struct srv_op *op)
{
    srv__watch_free(op->watch);
    op->watch = NULL;
    struct srv *s = op->srv;
    if (SRV_OP_POOL_ON && op->pooled && !s->stopping &&
        s->n_op_pool < SRV_OP_POOL_MAX) {
        if (op->reply.cap > SRV_OP_REPLY_KEEP) {
            buf_close(&op->reply);
        }
        buf_reset(&op->reply);
        op->next = s->op_pool;
        s->op_pool = op;
        s->n_op_pool++;
        return;
    }
    buf_close(&op->reply);
    free(op);
}

static void enqueue(struct srv_client *c, struct srv_op *op)
{
    op->next = NULL;
    if (c->tail != NULL) {
        c->tail->next = op;
    } else {
        c->head = op;
    }
    c->tail = op;
    c->n_ops++;
}

/* Move the replies of finished ops at the head of the queue to c->out. */
static void client_drain(struct srv_client *c)
{
    while (c->head != NULL && c->head->done) {
        struct srv_op *op = c->head;
        c->head = op->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        c->n_ops--;
        size_t pending = c->out.len + c->wbuf.len;
        if (pending > 0 && pending + op->reply.len > SRV_OUTBUF_HARD_MAX) {
            LOG_WARNF("client %llu: over %u MiB of replies unread; closing",
                      (unsigned long long)c->id,
                      (unsigned)(SRV_OUTBUF_HARD_MAX >> 20));
            op_free(op);
            client_close(c);
            return;
        }
        if ((c->resp3
                 ? srv__resp3_append(&c->out, op->reply.data, op->reply.len)
                 : buf_append(&c->out, op->reply.data, op->reply.len)) != 0) {
            LOG_WARNF("client %llu: out of memory for a reply; closing",
                      (unsigned long long)c->id);
            op_free(op);
            client_close(c);
            return;
        }
        op_free(op);
        client_want_write(c);
    }
}

/* The next op waiting for submission after op, or NULL. */
static struct srv_op *next_held(struct srv_op *op)
{
    while (op != NULL && op->done) {
        op = op->next; /* answered locally */
    }
    return op;
}

/* Submit the held ops that invariant 5 lets go: all of them while they are
 * of the kind in flight (or nothing is in flight). */
static void client_dispatch(struct srv_client *c)
{
    if (c->dispatching) {
        return; /* an op finished inside submit(): the loop below goes on */
    }
    c->dispatching = true;
    while (c->held != NULL && c->state != CLIENT_CLOSING &&
           (c->n_flight == 0 || c->held->kind == c->flight_kind)) {
        struct srv_op *op = c->held;
        c->held = next_held(op->next);
        c->n_flight++;
        c->flight_kind = op->kind;
        c->srv->backend.submit(c->srv->backend.data, op);
    }
    c->dispatching = false;
}

/* Queue an op for the backend behind the client's earlier ones. */
static void client_submit(struct srv_client *c, struct srv_op *op)
{
    struct srv *s = c->srv;
    enqueue(c, op);
    op->readonly = c->readonly;
    op->read_index = c->read_index;
    op->read_at_ms = c->read_at_ms;
    op->kind = s->backend.classify != NULL
                   ? (uint8_t)s->backend.classify(s->backend.data, op)
                   : SRV_OP_WRITE;
    if (op->kind != SRV_OP_ANSWERED && op->n_cmds == 0 &&
        srv_arg_is(op->argv[0], op->lens[0], "watch")) {
        op->is_watch = true;
        op->readonly = false; /* versions come from the leader */
        c->watch_pending = true;
    }
    if (op->kind == SRV_OP_ANSWERED) {
        CRAFT_ASSERT(op->reply.len > 0);
        op_observe(op);
        op->done = true;
        client_drain(c);
        return;
    }
    if (c->held == NULL) {
        c->held = op;
    }
    client_dispatch(c);
}

/* Count a finished op (util/obs.h): a transaction under "exec". */
static void op_observe(const struct srv_op *op)
{
    enum obs_class cls = op->kind == SRV_OP_READ    ? OBS_READ
                         : op->kind == SRV_OP_WRITE ? OBS_WRITE
                                                    : OBS_LOCAL;
    const char *reply = (const char *)op->reply.data;
    const uint8_t *name =
        op->n_cmds > 0 ? (const uint8_t *)"exec" : op->argv[0];
    size_t len = op->n_cmds > 0 ? 4 : op->lens[0];
    obs_command(name, len, cls, obs_result_of(reply, op->reply.len), reply,
                op->reply.len, uv_hrtime() - op->start_ns);
}

/* slot: the command's key slot, for MOVED (server/cluster.h). */
static void write_status_error(struct srv *s, struct buf *b, int status,
                               unsigned slot)
{
    char leader[96];
    switch (status) {
    case CRAFT_ENOTLEADER:
        if (s->backend.leader(s->backend.data, leader, sizeof leader)) {
            resp_write_errorf(b, "MOVED %u %s", slot, leader);
        } else {
            resp_write_error(b, "CLUSTERDOWN no leader is known; retry "
                                "shortly");
        }
        return;
    case CRAFT_ELEADERLOST:
        resp_write_error(b, "UNCERTAIN leadership changed before the command "
                            "committed; it may or may not have taken effect");
        return;
    case CRAFT_ESHUTDOWN:
        resp_write_error(b, "SHUTDOWN the node is stopping; the command was "
                            "not executed");
        return;
    default:
        resp_write_errorf(b, "ERR %s", craft_strerror(status));
        return;
    }
}

/* A WATCH op finished: record its keys and answer +OK (srv_cmds.h). */
static void watch_done(struct srv_client *c, struct srv_op *op, int status)
{
    c->watch_pending = false;
    if (status != 0) {
        /* Not watched (-MOVED, -UNCERTAIN...): an EXEC that a pipelining
         * client sends anyway must not run unguarded. */
        c->watch_failed = true;
        return;
    }
    int rv = srv__watch_add(&c->watch, op->argc, op->argv, op->lens,
                            op->reply.data, op->reply.len);
    if (rv == CRAFT_EPROTO) {
        return; /* an error reply (arity, ...): passed on as it is */
    }
    c->watch_failed = rv != 0;
    buf_reset(&op->reply);
    if (rv == CRAFT_ELIMIT) {
        resp_write_errorf(&op->reply,
                          "ERR more than %d watched keys or %u bytes of them",
                          SRV_WATCH_MAX, SRV_WATCH_BYTES_MAX);
    } else if (rv != 0) {
        resp_write_error(&op->reply, "ERR out of memory");
    } else {
        resp_write_simple(&op->reply, "OK");
    }
}

void srv_op_done(struct srv_op *op, int status)
{
    CRAFT_ASSERT(!op->done);
    bool was_watch = op->is_watch && op->client != NULL;
    if (was_watch) {
        watch_done(op->client, op, status);
    }
    if (status != 0) {
        buf_reset(&op->reply);
        /* A transaction's slot is its first command's. */
        size_t argc = op->n_cmds > 0 ? op->cmd_argc[0] : op->argc;
        write_status_error(
            op->srv, &op->reply, status,
            srv_cluster_cmd_slot(argc, (const uint8_t *const *)op->argv,
                                 op->lens));
    }
    CRAFT_ASSERT(op->reply.len > 0);
    op_observe(op);
    op->done = true;
    struct srv_client *c = op->client;
    if (c == NULL) {
        op_free(op);
        return;
    }
    CRAFT_ASSERT(c->n_flight > 0);
    c->n_flight--;
    if (op->readonly && status == 0 && op->read_index > c->read_index) {
        c->read_index = op->read_index;
    }
    if (status == 0 && op->read_at_ms > c->read_at_ms) {
        c->read_at_ms = op->read_at_ms;
    }
    client_drain(c);
    client_dispatch(c);
    client_maybe_finish(c);
    if (c->state == CLIENT_OPEN && (!c->reading || was_watch) &&
        !c->processing) {
        client_process(c);
    }
}

/* ---- local commands ------------------------------------------------- */

/* The commands craftd answers, for COMMAND and COMMAND COUNT: name, arity
 * (negative: at least), flags, first key, last key, key step. */
struct cmd_desc {
    const char *name;
    int arity;
    const char *flag;
    int first, last, step;
};

/* Informational (redis-cli and client libraries ask); it mirrors the
 * command table of src/kv/commands.c plus the commands answered here. */
static const struct cmd_desc commands[] = {
    {"get", 2, "readonly", 1, 1, 1},
    {"mget", -2, "readonly", 1, -1, 1},
    {"exists", -2, "readonly", 1, -1, 1},
    {"strlen", 2, "readonly", 1, 1, 1},
    {"dbsize", 1, "readonly", 0, 0, 0},
    {"type", 2, "readonly", 1, 1, 1},
    {"getrange", 4, "readonly", 1, 1, 1},
    {"ttl", 2, "readonly", 1, 1, 1},
    {"pttl", 2, "readonly", 1, 1, 1},
    {"keys", 2, "readonly", 0, 0, 0},
    {"scan", -2, "readonly", 0, 0, 0},
    {"set", -3, "write", 1, 1, 1},
    {"setnx", 3, "write", 1, 1, 1},
    {"getset", 3, "write", 1, 1, 1},
    {"getdel", 2, "write", 1, 1, 1},
    {"append", 3, "write", 1, 1, 1},
    {"del", -2, "write", 1, -1, 1},
    {"incr", 2, "write", 1, 1, 1},
    {"decr", 2, "write", 1, 1, 1},
    {"incrby", 3, "write", 1, 1, 1},
    {"decrby", 3, "write", 1, 1, 1},
    {"incrbyfloat", 3, "write", 1, 1, 1},
    {"mset", -3, "write", 1, -1, 2},
    {"msetnx", -3, "write", 1, -1, 2},
    {"rename", 3, "write", 1, 2, 1},
    {"renamenx", 3, "write", 1, 2, 1},
    {"setrange", 4, "write", 1, 1, 1},
    {"expire", -3, "write", 1, 1, 1},
    {"pexpire", -3, "write", 1, 1, 1},
    {"persist", 2, "write", 1, 1, 1},
    {"flushall", -1, "write", 0, 0, 0},
    {"flushdb", -1, "write", 0, 0, 0},
    {"multi", 1, "fast", 0, 0, 0},
    {"exec", 1, "write", 0, 0, 0},
    {"discard", 1, "fast", 0, 0, 0},
    {"craft.session", 1, "write", 0, 0, 0},
    {"craft.exec", -4, "write", 0, 0, 0},
    {"ping", -1, "fast", 0, 0, 0},
    {"echo", 2, "fast", 0, 0, 0},
    {"quit", -1, "fast", 0, 0, 0},
    {"select", 2, "fast", 0, 0, 0},
    {"auth", -2, "fast", 0, 0, 0},
    {"hello", -1, "fast", 0, 0, 0},
    {"client", -2, "admin", 0, 0, 0},
    {"command", -1, "loading", 0, 0, 0},
    {"config", -2, "admin", 0, 0, 0},
    {"info", -1, "loading", 0, 0, 0},
    {"watch", -2, "fast", 1, -1, 1},
    {"unwatch", 1, "fast", 0, 0, 0},
    {"readonly", 1, "fast", 0, 0, 0},
    {"readwrite", 1, "fast", 0, 0, 0},
    {"cluster", -2, "admin", 0, 0, 0},
};

/* The metrics label filter (util/obs.h invariant 3): a command name of
 * the table above.  Called once per new name only. */
static bool command_known(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strlen(commands[i].name) == len &&
            memcmp(commands[i].name, name, len) == 0) {
            return true;
        }
    }
    return false;
}

static void cmd_command(struct srv_client *c, const struct resp_cmd *cmd,
                        struct buf *b)
{
    (void)c;
    size_t n = CRAFT_ARRAY_LEN(commands);
    if (cmd->argc >= 2 && srv_arg_is(cmd->argv[1], cmd->lens[1], "count")) {
        resp_write_int(b, (long long)n);
        return;
    }
    if (cmd->argc >= 2 && srv_arg_is(cmd->argv[1], cmd->lens[1], "docs")) {
        /* redis-cli asks for docs to offer hints; it copes with none. */
        resp_write_array(b, 0);
        return;
    }
    if (cmd->argc >= 2) {
        resp_write_errorf(b, "ERR unknown subcommand '%.*s' for 'COMMAND'",
                          (int)(cmd->lens[1] > 64 ? 64 : cmd->lens[1]),
                          (const char *)cmd->argv[1]);
        return;
    }
    resp_write_array(b, n);
    for (size_t i = 0; i < n; i++) {
        resp_write_array(b, 6);
        resp_write_bulk(b, commands[i].name, strlen(commands[i].name));
        resp_write_int(b, commands[i].arity);
        resp_write_array(b, 1);
        resp_write_simple(b, commands[i].flag);
        resp_write_int(b, commands[i].first);
        resp_write_int(b, commands[i].last);
        resp_write_int(b, commands[i].step);
    }
}

/* The front end's CONFIG parameters (the backend adds its own).  Values
 * are this node's: CONFIG SET changes only the node it is sent to.  Every
 * write is fsynced by a majority before it is acknowledged, which is what
 * appendfsync always promises for one node. */
static const char *srv_config_get(void *data, size_t i, char *v, size_t cap)
{
    struct srv *s = data;
    switch (i) {
    case 0:
        snprintf(v, cap, "%u", s->opts.max_clients);
        return "maxclients";
    case 1:
        snprintf(v, cap, "%s", s->pass);
        return "requirepass";
    case 2:
        snprintf(v, cap, "%u", (unsigned)s->port);
        return "port";
    case 3:
        snprintf(v, cap, "%s", s->host);
        return "bind";
    case 4:
        snprintf(v, cap, "yes");
        return "appendonly";
    case 5:
        snprintf(v, cap, "%s", s->opts.fsync ? "always" : "no");
        return "appendfsync";
    case 6:
        snprintf(v, cap, "%s", "");
        return "save";
    case 7:
        snprintf(v, cap, "1");
        return "databases";
    case 8:
        snprintf(v, cap, "%s", s->backend.cluster != NULL ? "yes" : "no");
        return "cluster-enabled";
    case 9:
        snprintf(v, cap, "%zu", s->opts.command_max);
        return "proto-max-bulk-len";
    default:
        return NULL;
    }
}

static int srv_config_set(void *data, const char *name, const char *value,
                          bool apply, char *err, size_t cap)
{
    struct srv *s = data;
    if (strcmp(name, "maxclients") == 0) {
        long long v;
        if (resp_strtoll((const uint8_t *)value, strlen(value), &v) != 0) {
            snprintf(err, cap, "argument couldn't be parsed into an integer");
            return CRAFT_EINVAL;
        }
        if (v < 1 || v > SRV_MAX_CLIENTS_MAX) {
            snprintf(err, cap, "argument must be between 1 and %d inclusive",
                     SRV_MAX_CLIENTS_MAX);
            return CRAFT_EINVAL;
        }
        if (apply) {
            s->opts.max_clients = (unsigned)v;
        }
        return 0;
    }
    if (strcmp(name, "requirepass") == 0) {
        if (strlen(value) >= sizeof s->pass) {
            snprintf(err, cap, "password longer than %zu bytes",
                     sizeof s->pass - 1);
            return CRAFT_EINVAL;
        }
        if (apply) {
            /* Connections already authenticated stay so, as in Redis. */
            snprintf(s->pass, sizeof s->pass, "%s", value);
        }
        return 0;
    }
    char v[8];
    for (size_t i = 0; srv_config_get(s, i, v, sizeof v) != NULL; i++) {
        if (strcmp(srv_config_get(s, i, v, sizeof v), name) == 0) {
            snprintf(err, cap, "can't set immutable config");
            return CRAFT_EINVAL;
        }
    }
    return CRAFT_ENOENT;
}

static void cmd_config(struct srv_client *c, const struct resp_cmd *cmd,
                       struct buf *b)
{
    struct srv *s = c->srv;
    struct srv__config_src srcs[2] = {
        {s, srv_config_get, srv_config_set},
        {s->backend.data, s->backend.config_get, s->backend.config_set},
    };
    size_t n = s->backend.config_get != NULL ? 2 : 1;
    srv__config_command(srcs, n, cmd->argc, (const uint8_t *const *)cmd->argv,
                        cmd->lens, c->resp3, b);
}

/* INFO [section ...]: the backend writes every section (it knows the
 * node; the front end's counters are in util/obs.h). */
static void cmd_info(struct srv_client *c, const struct resp_cmd *cmd,
                     struct buf *b)
{
    struct srv *s = c->srv;
    struct buf text;
    buf_init(&text);
    int rv = s->backend.info(s->backend.data, cmd->argc - 1,
                             (const uint8_t *const *)cmd->argv + 1,
                             cmd->lens + 1, &text);
    if (rv == 0) {
        resp_write_bulk(b, text.data, text.len);
    } else {
        resp_write_error(b, "ERR out of memory");
    }
    buf_close(&text);
}

static void cmd_auth(struct srv_client *c, const struct resp_cmd *cmd,
                     struct buf *b)
{
    const char *pass = c->srv->pass;
    if (cmd->argc < 2 || cmd->argc > 3) {
        resp_write_error(b, "ERR wrong number of arguments for 'auth' "
                            "command");
        return;
    }
    if (pass[0] == '\0') {
        resp_write_error(b, "ERR AUTH <password> called without any password "
                            "configured for the default user. Are you sure "
                            "your configuration is correct?");
        return;
    }
    /* AUTH user pass: only the "default" user exists. */
    size_t i = cmd->argc - 1;
    bool user_ok =
        cmd->argc == 2 || srv_arg_is(cmd->argv[1], cmd->lens[1], "default");
    if (srv_pass_equal(pass, cmd->argv[i], cmd->lens[i]) && user_ok) {
        c->authed = true;
        resp_write_simple(b, "OK");
        return;
    }
    resp_write_error(b, "WRONGPASS invalid username-password pair or user is "
                        "disabled.");
}

/* Redis's clientSetName(): printable ASCII without spaces; empty clears.
 * Returns false with the error written to b. */
static bool client_setname(struct srv_client *c, const uint8_t *p, size_t n,
                           struct buf *b)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '!' || p[i] > '~') {
            resp_write_error(b, "ERR Client names cannot contain spaces, "
                                "newlines or special characters.");
            return false;
        }
    }
    char *name = NULL;
    if (n > 0) {
        name = malloc(n + 1);
        if (name == NULL) {
            resp_write_error(b, "ERR out of memory");
            return false;
        }
        memcpy(name, p, n);
        name[n] = '\0';
    }
    free(c->name);
    c->name = name;
    return true;
}

static void client_info_of(const struct srv_client *c,
                           struct srv__client_info *ci)
{
    memset(ci, 0, sizeof *ci);
    uint64_t now = uv_now(c->srv->loop);
    ci->id = c->id;
    struct sockaddr_storage sa;
    int len = sizeof sa;
    snprintf(ci->addr, sizeof ci->addr, "?:0");
    snprintf(ci->laddr, sizeof ci->laddr, "?:0");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        srv__format_addr(&sa, ci->addr, sizeof ci->addr);
    }
    len = sizeof sa;
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        srv__format_addr(&sa, ci->laddr, sizeof ci->laddr);
    }
    uv_os_fd_t fd;
    ci->fd = uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 ? (long)fd : -1;
    ci->name = c->name != NULL ? c->name : "";
    ci->age_s = (now - c->ctime_ms) / 1000;
    ci->idle_s = (now - c->last_ms) / 1000;
    size_t f = 0;
    if (c->in_multi) {
        ci->flags[f++] = 'x';
    }
    if (c->readonly) {
        ci->flags[f++] = 'r';
    }
    if (f == 0) {
        ci->flags[f++] = 'N';
    }
    ci->flags[f] = '\0';
    ci->multi = c->in_multi ? (long long)c->n_multi : -1;
    ci->qbuf = c->in.len;
    ci->qbuf_free = c->in.cap - c->in.len;
    ci->obl = c->out.len;
    ci->omem = c->out.len + c->wbuf.len;
    ci->events = c->reading ? (c->writing ? "rw" : "r") : c->writing ? "w" : "";
    ci->cmd = c->last_cmd[0] ? c->last_cmd : "NULL";
    ci->resp = c->resp3 ? 3 : 2;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id [id ...]]. */
static void client_list(struct srv_client *c, const struct resp_cmd *cmd,
                        struct buf *b)
{
    bool none = false;
    uint64_t *ids = NULL; /* the ID filter, sorted; n_ids 0 for none */
    size_t n_ids = 0;
    if (cmd->argc == 4 && srv_arg_is(cmd->argv[2], cmd->lens[2], "type")) {
        const uint8_t *t = cmd->argv[3];
        size_t n = cmd->lens[3];
        if (srv_arg_is(t, n, "master") || srv_arg_is(t, n, "replica") ||
            srv_arg_is(t, n, "slave") || srv_arg_is(t, n, "pubsub")) {
            none = true;
        } else if (!srv_arg_is(t, n, "normal")) {
            resp_write_errorf(b, "ERR Unknown client type '%.*s'",
                              (int)(n > 64 ? 64 : n), (const char *)t);
            return;
        }
    } else if (cmd->argc >= 4 && srv_arg_is(cmd->argv[2], cmd->lens[2], "id")) {
        ids = malloc((cmd->argc - 3) * sizeof *ids);
        if (ids == NULL) {
            resp_write_error(b, "ERR out of memory");
            return;
        }
        for (size_t i = 3; i < cmd->argc; i++) {
            long long id;
            if (resp_strtoll(cmd->argv[i], cmd->lens[i], &id) != 0 || id < 1) {
                free(ids);
                resp_write_error(b, "ERR Invalid client ID");
                return;
            }
            ids[n_ids++] = (uint64_t)id;
        }
        /* Sorted, so the filter costs O((ids + clients) log ids). */
        qsort(ids, n_ids, sizeof *ids, cmp_u64);
    } else if (cmd->argc != 2) {
        resp_write_error(b, "ERR syntax error");
        return;
    }
    struct buf text;
    buf_init(&text);
    int rv = 0;
    for (struct srv_client *o = c->srv->clients; !none && o != NULL && rv == 0;
         o = o->next) {
        bool want = n_ids == 0 ||
                    bsearch(&o->id, ids, n_ids, sizeof *ids, cmp_u64) != NULL;
        if (want && o->state != CLIENT_CLOSING) {
            struct srv__client_info ci;
            client_info_of(o, &ci);
            rv = srv__client_line(&ci, &text);
        }
    }
    if (rv == 0) {
        srv__write_verbatim(b, text.data, text.len, c->resp3);
    } else {
        resp_write_error(b, "ERR out of memory");
    }
    buf_close(&text);
    free(ids);
}

/* CLIENT KILL addr, or CLIENT KILL [ID id] [ADDR a] [LADDR a] [SKIPME
 * yes|no] ...: the other clients matched are closed now (their unsent
 * replies dropped), this one after its reply, as in Redis. */
static void client_kill(struct srv_client *c, const struct resp_cmd *cmd,
                        struct buf *b)
{
    bool old = cmd->argc == 3, skipme = !old;
    long long id = 0;
    const uint8_t *addr = NULL, *laddr = NULL;
    size_t addr_n = 0, laddr_n = 0;
    if (old) {
        addr = cmd->argv[2];
        addr_n = cmd->lens[2];
    }
    for (size_t i = 2; !old && i < cmd->argc; i += 2) {
        const uint8_t *k = cmd->argv[i],
                      *v = cmd->argv[i + 1 < cmd->argc ? i + 1 : i];
        size_t kn = cmd->lens[i], vn = cmd->lens[i + 1 < cmd->argc ? i + 1 : i];
        if (i + 1 >= cmd->argc) {
            resp_write_error(b, "ERR syntax error");
            return;
        }
        if (srv_arg_is(k, kn, "id")) {
            if (resp_strtoll(v, vn, &id) != 0 || id < 1) {
                resp_write_error(b, "ERR client-id should be greater than 0");
                return;
            }
        } else if (srv_arg_is(k, kn, "addr")) {
            addr = v;
            addr_n = vn;
        } else if (srv_arg_is(k, kn, "laddr")) {
            laddr = v;
            laddr_n = vn;
        } else if (srv_arg_is(k, kn, "skipme") &&
                   (srv_arg_is(v, vn, "yes") || srv_arg_is(v, vn, "no"))) {
            skipme = srv_arg_is(v, vn, "yes");
        } else {
            resp_write_error(b, "ERR syntax error");
            return;
        }
    }
    long long killed = 0;
    bool me = false;
    for (struct srv_client *o = c->srv->clients; o != NULL;) {
        struct srv_client *next = o->next;
        struct srv__client_info ci;
        client_info_of(o, &ci);
        bool match =
            o->state != CLIENT_CLOSING && (id == 0 || (uint64_t)id == o->id) &&
            (addr == NULL || (strlen(ci.addr) == addr_n &&
                              memcmp(ci.addr, addr, addr_n) == 0)) &&
            (laddr == NULL || (strlen(ci.laddr) == laddr_n &&
                               memcmp(ci.laddr, laddr, laddr_n) == 0)) &&
            !(skipme && o == c);
        if (match && o == c) {
            me = true;
            killed++;
        } else if (match) {
            client_close(o);
            killed++;
        }
        o = next;
    }
    if (old && killed == 0) {
        resp_write_error(b, "ERR No such client");
        return;
    }
    if (old) {
        resp_write_simple(b, "OK");
    } else {
        resp_write_int(b, killed);
    }
    if (me) {
        c->state = CLIENT_DRAINING; /* closed once the reply is out */
    }
}

/* CLIENT ID | INFO | LIST | GETNAME | SETNAME | KILL, with Redis 7's
 * replies; SETINFO (Redis 7.2, sent by newer client libraries) is accepted
 * and ignored. */
static void cmd_client(struct srv_client *c, const struct resp_cmd *cmd,
                       struct buf *b)
{
    if (cmd->argc < 2) {
        resp_write_error(b, "ERR wrong number of arguments for 'client' "
                            "command");
        return;
    }
    const uint8_t *sub = cmd->argv[1];
    size_t n = cmd->lens[1];
    static const struct {
        const char *name;
        size_t min, max;
    } arity[] = {{"id", 2, 2},          {"info", 2, 2},
                 {"getname", 2, 2},     {"setname", 3, 3},
                 {"list", 2, SIZE_MAX}, {"kill", 3, SIZE_MAX},
                 {"setinfo", 4, 4}};
    size_t k = 0;
    while (k < CRAFT_ARRAY_LEN(arity) && !srv_arg_is(sub, n, arity[k].name)) {
        k++;
    }
    if (k == CRAFT_ARRAY_LEN(arity)) {
        resp_write_errorf(b, "ERR unknown subcommand '%.*s'. Try CLIENT HELP.",
                          (int)(n > 128 ? 128 : n), (const char *)sub);
        return;
    }
    if (cmd->argc < arity[k].min || cmd->argc > arity[k].max) {
        resp_write_errorf(b,
                          "ERR wrong number of arguments for 'client|%s' "
                          "command",
                          arity[k].name);
        return;
    }
    if (srv_arg_is(sub, n, "id")) {
        resp_write_int(b, (long long)c->id);
    } else if (srv_arg_is(sub, n, "info")) {
        struct srv__client_info ci;
        struct buf text;
        buf_init(&text);
        client_info_of(c, &ci);
        if (srv__client_line(&ci, &text) == 0) {
            srv__write_verbatim(b, text.data, text.len, c->resp3);
        } else {
            resp_write_error(b, "ERR out of memory");
        }
        buf_close(&text);
    } else if (srv_arg_is(sub, n, "getname")) {
        if (c->name != NULL) {
            resp_write_bulk(b, c->name, strlen(c->name));
        } else {
            srv__write_null(b, c->resp3);
        }
    } else if (srv_arg_is(sub, n, "setname")) {
        if (client_setname(c, cmd->argv[2], cmd->lens[2], b)) {
            resp_write_simple(b, "OK");
        }
    } else if (srv_arg_is(sub, n, "list")) {
        client_list(c, cmd, b);
    } else if (srv_arg_is(sub, n, "kill")) {
        client_kill(c, cmd, b);
    } else {
        resp_write_simple(b, "OK"); /* setinfo */
    }
}

/* HELLO [protover [AUTH user pass] [SETNAME name]], as Redis 7's
 * helloCommand(): 2 or 3 selects the protocol of the connection's replies
 * (RESP3: see srv__resp3_append()); AUTH goes through cmd_auth(). */
static void cmd_hello(struct srv_client *c, const struct resp_cmd *cmd,
                      struct buf *b)
{
    long long proto = 0;
    if (cmd->argc >= 2 &&
        resp_strtoll(cmd->argv[1], cmd->lens[1], &proto) != 0) {
        resp_write_error(b, "ERR Protocol version is not an integer or out of "
                            "range");
        return;
    }
    if (cmd->argc >= 2 && (proto < 2 || proto > 3)) {
        resp_write_error(b, "NOPROTO unsupported protocol version");
        return;
    }
    size_t auth = 0, setname = 0;
    for (size_t j = 2; j < cmd->argc; j++) {
        size_t more = cmd->argc - 1 - j;
        if (srv_arg_is(cmd->argv[j], cmd->lens[j], "auth") && more >= 2) {
            auth = j;
            j += 2;
        } else if (srv_arg_is(cmd->argv[j], cmd->lens[j], "setname") &&
                   more >= 1) {
            setname = ++j;
        } else {
            resp_write_errorf(b, "ERR Syntax error in HELLO option '%.*s'",
                              (int)(cmd->lens[j] > 128 ? 128 : cmd->lens[j]),
                              (const char *)cmd->argv[j]);
            return;
        }
    }
    if (auth != 0 && c->srv->pass[0] == '\0') {
        /* No password: the default user takes any (Redis's nopass). */
        if (cmd->lens[auth + 1] != 7 ||
            memcmp(cmd->argv[auth + 1], "default", 7) != 0) {
            resp_write_error(b, "WRONGPASS invalid username-password pair "
                                "or user is disabled.");
            return;
        }
    } else if (auth != 0) {
        /* AUTH user pass, checked exactly as the AUTH command does. */
        struct resp_cmd a = *cmd;
        a.argc = 3;
        a.argv = cmd->argv + auth;
        a.lens = cmd->lens + auth;
        size_t mark = b->len;
        cmd_auth(c, &a, b);
        if (b->len - mark != 5 || memcmp(b->data + mark, "+OK\r\n", 5) != 0) {
            return; /* the error AUTH wrote */
        }
        b->len = mark;
    }
    if (!c->authed && c->srv->pass[0] != '\0') {
        resp_write_error(b, "NOAUTH HELLO must be called with the client "
                            "already authenticated, otherwise the HELLO "
                            "<proto> AUTH <user> <pass> option can be used "
                            "to authenticate the client and select the RESP "
                            "protocol version at the same time");
        return;
    }
    if (setname != 0 &&
        !client_setname(c, cmd->argv[setname], cmd->lens[setname], b)) {
        return;
    }
    if (proto != 0) {
        c->resp3 = proto == 3;
    }
    srv__write_map(b, 7, c->resp3);
    resp_write_bulk(b, "server", 6);
    resp_write_bulk(b, "redis", 5);
    resp_write_bulk(b, "version", 7);
    resp_write_bulk(b, "7.0.0", 5);
    resp_write_bulk(b, "proto", 5);
    resp_write_int(b, c->resp3 ? 3 : 2);
    resp_write_bulk(b, "id", 2);
    resp_write_int(b, (long long)c->id);
    /* As Redis: "cluster" when cluster-enabled is yes. */
    const char *mode =
        c->srv->backend.cluster != NULL ? "cluster" : "standalone";
    resp_write_bulk(b, "mode", 4);
    resp_write_bulk(b, mode, strlen(mode));
    resp_write_bulk(b, "role", 4);
    resp_write_bulk(b, "master", 6);
    resp_write_bulk(b, "modules", 7);
    resp_write_array(b, 0);
}

static bool arity_ok(const struct resp_cmd *cmd, size_t min, size_t max,
                     struct buf *b, const char *name)
{
    if (cmd->argc >= min && cmd->argc <= max) {
        return true;
    }
    resp_write_errorf(b, "ERR wrong number of arguments for '%s' command",
                      name);
    return false;
}

/* Answer a command that needs no replicated state into b.  Returns false
 * when cmd is not one of them. */
static bool local_command(struct srv_client *c, const struct resp_cmd *cmd,
                          struct buf *b)
{
    const uint8_t *name = cmd->argv[0];
    size_t len = cmd->lens[0];
    if (srv_arg_is(name, len, "ping")) {
        if (arity_ok(cmd, 1, 2, b, "ping")) {
            if (cmd->argc == 2) {
                resp_write_bulk(b, cmd->argv[1], cmd->lens[1]);
            } else {
                resp_write_simple(b, "PONG");
            }
        }
    } else if (srv_arg_is(name, len, "echo")) {
        if (arity_ok(cmd, 2, 2, b, "echo")) {
            resp_write_bulk(b, cmd->argv[1], cmd->lens[1]);
        }
    } else if (srv_arg_is(name, len, "quit")) {
        resp_write_simple(b, "OK");
        c->state = CLIENT_DRAINING;
    } else if (srv_arg_is(name, len, "select")) {
        if (arity_ok(cmd, 2, 2, b, "select")) {
            long long db;
            if (resp_strtoll(cmd->argv[1], cmd->lens[1], &db) != 0) {
                resp_write_error(b, "ERR value is not an integer or out of "
                                    "range");
            } else if (db != 0) {
                resp_write_error(b, "ERR DB index is out of range");
            } else {
                resp_write_simple(b, "OK");
            }
        }
    } else if (srv_arg_is(name, len, "auth")) {
        cmd_auth(c, cmd, b);
    } else if (srv_arg_is(name, len, "command")) {
        cmd_command(c, cmd, b);
    } else if (srv_arg_is(name, len, "config")) {
        cmd_config(c, cmd, b);
    } else if (srv_arg_is(name, len, "info")) {
        cmd_info(c, cmd, b);
    } else if (srv_arg_is(name, len, "client")) {
        cmd_client(c, cmd, b);
    } else if (srv_arg_is(name, len, "hello")) {
        cmd_hello(c, cmd, b);
    } else if (srv_arg_is(name, len, "unwatch")) {
        if (arity_ok(cmd, 1, 1, b, "unwatch")) {
            srv__watch_free(c->watch);
            c->watch = NULL;
            c->watch_failed = false;
            resp_write_simple(b, "OK");
        }
    } else if (srv_arg_is(name, len, "readonly") ||
               srv_arg_is(name, len, "readwrite")) {
        /* Redis Cluster's replica reads: see docs/craftd.md. */
        if (arity_ok(cmd, 1, 1, b, len == 8 ? "readonly" : "readwrite")) {
            c->readonly = len == 8;
            resp_write_simple(b, "OK");
        }
    } else if (srv_arg_is(name, len, "cluster")) {
        srv__cluster_command(&c->srv->backend, cmd, b);
    } else {
        return false;
    }
    return true;
}

/* ---- input ---------------------------------------------------------- */

static bool needs_auth(const struct srv_client *c, const struct resp_cmd *cmd)
{
    /* No password (also after CONFIG SET requirepass ""): nothing to do,
     * as Redis's nopass default user. */
    if (c->authed || c->srv->pass[0] == '\0') {
        return false;
    }
    /* HELLO checks for itself: it may authenticate (HELLO 3 AUTH u p). */
    return !srv_arg_is(cmd->argv[0], cmd->lens[0], "auth") &&
           !srv_arg_is(cmd->argv[0], cmd->lens[0], "quit") &&
           !srv_arg_is(cmd->argv[0], cmd->lens[0], "hello");
}

static bool is_local(const struct resp_cmd *cmd)
{
    static const char *const names[] = {
        "ping",     "echo",      "quit",    "select", "auth",
        "command",  "config",    "info",    "client", "hello",
        "readonly", "readwrite", "unwatch", "cluster"};
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(names); i++) {
        if (srv_arg_is(cmd->argv[0], cmd->lens[0], names[i])) {
            return true;
        }
    }
    return false;
}

static void answer_local(struct srv_client *c, const struct resp_cmd *cmd,
                         struct buf *b)
{
    if (needs_auth(c, cmd)) {
        resp_write_error(b, "NOAUTH Authentication required.");
    } else if (c->srv->stopping) {
        write_status_error(c->srv, b, CRAFT_ESHUTDOWN, 0);
    } else if (!c->resp3) {
        bool known = local_command(c, cmd, b);
        CRAFT_ASSERT(known);
    } else {
        /* Written in RESP2 or already in RESP3; nulls become RESP3's. */
        struct buf tmp;
        buf_init(&tmp);
        bool known = local_command(c, cmd, &tmp);
        CRAFT_ASSERT(known);
        if (srv__resp3_append(b, tmp.data, tmp.len) != 0) {
            resp_write_error(b, "ERR out of memory");
        }
        buf_close(&tmp);
    }
}

/* Where the next reply goes: straight to the output when nothing is queued
 * ahead of it, otherwise into a new, finished op at the tail of the queue.
 * NULL when out of memory. */
static struct buf *reply_slot(struct srv_client *c)
{
    if (c->head == NULL) {
        client_want_write(c);
        return &c->out;
    }
    struct resp_cmd none = {0};
    struct srv_op *op = op_new(c, &none);
    if (op == NULL) {
        return NULL;
    }
    enqueue(c, op);
    op->done = true;
    return &op->reply;
}

/* ---- transactions --------------------------------------------------- */

static void multi_reset(struct srv_client *c)
{
    while (c->mhead != NULL) {
        struct srv_op *op = c->mhead;
        c->mhead = op->next;
        op_free(op);
    }
    c->mtail = NULL;
    c->n_multi = 0;
    c->multi_bytes = 0;
    c->in_multi = false;
    c->multi_dirty = false;
    /* EXEC (whatever its outcome) and DISCARD unwatch, as in Redis. */
    srv__watch_free(c->watch);
    c->watch = NULL;
    c->watch_failed = false;
}

/* One op carrying every queued command, for the backend to propose as one
 * entry; the queue is emptied. */
static struct srv_op *multi_op(struct srv_client *c)
{
    if (c->n_multi == 0) {
        /* Nothing queued, keys watched: the entry only checks them. */
        CRAFT_ASSERT(c->watch != NULL);
        const uint8_t *exec[] = {(const uint8_t *)"EXEC"};
        size_t len[] = {4};
        struct resp_cmd cmd = {.argc = 1, .argv = exec, .lens = len};
        struct srv_op *op = op_new(c, &cmd);
        if (op != NULL) {
            op->is_exec = true;
            op->watch = c->watch;
            c->watch = NULL;
        }
        multi_reset(c);
        return op;
    }
    size_t argc = 0, bytes = 0;
    for (struct srv_op *q = c->mhead; q != NULL; q = q->next) {
        argc += q->argc;
        for (size_t i = 0; i < q->argc; i++) {
            bytes += q->lens[i] + 1;
        }
    }
    size_t head = sizeof(struct srv_op) +
                  argc * (sizeof(uint8_t *) + sizeof(size_t)) +
                  c->n_multi * sizeof(size_t);
    struct srv_op *op = malloc(head + bytes);
    if (op == NULL) {
        return NULL;
    }
    memset(op, 0, sizeof *op);
    op->srv = c->srv;
    op->client = c;
    op->client_id = c->id;
    op->start_ns = uv_hrtime();
    op->argc = argc;
    op->n_cmds = c->n_multi;
    op->argv = (uint8_t **)(op + 1);
    op->lens = (size_t *)(op->argv + argc);
    op->cmd_argc = op->lens + argc;
    uint8_t *p = (uint8_t *)(op->cmd_argc + c->n_multi);
    size_t a = 0, k = 0;
    for (struct srv_op *q = c->mhead; q != NULL; q = q->next) {
        op->cmd_argc[k++] = q->argc;
        for (size_t i = 0; i < q->argc; i++, a++) {
            op->argv[a] = p;
            op->lens[a] = q->lens[i];
            memcpy(p, q->argv[i], q->lens[i] + 1);
            p += q->lens[i] + 1;
        }
    }
    buf_init(&op->reply);
    op->is_exec = true;
    op->watch = c->watch; /* the backend puts them in the entry */
    c->watch = NULL;
    multi_reset(c);
    return op;
}

/* EXEC of a non-empty, clean transaction: one op for the backend. */
static void multi_exec(struct srv_client *c)
{
    struct srv_op *op = multi_op(c);
    if (op == NULL) {
        client_close(c);
        return;
    }
    client_submit(c, op);
}

/* A command inside MULTI: checked now, queued, run at EXEC. */
static void multi_queue(struct srv_client *c, const struct resp_cmd *cmd,
                        struct buf *b)
{
    struct srv *s = c->srv;
    if (c->n_multi >= SRV_MULTI_MAX) {
        c->multi_dirty = true;
        resp_write_errorf(b, "ERR more than %d commands in one MULTI",
                          SRV_MULTI_MAX);
        return;
    }
    size_t bytes = 4;
    for (size_t i = 0; i < cmd->argc; i++) {
        bytes += 4 + cmd->lens[i];
    }
    if (c->multi_bytes + bytes > SRV_MULTI_BYTES_MAX) {
        c->multi_dirty = true;
        resp_write_errorf(b, "ERR the transaction's commands exceed %u bytes",
                          SRV_MULTI_BYTES_MAX);
        return;
    }
    if (s->backend.check(s->backend.data, cmd->argc, cmd->argv, cmd->lens, b) !=
        0) {
        c->multi_dirty = true;
        return;
    }
    struct srv_op *q = op_new(c, cmd);
    if (q == NULL) {
        c->multi_dirty = true;
        resp_write_error(b, "ERR out of memory queueing the command");
        return;
    }
    q->next = NULL;
    if (c->mtail != NULL) {
        c->mtail->next = q;
    } else {
        c->mhead = q;
    }
    c->mtail = q;
    c->n_multi++;
    c->multi_bytes += bytes;
    resp_write_simple(b, "QUEUED");
}

/* MULTI, EXEC, DISCARD, and every command while a MULTI is open.  Returns
 * false if cmd is none of those (it then runs normally). */
static bool client_multi(struct srv_client *c, const struct resp_cmd *cmd)
{
    bool multi = srv_arg_is(cmd->argv[0], cmd->lens[0], "multi");
    bool watch = srv_arg_is(cmd->argv[0], cmd->lens[0], "watch");
    bool exec = srv_arg_is(cmd->argv[0], cmd->lens[0], "exec");
    bool discard = srv_arg_is(cmd->argv[0], cmd->lens[0], "discard");
    if (!c->in_multi && !multi && !exec && !discard) {
        return false;
    }
    if (srv_arg_is(cmd->argv[0], cmd->lens[0], "quit") || needs_auth(c, cmd) ||
        c->srv->stopping) {
        return false; /* answered as outside a transaction */
    }
    if (exec && c->in_multi && !c->multi_dirty && !c->watch_failed &&
        (c->n_multi > 0 || c->watch != NULL)) {
        multi_exec(c);
        return true;
    }
    struct buf *b = reply_slot(c);
    if (b == NULL) {
        client_close(c);
        return true;
    }
    if (watch) {
        /* Not queued, and the transaction stays good (Redis 7). */
        resp_write_error(b, "ERR WATCH inside MULTI is not allowed");
    } else if (multi && c->in_multi) {
        c->multi_dirty = true;
        resp_write_error(b, "ERR MULTI calls can not be nested");
    } else if (multi) {
        c->in_multi = true;
        resp_write_simple(b, "OK");
    } else if ((exec || discard) && !c->in_multi) {
        resp_write_errorf(b, "ERR %s without MULTI",
                          discard ? "DISCARD" : "EXEC");
    } else if (discard) {
        multi_reset(c);
        resp_write_simple(b, "OK");
    } else if (exec && c->in_multi && !c->multi_dirty && c->watch_failed) {
        multi_reset(c); /* as if a watched key had changed */
        if (c->resp3) {
            buf_append(b, "_\r\n", 3);
        } else {
            resp_write_null_array(b);
        }
    } else if (exec && c->multi_dirty) {
        multi_reset(c);
        resp_write_error(b, "EXECABORT Transaction discarded because of "
                            "previous errors.");
    } else if (exec) {
        multi_reset(c);
        resp_write_array(b, 0);
    } else {
        multi_queue(c, cmd, b);
    }
    return true;
}

/* Append to out (at len, NUL-terminated) at most 16 bytes of a command
 * word, as "%.*s" would (up to a NUL byte), lower case, anything not
 * printable or a space as '?' (the CLIENT LIST line is space-separated).
 * Returns the new length. */
static size_t note_word(char *out, size_t len, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && i < 16 && p[i] != '\0'; i++) {
        uint8_t ch = p[i];
        out[len++] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32)
                     : ch < '!' || ch > '~' ? '?'
                                            : (char)ch;
    }
    out[len] = '\0';
    return len;
}

/* For CLIENT LIST: the time and the name of the last command, lower case,
 * with the subcommand of the container commands ("client|list").  On every
 * command, so without snprintf (it was a fifth of a leader's instructions
 * per pipelined SET). */
static void note_command(struct srv_client *c, const struct resp_cmd *cmd)
{
    _Static_assert(sizeof c->last_cmd >= 16 + 1 + 16 + 1,
                   "room for a command and its subcommand");
    c->last_ms = uv_now(c->srv->loop);
    /* The container commands all start with 'c' and are 6 or 7 long. */
    bool sub = cmd->argc >= 2 && (cmd->lens[0] == 6 || cmd->lens[0] == 7) &&
               (cmd->argv[0][0] | 0x20) == 'c' &&
               (srv_arg_is(cmd->argv[0], cmd->lens[0], "client") ||
                srv_arg_is(cmd->argv[0], cmd->lens[0], "config") ||
                srv_arg_is(cmd->argv[0], cmd->lens[0], "command") ||
                srv_arg_is(cmd->argv[0], cmd->lens[0], "cluster"));
    size_t n = note_word(c->last_cmd, 0, cmd->argv[0], cmd->lens[0]);
    if (sub) {
        c->last_cmd[n++] = '|';
        note_word(c->last_cmd, n, cmd->argv[1], cmd->lens[1]);
    }
}

/* Handle one parsed command (argv borrowed from the query buffer). */
static void client_command(struct srv_client *c, const struct resp_cmd *cmd)
{
    struct srv *s = c->srv;
    CRAFT_ASSERT(cmd->argc >= 1);
    CRAFT_ASSERT(c->state == CLIENT_OPEN);
    note_command(c, cmd);
    if (client_multi(c, cmd)) {
        return;
    }
    bool local = needs_auth(c, cmd) || s->stopping || is_local(cmd);
    if (local) {
        struct buf *b = reply_slot(c);
        if (b == NULL) {
            client_close(c);
            return;
        }
        size_t off = b->len;
        answer_local(c, cmd, b);
        const char *reply = (const char *)b->data + off;
        obs_command(cmd->argv[0], cmd->lens[0], OBS_LOCAL,
                    obs_result_of(reply, b->len - off), reply, b->len - off, 0);
        return;
    }
    if (cmd->argc - 1 > SRV_WATCH_MAX &&
        srv_arg_is(cmd->argv[0], cmd->lens[0], "watch")) {
        /* Refused before reading a version: bounded work, and the next
         * EXEC aborts as after any failed WATCH. */
        struct buf *b = reply_slot(c);
        if (b == NULL) {
            client_close(c);
            return;
        }
        c->watch_failed = true;
        resp_write_errorf(b,
                          "ERR more than %d watched keys or %u bytes of them",
                          SRV_WATCH_MAX, SRV_WATCH_BYTES_MAX);
        return;
    }
    struct srv_op *op = op_new(c, cmd);
    if (op == NULL) {
        LOG_WARNF("client %llu: out of memory for a command; closing",
                  (unsigned long long)c->id);
        client_close(c);
        return;
    }
    client_submit(c, op);
}

static bool client_paused(const struct srv_client *c)
{
    return c->n_ops >= SRV_PIPELINE_MAX ||
           c->out.len + c->wbuf.len >= SRV_OUTBUF_MAX;
}

/* The part of a query buffer of capacity cap that counts toward
 * SRV_QUERYBUF_TOTAL_MAX: what a large command made it grow beyond the
 * read chunks every client has (those are bounded by --max-clients). */
static size_t querybuf_large(size_t cap)
{
    return cap > 2 * SRV_READ_CHUNK ? cap - 2 * SRV_READ_CHUNK : 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct srv_client *c = h->data;
    (void)suggested;
    struct srv *s = c->srv;
    size_t want = resp_parser_pending(&c->parser, c->in.len);
    if (want < SRV_READ_CHUNK) {
        want = SRV_READ_CHUNK;
    }
    if (c->in.len + want > s->querybuf_max) {
        want = s->querybuf_max - c->in.len;
    }
    /* A zero-length buffer makes libuv report UV_ENOBUFS to on_read. */
    size_t cap = c->in.cap;
    if (want == 0 ||
        (c->in.len + want > cap && s->querybuf_total - querybuf_large(cap) +
                                           querybuf_large(c->in.len + want) >
                                       SRV_QUERYBUF_TOTAL_MAX)) {
        *out = uv_buf_init(NULL, 0);
        return;
    }
    if (buf_reserve(&c->in, want) != 0) {
        *out = uv_buf_init(NULL, 0);
        return;
    }
    s->querybuf_total += querybuf_large(c->in.cap) - querybuf_large(cap);
    *out = uv_buf_init((char *)c->in.data + c->in.len,
                       (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct srv_client *c = stream->data;
    (void)b;
    if (nread == UV_ENOBUFS) {
        LOG_WARNF("client %llu: query buffer limit reached (%zu bytes for "
                  "this client, %u for all); closing",
                  (unsigned long long)c->id, c->srv->querybuf_max,
                  SRV_QUERYBUF_TOTAL_MAX);
        client_close(c);
        return;
    }
    if (nread < 0) {
        client_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    client_process(c);
}

static void client_pause(struct srv_client *c, bool pause)
{
    if (pause && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    } else if (!pause && !c->reading && c->state == CLIENT_OPEN) {
        int rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        if (rv != 0) {
            client_close(c);
            return;
        }
        c->reading = true;
    }
}

/* Parse and run every complete command in the query buffer, as far as the
 * pipeline and output limits allow, then resume or pause reading. */
static void client_process(struct srv_client *c)
{
    if (c->processing) {
        return;
    }
    c->processing = true;
    size_t pos = 0;
    while (c->state == CLIENT_OPEN && !client_paused(c) && !c->watch_pending &&
           pos < c->in.len) {
        struct resp_cmd cmd;
        size_t used = 0;
        int rv = resp_parse(&c->parser, c->in.data + pos, c->in.len - pos, &cmd,
                            &used);
        if (rv == RESP_NEED_MORE) {
            break;
        }
        if (rv == RESP_EPROTO) {
            LOG_DEBUGF("client %llu: %s", (unsigned long long)c->id,
                       c->parser.err);
            /* Replies still pending go first; the error comes last. */
            struct buf *b = reply_slot(c);
            if (b == NULL) {
                client_close(c);
                break;
            }
            resp_write_error(b, c->parser.err);
            c->state = CLIENT_DRAINING;
            client_want_write(c);
            break;
        }
        if (rv != RESP_OK) {
            client_close(c);
            break;
        }
        client_command(c, &cmd);
        pos += used;
    }
    if (c->state != CLIENT_CLOSING && pos > 0) {
        buf_consume(&c->in, pos);
        if (c->in.len == 0 && c->in.cap > 4 * SRV_READ_CHUNK) {
            /* A large command went through: give its memory back. */
            c->srv->querybuf_total -= querybuf_large(c->in.cap);
            buf_close(&c->in);
            buf_init(&c->in);
        }
    }
    c->processing = false;
    if (c->state == CLIENT_OPEN) {
        client_pause(c, client_paused(c));
    } else if (c->state == CLIENT_DRAINING) {
        client_pause(c, true);
        client_maybe_finish(c);
    }
}

/* ---- connections ---------------------------------------------------- */

static void srv_maybe_stopped(struct srv *s)
{
    if (s->stopping && s->n_handles == 0 && s->stop_cb != NULL) {
        srv_stop_cb cb = s->stop_cb;
        s->stop_cb = NULL;
        cb(s, s->stop_data);
    }
}

static void on_client_close(uv_handle_t *h)
{
    struct srv_client *c = h->data;
    struct srv *s = c->srv;
    CRAFT_ASSERT(c->state == CLIENT_CLOSING);
    CRAFT_ASSERT(!c->writing);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    s->querybuf_total -= querybuf_large(c->in.cap);
    buf_close(&c->in);
    buf_close(&c->out);
    buf_close(&c->wbuf);
    resp_parser_close(&c->parser);
    free(c->name);
    free(c);
    s->n_clients--;
    s->n_handles--;
    if (s->stopping && s->clients == NULL && !s->flusher_closed) {
        s->flusher_closed = true;
        uv_close((uv_handle_t *)&s->flusher, on_srv_handle_close);
    }
    srv_maybe_stopped(s);
}

/* Close now: orphan the ops in flight, drop unsent output. */
static void client_close(struct srv_client *c)
{
    if (c->state == CLIENT_CLOSING) {
        return;
    }
    c->state = CLIENT_CLOSING;
    struct srv *s = c->srv;
    for (struct srv_client **pp = &s->writers; *pp != NULL;
         pp = &(*pp)->wnext) {
        if (*pp == c) {
            *pp = c->wnext;
            break;
        }
    }
    c->queued_write = false;
    bool unsubmitted = false;
    while (c->head != NULL) {
        struct srv_op *op = c->head;
        c->head = op->next;
        unsubmitted = unsubmitted || op == c->held;
        if (op->done || unsubmitted) {
            op_free(op); /* the backend never saw the unsubmitted ones */
        } else {
            op->client = NULL; /* freed by srv_op_done */
        }
    }
    c->tail = NULL;
    c->n_ops = 0;
    c->held = NULL;
    c->n_flight = 0;
    multi_reset(c);
    uv_close((uv_handle_t *)&c->tcp, on_client_close);
}

/* A draining client closes once every reply is written. */
static void client_maybe_finish(struct srv_client *c)
{
    if (c->state == CLIENT_DRAINING && c->head == NULL && c->out.len == 0 &&
        !c->writing && !c->queued_write) {
        client_close(c);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct srv *s = listener->data;
    if (status < 0) {
        LOG_WARNF("accept failed: %s", uv_strerror(status));
        return;
    }
    struct srv_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        LOG_WARNF("out of memory accepting a client");
        return;
    }
    c->srv = s;
    c->id = ++s->next_client_id;
    c->ctime_ms = c->last_ms = uv_now(s->loop);
    c->state = CLIENT_OPEN;
    c->authed = s->pass[0] == '\0';
    buf_init(&c->in);
    buf_init(&c->out);
    buf_init(&c->wbuf);
    struct resp_limits lim = {.bulk_max = s->opts.command_max,
                              .args_max = RESP_ARGS_MAX,
                              .inline_max = RESP_INLINE_MAX};
    resp_parser_init(&c->parser, &lim, NULL);
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->next = s->clients;
    if (s->clients != NULL) {
        s->clients->prev = c;
    }
    s->clients = c;
    s->n_clients++;
    s->n_handles++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->n_clients > s->opts.max_clients) {
        obs.connections_rejected++;
        resp_write_error(&c->out, "ERR max number of clients reached");
        c->state = CLIENT_DRAINING;
        client_want_write(c);
        return;
    }
    obs.connections_received++; /* as Redis: the rejected are not counted */
    client_pause(c, false);
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *sa)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0) {
        return 0;
    }
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0) {
        return 0;
    }
    return CRAFT_EINVAL;
}

static void on_failed_close(uv_handle_t *h)
{
    struct srv *s = h->data;
    if (--s->n_handles == 0) {
        free(s);
    }
}

int srv_start(uv_loop_t *loop, const struct srv_options *opts,
              const struct srv_backend *backend, struct srv **out, char *errmsg,
              size_t errmsg_len)
{
    CRAFT_ASSERT(backend->submit != NULL && backend->leader != NULL);
    CRAFT_ASSERT(backend->check != NULL && backend->info != NULL);
    CRAFT_ASSERT(opts->max_clients > 0);
    struct sockaddr_storage sa;
    if (strlen(opts->host) >= sizeof((struct srv *)0)->host ||
        resolve(opts->host, opts->port, &sa) != 0) {
        snprintf(errmsg, errmsg_len,
                 "client address '%s' is not a numeric IPv4 or IPv6 address",
                 opts->host);
        return CRAFT_EINVAL;
    }
    if (opts->requirepass != NULL &&
        strlen(opts->requirepass) >= sizeof((struct srv *)0)->pass) {
        snprintf(errmsg, errmsg_len, "requirepass too long");
        return CRAFT_EINVAL;
    }
    struct srv *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(errmsg, errmsg_len, "out of memory");
        return CRAFT_ENOMEM;
    }
    s->loop = loop;
    s->opts = *opts;
    obs_command_filter(command_known);
    if (s->opts.command_max == 0 || s->opts.command_max > RESP_BULK_MAX) {
        s->opts.command_max = RESP_BULK_MAX;
    }
    s->querybuf_max = 2 * s->opts.command_max;
    if (s->querybuf_max < 4 * SRV_READ_CHUNK) {
        s->querybuf_max = 4 * SRV_READ_CHUNK;
    }
    s->backend = *backend;
    strcpy(s->host, opts->host);
    s->opts.host = s->host;
    if (opts->requirepass != NULL) {
        strcpy(s->pass, opts->requirepass);
    }
    s->opts.requirepass = s->pass;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    uv_prepare_init(loop, &s->flusher);
    s->flusher.data = s;
    s->n_handles = 2;
    int rv = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    }
    if (rv != 0) {
        snprintf(errmsg, errmsg_len, "cannot listen on %s:%u: %s", opts->host,
                 (unsigned)opts->port, uv_strerror(rv));
        /* The handles finish closing on a later loop turn, which frees s. */
        uv_close((uv_handle_t *)&s->listener, on_failed_close);
        uv_close((uv_handle_t *)&s->flusher, on_failed_close);
        return rv == UV_EADDRINUSE ? CRAFT_EBUSY : CRAFT_EIO;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(bound.ss_family == AF_INET
                        ? ((struct sockaddr_in *)&bound)->sin_port
                        : ((struct sockaddr_in6 *)&bound)->sin6_port);
    uv_prepare_start(&s->flusher, on_prepare);
    *out = s;
    return 0;
}

uint16_t srv_port(const struct srv *s)
{
    return s->port;
}

unsigned srv_clients(const struct srv *s)
{
    return s->n_clients;
}

static void on_srv_handle_close(uv_handle_t *h)
{
    struct srv *s = h->data;
    s->n_handles--;
    srv_maybe_stopped(s);
}

void srv_stop(struct srv *s, srv_stop_cb cb, void *data)
{
    CRAFT_ASSERT(!s->stopping);
    s->stopping = true;
    s->stop_cb = cb;
    s->stop_data = data;
    uv_close((uv_handle_t *)&s->listener, on_srv_handle_close);
    for (struct srv_client *c = s->clients; c != NULL;) {
        struct srv_client *next = c->next;
        if (c->state == CLIENT_OPEN) {
            c->state = CLIENT_DRAINING;
            client_pause(c, true);
            client_maybe_finish(c);
        }
        c = next;
    }
    /* The flusher keeps running until the last client is gone, so that
     * replies of ops that finish during the stop are still written. */
    if (s->clients == NULL && !s->flusher_closed) {
        s->flusher_closed = true;
        uv_close((uv_handle_t *)&s->flusher, on_srv_handle_close);
    }
}

void srv_free(struct srv *s)
{
    CRAFT_ASSERT(s->n_handles == 0);
    while (s->op_pool != NULL) {
        struct srv_op *op = s->op_pool;
        s->op_pool = op->next;
        buf_close(&op->reply);
        free(op);
    }
    free(s);
}
