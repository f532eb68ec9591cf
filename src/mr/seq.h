/*
 * `craft-mr seq`: the sequential reference run of a plugin.  The same map
 * and reduce code paths as a distributed job (split, sort, spill, merge),
 * with one partition, in one process, with no network.
 */
#ifndef CRAFT_MR_SEQ_H
#define CRAFT_MR_SEQ_H

#include <stddef.h>
#include <stdint.h>

#include "craft/mr.h"

struct mr_seq_config {
    const char *plugin_path;
    const char *output;   /* final output file */
    const char *work_dir; /* NULL: a fresh directory under $TMPDIR */
    const struct mr_args *args;
    const char *const *inputs;
    uint32_t n_inputs;
    uint64_t split_bytes;
    size_t sort_bytes;
};

/* Runs the job; 0 or an error code, with the reason printed to stderr. */
int mr_seq_run(const struct mr_seq_config *cfg);

#endif /* CRAFT_MR_SEQ_H */
