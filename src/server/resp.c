/*
 * resp.c -- RESP2 request parser and reply writers.  See resp.h for the
 * contract and invariants; the error texts below are Redis 7's, so clients
 * and tools that match on them keep working.
 */
#include "server/resp.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/assert.h"

#define E_MBULK_LEN "ERR Protocol error: invalid multibulk length"
#define E_MBULK_BIG "ERR Protocol error: too big mbulk count string"
#define E_BULK_LEN "ERR Protocol error: invalid bulk length"
#define E_BULK_BIG "ERR Protocol error: too big bulk count string"
#define E_BULK_CRLF "ERR Protocol error: expected CRLF after bulk data"
#define E_INLINE_BIG "ERR Protocol error: too big inline request"
#define E_QUOTES "ERR Protocol error: unbalanced quotes in request"
#define E_INLINE_ARGS "ERR Protocol error: too many arguments in request"

void resp_parser_init(struct resp_parser *p, const struct resp_limits *limits,
                      const struct craft_alloc *alloc)
{
    CRAFT_ASSERT(p != NULL);
    memset(p, 0, sizeof *p);
    if (limits != NULL) {
        p->limits = *limits;
    } else {
        p->limits.bulk_max = RESP_BULK_MAX;
        p->limits.args_max = RESP_ARGS_MAX;
        p->limits.inline_max = RESP_INLINE_MAX;
    }
    CRAFT_ASSERT(p->limits.args_max >= 1);
    CRAFT_ASSERT(p->limits.inline_max >= 16);
    p->alloc = alloc;
    p->mb_left = -1;
    p->bulk_len = -1;
}

void resp_parser_close(struct resp_parser *p)
{
    CRAFT_ASSERT(p != NULL);
    craft_free(p->alloc, p->offs);
    craft_free(p->alloc, p->lens);
    craft_free(p->alloc, (void *)p->argv);
    craft_free(p->alloc, p->scratch);
    p->offs = NULL;
    p->lens = NULL;
    p->argv = NULL;
    p->scratch = NULL;
    p->slots = 0;
    p->scratch_cap = 0;
}

int resp_strtoll(const uint8_t *s, size_t n, long long *out)
{
    CRAFT_ASSERT(out != NULL);
    if (n == 0 || n > 20) {
        return -1;
    }
    size_t i = 0;
    int neg = 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1) {
            return -1;
        }
    }
    if (s[i] == '0') {
        /* Only a lone "0"; Redis rejects "-0" and leading zeros. */
        if (n == 1) {
            *out = 0;
            return 0;
        }
        return -1;
    }
    unsigned long long v = 0;
    /* Up to 19 digits cannot overflow 64 bits: check only beyond (every
     * length in a request header is parsed here). */
    bool check = n - i > 19;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (check && v > (ULLONG_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1) {
            return -1;
        }
        *out =
            v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX) {
            return -1;
        }
        *out = (long long)v;
    }
    return 0;
}

static int fail(struct resp_parser *p, const char *msg)
{
    p->err = msg;
    return RESP_EPROTO;
}

/* Make room for one more argument slot, doubling.  Growth follows the
 * arguments that actually arrive, never the count the peer announced. */
static int grow_slots(struct resp_parser *p, size_t need)
{
    if (need <= p->slots) {
        return 0;
    }
    size_t n = p->slots ? p->slots : 8;
    while (n < need) {
        n *= 2;
    }
    size_t *offs = craft_realloc(p->alloc, p->offs, n * sizeof *offs);
    if (offs == NULL) {
        return CRAFT_ENOMEM;
    }
    p->offs = offs;
    size_t *lens = craft_realloc(p->alloc, p->lens, n * sizeof *lens);
    if (lens == NULL) {
        return CRAFT_ENOMEM;
    }
    p->lens = lens;
    const uint8_t **argv =
        craft_realloc(p->alloc, (void *)p->argv, n * sizeof *argv);
    if (argv == NULL) {
        return CRAFT_ENOMEM;
    }
    p->argv = argv;
    p->slots = n;
    return 0;
}

