/*
 * Internals shared by conn.c (one framed connection), server.c (accepting)
 * and peer.c (reconnecting).  Not part of the net API.
 *
 * A connection moves through these states; CLOSING and CLOSED are reached
 * from any earlier state:
 *
 *   CONNECTING --tcp connected, HELLO sent--> HANDSHAKE   (outgoing)
 *   (accepted) --HELLO sent------------------> HANDSHAKE   (incoming)
 *   HANDSHAKE  --valid HELLO received--------> OPEN        owner "opened"
 *              (with a secret: HELLO received, AUTH sent; then
 *               valid AUTH received -----------> OPEN)
 *   any        --error or close request------> CLOSING     uv_close both
 * handles CLOSING    --both handles closed---------> CLOSED      calls failed,
 *                                                          on_close, owner
 *                                                          "closed"
 *   CLOSED     --last reference dropped------> freed
 *
 * Invariants:
 *  1. Frames other than HELLO and AUTH are sent and delivered only in OPEN.
 *  2. queued_bytes is the size of the frames waiting in out_head plus those
 *     handed to uv_write() whose callback has not run; it never exceeds
 *     cfg.queue_bytes_max.  The flush handle is active iff out_head is
 *     non-empty (until CLOSING).
 *  3. Every pending call is in the slot table exactly once and has a
 *     callback still to fire; it leaves the table before the callback runs.
 *  4. refs counts the connection itself (until CLOSED) plus every received
 *     request not yet passed to net_reply() (n_requests of them, holding
 *     request_bytes <= cfg.queue_bytes_max); memory is freed at zero.
 */
#ifndef CRAFT_NET_CONN_H
#define CRAFT_NET_CONN_H

#include "net/net.h"
#include "util/buf.h"

/* Most calls pending on one connection: a runaway caller gets CRAFT_ELIMIT
 * instead of growing the slot table without bound.  64 Ki is far beyond
 * any pipelining depth craft uses (a few hundred chunk fetches). */
#define NET_CALLS_MAX 65536u

/* Most requests received on one connection and not yet answered; more are
 * refused with CRAFT_EBUSY (as are requests whose payloads would take the
 * bytes held past queue_bytes_max).  Far above any legitimate pipelining
 * depth, low enough to bound the bookkeeping a flood can cause. */
#define NET_REQUESTS_MAX 4096u

/* Size of the HELLO payload of protocol version 1 (docs/net.md), and with
 * the nonce that follows when NET_HELLO_FLAG_AUTH is set. */
#define NET_HELLO_SIZE 24u
#define NET_NONCE_SIZE 32u
#define NET_HELLO_AUTH_SIZE (NET_HELLO_SIZE + NET_NONCE_SIZE)
#define NET_HELLO_FLAG_AUTH 0x0001u

/* The smallest frame max accepted: the HELLO must always fit. */
#define NET_FRAME_MAX_MIN 64u

/* The smallest queue limit accepted: the HELLO must always fit. */
#define NET_QUEUE_BYTES_MIN 4096u

/* A read buffer grown beyond this for a large frame is freed once empty, so
 * an idle connection that once received a 16 MiB frame does not keep it. */
#define NET_RBUF_KEEP_MAX (1u << 20)

/* Read granularity when no frame size is known yet. */
#define NET_READ_CHUNK (64u * 1024)

enum conn_state {
    CONN_CONNECTING,
    CONN_HANDSHAKE,
    CONN_OPEN,
    CONN_CLOSING,
    CONN_CLOSED
};

/* Who created the connection and must hear of its opening and closing. */
enum conn_owner {
    OWNER_NONE,    /* net_connect() after its callback fired */
    OWNER_CONNECT, /* net_connect() waiting for its callback */
    OWNER_SERVER,  /* accepted by a net_server */
    OWNER_PEER     /* made by a net_peer */
};

/* A doubly linked list node (a server's connections). */
struct net__link {
    struct net__link *prev, *next;
};

struct net__call;

/* Small frames are packed into output segments of this size: big enough
 * that a burst of Raft messages or replies is one writev(2) entry, small
 * enough not to matter per connection. */
#define NET_SEG_SIZE (64u * 1024)

/* Encoded frames waiting to be written, in order. */
struct net__seg {
    struct net__seg *next;
    size_t len, cap;
    uint32_t n_frames;
    uint8_t data[];
};

