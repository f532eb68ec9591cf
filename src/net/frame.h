/*
 * The craft wire frame: a pure encoder and decoder, no I/O.
 *
 * Every byte craft sends over TCP is inside a frame: a fixed 32-byte header
 * followed by `length` payload bytes.  All integers are little-endian.
 *
 *   off size field
 *     0    4 magic        "CRFT" (0x43 0x52 0x46 0x54)
 *     4    1 version      NET_PROTO_VERSION (1)
 *     5    1 kind         enum net_kind (1..5)
 *     6    1 flags        0 in version 1 (bits reserved: compression, MAC)
 *     7    1 reserved     0
 *     8    2 type         application message type (0 for HELLO)
 *    10    2 status       int16: 0, or a CRAFT_E* code in a RESPONSE
 *    12    4 length       payload bytes, at most the receiver's frame max
 *    16    8 id           request id in REQUEST/RESPONSE, 0 otherwise
 *    24    4 payload_crc  CRC32C of the payload bytes (0 for no payload)
 *    28    4 header_crc   CRC32C of header bytes 0..27
 *
 * Invariants of a decoded frame (net_frame_decode returned NET_FRAME_OK):
 *  1. magic and version match and header_crc matches bytes 0..27, so every
 *     field below was written by a craft peer (or a 2^-32 accident);
 *  2. kind is a known enum net_kind, flags and reserved are 0;
 *  3. length <= the max passed to the decoder;
 *  4. id != 0 exactly for REQUEST and RESPONSE; status != 0 only in a
 *     RESPONSE; type == 0 in HELLO and AUTH;
 *  5. the payload's CRC32C equals payload_crc.
 *
 * The header carries its own checksum so that a corrupted length is caught
 * as soon as 32 bytes have arrived, instead of making the reader wait for
 * (and buffer) up to frame-max bytes of a payload that never comes.  Since
 * header_crc covers payload_crc, the two checksums together cover every
 * byte of the frame.
 *
 * Versioning: bytes 0..4 (magic and version) keep this layout in every
 * future version, so a receiver can always tell "not craft" (EPROTO) from
 * "craft, but a version I don't speak" (EVERSION).  The HELLO handshake
 * (net.h) is where peers will negotiate once there is more than one.
 */
#ifndef CRAFT_NET_FRAME_H
#define CRAFT_NET_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define NET_FRAME_HDR_SIZE 32
#define NET_FRAME_MAGIC 0x54465243u /* "CRFT" read as a little-endian u32 */
#define NET_PROTO_VERSION 1

/*
 * Default largest payload accepted per frame: 16 MiB.  Raft entry batches are
 * ~1 MiB (RAFT_BATCH_BYTES_MAX) and snapshot chunks and MapReduce file chunks
 * are sent in pieces well below this, so 16 MiB leaves a wide margin while
 * bounding what one malicious or broken peer can make us buffer.
 */
#define NET_FRAME_MAX_DEFAULT (16u * 1024 * 1024)

/* The largest frame max an endpoint may configure: 1 GiB, so that payload
 * lengths always fit comfortably in the u32 length field and in memory. */
#define NET_FRAME_MAX_LIMIT (1024u * 1024 * 1024)

enum net_kind {
    NET_KIND_HELLO = 1,    /* handshake; first frame in each direction */
    NET_KIND_REQUEST = 2,  /* expects exactly one RESPONSE with its id */
    NET_KIND_RESPONSE = 3, /* answers the REQUEST with the same id */
    NET_KIND_MESSAGE = 4,  /* one-way, no response */
    NET_KIND_AUTH = 5      /* handshake MAC, when both ends have a secret */
};

/* The decoded header fields (magic, version and the CRCs are implied). */
struct net_frame_hdr {
    uint8_t kind; /* enum net_kind */
    uint8_t flags;
    uint16_t type;
    int16_t status;
    uint32_t length;
    uint64_t id;
    uint32_t payload_crc;
};

/* Results of net_frame_decode() besides the negative CRAFT_E* errors. */
enum net_frame_result { NET_FRAME_OK = 0, NET_FRAME_NEED_MORE = 1 };

/*
 * Decode the frame at the start of buf[0..len).  Pure: no allocation, no
 * logging, safe on any input (the fuzzing entry point).
 *
 * Returns:
 *   NET_FRAME_OK         a whole valid frame is there; *hdr is filled and the
 *                        payload is buf[NET_FRAME_HDR_SIZE .. +hdr->length);
 *   NET_FRAME_NEED_MORE  the bytes so far are a valid prefix of a frame;
 *   CRAFT_EPROTO         not a craft frame (bad magic, unknown kind, nonzero
 *                        reserved bits, inconsistent id/status/type);
 *   CRAFT_EVERSION       a craft frame of another protocol version;
 *   CRAFT_ETOOBIG        length > max;
 *   CRAFT_ECORRUPT       a header or payload checksum mismatch.
 * On an error, *reason (if reason != NULL) points to a static sentence
 * saying what was wrong.  *hdr is written only on NET_FRAME_OK.
 *
 * Errors are reported as early as the bytes allow: a wrong magic byte at
 * the first byte, anything in the header once 32 bytes are there.
 */
int net_frame_decode(const uint8_t *buf, size_t len, uint32_t max,
                     struct net_frame_hdr *hdr, const char **reason);

/*
 * Write the 32-byte header for *hdr into out, computing header_crc.
 * hdr->payload_crc must already be the CRC32C of the payload (see
 * net_frame_encode for the one-buffer case).  Asserts the invariants 2 and 4
 * above (a caller building an invalid header is a programmer error).
 */
void net_frame_encode_hdr(uint8_t out[NET_FRAME_HDR_SIZE],
                          const struct net_frame_hdr *hdr);

/* Set hdr->payload_crc and hdr->length from payload[0..len) and write the
 * header, as net_frame_encode_hdr.  len must fit in u32. */
void net_frame_encode(uint8_t out[NET_FRAME_HDR_SIZE],
                      struct net_frame_hdr *hdr, const void *payload,
                      size_t len);

#endif /* CRAFT_NET_FRAME_H */
