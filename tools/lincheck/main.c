/*
 * craft-lincheck -- check a key-value history for linearizability.
 *
 *   craft-lincheck [--key KEY] [--steps N] [--timeout-ms N] [--memory-mb N]
 *                  FILE|-
 *
 * The history format is described in lincheck.h and docs/craftd.md.  Exit
 * status: 0 linearizable, 1 not linearizable (the report names the
 * smallest failing window and the command to replay it), 2 unknown (the
 * search budget ran out) or bad input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lincheck.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: craft-lincheck [--key KEY] [--steps N] [--timeout-ms N] "
            "[--memory-mb N] FILE|-\n"
            "  --key KEY        check only this key (\\xHH escapes as in "
            "reports)\n"
            "  --steps N        search steps per key (default %u)\n"
            "  --timeout-ms N   wall-clock budget for the whole check "
            "(default none)\n"
            "  --memory-mb N    search memory per key: interned states, memo "
            "cache\n"
            "                   and work arrays (default %llu); past it the "
            "key is unknown\n"
            "  exit 0 linearizable, 1 not linearizable, 2 unknown (a budget "
            "ran out)\n"
            "  or bad input\n",
            LIN_STEPS_MAX, LIN_MEMORY_BYTES_DEFAULT >> 20);
}

/* Read all of a file (or stdin for "-"); NULL with errno set on failure. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
        if (n == cap) {
            char *b = realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    int bad = buf != NULL && ferror(f);
    if (f != stdin) {
        fclose(f);
    }
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0) {
        return -1;
    }
    *v = x;
    return 0;
}

/* --key accepts the \xHH escapes that reports print. */
static int parse_key(const char *s, struct lin_value *k)
{
    size_t n = strlen(s), o = 0;
    k->nil = false;
    k->p = malloc(n + 1);
    if (k->p == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (s[i] == '\\' && s[i + 1] == 'x' &&
            sscanf(s + i + 2, "%2x", &v) == 1) {
            k->p[o++] = (uint8_t)v;
            i += 3;
        } else {
            k->p[o++] = (uint8_t)s[i];
        }
    }
    k->n = o;
    return 0;
}

int main(int argc, char **argv)
{
    struct lin_options opt = {0};
    struct lin_value key = {0};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--key") == 0 && i + 1 < argc) {
            if (parse_key(argv[++i], &key) != 0) {
                return 2;
            }
            opt.only_key = &key;
        } else if (strcmp(a, "--steps") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], &opt.steps_max) != 0) {
                fprintf(stderr, "craft-lincheck: bad --steps '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--timeout-ms") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], &opt.time_ms) != 0) {
                fprintf(stderr, "craft-lincheck: bad --timeout-ms '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--memory-mb") == 0 && i + 1 < argc) {
            uint64_t mb = 0;
            if (parse_u64(argv[++i], &mb) != 0 || mb == 0 ||
                mb > (UINT64_MAX >> 20)) {
                fprintf(stderr,
                        "craft-lincheck: bad --memory-mb '%s' (a whole "
                        "number of MiB, at least 1)\n",
                        argv[i]);
                return 2;
            }
            opt.memory_bytes = mb << 20;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr,
                    "craft-lincheck: unknown or incomplete option "
                    "'%s'\n",
                    a);
            usage(stderr);
            return 2;
        } else if (path == NULL) {
            path = a;
        } else {
            fprintf(stderr, "craft-lincheck: more than one history file\n");
            return 2;
        }
    }
    if (path == NULL) {
        usage(stderr);
        return 2;
    }
    size_t len = 0;
    char *text = slurp(path, &len);
    if (text == NULL) {
        fprintf(stderr, "craft-lincheck: %s: %s\n", path, strerror(errno));
        free(key.p);
        return 2;
    }
    struct lin_history h;
    lin_history_init(&h);
    char err[256];
    int status = 2;
    if (lin_history_parse(&h, text, len, err, sizeof err) != 0) {
        fprintf(stderr, "craft-lincheck: %s: %s\n", path, err);
        goto out;
    }
    struct lin_result r;
    if (lin_check(&h, &opt, &r) != 0) {
        fprintf(stderr, "craft-lincheck: out of memory\n");
        goto out;
    }
    lin_report(stdout, &h, &r, path);
    status = r.verdict == LIN_OK ? 0 : r.verdict == LIN_ILLEGAL ? 1 : 2;
    lin_result_close(&r);
out:
    lin_history_close(&h);
    free(text);
    free(key.p);
    return status;
}
