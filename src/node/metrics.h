/*
 * metrics.h -- craftd's Prometheus endpoint: a small HTTP/1.1 server on
 * the node's loop that answers `GET /metrics` (--metrics-addr).
 *
 * Why our own server and not libmicrohttpd: it would run its own threads
 * (or need its sockets driven from our loop by hand), while the page is
 * made from state that lives on the loop thread; and all we need of HTTP
 * is one request line per connection.  So the server is deliberately
 * strict and small:
 *
 *  1. One request per connection, answered with "Connection: close"; the
 *     server closes after the response (no keep-alive, no pipelining),
 *     lingering up to METRICS_LINGER_MS to discard unread input.
 *  2. The request line and headers must arrive within
 *     METRICS_REQUEST_TIMEOUT_MS (a slowloris is cut off) and fit in
 *     METRICS_REQUEST_MAX bytes (else 431); a body is never read.
 *  3. GET or HEAD of /metrics (a query string is ignored) is 200; another
 *     path 404; another method 405 (with Allow); anything that is not an
 *     HTTP/1.x request line 400.
 *  4. At most METRICS_CONNS_MAX connections at once; beyond that a new
 *     connection is closed at once, so scrapers cannot exhaust the node's
 *     descriptors.
 *
 * Threads: the loop thread only.
 */
#ifndef CRAFT_NODE_METRICS_H
#define CRAFT_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

/* The request line and headers of a scrape are a few hundred bytes. */
#define METRICS_REQUEST_MAX 8192
/* Prometheus's default scrape timeout is 10 s; a real scraper sends its
 * request at once, so 5 s only ever cuts off the slow and the idle. */
#define METRICS_REQUEST_TIMEOUT_MS 5000
/* A connection that sends nothing at all is closed after this long (load
 * balancer health checks, port scans), so idle ones free their slot
 * sooner than the whole-request bound. */
#define METRICS_FIRST_BYTE_MS 1000
/* The response must be written within this long (a client that does not
 * read is cut off once the page outgrows the socket buffers). */
#define METRICS_WRITE_TIMEOUT_MS 5000
/* After answering, the server reads and discards what the client still
 * sends for at most this long and this much before closing (a lingering
 * close, so that a reset does not destroy the answer). */
#define METRICS_LINGER_MS 1000
#define METRICS_LINGER_BYTES_MAX (256u * 1024)
/* A couple of scrapers and an operator's curl; not a public server.
 * When all are taken, a new connection evicts the oldest one that has not
 * sent a complete request; only when every one is being answered is the
 * new one refused. */
#define METRICS_CONNS_MAX 16

struct node_metrics;

/* Write the page into out (the caller resets it).  0 or CRAFT_ENOMEM. */
typedef int (*node_metrics_page_fn)(void *data, struct buf *out);

/*
 * Listen on host:port (numeric IPv4) and serve page() at /metrics.
 * 0 and *out set, or CRAFT_EBUSY (address in use), CRAFT_EINVAL, CRAFT_EIO
 * with the reason in errmsg.
 */
int node_metrics_start(uv_loop_t *loop, const char *host, uint16_t port,
                       node_metrics_page_fn page, void *data,
                       struct node_metrics **out, char *errmsg,
                       size_t errmsg_len);

/* Close the listener and every connection; cb(data) fires once when all
 * handles are closed, after which the server is freed. */
void node_metrics_stop(struct node_metrics *m, void (*cb)(void *data),
                       void *data);

#endif /* CRAFT_NODE_METRICS_H */
