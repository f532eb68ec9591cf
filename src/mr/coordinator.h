/*
 * `craft-mr coordinator`: runs one job.  It splits the inputs, serves the
 * plugin and the input splits to workers, hands out tasks through the
 * state machine of sched.h, receives each reduce's output and commits it
 * atomically as <output-dir>/mr-out-<r>, and exits once every output is
 * final (0) or the job has failed (1).
 *
 * One libuv loop on one thread runs everything: the net server, a 100 ms
 * tick (timeouts, progress) and the commits, whose fsync runs on libuv's
 * thread pool and reports back to the loop.
 */
#ifndef CRAFT_MR_COORDINATOR_H
#define CRAFT_MR_COORDINATOR_H

#include <stddef.h>
#include <stdint.h>

#include "craft/mr.h"

struct mr_coord_config {
    const char *plugin_path;
    const char *const *inputs;
    uint32_t n_inputs;
    uint32_t n_reduces;
    const char *listen;    /* "HOST:PORT"; port 0 picks one */
    const char *port_file; /* if set, the port is written there */
    const char *output_dir;
    const struct mr_args *args;
    uint64_t task_timeout_ms;
    uint64_t worker_timeout_ms;
    uint64_t split_bytes;
    uint32_t max_failures;
    uint32_t max_losses;
    int quiet;
};

/* Runs the job to the end.  Returns the process exit status: 0 when every
 * output is final, 1 on failure (the reason printed to stderr). */
int mr_coordinator_run(const struct mr_coord_config *cfg);

#endif /* CRAFT_MR_COORDINATOR_H */