/* Find the CR of a "<c><number>\r\n" header line starting at p->pos.
 * Returns RESP_OK with *cr set, RESP_NEED_MORE, or RESP_EPROTO. */
static int header_line(struct resp_parser *p, const uint8_t *buf, size_t len,
                       const char *too_big, size_t *cr)
{
    const uint8_t *r = memchr(buf + p->pos, '\r', len - p->pos);
    if (r == NULL) {
        if (len - p->pos > p->limits.inline_max) {
            return fail(p, too_big);
        }
        return RESP_NEED_MORE;
    }
    size_t at = (size_t)(r - buf);
    if (at - p->pos > p->limits.inline_max) {
        return fail(p, too_big);
    }
    if (at + 1 >= len) {
        return RESP_NEED_MORE;
    }
    *cr = at;
    return RESP_OK;
}

static int parse_multibulk(struct resp_parser *p, const uint8_t *buf,
                           size_t len)
{
    size_t cr;
    if (p->mb_left < 0) {
        int rv = header_line(p, buf, len, E_MBULK_BIG, &cr);
        if (rv != RESP_OK) {
            return rv;
        }
        long long n;
        if (buf[cr + 1] != '\n' ||
            resp_strtoll(buf + p->pos + 1, cr - p->pos - 1, &n) != 0 ||
            n > (long long)p->limits.args_max) {
            return fail(p, E_MBULK_LEN);
        }
        p->pos = cr + 2;
        p->mb_left = n > 0 ? n : 0;
    }
    while (p->mb_left > 0) {
        if (p->bulk_len < 0) {
            int rv = header_line(p, buf, len, E_BULK_BIG, &cr);
            if (rv != RESP_OK) {
                return rv;
            }
            if (buf[p->pos] != '$') {
                snprintf(p->err_buf, sizeof p->err_buf,
                         "ERR Protocol error: expected '$', got '%c'",
                         buf[p->pos] >= 32 && buf[p->pos] < 127 ? buf[p->pos]
                                                                : '?');
                return fail(p, p->err_buf);
            }
            long long n;
            if (buf[cr + 1] != '\n' ||
                resp_strtoll(buf + p->pos + 1, cr - p->pos - 1, &n) != 0 ||
                n < 0 || (unsigned long long)n > p->limits.bulk_max) {
                return fail(p, E_BULK_LEN);
            }
            rv = grow_slots(p, p->argc + 1);
            if (rv != 0) {
                return rv;
            }
            p->pos = cr + 2;
            p->bulk_len = n;
        }
        size_t blen = (size_t)p->bulk_len;
        if (len - p->pos < blen + 2) {
            return RESP_NEED_MORE;
        }
        if (buf[p->pos + blen] != '\r' || buf[p->pos + blen + 1] != '\n') {
            return fail(p, E_BULK_CRLF);
        }
        p->offs[p->argc] = p->pos;
        p->lens[p->argc] = blen;
        p->argc++;
        p->pos += blen + 2;
        p->bulk_len = -1;
        p->mb_left--;
    }
    for (size_t i = 0; i < p->argc; i++) {
        p->argv[i] = buf + p->offs[i];
    }
    return RESP_OK;
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' ||
           c == '\f';
}

static int hex_val(uint8_t c)
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

/* One quoted or bare word starting at s[*i] (not a space), unescaped into
 * out.  Mirrors Redis's sdssplitargs(), which treats a NUL as the end of
 * the line.  Returns the unescaped length, or -1 for unbalanced quotes. */
