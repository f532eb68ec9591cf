/*
 * The worker; see worker.h.
 *
 * The worker is a chain of asynchronous steps on the loop thread:
 *
 *   connect -> HELLO -> [PLUGIN chunks] -> TASK --WAIT--> (100 ms) TASK
 *                                            |--EXIT--> exit 0
 *     map:    INPUT chunks -> map on the pool -> MAP_DONE  -> TASK
 *     reduce: FETCH from holders (4 streams) -> reduce on the pool
 *             -> OUTPUT chunks -> REDUCE_DONE -> TASK
 *     failure: FAIL (plugin error) or FETCH_FAILED -> TASK
 *
 * Invariants:
 *   1. At most one task at a time; `gen` changes whenever the current task
 *      is abandoned, and every callback of a task step compares the gen it
 *      was started with, so a late reply never touches a newer task.
 *   2. Plugin code runs only in `work` on the pool; the loop thread never
 *      blocks on it.
 *   3. A fetched segment is used only after its crc32c matched the one the
 *      map reported to the coordinator (end-to-end check).
 *   4. The worker exits 0 only on EXIT / JOB_OVER from the coordinator,
 *      i.e. when the job is done -- never because it ran out of tasks.
 */
#include "mr/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "craft/common.h"
#include "mr/output.h"
#include "mr/plugin.h"
#include "mr/run.h"
#include "mr/sched.h"
#include "mr/task.h"
#include "mr/wire.h"
#include "net/net.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/log.h"

/* Parallel fetch streams per reduce: enough to overlap round trips to
 * several holders, few enough not to flood one. */
#define FETCH_STREAMS 4
#define FETCH_RETRIES 3
#define FETCH_RETRY_MS 300u
/* RPC timeouts: the coordinator answers at once except REDUCE_DONE, which
 * waits for an fsync; 30 s covers a slow disk. */
#define RPC_TIMEOUT_MS 30000u
#define WAIT_POLL_MS 10u
#define HEARTBEAT_MS 1000u

struct fetch_src {
    char addr[80];
    uint32_t holder;
    uint64_t attempt, length, n_records;
    uint32_t crc;
};

struct worker;

struct stream {
    struct worker *w;
    uint64_t gen;
    int busy;
    uint32_t src;
    uint64_t off;
    uint32_t crc;
    int fd;
    int retries;
    struct net_conn *conn;
    char conn_addr[80];
    uv_timer_t retry;
};

struct worker {
    const struct mr_worker_config *cfg;
    uv_loop_t *loop;
    char dir[4096];
    struct net_conn *coord;
    uint64_t first_try_ms;
    unsigned backoff_ms;
    int registered_once;
    struct net_server *fetch_srv;
    uint16_t fetch_port;
    uv_timer_t timer, hb;
    uint32_t id, n_maps, n_reduces;
    /* plugin */
    uint64_t plugin_size, plugin_got;
    uint32_t plugin_crc, plugin_have_crc;
    char plugin_name[64];
    char plugin_path[4200];
    int plugin_fd;
    struct mr_plugin plugin;
    int plugin_ok;
    char plugin_err[512];
    char **arg_keys, **arg_values;
    size_t n_args;
    struct mr_args args;
    /* the current task */
    uint64_t gen;
    int has_task;
    enum mr_task_kind kind;
    uint32_t task;
    uint64_t attempt;
    char filename[MR_STR_MAX + 1];
    uint8_t *input;
    uint64_t length, got;
    char out_path[4200];
    struct fetch_src *srcs;
    uint32_t n_srcs, next_src, srcs_done;
    int fetch_complete;
    char **runs;
    uint32_t n_runs;
    struct stream streams[FETCH_STREAMS];
    uint64_t up_off, up_size;
    uint32_t up_crc;
    int up_fd;
    /* the pool job */
    uv_work_t work;
    int work_busy;
    int work_rv;
    int crashed;
    struct mr_map_stats map_stats;
    char errmsg[1024];
    int exiting;
    int exit_code;
};

static void ask_task(struct worker *w);
static void send_hello(struct worker *w);
static void coord_lost(struct worker *w, int status);
static void start_connect(struct worker *w);
static void stream_next(struct stream *s);

/* ---- crash guard -------------------------------------------------------- */

static _Thread_local sigjmp_buf *crash_jmp;
static volatile sig_atomic_t crash_signal;

