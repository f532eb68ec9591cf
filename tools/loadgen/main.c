/*
 * craft-loadgen -- closed-loop load generator for Redis-protocol servers
 * (craftd, redis-server) and etcd v3, and a raw fsync timer.
 *
 *   craft-loadgen --target resp|etcd --addr HOST:PORT[,HOST:PORT...]
 *                 [--clients C] [--requests N] [--duration SEC]
 *                 [--op put|get] [--key-space K] [--value-size B]
 *                 [--pipeline P] [--seed S] [--sequential]
 *                 [--serializable] [--check]
 *                 [--timeout-ms T] [--retry-ms R]
 *   craft-loadgen --target fsync --dir DIR [--requests N] [--value-size B]
 *                 [--append]
 *
 * Prints one line, the same keys in the same order for every target:
 *
 *   target=resp op=put clients=50 pipeline=1 ops=100000 errors=0 misses=0
 *   mismatches=0 retries=0 redirects=0 reconnects=0 elapsed_s=1.234
 *   ops_per_s=81037 p50_us=601 p99_us=1200 p999_us=2100 max_us=5400
 *
 * (on one line).  ops counts successful requests (GET misses included),
 * errors the requests that failed for good.  Exit status: 0 when every
 * request succeeded, 1 when some failed or the run stopped early (the
 * reason on stderr), 2 for a bad command line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "loadgen.h"
#include "util/assert.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: craft-loadgen --target resp|etcd "
               "--addr HOST:PORT[,HOST:PORT...]\n"
               "                     [--clients C] [--requests N] "
               "[--duration SEC] [--op put|get]\n"
               "                     [--key-space K] [--value-size B] "
               "[--pipeline P] [--seed S]\n"
               "                     [--sequential] [--serializable] [--check]"
               "\n                     "
               "[--timeout-ms T] [--retry-ms R]\n"
               "       craft-loadgen --target fsync --dir DIR [--requests N] "
               "[--value-size B] [--append]\n"
               "Defaults: --clients 50 --requests 100000 --op put "
               "--key-space 100000\n"
               "          --value-size 3 --pipeline 1 --seed 1 "
               "--timeout-ms 5000 --retry-ms 10000\n"
               "resp: SET/GET over RESP2, following -MOVED redirects and "
               "retrying CLUSTERDOWN.\n"
               "etcd: /v3/kv/put and /v3/kv/range over HTTP/1.1 keep-alive "
               "(ranges are\n"
               "      linearizable unless --serializable).\n"
               "Keys are key:<12 digits>, drawn at random from the key space "
               "(per-client\n"
               "streams from --seed), or in order with --sequential (to fill "
               "it).\n"
               "--check: GET compares every value found with what put "
               "writes for --seed.\n"
               "fsync: pwrite B bytes + fdatasync, N times, in a "
               "preallocated file in DIR\n"
               "       (--append: extending the file instead).\n");
}

/* Print a command-line error; returns -1. */
static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "craft-loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fprintf(stderr, "(craft-loadgen --help for usage)\n");
    return -1;
}

/* A decimal integer in [lo, hi], the whole string.  0 or -1. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_addrs(struct lg_config *cfg, const char *list)
{
    const char *p = list;
    cfg->n_addrs = 0;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= LG_HOST_MAX || cfg->n_addrs == LG_ADDRS_MAX) {
            return -1;
        }
        char *a = cfg->addrs[cfg->n_addrs];
        memcpy(a, p, n);
        a[n] = '\0';
        /* HOST:PORT with a numeric port; the host is resolved later. */
        const char *colon = strrchr(a, ':');
        uint64_t port;
        if (colon == NULL || colon == a ||
            parse_u64(colon + 1, 1, 65535, &port) != 0) {
            return -1;
        }
        cfg->n_addrs++;
        p += n + (comma != NULL);
        if (comma != NULL && *p == '\0') {
            return -1;
        }
    }
    return cfg->n_addrs > 0 ? 0 : -1;
}

enum {
    OPT_TARGET = 256,
    OPT_ADDR,
    OPT_CLIENTS,
    OPT_REQUESTS,
    OPT_DURATION,
    OPT_OP,
    OPT_KEY_SPACE,
    OPT_VALUE_SIZE,
    OPT_PIPELINE,
    OPT_SEED,
    OPT_SERIALIZABLE,
    OPT_CHECK,
    OPT_SEQUENTIAL,
    OPT_TIMEOUT,
    OPT_RETRY,
    OPT_DIR,
    OPT_APPEND,
    OPT_HELP,
};

