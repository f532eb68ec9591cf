/*
 * craft-cli status: ask every member for its INFO and print one row each.
 *
 * Each member is asked directly (INFO is answered locally by any node), so
 * a member that is down or cut off shows up as such instead of hiding
 * behind the leader.  LAG and CONTACT come from the leader's view of its
 * peers (raft_peer_<id> in its INFO): LAG is the leader's last log index
 * minus the entries it knows the member holds (match), CONTACT whether its
 * replication link to the member is up, or the age of the last contact
 * when the server reports `last_contact_ms`.
 *
 * Exit status: 0 every member answered and they agree on one leader; 1 the
 * cluster answers but is degraded (a member down, no leader); 74 no member
 * answered; 64 bad usage.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cli.h"
#include "cluster.h"

#define STATUS_EXIT_DEGRADED 1
/* INFO is answered from memory; a member slower than this is as good as
 * down for an operator looking at the table. */
#define STATUS_INFO_TIMEOUT_MS 1000

static const char status_usage[] =
    "usage: craft-cli status [-c LIST] [-t MS] [-a PASSWORD] [--json]\n"
    "\n"
    "Ask every member of --cluster for its Raft state and print a table:\n"
    "  ID ADDRESS ROLE TERM COMMIT APPLIED LAG SNAPSHOT STATE CONTACT RTT\n"
    "LAG is the number of log entries the leader has that the member has\n"
    "not acknowledged; STATE how the leader replicates to it (probe:\n"
    "finding where its log matches, replicate: streaming entries,\n"
    "snapshot: sending a snapshot); CONTACT the time since the leader last\n"
    "heard from it.\n"
    "List every member in --cluster (craftd's ID=HOST:PORT list works).\n"
    "\n"
    "  -c, --cluster LIST  members (default $CRAFT_CLUSTER, else\n"
    "                      " CLI_CLUSTER_DEFAULT ")\n"
    "  -a, --password P    AUTH with P\n"
    "  -j, --json          one JSON object instead of the table\n"
    "\n"
    "exit status: 0 healthy, 1 degraded (a member down or no leader),\n"
    "74 no member answered, 64 bad usage\n";

struct member {
    const char *addr;
    bool up;
    char error[128];
    double rtt_ms;
    unsigned long long id, term, leader_id, commit, applied, last, snapshot;
    char role[24];
    char *info; /* the raw INFO text, for the peer lines */
};

struct peer_view {
    bool known;
    bool connected;
    unsigned long long match;
    long long next;            /* -1 if not reported */
    long long lag;             /* -1 if not reported */
    char state[16];            /* probe, replicate, snapshot, or "" */
    long long last_contact_ms; /* -1 if not reported */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The value of "name:" in INFO text, or NULL. */
static const char *field(const char *info, const char *name, char *out,
                         size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = info; p != NULL && *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, "\r\n");
            if (len >= cap) {
                len = cap - 1;
            }
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return NULL;
}

static unsigned long long ufield(const char *info, const char *name)
{
    char v[64];
    if (field(info, name, v, sizeof v) == NULL) {
        return 0;
    }
    return strtoull(v, NULL, 10);
}

static void query(struct member *m, const char *password)
{
    char host[CRAFT_CLIENT_ADDR_LEN_MAX + 1];
    const char *colon = strrchr(m->addr, ':');
    size_t hlen = (size_t)(colon - m->addr);
    snprintf(host, sizeof host, "%.*s", (int)hlen, m->addr);
    int port = atoi(colon + 1);
    struct timeval tv = {.tv_sec = STATUS_INFO_TIMEOUT_MS / 1000,
                         .tv_usec = (STATUS_INFO_TIMEOUT_MS % 1000) * 1000};
    double t0 = now_ms();
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (rc == NULL || rc->err != 0) {
        snprintf(m->error, sizeof m->error, "%s",
                 rc != NULL ? rc->errstr : "out of memory");
        redisFree(rc);
        return;
    }
    redisSetTimeout(rc, tv);
    redisReply *r;
    if (password != NULL) {
        r = redisCommand(rc, "AUTH %s", password);
        freeReplyObject(r);
    }
    r = redisCommand(rc, "INFO");
    m->rtt_ms = now_ms() - t0;
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        snprintf(m->error, sizeof m->error, "%s",
                 r == NULL                      ? rc->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "INFO is not text");
        freeReplyObject(r);
        redisFree(rc);
        return;
    }
    m->info = strdup(r->str);
    freeReplyObject(r);
    redisFree(rc);
    if (m->info == NULL ||
        field(m->info, "raft_role", m->role, sizeof m->role) == NULL) {
        snprintf(m->error, sizeof m->error, "not a craftd node (no raft_role)");
        return;
    }
    m->up = true;
    m->id = ufield(m->info, "raft_node_id");
    m->term = ufield(m->info, "raft_term");
    m->leader_id = ufield(m->info, "raft_leader_id");
    m->commit = ufield(m->info, "raft_commit_index");
    m->applied = ufield(m->info, "raft_applied_index");
    m->last = ufield(m->info, "raft_last_index");
    m->snapshot = ufield(m->info, "raft_snapshot_index");
}

