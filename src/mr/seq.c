/*
 * The sequential reference run; see seq.h.
 *
 * The run happens in a child process, so that a plugin that ends the
 * process (exit() or _exit() in map, as the classic crash plugin does, or
 * a signal the crash guard does not catch) cannot leave the work dir and a
 * half-written output behind: the parent removes both whatever happens,
 * and names the plugin and the task that was running.  The child tells
 * the parent over a pipe, one line each:
 *
 *   "T <task>"   a plugin call starts ("T" alone: it returned)
 *   "O <path>"   the temporary output file ("O" alone: renamed or removed)
 *   "D <rv>"     the child's own code finished with rv (its error, if any,
 *                already printed)
 */
#include "mr/seq.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "craft/common.h"
#include "mr/guard.h"
#include "mr/output.h"
#include "mr/plugin.h"
#include "mr/run.h"
#include "mr/split.h"
#include "mr/task.h"
#include "util/assert.h"

/* The write end of the pipe to the parent (child side only). */
static int seq_report_fd = -1;

static void report(const char *tag, const char *what)
{
    char line[4200];
    int n = snprintf(line, sizeof line, "%s%s%s\n", tag, what ? " " : "",
                     what ? what : "");
    if (n > 0 && (size_t)n < sizeof line) {
        /* Best effort: if the parent is gone nobody is left to tell. */
        (void)mr_write_all(seq_report_fd, line, (size_t)n);
    }
}

/* One map or the reduce, run under the crash guard (guard.h), so that a
 * crashing plugin is reported with its name and task like in a job. */
struct seq_call {
    struct mr_plugin *p;
    const char *task;
    const char *input;
    const void *data;
    size_t len;
    size_t sort_bytes;
    const char *out_path;
    char *const *runs;
    uint32_t n_runs;
    const char *dir;
    struct mr_output *out;
    char *errmsg;
    size_t errlen;
    int rv;
};

static void seq_map_fn(void *arg)
{
    struct seq_call *c = arg;
    c->rv = mr_map_run(c->p, c->task, c->input, c->data, c->len, 1,
                       c->sort_bytes, c->out_path, NULL, c->errmsg, c->errlen);
}

static void seq_reduce_fn(void *arg)
{
    struct seq_call *c = arg;
    c->rv = mr_reduce_run(c->p, c->task, (const char *const *)c->runs,
                          c->n_runs, 1, 0, mr_merge_fanin(c->sort_bytes),
                          c->dir, c->out, c->errmsg, c->errlen);
}

static int guarded(void (*fn)(void *), struct seq_call *c)
{
    report("T", c->task);
    int sig = mr_guard_run(fn, c);
    report("T", NULL);
    if (sig != 0) {
        snprintf(c->errmsg, c->errlen,
                 "plugin %s, %s: crashed with signal %d (%s)", c->p->name,
                 c->task, sig, strsignal(sig));
        return CRAFT_EPLUGIN;
    }
    return c->rv;
}

static int seq_maps(const struct mr_seq_config *cfg, struct mr_plugin *p,
                    const char *dir, char ***runs, uint32_t *n_runs,
                    char *errmsg, size_t errlen)
{
    struct mr_split *splits = NULL;
    uint32_t n = 0;
    int rv = 0;
    for (uint32_t i = 0; rv == 0 && i < cfg->n_inputs; i++) {
        rv = mr_split_file(cfg->inputs[i], i, cfg->split_bytes, &splits, &n,
                           errmsg, errlen);
    }
    char **paths = rv == 0 ? calloc(n ? n : 1, sizeof *paths) : NULL;
    if (rv == 0 && !paths) {
        rv = CRAFT_ENOMEM;
        snprintf(errmsg, errlen, "out of memory");
    }
    for (uint32_t m = 0; rv == 0 && m < n; m++) {
        const char *input = cfg->inputs[splits[m].file];
        void *data;
        rv = mr_split_read(input, &splits[m], &data, errmsg, errlen);
        if (rv != 0) {
            break;
        }
        paths[m] = malloc(strlen(dir) + 32);
        if (!paths[m]) {
            free(data);
            rv = CRAFT_ENOMEM;
            break;
        }
        sprintf(paths[m], "%s/map-%u", dir, m);
        char task[32];
        snprintf(task, sizeof task, "map %u", m);
        struct seq_call call = {.p = p,
                                .task = task,
                                .input = input,
                                .data = data,
                                .len = (size_t)splits[m].length,
                                .sort_bytes = cfg->sort_bytes,
                                .out_path = paths[m],
                                .errmsg = errmsg,
                                .errlen = errlen};
        rv = guarded(seq_map_fn, &call);
        free(data);
        *n_runs = m + 1;
    }
    free(splits);
    *runs = paths;
    return rv;
}

