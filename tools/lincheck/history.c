/*
 * history.c -- lincheck's history: storage, the text format's parser and
 * printer, and the sequential key-value model.  See lincheck.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lincheck.h"
#include "util/assert.h"

void lin_history_init(struct lin_history *h)
{
    memset(h, 0, sizeof *h);
}

static void value_free(struct lin_value *v)
{
    free(v->p);
    v->p = NULL;
    v->n = 0;
}

void lin_history_close(struct lin_history *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->ops[i].client);
        value_free(&h->ops[i].key);
        value_free(&h->ops[i].arg);
        value_free(&h->ops[i].out);
    }
    free(h->ops);
    lin_history_init(h);
}

static int value_copy(struct lin_value *dst, const struct lin_value *src)
{
    dst->nil = src->nil;
    dst->n = src->nil ? 0 : src->n;
    dst->p = NULL;
    if (dst->n > 0) {
        dst->p = malloc(dst->n);
        if (dst->p == NULL) {
            return -1;
        }
        memcpy(dst->p, src->p, dst->n);
    }
    return 0;
}

int lin_history_add(struct lin_history *h, const struct lin_op *op)
{
    CRAFT_ASSERT(h != NULL && op != NULL);
    if (op->ret < op->call) {
        return -1;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct lin_op *ops = realloc(h->ops, cap * sizeof *ops);
        if (ops == NULL) {
            return -1;
        }
        h->ops = ops;
        h->cap = cap;
    }
    struct lin_op c = *op;
    c.client = strdup(op->client ? op->client : "?");
    int bad = c.client == NULL;
    bad |= value_copy(&c.key, &op->key) != 0;
    bad |= value_copy(&c.arg, &op->arg) != 0;
    bad |= value_copy(&c.out, &op->out) != 0;
    if (bad) {
        free(c.client);
        value_free(&c.key);
        value_free(&c.arg);
        value_free(&c.out);
        return -1;
    }
    h->ops[h->n++] = c;
    return 0;
}

/* ---- the model ---- */

static int parse_ll(const uint8_t *p, size_t n, long long *v)
{
    if (n == 0 || n > 20) {
        return -1;
    }
    char tmp[24];
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long x = strtoll(tmp, &end, 10);
    if (*end != '\0' || errno != 0 || tmp[0] == ' ' || tmp[0] == '+') {
        return -1;
    }
    *v = x;
    return 0;
}

