/*
 * craft-client-example -- the complete example program of docs/client.md.
 *
 *     craft-client-example HOST:PORT[,HOST:PORT...]
 *
 * Connects to a craftd cluster through any of the given members, then
 *   1. synchronously: SET a key, APPEND to it exactly once, GET it back;
 *   2. asynchronously on a libuv loop: INCR a counter three times and read
 *      it, each callback firing exactly once.
 * Prints what it did and exits 0, or prints the error and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "craft/client.h"

#define MAX_ADDRS 16

static size_t split_addrs(char *list, const char **addrs)
{
    size_t n = 0;
    for (char *tok = strtok(list, ","); tok != NULL && n < MAX_ADDRS;
         tok = strtok(NULL, ",")) {
        addrs[n++] = tok;
    }
    return n;
}

static int sync_part(const struct craft_client_options *o)
{
    char err[256];
    struct craft_client *c;
    int rv = craft_client_new(o, &c, err, sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft_client_new: %s\n", err);
        return 1;
    }
    redisReply *r;
    /* A write: sent to the leader inside a session, so a retry after a
     * failover cannot apply it twice. */
    rv = craft_client_command(c, &r, "SET %s %s", "example:greeting", "hello");
    if (rv != 0) {
        goto fail;
    }
    printf("SET -> %s\n", r->str);
    freeReplyObject(r);

    rv = craft_client_command(c, &r, "APPEND %s %s", "example:greeting",
                              ", world");
    if (rv != 0) {
        goto fail;
    }
    printf("APPEND -> %lld\n", r->integer);
    freeReplyObject(r);

    /* A linearizable read, answered by the leader. */
    const char *argv[] = {"GET", "example:greeting"};
    rv = craft_client_command_argv(c, &r, 2, argv, NULL);
    if (rv != 0) {
        goto fail;
    }
    printf("GET -> %s (leader %s)\n", r->str, craft_client_leader(c));
    freeReplyObject(r);
    craft_client_free(c);
    return 0;

fail:
    fprintf(stderr, "command failed: %s: %s\n", craft_strerror(rv),
            craft_client_errmsg(c));
    craft_client_free(c);
    return 1;
}

struct async_state {
    int done;
    int failed;
};

static void on_reply(struct craft_aclient *c, void *data, int status,
                     redisReply *reply, const char *errmsg)
{
    struct async_state *st = data;
    (void)c;
    st->done++;
    if (status != 0) {
        fprintf(stderr, "async command failed: %s: %s\n",
                craft_strerror(status), errmsg);
        st->failed++;
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        printf("async INCR -> %lld\n", reply->integer);
    } else if (reply->type == REDIS_REPLY_STRING) {
        printf("async GET -> %s\n", reply->str);
    }
}

static int async_part(const struct craft_client_options *o)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    struct craft_aclient *c;
    if (craft_aclient_new(&loop, o, &c, err, sizeof err) != 0) {
        fprintf(stderr, "craft_aclient_new: %s\n", err);
        uv_loop_close(&loop);
        return 1;
    }
    struct async_state st = {0, 0};
    const char *incr[] = {"INCR", "example:counter"};
    const char *get[] = {"GET", "example:counter"};
    for (int i = 0; i < 3; i++) {
        craft_aclient_command_argv(c, 2, incr, NULL, on_reply, &st);
    }
    craft_aclient_command_argv(c, 2, get, NULL, on_reply, &st);
    /* Run until the four callbacks have fired, then close the client. */
    while (st.done < 4 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    craft_aclient_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return st.done == 4 && st.failed == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: craft-client-example HOST:PORT[,HOST:PORT...]\n");
        return argc == 2 ? 0 : 2;
    }
    const char *addrs[MAX_ADDRS];
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.addrs = addrs;
    o.n_addrs = split_addrs(argv[1], addrs);
    if (sync_part(&o) != 0 || async_part(&o) != 0) {
        return 1;
    }
    return 0;
}
