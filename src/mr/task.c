/*
 * Map and reduce tasks on local files: the sort buffer, spills, merges and
 * the emitters handed to the plugin.  See task.h.
 */
#include "mr/task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "craft/common.h"
#include "mr/merge.h"
#include "mr/run.h"
#include "util/assert.h"
#include "util/encoding.h"

/* ---- Plugin errors ------------------------------------------------------ */

/* Context shared by every emitter of a task: who to blame in messages and
 * the first error seen.  An emit error is sticky: a plugin that ignores
 * MR_EMIT_TOOBIG still fails its task. */
struct task_ctx {
    struct mr_plugin *p;
    const char *task;
    int rv;
    char *errmsg;
    size_t errlen;
};

static int ctx_fail(struct task_ctx *c, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ctx_fail(struct task_ctx *c, int rv, const char *fmt, ...)
{
    if (c->rv == 0) {
        c->rv = rv;
        int n = snprintf(c->errmsg, c->errlen, "plugin %s, %s: ", c->p->name,
                         c->task);
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->errmsg + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rv;
}

static int check_sizes(struct task_ctx *c, const char *fn, size_t key_len,
                       size_t value_len)
{
    if (key_len > MR_KEY_MAX || value_len > MR_VALUE_MAX) {
        ctx_fail(c, CRAFT_EPLUGIN,
                 "%s emitted an oversized record (key %zu bytes, value %zu "
                 "bytes; limits %u and %u)",
                 fn, key_len, value_len, MR_KEY_MAX, MR_VALUE_MAX);
        return MR_EMIT_TOOBIG;
    }
    return 0;
}

/* After a callback returns: its own error, or one an emit recorded. */
static int callback_result(struct task_ctx *c, const char *fn, int rv)
{
    if (c->rv != 0) {
        return c->rv;
    }
    if (rv != 0) {
        return ctx_fail(c, CRAFT_EPLUGIN, "%s returned %d", fn, rv);
    }
    return 0;
}

/* ---- Writing a key group, through the combiner or not ------------------ */

struct group_emit {
    struct task_ctx *c;
    struct mr_run_writer *w;
    uint32_t part;
    const void *key;
    size_t key_len;
};

static int combine_emit(void *host, const void *key, size_t key_len,
                        const void *value, size_t value_len)
{
    struct group_emit *g = host;
    if (g->c->rv != 0) {
        return MR_EIO;
    }
    int rv = check_sizes(g->c, "combine", key_len, value_len);
    if (rv != 0) {
        return rv;
    }
    if (mr_key_cmp(key, key_len, g->key, g->key_len) != 0) {
        ctx_fail(g->c, CRAFT_EPLUGIN,
                 "combine emitted a key other than the one it combines");
        return MR_EIO;
    }
    rv = mr_run_writer_add(g->w, g->part, key, (uint32_t)key_len, value,
                           (uint32_t)value_len);
    if (rv != 0) {
        ctx_fail(g->c, rv, "writing combined output: %s", craft_strerror(rv));
        return MR_EIO;
    }
    return 0;
}

/* Writes every value of one key group to w: through the combiner when
 * combine is set, else as they come. */
static int write_group(struct task_ctx *c, struct mr_run_writer *w,
                       uint32_t part, const void *key, size_t key_len,
                       struct mr_values *values, int combine)
{
    if (combine) {
        struct group_emit g = {c, w, part, key, key_len};
        struct mr_emitter e = {&g, combine_emit};
        int rv = c->p->v1->combine(c->p->state, key, key_len, values, &e);
        return callback_result(c, "combine", rv);
    }
    const void *v;
    size_t vlen;
    int rv;
    while ((rv = values->next(values->host, &v, &vlen)) == 1) {
        rv = mr_run_writer_add(w, part, key, (uint32_t)key_len, v,
                               (uint32_t)vlen);
        if (rv != 0) {
            return ctx_fail(c, rv, "writing map output: %s",
                            craft_strerror(rv));
        }
    }
    return rv < 0 ? (c->rv ? c->rv : CRAFT_EIO) : 0;
}

/* ---- Merging runs ------------------------------------------------------- */

static int merge_values_next(void *host, const void **value, size_t *len)
{
    int rv = mr_merge_next_value(host, value, len);
    return rv < 0 ? MR_EIO : rv;
}

/* Opens segment `part` of each of the n runs into a merge. */
static int open_merge(struct task_ctx *c, const char *const *paths,
                      struct mr_segment *const *segs, uint32_t n, uint32_t part,
                      struct mr_merge *m)
{
    struct mr_seg_reader *readers = calloc(n ? n : 1, sizeof *readers);
    if (!readers) {
        return ctx_fail(c, CRAFT_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        int rv = mr_seg_reader_open(&readers[i], paths[i], -1, &segs[i][part],
                                    c->errmsg, c->errlen);
        if (rv != 0) {
            while (i-- > 0) {
                mr_seg_reader_close(&readers[i]);
            }
            free(readers);
            return c->rv = rv;
        }
    }
    int rv = mr_merge_init(m, readers, n, c->errmsg, c->errlen);
    return rv ? (c->rv = rv) : 0;
}

static void free_segs(struct mr_segment **segs, uint32_t n)
{
    for (uint32_t i = 0; segs && i < n; i++) {
        free(segs[i]);
    }
    free(segs);
}

static int read_indexes(struct task_ctx *c, const char *const *paths,
                        uint32_t n, uint32_t n_partitions,
                        struct mr_segment ***out)
{
    struct mr_segment **segs = calloc(n ? n : 1, sizeof *segs);
    if (!segs) {
        return ctx_fail(c, CRAFT_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        int rv = mr_run_read_index(paths[i], n_partitions, &segs[i], c->errmsg,
                                   c->errlen);
        if (rv != 0) {
            free_segs(segs, i);
            return c->rv = rv;
        }
    }
    *out = segs;
    return 0;
}

/* One merge pass of at most MR_MERGE_FANIN runs into out_path. */
static int merge_once(struct task_ctx *c, const char *const *paths, uint32_t n,
                      uint32_t n_partitions, int combine, const char *out_path)
{
    CRAFT_ASSERT(n <= MR_MERGE_FANIN);
    struct mr_segment **segs;
    int rv = read_indexes(c, paths, n, n_partitions, &segs);
    if (rv != 0) {
        return rv;
    }
    struct mr_run_writer w;
    rv = mr_run_writer_open(&w, out_path, n_partitions, c->errmsg, c->errlen);
    if (rv != 0) {
        free_segs(segs, n);
        return c->rv = rv;
    }
    for (uint32_t part = 0; rv == 0 && part < n_partitions; part++) {
        struct mr_merge m;
        rv = open_merge(c, paths, segs, n, part, &m);
        if (rv != 0) {
            break;
        }
        const void *key;
        size_t key_len;
        struct mr_values values = {&m, merge_values_next};
        while ((rv = mr_merge_next_key(&m, &key, &key_len)) == 1) {
            rv = write_group(c, &w, part, key, key_len, &values, combine);
            if (rv != 0) {
                break;
            }
        }
        if (rv < 0 && c->rv == 0) {
            c->rv = rv;
        }
        rv = rv < 0 ? rv : 0;
        mr_merge_close(&m);
    }
    free_segs(segs, n);
    if (rv != 0) {
        mr_run_writer_abort(&w);
        return rv;
    }
    rv = mr_run_writer_finish(&w, c->errmsg, c->errlen);
    return rv ? (c->rv = rv) : 0;
}

/*
 * Reduces n runs to at most MR_MERGE_FANIN by merging groups of them into
 * intermediate runs next to `base`.  On success *paths_out lists the runs
 * to read (the originals when n is small enough) and *tmp_out says which of
 * them are ours to delete, tagged in the top bit of *n_out (free_paths()
 * reads the tag).
 */
static int merge_down(struct task_ctx *c, const char *const *paths, uint32_t n,
                      uint32_t n_partitions, int combine, const char *base,
                      char ***paths_out, uint32_t *n_out)
{
    char **cur = calloc(n ? n : 1, sizeof *cur);
    if (!cur) {
        return ctx_fail(c, CRAFT_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        cur[i] = strdup(paths[i]);
        if (!cur[i]) {
            for (uint32_t j = 0; j < i; j++) {
                free(cur[j]);
            }
            free(cur);
            return ctx_fail(c, CRAFT_ENOMEM, "out of memory");
        }
    }
    uint32_t pass = 0;
    int owned = 0; /* cur[] are intermediates of ours */
    int rv = 0;
    while (rv == 0 && n > MR_MERGE_FANIN) {
        uint32_t groups = (n + MR_MERGE_FANIN - 1) / MR_MERGE_FANIN;
        char **next = calloc(groups, sizeof *next);
        if (!next) {
            rv = ctx_fail(c, CRAFT_ENOMEM, "out of memory");
            break;
        }
        for (uint32_t g = 0; rv == 0 && g < groups; g++) {
            uint32_t lo = g * MR_MERGE_FANIN;
            uint32_t k = n - lo < MR_MERGE_FANIN ? n - lo : MR_MERGE_FANIN;
            next[g] = malloc(strlen(base) + 32);
            if (!next[g]) {
                rv = ctx_fail(c, CRAFT_ENOMEM, "out of memory");
                break;
            }
            sprintf(next[g], "%s.merge%u.%u", base, pass, g);
            rv = merge_once(c, (const char *const *)cur + lo, k, n_partitions,
                            combine, next[g]);
        }
        for (uint32_t i = 0; i < n; i++) {
            if (owned) {
                unlink(cur[i]);
            }
            free(cur[i]);
        }
        free(cur);
        cur = next;
        n = groups;
        owned = 1;
        pass++;
    }
    if (rv != 0) {
        for (uint32_t i = 0; i < n; i++) {
            if (cur[i] && owned) {
                unlink(cur[i]);
            }
            free(cur[i]);
        }
        free(cur);
        return rv;
    }
    *paths_out = cur;
    *n_out = owned ? n | 0x80000000u : n;
    return 0;
}

static void free_paths(char **paths, uint32_t n_tagged)
{
    uint32_t n = n_tagged & 0x7fffffffu;
    for (uint32_t i = 0; i < n; i++) {
        if (n_tagged & 0x80000000u) {
            unlink(paths[i]);
        }
        free(paths[i]);
    }
    free(paths);
}

int mr_merge_runs(struct mr_plugin *p, const char *task_name,
                  const char *const *paths, uint32_t n, uint32_t n_partitions,
                  const char *out_path, char *errmsg, size_t errlen)
{
    struct task_ctx c = {p, task_name, 0, errmsg, errlen};
    int combine = p && p->v1->combine;
    char **cur;
    uint32_t n_cur;
    int rv =
        merge_down(&c, paths, n, n_partitions, combine, out_path, &cur, &n_cur);
    if (rv != 0) {
        return rv;
    }
    rv = merge_once(&c, (const char *const *)cur, n_cur & 0x7fffffffu,
                    n_partitions, combine, out_path);
    free_paths(cur, n_cur);
    return rv;
}

/* ---- The map-side sort buffer ------------------------------------------- */

struct sort_entry {
    uint64_t prefix; /* first 8 key bytes, big-endian, zero-padded */
    uint32_t part;
    uint32_t off; /* of the record in the arena */
};

struct sorter {
    struct task_ctx c;
    uint32_t n_partitions;
    size_t limit;
    struct buf arena; /* records in run format: header, key, value */
    struct sort_entry *ents;
    size_t n, cap;
    const char *out_path;
    char **spills;
    uint32_t n_spills;
    uint64_t records;
};

static uint64_t key_prefix(const uint8_t *k, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        v = (v << 8) | (i < n ? k[i] : 0);
    }
    return v;
}

static int entry_cmp(const void *a, const void *b, void *arg)
{
    const struct sort_entry *x = a, *y = b;
    if (x->part != y->part) {
        return x->part < y->part ? -1 : 1;
    }
    if (x->prefix != y->prefix) {
        return x->prefix < y->prefix ? -1 : 1;
    }
    const uint8_t *arena = arg;
    const uint8_t *rx = arena + x->off, *ry = arena + y->off;
    int c = mr_key_cmp(rx + MR_RECORD_HEADER_SIZE, get_u32(rx),
                       ry + MR_RECORD_HEADER_SIZE, get_u32(ry));
    if (c != 0) {
        return c;
    }
    /* Stable: equal keys keep their emit order. */
    return (x->off > y->off) - (x->off < y->off);
}

struct arr_iter {
    const struct sorter *s;
    size_t i, end;
};

static int arr_next(void *host, const void **value, size_t *len)
{
    struct arr_iter *it = host;
    if (it->i == it->end) {
        return 0;
    }
    const uint8_t *r = it->s->arena.data + it->s->ents[it->i++].off;
    *value = r + MR_RECORD_HEADER_SIZE + get_u32(r);
    *len = get_u32(r + 4);
    return 1;
}

/* Sorts the buffer and writes it as a run at path. */
static int sorter_write(struct sorter *s, const char *path)
{
    struct task_ctx *c = &s->c;
    if (s->n > 1) {
        qsort_r(s->ents, s->n, sizeof *s->ents, entry_cmp, s->arena.data);
    }
    struct mr_run_writer w;
    int rv =
        mr_run_writer_open(&w, path, s->n_partitions, c->errmsg, c->errlen);
    if (rv != 0) {
        return c->rv = rv;
    }
    int combine = c->p->v1->combine != NULL;
    for (size_t i = 0; rv == 0 && i < s->n;) {
        const struct sort_entry *e = &s->ents[i];
        const uint8_t *r = s->arena.data + e->off;
        const uint8_t *key = r + MR_RECORD_HEADER_SIZE;
        uint32_t key_len = get_u32(r);
        size_t j = i + 1;
        while (j < s->n && s->ents[j].part == e->part &&
               s->ents[j].prefix == e->prefix) {
            const uint8_t *r2 = s->arena.data + s->ents[j].off;
            if (mr_key_cmp(r2 + MR_RECORD_HEADER_SIZE, get_u32(r2), key,
                           key_len) != 0) {
                break;
            }
            j++;
        }
        struct arr_iter it = {s, i, j};
        struct mr_values values = {&it, arr_next};
        rv = write_group(c, &w, e->part, key, key_len, &values, combine);
        i = j;
    }
    if (rv != 0) {
        mr_run_writer_abort(&w);
        return rv;
    }
    rv = mr_run_writer_finish(&w, c->errmsg, c->errlen);
    s->n = 0;
    s->arena.len = 0;
    return rv ? (c->rv = rv) : 0;
}

static int sorter_spill(struct sorter *s)
{
    char **spills = realloc(s->spills, (s->n_spills + 1) * sizeof *spills);
    if (!spills) {
        return ctx_fail(&s->c, CRAFT_ENOMEM, "out of memory");
    }
    s->spills = spills;
    char *path = malloc(strlen(s->out_path) + 24);
    if (!path) {
        return ctx_fail(&s->c, CRAFT_ENOMEM, "out of memory");
    }
    sprintf(path, "%s.spill%u", s->out_path, s->n_spills);
    s->spills[s->n_spills++] = path;
    return sorter_write(s, path);
}

static int sorter_emit(void *host, const void *key, size_t key_len,
                       const void *value, size_t value_len)
{
    struct sorter *s = host;
    if (s->c.rv != 0) {
        return MR_EIO;
    }
    int rv = check_sizes(&s->c, "map", key_len, value_len);
    if (rv != 0) {
        return rv;
    }
    size_t rec = MR_RECORD_HEADER_SIZE + key_len + value_len;
    size_t used = s->arena.len + s->n * sizeof(struct sort_entry);
    /* Spill when the buffer is full -- unless it is empty: a record bigger
     * than the whole buffer is still taken, alone, and spilled next time. */
    if (s->n > 0 && used + rec + sizeof(struct sort_entry) > s->limit &&
        sorter_spill(s) != 0) {
        return MR_EIO;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        struct sort_entry *e = realloc(s->ents, cap * sizeof *e);
        if (!e) {
            ctx_fail(&s->c, CRAFT_ENOMEM, "out of memory in the sort buffer");
            return MR_EIO;
        }
        s->ents = e;
        s->cap = cap;
    }
    if (buf_reserve(&s->arena, rec) != 0) {
        ctx_fail(&s->c, CRAFT_ENOMEM, "out of memory in the sort buffer");
        return MR_EIO;
    }
    CRAFT_ASSERT(s->arena.len + rec <= UINT32_MAX);
    uint8_t *r = s->arena.data + s->arena.len;
    put_u32(r, (uint32_t)key_len);
    put_u32(r + 4, (uint32_t)value_len);
    if (key_len) {
        memcpy(r + MR_RECORD_HEADER_SIZE, key, key_len);
    }
    if (value_len) {
        memcpy(r + MR_RECORD_HEADER_SIZE + key_len, value, value_len);
    }
    s->ents[s->n++] = (struct sort_entry){
        key_prefix(key, key_len), mr_partition(key, key_len, s->n_partitions),
        (uint32_t)s->arena.len};
    s->arena.len += rec;
    s->records++;
    return 0;
}

static void sorter_close(struct sorter *s)
{
    for (uint32_t i = 0; i < s->n_spills; i++) {
        unlink(s->spills[i]);
        free(s->spills[i]);
    }
    free(s->spills);
    free(s->ents);
    buf_close(&s->arena);
}

int mr_map_run(struct mr_plugin *p, const char *task_name, const char *filename,
               const void *contents, size_t len, uint32_t n_partitions,
               size_t sort_bytes, const char *out_path,
               struct mr_map_stats *stats, char *errmsg, size_t errlen)
{
    CRAFT_ASSERT(p->v1 != NULL);
    CRAFT_ASSERT(n_partitions > 0);
    struct sorter s;
    memset(&s, 0, sizeof s);
    s.c = (struct task_ctx){p, task_name, 0, errmsg, errlen};
    s.n_partitions = n_partitions;
    s.limit = sort_bytes < MR_SORT_BYTES_MIN ? MR_SORT_BYTES_MIN : sort_bytes;
    s.out_path = out_path;
    buf_init(&s.arena);
    struct mr_emitter e = {&s, sorter_emit};
    int rv = p->v1->map(p->state, filename, contents, len, &e);
    rv = callback_result(&s.c, "map", rv);
    if (rv == 0 && s.n_spills == 0) {
        rv = sorter_write(&s, out_path);
    } else if (rv == 0) {
        if (s.n > 0) {
            rv = sorter_spill(&s);
        }
        if (rv == 0) {
            rv = mr_merge_runs(p, task_name, (const char *const *)s.spills,
                               s.n_spills, n_partitions, out_path, errmsg,
                               errlen);
        }
    }
    if (stats) {
        stats->records = s.records;
        stats->spills = s.n_spills;
    }
    sorter_close(&s);
    return rv;
}

/* ---- Reduce ------------------------------------------------------------- */

struct reduce_emit {
    struct task_ctx *c;
    struct mr_output *out;
};

static int reduce_emit(void *host, const void *key, size_t key_len,
                       const void *value, size_t value_len)
{
    struct reduce_emit *r = host;
    if (r->c->rv != 0) {
        return MR_EIO;
    }
    int rv = check_sizes(r->c, "reduce", key_len, value_len);
    if (rv != 0) {
        return rv;
    }
    rv = mr_output_line(r->out, key, key_len, value, value_len);
    if (rv != 0) {
        ctx_fail(r->c, rv, "writing output: %s", craft_strerror(rv));
        return MR_EIO;
    }
    return 0;
}

int mr_reduce_run(struct mr_plugin *p, const char *task_name,
                  const char *const *paths, uint32_t n, uint32_t n_partitions,
                  uint32_t part, const char *work_dir, struct mr_output *out,
                  char *errmsg, size_t errlen)
{
    CRAFT_ASSERT(p->v1 != NULL);
    CRAFT_ASSERT(part < n_partitions);
    struct task_ctx c = {p, task_name, 0, errmsg, errlen};
    char base[4096];
    snprintf(base, sizeof base, "%s/reduce-%d-%u", work_dir, (int)getpid(),
             part);
    char **cur;
    uint32_t n_cur;
    int rv = merge_down(&c, paths, n, n_partitions, p->v1->combine != NULL,
                        base, &cur, &n_cur);
    if (rv != 0) {
        return rv;
    }
    uint32_t k = n_cur & 0x7fffffffu;
    struct mr_segment **segs;
    rv = read_indexes(&c, (const char *const *)cur, k, n_partitions, &segs);
    struct mr_merge m;
    if (rv == 0) {
        rv = open_merge(&c, (const char *const *)cur, segs, k, part, &m);
        free_segs(segs, k);
    }
    if (rv == 0) {
        struct reduce_emit re = {&c, out};
        struct mr_emitter e = {&re, reduce_emit};
        struct mr_values values = {&m, merge_values_next};
        const void *key;
        size_t key_len;
        while ((rv = mr_merge_next_key(&m, &key, &key_len)) == 1) {
            rv = p->v1->reduce(p->state, key, key_len, &values, &e);
            rv = callback_result(&c, "reduce", rv);
            if (rv != 0) {
                break;
            }
        }
        if (rv < 0 && c.rv == 0) {
            c.rv = rv;
        }
        mr_merge_close(&m);
    }
    free_paths(cur, n_cur);
    return rv < 0 ? rv : 0;
}
