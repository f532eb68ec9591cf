/*
 * libFuzzer target for the frame decoder (src/net/frame.c), the one
 * function that turns untrusted peer-port bytes into a header.
 *
 * Input: one mode byte (bit 0: CRCs off, fuzz.h; bits 1..7 pick the frame
 * max, so that the limit paths are reached), then the bytes of the stream.
 * Besides "no crash, no sanitizer report", it checks the decoder's contract
 * on every input: errors come with a reason; NEED_MORE only for a prefix
 * that could still become a frame; OK only for a frame that re-encodes to
 * the same header bytes and whose every strict prefix needs more.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "craft/common.h"
#include "fuzz.h"
#include "net/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fuzz_crc_off = (data[0] & 1) != 0;
    uint32_t max = (uint32_t)(data[0] >> 1) * 32u;
    data++;
    size--;
    struct net_frame_hdr h;
    const char *why = NULL;
    int rv = net_frame_decode(data, size, max, &h, &why);
    if (rv < 0) {
        CHECK(why != NULL);
        CHECK(rv == CRAFT_EPROTO || rv == CRAFT_EVERSION ||
              rv == CRAFT_ETOOBIG || rv == CRAFT_ECORRUPT);
        return 0;
    }
    if (rv == NET_FRAME_NEED_MORE) {
        return 0;
    }
    CHECK(rv == NET_FRAME_OK);
    CHECK(h.length <= max);
    CHECK(size >= NET_FRAME_HDR_SIZE + (size_t)h.length);
    uint8_t again[NET_FRAME_HDR_SIZE];
    net_frame_encode_hdr(again, &h);
    CHECK(memcmp(again, data, NET_FRAME_HDR_SIZE) == 0);
    size_t n = NET_FRAME_HDR_SIZE + h.length;
    for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
        struct net_frame_hdr h2;
        CHECK(net_frame_decode(data, cut, max, &h2, NULL) ==
              NET_FRAME_NEED_MORE);
    }
    return 0;
}

/* ---- seeds ---- */

static void write_seeds(const char *dir, uint8_t mode)
{
    static const struct net_frame_hdr hdrs[] = {
        {.kind = NET_KIND_HELLO},
        {.kind = NET_KIND_REQUEST, .type = 7, .id = 1},
        {.kind = NET_KIND_RESPONSE, .type = 7, .status = CRAFT_EIO, .id = 1},
        {.kind = NET_KIND_MESSAGE, .type = 3},
        {.kind = NET_KIND_AUTH},
    };
    const char payload[] = "a small payload";
    for (unsigned i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        uint8_t buf[NET_FRAME_HDR_SIZE + sizeof payload];
        struct net_frame_hdr h = hdrs[i];
        size_t len = i % 2 ? sizeof payload : 0;
        net_frame_encode(buf, &h, payload, len);
        memcpy(buf + NET_FRAME_HDR_SIZE, payload, len);
        /* frame max 64 * 32 bytes: room for the payload */
        fuzz_seed(dir, i, (uint8_t)(mode | 0x80), buf,
                  NET_FRAME_HDR_SIZE + len);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_maybe_write_seeds(write_seeds);
    return 0;
}