static void on_fatal_signal(int sig)
{
    if (crash_jmp) {
        crash_signal = sig;
        siglongjmp(*crash_jmp, 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_crash_guard(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- small helpers ------------------------------------------------------ */

static void say(struct worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(struct worker *w, const char *fmt, ...)
{
    if (w->cfg->quiet) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "craft-mr worker %d: %s\n", (int)getpid(), line);
}

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

/* Removes every file of earlier tasks except the plugin. */
static void clear_outputs(struct worker *w)
{
    DIR *d = opendir(w->dir);
    if (!d) {
        return;
    }
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "map-", 4) == 0 ||
            strncmp(e->d_name, "fetch-", 6) == 0 ||
            strncmp(e->d_name, "reduce-", 7) == 0 ||
            strncmp(e->d_name, ".reduce-", 8) == 0) {
            snprintf(path, sizeof path, "%s/%s", w->dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void close_streams(struct worker *w)
{
    for (int i = 0; i < FETCH_STREAMS; i++) {
        struct stream *s = &w->streams[i];
        if (s->conn) {
            net_conn_close(s->conn);
            s->conn = NULL;
        }
        if (s->fd >= 0) {
            close(s->fd);
            s->fd = -1;
        }
        s->busy = 0;
        uv_timer_stop(&s->retry);
    }
}

/* Forgets the current task (invariant 1) and deletes its files. */
/* Frees what the task's computation reads.  Only while no pool job runs
 * (invariant 2): an abandoned job keeps its buffers until work_after. */
static void free_task_data(struct worker *w)
{
    CRAFT_ASSERT(!w->work_busy);
    free(w->input);
    w->input = NULL;
    for (uint32_t i = 0; i < w->n_runs; i++) {
        if (w->runs[i]) { /* NULL: not fetched (yet), or empty */
            unlink(w->runs[i]);
            free(w->runs[i]);
        }
    }
    free(w->runs);
    w->runs = NULL;
    w->n_runs = 0;
    free(w->srcs);
    w->srcs = NULL;
    if (w->up_fd >= 0) {
        close(w->up_fd);
        w->up_fd = -1;
    }
    if (w->kind == MR_REDUCE && w->out_path[0]) {
        unlink(w->out_path);
    }
    w->out_path[0] = '\0';
}

static void drop_task(struct worker *w)
{
    w->gen++;
    w->has_task = 0;
    close_streams(w);
    uv_timer_stop(&w->hb);
    if (!w->work_busy) {
        free_task_data(w);
    }
}

static void finish(struct worker *w, int code, const char *why)
{
    if (w->exiting) {
        return;
    }
    w->exiting = 1;
    w->exit_code = code;
    if (code == 0) {
        say(w, "%s; exiting", why);
    } else {
        fprintf(stderr, "craft-mr worker %d: %s\n", (int)getpid(), why);
    }
    drop_task(w);
    remove_dir(w->dir);
    if (w->work_busy) {
        /* The plugin is still running on the pool and cannot be stopped;
         * its files are gone and nothing waits for it. */
        fflush(NULL);
        _exit(code);
    }
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_closed_handle);
    uv_close((uv_handle_t *)&w->hb, on_closed_handle);
    for (int i = 0; i < FETCH_STREAMS; i++) {
        uv_close((uv_handle_t *)&w->streams[i].retry, on_closed_handle);
    }
    if (w->coord) {
        net_conn_close(w->coord);
        w->coord = NULL;
    }
    if (w->fetch_srv) {
        net_server_close(w->fetch_srv, NULL, NULL);
        w->fetch_srv = NULL;
    }
}

/* Sends a request to the coordinator; on a local error the connection is
 * treated as lost. */
static void coord_call(struct worker *w, uint16_t type, struct mr_wbuf *b,
                       net_call_cb cb)
{
    int rv = b->oom ? CRAFT_ENOMEM : 0;
    if (rv == 0 && w->coord) {
        rv = net_call(w->coord, type, b->b.data, b->b.len, RPC_TIMEOUT_MS, w,
                      cb);
    } else if (rv == 0) {
        rv = CRAFT_ECLOSED;
    }
    mr_w_close(b);
    if (rv != 0) {
        coord_lost(w, rv);
    }
}

/* A reply status that is not 0: ENOENT means register again; a transport
 * error means the coordinator is gone; anything else is a protocol bug on
 * one side, reported and treated as lost. */
static int reply_failed(struct worker *w, int status, const uint8_t *p,
                        size_t len)
{
    if (status == 0) {
        return 0;
    }
    if (w->exiting) {
        return 1;
    }
    if (status == CRAFT_ENOENT) {
        say(w, "the coordinator forgot this worker; registering again");
        drop_task(w);
        clear_outputs(w);
        w->id = 0;
        if (w->coord) {
            net_conn_close(w->coord);
        }
        return 1;
    }
    if (status == CRAFT_ESHUTDOWN) {
        finish(w, 0, "the job is over");
        return 1;
    }
    if (status == CRAFT_ETIMEDOUT || status == CRAFT_ECLOSED) {
        coord_lost(w, status);
        return 1;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "coordinator error: %s: %.*s",
             craft_strerror(status), (int)(len < 200 ? len : 200),
             (const char *)p);
    finish(w, 1, msg);
    return 1;
}

/* ---- failure reports ---------------------------------------------------- */

static void after_fail_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (w->crashed) {
        finish(w, 1, "exiting after a plugin crash (memory may be corrupt)");
        return;
    }
    if (reply_failed(w, status, p, len)) {
        return;
    }
    ask_task(w);
}

static void report_fail(struct worker *w, const char *msg)
{
    say(w, "%s", msg);
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    mr_w_u8(&b, (uint8_t)w->kind);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, w->attempt);
    char clipped[MR_STR_MAX];
    snprintf(clipped, sizeof clipped, "%s", msg);
    mr_w_str(&b, clipped);
    drop_task(w);
    coord_call(w, MR_MSG_FAIL, &b, after_fail_cb);
}

/* ---- the pool job ------------------------------------------------------- */

static void run_guarded(struct worker *w)
{
    char task[64];
    snprintf(task, sizeof task, "%s %u", w->kind == MR_MAP ? "map" : "reduce",
             w->task);
    sigjmp_buf jb;
    crash_jmp = &jb;
    if (sigsetjmp(jb, 1) != 0) {
        crash_jmp = NULL;
        w->crashed = 1;
        w->work_rv = CRAFT_EPLUGIN;
        snprintf(w->errmsg, sizeof w->errmsg,
                 "plugin %s, %s: crashed with signal %d (%s)", w->plugin.name,
                 task, (int)crash_signal, strsignal(crash_signal));
        return;
    }
    if (w->kind == MR_MAP) {
        w->work_rv = mr_map_run(&w->plugin, task, w->filename, w->input,
                                (size_t)w->length, w->n_reduces,
                                (size_t)(w->cfg->memory_bytes / 4), w->out_path,
                                &w->map_stats, w->errmsg, sizeof w->errmsg);
    } else {
        struct mr_output out;
        w->work_rv =
            mr_output_open(&out, w->out_path, w->errmsg, sizeof w->errmsg);
        if (w->work_rv == 0) {
            w->work_rv = mr_reduce_run(
                &w->plugin, task, (const char *const *)w->runs, w->n_runs, 1, 0,
                w->dir, &out, w->errmsg, sizeof w->errmsg);
        }
        if (w->work_rv == 0) {
            w->up_size = out.bytes;
            w->up_crc = out.crc;
            w->work_rv = mr_output_commit(&out, w->errmsg, sizeof w->errmsg);
        } else {
            mr_output_abort(&out);
        }
    }
    crash_jmp = NULL;
}

static void work_run(uv_work_t *work)
{
    run_guarded(work->data);
}

static void map_done_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    ask_task(w);
}

static void map_finished(struct worker *w)
{
    LOG_INFOF("map %u done: %" PRIu64 " records, %u spills", w->task,
              w->map_stats.records, w->map_stats.spills);
    free(w->input);
    w->input = NULL;
    struct mr_segment *segs;
    char err[256];
    int rv =
        mr_run_read_index(w->out_path, w->n_reduces, &segs, err, sizeof err);
    if (rv != 0) {
        report_fail(w, err);
        return;
    }
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, w->attempt);
    mr_w_u32(&b, w->n_reduces);
    for (uint32_t r = 0; r < w->n_reduces; r++) {
        mr_w_u64(&b, segs[r].length);
        mr_w_u64(&b, segs[r].n_records);
        mr_w_u32(&b, segs[r].crc);
    }
    free(segs);
    /* The output stays on disk for reducers; the task is over here. */
    w->out_path[0] = '\0';
    w->has_task = 0;
    uv_timer_stop(&w->hb);
    coord_call(w, MR_MSG_MAP_DONE, &b, map_done_cb);
}

