/*
 * Command-line helpers shared by the craft-mr subcommands: --arg lists and
 * number parsing with clear errors.
 */
#ifndef CRAFT_MR_CLI_H
#define CRAFT_MR_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "craft/mr.h"

/* At most this many --arg parameters; each KEY=VALUE at most
 * MR_ARG_BYTES_MAX bytes.  They travel to every worker in one frame. */
#define MR_ARGS_MAX 64u
#define MR_ARG_BYTES_MAX 4096u

struct mr_arglist {
    const char *keys[MR_ARGS_MAX];
    const char *values[MR_ARGS_MAX];
    char *storage[MR_ARGS_MAX];
    size_t n;
};

/* Adds "KEY=VALUE" (copied).  0 or CRAFT_EINVAL / CRAFT_ELIMIT with a
 * message on stderr. */
int mr_arglist_add(struct mr_arglist *a, const char *kv);

void mr_arglist_view(const struct mr_arglist *a, struct mr_args *out);

void mr_arglist_free(struct mr_arglist *a);

/* Parses a decimal in [min, max]; 0 or CRAFT_EINVAL with a message naming
 * the flag on stderr. */
int mr_parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max,
                 uint64_t *out);

#endif /* CRAFT_MR_CLI_H */
