/*
 * The Raft wire codec: round trips of every message type, truncation at
 * every byte, single-byte corruption and random garbage -- never a crash,
 * always CRAFT_EPROTO (or CRAFT_ETOOBIG for too many entries) on bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "craft/raft.h"

static struct raft_entry entries[3] = {
    {.term = 3,
     .index = 11,
     .type = RAFT_ENTRY_COMMAND,
     .buf = {(void *)"hello", 5}},
    {.term = 3, .index = 12, .type = RAFT_ENTRY_NOOP, .buf = {NULL, 0}},
    {.term = 4,
     .index = 13,
     .type = RAFT_ENTRY_COMMAND,
     .buf = {(void *)"xyz", 3}},
};

static const char chunk[] = "0123456789";

static int samples(struct raft_message *m)
{
    int n = 0;
    m[n++] = (struct raft_message){
        .type = RAFT_MSG_VOTE,
        .from = 1,
        .to = 2,
        .term = 7,
        .vote = {
            .last_index = 100, .last_term = 6, .pre = true, .transfer = true}};
    m[n++] =
        (struct raft_message){.type = RAFT_MSG_VOTE_RESP,
                              .from = 2,
                              .to = 1,
                              .term = 7,
                              .vote_resp = {.granted = true, .pre = false}};
    m[n++] = (struct raft_message){.type = RAFT_MSG_APPEND,
                                   .from = 1,
                                   .to = 3,
                                   .term = 4,
                                   .append = {.prev_index = 10,
                                              .prev_term = 2,
                                              .commit = 9,
                                              .read_round = 5,
                                              .entries = entries,
                                              .n_entries = 3}};
    m[n++] = (struct raft_message){
        .type = RAFT_MSG_APPEND,
        .from = 1,
        .to = 3,
        .term = 4,
        .append = {.prev_index = 10, .prev_term = 2, .commit = 9}};
    m[n++] = (struct raft_message){.type = RAFT_MSG_APPEND_RESP,
                                   .from = 3,
                                   .to = 1,
                                   .term = 4,
                                   .append_resp = {.success = false,
                                                   .index = 1,
                                                   .conflict_term = 2,
                                                   .conflict_index = 5,
                                                   .rejected = 10,
                                                   .read_round = 5}};
    m[n++] = (struct raft_message){
        .type = RAFT_MSG_SNAPSHOT,
        .from = 1,
        .to = 2,
        .term = 9,
        .snapshot = {.meta = {.index = 50,
                              .term = 8,
                              .config = {.n = 3, .ids = {1, 2, 3}},
                              .size = 30},
                     .offset = 20,
                     .last = true,
                     .data = {(void *)chunk, 10}}};
    m[n++] = (struct raft_message){
        .type = RAFT_MSG_SNAPSHOT_RESP,
        .from = 2,
        .to = 1,
        .term = 9,
        .snapshot_resp = {.index = 50, .next_offset = 30, .done = true}};
    m[n++] = (struct raft_message){
        .type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = 9};
    return n;
}

/* Encode m, appending snapshot data as a runtime does. */
static size_t encode(const struct raft_message *m, uint8_t *buf, size_t cap)
{
    int n = raft_message_encode(m, buf, cap);
    assert_true(n > 0);
    assert_int_equal((size_t)n, raft_message_encoded_size(m));
    size_t len = (size_t)n;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        memcpy(buf + len, m->snapshot.data.base, m->snapshot.data.len);
        len += m->snapshot.data.len;
    }
    return len;
}