static void upload_next(struct worker *w);

static void work_after(uv_work_t *work, int status)
{
    (void)status;
    struct worker *w = work->data;
    w->work_busy = 0;
    if (w->exiting) {
        return;
    }
    if (!w->has_task) {
        /* Abandoned while it ran (the coordinator connection was lost):
         * free what it used, and register again if the new connection is
         * up already. */
        if (w->kind == MR_MAP && w->out_path[0]) {
            unlink(w->out_path);
        }
        free_task_data(w);
        if (w->coord && w->id == 0) {
            send_hello(w);
        }
        return;
    }
    if (w->work_rv != 0) {
        if (w->kind == MR_MAP) {
            unlink(w->out_path);
        }
        report_fail(w, w->errmsg);
        return;
    }
    if (w->kind == MR_MAP) {
        map_finished(w);
    } else {
        w->up_off = 0;
        w->up_fd = open(w->out_path, O_RDONLY | O_CLOEXEC);
        if (w->up_fd < 0) {
            report_fail(w, "cannot reopen the reduce output");
            return;
        }
        upload_next(w);
    }
}

static void queue_work(struct worker *w)
{
    CRAFT_ASSERT(!w->work_busy);
    w->work.data = w;
    w->work_busy = 1;
    int rv = uv_queue_work(w->loop, &w->work, work_run, work_after);
    CRAFT_ASSERT(rv == 0);
}

/* ---- reduce: upload ------------------------------------------------------ */

static void reduce_done_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    drop_task(w);
    ask_task(w);
}

static void output_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    upload_next(w);
}

static void upload_next(struct worker *w)
{
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, w->attempt);
    if (w->up_off == w->up_size) {
        mr_w_u64(&b, w->up_size);
        mr_w_u32(&b, w->up_crc);
        coord_call(w, MR_MSG_REDUCE_DONE, &b, reduce_done_cb);
        return;
    }
    mr_w_u64(&b, w->up_off);
    uint64_t left = w->up_size - w->up_off;
    size_t n = left < MR_CHUNK_BYTES ? (size_t)left : MR_CHUNK_BYTES;
    size_t at = b.b.len;
    if (!b.oom && buf_reserve(&b.b, n) == 0) {
        int rv = mr_pread_all(w->up_fd, b.b.data + at, n, w->up_off);
        if (rv != 0) {
            mr_w_close(&b);
            report_fail(w, "cannot read the local reduce output");
            return;
        }
        b.b.len += n;
    } else {
        b.oom = 1;
    }
    w->up_off += n;
    coord_call(w, MR_MSG_OUTPUT, &b, output_cb);
}

/* ---- reduce: fetch ------------------------------------------------------- */

static void fetch_failed_cb(void *data, int status, const uint8_t *p,
                            size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    ask_task(w);
}

/* Gives up the reduce: the coordinator re-runs the unreachable map. */
static void give_up_fetch(struct worker *w, uint32_t src)
{
    const struct fetch_src *f = &w->srcs[src];
    say(w, "reduce %u: cannot fetch map %u from %s; reporting it", w->task, src,
        f->addr);
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, w->attempt);
    mr_w_u32(&b, src);
    mr_w_u32(&b, f->holder);
    drop_task(w);
    coord_call(w, MR_MSG_FETCH_FAILED, &b, fetch_failed_cb);
}

static void compact_runs(struct worker *w);

