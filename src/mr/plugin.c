/* Plugin loading and validation; see plugin.h. */
#include "mr/plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "craft/common.h"
#include "util/assert.h"

int mr_plugin_load(struct mr_plugin *p, const char *path,
                   const struct mr_args *args, char *errmsg, size_t errlen)
{
    CRAFT_ASSERT(path != NULL);
    memset(p, 0, sizeof *p);
    const char *base = strrchr(path, '/');
    snprintf(p->name, sizeof p->name, "%s", base ? base + 1 : path);
    p->args = *args;
    /* RTLD_LOCAL: two plugins never see each other's symbols; RTLD_NOW:
     * an unresolved symbol fails here, not in the middle of a task. */
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        snprintf(errmsg, errlen, "plugin %s: cannot load: %s", p->name,
                 dlerror());
        return CRAFT_EPLUGIN;
    }
    const struct mr_plugin_v1 *v1 = dlsym(p->dl, MR_PLUGIN_SYMBOL);
    if (!v1) {
        snprintf(errmsg, errlen,
                 "plugin %s: no symbol %s (declare it with MR_PLUGIN_V1)",
                 p->name, MR_PLUGIN_SYMBOL);
        return CRAFT_EPLUGIN;
    }
    if (v1->abi_version != MR_ABI_VERSION) {
        snprintf(errmsg, errlen,
                 "plugin %s: ABI version %u, this craft-mr supports %u",
                 p->name, v1->abi_version, MR_ABI_VERSION);
        return CRAFT_EPLUGIN;
    }
    if (v1->struct_size < sizeof(struct mr_plugin_v1)) {
        snprintf(errmsg, errlen, "plugin %s: struct size %u, expected %zu",
                 p->name, v1->struct_size, sizeof(struct mr_plugin_v1));
        return CRAFT_EPLUGIN;
    }
    if (!v1->map || !v1->reduce) {
        snprintf(errmsg, errlen, "plugin %s: missing %s function", p->name,
                 v1->map ? "reduce" : "map");
        return CRAFT_EPLUGIN;
    }
    if (v1->init && v1->init(&p->args, &p->state) != 0) {
        snprintf(errmsg, errlen, "plugin %s: init failed", p->name);
        return CRAFT_EPLUGIN;
    }
    p->v1 = v1;
    return 0;
}

void mr_plugin_close(struct mr_plugin *p)
{
    if (p->v1 && p->v1->fini) {
        p->v1->fini(p->state);
    }
    p->v1 = NULL;
    p->state = NULL;
}
