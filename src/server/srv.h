/*
 * srv.h -- craftd's Redis protocol front end: the TCP listener, client
 * connections, pipelining and the commands that need no replicated state.
 *
 * The front end knows nothing about Raft or the key-value store.  Commands
 * it does not answer itself (everything but PING ECHO QUIT SELECT AUTH
 * COMMAND CONFIG INFO CLIENT HELLO READONLY READWRITE UNWATCH CLUSTER,
 * and MULTI/EXEC/DISCARD, whose queue is the connection's) are handed to a
 * backend, craftd's node runtime, as a struct srv_op; the backend answers
 * each op exactly once with srv_op_done(), at once or later.
 *
 * Invariants:
 *  1. Replies go out in the order the commands arrived on a connection,
 *     whatever order the backend finishes them in (pipelining).
 *  2. Everything a client can make us hold is bounded: the query buffer
 *     (twice srv_options.command_max; all clients' together
 *     SRV_QUERYBUF_TOTAL_MAX), commands in flight (SRV_PIPELINE_MAX, after
 * which reading pauses), unsent output (SRV_OUTBUF_MAX, likewise), and the
 *     number of clients (--max-clients).
 *  3. Bad input closes only the connection that sent it, after a
 *     Redis-style error reply.
 *  4. An op outlives its client if the client disconnects while the op is
 *     in flight; the op is freed when the backend finishes it.
 *  5. A connection's commands take effect in the order they arrived: reads
 *     and writes (as the backend classifies them) are never in flight
 *     together on one connection.  Consecutive reads, or consecutive
 *     writes, are submitted at once and pipelined; a read that follows
 *     writes is held until they are done (so it sees them), and a write
 *     that follows reads likewise (so they do not see it).
 *
 * Threads: everything runs on the loop thread passed to srv_start().
 */
#ifndef CRAFT_SERVER_SRV_H
#define CRAFT_SERVER_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

/* Commands queued in one MULTI before the transaction is refused; the
 * state machine applies a transaction in one step (KVSM_MULTI_MAX). */
#define SRV_MULTI_MAX 1024
/* Commands in flight per connection before we stop reading from it.
 * redis-benchmark -P 16 -c 50 keeps 800 in flight over all connections. */
#define SRV_PIPELINE_MAX 1024
/* Unsent replies per connection before we stop reading from it. */
#define SRV_OUTBUF_MAX (64u * 1024 * 1024)
/* Unsent replies per connection beyond which the connection is closed (as
 * Redis's client-output-buffer-limit): reading stops at SRV_OUTBUF_MAX, but
 * up to SRV_PIPELINE_MAX commands already read may each still produce a
 * large reply, so a client that never reads could otherwise make us hold
 * SRV_PIPELINE_MAX replies of up to 512 MiB each.  One reply larger than
 * this is still sent to a client that has nothing else pending. */
#define SRV_OUTBUF_HARD_MAX (2 * SRV_OUTBUF_MAX)
/* Beyond their first 128 KiB each, the query buffers of all clients
 * together hold at most this; a client whose buffer would take more is
 * closed (as Redis's maxmemory-clients). */
#define SRV_QUERYBUF_TOTAL_MAX (1024u * 1024 * 1024)
/* Bytes read per read callback when no large bulk is pending. */
#define SRV_READ_CHUNK (64u * 1024)

struct srv;
struct srv_client;
struct srv_cluster_view; /* server/cluster.h */

/* Keys a connection may WATCH at once (Redis has no limit; each costs a
 * copy of the key and a version here and in the EXEC entry). */
#define SRV_WATCH_MAX 1024

/* The keys a connection WATCHes, with the versions the backend's WATCH
 * read returned for them (src/server/srv_cmds.c). */
struct srv_watch {
    size_t n, cap;
    uint8_t **keys; /* each malloc'ed, lens[i] bytes */
    size_t *lens;
    uint64_t *versions;
};

/* What the backend's classify callback says an op is (invariant 5). */
enum srv_op_kind {
    SRV_OP_WRITE = 0, /* goes through the log */
    SRV_OP_READ,      /* served from the state (a linearizable read) */
    SRV_OP_ANSWERED,  /* needs no backend: classify wrote the reply */
};

/* A command handed to the backend.  argv/lens are owned by the op and valid
 * until srv_op_done(); the arguments are not NUL-terminated. */
struct srv_op {
    struct srv *srv;
    struct srv_client *client; /* NULL once the client has gone */
    struct srv_op *next;       /* the client's queue, in arrival order */
    size_t argc;
    uint8_t **argv;
    size_t *lens;
    uint64_t client_id; /* unique per connection, for logging */
    bool done;
    struct buf reply; /* the backend writes one RESP value here */
    /* A transaction (MULTI ... EXEC): n_cmds commands, the i-th made of
     * cmd_argc[i] consecutive arguments of argv.  n_cmds is 0 and cmd_argc
     * NULL for a plain command. */
    size_t n_cmds;
    size_t *cmd_argc;
    uint8_t kind; /* enum srv_op_kind, set before submission */
    bool pooled;  /* the front end's: a block it reuses (srv.c) */
    /* READONLY: the connection accepts possibly stale reads from this
     * node's applied state.  read_index is, on submission, the highest
     * applied index this connection has been served from (the backend must
     * not serve it from an older state) and, when the backend finishes a
     * read it served locally, the index it served at. */
    bool readonly;
    uint64_t read_index;
    /* WATCH: the backend replies the keys' versions (a RESP array of
     * integers) and the front end answers +OK.  EXEC: the connection's
     * watched keys, owned by the op (NULL: none). */
    bool is_watch;
    struct srv_watch *watch;
    /* Free for the backend's use while it holds the op. */
    struct srv_op *bnext;
    uint64_t bindex;
    uint64_t bterm;
    uint64_t start_ns; /* uv_hrtime() at arrival, for latency metrics */
};

