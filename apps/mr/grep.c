/*
 * grep -- distributed grep, the first example of the MapReduce paper.
 * The pattern is a POSIX extended regular expression given as
 * --arg pattern=RE (--arg icase=1 ignores case).  Map emits (line, file) for
 * every matching line; reduce outputs "line N file1,file2,..." with the
 * number of matching occurrences and the files they were in.
 */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_util.h"

struct grep_state {
    regex_t re;
};

static int grep_init(const struct mr_args *args, void **state)
{
    const char *pattern = mr_arg(args, "pattern");
    const char *icase = mr_arg(args, "icase");
    if (!pattern) {
        fprintf(stderr, "grep: missing --arg pattern=REGEX\n");
        return -1;
    }
    struct grep_state *g = malloc(sizeof *g);
    if (!g) {
        return -1;
    }
    int flags = REG_EXTENDED | REG_NOSUB;
    if (icase && strcmp(icase, "0") != 0) {
        flags |= REG_ICASE;
    }
    if (regcomp(&g->re, pattern, flags) != 0) {
        fprintf(stderr, "grep: bad pattern '%s'\n", pattern);
        free(g);
        return -1;
    }
    *state = g;
    return 0;
}

static void grep_fini(void *state)
{
    struct grep_state *g = state;
    regfree(&g->re);
    free(g);
}

static int grep_map(void *state, const char *filename, const void *contents,
                    size_t len, struct mr_emitter *out)
{
    struct grep_state *g = state;
    const char *s = contents;
    char *line = NULL;
    size_t cap = 0;
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < len;) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : len - i;
        if (n + 1 > cap) {
            cap = 2 * (n + 1);
            free(line);
            line = malloc(cap);
            if (!line) {
                return -1;
            }
        }
        memcpy(line, s + i, n);
        line[n] = '\0';
        if (n > 0 && line[n - 1] == '\r') {
            line[--n] = '\0';
        }
        if (regexec(&g->re, line, 0, NULL, 0) == 0) {
            rv = emit_str(out, line, n, filename);
        }
        i += (nl ? (size_t)(nl - (s + i)) + 1 : len - i);
    }
    free(line);
    return rv;
}

static int grep_reduce(void *state, const void *key, size_t key_len,
                       struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    struct strvec files = {0};
    int rv = strvec_gather(&files, values);
    if (rv < 0) {
        strvec_free(&files);
        return rv;
    }
    strvec_sort(&files);
    char *joined = strvec_join(&files, ",", 1);
    char *val = joined ? malloc(strlen(joined) + 24) : NULL;
    rv = -1;
    if (val) {
        sprintf(val, "%zu %s", files.n, joined);
        rv = emit_str(out, key, key_len, val);
    }
    free(val);
    free(joined);
    strvec_free(&files);
    return rv;
}

MR_PLUGIN_V1(.name = "grep", .init = grep_init, .fini = grep_fini,
             .map = grep_map, .reduce = grep_reduce);
