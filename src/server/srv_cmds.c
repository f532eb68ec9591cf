/*
 * Connection-level command helpers of the front end (see srv_cmds.h).
 *
 * WATCH.  The backend answers a WATCH op with the versions of its keys (a
 * linearizable read); the connection keeps them here until EXEC, which
 * hands the list to the backend inside its op (srv_op.watch), or until
 * UNWATCH, DISCARD or a failed EXEC drops it.
 */
#include "server/srv_cmds.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "util/assert.h"

void srv__watch_free(struct srv_watch *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        free(w->keys[i]);
    }
    free(w->keys);
    free(w->lens);
    free(w->versions);
    free(w);
}

/* Parse ":<digits>\r\n" at p[*off, n); -1 if it is not there. */
static int parse_int(const uint8_t *p, size_t n, size_t *off, uint64_t *v)
{
    size_t i = *off;
    if (i >= n || p[i] != ':') {
        return -1;
    }
    uint64_t x = 0;
    size_t digits = 0;
    for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        if (x > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    if (digits == 0 || i + 2 > n || p[i] != '\r' || p[i + 1] != '\n') {
        return -1;
    }
    *off = i + 2;
    *v = x;
    return 0;
}

static bool watching(const struct srv_watch *w, const uint8_t *k, size_t n)
{
    for (size_t i = 0; w != NULL && i < w->n; i++) {
        if (w->lens[i] == n && memcmp(w->keys[i], k, n) == 0) {
            return true;
        }
    }
    return false;
}

static int grow(struct srv_watch *w, size_t need)
{
    if (need <= w->cap) {
        return 0;
    }
    size_t cap = w->cap ? w->cap : 8;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t **k = realloc(w->keys, cap * sizeof *k);
    if (k != NULL) {
        w->keys = k;
    }
    size_t *l = realloc(w->lens, cap * sizeof *l);
    if (l != NULL) {
        w->lens = l;
    }
    uint64_t *v = realloc(w->versions, cap * sizeof *v);
    if (v != NULL) {
        w->versions = v;
    }
    if (k == NULL || l == NULL || v == NULL) {
        return CRAFT_ENOMEM;
    }
    w->cap = cap;
    return 0;
}

/* The versions of a WATCH reply, "*<n>\r\n" and n integers, into ver. */
static int parse_versions(const uint8_t *reply, size_t len, size_t n,
                          uint64_t *ver)
{
    char head[32];
    int hn = snprintf(head, sizeof head, "*%zu\r\n", n);
    if (len < (size_t)hn || memcmp(reply, head, (size_t)hn) != 0) {
        return CRAFT_EPROTO;
    }
    size_t off = (size_t)hn;
    for (size_t i = 0; i < n; i++) {
        if (parse_int(reply, len, &off, &ver[i]) != 0) {
            return CRAFT_EPROTO;
        }
    }
    return off == len ? 0 : CRAFT_EPROTO;
}

/* Append the keys not watched yet; on error w is as it was. */
static int add_keys(struct srv_watch *w, size_t argc, uint8_t *const *argv,
                    const size_t *lens, const uint64_t *ver)
{
    size_t n0 = w->n;
    int rv = 0;
    for (size_t i = 1; rv == 0 && i < argc; i++) {
        if (watching(w, argv[i], lens[i])) {
            continue;
        }
        rv = w->n >= SRV_WATCH_MAX ? CRAFT_ELIMIT : grow(w, w->n + 1);
        uint8_t *k = rv == 0 ? malloc(lens[i] ? lens[i] : 1) : NULL;
        if (k == NULL) {
            rv = rv != 0 ? rv : CRAFT_ENOMEM;
            break;
        }
        memcpy(k, argv[i], lens[i]);
        w->keys[w->n] = k;
        w->lens[w->n] = lens[i];
        w->versions[w->n] = ver[i - 1];
        w->n++;
    }
    while (rv != 0 && w->n > n0) {
        free(w->keys[--w->n]);
    }
    return rv;
}

int srv__watch_add(struct srv_watch **wp, size_t argc, uint8_t *const *argv,
                   const size_t *lens, const uint8_t *reply, size_t reply_len)
{
    CRAFT_ASSERT(wp != NULL);
    CRAFT_ASSERT(argc >= 2);
    uint64_t stack[16];
    uint64_t *ver = argc - 1 <= 16 ? stack : malloc((argc - 1) * sizeof *ver);
    if (ver == NULL) {
        return CRAFT_ENOMEM;
    }
    int rv = parse_versions(reply, reply_len, argc - 1, ver);
    struct srv_watch *w = *wp;
    if (rv == 0 && w == NULL) {
        w = calloc(1, sizeof *w);
        rv = w == NULL ? CRAFT_ENOMEM : 0;
    }
    if (rv == 0) {
        rv = add_keys(w, argc, argv, lens, ver);
        if (rv != 0 && *wp == NULL) {
            srv__watch_free(w);
        } else if (rv == 0) {
            *wp = w;
        }
    }
    if (ver != stack) {
        free(ver);
    }
    return rv;
}