/* What the front end needs from the runtime.  Every callback runs on the
 * loop thread. */
struct srv_backend {
    void *data;
    /*
     * Optional: classify op before it is submitted, returning an enum
     * srv_op_kind (SRV_OP_ANSWERED with the reply written to op->reply for
     * a command that fails already).  Without it every op is a write.
     */
    int (*classify)(void *data, struct srv_op *op);
    /*
     * Execute op.  The backend calls srv_op_done(op, status) exactly once,
     * possibly before submit returns.  status 0: op->reply holds the
     * reply.  Otherwise the front end writes the error:
     *   CRAFT_ENOTLEADER  -MOVED <slot> <leader> or -CLUSTERDOWN (never
     *                     proposed, safe to retry elsewhere); the slot
     *                     is the first key's (server/cluster.h)
     *   CRAFT_ELEADERLOST -UNCERTAIN (proposed; outcome unknown)
     *   CRAFT_ESHUTDOWN   -SHUTDOWN (not executed; node stopping)
     *   anything else     -ERR <craft_strerror(status)>
     */
    void (*submit)(void *data, struct srv_op *op);
    /* Check a command queued inside MULTI: 0, or an error status with the
     * error reply appended to err (the transaction then fails at EXEC with
     * -EXECABORT, as in Redis). */
    int (*check)(void *data, size_t argc, const uint8_t *const *argv,
                 const size_t *lens, struct buf *err);
    /* The current leader's client address "HOST:PORT" into out, or false
     * when no leader is known. */
    bool (*leader)(void *data, char *out, size_t cap);
    /* INFO: append the text (Redis's "# Section" headers and
     * "key:value\r\n" lines) of the sections named by INFO's arguments
     * (argc of them, possibly 0) to b.  Returns 0 or CRAFT_ENOMEM. */
    int (*info)(void *data, size_t argc, const uint8_t *const *argv,
                const size_t *lens, struct buf *b);
    /* Optional: the backend's CONFIG parameters, beside the front end's.
     * config_get(i) returns the name of parameter i (NULL past the last)
     * and writes its value to value (cap bytes, NUL-terminated).
     * config_set checks (apply false) or sets (apply true, only after
     * every parameter of the CONFIG SET passed its check) a parameter:
     * 0, or CRAFT_ENOENT for a name it does not have, or CRAFT_EINVAL with
     * Redis's reason ("can't set immutable config", ...) in err. */
    const char *(*config_get)(void *data, size_t i, char *value, size_t cap);
    int (*config_set)(void *data, const char *name, const char *value,
                      bool apply, char *err, size_t err_cap);
    /* Optional: describe the members, the leader and this node for the
     * CLUSTER command (server/cluster.h); out arrives zeroed with leader
     * -1.  Returns 0 or a CRAFT_E* code.  Without it CLUSTER answers that
     * cluster support is disabled. */
    int (*cluster)(void *data, struct srv_cluster_view *out);
};

struct srv_options {
    const char *host;
    uint16_t port;
    unsigned max_clients;
    /* The largest command, in bytes, the backend can run: a longer
     * argument is a protocol error (Redis's proto-max-bulk-len) and the
     * query buffer holds at most twice this.  0: RESP_BULK_MAX. */
    size_t command_max;
    const char *requirepass; /* NULL or "" for none */
    /* Values reported by CONFIG GET, for clients that ask. */
    bool fsync;
};

/*
 * Create the front end and listen on host:port.  Returns 0 and sets *out,
 * or CRAFT_EINVAL (bad address), CRAFT_EBUSY (address in use), CRAFT_EIO,
 * CRAFT_ENOMEM, with the reason in errmsg.  The backend struct is copied.
 */
int srv_start(uv_loop_t *loop, const struct srv_options *opts,
              const struct srv_backend *backend, struct srv **out, char *errmsg,
              size_t errmsg_len);

/* The port actually bound (useful with port 0). */
uint16_t srv_port(const struct srv *s);

/* Number of connected clients. */
unsigned srv_clients(const struct srv *s);

/*
 * Stop accepting connections and commands, flush the replies of finished
 * commands and close every connection once its in-flight ops are done.
 * cb fires once, after every handle is closed; then call srv_free().
 */
typedef void (*srv_stop_cb)(struct srv *s, void *data);
void srv_stop(struct srv *s, srv_stop_cb cb, void *data);
void srv_free(struct srv *s);

/* The backend finished op (see struct srv_backend).  May free op. */
void srv_op_done(struct srv_op *op, int status);

/* Case-insensitive comparison of an argument with a NUL-terminated name. */
bool srv_arg_is(const uint8_t *arg, size_t len, const char *name);

#endif /* CRAFT_SERVER_SRV_H */
