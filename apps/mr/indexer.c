/*
 * indexer -- an inverted index.  Map emits (word, document) once per
 * distinct word of its split; reduce outputs "word N doc1,doc2,..." with the
 * documents sorted and N their number.  A large document may be cut into
 * several splits, so reduce removes duplicate documents.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin_util.h"

static int cmp_words(const void *a, const void *b)
{
    const unsigned char *const *x = a, *const *y = b;
    const unsigned char *p = *x, *q = *y;
    while (is_letter(*p) && is_letter(*q) && *p == *q) {
        p++;
        q++;
    }
    int lp = is_letter(*p), lq = is_letter(*q);
    if (lp && lq) {
        return (int)*p - (int)*q;
    }
    return lp - lq;
}

static size_t word_len(const unsigned char *p)
{
    size_t n = 0;
    while (is_letter(p[n])) {
        n++;
    }
    return n;
}

static int indexer_map(void *state, const char *filename, const void *contents,
                       size_t len, struct mr_emitter *out)
{
    (void)state;
    /* Copy with a terminating non-letter so word scans need no bound. */
    unsigned char *s = malloc(len + 1);
    size_t cap = len / 2 + 1, n = 0;
    const unsigned char **words = malloc(cap * sizeof *words);
    if (!s || !words) {
        free(s);
        free(words);
        return -1;
    }
    memcpy(s, contents, len);
    s[len] = '\0';
    for (size_t i = 0; i < len;) {
        while (i < len && !is_letter(s[i])) {
            i++;
        }
        if (i < len) {
            words[n++] = s + i;
        }
        while (i < len && is_letter(s[i])) {
            i++;
        }
    }
    qsort(words, n, sizeof *words, cmp_words);
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < n; i++) {
        if (i > 0 && cmp_words(&words[i - 1], &words[i]) == 0) {
            continue;
        }
        rv = emit_str(out, words[i], word_len(words[i]), filename);
    }
    free(words);
    free(s);
    return rv;
}

static int indexer_reduce(void *state, const void *key, size_t key_len,
                          struct mr_values *values, struct mr_emitter *out)
{
    (void)state;
    struct strvec docs = {0};
    int rv = strvec_gather(&docs, values);
    if (rv < 0) {
        strvec_free(&docs);
        return rv;
    }
    strvec_sort(&docs);
    size_t distinct = 0;
    for (size_t i = 0; i < docs.n; i++) {
        distinct += i == 0 || strcmp(docs.s[i], docs.s[i - 1]) != 0;
    }
    char *joined = strvec_join(&docs, ",", 1);
    char *line = joined ? malloc(strlen(joined) + 24) : NULL;
    rv = -1;
    if (line) {
        sprintf(line, "%zu %s", distinct, joined);
        rv = emit_str(out, key, key_len, line);
    }
    free(line);
    free(joined);
    strvec_free(&docs);
    return rv;
}

MR_PLUGIN_V1(.name = "indexer", .map = indexer_map, .reduce = indexer_reduce);
