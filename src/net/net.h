/*
 * net -- craft's one TCP transport: framed messages and request/response
 * RPC on libuv, used by craftd (Raft traffic between peers) and by craft-mr
 * (coordinator/worker RPC and map-output fetches).  docs/net.md has the
 * wire protocol byte by byte; frame.h has the pure frame codec.
 *
 * Objects (all opaque, heap-allocated by this layer):
 *   struct net_server  a listening socket; accepts connections.
 *   struct net_conn    one TCP connection after a successful handshake.
 *                      Both ends may send one-way messages, make calls and
 *                      answer calls on it.
 *   struct net_peer    a connection to one address that is kept open: it
 *                      connects, and after any failure reconnects with
 *                      exponential backoff.  Sends go through a bounded queue.
 *   struct net_request one received request awaiting its net_reply().
 *
 * Threading and callbacks:
 *  1. Every function here must be called on the thread running the uv loop,
 *     and every callback runs on that thread from inside uv_run().
 *  2. No callback is ever invoked from inside a net_* call; a function that
 *     causes a callback (net_conn_close failing pending calls, say) defers it
 *     to a later loop iteration.  So callbacks are never re-entered and a
 *     caller never sees its own callback run under its feet.
 *  3. The callback rule of STYLE.md: a function taking a callback that
 *     returns an error never invokes it; one that returns 0 invokes it
 *     exactly once (for net_call: a response, a timeout, or the connection
 *     closing -- whichever comes first).
 *  4. An object is freed by this layer only after its last callback has
 *     returned; the pointer is invalid after that (stated per object below).
 *
 * Signals: creating the first server, connection or peer sets SIGPIPE to
 * ignored if it still has its default action, since a write to a reset
 * connection must be an error (CRAFT_ECLOSED), not the end of the process.
 *
 * Ownership of bytes: every payload passed to a send function is COPIED
 * before the function returns, so the caller may reuse its buffer at once.
 * Every payload passed to a callback is BORROWED for the duration of that
 * callback only (copy what you keep), except a request's payload, which stays
 * valid until net_reply() for that request.
 *
 * Bounds: every connection has a byte limit on its unsent output
 * (queue_bytes_max) and on each incoming frame (frame_max).  A send beyond
 * the queue limit is refused with CRAFT_ELIMIT and counted; it never blocks
 * and never grows memory.  An incoming frame that is malformed, oversized,
 * of another version or fails its checksum closes that connection with a
 * logged reason (util/log.h); it never crashes the process.
 *
 * Error codes used throughout: CRAFT_EINVAL (bad argument or address string),
 * CRAFT_ENOMEM, CRAFT_ETOOBIG (payload above the peer's frame max),
 * CRAFT_ELIMIT (send queue full), CRAFT_ECLOSED (connection closed or
 * closing), CRAFT_ENOCONN (a peer with no connection and none being made),
 * CRAFT_ETIMEDOUT, CRAFT_ECONNREFUSED, CRAFT_EPROTO / CRAFT_EVERSION /
 * CRAFT_ECORRUPT (the other end broke the protocol), CRAFT_EMISMATCH (the
 * handshake found another cluster id), CRAFT_EAUTH (the cluster secrets
 * differ, or only one end has one), CRAFT_EBUSY (address in use, or a
 * request refused because too many are unanswered),
 * CRAFT_EIO (any other socket error; the detail is logged).
 */
#ifndef CRAFT_NET_NET_H
#define CRAFT_NET_NET_H

#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include "craft/common.h"
#include "net/frame.h"

/* Defaults of struct net_config, each justified where it is used. */

/* Unsent output per connection: 64 MiB.  Room for dozens of 1 MiB Raft
 * batches or several MapReduce chunks in flight, small enough that a dead
 * follower on a 7-node cluster cannot take more than ~400 MiB from a leader. */
