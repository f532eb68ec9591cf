/*
 * craft/mr.h -- the MapReduce plugin ABI, version 1.
 *
 * A plugin is a shared object that exports one symbol,
 *
 *     const struct mr_plugin_v1 mr_plugin_v1 = { MR_ABI_VERSION, ... };
 *
 * (use MR_PLUGIN_V1 below).  craft-mr loads it with dlopen() on every worker
 * (the coordinator ships the file, so workers need no copy of their own),
 * checks abi_version and struct_size, and calls:
 *
 *   init(args, &state)      once per worker process, optional;
 *   map(state, ...)         once per input split;
 *   combine(state, ...)     on the map side, optional: same contract as
 *                           reduce; it must be associative and its output
 *                           must be valid reduce input (e.g. partial sums);
 *   reduce(state, ...)      once per distinct key of a partition, keys in
 *                           ascending byte order (memcmp, shorter first);
 *   fini(state)             at worker exit, optional.
 *
 * Keys and values are length-delimited bytes; they need not be text and
 * need not be NUL-terminated.  Output goes through an emitter that COPIES
 * what it is given, so a plugin may reuse or free its buffers as soon as
 * emit() returns.  Reduce receives its values through an iterator, so a key
 * with millions of values never has them all in memory at once.
 *
 * Threads: a worker calls the plugin from one thread at a time, but not
 * necessarily the same thread each time.  Plugins must not call exit()
 * except to simulate a crash (the crash test plugin does).
 *
 * Errors: every callback returns 0 on success or a negative value on
 * failure; a failure fails the task with an error naming the plugin and the
 * task, and the task is retried on another worker up to a limit.  emit()
 * returns MR_EMIT_TOOBIG for a record over the limits below and the plugin
 * should return that value; returning it anyway is what the host checks.
 *
 * Output of reduce: each emit(key, value) becomes one line "key value\n" of
 * the output file mr-out-<r>.
 */
#ifndef CRAFT_MR_H
#define CRAFT_MR_H

#include <stddef.h>
#include <stdint.h>

#define MR_ABI_VERSION 1u

/* The symbol every plugin exports (a const struct mr_plugin_v1). */
#define MR_PLUGIN_SYMBOL "mr_plugin_v1"

/* Limits on one emitted record.  A key is a word, a URL, a file name: 64 KiB
 * is generous and keeps the merge heap small.  A value may be a posting list
 * (indexer), so it gets 16 MiB; both bound the memory a single record can
 * take in the sort buffer and on the fetch path. */
#define MR_KEY_MAX (64u * 1024u)
#define MR_VALUE_MAX (16u * 1024u * 1024u)

/* Returned by emit() for a record over MR_KEY_MAX / MR_VALUE_MAX, and by
 * values->next() when the host could not read the next value. */
#define MR_EMIT_TOOBIG (-2)
#define MR_EIO (-3)

/* Where a callback sends its output.  emit() copies key and value. */
struct mr_emitter {
    void *host;
    int (*emit)(void *host, const void *key, size_t key_len, const void *value,
                size_t value_len);
};

/* The values of one key, in no particular order.  next() returns 1 and sets
 * *value, *value_len (valid until the next call), 0 when there are no more,
 * or a negative value on an I/O error (return it from reduce). */
struct mr_values {
    void *host;
    int (*next)(void *host, const void **value, size_t *value_len);
};

/* The job's --arg KEY=VALUE parameters, valid for the life of the plugin. */
struct mr_args {
    size_t n;
    const char *const *keys;
    const char *const *values;
};

/* The value of --arg name, or NULL when it was not given. */
static inline const char *mr_arg(const struct mr_args *args, const char *name)
{
    for (size_t i = 0; i < args->n; i++) {
        const char *k = args->keys[i];
        const char *p = name;
        while (*k && *k == *p) {
            k++;
            p++;
        }
        if (*k == *p) {
            return args->values[i];
        }
    }
    return NULL;
}

struct mr_plugin_v1 {
    uint32_t abi_version; /* MR_ABI_VERSION */
    uint32_t struct_size; /* sizeof(struct mr_plugin_v1) */
    const char *name;     /* short name for messages, e.g. "wc" */

    int (*init)(const struct mr_args *args, void **state); /* optional */
    void (*fini)(void *state);                             /* optional */

    /* One input split: contents[0..len) of the file `filename`.  A split
     * holds whole lines; small files are one split. */
    int (*map)(void *state, const char *filename, const void *contents,
               size_t len, struct mr_emitter *out);

    int (*reduce)(void *state, const void *key, size_t key_len,
                  struct mr_values *values, struct mr_emitter *out);

    int (*combine)(void *state, const void *key, size_t key_len,
                   struct mr_values *values, struct mr_emitter *out);
};

/* Declares the exported plugin struct with the version fields filled in. */
#define MR_PLUGIN_V1(...)                                                      \
    __attribute__((visibility("default")))                                     \
    const struct mr_plugin_v1 mr_plugin_v1 = {.abi_version = MR_ABI_VERSION,   \
                                              .struct_size =                   \
                                                  sizeof(struct mr_plugin_v1), \
                                              __VA_ARGS__}

#endif /* CRAFT_MR_H */
