/*
 * Shared pieces of the libFuzzer targets in tests/fuzz (built only by clang
 * with -DCRAFT_FUZZ=ON; see CMakeLists.txt and docs/bad-input.md).
 *
 * Checksums: most of what craft decodes is covered by CRC-32C, so random
 * mutations almost never get past the first checksum and the code behind it
 * would go unexercised.  The targets are therefore linked with
 * fuzz_crc.c, whose crc32c() returns 0 while fuzz_crc_off is set; each
 * target reads one mode bit from its input, so both the real checks and
 * the code behind them are fuzzed.  Seeds are written in both modes.
 *
 * Seeds: a target run with CRAFT_FUZZ_SEEDS=DIR in its environment writes
 * its seed inputs (valid encodings made with the real encoders) into DIR
 * and exits; tests/fuzz/run_fuzz.sh does that before fuzzing.
 */
#ifndef CRAFT_TESTS_FUZZ_H
#define CRAFT_TESTS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* A failed check is a finding: abort so that libFuzzer saves the input. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fuzz_fail(#cond, __FILE__, __LINE__);                              \
        }                                                                      \
    } while (0)

extern bool fuzz_crc_off;

void fuzz_fail(const char *what, const char *file, int line);

/* Write seed number i (its bytes, the mode byte first) into the seed dir. */
void fuzz_seed(const char *dir, unsigned i, uint8_t mode, const void *p,
               size_t n);

/* Called from LLVMFuzzerInitialize: if CRAFT_FUZZ_SEEDS is set, call
 * write_seeds(dir) once with CRCs real and once with them off, then exit. */
void fuzz_maybe_write_seeds(void (*write_seeds)(const char *dir, uint8_t mode));

#endif
