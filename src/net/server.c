/*
 * A listening socket and the connections it accepted.
 *
 * Invariants:
 *  1. Every accepted connection that has not reached CLOSED is on the
 *     server's list, and n_conns counts them.
 *  2. Once closing, no connection is accepted, and the server is freed
 *     exactly when the listener is closed and the list is empty.
 */
#include <stdlib.h>
#include <string.h>

#include "net/conn.h"
#include "util/assert.h"
#include "util/log.h"

/* Accepted connections at most per server.  craftd has a handful of peers
 * and a MapReduce coordinator one connection per worker; 4096 is far above
 * both and keeps a connection flood from exhausting descriptors. */
#define NET_SERVER_CONNS_MAX 4096u

/* Backlog of not-yet-accepted connections handed to listen(2). */
#define NET_LISTEN_BACKLOG 128

struct net_server {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    struct net__cfg cfg;
    struct net_handlers h;
    uint16_t port;
    struct net__link conns; /* list head */
    unsigned n_conns;
    int closing;
    int listener_closed;
    void *close_data;
    net_close_cb close_cb;
};

static void list_init(struct net__link *head)
{
    head->prev = head->next = head;
}

static void list_push(struct net__link *head, struct net__link *l)
{
    l->next = head;
    l->prev = head->prev;
    head->prev->next = l;
    head->prev = l;
}

static void list_remove(struct net__link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

static struct net_conn *link_conn(struct net__link *l)
{
    return (struct net_conn *)(void *)((char *)l -
                                       offsetof(struct net_conn, link));
}

/* Close callback of handles whose data is the heap block to free. */
static void free_data_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void server_maybe_free(struct net_server *s)
{
    if (!s->closing || !s->listener_closed || s->n_conns > 0) {
        return;
    }
    CRAFT_ASSERT(s->conns.next == &s->conns);
    if (s->close_cb != NULL) {
        s->close_cb(s->close_data);
    }
    free(s);
}

void net__server_conn_closed(struct net_server *s, struct net_conn *c)
{
    CRAFT_ASSERT(s != NULL);
    CRAFT_ASSERT(s->n_conns > 0);
    list_remove(&c->link);
    s->n_conns--;
    server_maybe_free(s);
}

static void server_connection_cb(uv_stream_t *stream, int status)
{
    struct net_server *s = stream->data;
    if (status < 0) {
        LOG_WARNF("net: accept on port %u failed: %s", (unsigned)s->port,
                  uv_strerror(status));
        return;
    }
    if (s->closing) {
        return;
    }
    if (s->n_conns >= NET_SERVER_CONNS_MAX) {
        /* Accept and drop at once, so the client sees a close rather than
         * hanging in the backlog. */
        uv_tcp_t *t = malloc(sizeof *t);
        if (t != NULL && uv_tcp_init(s->loop, t) == 0) {
            t->data = t;
            uv_accept(stream, (uv_stream_t *)t);
            uv_close((uv_handle_t *)t, free_data_cb);
        } else {
            free(t);
        }
        LOG_WARNF("net: port %u: connection limit %u reached, refusing",
                  (unsigned)s->port, NET_SERVER_CONNS_MAX);
        return;
    }
    struct net_conn *c;
    int rv = net__conn_accept(s, stream, &s->cfg, &s->h, &c);
    if (rv != 0) {
        LOG_WARNF("net: port %u: accept failed: %s", (unsigned)s->port,
                  craft_strerror(rv));
        return;
    }
    list_push(&s->conns, &c->link);
    s->n_conns++;
}

static int server_error(char *errmsg, size_t errmsg_len, const char *address,
                        int uv_err)
{
    if (errmsg != NULL && errmsg_len > 0) {
        snprintf(errmsg, errmsg_len, "cannot listen on %s: %s", address,
                 uv_strerror(uv_err));
    }
    return net__uv_error(uv_err);
}

int net_server_new(uv_loop_t *loop, const struct net_config *cfg,
                   const char *address, const struct net_handlers *h,
                   struct net_server **out, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(loop != NULL);
    CRAFT_ASSERT(out != NULL);
    struct net__cfg c;
    int rv = net__cfg_init(&c, cfg, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    struct sockaddr_storage addr;
    rv = net_addr_resolve(address, 1, &addr, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    struct net_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->loop = loop;
    s->cfg = c;
    if (h != NULL) {
        s->h = *h;
    }
    list_init(&s->conns);
    CRAFT_ASSERT(uv_tcp_init(loop, &s->tcp) == 0);
    s->tcp.data = s;
    rv = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&s->tcp, NET_LISTEN_BACKLOG,
                       server_connection_cb);
    }
    if (rv != 0) {
        int code = server_error(errmsg, errmsg_len, address, rv);
        uv_close((uv_handle_t *)&s->tcp, free_data_cb);
        return code;
    }
    struct sockaddr_storage bound;
    int len = (int)sizeof bound;
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len);
    /* sin_port and sin6_port share their offset in both families. */
    _Static_assert(offsetof(struct sockaddr_in, sin_port) ==
                       offsetof(struct sockaddr_in6, sin6_port),
                   "port offset");
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return 0;
}

uint16_t net_server_port(const struct net_server *s)
{
    return s->port;
}

static void server_listener_closed_cb(uv_handle_t *handle)
{
    struct net_server *s = handle->data;
    s->listener_closed = 1;
    server_maybe_free(s);
}

void net_server_close(struct net_server *s, void *data, net_close_cb cb)
{
    CRAFT_ASSERT(s != NULL);
    CRAFT_ASSERT(!s->closing);
    s->closing = 1;
    s->close_data = data;
    s->close_cb = cb;
    uv_close((uv_handle_t *)&s->tcp, server_listener_closed_cb);
    for (struct net__link *l = s->conns.next; l != &s->conns; l = l->next) {
        net__conn_close(link_conn(l), 0);
    }
}
