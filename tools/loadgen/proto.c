/*
 * RESP and etcd-gateway encoding and reply parsing for craft-loadgen.
 *
 * The HTTP parser handles exactly what etcd's gateway (Go net/http) sends:
 * a status line, headers, and a body framed by Content-Length or by
 * chunked transfer encoding.  It re-parses from the start of the buffer on
 * every call; responses are small (a few hundred bytes) and bounded by
 * HTTP_HEAD_MAX + HTTP_BODY_MAX, so the rescan costs less than the state a
 * resumable parser would need.
 */
#include "proto.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "craft/common.h"
#include "server/resp.h"
#include "util/assert.h"
#include "util/rng.h"

void lg_key(uint64_t k, char out[LG_KEY_LEN])
{
    CRAFT_ASSERT(k < UINT64_C(1000000000000));
    memcpy(out, "key:", 4);
    for (int i = LG_KEY_LEN - 1; i >= 4; i--) {
        out[i] = (char)('0' + k % 10);
        k /= 10;
    }
    CRAFT_ASSERT(k == 0);
}

void lg_value(uint64_t seed, uint64_t k, uint8_t *out, size_t n)
{
    struct rng r;
    /* Mix the key into the seed so that neighbouring keys differ at once. */
    rng_init(&r, seed ^ (k * UINT64_C(0xD6E8FEB86659FD93)));
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = rng_next(&r);
        for (size_t j = i; j < n && j < i + 8; j++) {
            out[j] = (uint8_t)('a' + (x & 0xff) % 26);
            x >>= 8;
        }
    }
}

/* ---- RESP ---- */

int lg_resp_request(struct buf *b, enum lg_op op, const char *key,
                    const uint8_t *value, size_t value_len)
{
    static const uint8_t set[] = "SET", get[] = "GET";
    const uint8_t *argv[3];
    size_t lens[3];
    CRAFT_ASSERT(key != NULL);
    switch (op) {
    case LG_PUT:
        CRAFT_ASSERT(value != NULL || value_len == 0);
        argv[0] = set;
        lens[0] = 3;
        argv[2] = value;
        lens[2] = value_len;
        break;
    case LG_GET:
        argv[0] = get;
        lens[0] = 3;
        break;
    }
    argv[1] = (const uint8_t *)key;
    lens[1] = LG_KEY_LEN;
    return resp_write_command(b, op == LG_PUT ? 3 : 2, argv, lens);
}

static int has_prefix(const uint8_t *s, size_t n, const char *prefix)
{
    size_t m = strlen(prefix);
    return n >= m && memcmp(s, prefix, m) == 0;
}

/* "MOVED <slot> <host:port>": copy host:port into addr. */
static int parse_moved(const uint8_t *s, size_t n, char *addr, size_t addr_size)
{
    const uint8_t *sp = memchr(s + 6, ' ', n - 6);
    if (sp == NULL) {
        return CRAFT_EPROTO;
    }
    size_t alen = n - (size_t)(sp + 1 - s);
    if (alen == 0 || alen >= addr_size) {
        return CRAFT_EPROTO;
    }
    memcpy(addr, sp + 1, alen);
    addr[alen] = '\0';
    return 0;
}

static enum lg_reply classify_error(const uint8_t *s, size_t n)
{
    /* Errors that say "nothing was done, or it is safe to do it again":
     * craftd's CLUSTERDOWN (no leader known) and UNCERTAIN (leadership
     * lost; SET and GET are idempotent so a retry is harmless), SHUTDOWN
     * (this node is stopping), and Redis Cluster's TRYAGAIN and LOADING. */
    static const char *const retry[] = {"CLUSTERDOWN", "TRYAGAIN", "UNCERTAIN",
                                        "LOADING", "SHUTDOWN"};
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(retry); i++) {
        if (has_prefix(s, n, retry[i])) {
            return LG_REPLY_RETRY;
        }
    }
    return LG_REPLY_ERROR;
}