static void assert_same(const struct raft_message *a,
                        const struct raft_message *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    switch (a->type) {
    case RAFT_MSG_APPEND:
        assert_int_equal(a->append.prev_index, b->append.prev_index);
        assert_int_equal(a->append.prev_term, b->append.prev_term);
        assert_int_equal(a->append.commit, b->append.commit);
        assert_int_equal(a->append.read_round, b->append.read_round);
        assert_int_equal(a->append.n_entries, b->append.n_entries);
        for (size_t k = 0; k < a->append.n_entries; k++) {
            const struct raft_entry *x = &a->append.entries[k];
            const struct raft_entry *y = &b->append.entries[k];
            assert_int_equal(x->term, y->term);
            assert_int_equal(x->index, y->index);
            assert_int_equal(x->type, y->type);
            assert_int_equal(x->buf.len, y->buf.len);
            if (x->buf.len > 0) {
                assert_memory_equal(x->buf.base, y->buf.base, x->buf.len);
            }
        }
        break;
    case RAFT_MSG_SNAPSHOT:
        assert_int_equal(a->snapshot.meta.index, b->snapshot.meta.index);
        assert_int_equal(a->snapshot.meta.term, b->snapshot.meta.term);
        assert_int_equal(a->snapshot.meta.size, b->snapshot.meta.size);
        assert_int_equal(a->snapshot.meta.config.n, b->snapshot.meta.config.n);
        assert_int_equal(a->snapshot.meta.config.ids[2],
                         b->snapshot.meta.config.ids[2]);
        assert_int_equal(a->snapshot.offset, b->snapshot.offset);
        assert_int_equal(a->snapshot.last, b->snapshot.last);
        assert_int_equal(a->snapshot.data.len, b->snapshot.data.len);
        assert_memory_equal(a->snapshot.data.base, b->snapshot.data.base,
                            a->snapshot.data.len);
        break;
    default:
        /* The remaining bodies are plain values: compare the unions. */
        assert_memory_equal(&a->vote_resp, &b->vote_resp, 1);
        if (a->type == RAFT_MSG_VOTE) {
            assert_int_equal(a->vote.last_index, b->vote.last_index);
            assert_int_equal(a->vote.last_term, b->vote.last_term);
            assert_int_equal(a->vote.pre, b->vote.pre);
            assert_int_equal(a->vote.transfer, b->vote.transfer);
        }
        if (a->type == RAFT_MSG_APPEND_RESP) {
            assert_int_equal(a->append_resp.success, b->append_resp.success);
            assert_int_equal(a->append_resp.index, b->append_resp.index);
            assert_int_equal(a->append_resp.conflict_term,
                             b->append_resp.conflict_term);
            assert_int_equal(a->append_resp.conflict_index,
                             b->append_resp.conflict_index);
            assert_int_equal(a->append_resp.rejected, b->append_resp.rejected);
            assert_int_equal(a->append_resp.read_round,
                             b->append_resp.read_round);
        }
        if (a->type == RAFT_MSG_SNAPSHOT_RESP) {
            assert_int_equal(a->snapshot_resp.index, b->snapshot_resp.index);
            assert_int_equal(a->snapshot_resp.next_offset,
                             b->snapshot_resp.next_offset);
            assert_int_equal(a->snapshot_resp.done, b->snapshot_resp.done);
        }
        break;
    }
}

static void codec_round_trips(void **state)
{
    (void)state;
    struct raft_message m[16], d;
    struct raft_entry scratch[8];
    uint8_t buf[512];
    int n = samples(m);
    for (int k = 0; k < n; k++) {
        size_t len = encode(&m[k], buf, sizeof buf);
        int used = raft_message_decode(buf, len, scratch, 8, &d);
        assert_int_equal(used, (int)len);
        assert_same(&m[k], &d);
    }
}

static void codec_truncation_at_every_byte(void **state)
{
    (void)state;
    struct raft_message m[16], d;
    struct raft_entry scratch[8];
    uint8_t buf[512];
    int n = samples(m);
    for (int k = 0; k < n; k++) {
        size_t len = encode(&m[k], buf, sizeof buf);
        for (size_t cut = 0; cut < len; cut++) {
            /* A copy of exactly cut bytes, so ASan sees any overread. */
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, buf, cut);
            assert_int_equal(raft_message_decode(p, cut, scratch, 8, &d),
                             CRAFT_EPROTO);
            free(p);
        }
    }
}

