/*
 * Catching a plugin that crashes.  A fatal signal (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, SIGABRT) raised on a thread inside mr_guard_run() jumps back out
 * of it, so the caller can report "plugin X, map 3: crashed with signal 11"
 * instead of dying silently.  A fatal signal anywhere else keeps its
 * default action (the process dies with it).
 *
 * A plugin that calls exit() inside mr_guard_run() ends the process at
 * once with its status (the other exit handlers are skipped, see guard.c),
 * just as if it had called _exit().
 *
 * After a crash the process's memory can no longer be trusted (the plugin
 * may have scribbled on the heap, or died holding a lock): callers report
 * and exit; they never run more plugin code.
 */
#ifndef CRAFT_MR_GUARD_H
#define CRAFT_MR_GUARD_H

/* Installs the signal handlers and the exit hook; idempotent, call before
 * any guarded run, from one thread. */
void mr_guard_install(void);

/* Runs fn(arg) on the calling thread.  0 if it returned, or the number of
 * the fatal signal it raised. */
int mr_guard_run(void (*fn)(void *arg), void *arg);

#endif /* CRAFT_MR_GUARD_H */