static const struct option options[] = {
    {"target", required_argument, NULL, OPT_TARGET},
    {"addr", required_argument, NULL, OPT_ADDR},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"op", required_argument, NULL, OPT_OP},
    {"key-space", required_argument, NULL, OPT_KEY_SPACE},
    {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
    {"pipeline", required_argument, NULL, OPT_PIPELINE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"serializable", no_argument, NULL, OPT_SERIALIZABLE},
    {"check", no_argument, NULL, OPT_CHECK},
    {"sequential", no_argument, NULL, OPT_SEQUENTIAL},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"retry-ms", required_argument, NULL, OPT_RETRY},
    {"dir", required_argument, NULL, OPT_DIR},
    {"append", no_argument, NULL, OPT_APPEND},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* One option into cfg.  0, 1 for --help, or -1 (message printed). */
static int apply_option(struct lg_config *cfg, int opt, const char *arg,
                        int *have_target)
{
    uint64_t v = 0;
    switch (opt) {
    case OPT_TARGET:
        if (strcmp(arg, "resp") == 0) {
            cfg->target = LG_TARGET_RESP;
        } else if (strcmp(arg, "etcd") == 0) {
            cfg->target = LG_TARGET_ETCD;
        } else if (strcmp(arg, "fsync") == 0) {
            cfg->target = LG_TARGET_FSYNC;
        } else {
            return bad("--target must be resp, etcd or fsync, not \"%s\"", arg);
        }
        *have_target = 1;
        return 0;
    case OPT_ADDR:
        return parse_addrs(cfg, arg) == 0
                   ? 0
                   : bad("bad --addr \"%s\" (HOST:PORT[,HOST:PORT...], at "
                         "most 16)",
                         arg);
    case OPT_CLIENTS:
        if (parse_u64(arg, 1, LG_CLIENTS_MAX, &v) != 0) {
            return bad("--clients must be 1..10000, not \"%s\"", arg);
        }
        cfg->clients = (unsigned)v;
        return 0;
    case OPT_REQUESTS:
        if (parse_u64(arg, 0, UINT64_C(1) << 40, &cfg->requests) != 0) {
            return bad("bad --requests \"%s\"", arg);
        }
        return 0;
    case OPT_DURATION: {
        char *end;
        errno = 0;
        double d = strtod(arg, &end);
        if (errno != 0 || *end != '\0' || end == arg || !(d > 0) || d > 86400) {
            return bad("--duration must be 0 < SEC <= 86400, not \"%s\"", arg);
        }
        cfg->duration_s = d;
        return 0;
    }
    case OPT_OP:
        if (strcmp(arg, "put") == 0 || strcmp(arg, "set") == 0) {
            cfg->op = LG_PUT;
        } else if (strcmp(arg, "get") == 0) {
            cfg->op = LG_GET;
        } else {
            return bad("--op must be put or get, not \"%s\"", arg);
        }
        return 0;
    case OPT_KEY_SPACE:
        if (parse_u64(arg, 1, UINT64_C(1000000000000), &cfg->key_space) != 0) {
            return bad("--key-space must be 1..10^12, not \"%s\"", arg);
        }
        return 0;
    case OPT_VALUE_SIZE:
        if (parse_u64(arg, 0, LG_VALUE_MAX, &v) != 0) {
            return bad("--value-size must be 0..1048576, not \"%s\"", arg);
        }
        cfg->value_size = (size_t)v;
        return 0;
    case OPT_PIPELINE:
        if (parse_u64(arg, 1, LG_PIPELINE_MAX, &v) != 0) {
            return bad("--pipeline must be 1..1024, not \"%s\"", arg);
        }
        cfg->pipeline = (unsigned)v;
        return 0;
    case OPT_SEED:
        if (parse_u64(arg, 0, UINT64_MAX, &cfg->seed) != 0) {
            return bad("bad --seed \"%s\"", arg);
        }
        return 0;
    case OPT_SERIALIZABLE:
        cfg->serializable = 1;
        return 0;
    case OPT_CHECK:
        cfg->check = 1;
        return 0;
    case OPT_SEQUENTIAL:
        cfg->sequential = 1;
        return 0;
    case OPT_TIMEOUT:
    case OPT_RETRY:
        if (parse_u64(arg, 1, 3600000, &v) != 0) {
            return bad("bad milliseconds \"%s\"", arg);
        }
        *(opt == OPT_TIMEOUT ? &cfg->timeout_ms : &cfg->retry_ms) = (unsigned)v;
        return 0;
    case OPT_DIR:
        cfg->dir = arg;
        return 0;
    case OPT_APPEND:
        cfg->fsync_append = 1;
        return 0;
    case OPT_HELP:
        usage(stdout);
        return 1;
    default:
        usage(stderr);
        return -1;
    }
}

