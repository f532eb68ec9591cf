/*
 * The concurrency probe of the classic timing plugins: each task creates
 * "mr-worker-<phase>-<pid>" in a directory all workers can see, counts the
 * live processes among such files, sleeps a second and removes its file.
 * Workers have private work dirs, so the shared directory is a job
 * parameter: --arg dir=DIR (default: the worker's current directory).
 */
#ifndef CRAFT_APPS_MR_TIMING_H
#define CRAFT_APPS_MR_TIMING_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "plugin_util.h"

static const char *timing_dir = ".";

static inline int timing_init(const struct mr_args *args, void **state)
{
    const char *dir = mr_arg(args, "dir");
    if (dir) {
        timing_dir = dir;
    }
    *state = NULL;
    return 0;
}

static inline int nparallel(const char *phase)
{
    char path[4096], prefix[64];
    pid_t me = getpid();
    snprintf(prefix, sizeof prefix, "mr-worker-%s-", phase);
    snprintf(path, sizeof path, "%s/%s%d", timing_dir, prefix, (int)me);
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    fclose(f);
    int n = 0;
    DIR *d = opendir(timing_dir);
    if (!d) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) {
            continue;
        }
        long pid = strtol(e->d_name + strlen(prefix), NULL, 10);
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
            n++;
        }
    }
    closedir(d);
    sleep_ms(1000);
    unlink(path);
    return n;
}

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif /* CRAFT_APPS_MR_TIMING_H */
