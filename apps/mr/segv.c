/* segv -- a test plugin whose map dereferences a null pointer. */
#include "craft/mr.h"

static int *volatile nowhere;

/* A real SIGSEGV in every build: UBSan would otherwise report the null
 * store and exit first, which is not the crash this plugin stands for. */
__attribute__((no_sanitize("undefined"))) static int
segv_map(void *state, const char *filename, const void *contents, size_t len,
         struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    (void)out;
    *nowhere = 1;
    return 0;
}

static int segv_reduce(void *state, const void *key, size_t key_len,
                       struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    (void)values;
    return out->emit(out->host, key, key_len, "", 0);
}

MR_PLUGIN_V1(.name = "segv", .map = segv_map, .reduce = segv_reduce);
