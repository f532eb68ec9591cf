/*
 * Small helpers shared by the example plugins: emitting C strings and
 * numbers, parsing a decimal value, and a tiny string set.  Header-only so
 * that every plugin stays one self-contained shared object.
 */
#ifndef CRAFT_APPS_MR_PLUGIN_UTIL_H
#define CRAFT_APPS_MR_PLUGIN_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "craft/mr.h"

static inline int emit_str(struct mr_emitter *out, const void *key,
                           size_t key_len, const char *value)
{
    return out->emit(out->host, key, key_len, value, strlen(value));
}

static inline int emit_u64(struct mr_emitter *out, const void *key,
                           size_t key_len, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    return out->emit(out->host, key, key_len, num, (size_t)n);
}

/* A decimal value of at most 20 digits; anything else counts as 0. */
static inline uint64_t parse_u64(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t v = 0;
    if (len > 20) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

static inline int is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* The sum of all values of a key (each a decimal count). */
static inline int sum_values(struct mr_values *values, uint64_t *sum)
{
    const void *v;
    size_t n;
    int rv;
    *sum = 0;
    while ((rv = values->next(values->host, &v, &n)) == 1) {
        *sum += parse_u64(v, n);
    }
    return rv;
}

/* A growable array of owned byte strings, for plugins that gather the values
 * of a key (indexer, crash) -- a handful per key by construction. */
struct strvec {
    char **s;
    size_t n, cap;
};

static inline int strvec_push(struct strvec *sv, const void *p, size_t len)
{
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? 2 * sv->cap : 16;
        char **s = realloc(sv->s, cap * sizeof *s);
        if (!s) {
            return -1;
        }
        sv->s = s;
        sv->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        return -1;
    }
    memcpy(copy, p, len);
    copy[len] = '\0';
    sv->s[sv->n++] = copy;
    return 0;
}

static inline void strvec_free(struct strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        free(sv->s[i]);
    }
    free(sv->s);
    sv->s = NULL;
    sv->n = sv->cap = 0;
}

static inline int strvec_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline void strvec_sort(struct strvec *sv)
{
    if (sv->n > 1) {
        qsort(sv->s, sv->n, sizeof *sv->s, strvec_cmp);
    }
}

/* Gather every value of a key into sv. */
static inline int strvec_gather(struct strvec *sv, struct mr_values *values)
{
    const void *v;
    size_t n;
    int rv;
    while ((rv = values->next(values->host, &v, &n)) == 1) {
        if (strvec_push(sv, v, n) != 0) {
            return -1;
        }
    }
    return rv;
}

/* Join sv with sep into a fresh string (caller frees), NULL on ENOMEM. */
static inline char *strvec_join(const struct strvec *sv, const char *sep,
                                size_t skip_dups)
{
    size_t total = 1;
    for (size_t i = 0; i < sv->n; i++) {
        total += strlen(sv->s[i]) + strlen(sep);
    }
    char *out = malloc(total);
    if (!out) {
        return NULL;
    }
    size_t len = 0;
    for (size_t i = 0; i < sv->n; i++) {
        if (skip_dups && i > 0 && strcmp(sv->s[i], sv->s[i - 1]) == 0) {
            continue;
        }
        if (len > 0) {
            len += (size_t)sprintf(out + len, "%s", sep);
        }
        len += (size_t)sprintf(out + len, "%s", sv->s[i]);
    }
    out[len] = '\0';
    return out;
}

#endif /* CRAFT_APPS_MR_PLUGIN_UTIL_H */