/* What the leader says about member id. */
static struct peer_view peer_of(const struct member *leader,
                                unsigned long long id)
{
    struct peer_view v = {
        .known = false, .next = -1, .lag = -1, .last_contact_ms = -1};
    char name[48];
    char text[256];
    snprintf(name, sizeof name, "raft_peer_%llu", id);
    if (leader == NULL ||
        field(leader->info, name, text, sizeof text) == NULL) {
        return v;
    }
    v.known = true;
    for (char *tok = strtok(text, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (strncmp(tok, "connected=", 10) == 0) {
            v.connected = atoi(tok + 10) != 0;
        } else if (strncmp(tok, "match=", 6) == 0) {
            v.match = strtoull(tok + 6, NULL, 10);
        } else if (strncmp(tok, "last_contact_ms=", 16) == 0) {
            v.last_contact_ms = strtoll(tok + 16, NULL, 10);
        } else if (strncmp(tok, "next=", 5) == 0) {
            v.next = strtoll(tok + 5, NULL, 10);
        } else if (strncmp(tok, "lag=", 4) == 0) {
            v.lag = strtoll(tok + 4, NULL, 10);
        } else if (strncmp(tok, "state=", 6) == 0) {
            snprintf(v.state, sizeof v.state, "%s", tok + 6);
        }
    }
    return v;
}

/* The member that leads in the highest term, or NULL. */
static const struct member *find_leader(const struct member *ms, size_t n)
{
    const struct member *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ms[i].up && strcmp(ms[i].role, "leader") == 0 &&
            (best == NULL || ms[i].term > best->term)) {
            best = &ms[i];
        }
    }
    return best;
}

static void fmt_contact(const struct member *m, const struct member *leader,
                        unsigned long long id, char *out, size_t cap)
{
    if (leader == NULL) {
        snprintf(out, cap, "-");
    } else if (m == leader) {
        snprintf(out, cap, "self");
    } else {
        struct peer_view v = peer_of(leader, id);
        if (!v.known) {
            snprintf(out, cap, "-");
        } else if (v.last_contact_ms >= 0) {
            snprintf(out, cap, "%lld ms ago", v.last_contact_ms);
        } else {
            snprintf(out, cap, "%s", v.connected ? "connected" : "lost");
        }
    }
}

/* The leader's replication state for member id: "self" on the leader,
 * probe/replicate/snapshot, or "-" when unknown. */
static void fmt_state(const struct member *m, const struct member *leader,
                      unsigned long long id, char *out, size_t cap,
                      long long *next)
{
    *next = -1;
    if (leader == NULL) {
        snprintf(out, cap, "-");
    } else if (m == leader) {
        snprintf(out, cap, "self");
        *next = (long long)leader->last + 1;
    } else {
        struct peer_view v = peer_of(leader, id);
        snprintf(out, cap, "%s", v.known && v.state[0] ? v.state : "-");
        *next = v.next;
    }
}

/* LAG as text and, through *lag, as a number (-1 unknown). */
static void fmt_lag(const struct member *m, const struct member *leader,
                    unsigned long long id, char *out, size_t cap,
                    long long *lag)
{
    *lag = -1;
    if (leader != NULL && m == leader) {
        *lag = 0;
    } else if (leader != NULL) {
        struct peer_view v = peer_of(leader, id);
        if (v.known && v.lag >= 0) {
            *lag = v.lag; /* the leader's own figure (craftd >= INFO v2) */
        } else if (v.known) {
            *lag = v.match >= leader->last
                       ? 0
                       : (long long)(leader->last - v.match);
        }
    }
    if (*lag < 0) {
        snprintf(out, cap, "-");
    } else {
        snprintf(out, cap, "%lld", *lag);
    }
}

