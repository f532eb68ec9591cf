/* fail -- a test plugin whose map always returns an error. */
#include "craft/mr.h"

static int fail_map(void *state, const char *filename, const void *contents,
                    size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    (void)out;
    return -1;
}

static int fail_reduce(void *state, const void *key, size_t key_len,
                       struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    (void)values;
    return out->emit(out->host, key, key_len, "", 0);
}

MR_PLUGIN_V1(.name = "fail", .map = fail_map, .reduce = fail_reduce);
