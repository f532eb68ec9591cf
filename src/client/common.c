/*
 * The retry policy and the bookkeeping shared by both clients (see
 * client_int.h).  No I/O here.
 *
 * Invariants:
 *   1. A request is sent again after an unknown outcome only if it is
 *      idempotent or wrapped in a session (client__may_resend).
 *   2. A wrapped request keeps its (session, seq) across every resend, so
 *      craftd applies it at most once.
 *   3. The address list is never empty and `cur` always indexes it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client_int.h"
#include "util/assert.h"

void client__errf(char *buf, size_t len, const char *fmt, ...)
{
    if (buf == NULL || len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

int client__addr_parse(const char *s, struct client_addr *out)
{
    CRAFT_ASSERT(s != NULL);
    CRAFT_ASSERT(out != NULL);
    size_t n = strlen(s);
    const char *colon = strrchr(s, ':');
    if (n == 0 || n > CRAFT_CLIENT_ADDR_LEN_MAX || colon == NULL ||
        colon == s) {
        return CRAFT_EINVAL;
    }
    const char *p = colon + 1;
    if (*p == '\0') {
        return CRAFT_EINVAL;
    }
    long port = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || port > 65535) {
            return CRAFT_EINVAL;
        }
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        return CRAFT_EINVAL;
    }
    size_t hlen = (size_t)(colon - s);
    memcpy(out->host, s, hlen);
    out->host[hlen] = '\0';
    out->port = (int)port;
    memcpy(out->text, s, n + 1);
    return 0;
}

int client__options_check(const struct craft_client_options *o, char *errmsg,
                          size_t errmsg_len)
{
    CRAFT_ASSERT(o != NULL);
    if (o->connect_timeout_ms == 0 || o->request_timeout_ms == 0 ||
        o->total_timeout_ms == 0) {
        client__errf(errmsg, errmsg_len, "timeouts must be positive");
        return CRAFT_EINVAL;
    }
    if (o->password != NULL && strlen(o->password) > 1024) {
        client__errf(errmsg, errmsg_len, "password longer than 1024 bytes");
        return CRAFT_EINVAL;
    }
    return 0;
}

int client__addrs_init(struct client_addrs *addrs,
                       const struct craft_client_options *o, char *errmsg,
                       size_t errmsg_len)
{
    CRAFT_ASSERT(addrs != NULL);
    CRAFT_ASSERT(o != NULL);
    memset(addrs, 0, sizeof *addrs);
    if (o->n_addrs == 0 || o->addrs == NULL) {
        client__errf(errmsg, errmsg_len, "no member address given");
        return CRAFT_EINVAL;
    }
    if (o->n_addrs > CRAFT_CLIENT_ADDRS_MAX) {
        client__errf(errmsg, errmsg_len,
                     "%zu addresses given; at most %d are supported",
                     o->n_addrs, CRAFT_CLIENT_ADDRS_MAX);
        return CRAFT_EINVAL;
    }
    for (size_t i = 0; i < o->n_addrs; i++) {
        const char *s = o->addrs[i] != NULL ? o->addrs[i] : "";
        if (client__addr_parse(s, &addrs->a[addrs->n]) != 0) {
            client__errf(errmsg, errmsg_len,
                         "bad address '%s' (expected HOST:PORT)", s);
            return CRAFT_EINVAL;
        }
        addrs->n++;
    }
    CRAFT_ASSERT(addrs->n >= 1);
    return 0;
}

int client__addrs_set_leader(struct client_addrs *addrs, const char *text,
                             size_t len)
{
    CRAFT_ASSERT(addrs->n >= 1);
    char buf[CRAFT_CLIENT_ADDR_LEN_MAX + 1];
    struct client_addr a;
    if (len > CRAFT_CLIENT_ADDR_LEN_MAX) {
        return CRAFT_EINVAL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (client__addr_parse(buf, &a) != 0) {
        return CRAFT_EINVAL;
    }
    size_t i;
    for (i = 0; i < addrs->n; i++) {
        if (strcmp(addrs->a[i].text, a.text) == 0) {
            break;
        }
    }
    if (i == addrs->n) {
        if (addrs->n < CRAFT_CLIENT_ADDRS_MAX) {
            addrs->n++;
        } else {
            /* Full: overwrite the last slot, so the given ones stay. */
            i = addrs->n - 1;
        }
        addrs->a[i] = a;
    }
    addrs->cur = i;
    addrs->leader_known = true;
    CRAFT_ASSERT(addrs->cur < addrs->n);
    return 0;
}

