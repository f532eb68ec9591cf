/*
 * Connection-level command helpers of the front end (see srv_cmds.h).
 *
 * WATCH.  The backend answers a WATCH op with the versions of its keys (a
 * linearizable read); the connection keeps them here until EXEC, which
 * hands the list to the backend inside its op (srv_op.watch), or until
 * UNWATCH, DISCARD or a failed EXEC drops it.
 */
#include "server/srv_cmds.h"

#include <fnmatch.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "server/resp.h"
#include "util/assert.h"
#include "util/obs.h"

#include <uv.h>

void srv__watch_free(struct srv_watch *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        free(w->keys[i]);
    }
    free(w->keys);
    free(w->lens);
    free(w->versions);
    free(w);
}

/* Parse ":<digits>\r\n" at p[*off, n); -1 if it is not there. */
static int parse_int(const uint8_t *p, size_t n, size_t *off, uint64_t *v)
{
    size_t i = *off;
    if (i >= n || p[i] != ':') {
        return -1;
    }
    uint64_t x = 0;
    size_t digits = 0;
    for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        if (x > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    if (digits == 0 || i + 2 > n || p[i] != '\r' || p[i + 1] != '\n') {
        return -1;
    }
    *off = i + 2;
    *v = x;
    return 0;
}

static bool watching(const struct srv_watch *w, const uint8_t *k, size_t n)
{
    for (size_t i = 0; w != NULL && i < w->n; i++) {
        if (w->lens[i] == n && memcmp(w->keys[i], k, n) == 0) {
            return true;
        }
    }
    return false;
}

static int grow(struct srv_watch *w, size_t need)
{
    if (need <= w->cap) {
        return 0;
    }
    size_t cap = w->cap ? w->cap : 8;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t **k = realloc(w->keys, cap * sizeof *k);
    if (k != NULL) {
        w->keys = k;
    }
    size_t *l = realloc(w->lens, cap * sizeof *l);
    if (l != NULL) {
        w->lens = l;
    }
    uint64_t *v = realloc(w->versions, cap * sizeof *v);
    if (v != NULL) {
        w->versions = v;
    }
    if (k == NULL || l == NULL || v == NULL) {
        return CRAFT_ENOMEM;
    }
    w->cap = cap;
    return 0;
}

/* The versions of a WATCH reply, "*<n>\r\n" and n integers, into ver. */
static int parse_versions(const uint8_t *reply, size_t len, size_t n,
                          uint64_t *ver)
{
    char head[32];
    int hn = snprintf(head, sizeof head, "*%zu\r\n", n);
    if (len < (size_t)hn || memcmp(reply, head, (size_t)hn) != 0) {
        return CRAFT_EPROTO;
    }
    size_t off = (size_t)hn;
    for (size_t i = 0; i < n; i++) {
        if (parse_int(reply, len, &off, &ver[i]) != 0) {
            return CRAFT_EPROTO;
        }
    }
    return off == len ? 0 : CRAFT_EPROTO;
}

/* Append the keys not watched yet; on error w is as it was. */
static int add_keys(struct srv_watch *w, size_t argc, uint8_t *const *argv,
                    const size_t *lens, const uint64_t *ver)
{
    size_t n0 = w->n;
    int rv = 0;
    for (size_t i = 1; rv == 0 && i < argc; i++) {
        if (watching(w, argv[i], lens[i])) {
            continue;
        }
        rv = w->n >= SRV_WATCH_MAX ||
                     w->bytes + lens[i] + 12 > SRV_WATCH_BYTES_MAX
                 ? CRAFT_ELIMIT
                 : grow(w, w->n + 1);
        uint8_t *k = rv == 0 ? malloc(lens[i] ? lens[i] : 1) : NULL;
        if (k == NULL) {
            rv = rv != 0 ? rv : CRAFT_ENOMEM;
            break;
        }
        memcpy(k, argv[i], lens[i]);
        w->keys[w->n] = k;
        w->lens[w->n] = lens[i];
        w->versions[w->n] = ver[i - 1];
        w->bytes += lens[i] + 12;
        w->n++;
    }
    while (rv != 0 && w->n > n0) {
        w->n--;
        w->bytes -= w->lens[w->n] + 12;
        free(w->keys[w->n]);
    }
    return rv;
}

int srv__watch_add(struct srv_watch **wp, size_t argc, uint8_t *const *argv,
                   const size_t *lens, const uint8_t *reply, size_t reply_len)
{
    CRAFT_ASSERT(wp != NULL);
    CRAFT_ASSERT(argc >= 2);
    uint64_t stack[16];
    uint64_t *ver = argc - 1 <= 16 ? stack : malloc((argc - 1) * sizeof *ver);
    if (ver == NULL) {
        return CRAFT_ENOMEM;
    }
    int rv = parse_versions(reply, reply_len, argc - 1, ver);
    struct srv_watch *w = *wp;
    if (rv == 0 && w == NULL) {
        w = calloc(1, sizeof *w);
        rv = w == NULL ? CRAFT_ENOMEM : 0;
    }
    if (rv == 0) {
        rv = add_keys(w, argc, argv, lens, ver);
        if (rv != 0 && *wp == NULL) {
            srv__watch_free(w);
        } else if (rv == 0) {
            *wp = w;
        }
    }
    if (ver != stack) {
        free(ver);
    }
    return rv;
}

/* ---- RESP3 ---------------------------------------------------------- */

/* The line at in[off, len) up to CRLF: its length without CRLF, or -1. */
static long line_len(const uint8_t *in, size_t len, size_t off)
{
    const uint8_t *cr = memchr(in + off, '\r', len - off);
    if (cr == NULL || (size_t)(cr - in) + 1 >= len || cr[1] != '\n') {
        return -1;
    }
    return (long)(cr - (in + off));
}

static int convert(struct buf *out, const uint8_t *in, size_t len)
{
    size_t off = 0;
    while (off < len) {
        long l = line_len(in, len, off);
        if (l < 1) {
            return CRAFT_EPROTO;
        }
        size_t n = (size_t)l;
        uint8_t t = in[off];
        bool null = (t == '$' || t == '*') && n == 3 && in[off + 1] == '-' &&
                    in[off + 2] == '1';
        size_t end = off + n + 2;
        if (!null && (t == '$' || t == '=')) {
            /* A blob: its length, then the bytes and CRLF. */
            long long blen;
            if (resp_strtoll(in + off + 1, n - 1, &blen) != 0 || blen < 0 ||
                (unsigned long long)blen > len - end ||
                len - end - (size_t)blen < 2) {
                return CRAFT_EPROTO;
            }
            end += (size_t)blen + 2;
        } else if (!null && (t == 0 || strchr("+-:*%~_,#(>|", t) == NULL)) {
            return CRAFT_EPROTO;
        }
        int rv = null ? buf_append(out, "_\r\n", 3)
                      : buf_append(out, in + off, end - off);
        if (rv != 0) {
            return rv;
        }
        off = end;
    }
    return 0;
}

int srv__resp3_append(struct buf *out, const uint8_t *in, size_t len)
{
    CRAFT_ASSERT(out != NULL);
    CRAFT_ASSERT(in != NULL || len == 0);
    size_t mark = out->len;
    int rv = convert(out, in, len);
    if (rv != 0) {
        out->len = mark;
    }
    return rv;
}

int srv__write_map(struct buf *b, size_t n, bool resp3)
{
    if (!resp3) {
        return resp_write_array(b, 2 * n);
    }
    char h[32];
    int k = snprintf(h, sizeof h, "%%%zu\r\n", n);
    return buf_append(b, h, (size_t)k);
}

int srv__write_null(struct buf *b, bool resp3)
{
    return resp3 ? buf_append(b, "_\r\n", 3) : resp_write_null(b);
}

int srv__write_verbatim(struct buf *b, const void *p, size_t n, bool resp3)
{
    if (!resp3) {
        return resp_write_bulk(b, p, n);
    }
    char h[40];
    int k = snprintf(h, sizeof h, "=%zu\r\ntxt:", n + 4);
    size_t mark = b->len;
    int rv = buf_append(b, h, (size_t)k);
    if (rv == 0) {
        rv = buf_append(b, p, n);
    }
    if (rv == 0) {
        rv = buf_append(b, "\r\n", 2);
    }
    if (rv != 0) {
        b->len = mark;
    }
    return rv;
}

/* ---- CONFIG --------------------------------------------------------- */

/* At most this many parameters over all sources (CONFIG GET's dedup). */
#define CONFIG_PARAMS_MAX 64
#define CONFIG_NAME_MAX 128

struct cparam {
    const struct srv__config_src *src;
    const char *name;
    char value[SRV_CONFIG_VALUE_MAX];
};

static size_t config_list(const struct srv__config_src *srcs, size_t n_srcs,
                          struct cparam *out)
{
    size_t n = 0;
    for (size_t s = 0; s < n_srcs; s++) {
        for (size_t i = 0; n < CONFIG_PARAMS_MAX; i++) {
            const char *name =
                srcs[s].get(srcs[s].data, i, out[n].value, sizeof out[n].value);
            if (name == NULL) {
                break;
            }
            out[n].src = &srcs[s];
            out[n].name = name;
            n++;
        }
    }
    CRAFT_ASSERT(n < CONFIG_PARAMS_MAX);
    return n;
}

static void config_get(const struct srv__config_src *srcs, size_t n_srcs,
                       size_t argc, const uint8_t *const *argv,
                       const size_t *lens, bool resp3, struct buf *b)
{
    struct cparam *ps = malloc(CONFIG_PARAMS_MAX * sizeof *ps);
    if (ps == NULL) {
        resp_write_error(b, "ERR out of memory");
        return;
    }
    size_t n = config_list(srcs, n_srcs, ps);
    bool match[CONFIG_PARAMS_MAX] = {false};
    size_t n_match = 0;
    /* Once every parameter matched, the other patterns change nothing:
     * with few parameters, the work is bounded by them, not by argc. */
    for (size_t a = 2; a < argc && n_match < n; a++) {
        char pat[CONFIG_NAME_MAX];
        if (lens[a] >= sizeof pat || memchr(argv[a], 0, lens[a]) != NULL) {
            continue; /* matches no parameter name */
        }
        memcpy(pat, argv[a], lens[a]);
        pat[lens[a]] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (!match[i] && fnmatch(pat, ps[i].name, FNM_CASEFOLD) == 0) {
                match[i] = true;
                n_match++;
            }
        }
    }
    srv__write_map(b, n_match, resp3);
    for (size_t i = 0; i < n; i++) {
        if (match[i]) {
            resp_write_bulk(b, ps[i].name, strlen(ps[i].name));
            resp_write_bulk(b, ps[i].value, strlen(ps[i].value));
        }
    }
    free(ps);
}

