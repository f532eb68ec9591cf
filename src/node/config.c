/*
 * Command-line parsing for craftd.  Every value is checked here so that the
 * rest of the runtime can assert on it (see the invariants in config.h);
 * every mistake gets a one-line reason that names the flag.
 */
#include "node/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "node/secret.h"
#include "util/assert.h"

/* Defaults.  A tick of 10 ms is fine-grained enough for heartbeats of 100 ms
 * and election timeouts of 250-500 ms: at least two heartbeats go unanswered
 * before a follower suspects the leader (fsync runs off the loop, so a slow
 * disk does not delay heartbeats), and kill -9 of the leader to the first
 * acknowledged write takes about 350 ms (median, bench/kv). */
#define DEFAULT_TICK_MS 10
#define DEFAULT_ELECTION_MS_MIN 250
#define DEFAULT_ELECTION_MS_MAX 500
#define DEFAULT_HEARTBEAT_MS 100
/* 64 MiB of log between snapshots: a restart replays at most that much. */
#define DEFAULT_SNAPSHOT_BYTES (64ull << 20)
/* Redis's default maxclients. */
#define DEFAULT_MAX_CLIENTS 10000
#define MAX_CLIENTS_MAX 100000
#define DEFAULT_RAFT_PORT_OFFSET 10000

enum {
    OPT_ID = 'i',
    OPT_CLUSTER = 'c',
    OPT_DATA_DIR = 'd',
    OPT_HELP = 'h',
    OPT_VERSION = 'V',
    OPT_LOG_LEVEL = 256,
    OPT_LOG_FILE,
    OPT_RAFT_PORT_OFFSET,
    OPT_TICK_MS,
    OPT_ELECTION_MS,
    OPT_HEARTBEAT_MS,
    OPT_SNAPSHOT_BYTES,
    OPT_MAX_CLIENTS,
    OPT_REQUIREPASS,
    OPT_REQUIREPASS_FILE,
    OPT_CLUSTER_SECRET_FILE,
    OPT_METRICS_ADDR,
    OPT_LOG_FORMAT
};

