/*
 * craft-loadgen's engine: C closed-loop clients on one libuv loop.
 *
 * Each client owns one TCP connection.  It sends a round of `pipeline`
 * requests in one write, waits for every reply, then sends the next round
 * (redis-benchmark's -P semantics, so the figures of both tools compare).
 * A request's latency runs from the write of its round to its reply; a
 * retried request keeps its first start, so a failover shows up in the
 * latency of the requests it delayed.
 *
 * Invariants (per client):
 *   1. At most one round is in flight: n_answered <= n_sent <= pipeline.
 *   2. Replies match requests in order: reply i answers order[i].
 *   3. At most one write is in flight; the out buffer is untouched until
 *      its callback.
 *   4. A request ends exactly once: ok, miss, error, or given up after
 *      retry_ms; run->finished counts them and never passes run->issued.
 */
#ifndef CRAFT_LOADGEN_H
#define CRAFT_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hist.h"
#include "proto.h"

#define LG_ADDRS_MAX 16
#define LG_CLIENTS_MAX 10000
#define LG_PIPELINE_MAX 1024
#define LG_HOST_MAX 128

enum lg_target { LG_TARGET_RESP, LG_TARGET_ETCD, LG_TARGET_FSYNC };

struct lg_config {
    enum lg_target target;
    enum lg_op op;
    size_t n_addrs;
    char addrs[LG_ADDRS_MAX][LG_HOST_MAX]; /* "host:port" as given */
    unsigned clients;
    uint64_t requests;  /* stop after this many (0: only --duration) */
    double duration_s;  /* stop issuing after this long (0: no limit) */
    uint64_t key_space; /* keys are drawn from [0, key_space) */
    int sequential;     /* keys 0, 1, 2, ... (mod key_space) in issue
                           order, e.g. to fill the key space first */
    size_t value_size;
    unsigned pipeline;
    uint64_t seed;
    int serializable;    /* etcd ranges: serializable, not linearizable */
    int check;           /* GET: compare values with what put writes */
    unsigned timeout_ms; /* no reply for this long: reconnect */
    unsigned retry_ms;   /* a request retried for this long fails */
    const char *dir;     /* fsync target directory */
    int fsync_append;    /* fsync: extend the file instead of overwriting */
};

struct lg_stats {
    struct hist hist;    /* latency of successful requests */
    uint64_t ok;         /* successful requests (hits for GET) */
    uint64_t misses;     /* GET of a key that does not exist */
    uint64_t errors;     /* error replies, wrong types, given up */
    uint64_t mismatches; /* --check: GET returned another value */
    uint64_t retries;    /* requests sent again (after an error reply or a
                            lost connection) */
    uint64_t redirects;  /* MOVED replies followed */
    uint64_t reconnects; /* connections lost or refused */
    double elapsed_s;
};

/* Run the network benchmark described by cfg (resp or etcd) to the end.
 * 0 when it ran (look at stats->errors), or a negative code with errmsg
 * set when it could not run at all (bad address, protocol violation). */
int lg_run(const struct lg_config *cfg, struct lg_stats *stats, char *errmsg,
           size_t errmsg_size);

/* Measure pwrite + fdatasync of value_size bytes in cfg->dir, requests
 * times.  0, or a negative code with errmsg set. */
int lg_fsync_run(const struct lg_config *cfg, struct lg_stats *stats,
                 char *errmsg, size_t errmsg_size);

#endif /* CRAFT_LOADGEN_H */
