/* Catching a plugin that crashes; see guard.h. */
#include "mr/guard.h"

#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/assert.h"

/* Where the guarded run on this thread resumes; NULL outside one. */
static _Thread_local sigjmp_buf *guard_jmp;
static _Thread_local volatile sig_atomic_t guard_signal;

static void on_fatal_signal(int sig)
{
    if (guard_jmp) {
        guard_signal = sig;
        siglongjmp(*guard_jmp, 1);
    }
    /* Not plugin code: die of it as if we had not been here. */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* exit() from plugin code: the process ends now, with the plugin's status,
 * as it asked.  The remaining exit handlers are skipped: they would run on
 * a pool thread while the loop thread carries on, and libuv's library
 * destructor, which joins every pool thread (this one too), aborts. */
static void on_exit_handler(int status, void *arg)
{
    (void)arg;
    if (guard_jmp) {
        fflush(NULL);
        _exit(status);
    }
}

void mr_guard_install(void)
{
    static int exit_hooked;
    if (!exit_hooked) {
        exit_hooked = 1;
        int rv = on_exit(on_exit_handler, NULL);
        CRAFT_ASSERT(rv == 0);
    }
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_NODEFER: we leave the handler by siglongjmp, and sigsetjmp(.., 1)
     * restores the mask anyway; a second crash must be caught too. */
    sa.sa_flags = SA_NODEFER;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        int rv = sigaction(sigs[i], &sa, NULL);
        CRAFT_ASSERT(rv == 0);
    }
}

int mr_guard_run(void (*fn)(void *arg), void *arg)
{
    CRAFT_ASSERT(guard_jmp == NULL); /* not nested */
    sigjmp_buf jb;
    guard_signal = 0;
    if (sigsetjmp(jb, 1) != 0) {
        guard_jmp = NULL;
        return (int)guard_signal;
    }
    guard_jmp = &jb;
    fn(arg);
    guard_jmp = NULL;
    return 0;
}