static const struct option long_options[] = {
    {"id", required_argument, NULL, OPT_ID},
    {"cluster", required_argument, NULL, OPT_CLUSTER},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"raft-port-offset", required_argument, NULL, OPT_RAFT_PORT_OFFSET},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"tick-ms", required_argument, NULL, OPT_TICK_MS},
    {"election-ms", required_argument, NULL, OPT_ELECTION_MS},
    {"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT_MS},
    {"snapshot-bytes", required_argument, NULL, OPT_SNAPSHOT_BYTES},
    {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
    {"requirepass", required_argument, NULL, OPT_REQUIREPASS},
    {"requirepass-file", required_argument, NULL, OPT_REQUIREPASS_FILE},
    {"cluster-secret-file", required_argument, NULL, OPT_CLUSTER_SECRET_FILE},
    {"metrics-addr", required_argument, NULL, OPT_METRICS_ADDR},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

void node_config_usage(FILE *out)
{
    fputs(
        "Usage: craftd --id N --cluster 1=HOST:PORT,2=HOST:PORT,... "
        "--data-dir DIR [options]\n"
        "\n"
        "A replicated, linearizable key-value store speaking the Redis "
        "protocol.\n"
        "\n"
        "Required:\n"
        "  -i, --id N               this node's id, one of the ids in "
        "--cluster\n"
        "  -c, --cluster LIST       every member as ID=HOST:PORT, comma "
        "separated\n"
        "                           (1 to 7 members).  HOST:PORT is the "
        "member's\n"
        "                           client (RESP) address; Raft traffic uses\n"
        "                           HOST:PORT+10000.  The node listens on its "
        "own\n"
        "                           HOST only and connects to peers from it.\n"
        "  -d, --data-dir DIR       where the log, snapshots and identity "
        "live;\n"
        "                           created if missing.  The first start "
        "records\n"
        "                           the id and the member list; a later start "
        "with\n"
        "                           another id or member list is refused.\n"
        "\n"
        "Options:\n"
        "      --raft-port-offset N Raft port = client port + N (default "
        "10000)\n"
        "      --log-level LEVEL    debug, info, warn, error or off (default "
        "info)\n"
        "      --log-file PATH      append the log to PATH instead of stderr\n"
        "      --log-format F       text (default) or json: one structured\n"
        "                           event per line (docs/operations.md)\n"
        "      --tick-ms MS         Raft clock tick (default 10)\n"
        "      --election-ms A-B    election timeout range (default "
        "250-500)\n"
        "      --heartbeat-ms MS    leader heartbeat interval (default 100)\n"
        "      --snapshot-bytes N   snapshot when the log passes N bytes;\n"
        "                           suffixes k, m, g (default 64m)\n"
        "      --max-clients N      concurrent client connections (default "
        "10000)\n"
        "      --requirepass PASS   clients must AUTH PASS first\n"
        "      --requirepass-file PATH\n"
        "                           the same, PASS read from PATH (mode "
        "0600), so\n"
        "                           that it does not show in ps\n"
        "      --cluster-secret-file PATH\n"
        "                           a secret (1..256 bytes, file mode 0600) "
        "every\n"
        "                           member proves at connection (HMAC "
        "challenge;\n"
        "                           never sent); members without it are "
        "refused\n"
        "      --metrics-addr H:P   serve Prometheus metrics at\n"
        "                           http://H:P/metrics (default: off); bind\n"
        "                           only there, e.g. 127.0.0.1:9121\n"
        "  -h, --help               print this help and exit\n"
        "  -V, --version            print the version and exit\n"
        "\n"
        "Signals: SIGTERM and SIGINT stop the node cleanly.  A node logs "
        "one line\n"
        "\"ready\" when it serves clients.  See docs/craftd-running.md.\n",
        out);
}

static int fail(char *errmsg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errmsg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, len, fmt, ap);
    va_end(ap);
    return CRAFT_EINVAL;
}

/* A whole decimal number in [lo, hi], nothing else. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (*s < '0' || *s > '9') {
        return CRAFT_EINVAL;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return CRAFT_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_unsigned(const char *s, unsigned lo, unsigned hi,
                          unsigned *out)
{
    uint64_t v;
    int rv = parse_u64(s, lo, hi, &v);
    if (rv == 0) {
        *out = (unsigned)v;
    }
    return rv;
}

/* A size with an optional k/m/g suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    char num[32];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof num) {
        return CRAFT_EINVAL;
    }
    memcpy(num, s, n + 1);
    unsigned shift = 0;
    switch (num[n - 1]) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    }
    if (shift != 0) {
        num[n - 1] = '\0';
    }
    uint64_t v;
    /* At most 1 TiB: larger thresholds would never trigger anyway. */
    if (parse_u64(num, 1, (1ull << 40) >> shift, &v) != 0) {
        return CRAFT_EINVAL;
    }
    *out = v << shift;
    return 0;
}