static long split_word(const uint8_t *s, size_t n, size_t *i, uint8_t *out)
{
    size_t k = *i, o = 0;
    int dq = 0, sq = 0;
    for (;;) {
        uint8_t c = k < n ? s[k] : 0;
        uint8_t c1 = k + 1 < n ? s[k + 1] : 0;
        if (dq) {
            if (c == 0) {
                return -1;
            }
            if (c == '\\' && c1 == 'x' && k + 3 < n && hex_val(s[k + 2]) >= 0 &&
                hex_val(s[k + 3]) >= 0) {
                out[o++] =
                    (uint8_t)(hex_val(s[k + 2]) * 16 + hex_val(s[k + 3]));
                k += 4;
            } else if (c == '\\' && c1 != 0) {
                static const char from[] = "nrtba", to[] = "\n\r\t\b\a";
                const char *m = strchr(from, c1);
                out[o++] = m ? (uint8_t)to[m - from] : c1;
                k += 2;
            } else if (c == '"') {
                /* The closing quote must end the word. */
                if (c1 != 0 && !is_space(c1)) {
                    return -1;
                }
                k++;
                break;
            } else {
                out[o++] = c;
                k++;
            }
        } else if (sq) {
            if (c == 0) {
                return -1;
            }
            if (c == '\\' && c1 == '\'') {
                out[o++] = '\'';
                k += 2;
            } else if (c == '\'') {
                if (c1 != 0 && !is_space(c1)) {
                    return -1;
                }
                k++;
                break;
            } else {
                out[o++] = c;
                k++;
            }
        } else if (c == 0 || is_space(c)) {
            break;
        } else if (c == '"') {
            dq = 1;
            k++;
        } else if (c == '\'') {
            sq = 1;
            k++;
        } else {
            out[o++] = c;
            k++;
        }
    }
    *i = k;
    return (long)o;
}

static int parse_inline(struct resp_parser *p, const uint8_t *buf, size_t len)
{
    const uint8_t *nl = memchr(buf + p->pos, '\n', len - p->pos);
    if (nl == NULL) {
        if (len - p->pos > p->limits.inline_max) {
            return fail(p, E_INLINE_BIG);
        }
        return RESP_NEED_MORE;
    }
    size_t end = (size_t)(nl - buf), start = p->pos;
    if (end - start > p->limits.inline_max) {
        return fail(p, E_INLINE_BIG);
    }
    size_t line = end - start;
    if (line > 0 && buf[end - 1] == '\r') {
        line--;
    }
    if (p->scratch_cap < line + 1) {
        uint8_t *s = craft_realloc(p->alloc, p->scratch, line + 1);
        if (s == NULL) {
            return CRAFT_ENOMEM;
        }
        p->scratch = s;
        p->scratch_cap = line + 1;
    }
    const uint8_t *s = buf + start;
    size_t i = 0, used = 0;
    for (;;) {
        while (i < line && is_space(s[i])) {
            i++;
        }
        if (i >= line || s[i] == 0) {
            break;
        }
        long w = split_word(s, line, &i, p->scratch + used);
        if (w < 0) {
            return fail(p, E_QUOTES);
        }
        if (p->argc >= p->limits.args_max) {
            return fail(p, E_INLINE_ARGS);
        }
        int rv = grow_slots(p, p->argc + 1);
        if (rv != 0) {
            return rv;
        }
        p->offs[p->argc] = used;
        p->lens[p->argc] = (size_t)w;
        p->argc++;
        used += (size_t)w;
        CRAFT_DASSERT(used <= line);
    }
    for (size_t k = 0; k < p->argc; k++) {
        p->argv[k] = p->scratch + p->offs[k];
    }
    p->pos = end + 1;
    return RESP_OK;
}

static void reset_command(struct resp_parser *p)
{
    p->kind = 0;
    p->argc = 0;
    p->mb_left = -1;
    p->bulk_len = -1;
}

