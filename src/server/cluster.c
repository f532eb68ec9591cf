/*
 * cluster.c -- craftd as a one-shard Redis cluster (see cluster.h): key
 * slots and the CLUSTER command.  The reply layouts are Redis 7's, which
 * the client libraries parse:
 *
 *   CLUSTER SLOTS   [[0, 16383, [host, port, id], [host, port, id]...]]
 *                   (the master first, then the replicas it can reach)
 *   CLUSTER SHARDS  [["slots", [0, 16383], "nodes", [node map...]]]
 *   CLUSTER NODES   one line per member, each ended by "\n":
 *                   <id> <host:port@bus> <flags> <master> <ping-sent>
 *                   <pong-recv> <config-epoch> <link-state> [<slots>]
 *   CLUSTER INFO    "field:value\r\n" lines, as Redis's
 */
#include "server/cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "craft/common.h"
#include "server/resp.h"
#include "server/srv.h"
#include "util/assert.h"
#include "util/sha256.h"

uint16_t srv_cluster_crc16(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint32_t crc = 0; /* 16 bits used; wider to keep the shifts unsigned */
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint32_t)s[i] << 8;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (crc << 1) ^ 0x1021u : crc << 1;
            crc &= 0xffffu;
        }
    }
    return (uint16_t)crc;
}

unsigned srv_cluster_keyslot(const uint8_t *key, size_t len)
{
    CRAFT_ASSERT(key != NULL || len == 0);
    const uint8_t *open = len > 0 ? memchr(key, '{', len) : NULL;
    if (open != NULL) {
        size_t start = (size_t)(open - key) + 1;
        const uint8_t *close = memchr(key + start, '}', len - start);
        /* "{}" or no closing brace: the whole key is hashed, as Redis. */
        if (close != NULL && close > key + start) {
            key += start;
            len = (size_t)(close - key);
        }
    }
    unsigned slot = srv_cluster_crc16(key, len) & (SRV_CLUSTER_SLOTS - 1);
    CRAFT_ASSERT(slot < SRV_CLUSTER_SLOTS);
    return slot;
}

void srv_cluster_node_id(uint64_t cluster_id, uint64_t member_id,
                         char out[SRV_CLUSTER_ID_LEN + 1])
{
    uint8_t in[16];
    for (int i = 0; i < 8; i++) {
        in[i] = (uint8_t)(cluster_id >> (8 * i));
        in[8 + i] = (uint8_t)(member_id >> (8 * i));
    }
    struct sha256 h;
    uint8_t digest[SHA256_SIZE];
    sha256_init(&h);
    sha256_update(&h, in, sizeof in);
    sha256_final(&h, digest);
    _Static_assert(SRV_CLUSTER_ID_LEN <= 2 * SHA256_SIZE, "id from digest");
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < SRV_CLUSTER_ID_LEN; i++) {
        uint8_t d = digest[i / 2];
        out[i] = hex[(i % 2 == 0) ? d >> 4 : d & 0xf];
    }
    out[SRV_CLUSTER_ID_LEN] = '\0';
}

/* Commands whose first argument is not a key (they get slot 0). */
static bool keyless(const uint8_t *name, size_t len)
{
    static const char *const names[] = {"dbsize",   "keys",    "scan",
                                        "flushall", "flushdb", "craft.session",
                                        "multi",    "exec",    "discard"};
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(names); i++) {
        if (srv_arg_is(name, len, names[i])) {
            return true;
        }
    }
    return false;
}

unsigned srv_cluster_cmd_slot(size_t argc, const uint8_t *const *argv,
                              const size_t *lens)
{
    CRAFT_ASSERT(argc >= 1);
    size_t cmd = 0;
    if (srv_arg_is(argv[0], lens[0], "craft.exec")) {
        /* CRAFT.EXEC id seq [first-unacked] command [args...] */
        long long v;
        cmd = argc > 4 && resp_strtoll(argv[3], lens[3], &v) == 0 ? 4 : 3;
        if (cmd >= argc) {
            return 0;
        }
    }
    CRAFT_ASSERT(cmd < argc);
    if (cmd + 1 >= argc || keyless(argv[cmd], lens[cmd])) {
        return 0;
    }
    return srv_cluster_keyslot(argv[cmd + 1], lens[cmd + 1]);
}

