/*
 * craft/common.h -- what every public craft header shares: the export
 * marker, the error codes and the injectable allocator.
 *
 * Errors.  Every function that can fail returns an int: 0 is success, a
 * negative CRAFT_E* value is an error, and a count may be returned as a
 * value >= 0.  The codes come from one X-macro table below so that the enum
 * and craft_strerror() can never disagree.  Codes are stable: new ones are
 * appended, never renumbered.
 */
#ifndef CRAFT_COMMON_H
#define CRAFT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CRAFT_API __attribute__((visibility("default")))
#else
#define CRAFT_API
#endif

/* X(name, value, message) */
#define CRAFT_ERRORS(X)                                                        \
    X(CRAFT_ENOMEM, -1, "out of memory")                                       \
    X(CRAFT_EINVAL, -2, "invalid argument")                                    \
    X(CRAFT_ENOTLEADER, -3, "not the leader")                                  \
    X(CRAFT_ELEADERLOST, -4, "leadership lost before the outcome was known")   \
    X(CRAFT_ESHUTDOWN, -5, "shutting down")                                    \
    X(CRAFT_EIO, -6, "I/O error")                                              \
    X(CRAFT_ENOSPC, -7, "no space left on device")                             \
    X(CRAFT_ECORRUPT, -8, "data is corrupt")                                   \
    X(CRAFT_EPROTO, -9, "protocol error")                                      \
    X(CRAFT_ETOOBIG, -10, "too big")                                           \
    X(CRAFT_EBUSY, -11, "busy")                                                \
    X(CRAFT_ENOENT, -12, "not found")                                          \
    X(CRAFT_EEXIST, -13, "already exists")                                     \
    X(CRAFT_ETIMEDOUT, -14, "timed out")                                       \
    X(CRAFT_ECONNREFUSED, -15, "connection refused")                           \
    X(CRAFT_ECLOSED, -16, "closed")                                            \
    X(CRAFT_EVERSION, -17, "unsupported version")                              \
    X(CRAFT_EMISMATCH, -18, "mismatch")                                        \
    X(CRAFT_ECANCELED, -19, "canceled")                                        \
    X(CRAFT_ELIMIT, -20, "limit reached")                                      \
    X(CRAFT_EROFS, -21, "read-only file system")                               \
    X(CRAFT_EDQUOT, -22, "disk quota exceeded")                                \
    X(CRAFT_ENOTFOUND, -23, "no such entry")                                   \
    X(CRAFT_ECOMPACTED, -24, "entry compacted into a snapshot")                \
    X(CRAFT_ESTALE, -25, "stale request")                                      \
    X(CRAFT_EAGAIN, -26, "try again")                                          \
    X(CRAFT_ENOCONN, -27, "not connected")                                     \
    X(CRAFT_EAUTH, -28, "authentication failed")                               \
    X(CRAFT_EPLUGIN, -29, "plugin error")                                      \
    X(CRAFT_EINTERNAL, -30, "internal error")

enum craft_error {
#define CRAFT__ERR_ENUM(name, value, msg) name = (value),
    CRAFT_OK = 0,
    CRAFT_ERRORS(CRAFT__ERR_ENUM) CRAFT__ERR_LAST = -31
#undef CRAFT__ERR_ENUM
};

/* A static, human-readable message for a CRAFT_E* code (or "ok"). */
CRAFT_API const char *craft_strerror(int rv);

/* The symbolic name of a code, such as "CRAFT_ENOMEM". */
CRAFT_API const char *craft_errname(int rv);

/*
 * An injectable allocator, so that the Raft core and the KV state machine can
 * be run with an allocator that fails at the N-th call or counts leaks.  A
 * NULL pointer to a struct craft_alloc means the C library's malloc family.
 */
struct craft_alloc {
    void *data;
    void *(*malloc)(void *data, size_t size);
    void *(*calloc)(void *data, size_t nmemb, size_t size);
    void *(*realloc)(void *data, void *ptr, size_t size);
    void (*free)(void *data, void *ptr);
};

#endif /* CRAFT_COMMON_H */
