/*
 * Assertions for programmer errors only.  Disk, network and command-line
 * input get error returns, never asserts.
 *
 * CRAFT_ASSERT is always compiled in: it prints the expression, file and
 * line, then aborts.  CRAFT_DASSERT is for O(n) checks and is compiled only
 * when CRAFT_DEBUG_CHECKS is set (every build that runs tests).
 */
#ifndef CRAFT_UTIL_ASSERT_H
#define CRAFT_UTIL_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define CRAFT_ASSERT(expr)                                                     \
    do {                                                                       \
        if (!(expr)) {                                                         \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,         \
                    __LINE__, #expr);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#if defined(CRAFT_DEBUG_CHECKS) && CRAFT_DEBUG_CHECKS
#define CRAFT_DASSERT(expr) CRAFT_ASSERT(expr)
#else
#define CRAFT_DASSERT(expr) ((void)0)
#endif

#define CRAFT_UNREACHABLE() CRAFT_ASSERT(0 && "unreachable")

#define CRAFT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif /* CRAFT_UTIL_ASSERT_H */