/* One "ID=HOST:PORT" item. */
static int parse_member(const char *item, unsigned offset,
                        struct node_member *m, char *errmsg, size_t len)
{
    const char *eq = strchr(item, '=');
    const char *colon = strrchr(item, ':');
    if (eq == NULL || colon == NULL || colon < eq) {
        return fail(errmsg, len, "--cluster: '%s' is not ID=HOST:PORT", item);
    }
    char idbuf[16];
    size_t idlen = (size_t)(eq - item);
    if (idlen == 0 || idlen >= sizeof idbuf) {
        return fail(errmsg, len, "--cluster: bad member id in '%s'", item);
    }
    memcpy(idbuf, item, idlen);
    idbuf[idlen] = '\0';
    if (parse_u64(idbuf, 1, 999999, &m->id) != 0) {
        return fail(errmsg, len,
                    "--cluster: member id in '%s' must be a number in "
                    "1..999999",
                    item);
    }
    size_t hostlen = (size_t)(colon - eq - 1);
    if (hostlen == 0 || hostlen >= sizeof m->host) {
        return fail(errmsg, len, "--cluster: bad host in '%s'", item);
    }
    memcpy(m->host, eq + 1, hostlen);
    m->host[hostlen] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, m->host, &a) != 1) {
        return fail(errmsg, len,
                    "--cluster: host '%s' is not a numeric IPv4 address",
                    m->host);
    }
    unsigned port;
    if (parse_unsigned(colon + 1, 1, 65535, &port) != 0) {
        return fail(errmsg, len, "--cluster: bad port in '%s'", item);
    }
    if (port + offset > 65535) {
        return fail(errmsg, len,
                    "--cluster: Raft port %u+%u of '%s' is above 65535", port,
                    offset, item);
    }
    m->client_port = (uint16_t)port;
    m->raft_port = (uint16_t)(port + offset);
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    const struct node_member *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int parse_cluster(const char *list, unsigned offset,
                         struct node_config *cfg, char *errmsg, size_t len)
{
    char copy[NODE_MEMBERS_MAX * (NODE_HOST_MAX + 24)];
    if (strlen(list) >= sizeof copy) {
        return fail(errmsg, len, "--cluster: list too long");
    }
    strcpy(copy, list);
    cfg->n_members = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        if (cfg->n_members == NODE_MEMBERS_MAX) {
            return fail(errmsg, len, "--cluster: at most %d members",
                        NODE_MEMBERS_MAX);
        }
        int rv = parse_member(item, offset, &cfg->members[cfg->n_members],
                              errmsg, len);
        if (rv != 0) {
            return rv;
        }
        cfg->n_members++;
    }
    if (cfg->n_members == 0) {
        return fail(errmsg, len, "--cluster: no members");
    }
    qsort(cfg->members, cfg->n_members, sizeof cfg->members[0], member_cmp);
    for (unsigned i = 0; i < cfg->n_members; i++) {
        for (unsigned j = 0; j < i; j++) {
            const struct node_member *a = &cfg->members[i];
            const struct node_member *b = &cfg->members[j];
            if (a->id == b->id) {
                return fail(errmsg, len, "--cluster: id %llu appears twice",
                            (unsigned long long)a->id);
            }
            if (strcmp(a->host, b->host) == 0 &&
                (a->client_port == b->client_port ||
                 a->client_port == b->raft_port ||
                 a->raft_port == b->client_port)) {
                return fail(errmsg, len,
                            "--cluster: members %llu and %llu share a port "
                            "on %s",
                            (unsigned long long)b->id,
                            (unsigned long long)a->id, a->host);
            }
        }
    }
    return 0;
}

void node_config_members_string(const struct node_config *cfg, char *out,
                                size_t cap)
{
    CRAFT_ASSERT(cap > 0);
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < cfg->n_members && n < cap; i++) {
        const struct node_member *m = &cfg->members[i];
        int k = snprintf(out + n, cap - n, "%s%llu=%s:%u", i ? "," : "",
                         (unsigned long long)m->id, m->host,
                         (unsigned)m->client_port);
        if (k < 0) {
            break;
        }
        n += (size_t)k;
    }
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static void config_defaults(struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->raft_port_offset = DEFAULT_RAFT_PORT_OFFSET;
    cfg->log_level = LOG_INFO;
    cfg->tick_ms = DEFAULT_TICK_MS;
    cfg->election_ms_min = DEFAULT_ELECTION_MS_MIN;
    cfg->election_ms_max = DEFAULT_ELECTION_MS_MAX;
    cfg->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    cfg->snapshot_bytes = DEFAULT_SNAPSHOT_BYTES;
    cfg->max_clients = DEFAULT_MAX_CLIENTS;
}

/* --metrics-addr HOST:PORT: a numeric IPv4 HOST (bound as given, so
 * 127.0.0.1 keeps the metrics on the machine) and a port 1..65535. */
static int parse_metrics_addr(const char *arg, struct node_config *cfg,
                              char *errmsg, size_t len)
{
    const char *colon = strrchr(arg, ':');
    struct in_addr a;
    char host[NODE_HOST_MAX];
    unsigned port;
    if (colon == NULL || (size_t)(colon - arg) >= sizeof host || colon == arg) {
        return fail(errmsg, len, "--metrics-addr: '%s' is not HOST:PORT", arg);
    }
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    if (inet_pton(AF_INET, host, &a) != 1) {
        return fail(errmsg, len,
                    "--metrics-addr: '%s' is not a numeric IPv4 address", host);
    }
    if (parse_unsigned(colon + 1, 1, 65535, &port) != 0) {
        return fail(errmsg, len, "--metrics-addr: port '%s' is not in 1..65535",
                    colon + 1);
    }
    memcpy(cfg->metrics_host, host, strlen(host) + 1);
    cfg->metrics_port = (uint16_t)port;
    return 0;
}

