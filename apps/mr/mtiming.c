/*
 * mtiming -- checks that maps run in parallel (classic test "map
 * parallelism").  Each map emits ("times-<pid>", start time) and
 * ("parallel-<pid>", how many workers were mapping at once); reduce joins
 * the sorted values with spaces.
 */
#include "timing.h"

static int mtiming_map(void *state, const char *filename, const void *contents,
                       size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    double t0 = now_seconds();
    int n = nparallel("map");
    if (n < 0) {
        return -1;
    }
    char key[64], val[64];
    int pid = (int)getpid();
    int kn = snprintf(key, sizeof key, "times-%d", pid);
    snprintf(val, sizeof val, "%.1f", t0);
    int rv = emit_str(out, key, (size_t)kn, val);
    kn = snprintf(key, sizeof key, "parallel-%d", pid);
    snprintf(val, sizeof val, "%d", n);
    return rv ? rv : emit_str(out, key, (size_t)kn, val);
}

static int mtiming_reduce(void *state, const void *key, size_t key_len,
                          struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    struct strvec sv = {0};
    int rv = strvec_gather(&sv, values);
    strvec_sort(&sv);
    char *joined = rv >= 0 ? strvec_join(&sv, " ", 0) : NULL;
    rv = joined ? emit_str(out, key, key_len, joined) : -1;
    free(joined);
    strvec_free(&sv);
    return rv;
}

MR_PLUGIN_V1(.name = "mtiming", .init = timing_init, .map = mtiming_map,
             .reduce = mtiming_reduce);
