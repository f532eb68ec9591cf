/*
 * The wire side of craft-loadgen, kept free of I/O so that it is unit
 * tested on its own: deterministic keys and values, RESP requests and reply
 * classification, and etcd v3's JSON gateway over HTTP/1.1 (requests,
 * an incremental response parser with Content-Length and chunked bodies,
 * base64).
 *
 * Every function appends to a caller's struct buf or reads a borrowed byte
 * range; nothing is kept between calls.
 */
#ifndef CRAFT_LOADGEN_PROTO_H
#define CRAFT_LOADGEN_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Keys are "key:" and 12 decimal digits, like redis-benchmark's
 * key:__rand_int__, so both tools write the same key space. */
#define LG_KEY_LEN 16
#define LG_VALUE_MAX (1u << 20)

/* The key for index k (< 10^12) into out[LG_KEY_LEN] (not terminated). */
void lg_key(uint64_t k, char out[LG_KEY_LEN]);

/* The value of key k for a run seeded with seed: n lowercase letters that
 * depend only on (seed, k, n), so a later run can check what an earlier
 * one wrote. */
void lg_value(uint64_t seed, uint64_t k, uint8_t *out, size_t n);

/* ---- RESP ---- */

enum lg_op { LG_PUT, LG_GET };

/* Append "SET key value" or "GET key" as a multibulk request.  0 or
 * CRAFT_ENOMEM. */
int lg_resp_request(struct buf *b, enum lg_op op, const char *key,
                    const uint8_t *value, size_t value_len);

/* What a reply means to the load generator. */
enum lg_reply {
    LG_REPLY_OK,       /* +OK, or a bulk string for GET */
    LG_REPLY_NIL,      /* GET of a missing key */
    LG_REPLY_MOVED,    /* redirect: the leader is elsewhere */
    LG_REPLY_RETRY,    /* CLUSTERDOWN, TRYAGAIN, UNCERTAIN, LOADING, ... */
    LG_REPLY_ERROR,    /* any other error: counted, not retried */
    LG_REPLY_BAD_TYPE, /* a well-formed reply of the wrong type */
};

/*
 * Split one reply from buf[0, len).  Returns 1 and fills *kind and
 * *consumed when a whole reply is there, 0 when more bytes are needed, or
 * CRAFT_EPROTO for bytes that are not RESP2.  For LG_REPLY_OK to a GET,
 * *data and *data_len give the bulk payload (borrowed from buf); for an error,
 * it is the error text without the leading '-'.  For LG_REPLY_MOVED, the
 * "host:port" of the redirect is copied into addr[addr_size] (terminated;
 * CRAFT_EPROTO if it does not fit).
 */
int lg_resp_reply(const uint8_t *buf, size_t len, enum lg_op op,
                  enum lg_reply *kind, const uint8_t **data, size_t *data_len,
                  char *addr, size_t addr_size, size_t *consumed);

/* ---- etcd v3 JSON gateway over HTTP/1.1 ---- */

/* Standard base64 (RFC 4648, with padding). */
size_t lg_base64_len(size_t n);
void lg_base64_encode(const uint8_t *in, size_t n, char *out);
/* Decode into out[out_size]; the decoded length, or -1 on bad input or if
 * it does not fit. */
long lg_base64_decode(const char *in, size_t n, uint8_t *out, size_t out_size);

/* Append "POST /v3/kv/put" (value != NULL) or "POST /v3/kv/range" with a
 * JSON body; serializable selects a serializable range (otherwise etcd
 * reads linearizably).  host is the Host header.  0 or CRAFT_ENOMEM. */
int lg_etcd_request(struct buf *b, const char *host, enum lg_op op,
                    const char *key, const uint8_t *value, size_t value_len,
                    int serializable);

#define HTTP_HEAD_MAX (16u * 1024u)
#define HTTP_BODY_MAX (4u * 1024u * 1024u)

struct http_response {
    int status;          /* e.g. 200 */
    int close;           /* "Connection: close": the server will hang up */
    const uint8_t *body; /* borrowed from the input, or from the dechunk buf */
    size_t body_len;
};

/*
 * Parse one HTTP/1.1 response from buf[0, len).  Returns 1 with *resp and
 * *consumed filled when it is complete, 0 when more bytes are needed, or
 * CRAFT_EPROTO (errmsg[errmsg_size] says why) for a malformed response or
 * one over HTTP_HEAD_MAX/HTTP_BODY_MAX; CRAFT_ENOMEM if dechunking fails.
 * A chunked body is reassembled into *scratch (reset first), which must
 * outlive the use of resp->body.  Each call parses from the start: the
 * caller keeps the bytes until a whole response is there.
 */
int lg_http_response(const uint8_t *buf, size_t len, struct buf *scratch,
                     struct http_response *resp, size_t *consumed, char *errmsg,
                     size_t errmsg_size);

/* Classify an etcd gateway reply.  For a range that finds the key,
 * *value_b64 and *b64_len give the first value, still base64-encoded and
 * borrowed from resp->body (NULL and 0 for an empty value): decoding is
 * left to callers that look at values. */
enum lg_reply lg_etcd_reply(const struct http_response *resp, enum lg_op op,
                            const uint8_t **value_b64, size_t *b64_len);

#endif /* CRAFT_LOADGEN_PROTO_H */