int lg_resp_reply(const uint8_t *buf, size_t len, enum lg_op op,
                  enum lg_reply *kind, const uint8_t **data, size_t *data_len,
                  char *addr, size_t addr_size, size_t *consumed)
{
    size_t n = 0;
    int rv = resp_reply_len(buf, len, &n);
    if (rv == RESP_NEED_MORE) {
        return 0;
    }
    if (rv != RESP_OK) {
        return CRAFT_EPROTO;
    }
    CRAFT_ASSERT(n >= 3 && n <= len);
    *data = NULL;
    *data_len = 0;
    *consumed = n;
    switch (buf[0]) {
    case '+':
        *kind = op == LG_PUT ? LG_REPLY_OK : LG_REPLY_BAD_TYPE;
        return 1;
    case '-':
        *data = buf + 1;
        *data_len = n - 3;
        if (has_prefix(buf + 1, n - 3, "MOVED ")) {
            if (parse_moved(buf + 1, n - 3, addr, addr_size) != 0) {
                return CRAFT_EPROTO;
            }
            *kind = LG_REPLY_MOVED;
            return 1;
        }
        *kind = classify_error(buf + 1, n - 3);
        return 1;
    case '$':
        if (op != LG_GET) {
            *kind = LG_REPLY_BAD_TYPE;
        } else if (buf[1] == '-') {
            *kind = LG_REPLY_NIL;
        } else {
            /* "$<len>\r\n<payload>\r\n": the payload ends 2 before n. */
            const uint8_t *p = memchr(buf, '\n', n);
            CRAFT_ASSERT(p != NULL);
            *data = p + 1;
            *data_len = n - (size_t)(p + 1 - buf) - 2;
            *kind = LG_REPLY_OK;
        }
        return 1;
    default:
        *kind = LG_REPLY_BAD_TYPE;
        return 1;
    }
}

/* ---- base64 ---- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t lg_base64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void lg_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        v |= i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0;
        v |= i + 2 < n ? (uint32_t)in[i + 2] : 0;
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    CRAFT_ASSERT(o == lg_base64_len(n));
}

static int b64_digit(char c)
{
    const char *p = c != '\0' ? strchr(b64, c) : NULL;
    return p != NULL ? (int)(p - b64) : -1;
}

long lg_base64_decode(const char *in, size_t n, uint8_t *out, size_t out_size)
{
    if (n % 4 != 0) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int last = i + 4 == n;
        int pad = last && in[i + 3] == '=' ? (in[i + 2] == '=' ? 2 : 1) : 0;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j >= 4 - (size_t)pad ? 0 : b64_digit(in[i + j]);
            if (d < 0) {
                return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        size_t m = 3 - (size_t)pad;
        if (o + m > out_size) {
            return -1;
        }
        for (size_t j = 0; j < m; j++) {
            out[o++] = (uint8_t)(v >> (16 - 8 * j));
        }
    }
    return (long)o;
}

/* ---- etcd requests ---- */

int lg_etcd_request(struct buf *b, const char *host, enum lg_op op,
                    const char *key, const uint8_t *value, size_t value_len,
                    int serializable)
{
    CRAFT_ASSERT(op == LG_GET || value != NULL);
    CRAFT_ASSERT(value_len <= LG_VALUE_MAX);
    char k64[(LG_KEY_LEN + 2) / 3 * 4 + 1];
    lg_base64_encode((const uint8_t *)key, LG_KEY_LEN, k64);
    k64[lg_base64_len(LG_KEY_LEN)] = '\0';
    size_t vlen = op == LG_PUT ? lg_base64_len(value_len) : 0;
    /* The body: {"key":"..","value":".."} or {"key":"..",
     * "serializable":true}; its exact length goes in the header. */
    size_t body_len = strlen("{\"key\":\"\"}") + strlen(k64);
    body_len += op == LG_PUT
                    ? strlen(",\"value\":\"\"") + vlen
                    : (serializable ? strlen(",\"serializable\":true") : 0);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /v3/kv/%s HTTP/1.1\r\nHost: %s\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n{\"key\":\"%s\"",
                      op == LG_PUT ? "put" : "range", host, body_len, k64);
    CRAFT_ASSERT(hn > 0 && (size_t)hn < sizeof head);
    size_t total = (size_t)hn + body_len + 32;
    int rv = buf_reserve(b, total);
    if (rv != 0) {
        return rv;
    }
    size_t start = b->len;
    memcpy(b->data + b->len, head, (size_t)hn);
    b->len += (size_t)hn;
    if (op == LG_PUT) {
        memcpy(b->data + b->len, ",\"value\":\"", 10);
        b->len += 10;
        lg_base64_encode(value, value_len, (char *)b->data + b->len);
        b->len += vlen;
        b->data[b->len++] = '"';
    } else if (serializable) {
        memcpy(b->data + b->len, ",\"serializable\":true", 20);
        b->len += 20;
    }
    b->data[b->len++] = '}';
    CRAFT_ASSERT(b->len <= b->cap);
    /* The body starts after the blank line of the header. */
    const uint8_t *body =
        memmem(b->data + start, b->len - start, "\r\n\r\n", 4);
    CRAFT_ASSERT(body != NULL);
    CRAFT_ASSERT((size_t)(b->data + b->len - body - 4) == body_len);
    return 0;
}

