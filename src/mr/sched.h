/*
 * The coordinator's task state machine, pure: no I/O, no clock reads (the
 * caller passes `now_ms`), so every transition is unit-tested in simulated
 * time.
 *
 * Tasks.  M map tasks (one per input split) and R reduce tasks, each
 *
 *     IDLE --issue--> RUNNING --complete--> DONE
 *       ^               |
 *       +--timeout------+   (task_timeout_ms without completing: issued
 *       +--worker lost--+    again; the old attempt may still complete)
 *       +--failed-------+   (the worker reported an error)
 *     DONE map --its worker lost, reduces not all done--> IDLE
 *     RUNNING reduce --fetch failure reported--> IDLE
 *
 * Invariants (checked by mr_sched_check()):
 *   1. maps_done / reduces_done equal the number of DONE tasks.
 *   2. A RUNNING task's worker is alive.  A DONE map's worker (the holder
 *      of its output) is alive, unless every reduce is DONE.
 *   3. No reduce is issued before every map is DONE.
 *   4. A task is DONE at most once per completion accepted: a completion
 *      for a DONE task, or of a map from a worker that is no longer
 *      alive, is a duplicate and changes nothing.  (A reduce completes
 *      after the coordinator committed its output, so its worker's later
 *      fate does not matter.)
 *   5. The job is done exactly when every reduce is DONE; it has failed
 *      when some task failed max_failures times or lost max_losses workers
 *      without completing in between.
 *
 * Workers ask for work; the answer is a task, WAIT (nothing to do now: maps
 * are running elsewhere and may yet fail, so the worker must keep asking)
 * or EXIT (the job is done or has failed).
 */
#ifndef CRAFT_MR_SCHED_H
#define CRAFT_MR_SCHED_H

#include <stddef.h>
#include <stdint.h>

enum mr_task_kind { MR_MAP = 0, MR_REDUCE = 1 };

enum mr_task_state { MR_IDLE = 0, MR_RUNNING, MR_DONE };

enum mr_reply { MR_REPLY_TASK = 0, MR_REPLY_WAIT, MR_REPLY_EXIT };

struct mr_task {
    enum mr_task_state state;
    uint32_t worker;     /* RUNNING: runs it; DONE map: holds its output */
    uint64_t attempt;    /* of the latest issue (RUNNING) or completion */
    uint64_t started_ms; /* of the latest issue */
    uint32_t failures;   /* errors reported by workers, since it last
                            completed */
    uint32_t losses;     /* attempts that died with their worker, since it
                            last completed */
    uint32_t issues;     /* times issued, for statistics */
};

struct mr_worker_rec {
    uint32_t id; /* index + 1 */
    int alive;
    uint64_t last_seen_ms;
    char addr[64]; /* where it serves map output, "host:port" */
};

struct mr_assignment {
    enum mr_reply reply;
    enum mr_task_kind kind;
    uint32_t task;
    uint64_t attempt;
};

struct mr_sched_config {
    uint32_t n_maps;
    uint32_t n_reduces;
    uint64_t task_timeout_ms;   /* re-issue a task after this long */
    uint64_t worker_timeout_ms; /* a silent worker is lost after this */
    uint32_t max_failures;      /* reported errors before the job fails */
    uint32_t max_losses;        /* lost workers before the job fails */
};

struct mr_sched {
    struct mr_sched_config cfg;
    struct mr_task *maps, *reduces;
    struct mr_worker_rec *workers;
    uint32_t n_workers, cap_workers, n_alive;
    uint32_t maps_done, reduces_done;
    uint64_t next_attempt;
    uint64_t reissues; /* timeouts and losses, for statistics */
    int failed;
    char errmsg[512];
};

/* 0 or CRAFT_ENOMEM / CRAFT_EINVAL (no reduces). */
int mr_sched_init(struct mr_sched *s, const struct mr_sched_config *cfg);
void mr_sched_close(struct mr_sched *s);

/* A new worker; returns its id (>= 1) or 0 on ENOMEM.  addr is copied. */
uint32_t mr_sched_add_worker(struct mr_sched *s, const char *addr,
                             uint64_t now_ms);

/* The live worker record for id, or NULL (unknown or lost: such a worker
 * must register again). */
struct mr_worker_rec *mr_sched_worker(struct mr_sched *s, uint32_t id);

/* The worker was heard from (any request). */
void mr_sched_touch(struct mr_sched *s, uint32_t worker, uint64_t now_ms);

/* What worker should do next.  The worker must be alive. */
struct mr_assignment mr_sched_request(struct mr_sched *s, uint32_t worker,
                                      uint64_t now_ms);

/* Completion of task by worker with the given attempt.  1 if accepted (the
 * task is now DONE), 0 if a duplicate (ignored). */
int mr_sched_complete(struct mr_sched *s, enum mr_task_kind kind, uint32_t task,
                      uint32_t worker, uint64_t attempt);

/* Whether a completion would be accepted now (the coordinator asks before
 * committing a reduce's output). */
int mr_sched_would_accept(const struct mr_sched *s, enum mr_task_kind kind,
                          uint32_t task, uint32_t worker);

/* The worker reports that its attempt failed with errmsg (copied into the
 * job error if this failure makes the job fail). */
void mr_sched_fail(struct mr_sched *s, enum mr_task_kind kind, uint32_t task,
                   uint32_t worker, uint64_t attempt, const char *errmsg);

/* A reducer running `reduce` could not fetch map output from the worker
 * holding `map`: that worker is declared lost (its maps will run again) and
 * the reduce goes back to IDLE without counting as a failure. */
void mr_sched_fetch_failed(struct mr_sched *s, uint32_t reduce,
                           uint32_t reducer, uint64_t attempt, uint32_t map,
                           uint32_t holder);

/* The worker is gone (its connection closed, or it went silent). */
void mr_sched_worker_lost(struct mr_sched *s, uint32_t worker);

/* Fails the job for a reason outside any task (the coordinator cannot
 * write its output, say).  why is copied. */
void mr_sched_abort(struct mr_sched *s, const char *why);

/* Timeouts: re-issues RUNNING tasks older than task_timeout_ms and loses
 * workers silent for worker_timeout_ms.  Returns the number of changes. */
uint32_t mr_sched_tick(struct mr_sched *s, uint64_t now_ms);

static inline int mr_sched_done(const struct mr_sched *s)
{
    return s->reduces_done == s->cfg.n_reduces;
}

/* Checks the invariants above; 1 if they hold. */
int mr_sched_check(const struct mr_sched *s);

#endif /* CRAFT_MR_SCHED_H */