/* The whole run, in the child, in the fresh work dir `dir`. */
static int seq_job(const struct mr_seq_config *cfg, const char *dir)
{
    mr_guard_install();
    char errmsg[512] = "";
    struct mr_plugin p;
    report("T", "init");
    int rv =
        mr_plugin_load(&p, cfg->plugin_path, cfg->args, errmsg, sizeof errmsg);
    report("T", NULL);
    char **runs = NULL;
    uint32_t n_runs = 0;
    if (rv == 0) {
        rv = seq_maps(cfg, &p, dir, &runs, &n_runs, errmsg, sizeof errmsg);
    }
    struct mr_output out;
    if (rv == 0) {
        rv = mr_output_open(&out, cfg->output, errmsg, sizeof errmsg);
        if (rv == 0) {
            report("O", out.tmp_path);
            struct seq_call call = {.p = &p,
                                    .task = "reduce 0",
                                    .sort_bytes = cfg->sort_bytes,
                                    .runs = runs,
                                    .n_runs = n_runs,
                                    .dir = dir,
                                    .out = &out,
                                    .errmsg = errmsg,
                                    .errlen = sizeof errmsg};
            rv = guarded(seq_reduce_fn, &call);
            if (rv == 0) {
                rv = mr_output_commit(&out, errmsg, sizeof errmsg);
            } else {
                mr_output_abort(&out);
            }
            report("O", NULL);
        }
    }
    for (uint32_t i = 0; i < n_runs; i++) {
        if (runs[i]) {
            unlink(runs[i]);
        }
        free(runs[i]);
    }
    free(runs);
    mr_plugin_close(&p);
    if (rv != 0) {
        fprintf(stderr, "craft-mr seq: %s\n",
                errmsg[0] ? errmsg : craft_strerror(rv));
    }
    return rv;
}

/* Removes dir and the files in it (the work dir is flat). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return;
    }
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

/* What the parent learnt from the child's reports. */
struct seq_watch {
    char task[64];      /* plugin call in progress, "" if none */
    char tmp_out[4200]; /* unfinished output file, "" if none */
    int done;
    int rv; /* the child's result, once done */
};

static void watch_line(struct seq_watch *w, const char *line)
{
    const char *arg = line[0] && line[1] == ' ' ? line + 2 : "";
    if (line[0] == 'T') {
        snprintf(w->task, sizeof w->task, "%s", arg);
    } else if (line[0] == 'O') {
        snprintf(w->tmp_out, sizeof w->tmp_out, "%s", arg);
    } else if (line[0] == 'D') {
        w->done = 1;
        w->rv = (int)strtol(arg, NULL, 10);
    }
}

/* Reads the child's reports until it closes the pipe. */
static void watch_child(int fd, struct seq_watch *w)
{
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        have += (size_t)n;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', have - (size_t)(start - buf)))) {
            *nl = '\0';
            watch_line(w, start);
            start = nl + 1;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
        if (have == sizeof buf) {
            have = 0; /* a line longer than any we write: drop it */
        }
    }
}

int mr_seq_run(const struct mr_seq_config *cfg)
{
    CRAFT_ASSERT(cfg->plugin_path != NULL);
    CRAFT_ASSERT(cfg->output != NULL);
    char dir[4096];
    if (cfg->work_dir) {
        snprintf(dir, sizeof dir, "%s/craft-mr-seq.XXXXXX", cfg->work_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/craft-mr-seq.XXXXXX", tmp ? tmp : "/tmp");
    }
    if (!mkdtemp(dir)) {
        fprintf(stderr, "craft-mr seq: cannot create a work dir %s\n", dir);
        return CRAFT_EIO;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "craft-mr seq: pipe: %s\n", strerror(errno));
        rmdir(dir);
        return CRAFT_EIO;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "craft-mr seq: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        rmdir(dir);
        return CRAFT_EIO;
    }
    if (pid == 0) {
        close(fds[0]);
        seq_report_fd = fds[1];
        int rv = seq_job(cfg, dir);
        char num[16];
        snprintf(num, sizeof num, "%d", rv);
        report("D", num);
        fflush(NULL);
        _exit(rv == 0 ? 0 : 1);
    }
    close(fds[1]);
    struct seq_watch w = {.done = 0};
    watch_child(fds[0], &w);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    remove_dir(dir);
    if (w.tmp_out[0]) {
        unlink(w.tmp_out);
    }
    if (w.done && WIFEXITED(status)) {
        return w.rv;
    }
    const char *base = strrchr(cfg->plugin_path, '/');
    base = base ? base + 1 : cfg->plugin_path;
    char how[64];
    if (WIFEXITED(status)) {
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(how, sizeof how, "signal %d, %s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(how, sizeof how, "status %#x", (unsigned)status);
    }
    if (w.task[0]) {
        fprintf(stderr, "craft-mr seq: plugin %s, %s: the process ended (%s)\n",
                base, w.task, how);
    } else {
        fprintf(stderr, "craft-mr seq: the run ended outside the plugin (%s)\n",
                how);
    }
    return CRAFT_EPLUGIN;
}