static int parse_election(const char *s, struct node_config *cfg)
{
    char a[16];
    const char *dash = strchr(s, '-');
    if (dash == NULL || (size_t)(dash - s) >= sizeof a) {
        return CRAFT_EINVAL;
    }
    memcpy(a, s, (size_t)(dash - s));
    a[dash - s] = '\0';
    if (parse_unsigned(a, 1, 600000, &cfg->election_ms_min) != 0 ||
        parse_unsigned(dash + 1, 1, 600000, &cfg->election_ms_max) != 0) {
        return CRAFT_EINVAL;
    }
    return 0;
}

/* Cross-field checks once every flag is known. */
static int config_check(struct node_config *cfg, const char *cluster,
                        bool have_id, char *errmsg, size_t len)
{
    if (!have_id) {
        return fail(errmsg, len, "missing --id (see --help)");
    }
    if (cluster == NULL) {
        return fail(errmsg, len, "missing --cluster (see --help)");
    }
    if (cfg->data_dir[0] == '\0') {
        return fail(errmsg, len, "missing --data-dir (see --help)");
    }
    int rv = parse_cluster(cluster, cfg->raft_port_offset, cfg, errmsg, len);
    if (rv != 0) {
        return rv;
    }
    bool found = false;
    for (unsigned i = 0; i < cfg->n_members; i++) {
        if (cfg->members[i].id == cfg->id) {
            cfg->self = i;
            found = true;
        }
    }
    if (!found) {
        return fail(errmsg, len, "--id %llu is not a member of --cluster",
                    (unsigned long long)cfg->id);
    }
    if (cfg->election_ms_min >= cfg->election_ms_max) {
        return fail(errmsg, len, "--election-ms: need MIN < MAX");
    }
    if (cfg->heartbeat_ms >= cfg->election_ms_min) {
        return fail(errmsg, len,
                    "--heartbeat-ms must be below the election timeout");
    }
    if (cfg->heartbeat_ms < cfg->tick_ms ||
        cfg->election_ms_min < 2 * cfg->tick_ms) {
        return fail(errmsg, len,
                    "--tick-ms %u is too coarse for the heartbeat and "
                    "election timeouts",
                    cfg->tick_ms);
    }
    char members[NODE_MEMBERS_MAX * (NODE_HOST_MAX + 24)];
    node_config_members_string(cfg, members, sizeof members);
    cfg->cluster_id = fnv1a64(members);
    return 0;
}