void client__addrs_next(struct client_addrs *addrs)
{
    CRAFT_ASSERT(addrs->n >= 1);
    addrs->cur = (addrs->cur + 1) % addrs->n;
    addrs->leader_known = false;
}

int client__req_init(struct client_req *req, int argc, const char *const *argv,
                     const size_t *lens)
{
    CRAFT_ASSERT(req != NULL);
    memset(req, 0, sizeof *req);
    if (argc < 1 || argv == NULL || argc > (1 << 20)) {
        return CRAFT_EINVAL;
    }
    size_t slots = (size_t)argc + CLIENT_ENVELOPE_ARGS;
    req->argv = calloc(slots, sizeof *req->argv);
    req->lens = calloc(slots, sizeof *req->lens);
    if (req->argv == NULL || req->lens == NULL) {
        goto err_nomem;
    }
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL) {
            client__req_close(req);
            return CRAFT_EINVAL;
        }
        size_t n = lens != NULL ? lens[i] : strlen(argv[i]);
        char *copy = malloc(n + 1);
        if (copy == NULL) {
            goto err_nomem;
        }
        memcpy(copy, argv[i], n);
        copy[n] = '\0';
        req->argv[CLIENT_ENVELOPE_ARGS + i] = copy;
        req->lens[CLIENT_ENVELOPE_ARGS + i] = n;
        req->argc = i + 1;
    }
    req->kind = client__kind(argv[0], req->lens[CLIENT_ENVELOPE_ARGS]);
    CRAFT_ASSERT(req->argc == argc);
    return 0;

err_nomem:
    client__req_close(req);
    return CRAFT_ENOMEM;
}

void client__req_close(struct client_req *req)
{
    if (req->argv != NULL) {
        for (int i = 0; i < req->argc; i++) {
            free(req->argv[CLIENT_ENVELOPE_ARGS + i]);
        }
    }
    free(req->argv);
    free(req->lens);
    memset(req, 0, sizeof *req);
}

void client__req_wrap(struct client_req *req, uint64_t id, uint64_t seq,
                      uint64_t first_unacked)
{
    CRAFT_ASSERT(req->kind == CLIENT_WRITE);
    CRAFT_ASSERT(first_unacked >= 1 && first_unacked <= seq);
    static const char exec[] = "CRAFT.EXEC";
    uint64_t v[3] = {id, seq, first_unacked};
    req->argv[0] = (char *)exec;
    req->lens[0] = sizeof exec - 1;
    for (int i = 0; i < 3; i++) {
        int n = snprintf(req->env[i], sizeof req->env[i], "%llu",
                         (unsigned long long)v[i]);
        CRAFT_ASSERT(n > 0 && (size_t)n < sizeof req->env[i]);
        req->argv[1 + i] = req->env[i];
        req->lens[1 + i] = (size_t)n;
    }
    req->wrapped = true;
    req->seq = seq;
}

void client__req_unwrap(struct client_req *req)
{
    req->wrapped = false;
    req->seq = 0;
}

int client__req_argc(const struct client_req *req)
{
    return req->argc + (req->wrapped ? CLIENT_ENVELOPE_ARGS : 0);
}

const char **client__req_argv(const struct client_req *req)
{
    return (const char **)req->argv + (req->wrapped ? 0 : CLIENT_ENVELOPE_ARGS);
}

const size_t *client__req_lens(const struct client_req *req)
{
    return req->lens + (req->wrapped ? 0 : CLIENT_ENVELOPE_ARGS);
}

/* Commands that change nothing, or only this connection, or that carry
 * their own exactly-once envelope: safe to send twice. */
static const char *const idempotent_cmds[] = {
    "GET",      "MGET",  "EXISTS", "STRLEN", "DBSIZE",        "TYPE",
    "GETRANGE", "TTL",   "PTTL",   "KEYS",   "SCAN",          "PING",
    "ECHO",     "INFO",  "SELECT", "AUTH",   "COMMAND",       "CONFIG",
    "CLIENT",   "HELLO", "QUIT",   "TIME",   "CRAFT.SESSION", "CRAFT.EXEC",
};

/* Commands whose meaning depends on the connection they arrive on. */
static const char *const unsupported_cmds[] = {
    "MULTI",     "EXEC",       "DISCARD",     "WATCH",   "UNWATCH",
    "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "MONITOR", "PUNSUBSCRIBE",
    "SYNC",      "PSYNC",      "SSUBSCRIBE",
};