/* Segments handed to libuv in one uv_write(); freed in its callback. */
struct net__wbatch {
    uv_write_t req;
    struct net_conn *conn;
    struct net__seg *segs;
    size_t bytes;
    uint32_t n_frames;
    uv_buf_t bufs[];
};

/* A configuration copied and checked: bind_host resolved into bind_addr,
 * the secret copied. */
struct net__cfg {
    struct net_config c; /* c.bind_host and c.secret are NULL in the copy */
    int has_bind;
    struct sockaddr_storage bind_addr;
    int has_secret;
    size_t secret_len;
    uint8_t secret[NET_SECRET_MAX];
};

struct net_conn {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;   /* connect and handshake deadline */
    uv_prepare_t flush; /* active while output is waiting (conn_write) */
    uv_connect_t connect_req;
    enum conn_state state;
    int was_open;     /* reached OPEN (so on_close is owed) */
    int close_status; /* reason passed to on_close / the connect cb */
    unsigned closing_handles;
    unsigned refs;

    struct net__cfg cfg;
    struct net_handlers h;
    void *user_data;

    enum conn_owner owner;
    struct net_server *server; /* OWNER_SERVER */
    struct net__link link;     /* in server's list */
    struct net_peer *peer;     /* OWNER_PEER */
    void *connect_data;        /* OWNER_CONNECT */
    net_connect_cb connect_cb;

    struct buf rbuf; /* received bytes; frames start at rpos */
    size_t rpos;
    size_t queued_bytes;                  /* unsent: in segments and in libuv */
    struct net__seg *out_head, *out_tail; /* not yet handed to libuv */
    unsigned out_segs;

    uint32_t n_requests;         /* received, not yet passed to net_reply */
    size_t request_bytes;        /* their payload bytes */
    struct net_conn_stats stats; /* requests_refused counts the shed */

    int hello_received;
    uint8_t nonce[NET_NONCE_SIZE];      /* ours, with a secret */
    uint8_t peer_nonce[NET_NONCE_SIZE]; /* theirs */
    uint64_t peer_id;
    uint32_t peer_frame_max;
    struct sockaddr_storage peer_addr;
    struct sockaddr_storage local_addr;

    struct net__call **slots; /* pending calls by id's low 32 bits */
    uint32_t *free_slots;     /* stack of free indexes into slots */
    uint32_t n_slots, n_free, slots_cap;
    uint32_t n_calls;
    uint32_t call_gen; /* high 32 bits of the next request id */
};

/* Copy and check a configuration.  0 or CRAFT_EINVAL with errmsg. */
int net__cfg_init(struct net__cfg *out, const struct net_config *cfg,
                  char *errmsg, size_t errmsg_len);

/* Numeric host (or "localhost") to an address.  0 or CRAFT_EINVAL. */
int net__host_resolve(const char *host, uint16_t port,
                      struct sockaddr_storage *out);

/* Translate a libuv error into a CRAFT_E* code. */
int net__uv_error(int uv_err);

/* A new connection in state CONNECTING, connecting to *addr, owned as
 * given.  0, or CRAFT_ENOMEM / CRAFT_EIO (nothing allocated, no callback). */
int net__conn_connect(uv_loop_t *loop, const struct net__cfg *cfg,
                      const struct sockaddr_storage *addr,
                      const struct net_handlers *h, enum conn_owner owner,
                      struct net_conn **out);

/* Accept a connection pending on server socket srv into a new HANDSHAKE
 * connection owned by server s.  0 or an error (nothing allocated). */
int net__conn_accept(struct net_server *s, uv_stream_t *srv,
                     const struct net__cfg *cfg, const struct net_handlers *h,
                     struct net_conn **out);

/* Begin closing with the given status (no-op if already closing). */
void net__conn_close(struct net_conn *c, int status);

/* Owner hooks, called from conn.c once per connection. */
void net__server_conn_closed(struct net_server *s, struct net_conn *c);
void net__peer_conn_opened(struct net_peer *p, struct net_conn *c);
void net__peer_conn_closed(struct net_peer *p, struct net_conn *c, int was_open,
                           int status);
void net__peer_frames_lost(struct net_peer *p, uint32_t n_frames,
                           size_t payload_bytes);

#endif /* CRAFT_NET_CONN_H */
