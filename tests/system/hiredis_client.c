/*
 * hiredis_client -- a plain hiredis program that writes and reads a craftd
 * cluster through leader changes, as an application on hiredis would:
 *
 *     hiredis_client HOST:PORT[,HOST:PORT...] N PREFIX
 *
 * For i = 0 .. N-1 it sets PREFIX:i to PREFIX-value-i, reads it back, and
 * prints "ok i T" once both succeeded (T: CLOCK_MONOTONIC in ns, which the
 * test compares with the time of its kill); at the end it reads every key again
 * and prints "done N" and "stats moved=M retries=R reconnects=C".  Exit 0
 * only if everything was acknowledged and read back with its value.
 *
 * Every reply is handled as a cluster-aware client must:
 *   -MOVED slot host:port  connect there and resend; the slot must be the
 *                          key's CRC16 slot (checked here)
 *   -CLUSTERDOWN, -UNCERTAIN, -SHUTDOWN, connection errors
 *                          try the next address after a short pause (a
 *                          plain SET or GET may safely run twice)
 * Each command gives up after OP_DEADLINE_MS (the test fails then).
 */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A leader change takes one election timeout (300-600 ms in the tests,
 * 250-500 ms by default) plus a few round trips; 20 s is far beyond. */
#define OP_DEADLINE_MS 20000
#define RETRY_PAUSE_MS 20
#define ADDRS_MAX 16
#define HOST_MAX 64

struct addr {
    char host[HOST_MAX];
    int port;
};

struct client {
    struct addr addrs[ADDRS_MAX];
    int n_addrs;
    int next;           /* index of the address to try after a failure */
    struct addr target; /* where the next connection goes */
    redisContext *ctx;
    unsigned long moved, retries, reconnects;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hiredis_client: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* Redis Cluster's key slot (CRC16/XMODEM, hash tags), to check MOVED. */
static unsigned keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        const char *close =
            memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close != NULL && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    uint32_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint32_t)(uint8_t)key[i] << 8;
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? (crc << 1) ^ 0x1021u : crc << 1;
            crc &= 0xffffu;
        }
    }
    return (unsigned)crc & 16383u;
}

static int parse_addr(const char *s, size_t len, struct addr *out)
{
    const char *colon = memrchr(s, ':', len);
    if (colon == NULL || (size_t)(colon - s) >= HOST_MAX) {
        return -1;
    }
    memcpy(out->host, s, (size_t)(colon - s));
    out->host[colon - s] = '\0';
    out->port = atoi(colon + 1);
    return out->port > 0 && out->port < 65536 ? 0 : -1;
}

static void drop(struct client *c)
{
    if (c->ctx != NULL) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
}

/* Forget the connection and aim at the next configured address. */
static void rotate(struct client *c)
{
    drop(c);
    c->target = c->addrs[c->next];
    c->next = (c->next + 1) % c->n_addrs;
    c->retries++;
    pause_ms(RETRY_PAUSE_MS);
}

static int connect_target(struct client *c)
{
    struct timeval tv = {1, 0};
    c->ctx = redisConnectWithTimeout(c->target.host, c->target.port, tv);
    if (c->ctx == NULL || c->ctx->err) {
        drop(c);
        return -1;
    }
    struct timeval op = {2, 0};
    redisSetTimeout(c->ctx, op);
    c->reconnects++;
    return 0;
}

/* Run one command (argv of argc strings) until it gets a real answer; the
 * returned reply is the caller's.  key names the key, for the MOVED check. */
static redisReply *run(struct client *c, int argc, const char **argv,
                       const char *key)
{
    uint64_t deadline = now_ms() + OP_DEADLINE_MS;
    while (now_ms() < deadline) {
        if (c->ctx == NULL && connect_target(c) != 0) {
            rotate(c);
            continue;
        }
        redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
        if (r == NULL) { /* connection lost or timed out */
            rotate(c);
            continue;
        }
        if (r->type != REDIS_REPLY_ERROR) {
            return r;
        }
        if (strncmp(r->str, "MOVED ", 6) == 0) {
            char *sp = strchr(r->str + 6, ' ');
            unsigned slot = (unsigned)strtoul(r->str + 6, NULL, 10);
            if (sp == NULL ||
                parse_addr(sp + 1, strlen(sp + 1), &c->target) != 0) {
                die("malformed redirect: %s", r->str);
            }
            if (slot != keyslot(key, strlen(key))) {
                die("MOVED slot %u for key %s, expected %u", slot, key,
                    keyslot(key, strlen(key)));
            }
            c->moved++;
            freeReplyObject(r);
            drop(c);
            continue;
        }
        if (strncmp(r->str, "CLUSTERDOWN", 11) == 0 ||
            strncmp(r->str, "UNCERTAIN", 9) == 0 ||
            strncmp(r->str, "SHUTDOWN", 8) == 0) {
            freeReplyObject(r);
            rotate(c);
            continue;
        }
        die("unexpected error reply to %s: %s", argv[0], r->str);
    }
    die("no answer to %s %s within %d ms", argv[0], key, OP_DEADLINE_MS);
    return NULL;
}

static void set_key(struct client *c, const char *key, const char *value)
{
    const char *argv[] = {"SET", key, value};
    redisReply *r = run(c, 3, argv, key);
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0) {
        die("SET %s: unexpected reply type %d", key, r->type);
    }
    freeReplyObject(r);
}

static void check_key(struct client *c, const char *key, const char *value)
{
    const char *argv[] = {"GET", key};
    redisReply *r = run(c, 2, argv, key);
    if (r->type != REDIS_REPLY_STRING || strcmp(r->str, value) != 0) {
        die("GET %s: got type %d '%s', want '%s'", key, r->type,
            r->type == REDIS_REPLY_STRING ? r->str : "", value);
    }
    freeReplyObject(r);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: hiredis_client HOST:PORT[,...] N PREFIX\n");
        return 2;
    }
    struct client c;
    memset(&c, 0, sizeof c);
    for (const char *p = argv[1]; *p != '\0' && c.n_addrs < ADDRS_MAX;) {
        size_t len = strcspn(p, ",");
        if (parse_addr(p, len, &c.addrs[c.n_addrs++]) != 0) {
            die("bad address list %s", argv[1]);
        }
        p += len + (p[len] == ',');
    }
    if (c.n_addrs == 0) {
        die("no address");
    }
    c.target = c.addrs[0];
    c.next = 1 % c.n_addrs;
    long n = atol(argv[2]);
    const char *prefix = argv[3];
    char key[256], value[256];
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s:%ld", prefix, i);
        snprintf(value, sizeof value, "%s-value-%ld", prefix, i);
        set_key(&c, key, value);
        check_key(&c, key, value);
        printf("ok %ld %llu\n", i, (unsigned long long)now_ns());
        fflush(stdout);
    }
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s:%ld", prefix, i);
        snprintf(value, sizeof value, "%s-value-%ld", prefix, i);
        check_key(&c, key, value);
    }
    printf("done %ld\nstats moved=%lu retries=%lu reconnects=%lu\n", n, c.moved,
           c.retries, c.reconnects);
    drop(&c);
    return 0;
}
