/*
 * Loading a MapReduce plugin (craft/mr.h) and checking it before use.
 *
 * Every error names the plugin (its file name) so that a job failing on a
 * bad plugin says which one: a missing file, a dlopen failure, a missing
 * mr_plugin_v1 symbol, an ABI version or struct size we do not know, a
 * missing map or reduce, or an init() that fails.
 */
#ifndef CRAFT_MR_PLUGIN_H
#define CRAFT_MR_PLUGIN_H

#include <stddef.h>

#include "craft/mr.h"

struct mr_plugin {
    void *dl;
    const struct mr_plugin_v1 *v1;
    void *state;   /* from init() */
    char name[64]; /* file name without directory, for messages */
    struct mr_args args;
};

/* Loads the plugin at path and runs its init() with args (borrowed; must
 * outlive the plugin).  0, or CRAFT_EPLUGIN with the reason in errmsg. */
int mr_plugin_load(struct mr_plugin *p, const char *path,
                   const struct mr_args *args, char *errmsg, size_t errlen);

/* Runs fini().  The shared object stays mapped: unloading buys nothing in a
 * process that exits after the job, and sanitizer reports need the code of
 * plugins that are still on the stack traces (STYLE.md). */
void mr_plugin_close(struct mr_plugin *p);

#endif /* CRAFT_MR_PLUGIN_H */