static bool name_in(const char *name, size_t len, const char *const *list,
                    size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(list[i]) == len && strncasecmp(list[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

enum client_kind client__kind(const char *name, size_t len)
{
    CRAFT_ASSERT(name != NULL);
    if (name_in(name, len, idempotent_cmds,
                sizeof idempotent_cmds / sizeof idempotent_cmds[0])) {
        return CLIENT_IDEMPOTENT;
    }
    if (name_in(name, len, unsupported_cmds,
                sizeof unsupported_cmds / sizeof unsupported_cmds[0])) {
        return CLIENT_UNSUPPORTED;
    }
    return CLIENT_WRITE;
}

static bool starts_with(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(s, word, n) == 0 && (len == n || s[n] == ' ');
}

enum client_verdict client__verdict(const redisReply *r, const char **addr,
                                    size_t *addr_len)
{
    CRAFT_ASSERT(r != NULL);
    if (r->type != REDIS_REPLY_ERROR || r->str == NULL) {
        return CLIENT_DONE;
    }
    const char *s = r->str;
    size_t len = r->len;
    if (starts_with(s, len, "MOVED")) {
        /* "MOVED <slot> HOST:PORT" */
        const char *sp = memchr(s + 6, ' ', len > 6 ? len - 6 : 0);
        if (len <= 6 || sp == NULL || sp + 1 >= s + len) {
            return CLIENT_DONE; /* malformed: show it to the caller */
        }
        *addr = sp + 1;
        *addr_len = (size_t)(s + len - (sp + 1));
        return CLIENT_MOVED;
    }
    if (starts_with(s, len, "CLUSTERDOWN") || starts_with(s, len, "SHUTDOWN") ||
        starts_with(s, len, "TRYAGAIN")) {
        return CLIENT_NOT_RUN;
    }
    if (starts_with(s, len, "UNCERTAIN")) {
        return CLIENT_UNCERTAIN;
    }
    if (starts_with(s, len, "NOSESSION")) {
        return CLIENT_NOSESSION;
    }
    if (starts_with(s, len, "NOAUTH") || starts_with(s, len, "WRONGPASS")) {
        return CLIENT_AUTH;
    }
    return CLIENT_DONE;
}

bool client__may_resend(const struct client_req *req)
{
    switch (req->kind) {
    case CLIENT_IDEMPOTENT:
        return true;
    case CLIENT_WRITE:
        return req->wrapped;
    case CLIENT_UNSUPPORTED:
        return false;
    }
    CRAFT_UNREACHABLE();
    return false;
}

unsigned client__backoff_ms(unsigned fails)
{
    unsigned ms = CLIENT_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < fails && ms < CLIENT_BACKOFF_MAX_MS; i++) {
        ms *= 2;
    }
    if (ms > CLIENT_BACKOFF_MAX_MS) {
        ms = CLIENT_BACKOFF_MAX_MS;
    }
    CRAFT_ASSERT(ms >= CLIENT_BACKOFF_MIN_MS);
    return ms;
}

static bool read_len(const char **p, const char *end, char lead, size_t *out)
{
    if (*p >= end || **p != lead) {
        return false;
    }
    (*p)++;
    size_t v = 0;
    const char *start = *p;
    while (*p < end && **p >= '0' && **p <= '9') {
        v = v * 10 + (size_t)(**p - '0');
        (*p)++;
    }
    if (*p == start || end - *p < 2 || (*p)[0] != '\r' || (*p)[1] != '\n') {
        return false;
    }
    *p += 2;
    *out = v;
    return true;
}

int client__split_formatted(const char *cmd, size_t len, int *argc,
                            const char ***argv, size_t **lens)
{
    const char *p = cmd;
    const char *end = cmd + len;
    size_t n;
    if (!read_len(&p, end, '*', &n) || n < 1 || n > (1u << 20)) {
        return CRAFT_EINVAL;
    }
    const char **av = calloc(n, sizeof *av);
    size_t *al = calloc(n, sizeof *al);
    if (av == NULL || al == NULL) {
        free(av);
        free(al);
        return CRAFT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!read_len(&p, end, '$', &l) || (size_t)(end - p) < l + 2) {
            free(av);
            free(al);
            return CRAFT_EINVAL;
        }
        av[i] = p;
        al[i] = l;
        p += l + 2;
    }
    *argc = (int)n;
    *argv = av;
    *lens = al;
    return 0;
}