static void print_table(const struct member *ms, size_t n,
                        const struct cli_cluster_opts *o,
                        const struct member *leader)
{
    printf("%-4s %-21s %-13s %6s %9s %9s %6s %9s %-9s %-10s %s\n", "ID",
           "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "SNAPSHOT",
           "STATE", "CONTACT", "RTT");
    for (size_t i = 0; i < n; i++) {
        const struct member *m = &ms[i];
        unsigned long long id = m->up ? m->id : o->ids[i];
        char ids[24], lag[24], contact[32], state[16];
        long long lagv, next;
        snprintf(ids, sizeof ids, id != 0 ? "%llu" : "?", id);
        fmt_lag(m, leader, id, lag, sizeof lag, &lagv);
        fmt_contact(m, leader, id, contact, sizeof contact);
        fmt_state(m, leader, id, state, sizeof state, &next);
        if (!m->up) {
            printf("%-4s %-21s %-13s %6s %9s %9s %6s %9s %-9s %-10s down: %s\n",
                   ids, m->addr, "unreachable", "-", "-", "-", lag, "-", state,
                   contact, m->error);
            continue;
        }
        printf("%-4s %-21s %-13s %6llu %9llu %9llu %6s %9llu %-9s %-10s %.1f "
               "ms\n",
               ids, m->addr, m->role, m->term, m->commit, m->applied, lag,
               m->snapshot, state, contact, m->rtt_ms);
    }
}

static void print_json(const struct member *ms, size_t n,
                       const struct cli_cluster_opts *o,
                       const struct member *leader)
{
    printf("{\"leader\":");
    if (leader != NULL) {
        printf("%llu,\"term\":%llu", leader->id, leader->term);
    } else {
        printf("null,\"term\":null");
    }
    printf(",\"members\":[");
    for (size_t i = 0; i < n; i++) {
        const struct member *m = &ms[i];
        unsigned long long id = m->up ? m->id : o->ids[i];
        char lag[24], contact[32], state[16];
        long long lagv, next;
        fmt_lag(m, leader, id, lag, sizeof lag, &lagv);
        fmt_contact(m, leader, id, contact, sizeof contact);
        fmt_state(m, leader, id, state, sizeof state, &next);
        printf("%s{\"id\":", i > 0 ? "," : "");
        printf(id != 0 ? "%llu" : "null", id);
        printf(",\"address\":");
        cli_json_string(stdout, m->addr, strlen(m->addr));
        printf(",\"reachable\":%s", m->up ? "true" : "false");
        if (m->up) {
            printf(",\"role\":\"%s\",\"term\":%llu,\"commit\":%llu,"
                   "\"applied\":%llu,\"last_index\":%llu,\"snapshot\":%llu,"
                   "\"leader_id\":%llu,\"rtt_ms\":%.3f",
                   m->role, m->term, m->commit, m->applied, m->last,
                   m->snapshot, m->leader_id, m->rtt_ms);
        } else {
            printf(",\"error\":");
            cli_json_string(stdout, m->error, strlen(m->error));
        }
        printf(lagv >= 0 ? ",\"lag\":%lld" : ",\"lag\":null", lagv);
        printf(",\"state\":\"%s\"", state);
        printf(next >= 0 ? ",\"next\":%lld" : ",\"next\":null", next);
        printf(",\"contact\":\"%s\"}", contact);
    }
    printf("]}\n");
}

int cli_status(int argc, char **argv)
{
    struct cli_cluster_opts o;
    int rv = cli_cluster_parse(argc, argv, status_usage, &o);
    if (rv != 0) {
        return rv < 0 ? 0 : rv;
    }
    if (o.n_args != 0) {
        fprintf(stderr, "craft-cli status: unexpected argument '%s'\n\n%s",
                o.args[0], status_usage);
        return CLI_EXIT_USAGE;
    }
    struct member ms[CRAFT_CLIENT_ADDRS_MAX];
    memset(ms, 0, sizeof ms);
    size_t n_up = 0;
    for (size_t i = 0; i < o.n_addrs; i++) {
        ms[i].addr = o.addrs[i];
        query(&ms[i], o.password);
        n_up += ms[i].up;
    }
    const struct member *leader = find_leader(ms, o.n_addrs);
    if (o.json) {
        print_json(ms, o.n_addrs, &o, leader);
    } else {
        print_table(ms, o.n_addrs, &o, leader);
    }
    int code = 0;
    if (n_up == 0) {
        code = CLI_EXIT_IO;
    } else if (n_up < o.n_addrs || leader == NULL) {
        code = STATUS_EXIT_DEGRADED;
    }
    for (size_t i = 0; i < o.n_addrs; i++) {
        free(ms[i].info);
    }
    return code;
}
