/*
 * glob.h -- Redis's glob-style pattern matching (KEYS, SCAN MATCH):
 *
 *   *       any run of bytes, including none
 *   ?       any one byte
 *   [abc]   one of a, b, c;  [^abc] any byte but those;  [a-z] a range
 *           (reversed ranges are swapped; an unclosed [ runs to the end)
 *   \x      the byte x literally (also inside [...]); a trailing \ is
 *           itself
 *
 * Binary-safe.  Runs in O(pattern * string) time: only the last * is ever
 * backtracked to, so no pattern can make it exponential.
 */
#ifndef CRAFT_KV_GLOB_H
#define CRAFT_KV_GLOB_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0, sn) matches the pattern p[0, pn), else 0. */
int kvsm__glob_match(const uint8_t *p, size_t pn, const uint8_t *s, size_t sn);

#endif /* CRAFT_KV_GLOB_H */