static void print_stats(const struct lg_config *cfg, const struct lg_stats *st)
{
    static const char *const targets[] = {"resp", "etcd", "fsync"};
    uint64_t ops = st->ok + st->misses;
    double rate = st->elapsed_s > 0 ? (double)ops / st->elapsed_s : 0;
    const struct hist *h = &st->hist;
    printf("target=%s op=%s clients=%u pipeline=%u ops=%llu errors=%llu "
           "misses=%llu mismatches=%llu retries=%llu redirects=%llu "
           "reconnects=%llu elapsed_s=%.3f ops_per_s=%.0f p50_us=%.0f "
           "p99_us=%.0f p999_us=%.0f max_us=%.0f\n",
           targets[cfg->target], cfg->op == LG_PUT ? "put" : "get",
           cfg->clients, cfg->pipeline, (unsigned long long)ops,
           (unsigned long long)st->errors, (unsigned long long)st->misses,
           (unsigned long long)st->mismatches, (unsigned long long)st->retries,
           (unsigned long long)st->redirects,
           (unsigned long long)st->reconnects, st->elapsed_s, rate,
           (double)hist_percentile(h, 50) / 1e3,
           (double)hist_percentile(h, 99) / 1e3,
           (double)hist_percentile(h, 99.9) / 1e3, (double)h->max_ns / 1e3);
    fflush(stdout);
}

/* Cross-option checks once every option is known.  0 or -1. */
static int validate(struct lg_config *cfg, int have_target)
{
    if (!have_target) {
        return bad("%s", "--target is required");
    }
    if (cfg->target == LG_TARGET_FSYNC) {
        if (cfg->dir == NULL) {
            return bad("%s", "--target fsync needs --dir");
        }
        if (cfg->requests == 0) {
            return bad("%s", "--target fsync needs --requests > 0");
        }
        cfg->clients = 1;
        return 0;
    }
    if (cfg->n_addrs == 0) {
        return bad("%s", "--addr is required");
    }
    if (cfg->requests == 0 && cfg->duration_s == 0) {
        return bad("%s", "--requests 0 needs --duration");
    }
    if (cfg->check && cfg->op != LG_GET) {
        return bad("%s", "--check applies to --op get");
    }
    if (cfg->serializable && cfg->target != LG_TARGET_ETCD) {
        return bad("%s", "--serializable applies to --target etcd");
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct lg_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.op = LG_PUT;
    cfg.clients = 50;
    cfg.requests = 100000;
    cfg.key_space = 100000;
    cfg.value_size = 3; /* redis-benchmark's default -d */
    cfg.pipeline = 1;
    cfg.seed = 1;
    cfg.timeout_ms = 5000;
    cfg.retry_ms = 10000;
    int have_target = 0, have_requests = 0, opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        have_requests |= opt == OPT_REQUESTS;
        int rv = apply_option(&cfg, opt, optarg, &have_target);
        if (rv != 0) {
            return rv > 0 ? 0 : 2;
        }
    }
    if (optind < argc) {
        return bad("unexpected argument \"%s\"", argv[optind]) != 0 ? 2 : 0;
    }
    if (cfg.duration_s > 0 && !have_requests) {
        cfg.requests = 0; /* --duration alone: as many as fit */
    }
    if (validate(&cfg, have_target) != 0) {
        return 2;
    }
    struct lg_stats stats;
    memset(&stats, 0, sizeof stats);
    char errmsg[256] = "";
    int rv = cfg.target == LG_TARGET_FSYNC
                 ? lg_fsync_run(&cfg, &stats, errmsg, sizeof errmsg)
                 : lg_run(&cfg, &stats, errmsg, sizeof errmsg);
    if (rv != 0) {
        /* What ran before the stop is still worth a line. */
        if (stats.ok + stats.misses + stats.errors > 0) {
            print_stats(&cfg, &stats);
        }
        fprintf(stderr, "craft-loadgen: %s (%s)\n", errmsg, craft_strerror(rv));
        return 1;
    }
    print_stats(&cfg, &stats);
    return stats.errors + stats.mismatches == 0 && stats.ok + stats.misses > 0
               ? 0
               : 1;
}