/* ---- replies ----------------------------------------------------------- */

/* A reply under construction: the first failed write is remembered and
 * the rest skipped, so that the caller can replace a half-written reply. */
struct out {
    struct buf *b;
    int rv;
};

static void out_array(struct out *o, size_t n)
{
    if (o->rv == 0) {
        o->rv = resp_write_array(o->b, n);
    }
}

static void out_int(struct out *o, long long v)
{
    if (o->rv == 0) {
        o->rv = resp_write_int(o->b, v);
    }
}

static void out_str(struct out *o, const char *s)
{
    if (o->rv == 0) {
        o->rv = resp_write_bulk(o->b, s, strlen(s));
    }
}

static void out_bulk(struct out *o, const struct buf *text)
{
    if (o->rv == 0) {
        o->rv = resp_write_bulk(o->b, text->data, text->len);
    }
}

static void out_text(struct out *o, struct buf *text, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append printf output to text (at most 512 bytes per call). */
static void out_text(struct out *o, struct buf *text, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    CRAFT_ASSERT(n >= 0 && (size_t)n < sizeof line);
    if (o->rv == 0) {
        o->rv = buf_append(text, line, (size_t)n);
    }
}

static bool member_usable(const struct srv_cluster_view *v, unsigned i)
{
    return i == v->self || v->members[i].connected;
}

static void slots_node(struct out *o, const struct srv_cluster_view *v,
                       unsigned i)
{
    char id[SRV_CLUSTER_ID_LEN + 1];
    srv_cluster_node_id(v->cluster_id, v->members[i].id, id);
    out_array(o, 3);
    out_str(o, v->members[i].host);
    out_int(o, v->members[i].port);
    out_str(o, id);
}

/* Redis leaves failed replicas out of CLUSTER SLOTS; so do we, with "no
 * link from this node" standing for failed. */
static void cluster_slots(struct out *o, const struct srv_cluster_view *v)
{
    CRAFT_ASSERT(v->last_leader >= 0);
    unsigned leader = (unsigned)v->last_leader;
    CRAFT_ASSERT(leader < v->n_members);
    size_t n = 0;
    for (unsigned i = 0; i < v->n_members; i++) {
        n += i != leader && member_usable(v, i);
    }
    out_array(o, 1);
    out_array(o, 3 + n);
    out_int(o, 0);
    out_int(o, SRV_CLUSTER_SLOTS - 1);
    slots_node(o, v, leader);
    for (unsigned i = 0; i < v->n_members; i++) {
        if (i != leader && member_usable(v, i)) {
            slots_node(o, v, i);
        }
    }
}

static void cluster_shards(struct out *o, const struct srv_cluster_view *v)
{
    CRAFT_ASSERT(v->last_leader >= 0);
    out_array(o, 1);
    out_array(o, 4);
    out_str(o, "slots");
    out_array(o, 2);
    out_int(o, 0);
    out_int(o, SRV_CLUSTER_SLOTS - 1);
    out_str(o, "nodes");
    out_array(o, v->n_members);
    for (unsigned i = 0; i < v->n_members; i++) {
        const struct srv_cluster_member *m = &v->members[i];
        char id[SRV_CLUSTER_ID_LEN + 1];
        srv_cluster_node_id(v->cluster_id, m->id, id);
        out_array(o, 14);
        out_str(o, "id");
        out_str(o, id);
        out_str(o, "port");
        out_int(o, m->port);
        out_str(o, "ip");
        out_str(o, m->host);
        out_str(o, "endpoint");
        out_str(o, m->host);
        out_str(o, "role");
        out_str(o, (int)i == v->last_leader ? "master" : "replica");
        out_str(o, "replication-offset");
        out_int(o, (long long)m->offset);
        out_str(o, "health");
        out_str(o, member_usable(v, i) ? "online" : "failed");
    }
}

static void cluster_nodes(struct out *o, const struct srv_cluster_view *v)
{
    CRAFT_ASSERT(v->last_leader >= 0);
    CRAFT_ASSERT((unsigned)v->last_leader < v->n_members);
    char leader_id[SRV_CLUSTER_ID_LEN + 1];
    srv_cluster_node_id(v->cluster_id, v->members[v->last_leader].id,
                        leader_id);
    struct buf text;
    buf_init(&text);
    for (unsigned i = 0; i < v->n_members; i++) {
        const struct srv_cluster_member *m = &v->members[i];
        bool leader = (int)i == v->last_leader;
        char id[SRV_CLUSTER_ID_LEN + 1];
        srv_cluster_node_id(v->cluster_id, m->id, id);
        /* "fail?" is Redis's "this node cannot reach it" (PFAIL). */
        out_text(o, &text, "%s %s:%u@%u %s%s%s %s 0 0 %llu %s%s\n", id, m->host,
                 (unsigned)m->port, (unsigned)m->bus_port,
                 i == v->self ? "myself," : "", leader ? "master" : "slave",
                 member_usable(v, i) ? "" : ",fail?", leader ? "-" : leader_id,
                 (unsigned long long)v->term,
                 member_usable(v, i) ? "connected" : "disconnected",
                 leader ? " 0-16383" : "");
    }
    out_bulk(o, &text);
    buf_close(&text);
}

static void cluster_info(struct out *o, const struct srv_cluster_view *v)
{
    bool ok = v->leader >= 0;
    unsigned slots_ok = ok ? SRV_CLUSTER_SLOTS : 0;
    struct buf text;
    buf_init(&text);
    out_text(o, &text,
             "cluster_state:%s\r\ncluster_slots_assigned:%u\r\n"
             "cluster_slots_ok:%u\r\ncluster_slots_pfail:0\r\n"
             "cluster_slots_fail:%u\r\ncluster_known_nodes:%u\r\n"
             "cluster_size:%u\r\ncluster_current_epoch:%llu\r\n"
             "cluster_my_epoch:%llu\r\n",
             ok ? "ok" : "fail", (unsigned)SRV_CLUSTER_SLOTS, slots_ok,
             SRV_CLUSTER_SLOTS - slots_ok, v->n_members, ok ? 1u : 0u,
             (unsigned long long)v->term, (unsigned long long)v->term);
    out_text(o, &text,
             "cluster_stats_messages_sent:0\r\n"
             "cluster_stats_messages_received:0\r\n"
             "total_cluster_links_buffer_limit_exceeded:0\r\n");
    out_bulk(o, &text);
    buf_close(&text);
}

static void cluster_help(struct out *o)
{
    static const char *const lines[] = {
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "INFO",
        "    Return information about the cluster.",
        "KEYSLOT <key>",
        "    Return the hash slot for <key>.",
        "MYID",
        "    Return the node id.",
        "NODES",
        "    Return cluster configuration seen by node. Output format:",
        "    <id> <ip:port@bus> <flags> <master> <pings> <pongs> <epoch> "
        "<link> <slot> ...",
        "SHARDS",
        "    Return information about slot range mappings and the nodes "
        "associated with them.",
        "SLOTS",
        "    Return information about slots range mappings. Each range is "
        "made of:",
        "    start, end, master and replicas IP addresses, ports and ids",
        "HELP",
        "    Print this help.",
        "craftd: the Raft leader owns all 16384 slots; the other members "
        "are its replicas.",
    };
    out_array(o, CRAFT_ARRAY_LEN(lines));
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(lines); i++) {
        if (o->rv == 0) {
            o->rv = resp_write_simple(o->b, lines[i]);
        }
    }
}