static void all_fetched(struct worker *w)
{
    compact_runs(w);
    if (!w->plugin_ok) {
        char msg[700];
        snprintf(msg, sizeof msg, "%s (reduce %u)", w->plugin_err, w->task);
        report_fail(w, msg);
        return;
    }
    snprintf(w->out_path, sizeof w->out_path, "%s/reduce-%u-%" PRIu64 ".out",
             w->dir, w->task, w->attempt);
    queue_work(w);
}

static void stream_error(struct stream *s, const char *why);

static void on_retry(uv_timer_t *t)
{
    struct stream *s = t->data;
    if (s->gen != s->w->gen) {
        return;
    }
    stream_next(s);
}

static void stream_error(struct stream *s, const char *why)
{
    struct worker *w = s->w;
    LOG_DEBUGF("fetch of map %u failed: %s", s->src, why);
    if (s->conn) {
        net_conn_close(s->conn);
        s->conn = NULL;
    }
    if (++s->retries > FETCH_RETRIES) {
        give_up_fetch(w, s->src);
        return;
    }
    /* Retry this source from the start after a pause. */
    uv_timer_start(&s->retry, on_retry, FETCH_RETRY_MS, 0);
    s->busy = 2; /* retrying s->src */
}

static void fetch_chunk(struct stream *s);

static void fetch_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct stream *s = data;
    struct worker *w = s->w;
    if (s->gen != w->gen || w->exiting) {
        return;
    }
    if (status != 0) {
        stream_error(s, craft_strerror(status));
        return;
    }
    const struct fetch_src *f = &w->srcs[s->src];
    if (len == 0 || s->off + len > f->length) {
        stream_error(s, "bad chunk length");
        return;
    }
    if (mr_write_all(s->fd, p, len) != 0) {
        report_fail(w, "cannot write fetched map output (disk full?)");
        return;
    }
    s->crc = crc32c(s->crc, p, len);
    s->off += len;
    if (s->off < f->length) {
        fetch_chunk(s);
        return;
    }
    if (s->crc != f->crc) {
        stream_error(s, "checksum mismatch");
        return;
    }
    struct mr_segment seg = {0, f->length, f->n_records, f->crc};
    if (mr_run_seal_segment(s->fd, &seg) != 0) {
        report_fail(w, "cannot write fetched map output (disk full?)");
        return;
    }
    close(s->fd);
    s->fd = -1;
    s->busy = 0;
    s->retries = 0;
    w->srcs_done++;
    stream_next(s);
}

static void fetch_chunk(struct stream *s)
{
    struct worker *w = s->w;
    const struct fetch_src *f = &w->srcs[s->src];
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, s->src);
    mr_w_u64(&b, f->attempt);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, s->off);
    int rv = b.oom ? CRAFT_ENOMEM
                   : net_call(s->conn, MR_MSG_FETCH, b.b.data, b.b.len,
                              RPC_TIMEOUT_MS, s, fetch_cb);
    mr_w_close(&b);
    if (rv != 0) {
        stream_error(s, craft_strerror(rv));
    }
}

static void stream_on_close(void *data, struct net_conn *conn, int status)
{
    (void)status;
    struct worker *w = data;
    for (int i = 0; i < FETCH_STREAMS; i++) {
        if (w->streams[i].conn == conn) {
            w->streams[i].conn = NULL;
        }
    }
}

static void stream_connected(void *data, struct net_conn *conn, int status)
{
    struct stream *s = data;
    struct worker *w = s->w;
    if (s->gen != w->gen || w->exiting) {
        if (conn) {
            net_conn_close(conn);
        }
        return;
    }
    if (status != 0) {
        stream_error(s, craft_strerror(status));
        return;
    }
    s->conn = conn;
    fetch_chunk(s);
}

/* Starts (or restarts) fetching source s->src on stream s. */
static void stream_begin(struct stream *s)
{
    struct worker *w = s->w;
    const struct fetch_src *f = &w->srcs[s->src];
    char path[4400];
    snprintf(path, sizeof path, "%s/fetch-%u-%u", w->dir, w->task, s->src);
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        report_fail(w, "cannot create a file for fetched map output");
        return;
    }
    free(w->runs[s->src]);
    w->runs[s->src] = strdup(path);
    s->off = 0;
    s->crc = 0;
    if (s->conn && strcmp(s->conn_addr, f->addr) == 0) {
        fetch_chunk(s);
        return;
    }
    if (s->conn) {
        net_conn_close(s->conn);
        s->conn = NULL;
    }
    snprintf(s->conn_addr, sizeof s->conn_addr, "%s", f->addr);
    struct net_config ncfg;
    net_config_init(&ncfg);
    ncfg.frame_max = 4 * MR_CHUNK_BYTES;
    struct net_handlers h = {w, NULL, NULL, NULL, stream_on_close};
    int rv =
        net_connect(w->loop, &ncfg, f->addr, &h, NULL, s, stream_connected);
    if (rv != 0) {
        stream_error(s, craft_strerror(rv));
    }
}

static void stream_next(struct stream *s)
{
    struct worker *w = s->w;
    s->gen = w->gen;
    if (s->busy == 2) {
        s->busy = 1;
        stream_begin(s);
        return;
    }
    /* Skip empty segments: nothing to fetch, nothing to merge. */
    while (w->next_src < w->n_srcs && w->srcs[w->next_src].length == 0) {
        w->next_src++;
        w->srcs_done++;
    }
    if (w->srcs_done == w->n_srcs) {
        /* Every source fetched or empty (srcs_done counts only those). */
        if (!w->fetch_complete) {
            w->fetch_complete = 1;
            all_fetched(w);
        }
        return;
    }
    if (w->next_src == w->n_srcs) {
        return; /* the other streams finish the rest */
    }
    s->src = w->next_src++;
    s->busy = 1;
    s->retries = 0;
    stream_begin(s);
}

