/*
 * The frame codec (layout and invariants in frame.h).  Pure functions: the
 * decoder is the single place where untrusted bytes become a header, so it
 * is kept free of I/O and allocation and is tested with truncation at every
 * byte and with single-bit corruption of every byte.
 */
#include "net/frame.h"

#include "craft/common.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/encoding.h"

enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_KIND = 5,
    OFF_FLAGS = 6,
    OFF_RESERVED = 7,
    OFF_TYPE = 8,
    OFF_STATUS = 10,
    OFF_LENGTH = 12,
    OFF_ID = 16,
    OFF_PAYLOAD_CRC = 24,
    OFF_HEADER_CRC = 28
};

_Static_assert(OFF_HEADER_CRC + 4 == NET_FRAME_HDR_SIZE,
               "the header checksum closes the 32-byte header");
_Static_assert(NET_FRAME_MAX_LIMIT <= UINT32_MAX - NET_FRAME_HDR_SIZE,
               "a whole frame's size fits in 32 bits");

static const uint8_t magic_bytes[4] = {'C', 'R', 'F', 'T'};

static int kind_known(uint8_t kind)
{
    switch ((enum net_kind)kind) {
    case NET_KIND_HELLO:
    case NET_KIND_REQUEST:
    case NET_KIND_RESPONSE:
    case NET_KIND_MESSAGE:
    case NET_KIND_AUTH:
        return 1;
    }
    return 0;
}

/* Invariant 4 of frame.h, shared by the encoder (as an assertion) and the
 * decoder (as a protocol check).  NULL when consistent. */
static const char *hdr_inconsistency(const struct net_frame_hdr *h)
{
    int is_call = h->kind == NET_KIND_REQUEST || h->kind == NET_KIND_RESPONSE;
    if (is_call && h->id == 0) {
        return "request or response without a request id";
    }
    if (!is_call && h->id != 0) {
        return "request id on a frame that is not a request or response";
    }
    if (h->status != 0 && h->kind != NET_KIND_RESPONSE) {
        return "status on a frame that is not a response";
    }
    if ((h->kind == NET_KIND_HELLO || h->kind == NET_KIND_AUTH) &&
        h->type != 0) {
        return "handshake frame with a nonzero type";
    }
    return NULL;
}

static int fail(const char **reason, const char *why, int rv)
{
    if (reason != NULL) {
        *reason = why;
    }
    return rv;
}

int net_frame_decode(const uint8_t *buf, size_t len, uint32_t max,
                     struct net_frame_hdr *hdr, const char **reason)
{
    CRAFT_ASSERT(buf != NULL || len == 0);
    CRAFT_ASSERT(hdr != NULL);

    /* Check the magic byte by byte so that garbage is refused at once. */
    for (size_t i = 0; i < sizeof magic_bytes && i < len; i++) {
        if (buf[i] != magic_bytes[i]) {
            return fail(reason, "bad magic: not a craft frame", CRAFT_EPROTO);
        }
    }
    if (len > OFF_VERSION && buf[OFF_VERSION] != NET_PROTO_VERSION) {
        return fail(reason, "unsupported protocol version", CRAFT_EVERSION);
    }
    if (len < NET_FRAME_HDR_SIZE) {
        return NET_FRAME_NEED_MORE;
    }
    if (crc32c(0, buf, OFF_HEADER_CRC) != get_u32(buf + OFF_HEADER_CRC)) {
        return fail(reason, "header checksum mismatch", CRAFT_ECORRUPT);
    }

    struct net_frame_hdr h;
    h.kind = buf[OFF_KIND];
    h.flags = buf[OFF_FLAGS];
    h.type = get_u16(buf + OFF_TYPE);
    h.status = (int16_t)get_u16(buf + OFF_STATUS);
    h.length = get_u32(buf + OFF_LENGTH);
    h.id = get_u64(buf + OFF_ID);
    h.payload_crc = get_u32(buf + OFF_PAYLOAD_CRC);

    if (!kind_known(h.kind)) {
        return fail(reason, "unknown frame kind", CRAFT_EPROTO);
    }
    if (h.flags != 0 || buf[OFF_RESERVED] != 0) {
        return fail(reason, "reserved header bits set", CRAFT_EPROTO);
    }
    const char *why = hdr_inconsistency(&h);
    if (why != NULL) {
        return fail(reason, why, CRAFT_EPROTO);
    }
    if (h.length > max) {
        return fail(reason, "frame larger than the frame max", CRAFT_ETOOBIG);
    }
    if (len - NET_FRAME_HDR_SIZE < h.length) {
        return NET_FRAME_NEED_MORE;
    }
    if (crc32c(0, buf + NET_FRAME_HDR_SIZE, h.length) != h.payload_crc) {
        return fail(reason, "payload checksum mismatch", CRAFT_ECORRUPT);
    }
    *hdr = h;
    return NET_FRAME_OK;
}

void net_frame_encode_hdr(uint8_t out[NET_FRAME_HDR_SIZE],
                          const struct net_frame_hdr *hdr)
{
    CRAFT_ASSERT(kind_known(hdr->kind));
    CRAFT_ASSERT(hdr->flags == 0);
    CRAFT_ASSERT(hdr_inconsistency(hdr) == NULL);
    CRAFT_ASSERT(hdr->length <= NET_FRAME_MAX_LIMIT);

    for (size_t i = 0; i < sizeof magic_bytes; i++) {
        out[OFF_MAGIC + i] = magic_bytes[i];
    }
    out[OFF_VERSION] = NET_PROTO_VERSION;
    out[OFF_KIND] = hdr->kind;
    out[OFF_FLAGS] = hdr->flags;
    out[OFF_RESERVED] = 0;
    put_u16(out + OFF_TYPE, hdr->type);
    put_u16(out + OFF_STATUS, (uint16_t)hdr->status);
    put_u32(out + OFF_LENGTH, hdr->length);
    put_u64(out + OFF_ID, hdr->id);
    put_u32(out + OFF_PAYLOAD_CRC, hdr->payload_crc);
    put_u32(out + OFF_HEADER_CRC, crc32c(0, out, OFF_HEADER_CRC));

    CRAFT_DASSERT(get_u32(out + OFF_MAGIC) == NET_FRAME_MAGIC);
}

void net_frame_encode(uint8_t out[NET_FRAME_HDR_SIZE],
                      struct net_frame_hdr *hdr, const void *payload,
                      size_t len)
{
    CRAFT_ASSERT(len <= NET_FRAME_MAX_LIMIT);
    CRAFT_ASSERT(payload != NULL || len == 0);
    hdr->length = (uint32_t)len;
    hdr->payload_crc = len > 0 ? crc32c(0, payload, len) : 0;
    net_frame_encode_hdr(out, hdr);
}
