/*
 * libFuzzer target for the RESP request parser (src/server/resp.c), the
 * first code every client byte meets.
 *
 * The first input byte picks the limits (so that the "too big" paths are
 * reached with small inputs) and how the rest is cut into reads; the rest
 * is the byte stream of one connection.  Checked on every input:
 *   1. the stream parsed in one piece and the stream fed in the chosen
 *      pieces (the way read callbacks deliver it) give the same commands
 *      and the same final outcome (error text, or waiting for more);
 *   2. every command has 1 <= argc <= args_max and arguments within
 *      bulk_max (inline ones: inline_max), and consumed never exceeds
 *      what was offered;
 *   3. every parsed command, re-encoded as a multibulk request, parses back
 *      to the same arguments in exactly the encoded length.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "fuzz.h"
#include "server/resp.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct outcome {
    struct buf cmds; /* every command, re-encoded back to back */
    size_t n_cmds;
    bool failed;  /* false: the stream ended waiting for more */
    char err[80]; /* the error text if failed (copied: it may point into
                     the parser) */
};

static void check_round_trip(const struct resp_limits *lim,
                             const struct resp_cmd *cmd)
{
    struct buf enc;
    buf_init(&enc);
    CHECK(resp_write_command(&enc, cmd->argc, cmd->argv, cmd->lens) == 0);
    struct resp_parser q;
    resp_parser_init(&q, lim, NULL);
    struct resp_cmd again;
    size_t used = 0;
    CHECK(resp_parse(&q, enc.data, enc.len, &again, &used) == RESP_OK);
    CHECK(used == enc.len);
    CHECK(again.argc == cmd->argc);
    for (size_t i = 0; i < cmd->argc; i++) {
        CHECK(again.lens[i] == cmd->lens[i]);
        CHECK(cmd->lens[i] == 0 ||
              memcmp(again.argv[i], cmd->argv[i], cmd->lens[i]) == 0);
    }
    resp_parser_close(&q);
    buf_close(&enc);
}

/* Feed data[0, size) in pieces of `piece` bytes (all at once if 0). */
static void run(const struct resp_limits *lim, const uint8_t *data, size_t size,
                size_t piece, struct outcome *out)
{
    struct resp_parser p;
    resp_parser_init(&p, lim, NULL);
    buf_init(&out->cmds);
    out->n_cmds = 0;
    out->failed = false;
    out->err[0] = '\0';
    size_t start = 0;
    size_t avail = piece == 0 || piece > size ? size : piece;
    for (;;) {
        struct resp_cmd cmd;
        size_t used = 0;
        int rv = resp_parse(&p, data + start, avail - start, &cmd, &used);
        CHECK(used <= avail - start);
        if (rv == RESP_EPROTO) {
            CHECK(p.err != NULL);
            out->failed = true;
            snprintf(out->err, sizeof out->err, "%s", p.err);
            break;
        }
        CHECK(rv == RESP_OK || rv == RESP_NEED_MORE);
        start += used;
        if (rv == RESP_OK) {
            CHECK(used > 0);
            CHECK(cmd.argc >= 1 && cmd.argc <= lim->args_max);
            /* Inline arguments are bounded by inline_max, multibulk ones
             * by bulk_max (as in Redis). */
            for (size_t i = 0; i < cmd.argc; i++) {
                CHECK(cmd.lens[i] <= lim->bulk_max ||
                      cmd.lens[i] <= lim->inline_max);
            }
            struct resp_limits big = *lim;
            if (big.bulk_max < big.inline_max) {
                big.bulk_max = big.inline_max;
            }
            check_round_trip(&big, &cmd);
            CHECK(resp_write_command(&out->cmds, cmd.argc, cmd.argv,
                                     cmd.lens) == 0);
            out->n_cmds++;
            continue;
        }
        if (avail == size) {
            break;
        }
        avail = avail + piece > size ? size : avail + piece;
    }
    resp_parser_close(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t mode = data[0];
    data++;
    size--;
    struct resp_limits lim = {RESP_BULK_MAX, RESP_ARGS_MAX, RESP_INLINE_MAX};
    if (mode & 0x80) {
        /* Small limits, so that every "too big" path is reachable. */
        lim.bulk_max = 1u + (mode & 0x0f);
        lim.args_max = 1u + ((mode >> 4) & 0x03);
        lim.inline_max = 16u + (mode & 0x1f);
    }
    size_t piece = (size_t)((mode >> 1) & 0x07) + 1;
    struct outcome whole, pieces;
    run(&lim, data, size, 0, &whole);
    run(&lim, data, size, piece, &pieces);
    CHECK(whole.n_cmds == pieces.n_cmds);
    CHECK(whole.cmds.len == pieces.cmds.len);
    CHECK(whole.cmds.len == 0 ||
          memcmp(whole.cmds.data, pieces.cmds.data, whole.cmds.len) == 0);
    CHECK(whole.failed == pieces.failed);
    CHECK(strcmp(whole.err, pieces.err) == 0);
    buf_close(&whole.cmds);
    buf_close(&pieces.cmds);
    return 0;
}

/* ---- seeds ---- */

static void write_seeds(const char *dir, uint8_t mode)
{
    static const char *const streams[] = {
        ("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
         "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"),
        "PING\r\nSET k \"a\\x41\\n b\" 'c\\'d'\nGET k\r\n",
        "*0\r\n*-1\r\n\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
        "*1\r\n$1073741824\r\n",
        "*1000000\r\n$1\r\na\r\n",
        "*2\r\n$3\r\nGET\r\n$1\r\nkX\r\n",
    };
    for (unsigned i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        /* Default limits in pieces of 1 and of 4; small limits. */
        fuzz_seed(dir, 3 * i, (uint8_t)(mode & 0x01), streams[i],
                  strlen(streams[i]));
        fuzz_seed(dir, 3 * i + 1, (uint8_t)(mode | 0x06), streams[i],
                  strlen(streams[i]));
        fuzz_seed(dir, 3 * i + 2, (uint8_t)(mode | 0x80 | 0x24), streams[i],
                  strlen(streams[i]));
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_maybe_write_seeds(write_seeds);
    return 0;
}