/* ---- tasks ------------------------------------------------------------- */

static void heartbeat_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (status != 0 || w->exiting) {
        return; /* the main flow notices a lost coordinator */
    }
    if (len == 1 && p[0] == 0) {
        finish(w, 0, "the job is over");
    }
}

static void on_heartbeat(uv_timer_t *t)
{
    struct worker *w = t->data;
    if (!w->coord || !w->has_task) {
        return;
    }
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    mr_w_u8(&b, (uint8_t)w->kind);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, w->attempt);
    if (!b.oom) {
        (void)net_call(w->coord, MR_MSG_HEARTBEAT, b.b.data, b.b.len,
                       RPC_TIMEOUT_MS, w, heartbeat_cb);
    }
    mr_w_close(&b);
}

static void input_next(struct worker *w);

static void input_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    if (len == 0 || w->got + len > w->length) {
        report_fail(w, "bad input chunk from the coordinator");
        return;
    }
    memcpy(w->input + w->got, p, len);
    w->got += len;
    input_next(w);
}

static void input_next(struct worker *w)
{
    if (w->got == w->length) {
        snprintf(w->out_path, sizeof w->out_path, "%s/map-%u-%" PRIu64 ".run",
                 w->dir, w->task, w->attempt);
        queue_work(w);
        return;
    }
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    mr_w_u32(&b, w->task);
    mr_w_u64(&b, w->attempt);
    mr_w_u64(&b, w->got);
    coord_call(w, MR_MSG_INPUT, &b, input_cb);
}

static void start_map(struct worker *w, struct mr_rbuf *r)
{
    mr_r_str(r, w->filename, sizeof w->filename);
    w->length = mr_r_u64(r);
    if (!mr_r_ok(r)) {
        finish(w, 1, "malformed map task from the coordinator");
        return;
    }
    char msg[800];
    if (!w->plugin_ok) {
        snprintf(msg, sizeof msg, "%s (map %u)", w->plugin_err, w->task);
        report_fail(w, msg);
        return;
    }
    if (w->length > w->cfg->memory_bytes / 4) {
        snprintf(msg, sizeof msg,
                 "map %u: split of %" PRIu64 " bytes exceeds a quarter of "
                 "this worker's --memory-mb",
                 w->task, w->length);
        report_fail(w, msg);
        return;
    }
    w->input = malloc(w->length ? (size_t)w->length : 1);
    if (!w->input) {
        report_fail(w, "out of memory for the input split");
        return;
    }
    w->got = 0;
    input_next(w);
}