#define NET_QUEUE_BYTES_DEFAULT (64u * 1024 * 1024)
/* TCP connect on a LAN or loopback takes well under a millisecond; 2 s covers
 * a loaded machine and still notices a black-holed (firewalled) peer fast. */
#define NET_CONNECT_TIMEOUT_MS_DEFAULT 2000u
/* The handshake is one frame each way right after connect. */
#define NET_HANDSHAKE_TIMEOUT_MS_DEFAULT 2000u
/* Reconnect backoff: first retry after 50 ms (a restarted node is usually
 * back within a second), doubling up to 2 s, so a dead peer costs at most
 * one connect attempt per 2 s and a recovering one is found within ~2 s. */
#define NET_BACKOFF_MIN_MS_DEFAULT 50u
#define NET_BACKOFF_MAX_MS_DEFAULT 2000u
/* TCP_USER_TIMEOUT: a connection whose sent data stays unacknowledged this
 * long is aborted (and a peer link reconnects).  Without it the kernel keeps
 * retransmitting with exponential backoff for ~15 minutes, so after a
 * network partition heals a link can stay silent for as long again as the
 * partition lasted (30 s cut: 24 s more).  2 s is four default election
 * timeouts: Raft has given the link up long before; reconnecting costs one
 * handshake. */
#define NET_USER_TIMEOUT_MS_DEFAULT 2000u

/* Longest cluster secret accepted (struct net_config). */
#define NET_SECRET_MAX 256

/* Longest "HOST:PORT" accepted, and the host part of it. */
#define NET_ADDR_STR_MAX 128
#define NET_HOST_MAX 64

/* Room for "a.b.c.d:port" or "[v6]:port" from net_conn_peer_addr(). */
#define NET_ADDR_FMT_MAX 64

struct net_server;
struct net_conn;
struct net_peer;
struct net_request;
struct net_connecting;

/*
 * Settings shared by servers, connections and peers.  Initialise with
 * net_config_init() and then change fields.  Copied by the functions that
 * take it.
 */
struct net_config {
    /* Sent in the handshake.  node_id identifies this process to the other
     * end (0 = anonymous, e.g. a MapReduce worker); both ends must use the
     * same cluster_id or the connection is refused (CRAFT_EMISMATCH). */
    uint64_t node_id;
    uint64_t cluster_id;
    /* Largest payload accepted in one incoming frame; advertised in the
     * handshake so that the other end refuses bigger sends with
     * CRAFT_ETOOBIG instead of sending them.  In 64..NET_FRAME_MAX_LIMIT. */
    uint32_t frame_max;
    /* Largest total of queued, unsent output bytes per connection (at
     * least 4096; make it at least frame_max + NET_FRAME_HDR_SIZE, or the
     * largest frames can never be queued). */
    size_t queue_bytes_max;
    unsigned connect_timeout_ms;
    unsigned handshake_timeout_ms;
    unsigned backoff_min_ms; /* net_peer only */
    unsigned backoff_max_ms; /* net_peer only */
    /* TCP_USER_TIMEOUT of every connection (0: the kernel's default). */
    unsigned user_timeout_ms;
    /* If not NULL, the cluster secret (secret_len bytes, 1..256; copied):
     * both ends must have the same one, proven in the handshake with
     * HMAC-SHA-256 over fresh nonces (CRAFT_EAUTH otherwise).  This keeps
     * strangers and misconfigured nodes out; it does not protect frames
     * against an attacker on the path (docs/net.md). */
    const void *secret;
    size_t secret_len;
    /* Outgoing connections only: if not NULL, a numeric IP address the
     * socket is bound to (port 0) before connecting, so that the peer sees
     * this source address (firewall rules on 127.0.0.11..17 then partition
     * nodes).  Copied. */
    const char *bind_host;
};

/* Fill *cfg with the defaults above, node_id 0, cluster_id 0, no bind. */
void net_config_init(struct net_config *cfg);

