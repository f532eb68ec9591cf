/* Command-line helpers; see cli.h. */
#include "mr/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"

int mr_arglist_add(struct mr_arglist *a, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "craft-mr: --arg wants KEY=VALUE, got '%s'\n", kv);
        return CRAFT_EINVAL;
    }
    if (a->n == MR_ARGS_MAX || strlen(kv) > MR_ARG_BYTES_MAX) {
        fprintf(stderr,
                "craft-mr: too many or too long --arg (limits %u, "
                "%u bytes)\n",
                MR_ARGS_MAX, MR_ARG_BYTES_MAX);
        return CRAFT_ELIMIT;
    }
    char *copy = strdup(kv);
    if (!copy) {
        return CRAFT_ENOMEM;
    }
    copy[eq - kv] = '\0';
    a->storage[a->n] = copy;
    a->keys[a->n] = copy;
    a->values[a->n] = copy + (eq - kv) + 1;
    a->n++;
    return 0;
}

void mr_arglist_view(const struct mr_arglist *a, struct mr_args *out)
{
    out->n = a->n;
    out->keys = a->keys;
    out->values = a->values;
}

void mr_arglist_free(struct mr_arglist *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->storage[i]);
    }
    a->n = 0;
}

int mr_parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max,
                 uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min ||
        v > max) {
        fprintf(stderr, "craft-mr: %s wants a number in %llu..%llu, got '%s'\n",
                flag, (unsigned long long)min, (unsigned long long)max, s);
        return CRAFT_EINVAL;
    }
    *out = v;
    return 0;
}