static void start_reduce(struct worker *w, struct mr_rbuf *r)
{
    uint32_t n = mr_r_u32(r);
    if (r->err || n != w->n_maps) {
        finish(w, 1, "malformed reduce task from the coordinator");
        return;
    }
    w->srcs = calloc(n ? n : 1, sizeof *w->srcs);
    w->runs = calloc(n ? n : 1, sizeof *w->runs);
    if (!w->srcs || !w->runs) {
        report_fail(w, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct fetch_src *f = &w->srcs[i];
        mr_r_str(r, f->addr, sizeof f->addr);
        f->holder = mr_r_u32(r);
        f->attempt = mr_r_u64(r);
        f->length = mr_r_u64(r);
        f->n_records = mr_r_u64(r);
        f->crc = mr_r_u32(r);
    }
    if (!mr_r_ok(r)) {
        finish(w, 1, "malformed reduce task from the coordinator");
        return;
    }
    w->n_srcs = n;
    w->n_runs = n;
    w->next_src = 0;
    w->srcs_done = 0;
    w->fetch_complete = 0;
    for (int i = 0; i < FETCH_STREAMS; i++) {
        w->streams[i].busy = 0;
    }
    /* Each stream takes the next source; with every segment empty the
     * first call finds nothing to fetch and starts the reduce. */
    uint64_t gen = w->gen;
    for (int i = 0; i < FETCH_STREAMS && w->gen == gen; i++) {
        if (!w->streams[i].busy) {
            stream_next(&w->streams[i]);
        }
    }
}

static void compact_runs(struct worker *w)
{
    /* Empty segments were skipped: drop their NULL paths. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < w->n_runs; i++) {
        if (w->runs[i]) {
            w->runs[k++] = w->runs[i];
        }
    }
    w->n_runs = k;
}

static void on_wait(uv_timer_t *t)
{
    ask_task(t->data);
}

static void task_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    struct mr_rbuf r;
    mr_r_init(&r, p, len);
    uint8_t reply = mr_r_u8(&r);
    if (r.err) {
        finish(w, 1, "malformed task reply from the coordinator");
        return;
    }
    if (reply == MR_REPLY_EXIT) {
        finish(w, 0, "the job is over");
        return;
    }
    if (reply == MR_REPLY_WAIT) {
        uv_timer_start(&w->timer, on_wait, WAIT_POLL_MS, 0);
        return;
    }
    uint8_t kind = mr_r_u8(&r);
    w->task = mr_r_u32(&r);
    w->attempt = mr_r_u64(&r);
    if (r.err || kind > MR_REDUCE) {
        finish(w, 1, "malformed task reply from the coordinator");
        return;
    }
    w->gen++;
    w->kind = (enum mr_task_kind)kind;
    w->has_task = 1;
    uv_timer_start(&w->hb, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    LOG_DEBUGF("%s %u attempt %" PRIu64, kind == MR_MAP ? "map" : "reduce",
               w->task, w->attempt);
    if (w->kind == MR_MAP) {
        start_map(w, &r);
    } else {
        start_reduce(w, &r);
    }
}

static void ask_task(struct worker *w)
{
    if (w->exiting || w->work_busy) {
        return;
    }
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, w->id);
    coord_call(w, MR_MSG_TASK, &b, task_cb);
}

/* ---- the plugin -------------------------------------------------------- */

static void load_plugin(struct worker *w)
{
    mr_plugin_close(&w->plugin);
    w->args = (struct mr_args){w->n_args, (const char *const *)w->arg_keys,
                               (const char *const *)w->arg_values};
    /* Name the loaded file as the user named the plugin, so errors read
     * "plugin wc.so". */
    int rv = mr_plugin_load(&w->plugin, w->plugin_path, &w->args, w->plugin_err,
                            sizeof w->plugin_err);
    snprintf(w->plugin.name, sizeof w->plugin.name, "%.63s", w->plugin_name);
    if (rv != 0) {
        /* Say it with the coordinator's name for the plugin. */
        const char *colon = strchr(w->plugin_err, ':');
        char msg[512];
        snprintf(msg, sizeof msg, "plugin %.63s%.400s", w->plugin_name,
                 colon ? colon : ": cannot load");
        snprintf(w->plugin_err, sizeof w->plugin_err, "%s", msg);
        say(w, "%s", w->plugin_err);
    }
    w->plugin_ok = rv == 0;
}

static void plugin_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    if ((len == 0 && w->plugin_got < w->plugin_size) ||
        w->plugin_got + len > w->plugin_size ||
        mr_write_all(w->plugin_fd, p, len) != 0) {
        finish(w, 1, "cannot download the plugin");
        return;
    }
    w->plugin_have_crc = crc32c(w->plugin_have_crc, p, len);
    w->plugin_got += len;
    if (w->plugin_got < w->plugin_size) {
        struct mr_wbuf b;
        mr_w_init(&b);
        mr_w_u64(&b, w->plugin_got);
        coord_call(w, MR_MSG_PLUGIN, &b, plugin_cb);
        return;
    }
    close(w->plugin_fd);
    w->plugin_fd = -1;
    if (w->plugin_have_crc != w->plugin_crc) {
        finish(w, 1, "the downloaded plugin failed its checksum");
        return;
    }
    load_plugin(w);
    ask_task(w);
}

static void fetch_plugin(struct worker *w)
{
    if (w->plugin_ok && w->plugin_have_crc == w->plugin_crc &&
        w->plugin_got == w->plugin_size) {
        ask_task(w);
        return;
    }
    /* A fresh file per download: dlopen of a path caches by name. */
    snprintf(w->plugin_path, sizeof w->plugin_path, "%.4000s/plugin-%08x-%.63s",
             w->dir, w->plugin_crc, w->plugin_name);
    w->plugin_fd =
        open(w->plugin_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (w->plugin_fd < 0) {
        finish(w, 1, "cannot write the plugin into the work dir");
        return;
    }
    w->plugin_got = 0;
    w->plugin_have_crc = 0;
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u64(&b, 0);
    coord_call(w, MR_MSG_PLUGIN, &b, plugin_cb);
}

/* ---- registration and the coordinator connection ---------------------- */

static void free_args(struct worker *w)
{
    for (size_t i = 0; i < w->n_args; i++) {
        free(w->arg_keys[i]);
        free(w->arg_values[i]);
    }
    free(w->arg_keys);
    free(w->arg_values);
    w->arg_keys = w->arg_values = NULL;
    w->n_args = 0;
}

static int decode_hello(struct worker *w, const uint8_t *p, size_t len)
{
    struct mr_rbuf r;
    mr_r_init(&r, p, len);
    w->id = mr_r_u32(&r);
    w->n_maps = mr_r_u32(&r);
    w->n_reduces = mr_r_u32(&r);
    w->plugin_size = mr_r_u64(&r);
    uint32_t crc = mr_r_u32(&r);
    mr_r_str(&r, w->plugin_name, sizeof w->plugin_name);
    uint32_t n = mr_r_u32(&r);
    if (r.err || n > 64 || w->plugin_name[0] == '\0' ||
        strchr(w->plugin_name, '/') || w->n_reduces == 0) {
        return CRAFT_EPROTO;
    }
    /* The loaded plugin holds pointers into its args for its whole life
     * (craft/mr.h): registering again with the same coordinator keeps both;
     * a different plugin is unloaded (fini) before its args are freed. */
    int keep = w->plugin.v1 != NULL && crc == w->plugin_crc;
    if (!keep) {
        mr_plugin_close(&w->plugin);
        w->plugin_ok = 0;
        w->plugin_crc = crc;
        free_args(w);
        w->arg_keys = calloc(n ? n : 1, sizeof(char *));
        w->arg_values = calloc(n ? n : 1, sizeof(char *));
        if (!w->arg_keys || !w->arg_values) {
            return CRAFT_ENOMEM;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        char k[MR_STR_MAX + 1], v[MR_STR_MAX + 1];
        mr_r_str(&r, k, sizeof k);
        mr_r_str(&r, v, sizeof v);
        if (keep) {
            continue;
        }
        w->arg_keys[i] = strdup(k);
        w->arg_values[i] = strdup(v);
        w->n_args = i + 1;
        if (!w->arg_keys[i] || !w->arg_values[i]) {
            return CRAFT_ENOMEM;
        }
    }
    (void)mr_r_u64(&r); /* split_max: checked per task */
    return mr_r_ok(&r) ? 0 : CRAFT_EPROTO;
}

static void hello_cb(void *data, int status, const uint8_t *p, size_t len)
{
    struct worker *w = data;
    if (reply_failed(w, status, p, len)) {
        return;
    }
    if (decode_hello(w, p, len) != 0) {
        finish(w, 1, "malformed HELLO reply from the coordinator");
        return;
    }
    say(w,
        "registered as worker %u (%u maps, %u reduces, plugin %s); serving "
        "map output on port %u",
        w->id, w->n_maps, w->n_reduces, w->plugin_name, w->fetch_port);
    w->registered_once = 1;
    fetch_plugin(w);
}

static void send_hello(struct worker *w)
{
    struct mr_wbuf b;
    mr_w_init(&b);
    mr_w_u32(&b, MR_PROTO_VERSION);
    mr_w_u16(&b, w->fetch_port);
    mr_w_u32(&b, (uint32_t)getpid());
    coord_call(w, MR_MSG_HELLO, &b, hello_cb);
}

static void coord_on_message(void *data, struct net_conn *conn, uint16_t type,
                             const uint8_t *p, size_t len)
{
    (void)conn;
    (void)p;
    (void)len;
    struct worker *w = data;
    if (type == MR_MSG_JOB_OVER) {
        finish(w, 0, "the job is done");
    }
}

static void coord_on_close(void *data, struct net_conn *conn, int status)
{
    struct worker *w = data;
    if (w->coord != conn) {
        return;
    }
    w->coord = NULL;
    if (!w->exiting) {
        coord_lost(w, status ? status : CRAFT_ECLOSED);
    }
}

static void on_backoff(uv_timer_t *t)
{
    start_connect(t->data);
}

/* The coordinator connection failed or closed: drop the task (the
 * coordinator re-issues it) and reconnect with backoff, for at most
 * connect_timeout_ms. */
static void coord_lost(struct worker *w, int status)
{
    if (w->exiting) {
        return;
    }
    if (w->coord) {
        net_conn_close(w->coord);
        w->coord = NULL;
    }
    drop_task(w);
    clear_outputs(w);
    w->id = 0;
    uint64_t now = uv_now(w->loop);
    if (w->first_try_ms == 0) {
        w->first_try_ms = now;
        w->backoff_ms = 50;
    }
    if (now - w->first_try_ms >= w->cfg->connect_timeout_ms) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "%s the coordinator at %s: %s (gave up after %.1f s)",
                 w->registered_once ? "lost" : "cannot reach",
                 w->cfg->coordinator, craft_strerror(status),
                 (double)(now - w->first_try_ms) / 1000.0);
        finish(w, 1, msg);
        return;
    }
    uv_timer_stop(&w->hb);
    uv_timer_start(&w->timer, on_backoff, w->backoff_ms, 0);
    w->backoff_ms = w->backoff_ms * 2 > 1000 ? 1000 : w->backoff_ms * 2;
}

static void coord_connected(void *data, struct net_conn *conn, int status)
{
    struct worker *w = data;
    if (w->exiting) {
        if (conn) {
            net_conn_close(conn);
        }
        return;
    }
    if (status != 0) {
        coord_lost(w, status);
        return;
    }
    w->coord = conn;
    w->first_try_ms = 0;
    if (w->work_busy) {
        return; /* work_after asks once the abandoned job ends */
    }
    send_hello(w);
}

static void start_connect(struct worker *w)
{
    struct net_config ncfg;
    net_config_init(&ncfg);
    ncfg.frame_max = 4 * MR_CHUNK_BYTES;
    struct net_handlers h = {w, NULL, coord_on_message, NULL, coord_on_close};
    int rv = net_connect(w->loop, &ncfg, w->cfg->coordinator, &h, NULL, w,
                         coord_connected);
    if (rv != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "bad coordinator address '%s': %s",
                 w->cfg->coordinator, craft_strerror(rv));
        finish(w, 1, msg);
    }
}

