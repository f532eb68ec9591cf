/* The sequential reference run; see seq.h. */
#include "mr/seq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "craft/common.h"
#include "mr/output.h"
#include "mr/plugin.h"
#include "mr/split.h"
#include "mr/task.h"
#include "util/assert.h"

static int seq_maps(const struct mr_seq_config *cfg, struct mr_plugin *p,
                    const char *dir, char ***runs, uint32_t *n_runs,
                    char *errmsg, size_t errlen)
{
    struct mr_split *splits = NULL;
    uint32_t n = 0;
    int rv = 0;
    for (uint32_t i = 0; rv == 0 && i < cfg->n_inputs; i++) {
        rv = mr_split_file(cfg->inputs[i], i, cfg->split_bytes, &splits, &n,
                           errmsg, errlen);
    }
    char **paths = rv == 0 ? calloc(n ? n : 1, sizeof *paths) : NULL;
    if (rv == 0 && !paths) {
        rv = CRAFT_ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
    }
    for (uint32_t m = 0; rv == 0 && m < n; m++) {
        const char *input = cfg->inputs[splits[m].file];
        void *data;
        rv = mr_split_read(input, &splits[m], &data, errmsg, errlen);
        if (rv != 0) {
            break;
        }
        paths[m] = malloc(strlen(dir) + 32);
        if (!paths[m]) {
            free(data);
            rv = CRAFT_ENOMEM;
            break;
        }
        sprintf(paths[m], "%s/map-%u", dir, m);
        char task[32];
        snprintf(task, sizeof task, "map %u", m);
        rv = mr_map_run(p, task, input, data, (size_t)splits[m].length, 1,
                        cfg->sort_bytes, paths[m], NULL, errmsg, errlen);
        free(data);
        *n_runs = m + 1;
    }
    free(splits);
    *runs = paths;
    return rv;
}

int mr_seq_run(const struct mr_seq_config *cfg)
{
    CRAFT_ASSERT(cfg->plugin_path != NULL);
    CRAFT_ASSERT(cfg->output != NULL);
    char errmsg[512] = "";
    char dir[4096];
    if (cfg->work_dir) {
        snprintf(dir, sizeof dir, "%s/craft-mr-seq.XXXXXX", cfg->work_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/craft-mr-seq.XXXXXX", tmp ? tmp : "/tmp");
    }
    if (!mkdtemp(dir)) {
        fprintf(stderr, "craft-mr seq: cannot create a work dir %s\n", dir);
        return CRAFT_EIO;
    }
    struct mr_plugin p;
    int rv =
        mr_plugin_load(&p, cfg->plugin_path, cfg->args, errmsg, sizeof errmsg);
    char **runs = NULL;
    uint32_t n_runs = 0;
    if (rv == 0) {
        rv = seq_maps(cfg, &p, dir, &runs, &n_runs, errmsg, sizeof errmsg);
    }
    struct mr_output out;
    if (rv == 0) {
        rv = mr_output_open(&out, cfg->output, errmsg, sizeof errmsg);
        if (rv == 0) {
            rv = mr_reduce_run(&p, "reduce 0", (const char *const *)runs,
                               n_runs, 1, 0, dir, &out, errmsg, sizeof errmsg);
            if (rv == 0) {
                rv = mr_output_commit(&out, errmsg, sizeof errmsg);
            } else {
                mr_output_abort(&out);
            }
        }
    }
    for (uint32_t i = 0; i < n_runs; i++) {
        if (runs[i]) {
            unlink(runs[i]);
        }
        free(runs[i]);
    }
    free(runs);
    rmdir(dir);
    mr_plugin_close(&p);
    if (rv != 0) {
        fprintf(stderr, "craft-mr seq: %s\n",
                errmsg[0] ? errmsg : craft_strerror(rv));
    }
    return rv;
}
