/*
 * Running one map or reduce task on local files, in bounded memory.  Used
 * by `craft-mr seq` and by workers; knows nothing of the network.
 *
 * Map side.  Emitted records are copied into a sort buffer of at most
 * sort_bytes (records plus a 16-byte sort entry each).  When it is full,
 * the buffer is sorted by (partition, key), passed through the combiner if
 * the plugin has one, and spilled as a run file (run.h).  At the end the
 * spills are merged (combining again) into the task's one output run, so
 * the task's memory is sort_bytes plus the input split, whatever it emits.
 *
 * Reduce side.  The inputs are runs (for a worker: the segments it fetched,
 * each stored as a one-partition run).  At most MR_MERGE_FANIN are merged at
 * once; more are first merged in groups into intermediate runs.  reduce()
 * gets each key with an iterator over its values, in key order.
 *
 * Errors name the plugin and the task (task_name, e.g. "map 3") in errmsg:
 * a callback returning non-zero, an emit over the limits of craft/mr.h, a
 * combiner emitting a key other than the one it was given, or I/O.
 */
#ifndef CRAFT_MR_TASK_H
#define CRAFT_MR_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "mr/output.h"
#include "mr/plugin.h"

/* The smallest useful sort buffer: one maximal record must fit. */
#define MR_SORT_BYTES_MIN (64u * 1024u)

struct mr_map_stats {
    uint64_t records;   /* emitted by map() */
    uint64_t out_bytes; /* size of the output run */
    uint32_t spills;
};

/* Runs map over one split and writes out_path, a run of n_partitions
 * partitions.  Spills go next to out_path (out_path.spillN) and are
 * removed.  0, or
 * CRAFT_EPLUGIN / CRAFT_EIO / CRAFT_ENOSPC / CRAFT_ENOMEM with errmsg. */
int mr_map_run(struct mr_plugin *p, const char *task_name, const char *filename,
               const void *contents, size_t len, uint32_t n_partitions,
               size_t sort_bytes, const char *out_path,
               struct mr_map_stats *stats, char *errmsg, size_t errlen);

/* Merges partition `part` of the n runs at paths (each of n_partitions
 * partitions), calls reduce for every key and writes the lines to out.
 * work_dir holds intermediate merges (removed afterwards). */
int mr_reduce_run(struct mr_plugin *p, const char *task_name,
                  const char *const *paths, uint32_t n, uint32_t n_partitions,
                  uint32_t part, const char *work_dir, struct mr_output *out,
                  char *errmsg, size_t errlen);

/* Merges the n runs at paths into one run at out_path, partition by
 * partition, through the plugin's combiner if p != NULL and it has one.
 * Intermediate passes (n > MR_MERGE_FANIN) write next to out_path. */
int mr_merge_runs(struct mr_plugin *p, const char *task_name,
                  const char *const *paths, uint32_t n, uint32_t n_partitions,
                  const char *out_path, char *errmsg, size_t errlen);

#endif /* CRAFT_MR_TASK_H */
