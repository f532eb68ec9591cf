/*
 * libFuzzer target for the frame decoder, the one function that turns
 * untrusted bytes into a header.  Built only with clang and -DCRAFT_FUZZ=ON:
 *
 *   CC=clang cmake -S . -B build-fuzz -DCRAFT_FUZZ=ON
 *   cmake --build build-fuzz --target fuzz_net_frame
 *   build-fuzz/tests/fuzz_net_frame -max_total_time=60
 *
 * Besides "no crash, no sanitizer report", it checks the decoder's contract
 * on every input: errors come with a reason; NEED_MORE only for a prefix
 * that could still become a frame; OK only for a frame that re-encodes to
 * the same header bytes and whose every strict prefix needs more.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "net/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the frame max, so the limit paths are reached. */
    uint32_t max = size > 0 ? (uint32_t)data[0] * 16u : 0;
    struct net_frame_hdr h;
    const char *why = NULL;
    int rv = net_frame_decode(data, size, max, &h, &why);
    if (rv < 0) {
        if (why == NULL) {
            abort();
        }
        return 0;
    }
    if (rv == NET_FRAME_NEED_MORE) {
        return 0;
    }
    if (rv != NET_FRAME_OK || size < NET_FRAME_HDR_SIZE + (size_t)h.length) {
        abort();
    }
    uint8_t again[NET_FRAME_HDR_SIZE];
    net_frame_encode_hdr(again, &h);
    if (memcmp(again, data, NET_FRAME_HDR_SIZE) != 0) {
        abort();
    }
    size_t n = NET_FRAME_HDR_SIZE + h.length;
    for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
        struct net_frame_hdr h2;
        if (net_frame_decode(data, cut, max, &h2, NULL) !=
            NET_FRAME_NEED_MORE) {
            abort();
        }
    }
    return 0;
}