/* CONFIG SET name value [name value ...]: find every name, check every
 * value, then apply them all. */
static void config_set(const struct srv__config_src *srcs, size_t n_srcs,
                       size_t argc, const uint8_t *const *argv,
                       const size_t *lens, struct buf *b)
{
    if (argc < 4 || argc % 2 != 0) {
        resp_write_error(b, "ERR wrong number of arguments for 'config|set' "
                            "command");
        return;
    }
    size_t n = (argc - 2) / 2;
    if (n > CONFIG_PARAMS_MAX) {
        resp_write_error(b, "ERR too many parameters for CONFIG SET");
        return;
    }
    char *names = calloc(n, CONFIG_NAME_MAX);
    char *values = calloc(n, SRV_CONFIG_VALUE_MAX);
    const struct srv__config_src *src[CONFIG_PARAMS_MAX];
    char err[256] = "";
    const char *bad = NULL;
    if (names == NULL || values == NULL) {
        resp_write_error(b, "ERR out of memory");
        goto out;
    }
    for (size_t k = 0; k < n && bad == NULL; k++) {
        const uint8_t *name = argv[2 + 2 * k], *value = argv[3 + 2 * k];
        size_t nl = lens[2 + 2 * k], vl = lens[3 + 2 * k];
        char *nm = names + k * CONFIG_NAME_MAX;
        char *vv = values + k * SRV_CONFIG_VALUE_MAX;
        snprintf(nm, CONFIG_NAME_MAX, "%.*s", (int)(nl > 120 ? 120 : nl),
                 (const char *)name);
        for (char *q = nm; *q; q++) {
            *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
        }
        int rv = CRAFT_ENOENT;
        if (nl < CONFIG_NAME_MAX && memchr(name, 0, nl) == NULL) {
            for (size_t s = 0; s < n_srcs && rv == CRAFT_ENOENT; s++) {
                src[k] = &srcs[s];
                if (vl >= SRV_CONFIG_VALUE_MAX || memchr(value, 0, vl)) {
                    rv = srcs[s].set(srcs[s].data, nm, "", false, err,
                                     sizeof err);
                    if (rv != CRAFT_ENOENT) {
                        rv = CRAFT_EINVAL;
                        snprintf(err, sizeof err, "argument too long");
                    }
                    continue;
                }
                memcpy(vv, value, vl);
                vv[vl] = '\0';
                rv = srcs[s].set(srcs[s].data, nm, vv, false, err, sizeof err);
            }
        }
        if (rv == CRAFT_ENOENT) {
            resp_write_errorf(b,
                              "ERR Unknown option or number of arguments "
                              "for CONFIG SET - '%s'",
                              nm);
            goto out;
        }
        for (size_t j = 0; rv == 0 && j < k; j++) {
            if (strcmp(names + j * CONFIG_NAME_MAX, nm) == 0) {
                rv = CRAFT_EINVAL;
                snprintf(err, sizeof err, "duplicate parameter");
            }
        }
        if (rv != 0) {
            bad = nm;
        }
    }
    if (bad != NULL) {
        resp_write_errorf(b,
                          "ERR CONFIG SET failed (possibly related to "
                          "argument '%s') - %s",
                          bad, err);
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        int rv = src[k]->set(src[k]->data, names + k * CONFIG_NAME_MAX,
                             values + k * SRV_CONFIG_VALUE_MAX, true, err,
                             sizeof err);
        CRAFT_ASSERT(rv == 0); /* checked above */
    }
    resp_write_simple(b, "OK");
out:
    free(names);
    free(values);
}

