/* bad_abi -- a test plugin that claims a future ABI version; loading it
 * must fail with an error naming the plugin. */
#include "craft/mr.h"

static int map(void *state, const char *filename, const void *contents,
               size_t len, struct mr_emitter *out)
{
    (void)state;
    (void)filename;
    (void)contents;
    (void)len;
    (void)out;
    return 0;
}

__attribute__((visibility("default")))
const struct mr_plugin_v1 mr_plugin_v1 = {.abi_version = 99,
                                          .struct_size =
                                              sizeof(struct mr_plugin_v1),
                                          .name = "bad_abi",
                                          .map = map};
