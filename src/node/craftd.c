/*
 * craftd -- a node of a replicated, linearizable key-value store that
 * speaks the Redis protocol.  See `craftd --help` and docs/craftd-running.md.
 *
 * Exit codes: 0 after a clean stop (SIGTERM, SIGINT), 1 when the node could
 * not start or hit a fatal error (the message says which), 2 for a bad
 * command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "craft/common.h"
#include "node/config.h"
#include "node/node.h"
#include "util/log.h"
#include "util/obs.h"

#define CRAFTD_VERSION "0.1.0"

static int open_log(const struct node_config *cfg)
{
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    char ident[32];
    snprintf(ident, sizeof ident, "n%llu", (unsigned long long)cfg->id);
    log_set_ident(ident);
    if (cfg->log_file[0] == '\0') {
        return 0;
    }
    int fd =
        open(cfg->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "craftd: cannot open --log-file %s: %s\n",
                cfg->log_file, strerror(errno));
        return -1;
    }
    log_set_fd(fd);
    return 0;
}

int main(int argc, char **argv)
{
    static struct node_config cfg;
    enum node_config_action action;
    char errmsg[512];
    if (node_config_parse(argc, argv, &cfg, &action, errmsg, sizeof errmsg) !=
        0) {
        fprintf(stderr, "craftd: %s\n", errmsg);
        return 2;
    }
    if (action == NODE_CONFIG_HELP) {
        node_config_usage(stdout);
        return 0;
    }
    if (action == NODE_CONFIG_VERSION) {
        printf("craftd %s\n", CRAFTD_VERSION);
        return 0;
    }
    if (open_log(&cfg) != 0) {
        return 1;
    }
    obs_init();
    /* A client that disconnects mid-reply must not kill the node. */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    int rv = uv_loop_init(&loop);
    if (rv != 0) {
        fprintf(stderr, "craftd: cannot create the event loop: %s\n",
                uv_strerror(rv));
        return 1;
    }
    struct node *n = NULL;
    rv = node_start(&loop, &cfg, &n, errmsg, sizeof errmsg);
    if (rv != 0) {
        fprintf(stderr, "craftd: %s\n", errmsg);
        if (cfg.log_file[0] != '\0') {
            char q[600];
            log_event(LOG_ERROR, "start_failed", "reason=%s",
                      log_quote(errmsg, q, sizeof q));
        }
    }
    if (n != NULL) {
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    int code = rv != 0 ? 1 : node_exit_code(n);
    if (n != NULL) {
        node_free(n);
    }
    uv_loop_close(&loop);
    if (rv == 0) {
        log_event(LOG_INFO, "stopped", "exit_code=%d", code);
    }
    return code;
}
