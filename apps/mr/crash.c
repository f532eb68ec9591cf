/*
 * crash / nocrash -- the classic crash test.  Every map and reduce first
 * kills its whole worker process with exit(1) with probability 330/1000,
 * or sleeps up to --arg max_sleep_ms (default 10000, as in the classic
 * test) with probability 330/1000.  Map emits a=filename,
 * b=len(filename), c=len(contents), d="xyzzy"; reduce joins the sorted
 * values with spaces.  nocrash (built with MR_NOCRASH) is the same without
 * the failures and gives the reference output.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin_util.h"

static long max_sleep_ms = 10000;
static unsigned seed;

static int crash_init(const struct mr_args *args, void **state)
{
    const char *s = mr_arg(args, "max_sleep_ms");
    if (s) {
        max_sleep_ms = strtol(s, NULL, 10);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (unsigned)getpid() * 2654435761u ^ (unsigned)ts.tv_nsec;
    *state = NULL;
    return 0;
}

static void maybe_crash(void)
{
#ifndef MR_NOCRASH
    int r = rand_r(&seed) % 1000;
    if (r < 330) {
        /* Simulates a worker crash: the whole process goes, as a machine
         * failure would, without flushing or saying goodbye. */
        _exit(1);
    }
    if (r < 660 && max_sleep_ms > 0) {
        sleep_ms(rand_r(&seed) % max_sleep_ms);
    }
#endif
}

static int crash_map(void *state, const char *filename, const void *contents,
                     size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)contents;
    maybe_crash();
    int rv = emit_str(out, "a", 1, filename);
    if (rv == 0) {
        rv = emit_u64(out, "b", 1, strlen(filename));
    }
    if (rv == 0) {
        rv = emit_u64(out, "c", 1, len);
    }
    return rv ? rv : emit_str(out, "d", 1, "xyzzy");
}

static int crash_reduce(void *state, const void *key, size_t key_len,
                        struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    maybe_crash();
    struct strvec sv = {0};
    int rv = strvec_gather(&sv, values);
    strvec_sort(&sv);
    char *joined = rv >= 0 ? strvec_join(&sv, " ", 0) : NULL;
    rv = joined ? emit_str(out, key, key_len, joined) : -1;
    free(joined);
    strvec_free(&sv);
    return rv;
}

#ifdef MR_NOCRASH
MR_PLUGIN_V1(.name = "nocrash", .init = crash_init, .map = crash_map,
             .reduce = crash_reduce);
#else
MR_PLUGIN_V1(.name = "crash", .init = crash_init, .map = crash_map,
             .reduce = crash_reduce);
#endif
