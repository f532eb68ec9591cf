/* The coordinator's task state machine; see sched.h for the transitions
 * and invariants. */
#include "mr/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "util/assert.h"

static const char *kind_name(enum mr_task_kind kind)
{
    switch (kind) {
    case MR_MAP:
        return "map";
    case MR_REDUCE:
        return "reduce";
    }
    return "?";
}

static struct mr_task *task_of(struct mr_sched *s, enum mr_task_kind kind,
                               uint32_t task)
{
    uint32_t n = kind == MR_MAP ? s->cfg.n_maps : s->cfg.n_reduces;
    if (task >= n) {
        return NULL;
    }
    return kind == MR_MAP ? &s->maps[task] : &s->reduces[task];
}

/* The task i of a kind, i in range (loops over all tasks). */
static struct mr_task *task_at(struct mr_sched *s, enum mr_task_kind kind,
                               uint32_t i)
{
    return kind == MR_MAP ? &s->maps[i] : &s->reduces[i];
}

int mr_sched_init(struct mr_sched *s, const struct mr_sched_config *cfg)
{
    memset(s, 0, sizeof *s);
    if (cfg->n_reduces == 0 || cfg->max_failures == 0 || cfg->max_losses == 0) {
        return CRAFT_EINVAL;
    }
    s->cfg = *cfg;
    s->maps = calloc(cfg->n_maps ? cfg->n_maps : 1, sizeof *s->maps);
    s->reduces = calloc(cfg->n_reduces, sizeof *s->reduces);
    if (!s->maps || !s->reduces) {
        mr_sched_close(s);
        return CRAFT_ENOMEM;
    }
    s->next_attempt = 1;
    return 0;
}

void mr_sched_close(struct mr_sched *s)
{
    free(s->maps);
    free(s->reduces);
    free(s->workers);
    s->maps = s->reduces = NULL;
    s->workers = NULL;
}

uint32_t mr_sched_add_worker(struct mr_sched *s, const char *addr,
                             uint64_t now_ms)
{
    if (s->n_workers == s->cap_workers) {
        uint32_t cap = s->cap_workers ? 2 * s->cap_workers : 16;
        struct mr_worker_rec *w = realloc(s->workers, cap * sizeof *w);
        if (!w) {
            return 0;
        }
        s->workers = w;
        s->cap_workers = cap;
    }
    struct mr_worker_rec *w = &s->workers[s->n_workers++];
    memset(w, 0, sizeof *w);
    w->id = s->n_workers;
    w->alive = 1;
    w->last_seen_ms = now_ms;
    snprintf(w->addr, sizeof w->addr, "%s", addr);
    s->n_alive++;
    return w->id;
}

struct mr_worker_rec *mr_sched_worker(struct mr_sched *s, uint32_t id)
{
    if (id == 0 || id > s->n_workers || !s->workers[id - 1].alive) {
        return NULL;
    }
    return &s->workers[id - 1];
}

void mr_sched_touch(struct mr_sched *s, uint32_t worker, uint64_t now_ms)
{
    struct mr_worker_rec *w = mr_sched_worker(s, worker);
    if (w && now_ms > w->last_seen_ms) {
        w->last_seen_ms = now_ms;
    }
}

static void job_fail_failures(struct mr_sched *s, enum mr_task_kind kind,
                              uint32_t task, uint32_t n, const char *why)
{
    if (!s->failed) {
        s->failed = 1;
        snprintf(s->errmsg, sizeof s->errmsg,
                 "%s task %u failed %u times; last error: %s", kind_name(kind),
                 task, n, why);
    }
}

static void job_fail_losses(struct mr_sched *s, enum mr_task_kind kind,
                            uint32_t task, uint32_t n)
{
    if (!s->failed) {
        s->failed = 1;
        snprintf(s->errmsg, sizeof s->errmsg,
                 "%s task %u lost its worker %u times (a plugin that kills "
                 "its process, or failing machines)",
                 kind_name(kind), task, n);
    }
}

static void issue(struct mr_sched *s, struct mr_task *t, uint32_t worker,
                  uint64_t now_ms)
{
    t->state = MR_RUNNING;
    t->worker = worker;
    t->attempt = s->next_attempt++;
    t->started_ms = now_ms;
    t->issues++;
}

