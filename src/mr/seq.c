/* The sequential reference run; see seq.h. */
#include "mr/seq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "craft/common.h"
#include "mr/guard.h"
#include "mr/output.h"
#include "mr/plugin.h"
#include "mr/split.h"
#include "mr/task.h"
#include "util/assert.h"

/* One map or the reduce, run under the crash guard (guard.h), so that a
 * crashing plugin is reported with its name and task like in a job. */
struct seq_call {
    struct mr_plugin *p;
    const char *task;
    const char *input;
    const void *data;
    size_t len;
    size_t sort_bytes;
    const char *out_path;
    char *const *runs;
    uint32_t n_runs;
    const char *dir;
    struct mr_output *out;
    char *errmsg;
    size_t errlen;
    int rv;
};

static void seq_map_fn(void *arg)
{
    struct seq_call *c = arg;
    c->rv = mr_map_run(c->p, c->task, c->input, c->data, c->len, 1,
                       c->sort_bytes, c->out_path, NULL, c->errmsg, c->errlen);
}

static void seq_reduce_fn(void *arg)
{
    struct seq_call *c = arg;
    c->rv = mr_reduce_run(c->p, c->task, (const char *const *)c->runs,
                          c->n_runs, 1, 0, mr_merge_fanin(c->sort_bytes),
                          c->dir, c->out, c->errmsg, c->errlen);
}

static int guarded(void (*fn)(void *), struct seq_call *c)
{
    int sig = mr_guard_run(fn, c);
    if (sig != 0) {
        snprintf(c->errmsg, c->errlen,
                 "plugin %s, %s: crashed with signal %d (%s)", c->p->name,
                 c->task, sig, strsignal(sig));
        return CRAFT_EPLUGIN;
    }
    return c->rv;
}

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
        struct seq_call call = {.p = p,
                                .task = task,
                                .input = input,
                                .data = data,
                                .len = (size_t)splits[m].length,
                                .sort_bytes = cfg->sort_bytes,
                                .out_path = paths[m],
                                .errmsg = errmsg,
                                .errlen = errlen};
        rv = guarded(seq_map_fn, &call);
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
    mr_guard_install();
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
            struct seq_call call = {.p = &p,
                                    .task = "reduce 0",
                                    .sort_bytes = cfg->sort_bytes,
                                    .runs = runs,
                                    .n_runs = n_runs,
                                    .dir = dir,
                                    .out = &out,
                                    .errmsg = errmsg,
                                    .errlen = sizeof errmsg};
            rv = guarded(seq_reduce_fn, &call);
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
