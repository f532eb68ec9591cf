/*
 * glob.c -- glob matching with single-star backtracking.  Every pattern
 * token other than * matches exactly one byte, so the classic greedy
 * algorithm (remember the last *, and on a mismatch let it swallow one more
 * byte) decides a match without recursion.
 */
#include "kv/glob.h"

#include "util/assert.h"

/* Does byte c match the single-byte token at p[0, pn) (not '*')?  *len is
 * set to the token's length in the pattern. */
static int match_token(const uint8_t *p, size_t pn, uint8_t c, size_t *len)
{
    CRAFT_ASSERT(pn > 0 && p[0] != '*');
    if (p[0] == '?') {
        *len = 1;
        return 1;
    }
    if (p[0] == '\\' && pn >= 2) {
        *len = 2;
        return p[1] == c;
    }
    if (p[0] != '[') {
        *len = 1;
        return p[0] == c;
    }
    size_t i = 1;
    int neg = i < pn && p[i] == '^';
    i += (size_t)neg;
    int hit = 0;
    for (; i < pn && p[i] != ']'; i++) {
        if (p[i] == '\\' && i + 1 < pn) {
            i++;
            hit |= p[i] == c;
        } else if (i + 2 < pn && p[i + 1] == '-') {
            uint8_t lo = p[i], hi = p[i + 2];
            if (lo > hi) {
                uint8_t t = lo;
                lo = hi;
                hi = t;
            }
            hit |= c >= lo && c <= hi;
            i += 2;
        } else {
            hit |= p[i] == c;
        }
    }
    /* An unclosed class runs to the end of the pattern, as in Redis. */
    *len = i < pn ? i + 1 : pn;
    return neg ? !hit : hit;
}

int kvsm__glob_match(const uint8_t *p, size_t pn, const uint8_t *s, size_t sn)
{
    size_t pi = 0, si = 0;
    size_t star = SIZE_MAX, star_si = 0; /* after the last *, and where */
    while (si < sn) {
        if (pi < pn && p[pi] == '*') {
            while (pi < pn && p[pi] == '*') {
                pi++;
            }
            star = pi;
            star_si = si;
            continue;
        }
        size_t len;
        if (pi < pn && match_token(p + pi, pn - pi, s[si], &len)) {
            pi += len;
            si++;
            continue;
        }
        if (star == SIZE_MAX) {
            return 0;
        }
        /* Let the last * swallow one more byte and retry after it. */
        pi = star;
        si = ++star_si;
    }
    while (pi < pn && p[pi] == '*') {
        pi++;
    }
    CRAFT_ASSERT(pi <= pn);
    return pi == pn;
}
