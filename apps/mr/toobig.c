/* toobig -- a test plugin whose map emits a key one byte over MR_KEY_MAX
 * and ignores the error, as a careless plugin would. */
#include <stdlib.h>
#include <string.h>

#include "craft/mr.h"

static int toobig_map(void *state, const char *filename, const void *contents,
                      size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    char *key = calloc(1, MR_KEY_MAX + 1);
    if (!key) {
        return -1;
    }
    memset(key, 'k', MR_KEY_MAX + 1);
    (void)out->emit(out->host, key, MR_KEY_MAX + 1, "v", 1);
    free(key);
    return 0;
}

static int toobig_reduce(void *state, const void *key, size_t key_len,
                         struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    (void)values;
    return out->emit(out->host, key, key_len, "", 0);
}

MR_PLUGIN_V1(.name = "toobig", .map = toobig_map, .reduce = toobig_reduce);
