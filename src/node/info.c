/*
 * INFO text from a node report (report.h), in Redis's layout: "# Section"
 * headers, "field:value" lines, CRLF line ends, sections separated by a
 * blank line.  Field names are Redis's where Redis has the field (so
 * redis-cli, exporters and client libraries read them), craft_* or raft_*
 * otherwise.  Every field is described in docs/operations.md.
 *
 * Also /proc readers for the memory figures (node_proc_read()).
 */
#include <dirent.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "craft/common.h"
#include "node/report.h"
#include "util/assert.h"
#include "util/obs.h"

#define CRAFTD_VERSION "0.1.0"

struct out {
    struct buf *b;
    int rv;
};

static void add(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add(struct out *o, const char *fmt, ...)
{
    if (o->rv != 0) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    CRAFT_ASSERT(n >= 0);
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    o->rv = buf_append(o->b, line, len);
}

/* Redis's used_memory_human style: 1.23M. */
static const char *human(uint64_t bytes, char *out, size_t cap)
{
    static const char units[] = "BKMGT";
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < sizeof units - 1) {
        v /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(out, cap, "%lluB", (unsigned long long)bytes);
    } else {
        snprintf(out, cap, "%.2f%c", v, units[u]);
    }
    return out;
}

void node_proc_read(struct node_proc *p)
{
    memset(p, 0, sizeof *p);
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "re");
    if (f != NULL) {
        unsigned long long size, resident;
        if (fscanf(f, "%llu %llu", &size, &resident) == 2 && page > 0) {
            p->vsize_bytes = size * (uint64_t)page;
            p->rss_bytes = resident * (uint64_t)page;
        }
        fclose(f);
    }
    long hz = sysconf(_SC_CLK_TCK);
    f = fopen("/proc/self/stat", "re");
    if (f != NULL) {
        char text[1024];
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        /* Fields 14 and 15 (utime, stime) follow the command name, which
         * is in parentheses and may itself hold blanks. */
        const char *rp = strrchr(text, ')');
        unsigned long long ut, st;
        if (rp != NULL && hz > 0 &&
            sscanf(rp + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
                   "%llu",
                   &ut, &st) == 2) {
            p->cpu_user_s = (double)ut / (double)hz;
            p->cpu_sys_s = (double)st / (double)hz;
        }
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            p->open_fds += e->d_name[0] != '.';
        }
        closedir(d);
        p->open_fds -= p->open_fds > 0; /* the DIR's own descriptor */
    }
}