/*
 * Callbacks of a connection, given to net_server_new, net_connect and
 * net_peer_new.  Any of them may be NULL: then a message is dropped, a
 * request is answered with status CRAFT_ENOENT, and open/close go unnoticed.
 * The struct is copied; `data` is passed to every callback.
 */
struct net_handlers {
    void *data;
    /* A connection completed its handshake (accepted by a server, or made by
     * a net_peer; net_connect reports through its own callback instead). */
    void (*on_open)(void *data, struct net_conn *conn);
    /* A one-way message.  payload is borrowed for the call. */
    void (*on_message)(void *data, struct net_conn *conn, uint16_t type,
                       const uint8_t *payload, size_t len);
    /* A request.  The handler (now or later) must pass req to net_reply()
     * exactly once, even if the connection has closed meanwhile.  While a
     * connection has 4096 requests unanswered, or their payloads total
     * queue_bytes_max, further requests are answered CRAFT_EBUSY without
     * reaching the handler. */
    void (*on_request)(void *data, struct net_conn *conn,
                       struct net_request *req);
    /* The connection closed: status 0 after net_conn_close(), else why
     * (CRAFT_ECLOSED for EOF, CRAFT_EPROTO ...).  Fires exactly once for
     * every connection that was opened; conn is invalid after it returns.
     * Every pending net_call on it has already had its callback. */
    void (*on_close)(void *data, struct net_conn *conn, int status);
};

/* A received request.  Fields are read-only for the handler. */
struct net_request {
    uint16_t type;
    const uint8_t *payload; /* valid until net_reply() */
    size_t len;
};

/* Parse "HOST:PORT" or "[V6HOST]:PORT" into host (NUL-terminated, at most
 * NET_HOST_MAX - 1 bytes) and port (1..65535; 0 only if allow_port0).
 * 0, or CRAFT_EINVAL with a sentence in errmsg (if errmsg_len > 0). */
int net_addr_parse(const char *s, char *host, size_t host_len, uint16_t *port,
                   int allow_port0, char *errmsg, size_t errmsg_len);

/* Resolve "HOST:PORT" into a socket address.  HOST is a numeric IPv4 or IPv6
 * address or "localhost" (= 127.0.0.1); names are not looked up, so this
 * never blocks the loop.  0 or CRAFT_EINVAL with errmsg as above. */
int net_addr_resolve(const char *s, int allow_port0,
                     struct sockaddr_storage *out, char *errmsg,
                     size_t errmsg_len);

/* Format a socket address as "a.b.c.d:port" / "[v6]:port" into buf. */
void net_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Servers.
 */

/* Listen on address ("HOST:PORT"; port 0 picks a free port, see
 * net_server_port).  Accepted connections handshake with cfg and then use
 * handlers h.  0 and *out set, or an error (CRAFT_EINVAL bad address,
 * CRAFT_EBUSY address in use, CRAFT_EIO) with a sentence in errmsg. */
int net_server_new(uv_loop_t *loop, const struct net_config *cfg,
                   const char *address, const struct net_handlers *h,
                   struct net_server **out, char *errmsg, size_t errmsg_len);

/* The port the server listens on (useful after binding port 0). */
uint16_t net_server_port(const struct net_server *s);

typedef void (*net_close_cb)(void *data);

/* Stop listening and close every connection the server accepted (each gets
 * its on_close with status 0).  cb (may be NULL) fires once all of them and
 * the listener are closed; the server is freed right after cb returns.
 * Call once. */
void net_server_close(struct net_server *s, void *data, net_close_cb cb);

/*
 * Connections.
 */

/* cb of net_connect: status 0 and an open conn, or an error and conn NULL. */
typedef void (*net_connect_cb)(void *data, struct net_conn *conn, int status);

