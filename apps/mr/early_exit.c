/*
 * early_exit -- catches processes that exit before the job is done
 * (classic test "early exit").  Map emits (filename, "1"); reduce sleeps
 * 3 s for the keys containing "sherlock" or "tom", so some reduces finish
 * long after others, and outputs the count.
 */
#include <string.h>

#include "plugin_util.h"

static int early_map(void *state, const char *filename, const void *contents,
                     size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)contents;
    (void)len;
    return emit_str(out, filename, strlen(filename), "1");
}

static int early_reduce(void *state, const void *key, size_t key_len,
                        struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    if (memmem(key, key_len, "sherlock", 8) || memmem(key, key_len, "tom", 3)) {
        sleep_ms(3000);
    }
    const void *v;
    size_t n;
    uint64_t count = 0;
    int rv;
    while ((rv = values->next(values->host, &v, &n)) == 1) {
        count++;
    }
    return rv < 0 ? rv : emit_u64(out, key, key_len, count);
}

MR_PLUGIN_V1(.name = "early_exit", .map = early_map, .reduce = early_reduce);