/* The subcommands and their exact argument counts (CLUSTER included). */
static const struct {
    const char *name;
    size_t argc;
    bool needs_leader; /* CLUSTERDOWN without any (invariant 2) */
} subcommands[] = {
    {"slots", 2, true}, {"shards", 2, true}, {"nodes", 2, true},
    {"info", 2, false}, {"myid", 2, false},  {"keyslot", 3, false},
    {"help", 2, false},
};

/* The subcommand's index, or -1 (with the error written) when the command
 * is not one craftd answers. */
static int parse_subcommand(const struct resp_cmd *cmd, struct buf *b)
{
    if (cmd->argc < 2) {
        resp_write_error(b, "ERR wrong number of arguments for 'cluster' "
                            "command");
        return -1;
    }
    const uint8_t *sub = cmd->argv[1];
    size_t n = cmd->lens[1];
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(subcommands); i++) {
        if (!srv_arg_is(sub, n, subcommands[i].name)) {
            continue;
        }
        if (cmd->argc != subcommands[i].argc) {
            resp_write_errorf(b,
                              "ERR wrong number of arguments for "
                              "'cluster|%s' command",
                              subcommands[i].name);
            return -1;
        }
        return (int)i;
    }
    resp_write_errorf(b, "ERR unknown subcommand '%.*s'. Try CLUSTER HELP.",
                      (int)(n > 64 ? 64 : n), (const char *)sub);
    return -1;
}