/*
 * Connect to address and handshake, giving up after cfg->connect_timeout_ms
 * (CRAFT_ETIMEDOUT) plus cfg->handshake_timeout_ms.  On 0, cb fires exactly
 * once: with an open conn (whose later events go to h, starting with no
 * on_open) or with an error (ECONNREFUSED, ETIMEDOUT, EMISMATCH, EPROTO,
 * ECLOSED, EAUTH, EIO, or CRAFT_ECANCELED if net_connect_cancel() was
 * called).
 * *pending (if not NULL) receives a handle for net_connect_cancel(), valid
 * until cb fires.  Errors without callback: CRAFT_EINVAL (bad address or
 * bind_host), CRAFT_ENOMEM, CRAFT_EIO.
 */
int net_connect(uv_loop_t *loop, const struct net_config *cfg,
                const char *address, const struct net_handlers *h,
                struct net_connecting **pending, void *data, net_connect_cb cb);

/* Abandon a connect in progress: its cb fires (later) with
 * CRAFT_ECANCELED. */
void net_connect_cancel(struct net_connecting *c);

/* Send a one-way message (NET_KIND_MESSAGE) of the given type.  The payload
 * is copied.  0 (queued; no callback, delivery is not confirmed), or
 * CRAFT_ETOOBIG, CRAFT_ELIMIT (queue full; nothing queued), CRAFT_ECLOSED,
 * CRAFT_ENOMEM. */
int net_send(struct net_conn *conn, uint16_t type, const void *payload,
             size_t len);

/* A payload in pieces, sent as one frame (e.g. a message header the caller
 * encoded plus a batch of entry bodies).  Each piece is copied. */
struct net_iovec {
    const void *base;
    size_t len;
};
int net_sendv(struct net_conn *conn, uint16_t type, const struct net_iovec *iov,
              unsigned n_iov);

/*
 * cb of net_call.  status is 0 with the response payload, the nonzero status
 * the handler passed to net_reply (a CRAFT_E* code; the payload is then
 * whatever it sent, e.g. a message), or a local error: CRAFT_ETIMEDOUT or
 * CRAFT_ECLOSED (the connection closed first).  payload is borrowed for the
 * call.
 */
typedef void (*net_call_cb)(void *data, int status, const uint8_t *payload,
                            size_t len);

/* Send a request and wait asynchronously for its response, at most
 * timeout_ms (0 = no timeout; the call then ends with the connection).
 * The payload is copied.  On 0, cb fires exactly once; errors (no
 * callback): CRAFT_ETOOBIG, CRAFT_ELIMIT, CRAFT_ECLOSED, CRAFT_ENOMEM. */
int net_call(struct net_conn *conn, uint16_t type, const void *payload,
             size_t len, unsigned timeout_ms, void *data, net_call_cb cb);
int net_callv(struct net_conn *conn, uint16_t type, const struct net_iovec *iov,
              unsigned n_iov, unsigned timeout_ms, void *data, net_call_cb cb);

/*
 * Answer req (with status 0, or a CRAFT_E* code the caller will receive as
 * its status) and free it: req is invalid after this returns, whatever the
 * result.  The payload is copied.  0, or CRAFT_ECLOSED (the connection is
 * gone; the caller already got CRAFT_ECLOSED), CRAFT_ETOOBIG or
 * CRAFT_ELIMIT (the payload was not sent; the caller gets that code as its
 * status through an empty error response when one still fits),
 * CRAFT_ENOMEM (nothing sent; the caller will time out or see the close).
 */
int net_reply(struct net_request *req, int status, const void *payload,
              size_t len);
int net_replyv(struct net_request *req, int status, const struct net_iovec *iov,
               unsigned n_iov);

/* The connection a request arrived on, or NULL if it has closed since. */
struct net_conn *net_request_conn(const struct net_request *req);

/* Close conn: stop reading; hand queued output to the socket as far as it
 * takes it without waiting (a last message sent just before the close goes
 * out) and drop the rest; then fail pending calls with CRAFT_ECLOSED and
 * call on_close(status 0) -- both from later loop iterations.  Calling it
 * again, or on a conn already closing, does nothing. */
void net_conn_close(struct net_conn *conn);