void srv__config_command(const struct srv__config_src *srcs, size_t n_srcs,
                         size_t argc, const uint8_t *const *argv,
                         const size_t *lens, bool resp3, struct buf *b)
{
    CRAFT_ASSERT(srcs != NULL && b != NULL);
    if (argc < 2) {
        resp_write_error(b, "ERR wrong number of arguments for 'config' "
                            "command");
        return;
    }
    const uint8_t *sub = argv[1];
    size_t n = lens[1];
    if (srv_arg_is(sub, n, "get")) {
        if (argc < 3) {
            resp_write_error(b, "ERR wrong number of arguments for "
                                "'config|get' command");
            return;
        }
        if (argc - 2 > SRV_CONFIG_PATTERNS_MAX) {
            /* Each pattern is matched against every parameter: bound the
             * work of one command on the loop. */
            resp_write_errorf(b, "ERR more than %d patterns for CONFIG GET",
                              SRV_CONFIG_PATTERNS_MAX);
            return;
        }
        config_get(srcs, n_srcs, argc, argv, lens, resp3, b);
    } else if (srv_arg_is(sub, n, "set")) {
        config_set(srcs, n_srcs, argc, argv, lens, b);
    } else if (srv_arg_is(sub, n, "resetstat") && argc == 2) {
        obs_reset_stats();
        resp_write_simple(b, "OK");
    } else if (srv_arg_is(sub, n, "rewrite") && argc == 2) {
        resp_write_error(b, "ERR The server is running without a config "
                            "file");
    } else {
        resp_write_errorf(b, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.",
                          (int)(n > 128 ? 128 : n), (const char *)sub);
    }
}