/* ---- HTTP responses ---- */

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *q = memchr(p, '\r', (size_t)(end - p));
    while (q != NULL && q + 1 < end && q[1] != '\n') {
        q = memchr(q + 1, '\r', (size_t)(end - q - 1));
    }
    return q != NULL && q + 1 < end ? q : NULL;
}

/* Parse a decimal (base 10) or hex (base 16) size of at most 9 digits. */
static int parse_size(const uint8_t *p, const uint8_t *end, int base,
                      size_t *out)
{
    size_t v = 0, digits = 0;
    while (p < end && *p == ' ') {
        p++;
    }
    for (; p < end; p++, digits++) {
        int d;
        if (*p >= '0' && *p <= '9') {
            d = *p - '0';
        } else if (base == 16 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') {
            d = (*p | 0x20) - 'a' + 10;
        } else {
            break;
        }
        if (digits == 9) {
            return -1;
        }
        v = v * (size_t)base + (size_t)d;
    }
    /* Allow trailing spaces, and chunk extensions after ';'. */
    while (p < end && *p == ' ') {
        p++;
    }
    if (digits == 0 || (p < end && !(base == 16 && *p == ';'))) {
        return -1;
    }
    *out = v;
    return 0;
}

struct http_head {
    int status;
    int close;
    int chunked;
    int has_length;
    size_t length;
};

static int header_is(const uint8_t *p, size_t n, const char *name,
                     const uint8_t **val, size_t *val_len)
{
    size_t m = strlen(name);
    if (n <= m || p[m] != ':' || strncasecmp((const char *)p, name, m) != 0) {
        return 0;
    }
    p += m + 1;
    n -= m + 1;
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    *val = p;
    *val_len = n;
    return 1;
}

static int parse_head(const uint8_t *p, const uint8_t *end, struct http_head *h,
                      char *errmsg, size_t errmsg_size)
{
    memset(h, 0, sizeof *h);
    const uint8_t *eol = find_crlf(p, end);
    CRAFT_ASSERT(eol != NULL);
    /* "HTTP/1.1 200 OK" (the reason phrase may be empty). */
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
        p[11] > '9' || (eol - p > 12 && p[12] != ' ')) {
        snprintf(errmsg, errmsg_size, "bad HTTP status line");
        return CRAFT_EPROTO;
    }
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    h->close = p[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
    for (p = eol + 2; p < end; p = eol + 2) {
        eol = find_crlf(p, end);
        CRAFT_ASSERT(eol != NULL);
        size_t n = (size_t)(eol - p);
        const uint8_t *v;
        size_t vn;
        if (n == 0) {
            break;
        }
        if (header_is(p, n, "Content-Length", &v, &vn)) {
            if (parse_size(v, v + vn, 10, &h->length) != 0) {
                snprintf(errmsg, errmsg_size, "bad Content-Length");
                return CRAFT_EPROTO;
            }
            h->has_length = 1;
        } else if (header_is(p, n, "Transfer-Encoding", &v, &vn)) {
            if (vn != 7 || strncasecmp((const char *)v, "chunked", 7) != 0) {
                snprintf(errmsg, errmsg_size,
                         "unsupported Transfer-Encoding %.*s", (int)vn, v);
                return CRAFT_EPROTO;
            }
            h->chunked = 1;
        } else if (header_is(p, n, "Connection", &v, &vn)) {
            h->close = vn == 5 && strncasecmp((const char *)v, "close", 5) == 0;
        }
    }
    if (!h->chunked && !h->has_length) {
        /* A keep-alive client cannot frame a body that ends at EOF. */
        snprintf(errmsg, errmsg_size, "response without Content-Length");
        return CRAFT_EPROTO;
    }
    return 0;
}

/* Reassemble a chunked body from p into scratch.  1, 0 (need more) or a
 * negative code; *end_out is the first byte after the body. */
