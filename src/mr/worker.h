/*
 * `craft-mr worker`: asks the coordinator for tasks until the job is done.
 *
 * A worker needs neither the plugin nor the inputs on its own disk: it
 * downloads the plugin (checked against the coordinator's crc32c) and each
 * map's input split.  Map output stays in the worker's work dir and is
 * served to reducers from a fetch server on an ephemeral port; a reduce
 * fetches its partition of every map output from the workers holding them,
 * merges, runs the plugin and uploads the result to the coordinator.
 *
 * Threads: one libuv loop thread does all network I/O; each map or reduce
 * computation (the plugin code) runs on libuv's thread pool, one at a time.
 * A plugin that crashes (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) in that
 * thread is caught: the task is reported failed with the signal named, and
 * the worker exits, since its memory can no longer be trusted.
 *
 * Memory: the sort buffer and the largest split accepted are each a quarter
 * of --memory-mb; a reduce merges at most MR_MERGE_FANIN buffers of
 * MR_RUN_IO_BYTES; transfers move in MR_CHUNK_BYTES pieces.
 */
#ifndef CRAFT_MR_WORKER_H
#define CRAFT_MR_WORKER_H

#include <stdint.h>

struct mr_worker_config {
    const char *coordinator; /* "HOST:PORT" */
    const char *work_dir;    /* parent of this worker's private dir */
    uint64_t memory_bytes;
    uint64_t connect_timeout_ms; /* give up reaching the coordinator */
    int quiet;
};

/* Runs until the job is done (0) or the worker fails (1, with a message on
 * stderr). */
int mr_worker_run(const struct mr_worker_config *cfg);

#endif /* CRAFT_MR_WORKER_H */