int resp_parse(struct resp_parser *p, const uint8_t *buf, size_t len,
               struct resp_cmd *cmd, size_t *consumed)
{
    CRAFT_ASSERT(p != NULL);
    CRAFT_ASSERT(cmd != NULL && consumed != NULL);
    *consumed = 0;
    if (p->err != NULL) {
        return RESP_EPROTO;
    }
    CRAFT_ASSERT(p->pos <= len);
    for (;;) {
        if (p->kind == 0) {
            if (p->pos >= len) {
                /* Only skipped empty commands so far: let them go. */
                *consumed = p->pos;
                p->pos = 0;
                return RESP_NEED_MORE;
            }
            p->kind = buf[p->pos] == '*' ? '*' : 'i';
        }
        int rv = p->kind == '*' ? parse_multibulk(p, buf, len)
                                : parse_inline(p, buf, len);
        if (rv != RESP_OK) {
            return rv;
        }
        size_t argc = p->argc;
        reset_command(p);
        if (argc == 0) {
            continue; /* blank line, *0 or *-1: Redis ignores them */
        }
        cmd->argc = argc;
        cmd->argv = p->argv;
        cmd->lens = p->lens;
        *consumed = p->pos;
        p->pos = 0;
        CRAFT_ASSERT(*consumed <= len);
        return RESP_OK;
    }
}

size_t resp_parser_pending(const struct resp_parser *p, size_t len)
{
    CRAFT_ASSERT(p != NULL);
    if (p->kind != '*' || p->bulk_len < 0) {
        return 0;
    }
    size_t need = (size_t)p->bulk_len + 2;
    size_t have = len - p->pos;
    return need > have ? need - have : 0;
}

/* ---- reply writers ---- */

int resp_write_simple(struct buf *b, const char *s)
{
    CRAFT_ASSERT(strpbrk(s, "\r\n") == NULL);
    size_t n = strlen(s);
    int rv = buf_reserve(b, n + 3);
    if (rv != 0) {
        return rv;
    }
    b->data[b->len] = '+';
    memcpy(b->data + b->len + 1, s, n);
    memcpy(b->data + b->len + 1 + n, "\r\n", 2);
    b->len += n + 3;
    return 0;
}

int resp_write_error(struct buf *b, const char *msg)
{
    CRAFT_ASSERT(strpbrk(msg, "\r\n") == NULL);
    size_t n = strlen(msg);
    int rv = buf_reserve(b, n + 3);
    if (rv != 0) {
        return rv;
    }
    b->data[b->len] = '-';
    memcpy(b->data + b->len + 1, msg, n);
    memcpy(b->data + b->len + 1 + n, "\r\n", 2);
    b->len += n + 3;
    return 0;
}

int resp_write_errorf(struct buf *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Formatted arguments may carry user bytes: keep the line intact the
     * way Redis's addReplyErrorFormat() does, trimming CR and LF at the end
     * and turning the others into spaces. */
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\r' || msg[n - 1] == '\n')) {
        msg[--n] = '\0';
    }
    for (char *c = msg; *c; c++) {
        if (*c == '\r' || *c == '\n') {
            *c = ' ';
        }
    }
    return resp_write_error(b, msg);
}

/* type, the decimal digits of v (with a '-' if neg) and CRLF into out
 * (room for 24 bytes); returns the length.  Every reply header goes through
 * here: snprintf was a tenth of the leader's instructions per GET. */
static size_t format_header(char *out, char type, bool neg,
                            unsigned long long v)
{
    char digits[20];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t n = 0;
    out[n++] = type;
    if (neg) {
        out[n++] = '-';
    }
    while (k > 0) {
        out[n++] = digits[--k];
    }
    out[n++] = '\r';
    out[n++] = '\n';
    CRAFT_ASSERT(n <= 24);
    return n;
}

static int write_prefixed(struct buf *b, char type, long long v)
{
    char tmp[24];
    /* The magnitude as unsigned: -LLONG_MIN does not fit a long long. */
    unsigned long long mag =
        v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    size_t n = format_header(tmp, type, v < 0, mag);
    return buf_append(b, tmp, n);
}

int resp_write_int(struct buf *b, long long v)
{
    return write_prefixed(b, ':', v);
}

