/*
 * The craft-mr wire protocol: message types and payload encoding on top of
 * src/net (which provides framing, checksums, request ids and limits).
 *
 * Payloads are sequences of little-endian fixed-width integers and
 * length-prefixed byte strings (u32 length, bytes).  Decoding is bounds
 * checked: a short or malformed payload makes the decoder's `err` flag
 * stick, and the handler answers CRAFT_EPROTO -- never a crash.
 *
 * Requests (worker -> coordinator unless noted), request / response:
 *
 *   HELLO        u32 proto, u16 fetch_port, u32 pid
 *              / u32 worker_id, u32 n_maps, u32 n_reduces, u64 plugin_size,
 *                u32 plugin_crc, str plugin_name, u32 n_args,
 *                n_args x (str key, str value), u64 split_max
 *   PLUGIN       u64 offset / bytes (at most MR_CHUNK_BYTES)
 *   TASK         u32 worker
 *              / u8 reply (enum mr_reply), then for TASK: u8 kind, u32 task,
 *                u64 attempt; a map adds str filename, u64 length; a reduce
 *                adds u32 n_maps, n_maps x (str addr, u32 holder,
 *                u64 map_attempt, u64 length, u64 n_records, u32 crc) --
 *                where partition `task` of each map's output lives
 *   INPUT        u32 worker, u32 map, u64 attempt, u64 offset / bytes
 *   HEARTBEAT    u32 worker, u8 kind, u32 task, u64 attempt / u8 go_on
 *   MAP_DONE     u32 worker, u32 map, u64 attempt, u32 n_reduces,
 *                n_reduces x (u64 length, u64 n_records, u32 crc) / -
 *   OUTPUT       u32 worker, u32 reduce, u64 attempt, u64 offset, bytes / -
 *   REDUCE_DONE  u32 worker, u32 reduce, u64 attempt, u64 size, u32 crc
 *              / u8 accepted
 *   FAIL         u32 worker, u8 kind, u32 task, u64 attempt, str error / -
 *   FETCH_FAILED u32 worker, u32 reduce, u64 attempt, u32 map, u32 holder
 *              / -
 *   FETCH        (reducer -> worker holding map output) u32 map,
 *                u64 map_attempt, u32 partition, u64 offset / bytes
 *
 * One-way message: JOB_OVER (coordinator -> workers, empty): exit now.
 *
 * A request the coordinator cannot serve gets a non-zero status:
 * CRAFT_ENOENT for an unknown or lost worker id (the worker registers
 * again), CRAFT_EPROTO for a malformed payload, CRAFT_ESTALE for a task
 * attempt that is no longer current.
 */
#ifndef CRAFT_MR_WIRE_H
#define CRAFT_MR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define MR_PROTO_VERSION 1u

enum mr_msg {
    MR_MSG_HELLO = 0x4d01,
    MR_MSG_PLUGIN,
    MR_MSG_TASK,
    MR_MSG_INPUT,
    MR_MSG_HEARTBEAT,
    MR_MSG_MAP_DONE,
    MR_MSG_OUTPUT,
    MR_MSG_REDUCE_DONE,
    MR_MSG_FAIL,
    MR_MSG_FETCH_FAILED,
    MR_MSG_FETCH,
    MR_MSG_JOB_OVER
};

/* Bulk data (plugin, input, map output, reduce output) moves in chunks of
 * at most 1 MiB: big enough that per-request overhead is noise (~1000
 * round trips per GiB), small enough to bound memory per transfer and to
 * stay far below the net layer's frame limit. */
#define MR_CHUNK_BYTES (1024u * 1024u)

/* Largest string field (file names, addresses, error messages). */
#define MR_STR_MAX 4096u

struct mr_wbuf {
    struct buf b;
    int oom;
};

void mr_w_init(struct mr_wbuf *w);
void mr_w_close(struct mr_wbuf *w);
void mr_w_u8(struct mr_wbuf *w, uint8_t v);
void mr_w_u16(struct mr_wbuf *w, uint16_t v);
void mr_w_u32(struct mr_wbuf *w, uint32_t v);
void mr_w_u64(struct mr_wbuf *w, uint64_t v);
void mr_w_str(struct mr_wbuf *w, const char *s);
void mr_w_bytes(struct mr_wbuf *w, const void *p, size_t n);

struct mr_rbuf {
    const uint8_t *p;
    size_t len, pos;
    int err;
};

void mr_r_init(struct mr_rbuf *r, const void *p, size_t len);
uint8_t mr_r_u8(struct mr_rbuf *r);
uint16_t mr_r_u16(struct mr_rbuf *r);
uint32_t mr_r_u32(struct mr_rbuf *r);
uint64_t mr_r_u64(struct mr_rbuf *r);
/* A string copied into out (NUL-terminated); too long for out -> err. */
void mr_r_str(struct mr_rbuf *r, char *out, size_t cap);
/* The remaining bytes (borrowed). */
const uint8_t *mr_r_rest(struct mr_rbuf *r, size_t *n);
/* True when everything decoded and nothing is left over. */
static inline int mr_r_ok(const struct mr_rbuf *r)
{
    return !r->err && r->pos == r->len;
}

#endif /* CRAFT_MR_WIRE_H */