static uint64_t heap_measure(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

uint64_t node_heap_sample(struct node_heap_cache *c, uint64_t now_ms,
                          uint64_t (*measure)(void))
{
    if (!c->valid || now_ms < c->at_ms ||
        now_ms - c->at_ms >= NODE_HEAP_SAMPLE_MS) {
        c->bytes = measure();
        c->at_ms = now_ms;
        c->valid = true;
    }
    return c->bytes;
}

uint64_t node_heap_bytes(void)
{
    static struct node_heap_cache cache;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now_ms =
        (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return node_heap_sample(&cache, now_ms, heap_measure);
}

/* A run id like Redis's: 40 hex digits, random per process. */
static const char *run_id(void)
{
    static char id[41];
    if (id[0] == '\0') {
        uint64_t x =
            obs.start_ns ^ ((uint64_t)getpid() << 32) ^ obs.start_unix_ms;
        for (int i = 0; i < 40; i++) {
            /* splitmix64 */
            x += 0x9e3779b97f4a7c15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            id[i] = "0123456789abcdef"[z & 15];
        }
    }
    return id;
}

static void sec_server(struct out *o, const struct node_report *r)
{
    const struct node_member *self = &r->cfg->members[r->cfg->self];
    struct utsname u;
    if (uname(&u) != 0) {
        memset(&u, 0, sizeof u);
    }
    uint64_t up = (obs_unix_ms() - obs.start_unix_ms) / 1000u;
    add(o,
        "# Server\r\nredis_version:7.0.0\r\ncraftd_version:%s\r\n"
        "redis_mode:standalone\r\nos:%s %s %s\r\narch_bits:%d\r\n"
        "process_id:%ld\r\nrun_id:%s\r\ntcp_port:%u\r\n"
        "craft_raft_port:%u\r\ncraft_bind:%s\r\n",
        CRAFTD_VERSION, u.sysname, u.release, u.machine,
        (int)(sizeof(void *) * 8), (long)getpid(), run_id(),
        (unsigned)self->client_port, (unsigned)self->raft_port, self->host);
    add(o,
        "uptime_in_seconds:%llu\r\nuptime_in_days:%llu\r\nhz:%u\r\n"
        "craft_data_dir:%s\r\ncraft_tick_ms:%u\r\n"
        "craft_election_ms:%u-%u\r\ncraft_heartbeat_ms:%u\r\n",
        (unsigned long long)up, (unsigned long long)(up / 86400),
        1000u / r->cfg->tick_ms, r->cfg->data_dir, r->cfg->tick_ms,
        r->cfg->election_ms_min, r->cfg->election_ms_max, r->cfg->heartbeat_ms);
}

static void sec_clients(struct out *o, const struct node_report *r)
{
    add(o,
        "# Clients\r\nconnected_clients:%u\r\nmaxclients:%u\r\n"
        "blocked_clients:0\r\ntracking_clients:0\r\n",
        r->clients, r->max_clients);
}

static void sec_memory(struct out *o)
{
    struct node_proc p;
    node_proc_read(&p);
    uint64_t heap = node_heap_bytes();
    char h1[32], h2[32];
    add(o,
        "# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\n"
        "used_memory_rss:%llu\r\nused_memory_rss_human:%s\r\n"
        "maxmemory:0\r\nmaxmemory_policy:noeviction\r\n"
        "mem_allocator:libc\r\n",
        (unsigned long long)heap, human(heap, h1, sizeof h1),
        (unsigned long long)p.rss_bytes, human(p.rss_bytes, h2, sizeof h2));
}

static void sec_persistence(struct out *o, const struct node_report *r)
{
    const struct obs_hist *s = &obs.snapshot;
    add(o,
        "# Persistence\r\nloading:0\r\naof_enabled:1\r\n"
        "craft_appendfsync:always\r\n"
        "rdb_bgsave_in_progress:%d\r\nrdb_last_save_time:%llu\r\n"
        "rdb_last_bgsave_status:%s\r\nrdb_last_bgsave_time_sec:%.0f\r\n"
        "rdb_changes_since_last_save:%llu\r\n",
        r->snapshot_in_progress,
        (unsigned long long)((obs.snapshot_last_unix_ms
                                  ? obs.snapshot_last_unix_ms
                                  : obs.start_unix_ms) /
                             1000u),
        obs.snapshot_last_abandoned ? "err" : "ok",
        s->count > 0 ? s->last : -1.0,
        (unsigned long long)(r->applied > r->snapshot_index
                                 ? r->applied - r->snapshot_index
                                 : 0));
    add(o,
        "craft_snapshot_index:%llu\r\ncraft_snapshot_term:%llu\r\n"
        "craft_snapshots_taken:%llu\r\ncraft_snapshots_failed:%llu\r\n"
        "craft_snapshots_installed:%llu\r\n"
        "craft_snapshot_last_index:%llu\r\n"
        "craft_snapshot_last_bytes:%llu\r\n"
        "craft_snapshot_last_duration_ms:%.0f\r\n"
        "craft_snapshot_receiving:%d\r\n",
        (unsigned long long)r->snapshot_index,
        (unsigned long long)r->snapshot_term, (unsigned long long)obs.snapshots,
        (unsigned long long)obs.snapshots_failed,
        (unsigned long long)obs.snapshots_installed,
        (unsigned long long)obs.snapshot_last_index,
        (unsigned long long)obs.snapshot_last_bytes,
        s->count > 0 ? s->last * 1e3 : 0.0, r->receiving_snapshot);
    const struct obs_hist *f = &obs.fsync;
    add(o,
        "craft_log_first_index:%llu\r\ncraft_log_last_index:%llu\r\n"
        "craft_log_durable_index:%llu\r\n"
        "craft_log_bytes_since_snapshot:%llu\r\n"
        "craft_log_pending_bytes:%llu\r\n"
        "craft_fsync_count:%llu\r\ncraft_fsync_p50_ms:%.3f\r\n"
        "craft_fsync_p99_ms:%.3f\r\ncraft_fsync_max_ms:%.3f\r\n"
        "craft_fsync_last_ms:%.3f\r\ncraft_fsync_stalls:%llu\r\n",
        (unsigned long long)r->first_index, (unsigned long long)r->last_index,
        (unsigned long long)r->durable_index, (unsigned long long)r->log_bytes,
        (unsigned long long)r->persist_bytes, (unsigned long long)f->count,
        obs_hist_quantile(f, 0.5) * 1e3, obs_hist_quantile(f, 0.99) * 1e3,
        f->max * 1e3, f->last * 1e3, (unsigned long long)obs.fsync_stalls);
}

static void sec_stats(struct out *o)
{
    add(o,
        "# Stats\r\ntotal_connections_received:%llu\r\n"
        "total_commands_processed:%llu\r\n"
        "instantaneous_ops_per_sec:%.0f\r\nrejected_connections:%llu\r\n"
        "expired_keys:0\r\nevicted_keys:0\r\nkeyspace_hits:%llu\r\n"
        "keyspace_misses:%llu\r\ncraft_elections:%llu\r\n"
        "craft_leader_changes:%llu\r\n",
        (unsigned long long)obs.connections_received,
        (unsigned long long)obs.commands, obs_ops_per_sec(),
        (unsigned long long)obs.connections_rejected,
        (unsigned long long)obs.keyspace_hits,
        (unsigned long long)obs.keyspace_misses,
        (unsigned long long)obs.elections,
        (unsigned long long)obs.leader_changes);
}

static void sec_replication(struct out *o, const struct node_report *r)
{
    add(o, "# Replication\r\nrole:%s\r\n", r->leader ? "master" : "slave");
    if (r->leader) {
        unsigned up = 0;
        for (unsigned i = 0; i < r->n_peers; i++) {
            up += r->peers[i].connected;
        }
        add(o, "connected_slaves:%u\r\n", up);
        for (unsigned i = 0, k = 0; i < r->n_peers; i++) {
            const struct node_report_peer *p = &r->peers[i];
            if (!p->connected) {
                continue;
            }
            char host[NODE_HOST_MAX + 8];
            snprintf(host, sizeof host, "%s", p->addr);
            char *colon = strrchr(host, ':');
            const char *port = "0";
            if (colon != NULL) {
                *colon = '\0';
                port = colon + 1;
            }
            add(o,
                "slave%u:ip=%s,port=%s,state=online,offset=%llu,lag=%lld\r\n",
                k++, host, port, (unsigned long long)p->match,
                (long long)(p->last_contact_ms >= 0 ? p->last_contact_ms / 1000
                                                    : -1));
        }
    } else {
        char host[NODE_HOST_MAX + 8] = "";
        const char *port = "0";
        bool link = false;
        if (r->leader_addr[0] != '\0') {
            snprintf(host, sizeof host, "%s", r->leader_addr);
            char *colon = strrchr(host, ':');
            if (colon != NULL) {
                *colon = '\0';
                port = colon + 1;
            }
            for (unsigned i = 0; i < r->n_peers; i++) {
                link |= r->peers[i].id == r->leader_id && r->peers[i].connected;
            }
        }
        add(o,
            "master_host:%s\r\nmaster_port:%s\r\nmaster_link_status:%s\r\n"
            "connected_slaves:0\r\n",
            host, port, link ? "up" : "down");
    }
    add(o, "master_repl_offset:%llu\r\n", (unsigned long long)r->commit);
}

static void sec_raft(struct out *o, const struct node_report *r)
{
    add(o,
        "# Raft\r\nraft_node_id:%llu\r\nraft_role:%s\r\nraft_term:%llu\r\n"
        "raft_vote:%llu\r\nraft_leader_id:%llu\r\nraft_leader_addr:%s\r\n",
        (unsigned long long)r->id, r->role, (unsigned long long)r->term,
        (unsigned long long)r->vote, (unsigned long long)r->leader_id,
        r->leader_addr);
    add(o,
        "raft_commit_index:%llu\r\nraft_applied_index:%llu\r\n"
        "raft_first_index:%llu\r\nraft_last_index:%llu\r\n"
        "raft_durable_index:%llu\r\nraft_log_bytes:%llu\r\n"
        "raft_snapshot_index:%llu\r\nraft_snapshot_term:%llu\r\n"
        "raft_members:%u\r\nraft_pending_proposals:%u\r\n"
        "raft_elections:%llu\r\nraft_leader_changes:%llu\r\n",
        (unsigned long long)r->commit, (unsigned long long)r->applied,
        (unsigned long long)r->first_index, (unsigned long long)r->last_index,
        (unsigned long long)r->durable_index, (unsigned long long)r->log_bytes,
        (unsigned long long)r->snapshot_index,
        (unsigned long long)r->snapshot_term, r->n_members,
        r->pending_proposals, (unsigned long long)obs.elections,
        (unsigned long long)obs.leader_changes);
    for (unsigned i = 0; i < r->n_peers; i++) {
        const struct node_report_peer *p = &r->peers[i];
        add(o, "raft_peer_%llu:addr=%s,raft_addr=%s,connected=%d",
            (unsigned long long)p->id, p->addr, p->raft_addr, p->connected);
        if (p->has_progress) {
            add(o, ",match=%llu,next=%llu,lag=%llu,state=%s",
                (unsigned long long)p->match, (unsigned long long)p->next,
                (unsigned long long)p->lag, p->state);
        }
        if (p->last_contact_ms >= 0) {
            add(o, ",last_contact_ms=%lld", (long long)p->last_contact_ms);
        }
        add(o,
            ",frames_sent=%llu,frames_dropped=%llu,bytes_sent=%llu,"
            "bytes_received=%llu,connects=%llu\r\n",
            (unsigned long long)p->frames_sent,
            (unsigned long long)p->frames_dropped,
            (unsigned long long)p->bytes_sent,
            (unsigned long long)p->bytes_received,
            (unsigned long long)p->connects);
    }
}

static void sec_keyspace(struct out *o, const struct node_report *r)
{
    add(o, "# Keyspace\r\n");
    if (r->keys > 0) { /* Redis lists only non-empty databases */
        add(o, "db0:keys=%llu,expires=%llu,avg_ttl=0\r\n",
            (unsigned long long)r->keys, (unsigned long long)r->expires);
    }
}

static void sec_commandstats(struct out *o)
{
    add(o, "# Commandstats\r\n");
    for (unsigned i = 0; i < obs.n_cmds; i++) {
        const struct obs_cmd *c = &obs.cmds[i];
        uint64_t calls = 0;
        for (unsigned k = 0; k < OBS_RESULTS; k++) {
            calls += c->calls[k];
        }
        uint64_t rejected = calls - c->calls[OBS_OK] - c->calls[OBS_ERR];
        add(o,
            "cmdstat_%s:calls=%llu,failed_calls=%llu,rejected_calls=%llu\r\n",
            c->name, (unsigned long long)calls,
            (unsigned long long)c->calls[OBS_ERR],
            (unsigned long long)rejected);
    }
}

int node_info_write(const struct node_report *r, unsigned mask, struct buf *b)
{
    CRAFT_ASSERT(r != NULL && b != NULL);
    CRAFT_ASSERT((mask & ~(unsigned)INFO_ALL) == 0);
    struct out o = {.b = b, .rv = 0};
    size_t start = b->len;
    /* Redis's order: ..., replication, (cpu, modules,) commandstats,
     * cluster, keyspace; raft, ours, after replication. */
    static const unsigned order[] = {
        INFO_SERVER,  INFO_CLIENTS,     INFO_MEMORY, INFO_PERSISTENCE,
        INFO_STATS,   INFO_REPLICATION, INFO_RAFT,   INFO_COMMANDSTATS,
        INFO_CLUSTER, INFO_KEYSPACE};
    _Static_assert(sizeof order / sizeof order[0] == 10, "every section");
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        unsigned bit = order[i];
        if ((mask & bit) == 0) {
            continue;
        }
        if (b->len > start) {
            add(&o, "\r\n");
        }
        switch (bit) {
        case INFO_SERVER:
            sec_server(&o, r);
            break;
        case INFO_CLIENTS:
            sec_clients(&o, r);
            break;
        case INFO_MEMORY:
            sec_memory(&o);
            break;
        case INFO_PERSISTENCE:
            sec_persistence(&o, r);
            break;
        case INFO_STATS:
            sec_stats(&o);
            break;
        case INFO_REPLICATION:
            sec_replication(&o, r);
            break;
        case INFO_RAFT:
            sec_raft(&o, r);
            break;
        case INFO_KEYSPACE:
            sec_keyspace(&o, r);
            break;
        case INFO_COMMANDSTATS:
            sec_commandstats(&o);
            break;
        case INFO_CLUSTER:
            /* redis-py's RedisCluster and other cluster clients check
             * this before they ask CLUSTER SLOTS. */
            add(&o, "# Cluster\r\ncluster_enabled:1\r\n");
            break;
        default:
            CRAFT_UNREACHABLE();
        }
    }
    return o.rv;
}

unsigned node_info_sections(size_t argc, const uint8_t *const *argv,
                            const size_t *lens)
{
    static const struct {
        const char *name;
        unsigned mask;
    } names[] = {{"server", INFO_SERVER},   {"clients", INFO_CLIENTS},
                 {"memory", INFO_MEMORY},   {"persistence", INFO_PERSISTENCE},
                 {"stats", INFO_STATS},     {"replication", INFO_REPLICATION},
                 {"raft", INFO_RAFT},       {"keyspace", INFO_KEYSPACE},
                 {"cluster", INFO_CLUSTER}, {"commandstats", INFO_COMMANDSTATS},
                 {"default", INFO_DEFAULT}, {"all", INFO_ALL},
                 {"everything", INFO_ALL}};
    if (argc == 0) {
        return INFO_DEFAULT;
    }
    unsigned mask = 0;
    for (size_t a = 0; a < argc; a++) {
        for (size_t i = 0; i < CRAFT_ARRAY_LEN(names); i++) {
            if (lens[a] == strlen(names[i].name) &&
                strncasecmp((const char *)argv[a], names[i].name, lens[a]) ==
                    0) {
                mask |= names[i].mask;
            }
        }
    }
    return mask;
}