struct mr_assignment mr_sched_request(struct mr_sched *s, uint32_t worker,
                                      uint64_t now_ms)
{
    CRAFT_ASSERT(mr_sched_worker(s, worker) != NULL);
    struct mr_assignment a = {MR_REPLY_WAIT, MR_MAP, 0, 0};
    mr_sched_touch(s, worker, now_ms);
    if (s->failed || mr_sched_done(s)) {
        a.reply = MR_REPLY_EXIT;
        return a;
    }
    int maps_left = s->maps_done < s->cfg.n_maps;
    enum mr_task_kind kind = maps_left ? MR_MAP : MR_REDUCE;
    uint32_t n = maps_left ? s->cfg.n_maps : s->cfg.n_reduces;
    for (uint32_t i = 0; i < n; i++) {
        struct mr_task *t = task_at(s, kind, i);
        if (t->state == MR_IDLE) {
            CRAFT_ASSERT(kind == MR_MAP || s->maps_done == s->cfg.n_maps);
            issue(s, t, worker, now_ms);
            a = (struct mr_assignment){MR_REPLY_TASK, kind, i, t->attempt};
            break;
        }
    }
    CRAFT_DASSERT(mr_sched_check(s));
    return a;
}

int mr_sched_would_accept(const struct mr_sched *s, enum mr_task_kind kind,
                          uint32_t task, uint32_t worker)
{
    uint32_t n = kind == MR_MAP ? s->cfg.n_maps : s->cfg.n_reduces;
    if (task >= n || s->failed) {
        return 0;
    }
    const struct mr_task *t =
        kind == MR_MAP ? &s->maps[task] : &s->reduces[task];
    int alive =
        worker >= 1 && worker <= s->n_workers && s->workers[worker - 1].alive;
    /* A map's output lives on its worker, so only a live worker's map
     * counts.  A reduce completes once the coordinator itself has checked
     * and committed its output: what becomes of its worker after that
     * does not matter.  (Every map output a reduce read was complete:
     * reduces are issued only after all maps, invariant 3.) */
    return t->state != MR_DONE && (alive || kind == MR_REDUCE);
}

int mr_sched_complete(struct mr_sched *s, enum mr_task_kind kind, uint32_t task,
                      uint32_t worker, uint64_t attempt)
{
    if (!mr_sched_would_accept(s, kind, task, worker)) {
        return 0;
    }
    struct mr_task *t = kind == MR_MAP ? &s->maps[task] : &s->reduces[task];
    t->state = MR_DONE;
    t->worker = worker;
    t->attempt = attempt;
    /* The limits are on failures in a row: a task that completed is not
     * poison, even if it must run again later because its output was lost
     * with its worker (which, with failing machines, can happen many times
     * over a long job). */
    t->failures = 0;
    t->losses = 0;
    if (kind == MR_MAP) {
        s->maps_done++;
    } else {
        s->reduces_done++;
    }
    CRAFT_DASSERT(mr_sched_check(s));
    return 1;
}

void mr_sched_fail(struct mr_sched *s, enum mr_task_kind kind, uint32_t task,
                   uint32_t worker, uint64_t attempt, const char *errmsg)
{
    struct mr_task *t = task_of(s, kind, task);
    if (!t || t->state != MR_RUNNING || t->attempt != attempt ||
        t->worker != worker) {
        return; /* an old attempt: the task has moved on without it */
    }
    t->state = MR_IDLE;
    t->failures++;
    if (t->failures >= s->cfg.max_failures) {
        job_fail_failures(s, kind, task, t->failures, errmsg);
    }
    CRAFT_DASSERT(mr_sched_check(s));
}

