/*
 * What craft-cli's cluster commands (get, set, del, append, status) share:
 * the --cluster/--timeout-ms/--password/--json options and JSON output.
 */
#ifndef CRAFT_CLI_CLUSTER_H
#define CRAFT_CLI_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "craft/client.h"

/* Used when neither --cluster nor $CRAFT_CLUSTER is given: the cluster
 * scripts/run-cluster starts. */
#define CLI_CLUSTER_DEFAULT "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

struct cli_cluster_opts {
    /* Member addresses ("HOST:PORT"), pointing into `spec`. */
    const char *addrs[CRAFT_CLIENT_ADDRS_MAX];
    size_t n_addrs;
    /* The node id of each address if the list used craftd's ID=HOST:PORT
     * form, else 0. */
    unsigned long ids[CRAFT_CLIENT_ADDRS_MAX];
    char spec[1024];
    unsigned timeout_ms;
    const char *password;
    bool json;
    bool no_session;
    /* Positional arguments, in order (pointers into argv). */
    char **args;
    int n_args;
};

/* Parse argv (argv[0] is the command name) for the shared options.  On
 * error prints a message naming the command and returns CLI_EXIT_USAGE;
 * returns -1 when --help was printed (exit 0); 0 otherwise.  `usage` is
 * the command's help text.  opts->args must be freed with free(). */
int cli_cluster_parse(int argc, char **argv, const char *usage,
                      struct cli_cluster_opts *opts);

/* Fill client options from the parsed ones. */
void cli_cluster_client_options(const struct cli_cluster_opts *opts,
                                struct craft_client_options *o);

/* Write s (len bytes) as a JSON string: UTF-8 passes through, other bytes
 * and control characters are escaped (\u00XX, i.e. read as Latin-1). */
void cli_json_string(FILE *f, const char *s, size_t len);

/* The exit status for a craft_client error. */
int cli_client_exit(int rv);

#endif