static void answer(const struct srv_cluster_view *v, const char *name,
                   const struct resp_cmd *cmd, struct out *o)
{
    if (strcmp(name, "slots") == 0) {
        cluster_slots(o, v);
    } else if (strcmp(name, "shards") == 0) {
        cluster_shards(o, v);
    } else if (strcmp(name, "nodes") == 0) {
        cluster_nodes(o, v);
    } else if (strcmp(name, "info") == 0) {
        cluster_info(o, v);
    } else if (strcmp(name, "myid") == 0) {
        char id[SRV_CLUSTER_ID_LEN + 1];
        srv_cluster_node_id(v->cluster_id, v->members[v->self].id, id);
        out_str(o, id);
    } else if (strcmp(name, "keyslot") == 0) {
        out_int(o, srv_cluster_keyslot(cmd->argv[2], cmd->lens[2]));
    } else {
        CRAFT_ASSERT(strcmp(name, "help") == 0);
        cluster_help(o);
    }
}

void srv__cluster_command(const struct srv_backend *backend,
                          const struct resp_cmd *cmd, struct buf *b)
{
    CRAFT_ASSERT(cmd->argc >= 1);
    if (backend->cluster == NULL) {
        resp_write_error(b, "ERR This instance has cluster support disabled");
        return;
    }
    int sub = parse_subcommand(cmd, b);
    if (sub < 0) {
        return;
    }
    struct srv_cluster_view v;
    memset(&v, 0, sizeof v);
    v.leader = -1;
    v.last_leader = -1;
    int rv = backend->cluster(backend->data, &v);
    if (rv != 0) {
        resp_write_errorf(b, "ERR %s", craft_strerror(rv));
        return;
    }
    CRAFT_ASSERT(v.n_members >= 1 && v.n_members <= SRV_CLUSTER_MEMBERS_MAX);
    CRAFT_ASSERT(v.self < v.n_members);
    CRAFT_ASSERT(v.leader >= -1 && v.leader < (int)v.n_members);
    CRAFT_ASSERT(v.last_leader >= -1 && v.last_leader < (int)v.n_members);
    CRAFT_ASSERT(v.leader < 0 || v.last_leader == v.leader);
    if (subcommands[sub].needs_leader && v.last_leader < 0) {
        resp_write_error(b, "CLUSTERDOWN no leader is known; retry shortly");
        return;
    }
    size_t mark = b->len;
    struct out o = {.b = b, .rv = 0};
    answer(&v, subcommands[sub].name, cmd, &o);
    if (o.rv != 0) {
        b->len = mark; /* drop the half-written reply */
        resp_write_error(b, "ERR out of memory");
    }
}
