/*
 * craftd's configuration: the command line, parsed and checked.
 *
 * The command line is a contract (see docs/craftd-running.md): outside tests
 * start clusters with exactly
 *
 *     craftd --id N --cluster 1=HOST:PORT,2=HOST:PORT,... --data-dir DIR
 *
 * Each member's HOST:PORT is its client (RESP) address; its Raft address is
 * HOST:(PORT + raft_port_offset), 10000 by default as Redis Cluster's bus.
 *
 * Invariants after a successful node_config_parse():
 *  1. 1 <= n_members <= NODE_MEMBERS_MAX, member ids are distinct and in
 *     [1, NODE_MEMBERS_MAX * 1000), sorted by id.
 *  2. self < n_members and members[self].id == id.
 *  3. Every client and Raft port is in [1, 65535].
 *  4. election_ms_min < election_ms_max, heartbeat_ms < election_ms_min,
 *     and all are multiples of tick_ms.
 */
#ifndef CRAFT_NODE_CONFIG_H
#define CRAFT_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/log.h"

/* craftd runs clusters of 1 to 7 members (issue #6). */
#define NODE_MEMBERS_MAX 7
/* Longest HOST accepted in --cluster, an IPv4 dotted quad or a name. */
#define NODE_HOST_MAX 64
#define NODE_PATH_MAX 4096
/* Longest --requirepass (Redis allows 512 bytes and so do we). */
#define NODE_PASS_MAX 512
/* Longest cluster secret (net.h's NET_SECRET_MAX). */
#define NODE_SECRET_MAX 256

struct node_member {
    uint64_t id;
    char host[NODE_HOST_MAX];
    uint16_t client_port;
    uint16_t raft_port;
};

struct node_config {
    uint64_t id;
    unsigned self; /* index of this node in members */
    unsigned n_members;
    struct node_member members[NODE_MEMBERS_MAX];
    uint64_t cluster_id; /* derived from the member list */
    char data_dir[NODE_PATH_MAX];
    unsigned raft_port_offset;

    enum log_level log_level;
    char log_file[NODE_PATH_MAX]; /* "" means stderr */

    unsigned tick_ms;
    unsigned election_ms_min;
    unsigned election_ms_max;
    unsigned heartbeat_ms;
    uint64_t snapshot_bytes; /* log size that triggers a snapshot */
    unsigned max_clients;
    char requirepass[NODE_PASS_MAX + 1]; /* "" means no AUTH needed */
    enum log_format log_format;
    /* --metrics-addr: Prometheus /metrics on HOST:PORT; metrics_port 0
     * means off (the default). */
    char metrics_host[NODE_HOST_MAX];
    uint16_t metrics_port;
    /* --cluster-secret-file: proven by peers at connection (net.h). */
    char cluster_secret[NODE_SECRET_MAX + 1];
    size_t cluster_secret_len; /* 0: none */
};

/* What node_config_parse() decided the process should do. */
enum node_config_action {
    NODE_CONFIG_RUN = 1,
    NODE_CONFIG_HELP,
    NODE_CONFIG_VERSION
};

/*
 * Parse argv into *cfg (OUT).  Returns 0 and sets *action, or CRAFT_EINVAL
 * with a one-line human-readable reason in errmsg (errmsg_len bytes).  Never
 * exits and never prints.
 */
int node_config_parse(int argc, char **argv, struct node_config *cfg,
                      enum node_config_action *action, char *errmsg,
                      size_t errmsg_len);

/* The --help text. */
void node_config_usage(FILE *out);

/*
 * The canonical form of the member list ("1=h:p,2=h:p,..." sorted by id),
 * written into out (cap bytes, always NUL-terminated).  The cluster id is a
 * 64-bit FNV-1a hash of this string.
 */
void node_config_members_string(const struct node_config *cfg, char *out,
                                size_t cap);

#endif /* CRAFT_NODE_CONFIG_H */