void mr_sched_worker_lost(struct mr_sched *s, uint32_t worker)
{
    struct mr_worker_rec *w = mr_sched_worker(s, worker);
    if (!w) {
        return;
    }
    w->alive = 0;
    s->n_alive--;
    int need_maps = !mr_sched_done(s);
    for (uint32_t i = 0; i < s->cfg.n_maps; i++) {
        struct mr_task *t = &s->maps[i];
        if (t->worker != worker) {
            continue;
        }
        if (t->state == MR_RUNNING) {
            t->state = MR_IDLE;
            t->losses++;
            s->reissues++;
            if (t->losses >= s->cfg.max_losses) {
                job_fail_losses(s, MR_MAP, i, t->losses);
            }
        } else if (t->state == MR_DONE && need_maps) {
            /* Its output lived on the lost worker's disk (paper, 3.3). */
            t->state = MR_IDLE;
            s->maps_done--;
            s->reissues++;
        }
    }
    for (uint32_t i = 0; i < s->cfg.n_reduces; i++) {
        struct mr_task *t = &s->reduces[i];
        if (t->worker == worker && t->state == MR_RUNNING) {
            t->state = MR_IDLE;
            t->losses++;
            s->reissues++;
            if (t->losses >= s->cfg.max_losses) {
                job_fail_losses(s, MR_REDUCE, i, t->losses);
            }
        }
    }
    CRAFT_DASSERT(mr_sched_check(s));
}

void mr_sched_fetch_failed(struct mr_sched *s, uint32_t reduce,
                           uint32_t reducer, uint64_t attempt, uint32_t map,
                           uint32_t holder)
{
    struct mr_task *r = task_of(s, MR_REDUCE, reduce);
    if (r && r->state == MR_RUNNING && r->worker == reducer &&
        r->attempt == attempt) {
        r->state = MR_IDLE;
    }
    struct mr_task *m = task_of(s, MR_MAP, map);
    if (m && m->state == MR_DONE && m->worker == holder) {
        mr_sched_worker_lost(s, holder);
    }
    CRAFT_DASSERT(mr_sched_check(s));
}

void mr_sched_abort(struct mr_sched *s, const char *why)
{
    if (!s->failed) {
        s->failed = 1;
        snprintf(s->errmsg, sizeof s->errmsg, "%s", why);
    }
}

uint32_t mr_sched_tick(struct mr_sched *s, uint64_t now_ms)
{
    uint32_t changes = 0;
    for (uint32_t i = 0; i < s->n_workers; i++) {
        struct mr_worker_rec *w = &s->workers[i];
        if (w->alive && now_ms >= w->last_seen_ms + s->cfg.worker_timeout_ms) {
            mr_sched_worker_lost(s, w->id);
            changes++;
        }
    }
    for (int k = 0; k < 2; k++) {
        enum mr_task_kind kind = k == 0 ? MR_MAP : MR_REDUCE;
        uint32_t n = kind == MR_MAP ? s->cfg.n_maps : s->cfg.n_reduces;
        for (uint32_t i = 0; i < n; i++) {
            struct mr_task *t = task_at(s, kind, i);
            if (t->state == MR_RUNNING &&
                now_ms >= t->started_ms + s->cfg.task_timeout_ms) {
                /* The attempt may still finish: its completion is then
                 * accepted unless the new one finished first. */
                t->state = MR_IDLE;
                s->reissues++;
                changes++;
            }
        }
    }
    CRAFT_DASSERT(mr_sched_check(s));
    return changes;
}

int mr_sched_check(const struct mr_sched *s)
{
    uint32_t maps_done = 0, reduces_done = 0, reduces_started = 0;
    for (uint32_t i = 0; i < s->cfg.n_maps; i++) {
        const struct mr_task *t = &s->maps[i];
        maps_done += t->state == MR_DONE;
        if (t->state != MR_IDLE &&
            (t->worker == 0 || t->worker > s->n_workers)) {
            return 0;
        }
        if (t->state == MR_RUNNING && !s->workers[t->worker - 1].alive) {
            return 0;
        }
        if (t->state == MR_DONE && !s->workers[t->worker - 1].alive &&
            !mr_sched_done(s)) {
            return 0;
        }
    }
    for (uint32_t i = 0; i < s->cfg.n_reduces; i++) {
        const struct mr_task *t = &s->reduces[i];
        reduces_done += t->state == MR_DONE;
        reduces_started += t->issues > 0;
        if (t->state == MR_RUNNING && !s->workers[t->worker - 1].alive) {
            return 0;
        }
    }
    if (maps_done != s->maps_done || reduces_done != s->reduces_done) {
        return 0;
    }
    /* Invariant 3 is asserted where reduces are issued: a map may become
     * IDLE again later (its worker lost), so it cannot be checked here
     * from the state alone -- except before any re-issue. */
    if (reduces_started > 0 && s->maps_done < s->cfg.n_maps &&
        s->reissues == 0) {
        return 0;
    }
    return 1;
}