/* ---- the fetch server -------------------------------------------------- */

/* A FETCH served on the thread pool, like the coordinator's input reads:
 * the loop keeps answering the coordinator and other reducers meanwhile. */
struct fetch_read {
    uv_work_t work;
    struct net_request *req;
    char path[4400];
    uint32_t n_partitions, part;
    uint64_t off;
    int status; /* 0 or the CRAFT_E* code to answer with */
    size_t n;
    uint8_t *data;
};

static void fetch_read_work(uv_work_t *work)
{
    struct fetch_read *fr = work->data;
    struct mr_segment *segs;
    char err[256];
    if (mr_run_read_index(fr->path, fr->n_partitions, &segs, err, sizeof err) !=
        0) {
        fr->status = CRAFT_ENOENT; /* lost with a re-registration */
        return;
    }
    struct mr_segment seg = segs[fr->part];
    free(segs);
    if (fr->off >= seg.length) {
        fr->status = CRAFT_EPROTO;
        return;
    }
    uint64_t left = seg.length - fr->off;
    fr->n = left < MR_CHUNK_BYTES ? (size_t)left : MR_CHUNK_BYTES;
    fr->data = malloc(fr->n);
    int fd = open(fr->path, O_RDONLY | O_CLOEXEC);
    int rv = fr->data && fd >= 0
                 ? mr_pread_all(fd, fr->data, fr->n, seg.offset + fr->off)
                 : CRAFT_EIO;
    if (fd >= 0) {
        close(fd);
    }
    fr->status = rv == 0 ? 0 : CRAFT_EIO;
}