static int dechunk(const uint8_t *p, const uint8_t *end, struct buf *scratch,
                   const uint8_t **end_out, char *errmsg, size_t errmsg_size)
{
    buf_reset(scratch);
    for (;;) {
        const uint8_t *eol = find_crlf(p, end);
        if (eol == NULL) {
            return 0;
        }
        size_t size;
        if (parse_size(p, eol, 16, &size) != 0) {
            snprintf(errmsg, errmsg_size, "bad chunk size");
            return CRAFT_EPROTO;
        }
        if (size > HTTP_BODY_MAX - scratch->len) {
            snprintf(errmsg, errmsg_size, "body over %u bytes", HTTP_BODY_MAX);
            return CRAFT_EPROTO;
        }
        p = eol + 2;
        if (size == 0) {
            break;
        }
        if ((size_t)(end - p) < size + 2) {
            return 0;
        }
        if (p[size] != '\r' || p[size + 1] != '\n') {
            snprintf(errmsg, errmsg_size, "chunk not followed by CRLF");
            return CRAFT_EPROTO;
        }
        int rv = buf_append(scratch, p, size);
        if (rv != 0) {
            return rv;
        }
        p += size + 2;
    }
    /* Trailer fields (ignored), then an empty line. */
    for (;;) {
        const uint8_t *eol = find_crlf(p, end);
        if (eol == NULL) {
            return 0;
        }
        int empty = eol == p;
        p = eol + 2;
        if (empty) {
            break;
        }
    }
    *end_out = p;
    return 1;
}

int lg_http_response(const uint8_t *buf, size_t len, struct buf *scratch,
                     struct http_response *resp, size_t *consumed, char *errmsg,
                     size_t errmsg_size)
{
    const uint8_t *end = buf + len;
    const uint8_t *head_end = memmem(buf, len, "\r\n\r\n", 4);
    if (head_end == NULL) {
        if (len > HTTP_HEAD_MAX) {
            snprintf(errmsg, errmsg_size, "header over %u bytes",
                     HTTP_HEAD_MAX);
            return CRAFT_EPROTO;
        }
        return 0;
    }
    struct http_head h;
    int rv = parse_head(buf, head_end + 4, &h, errmsg, errmsg_size);
    if (rv != 0) {
        return rv;
    }
    const uint8_t *body = head_end + 4;
    if (h.chunked) {
        const uint8_t *body_end = NULL;
        rv = dechunk(body, end, scratch, &body_end, errmsg, errmsg_size);
        if (rv <= 0) {
            return rv;
        }
        resp->body = scratch->data;
        resp->body_len = scratch->len;
        *consumed = (size_t)(body_end - buf);
    } else {
        if (h.length > HTTP_BODY_MAX) {
            snprintf(errmsg, errmsg_size, "body over %u bytes", HTTP_BODY_MAX);
            return CRAFT_EPROTO;
        }
        if ((size_t)(end - body) < h.length) {
            return 0;
        }
        resp->body = body;
        resp->body_len = h.length;
        *consumed = (size_t)(body - buf) + h.length;
    }
    resp->status = h.status;
    resp->close = h.close;
    CRAFT_ASSERT(*consumed <= len);
    return 1;
}

/* The string value of "name":"..." in a JSON object, without unescaping:
 * etcd's gateway writes keys and values as base64 and never escapes them. */
static const uint8_t *json_string(const uint8_t *p, size_t n, const char *name,
                                  size_t *out_len)
{
    char pat[32];
    int m = snprintf(pat, sizeof pat, "\"%s\":\"", name);
    CRAFT_ASSERT(m > 0 && (size_t)m < sizeof pat);
    const uint8_t *v = memmem(p, n, pat, (size_t)m);
    if (v == NULL) {
        return NULL;
    }
    v += m;
    const uint8_t *q = memchr(v, '"', n - (size_t)(v - p));
    if (q == NULL) {
        return NULL;
    }
    *out_len = (size_t)(q - v);
    return v;
}

enum lg_reply lg_etcd_reply(const struct http_response *resp, enum lg_op op,
                            const uint8_t **value_b64, size_t *b64_len)
{
    CRAFT_ASSERT(resp->status >= 100 && resp->status <= 599);
    *value_b64 = NULL;
    *b64_len = 0;
    if (resp->status == 503 || resp->status == 504) {
        /* gRPC Unavailable ("leader changed", "no leader") and
         * DeadlineExceeded, as the gateway maps them: retry. */
        return LG_REPLY_RETRY;
    }
    if (resp->status != 200) {
        return LG_REPLY_ERROR;
    }
    if (op == LG_PUT) {
        return LG_REPLY_OK;
    }
    /* {"header":{..},"kvs":[{"key":"..","create_revision":..,
     * "value":".."}],"count":"1"}; no "kvs" when the key is missing. */
    const uint8_t *kvs = memmem(resp->body, resp->body_len, "\"kvs\":", 6);
    if (kvs == NULL) {
        return LG_REPLY_NIL;
    }
    size_t rest = resp->body_len - (size_t)(kvs - resp->body), n = 0;
    const uint8_t *v = json_string(kvs, rest, "value", &n);
    if (v != NULL) {
        /* Absent for an empty value: the gateway omits empty fields. */
        *value_b64 = v;
        *b64_len = n;
    }
    return LG_REPLY_OK;
}