int resp_write_bulk(struct buf *b, const void *p, size_t n)
{
    char tmp[24];
    size_t h = format_header(tmp, '$', false, n);
    int rv = buf_reserve(b, h + n + 2);
    if (rv != 0) {
        return rv;
    }
    memcpy(b->data + b->len, tmp, h);
    if (n > 0) {
        memcpy(b->data + b->len + h, p, n);
    }
    memcpy(b->data + b->len + h + n, "\r\n", 2);
    b->len += h + n + 2;
    return 0;
}

int resp_write_null(struct buf *b)
{
    return buf_append(b, "$-1\r\n", 5);
}

int resp_write_array(struct buf *b, size_t n)
{
    CRAFT_ASSERT(n <= (size_t)LLONG_MAX);
    return write_prefixed(b, '*', (long long)n);
}

int resp_write_null_array(struct buf *b)
{
    return buf_append(b, "*-1\r\n", 5);
}

int resp_write_command(struct buf *b, size_t argc, const uint8_t *const *argv,
                       const size_t *lens)
{
    size_t mark = b->len;
    int rv = resp_write_array(b, argc);
    for (size_t i = 0; rv == 0 && i < argc; i++) {
        rv = resp_write_bulk(b, argv[i], lens[i]);
    }
    if (rv != 0) {
        b->len = mark;
    }
    return rv;
}

/* ---- reply validation ---- */

static int reply_value(const uint8_t *buf, size_t len, size_t *n, int depth)
{
    if (len == 0) {
        return RESP_NEED_MORE;
    }
    if (depth > RESP_DEPTH_MAX) {
        return RESP_EPROTO;
    }
    const uint8_t *cr = memchr(buf, '\r', len);
    if (cr == NULL) {
        return RESP_NEED_MORE;
    }
    size_t at = (size_t)(cr - buf);
    if (at + 1 >= len) {
        return RESP_NEED_MORE;
    }
    if (buf[at + 1] != '\n') {
        return RESP_EPROTO;
    }
    if (memchr(buf, '\n', at) != NULL) {
        return RESP_EPROTO;
    }
    size_t head = at + 2;
    long long v = 0;
    switch (buf[0]) {
    case '+':
    case '-':
        *n = head;
        return RESP_OK;
    case ':':
        if (resp_strtoll(buf + 1, at - 1, &v) != 0) {
            return RESP_EPROTO;
        }
        *n = head;
        return RESP_OK;
    case '$':
        if (resp_strtoll(buf + 1, at - 1, &v) != 0 || v < -1 ||
            v > (long long)RESP_BULK_MAX) {
            return RESP_EPROTO;
        }
        if (v == -1) {
            *n = head;
            return RESP_OK;
        }
        if (len - head < (size_t)v + 2) {
            return RESP_NEED_MORE;
        }
        if (buf[head + (size_t)v] != '\r' ||
            buf[head + (size_t)v + 1] != '\n') {
            return RESP_EPROTO;
        }
        *n = head + (size_t)v + 2;
        return RESP_OK;
    case '*': {
        if (resp_strtoll(buf + 1, at - 1, &v) != 0 || v < -1) {
            return RESP_EPROTO;
        }
        size_t off = head;
        for (long long i = 0; i < v; i++) {
            size_t m = 0;
            int rv = reply_value(buf + off, len - off, &m, depth + 1);
            if (rv != RESP_OK) {
                return rv;
            }
            off += m;
        }
        *n = off;
        return RESP_OK;
    }
    default:
        return RESP_EPROTO;
    }
}

int resp_reply_len(const uint8_t *buf, size_t len, size_t *n)
{
    CRAFT_ASSERT(n != NULL);
    size_t m = 0;
    int rv = reply_value(buf, len, &m, 0);
    if (rv == RESP_OK) {
        CRAFT_ASSERT(m <= len);
        *n = m;
    }
    return rv;
}