/* ---- CLIENT --------------------------------------------------------- */

/* Append printf output to b. */
__attribute__((format(printf, 2, 3))) static int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return CRAFT_EINVAL;
    }
    int rv = buf_reserve(b, (size_t)n + 1);
    if (rv != 0) {
        return rv;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int srv__client_line(const struct srv__client_info *ci, struct buf *b)
{
    CRAFT_ASSERT(ci != NULL && b != NULL);
    CRAFT_ASSERT(ci->cmd != NULL && ci->events != NULL);
    return buf_printf(
        b,
        "id=%llu addr=%s laddr=%s fd=%ld name=%s age=%llu idle=%llu "
        "flags=%s db=0 sub=0 psub=0 ssub=0 multi=%lld qbuf=%zu "
        "qbuf-free=%zu obl=%zu oll=0 omem=%zu events=%s cmd=%s "
        "user=default redir=-1 resp=%d\n",
        (unsigned long long)ci->id, ci->addr, ci->laddr, ci->fd,
        ci->name != NULL ? ci->name : "", (unsigned long long)ci->age_s,
        (unsigned long long)ci->idle_s, ci->flags, ci->multi, ci->qbuf,
        ci->qbuf_free, ci->obl, ci->omem, ci->events, ci->cmd, ci->resp);
}

void srv__format_addr(const void *sa, char *out, size_t cap)
{
    const struct sockaddr *a = sa;
    char ip[64] = "?";
    int port = 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *in = sa;
        uv_ip4_name(in, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%d", ip, port);
    } else if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sa;
        uv_ip6_name(in6, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%d", ip, port);
    } else {
        snprintf(out, cap, "?:0");
    }
}