/* A user pointer per connection (NULL initially). */
void net_conn_set_data(struct net_conn *conn, void *data);
void *net_conn_data(const struct net_conn *conn);

/* The other end's node id and frame max from its handshake. */
uint64_t net_conn_peer_id(const struct net_conn *conn);
uint32_t net_conn_peer_frame_max(const struct net_conn *conn);

/* The other end's / our own address, formatted as net_addr_format(). */
void net_conn_peer_addr(const struct net_conn *conn, char *buf, size_t len);
void net_conn_local_addr(const struct net_conn *conn, char *buf, size_t len);

/* Bytes queued on conn and not yet written to the socket. */
size_t net_conn_queued_bytes(const struct net_conn *conn);

/* Traffic on one connection since it was made, handshake included.  A
 * frame counts as out once queued (it may still be lost if the connection
 * drops), as in once decoded and checked. */
struct net_conn_stats {
    uint64_t frames_out, bytes_out; /* bytes include the 32-byte headers */
    uint64_t frames_in, bytes_in;
    uint64_t calls_timed_out;  /* net_call callbacks with ETIMEDOUT */
    uint64_t requests_refused; /* answered CRAFT_EBUSY (too many held) */
};
void net_conn_get_stats(const struct net_conn *conn,
                        struct net_conn_stats *out);

/*
 * Peers: a kept-open outgoing connection (craftd's link to each other node).
 */

struct net_peer_stats {
    uint64_t connects;       /* handshakes completed */
    uint64_t connect_fails;  /* attempts that failed or timed out */
    uint64_t frames_sent;    /* frames accepted by net_peer_send */
    uint64_t bytes_sent;     /* their payload bytes */
    uint64_t frames_dropped; /* refused (queue full, no connection) or lost
                                unsent when a connection dropped */
    uint64_t bytes_dropped;
    unsigned backoff_ms; /* current reconnect delay, 0 when connected */
    int connected;       /* 1 iff a connection is open now */
};

/*
 * Start keeping a connection to address, with handlers h for its traffic
 * (on_open/on_close fire for each successive connection).  The first connect
 * starts at once; after a failure or a close the next attempt waits a delay
 * that starts at backoff_min_ms and doubles (with random jitter of up to
 * half) up to backoff_max_ms, and starts over once a connection has stayed
 * open for backoff_max_ms.
 * 0 and *out set, or CRAFT_EINVAL (bad address), CRAFT_ENOMEM.
 */
int net_peer_new(uv_loop_t *loop, const struct net_config *cfg,
                 const char *address, const struct net_handlers *h,
                 struct net_peer **out);

/*
 * Send a one-way message to the peer.  Copied.  While a connection is open
 * it is queued on it; while the first connect attempt of a cycle is in
 * flight it waits in the peer's queue (same byte limit) and goes out after
 * the handshake; when an attempt fails, the waiting messages are dropped, and
 * while in backoff sends are refused -- a peer that is down does not collect
 * stale traffic.  0, or CRAFT_ENOCONN (backing off), CRAFT_ELIMIT (queue
 * full), CRAFT_ETOOBIG, CRAFT_ENOMEM; every refusal is counted in
 * frames_dropped.  No callback: delivery is never confirmed.
 */
int net_peer_send(struct net_peer *p, uint16_t type, const void *payload,
                  size_t len);
int net_peer_sendv(struct net_peer *p, uint16_t type,
                   const struct net_iovec *iov, unsigned n_iov);

/* The peer's open connection (for net_call), or NULL. */
struct net_conn *net_peer_conn(const struct net_peer *p);

void net_peer_get_stats(const struct net_peer *p, struct net_peer_stats *out);

/* Stop reconnecting and close the current connection (its on_close fires
 * with 0).  cb (may be NULL) fires once everything is closed; the peer is
 * freed right after cb returns.  Call once. */
void net_peer_close(struct net_peer *p, void *data, net_close_cb cb);

#endif /* CRAFT_NET_NET_H */