static int value_eq(const struct lin_value *a, const struct lin_value *b)
{
    if (a->nil || b->nil) {
        return a->nil == b->nil;
    }
    return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

int lin_model_step(const struct lin_value *s, const struct lin_op *op,
                   struct lin_value *next)
{
    memset(next, 0, sizeof *next);
    switch (op->kind) {
    case LIN_GET:
        if (op->has_out && !value_eq(s, &op->out)) {
            return 0;
        }
        return value_copy(next, s) == 0 ? 1 : -1;
    case LIN_PUT:
        return value_copy(next, &op->arg) == 0 ? 1 : -1;
    case LIN_DEL:
        next->nil = true;
        return 1;
    case LIN_APPEND: {
        size_t a = s->nil ? 0 : s->n;
        next->n = a + op->arg.n;
        next->p = next->n ? malloc(next->n) : NULL;
        if (next->n && next->p == NULL) {
            return -1;
        }
        if (a) {
            memcpy(next->p, s->p, a);
        }
        if (op->arg.n) {
            memcpy(next->p + a, op->arg.p, op->arg.n);
        }
        return 1;
    }
    case LIN_INCR: {
        long long cur = 0, by = 0;
        if ((!s->nil && parse_ll(s->p, s->n, &cur) != 0) ||
            parse_ll(op->arg.p, op->arg.n, &by) != 0 ||
            (by > 0 && cur > LLONG_MAX - by) ||
            (by < 0 && cur < LLONG_MIN - by)) {
            /* The store answers an error and changes nothing: legal only
             * if the output is unknown. */
            if (op->has_out) {
                return 0;
            }
            return value_copy(next, s) == 0 ? 1 : -1;
        }
        char d[24];
        int n = snprintf(d, sizeof d, "%lld", cur + by);
        struct lin_value v = {false, (uint8_t *)d, (size_t)n};
        if (op->has_out && !value_eq(&v, &op->out)) {
            return 0;
        }
        return value_copy(next, &v) == 0 ? 1 : -1;
    }
    }
    CRAFT_UNREACHABLE();
    return 0;
}

/* ---- the text format ---- */

struct parser {
    const char *p, *end;
    size_t line;
    char *err;
    size_t err_len;
};

static int perr(struct parser *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int perr(struct parser *ps, const char *fmt, ...)
{
    int n = snprintf(ps->err, ps->err_len, "line %zu: ", ps->line);
    if (n >= 0 && (size_t)n < ps->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* The next token of the current line into *v (malloc'd bytes).  Returns 1
 * for a token, 0 at the end of the line, -1 on error.  *bare tells whether
 * it was unquoted. */
static int token(struct parser *ps, const char *eol, struct lin_value *v,
                 int *bare)
{
    while (ps->p < eol && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r')) {
        ps->p++;
    }
    memset(v, 0, sizeof *v);
    if (ps->p >= eol) {
        return 0;
    }
    const char *s = ps->p;
    *bare = *s != '"';
    if (*bare) {
        while (ps->p < eol && *ps->p != ' ' && *ps->p != '\t' &&
               *ps->p != '\r') {
            ps->p++;
        }
        size_t n = (size_t)(ps->p - s);
        if (n == 3 && memcmp(s, "nil", 3) == 0) {
            v->nil = true;
            return 1;
        }
        v->p = malloc(n);
        if (v->p == NULL) {
            return perr(ps, "out of memory");
        }
        memcpy(v->p, s, n);
        v->n = n;
        return 1;
    }
    v->p = malloc((size_t)(eol - s));
    if (v->p == NULL) {
        return perr(ps, "out of memory");
    }
    for (ps->p = s + 1; ps->p < eol && *ps->p != '"'; ps->p++) {
        char c = *ps->p;
        if (c == '\\') {
            if (++ps->p >= eol) {
                break;
            }
            c = *ps->p;
            if (c == 'n') {
                c = '\n';
            } else if (c == 'r') {
                c = '\r';
            } else if (c == 't') {
                c = '\t';
            } else if (c == 'x') {
                if (eol - ps->p < 3 || hexv(ps->p[1]) < 0 ||
                    hexv(ps->p[2]) < 0) {
                    value_free(v);
                    return perr(ps, "bad \\x escape");
                }
                c = (char)(hexv(ps->p[1]) * 16 + hexv(ps->p[2]));
                ps->p += 2;
            } else if (c != '\\' && c != '"') {
                value_free(v);
                return perr(ps, "unknown escape \\%c", c);
            }
        }
        v->p[v->n++] = (uint8_t)c;
    }
    if (ps->p >= eol) {
        value_free(v);
        return perr(ps, "unterminated quoted string");
    }
    ps->p++;
    return 1;
}

static int parse_time(struct parser *ps, const struct lin_value *t, int bare,
                      uint64_t *out, int allow_unknown)
{
    if (allow_unknown && bare && t->n == 1 && t->p[0] == '?') {
        *out = LIN_TIME_UNKNOWN;
        return 0;
    }
    if (!bare || t->nil || t->n == 0 || t->n > 19) {
        return perr(ps, "bad time");
    }
    uint64_t v = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->p[i] < '0' || t->p[i] > '9') {
            return perr(ps, "bad time '%.*s'", (int)t->n, (const char *)t->p);
        }
        v = v * 10 + (uint64_t)(t->p[i] - '0');
    }
    *out = v;
    return 0;
}

static int parse_kind(const struct lin_value *t, enum lin_kind *k)
{
    static const char *names[] = {"get", "put", "append", "incr", "del"};
    for (int i = 0; i < 5; i++) {
        if (!t->nil && t->n == strlen(names[i]) &&
            memcmp(t->p, names[i], t->n) == 0) {
            *k = (enum lin_kind)i;
            return 0;
        }
    }
    return -1;
}

/* One operation line (without its newline) into h. */
static int parse_line(struct parser *ps, const char *eol, struct lin_history *h)
{
    struct lin_value t[9];
    int bare[9];
    int n = 0, rv = 0;
    memset(t, 0, sizeof t);
    for (;;) {
        if (n == 9) {
            rv = perr(ps, "too many fields");
            goto out;
        }
        int k = token(ps, eol, &t[n], &bare[n]);
        if (k < 0) {
            rv = -1;
            goto out;
        }
        if (k == 0) {
            break;
        }
        n++;
    }
    if (n == 0 || (bare[0] && t[0].n > 0 && t[0].p[0] == '#')) {
        goto out;
    }
    struct lin_op op;
    memset(&op, 0, sizeof op);
    op.line = ps->line;
    if (n < 5) {
        rv = perr(ps, "expected: client call return op key [arg] [-> out]");
        goto out;
    }
    if (parse_time(ps, &t[1], bare[1], &op.call, 0) != 0 ||
        parse_time(ps, &t[2], bare[2], &op.ret, 1) != 0) {
        rv = -1;
        goto out;
    }
    if (op.ret < op.call) {
        rv = perr(ps, "return time before call time");
        goto out;
    }
    if (parse_kind(&t[3], &op.kind) != 0) {
        rv = perr(ps, "unknown op (get, put, append, incr, del)");
        goto out;
    }
    if (t[4].nil) {
        rv = perr(ps, "a key cannot be nil");
        goto out;
    }
    int want_arg =
        op.kind == LIN_PUT || op.kind == LIN_APPEND || op.kind == LIN_INCR;
    int i = 5;
    if (want_arg) {
        if (n <= i || t[i].nil ||
            (bare[i] && t[i].n == 2 && memcmp(t[i].p, "->", 2) == 0)) {
            rv = perr(ps, "missing argument");
            goto out;
        }
        op.arg = t[i++];
    }
    if (i < n) {
        if (!bare[i] || t[i].n != 2 || memcmp(t[i].p, "->", 2) != 0 ||
            i + 2 != n) {
            rv = perr(ps, "expected '-> <output>' at the end");
            goto out;
        }
        if (op.ret == LIN_TIME_UNKNOWN) {
            rv = perr(ps, "an operation with unknown outcome has no output");
            goto out;
        }
        op.out = t[i + 1];
        op.has_out = true;
    }
    if (op.kind == LIN_GET && !op.has_out && op.ret != LIN_TIME_UNKNOWN) {
        rv = perr(ps, "a completed get needs '-> <output>'");
        goto out;
    }
    /* client and key must be text for reports: keep them as C strings. */
    char *client = malloc(t[0].n + 1);
    if (client == NULL) {
        rv = perr(ps, "out of memory");
        goto out;
    }
    if (t[0].n > 0) {
        memcpy(client, t[0].p, t[0].n);
    }
    client[t[0].n] = '\0';
    op.client = client;
    op.key = t[4];
    if (lin_history_add(h, &op) != 0) {
        rv = perr(ps, "out of memory");
    }
    free(client);
out:
    for (int k = 0; k < n; k++) {
        value_free(&t[k]);
    }
    return rv;
}

int lin_history_parse(struct lin_history *h, const char *text, size_t len,
                      char *err, size_t err_len)
{
    struct parser ps = {text, text + len, 0, err, err_len};
    while (ps.p < ps.end) {
        ps.line++;
        const char *eol = memchr(ps.p, '\n', (size_t)(ps.end - ps.p));
        if (eol == NULL) {
            eol = ps.end;
        }
        if ((size_t)(eol - ps.p) > LIN_LINE_MAX) {
            return perr(&ps, "line longer than %u bytes", LIN_LINE_MAX);
        }
        if (memchr(ps.p, '\0', (size_t)(eol - ps.p)) != NULL) {
            return perr(&ps, "NUL byte (write binary data as \\x00)");
        }
        if (parse_line(&ps, eol, h) != 0) {
            return -1;
        }
        ps.p = eol < ps.end ? eol + 1 : eol;
    }
    return 0;
}

static void print_value(FILE *f, const struct lin_value *v)
{
    if (v->nil) {
        fputs("nil", f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < v->n; i++) {
        uint8_t c = v->p[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c >= 32 && c < 127) {
            fputc(c, f);
        } else {
            fprintf(f, "\\x%02x", c);
        }
    }
    fputc('"', f);
}

void lin__print_op(FILE *f, const struct lin_op *op);

void lin__print_op(FILE *f, const struct lin_op *op)
{
    static const char *names[] = {"get", "put", "append", "incr", "del"};
    fprintf(f, "%s %" PRIu64 " ", op->client, op->call);
    if (op->ret == LIN_TIME_UNKNOWN) {
        fputs("?", f);
    } else {
        fprintf(f, "%" PRIu64, op->ret);
    }
    fprintf(f, " %s ", names[op->kind]);
    print_value(f, &op->key);
    if (op->kind == LIN_PUT || op->kind == LIN_APPEND || op->kind == LIN_INCR) {
        fputc(' ', f);
        print_value(f, &op->arg);
    }
    if (op->has_out) {
        fputs(" -> ", f);
        print_value(f, &op->out);
    }
}

void lin_history_print(FILE *f, const struct lin_history *h)
{
    for (size_t i = 0; i < h->n; i++) {
        lin__print_op(f, &h->ops[i]);
        fputc('\n', f);
    }
}