static void codec_encode_limits(void **state)
{
    (void)state;
    struct raft_message m[16];
    uint8_t buf[512];
    samples(m);
    size_t need = raft_message_encoded_size(&m[2]);
    assert_int_equal(raft_message_encode(&m[2], buf, need - 1), CRAFT_ETOOBIG);
    struct raft_message bad = m[0];
    bad.type = 99;
    assert_int_equal(raft_message_encode(&bad, buf, sizeof buf), CRAFT_EINVAL);
    /* More entries than the caller's scratch: ETOOBIG, not a crash. */
    struct raft_entry scratch[2];
    struct raft_message d;
    size_t len = encode(&m[2], buf, sizeof buf);
    assert_int_equal(raft_message_decode(buf, len, scratch, 2, &d),
                     CRAFT_ETOOBIG);
}

static void codec_rejects_corruption(void **state)
{
    (void)state;
    struct raft_message m[16], d;
    struct raft_entry scratch[8];
    uint8_t buf[512];
    int n = samples(m);
    /* Specific bad fields. */
    size_t len = encode(&m[0], buf, sizeof buf);
    buf[0] = 2; /* version */
    assert_int_equal(raft_message_decode(buf, len, scratch, 8, &d),
                     CRAFT_EPROTO);
    len = encode(&m[0], buf, sizeof buf);
    buf[2] = 1; /* reserved */
    assert_int_equal(raft_message_decode(buf, len, scratch, 8, &d),
                     CRAFT_EPROTO);
    len = encode(&m[0], buf, sizeof buf);
    buf[len - 1] = 4; /* unknown flag */
    assert_int_equal(raft_message_decode(buf, len, scratch, 8, &d),
                     CRAFT_EPROTO);
    len = encode(&m[4], buf, sizeof buf);
    buf[28] = 2; /* bool success = 2 */
    assert_int_equal(raft_message_decode(buf, len, scratch, 8, &d),
                     CRAFT_EPROTO);
    len = encode(&m[2], buf, sizeof buf);
    buf[28 + 32] = 0xff; /* entry count huge */
    assert_int_equal(raft_message_decode(buf, len, scratch, 8, &d),
                     CRAFT_ETOOBIG);
    /* Every single-byte flip of every sample decodes to something valid
     * or fails cleanly. */
    for (int k = 0; k < n; k++) {
        size_t l = encode(&m[k], buf, sizeof buf);
        for (size_t i = 0; i < l; i++) {
            for (int bit = 0; bit < 8; bit++) {
                uint8_t *p = malloc(l);
                memcpy(p, buf, l);
                p[i] ^= (uint8_t)(1u << bit);
                int rv = raft_message_decode(p, l, scratch, 8, &d);
                assert_true(rv == CRAFT_EPROTO || rv == CRAFT_ETOOBIG ||
                            (rv > 0 && (size_t)rv <= l));
                free(p);
            }
        }
    }
}

static void codec_random_garbage(void **state)
{
    (void)state;
    uint64_t x = 12345;
    const char *env = getenv("CRAFT_SEED");
    if (env != NULL) {
        x = strtoull(env, NULL, 0);
    }
    print_message("seed %llu\n", (unsigned long long)x);
    struct raft_entry scratch[64];
    struct raft_message d;
    for (int it = 0; it < 200000; it++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = (size_t)(x >> 40) % 200;
        uint8_t *p = malloc(len ? len : 1);
        uint64_t y = x;
        for (size_t i = 0; i < len; i++) {
            y = y * 6364136223846793005ull + 1;
            p[i] = (uint8_t)(y >> 56);
        }
        /* Often a plausible header, so the bodies get exercised too. */
        if (len >= 2 && (x & 1)) {
            p[0] = RAFT_WIRE_VERSION;
            p[1] = (uint8_t)(1 + (x >> 8) % 7);
            if (len >= 4) {
                p[2] = p[3] = 0;
            }
        }
        int rv = raft_message_decode(p, len, scratch, 64, &d);
        assert_true(rv == CRAFT_EPROTO || rv == CRAFT_ETOOBIG ||
                    (rv > 0 && (size_t)rv <= len));
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec_round_trips),
        cmocka_unit_test(codec_truncation_at_every_byte),
        cmocka_unit_test(codec_encode_limits),
        cmocka_unit_test(codec_rejects_corruption),
        cmocka_unit_test(codec_random_garbage),
    };
    return cmocka_run_group_tests_name("raft_codec", tests, NULL, NULL);
}
