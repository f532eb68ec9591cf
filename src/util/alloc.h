/*
 * Allocation through an optional struct craft_alloc (see craft/common.h).
 * A NULL allocator means malloc/calloc/realloc/free.
 */
#ifndef CRAFT_UTIL_ALLOC_H
#define CRAFT_UTIL_ALLOC_H

#include <stdlib.h>

#include "craft/common.h"

static inline void *craft_malloc(const struct craft_alloc *a, size_t size)
{
    return a ? a->malloc(a->data, size) : malloc(size);
}

static inline void *craft_calloc(const struct craft_alloc *a, size_t n,
                                 size_t size)
{
    return a ? a->calloc(a->data, n, size) : calloc(n, size);
}

static inline void *craft_realloc(const struct craft_alloc *a, void *p,
                                  size_t size)
{
    return a ? a->realloc(a->data, p, size) : realloc(p, size);
}

static inline void craft_free(const struct craft_alloc *a, void *p)
{
    if (a) {
        a->free(a->data, p);
    } else {
        free(p);
    }
}

#endif /* CRAFT_UTIL_ALLOC_H */
