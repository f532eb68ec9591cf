/*
 * libFuzzer target for the Raft message codec (src/raft/codec.c), which
 * decodes every payload a peer sends.
 *
 * The input (after a mode byte, unused: the codec has no checksums) is
 * decoded as a sequence of messages (a message may be followed
 * by others, codec.c).  Checked on every input:
 *   1. decode never reads outside the input (ASan) and returns a length in
 *      (0, remaining], CRAFT_EPROTO or CRAFT_ETOOBIG;
 *   2. the codec is canonical: a decoded message re-encodes to exactly the
 *      bytes it was decoded from (for SNAPSHOT, all but the data, which the
 *      runtime appends), and raft_message_encoded_size() says so;
 *   3. the re-encoding decodes to the same message again;
 *   4. every strict prefix of a decoded message is rejected (truncation is
 *      always caught).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "craft/raft.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Entries of one APPEND the fuzzer can produce in a small input. */
#define SCRATCH 64

static size_t data_len(const struct raft_message *m)
{
    return m->type == RAFT_MSG_SNAPSHOT ? m->snapshot.data.len : 0;
}

static void check_one(const uint8_t *p, size_t used,
                      const struct raft_message *m)
{
    size_t enc_size = raft_message_encoded_size(m);
    CHECK(enc_size + data_len(m) == used);
    uint8_t *enc = malloc(enc_size ? enc_size : 1);
    CHECK(enc != NULL);
    CHECK(raft_message_encode(m, enc, enc_size) == (int)enc_size);
    CHECK(memcmp(enc, p, enc_size) == 0);
    if (enc_size > 0) {
        /* One byte short of room is refused, not overrun. */
        CHECK(raft_message_encode(m, enc, enc_size - 1) == CRAFT_ETOOBIG);
    }
    /* The same bytes (data appended as the runtime does) decode again. */
    static struct raft_entry scratch2[SCRATCH];
    struct raft_message m2;
    CHECK(raft_message_decode(p, used, scratch2, SCRATCH, &m2) == (int)used);
    CHECK(m2.type == m->type && m2.from == m->from && m2.to == m->to &&
          m2.term == m->term);
    for (size_t cut = 0; cut < used; cut += 1 + cut / 16) {
        CHECK(raft_message_decode(p, cut, scratch2, SCRATCH, &m2) < 0);
    }
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct raft_entry scratch[SCRATCH];
    size_t off = 1;
    while (off < size) {
        struct raft_message m;
        int rv =
            raft_message_decode(data + off, size - off, scratch, SCRATCH, &m);
        if (rv < 0) {
            CHECK(rv == CRAFT_EPROTO || rv == CRAFT_ETOOBIG);
            break;
        }
        CHECK(rv > 0 && (size_t)rv <= size - off);
        check_one(data + off, (size_t)rv, &m);
        off += (size_t)rv;
    }
    return 0;
}

/* ---- seeds ---- */

static void write_seeds(const char *dir, uint8_t mode)
{
    static uint8_t out[4096];
    struct raft_entry es[3] = {{.term = 2, .index = 5, .type = RAFT_ENTRY_NOOP},
                               {.term = 2,
                                .index = 6,
                                .type = RAFT_ENTRY_COMMAND,
                                .buf = {(void *)"set x 1", 7}},
                               {.term = 3,
                                .index = 7,
                                .type = RAFT_ENTRY_COMMAND,
                                .buf = {(void *)"y", 1}}};
    struct raft_message ms[7];
    memset(ms, 0, sizeof ms);
    for (unsigned i = 0; i < 7; i++) {
        ms[i].type = (uint8_t)(RAFT_MSG_VOTE + i);
        ms[i].from = 1;
        ms[i].to = 2;
        ms[i].term = 3;
    }
    ms[0].vote.last_index = 4;
    ms[0].vote.last_term = 2;
    ms[2].append.prev_index = 4;
    ms[2].append.prev_term = 2;
    ms[2].append.commit = 4;
    ms[2].append.entries = es;
    ms[2].append.n_entries = 3;
    ms[4].snapshot.meta.index = 9;
    ms[4].snapshot.meta.term = 3;
    ms[4].snapshot.meta.config.n = 3;
    for (unsigned k = 0; k < 3; k++) {
        ms[4].snapshot.meta.config.ids[k] = k + 1;
    }
    ms[4].snapshot.meta.size = 4;
    ms[4].snapshot.data.base = (void *)"data";
    ms[4].snapshot.data.len = 4;
    ms[4].snapshot.last = true;
    size_t all = 0;
    for (unsigned i = 0; i < 7; i++) {
        CHECK(ms[i].type <= RAFT_MSG_TIMEOUT_NOW);
        int n = raft_message_encode(&ms[i], out + all, sizeof out - all);
        CHECK(n > 0);
        size_t len = (size_t)n;
        if (ms[i].type == RAFT_MSG_SNAPSHOT) {
            memcpy(out + all + len, "data", 4);
            len += 4;
        }
        fuzz_seed(dir, i, mode, out + all, len);
        all += len;
    }
    /* Several messages back to back. */
    fuzz_seed(dir, 7, mode, out, all);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_maybe_write_seeds(write_seeds);
    return 0;
}
