/*
 * hang -- a test plugin that never returns when told to: with --arg
 * hang=map every map call sleeps forever, with --arg hang=reduce every
 * reduce call does (a plugin stuck in a loop).  With --arg exit=map (or
 * reduce) that call ends the process with exit(3) instead, with --arg
 * _exit=map (or reduce) with _exit(3), skipping atexit handlers.
 * Otherwise it counts lines: one output line "lines N" for the whole job.
 */
#include <unistd.h>

#include "plugin_util.h"

static const char *hang_in, *exit_in, *quick_exit_in;

static int hang_init(const struct mr_args *args, void **state)
{
    hang_in = mr_arg(args, "hang");
    exit_in = mr_arg(args, "exit");
    quick_exit_in = mr_arg(args, "_exit");
    *state = NULL;
    return 0;
}

static void maybe_hang(const char *where)
{
    if (exit_in && strcmp(exit_in, where) == 0) {
        exit(3);
    }
    if (quick_exit_in && strcmp(quick_exit_in, where) == 0) {
        _exit(3);
    }
    if (hang_in && strcmp(hang_in, where) == 0) {
        for (;;) {
            sleep_ms(1000);
        }
    }
}

static int hang_map(void *state, const char *filename, const void *contents,
                    size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    maybe_hang("map");
    uint64_t lines = 0;
    const char *p = contents;
    for (size_t i = 0; i < len; i++) {
        lines += p[i] == '\n';
    }
    return emit_u64(out, "lines", 5, lines);
}

static int hang_reduce(void *state, const void *key, size_t key_len,
                       struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    maybe_hang("reduce");
    uint64_t sum = 0;
    const void *v;
    size_t vlen;
    int rv;
    while ((rv = values->next(values->host, &v, &vlen)) == 1) {
        sum += parse_u64(v, vlen);
    }
    return rv < 0 ? rv : emit_u64(out, key, key_len, sum);
}

MR_PLUGIN_V1(.name = "hang", .init = hang_init, .map = hang_map,
             .reduce = hang_reduce);
