/*
 * slowwc -- wc with pauses, for the fault-tolerance tests: every map
 * sleeps --arg map_sleep_ms and every reduce task --arg reduce_sleep_ms
 * before its first key, so a test can kill a worker while it is surely
 * mid-map or mid-reduce.  With --arg dir=DIR, each pause is announced by a
 * file DIR/slowwc-{map,reduce}-<pid> that exists only during the pause.
 * The output is exactly wc's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WC_NO_EXPORT 1
#include "wc.c"

static long map_sleep, reduce_sleep;
static const char *marker_dir;

/* Sleeps ms, with the marker file of `phase` present meanwhile. */
static void pause_ms(const char *phase, long ms)
{
    char path[4096];
    if (marker_dir) {
        snprintf(path, sizeof path, "%s/slowwc-%s-%d", marker_dir, phase,
                 (int)getpid());
        FILE *f = fopen(path, "w");
        if (f) {
            fclose(f);
        }
    }
    sleep_ms(ms);
    if (marker_dir) {
        unlink(path);
    }
}

/* The last key reduced by this process.  Keys of one reduce task come in
 * strictly increasing order, so a key that is not greater than the last
 * one starts a new task (a worker runs one task at a time). */
static unsigned char last_key[256];
static size_t last_len;
static int have_last;

static int slow_init(const struct mr_args *args, void **state)
{
    const char *m = mr_arg(args, "map_sleep_ms");
    const char *r = mr_arg(args, "reduce_sleep_ms");
    map_sleep = m ? strtol(m, NULL, 10) : 0;
    reduce_sleep = r ? strtol(r, NULL, 10) : 0;
    marker_dir = mr_arg(args, "dir");
    *state = NULL;
    return 0;
}

static int slow_map(void *state, const char *filename, const void *contents,
                    size_t len, struct mr_emitter *out)
{
    if (map_sleep > 0) {
        pause_ms("map", map_sleep);
    }
    return wc_map(state, filename, contents, len, out);
}

static int key_le_last(const void *key, size_t len)
{
    size_t n = len < last_len ? len : last_len;
    int c = memcmp(key, last_key, n);
    return c < 0 || (c == 0 && len <= last_len);
}

static int slow_reduce(void *state, const void *key, size_t key_len,
                       struct mr_values *values, struct mr_emitter *out)
{
    if (reduce_sleep > 0 && (!have_last || key_le_last(key, key_len))) {
        pause_ms("reduce", reduce_sleep);
    }
    have_last = 1;
    last_len = key_len < sizeof last_key ? key_len : sizeof last_key;
    memcpy(last_key, key, last_len);
    return wc_reduce(state, key, key_len, values, out);
}

MR_PLUGIN_V1(.name = "slowwc", .init = slow_init, .map = slow_map,
             .reduce = slow_reduce, .combine = wc_reduce);
