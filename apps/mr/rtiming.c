/*
 * rtiming -- checks that reduces run in parallel (classic test "reduce
 * parallelism").  Map emits the keys a..j; each reduce outputs how many
 * workers were reducing at once.
 */
#include "timing.h"

static int rtiming_map(void *state, const char *filename, const void *contents,
                       size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    int rv = 0;
    for (char k = 'a'; rv == 0 && k <= 'j'; k++) {
        rv = emit_str(out, &k, 1, "1");
    }
    return rv;
}

static int rtiming_reduce(void *state, const void *key, size_t key_len,
                          struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    (void)values;
    int n = nparallel("reduce");
    if (n < 0) {
        return -1;
    }
    return emit_u64(out, key, key_len, (uint64_t)n);
}

MR_PLUGIN_V1(.name = "rtiming", .init = timing_init, .map = rtiming_map,
             .reduce = rtiming_reduce);