/* One flag with its argument. */
static int parse_flag(int c, const char *arg, struct node_config *cfg,
                      const char **cluster, bool *have_id, char *errmsg,
                      size_t len)
{
    switch (c) {
    case OPT_ID:
        if (parse_u64(arg, 1, 999999, &cfg->id) != 0) {
            return fail(errmsg, len, "--id: '%s' is not a number in 1..999999",
                        arg);
        }
        *have_id = true;
        return 0;
    case OPT_CLUSTER:
        *cluster = arg;
        return 0;
    case OPT_DATA_DIR:
        if (strlen(arg) == 0 || strlen(arg) >= sizeof cfg->data_dir - 64) {
            return fail(errmsg, len, "--data-dir: bad path");
        }
        strcpy(cfg->data_dir, arg);
        return 0;
    case OPT_RAFT_PORT_OFFSET:
        if (parse_unsigned(arg, 1, 64000, &cfg->raft_port_offset) != 0) {
            return fail(errmsg, len,
                        "--raft-port-offset: '%s' is not in "
                        "1..64000",
                        arg);
        }
        return 0;
    case OPT_LOG_LEVEL:
        if (log_level_parse(arg, &cfg->log_level) != 0) {
            return fail(errmsg, len,
                        "--log-level: '%s' is not debug, info, warn, error "
                        "or off",
                        arg);
        }
        return 0;
    case OPT_LOG_FILE:
        if (strlen(arg) == 0 || strlen(arg) >= sizeof cfg->log_file) {
            return fail(errmsg, len, "--log-file: bad path");
        }
        strcpy(cfg->log_file, arg);
        return 0;
    case OPT_TICK_MS:
        if (parse_unsigned(arg, 1, 1000, &cfg->tick_ms) != 0) {
            return fail(errmsg, len, "--tick-ms: '%s' is not in 1..1000", arg);
        }
        return 0;
    case OPT_ELECTION_MS:
        if (parse_election(arg, cfg) != 0) {
            return fail(errmsg, len,
                        "--election-ms: '%s' is not MIN-MAX in milliseconds",
                        arg);
        }
        return 0;
    case OPT_HEARTBEAT_MS:
        if (parse_unsigned(arg, 1, 60000, &cfg->heartbeat_ms) != 0) {
            return fail(errmsg, len, "--heartbeat-ms: '%s' is not in 1..60000",
                        arg);
        }
        return 0;
    case OPT_SNAPSHOT_BYTES:
        if (parse_size(arg, &cfg->snapshot_bytes) != 0) {
            return fail(errmsg, len,
                        "--snapshot-bytes: '%s' is not a size such as 64m",
                        arg);
        }
        return 0;
    case OPT_MAX_CLIENTS:
        if (parse_unsigned(arg, 1, MAX_CLIENTS_MAX, &cfg->max_clients) != 0) {
            return fail(errmsg, len, "--max-clients: '%s' is not in 1..%d", arg,
                        MAX_CLIENTS_MAX);
        }
        return 0;
    case OPT_REQUIREPASS:
        if (strlen(arg) == 0 || strlen(arg) > NODE_PASS_MAX) {
            return fail(errmsg, len,
                        "--requirepass: length must be 1..%d bytes",
                        NODE_PASS_MAX);
        }
        strcpy(cfg->requirepass, arg);
        return 0;
    case OPT_REQUIREPASS_FILE: {
        size_t n;
        return node_secret_read("--requirepass-file", arg, cfg->requirepass,
                                sizeof cfg->requirepass, &n, errmsg, len);
    }
    case OPT_CLUSTER_SECRET_FILE:
        return node_secret_read("--cluster-secret-file", arg,
                                cfg->cluster_secret, sizeof cfg->cluster_secret,
                                &cfg->cluster_secret_len, errmsg, len);
    case OPT_METRICS_ADDR:
        return parse_metrics_addr(arg, cfg, errmsg, len);
    case OPT_LOG_FORMAT:
        if (log_format_parse(arg, &cfg->log_format) != 0) {
            return fail(errmsg, len, "--log-format: '%s' is not text or json",
                        arg);
        }
        return 0;
    default:
        return fail(errmsg, len, "unknown option (see --help)");
    }
}

int node_config_parse(int argc, char **argv, struct node_config *cfg,
                      enum node_config_action *action, char *errmsg,
                      size_t errmsg_len)
{
    CRAFT_ASSERT(argc >= 1);
    CRAFT_ASSERT(errmsg_len > 0);
    struct node_config c;
    config_defaults(&c);
    const char *cluster = NULL;
    bool have_id = false;
    errmsg[0] = '\0';

    /* getopt keeps global state; reset it so that tests may parse twice. */
    optind = 0;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":i:c:d:hV", long_options, NULL)) !=
           -1) {
        if (ch == OPT_HELP || ch == OPT_VERSION) {
            *action = ch == OPT_HELP ? NODE_CONFIG_HELP : NODE_CONFIG_VERSION;
            return 0;
        }
        if (ch == '?') {
            return fail(errmsg, errmsg_len, "unknown option '%s' (see --help)",
                        argv[optind - 1]);
        }
        if (ch == ':') {
            return fail(errmsg, errmsg_len, "option '%s' needs a value",
                        argv[optind - 1]);
        }
        int rv =
            parse_flag(ch, optarg, &c, &cluster, &have_id, errmsg, errmsg_len);
        if (rv != 0) {
            return rv;
        }
    }
    if (optind < argc) {
        return fail(errmsg, errmsg_len, "unexpected argument '%s'",
                    argv[optind]);
    }
    int rv = config_check(&c, cluster, have_id, errmsg, errmsg_len);
    if (rv != 0) {
        return rv;
    }
    CRAFT_ASSERT(c.self < c.n_members);
    CRAFT_ASSERT(c.members[c.self].id == c.id);
    *cfg = c;
    *action = NODE_CONFIG_RUN;
    return 0;
}
