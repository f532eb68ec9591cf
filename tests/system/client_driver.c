/*
 * client_driver -- drives libcraftclient for tests/system/client_test.py.
 *
 *     client_driver [--async] [--no-session] ADDRS KEY N
 *
 * Appends "<i>," to KEY for i = 0 .. N-1, one request at a time (sync) or
 * all queued at once (async), printing "ok <i>" as each is acknowledged
 * (flushed, so the test can kill a leader mid-run), then one line of
 * counters:
 *     stats sends=S retries=R redirects=D session=ID
 * Exits 0 if every append succeeded, 1 with the error on stderr otherwise.
 * The test then reads KEY and checks every token appears exactly once.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "craft/client.h"

static const char *addrs[CRAFT_CLIENT_ADDRS_MAX];

static int run_sync(const struct craft_client_options *o, const char *key,
                    int n)
{
    char err[256];
    struct craft_client *c;
    if (craft_client_new(o, &c, err, sizeof err) != 0) {
        fprintf(stderr, "client_driver: %s\n", err);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char tok[32];
        snprintf(tok, sizeof tok, "%d,", i);
        redisReply *r;
        int rv = craft_client_command(c, &r, "APPEND %s %s", key, tok);
        if (rv != 0) {
            fprintf(stderr, "client_driver: append %d: %s: %s\n", i,
                    craft_errname(rv), craft_client_errmsg(c));
            craft_client_free(c);
            return 1;
        }
        if (r->type != REDIS_REPLY_INTEGER) {
            fprintf(stderr, "client_driver: append %d: reply type %d %s\n", i,
                    r->type, r->type == REDIS_REPLY_ERROR ? r->str : "");
            freeReplyObject(r);
            craft_client_free(c);
            return 1;
        }
        freeReplyObject(r);
        printf("ok %d\n", i);
        fflush(stdout);
    }
    struct craft_client_stats st;
    craft_client_get_stats(c, &st);
    printf("stats sends=%" PRIu64 " retries=%" PRIu64 " redirects=%" PRIu64
           " session=%" PRIu64 "\n",
           st.sends, st.retries, st.redirects, st.session);
    craft_client_free(c);
    return 0;
}

struct async_run {
    int next; /* the index the next callback must carry */
    int failed;
    int closed;
};

static void on_append(struct craft_aclient *c, void *data, int status,
                      redisReply *reply, const char *errmsg)
{
    (void)c;
    intptr_t i = (intptr_t)data;
    struct async_run *run = uv_default_loop()->data;
    if (i != run->next) {
        fprintf(stderr, "client_driver: callback %ld out of order (%d)\n",
                (long)i, run->next);
        run->failed++;
    }
    run->next++;
    if (status != 0 || reply->type != REDIS_REPLY_INTEGER) {
        fprintf(stderr, "client_driver: append %ld: %s: %s\n", (long)i,
                craft_errname(status), status != 0 ? errmsg : reply->str);
        run->failed++;
        return;
    }
    printf("ok %ld\n", (long)i);
    fflush(stdout);
}

static void on_closed(struct craft_aclient *c, void *data)
{
    (void)c;
    ((struct async_run *)data)->closed++;
}

static int run_async(const struct craft_client_options *o, const char *key,
                     int n)
{
    uv_loop_t *loop = uv_default_loop();
    struct async_run run = {.next = 0, .failed = 0, .closed = 0};
    loop->data = &run;
    char err[256];
    struct craft_aclient *c;
    if (craft_aclient_new(loop, o, &c, err, sizeof err) != 0) {
        fprintf(stderr, "client_driver: %s\n", err);
        return 1;
    }
    static char toks[10000][16];
    for (int i = 0; i < n; i++) {
        snprintf(toks[i], sizeof toks[i], "%d,", i);
        const char *argv[] = {"APPEND", key, toks[i]};
        int rv = craft_aclient_command_argv(c, 3, argv, NULL, on_append,
                                            (void *)(intptr_t)i);
        if (rv != 0) {
            fprintf(stderr, "client_driver: queue: %s\n", craft_errname(rv));
            return 1;
        }
    }
    while (run.next < n && uv_run(loop, UV_RUN_ONCE) != 0) {
    }
    craft_aclient_close(c, on_closed, &run);
    uv_run(loop, UV_RUN_DEFAULT);
    if (run.closed != 1 || run.next != n) {
        fprintf(stderr, "client_driver: %d callbacks, close cb %d\n", run.next,
                run.closed);
        return 1;
    }
    printf("stats async\n");
    return run.failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    bool async = false;
    struct craft_client_options o;
    craft_client_options_init(&o);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--async") == 0) {
            async = true;
        } else if (strcmp(argv[i], "--no-session") == 0) {
            o.exactly_once = false;
        } else {
            fprintf(stderr, "client_driver: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (argc - i != 3) {
        fprintf(stderr, "usage: client_driver [--async] [--no-session] "
                        "ADDRS KEY N\n");
        return 2;
    }
    for (char *t = strtok(argv[i], ","); t != NULL && o.n_addrs < 16;
         t = strtok(NULL, ",")) {
        addrs[o.n_addrs++] = t;
    }
    o.addrs = addrs;
    o.total_timeout_ms = 30000;
    int n = atoi(argv[i + 2]);
    if (n < 1 || n > 10000) {
        fprintf(stderr, "client_driver: N must be 1..10000\n");
        return 2;
    }
    return async ? run_async(&o, argv[i + 1], n) : run_sync(&o, argv[i + 1], n);
}
