/*
 * jobcount -- counts map executions (classic test "job count").  Each map
 * leaves a file "mr-worker-jobcount-<pid>-<n>" in --arg dir=DIR, sleeps
 * 2000-4999 ms and emits ("a", "x"); reduce outputs the number of such
 * files.  With 8 inputs the answer must be 8: a map that ran twice (an
 * early backup task, a duplicate issue) shows up as 9.
 */
#include <dirent.h>

#include "timing.h"

static int jobcount_n;

static int jobcount_map(void *state, const char *filename, const void *contents,
                        size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    char path[4096];
    snprintf(path, sizeof path, "%s/mr-worker-jobcount-%d-%d", timing_dir,
             (int)getpid(), jobcount_n++);
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    fclose(f);
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL) ^
                    (unsigned)jobcount_n * 7919u;
    sleep_ms(2000 + rand_r(&seed) % 3000);
    return emit_str(out, "a", 1, "x");
}

static int jobcount_reduce(void *state, const void *key, size_t key_len,
                           struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    (void)values;
    DIR *d = opendir(timing_dir);
    if (!d) {
        return -1;
    }
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += strncmp(e->d_name, "mr-worker-jobcount", 18) == 0;
    }
    closedir(d);
    return emit_u64(out, key, key_len, n);
}

MR_PLUGIN_V1(.name = "jobcount", .init = timing_init, .map = jobcount_map,
             .reduce = jobcount_reduce);