static void fetch_read_done(uv_work_t *work, int status)
{
    (void)status;
    struct fetch_read *fr = work->data;
    net_reply(fr->req, fr->status, fr->status == 0 ? fr->data : NULL,
              fr->status == 0 ? fr->n : 0);
    free(fr->data);
    free(fr);
}

static void serve_fetch(struct worker *w, struct net_request *req)
{
    struct mr_rbuf r;
    mr_r_init(&r, req->payload, req->len);
    uint32_t map = mr_r_u32(&r);
    uint64_t attempt = mr_r_u64(&r);
    uint32_t part = mr_r_u32(&r);
    uint64_t off = mr_r_u64(&r);
    if (!mr_r_ok(&r) || part >= w->n_reduces) {
        net_reply(req, CRAFT_EPROTO, NULL, 0);
        return;
    }
    struct fetch_read *fr = calloc(1, sizeof *fr);
    if (!fr) {
        net_reply(req, CRAFT_ENOMEM, NULL, 0);
        return;
    }
    fr->req = req;
    snprintf(fr->path, sizeof fr->path, "%s/map-%u-%" PRIu64 ".run", w->dir,
             map, attempt);
    fr->n_partitions = w->n_reduces;
    fr->part = part;
    fr->off = off;
    fr->work.data = fr;
    int rv =
        uv_queue_work(w->loop, &fr->work, fetch_read_work, fetch_read_done);
    CRAFT_ASSERT(rv == 0); /* fails only for a NULL callback */
}

static void fetch_on_request(void *data, struct net_conn *conn,
                             struct net_request *req)
{
    (void)conn;
    struct worker *w = data;
    if (req->type != MR_MSG_FETCH || w->n_reduces == 0) {
        net_reply(req, CRAFT_EPROTO, NULL, 0);
        return;
    }
    serve_fetch(w, req);
}

static int start_fetch_server(struct worker *w)
{
    /* Listen on the coordinator's interface family; reducers reach us at
     * the address the coordinator sees for us (HELLO reports the port). */
    char host[NET_HOST_MAX], listen[NET_HOST_MAX + 16];
    uint16_t port;
    char err[256];
    if (net_addr_parse(w->cfg->coordinator, host, sizeof host, &port, 0, err,
                       sizeof err) != 0) {
        fprintf(stderr, "craft-mr worker: --coordinator %s: %s\n",
                w->cfg->coordinator, err);
        return CRAFT_EINVAL;
    }
    int loopback = strcmp(host, "localhost") == 0 ||
                   strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
    snprintf(listen, sizeof listen, "%s:0",
             loopback ? (strchr(host, ':') ? "[::1]" : "127.0.0.1")
                      : (strchr(host, ':') ? "[::]" : "0.0.0.0"));
    struct net_config ncfg;
    net_config_init(&ncfg);
    struct net_handlers h = {w, NULL, NULL, fetch_on_request, NULL};
    int rv = net_server_new(w->loop, &ncfg, listen, &h, &w->fetch_srv, err,
                            sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft-mr worker: cannot listen for fetches: %s\n",
                err);
        return rv;
    }
    w->fetch_port = net_server_port(w->fetch_srv);
    return 0;
}

static int make_dir(struct worker *w)
{
    const char *parent = w->cfg->work_dir;
    const char *tmp = getenv("TMPDIR");
    if (!parent) {
        parent = tmp ? tmp : "/tmp";
    }
    if (mkdir(parent, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "craft-mr worker: --work-dir %s: %s\n", parent,
                strerror(errno));
        return CRAFT_EIO;
    }
    snprintf(w->dir, sizeof w->dir, "%s/craft-mr-worker-%d.XXXXXX", parent,
             (int)getpid());
    if (!mkdtemp(w->dir)) {
        fprintf(stderr,
                "craft-mr worker: cannot create a directory in %s: "
                "%s\n",
                parent, strerror(errno));
        return CRAFT_EIO;
    }
    return 0;
}

int mr_worker_run(const struct mr_worker_config *cfg)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        return 1;
    }
    w->cfg = cfg;
    w->plugin_fd = -1;
    w->up_fd = -1;
    log_set_ident("mr-worker");
    install_crash_guard();
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        free(w);
        return 1;
    }
    w->loop = &loop;
    uv_timer_init(&loop, &w->timer);
    uv_timer_init(&loop, &w->hb);
    w->timer.data = w;
    w->hb.data = w;
    for (int i = 0; i < FETCH_STREAMS; i++) {
        struct stream *s = &w->streams[i];
        s->w = w;
        s->fd = -1;
        uv_timer_init(&loop, &s->retry);
        s->retry.data = s;
    }
    int rv = make_dir(w);
    if (rv == 0) {
        rv = start_fetch_server(w);
    }
    if (rv == 0) {
        start_connect(w);
    } else {
        w->exit_code = 1;
        w->exiting = 1;
        remove_dir(w->dir);
        uv_close((uv_handle_t *)&w->timer, on_closed_handle);
        uv_close((uv_handle_t *)&w->hb, on_closed_handle);
        for (int i = 0; i < FETCH_STREAMS; i++) {
            uv_close((uv_handle_t *)&w->streams[i].retry, on_closed_handle);
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop);
    mr_plugin_close(&w->plugin);
    free_args(w);
    int code = w->exit_code;
    free(w);
    return code;
}
