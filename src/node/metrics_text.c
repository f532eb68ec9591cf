/*
 * The Prometheus text exposition format 0.0.4 of a node report and the
 * obs counters: for each metric family one "# HELP" and one "# TYPE" line,
 * then its samples; names match [a-zA-Z_:][a-zA-Z0-9_:]*, counters end in
 * _total, histograms have cumulative _bucket{le=...} samples ending with
 * le="+Inf" (equal to _count), then _sum and _count.  Label values here
 * are digits, member addresses or command names restricted to
 * [a-z0-9._-] (util/obs.c), so none needs escaping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "node/report.h"
#include "util/assert.h"
#include "util/obs.h"

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
    CRAFT_ASSERT(n >= 0 && (size_t)n < sizeof line);
    o->rv = buf_append(o->b, line, (size_t)n);
}

static void family(struct out *o, const char *name, const char *type,
                   const char *help)
{
    add(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(struct out *o, const char *name, const char *type,
                   const char *help, double v)
{
    family(o, name, type, help);
    add(o, "%s %.17g\n", name, v);
}

/* The samples of one histogram; labels is "" or `key="value",`. */
static void hist_samples(struct out *o, const char *name, const char *labels,
                         const struct obs_hist *h)
{
    uint64_t cum = 0;
    for (unsigned i = 0; i < OBS_BUCKETS; i++) {
        cum += h->counts[i];
        add(o, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
            obs_bucket_bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[OBS_BUCKETS];
    CRAFT_ASSERT(cum == h->count);
    add(o, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
        (unsigned long long)cum);
    char l[128] = "";
    if (labels[0] != '\0') {
        snprintf(l, sizeof l, "{%.*s}", (int)strlen(labels) - 1, labels);
    }
    add(o, "%s_sum%s %.9g\n%s_count%s %llu\n", name, l, h->sum, name, l,
        (unsigned long long)h->count);
}

static void commands(struct out *o)
{
    family(o, "craftd_commands_total", "counter",
           "Commands answered, by command name and result.");
    for (unsigned i = 0; i < obs.n_cmds; i++) {
        for (unsigned k = 0; k < OBS_RESULTS; k++) {
            if (obs.cmds[i].calls[k] == 0 && k != OBS_OK) {
                continue;
            }
            add(o, "craftd_commands_total{cmd=\"%s\",result=\"%s\"} %llu\n",
                obs.cmds[i].name, obs_result_names[k],
                (unsigned long long)obs.cmds[i].calls[k]);
        }
    }
    family(o, "craftd_command_duration_seconds", "histogram",
           "Time from a command's arrival to its reply, by class (read: "
           "ReadIndex; write: through the log).");
    for (unsigned c = OBS_READ; c < OBS_CLASSES; c++) {
        char labels[48];
        snprintf(labels, sizeof labels, "class=\"%s\",", obs_class_names[c]);
        hist_samples(o, "craftd_command_duration_seconds", labels,
                     &obs.cmd_latency[c]);
    }
}

static void peers(struct out *o, const struct node_report *r)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } fams[] = {
        {"craftd_peer_bytes_sent_total", "counter",
         "Raft message bytes queued to the peer.",
         offsetof(struct node_report_peer, bytes_sent)},
        {"craftd_peer_bytes_received_total", "counter",
         "Raft message bytes received from the peer.",
         offsetof(struct node_report_peer, bytes_received)},
        {"craftd_peer_frames_dropped_total", "counter",
         "Frames to the peer refused or lost (queue full, link down).",
         offsetof(struct node_report_peer, frames_dropped)},
        {"craftd_peer_connects_total", "counter",
         "Connections to the peer established.",
         offsetof(struct node_report_peer, connects)},
    };
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        family(o, fams[f].name, fams[f].type, fams[f].help);
        for (unsigned i = 0; i < r->n_peers; i++) {
            const struct node_report_peer *p = &r->peers[i];
            uint64_t v;
            memcpy(&v, (const char *)p + fams[f].off, sizeof v);
            add(o, "%s{peer=\"%llu\",addr=\"%s\"} %llu\n", fams[f].name,
                (unsigned long long)p->id, p->raft_addr, (unsigned long long)v);
        }
    }
    family(o, "craftd_peer_connected", "gauge",
           "1 if this node's link to the peer is up.");
    for (unsigned i = 0; i < r->n_peers; i++) {
        add(o, "craftd_peer_connected{peer=\"%llu\"} %d\n",
            (unsigned long long)r->peers[i].id, r->peers[i].connected);
    }
    family(o, "craftd_peer_lag_entries", "gauge",
           "Leader only: log entries the peer has not acknowledged.");
    for (unsigned i = 0; i < r->n_peers; i++) {
        const struct node_report_peer *p = &r->peers[i];
        if (p->has_progress) {
            add(o, "craftd_peer_lag_entries{peer=\"%llu\"} %llu\n",
                (unsigned long long)p->id, (unsigned long long)p->lag);
        }
    }
    family(o, "craftd_peer_last_contact_seconds", "gauge",
           "Leader only: time since the peer last answered.");
    for (unsigned i = 0; i < r->n_peers; i++) {
        const struct node_report_peer *p = &r->peers[i];
        if (p->last_contact_ms >= 0) {
            add(o, "craftd_peer_last_contact_seconds{peer=\"%llu\"} %.3f\n",
                (unsigned long long)p->id, (double)p->last_contact_ms / 1e3);
        }
    }
}

static void raft(struct out *o, const struct node_report *r)
{
    family(o, "craftd_info", "gauge", "Always 1; labels describe the node.");
    /* No role label: a label that changes value makes a new series at
     * every election (craftd_is_leader says it). */
    add(o, "craftd_info{version=\"0.1.0\",node=\"%llu\"} 1\n",
        (unsigned long long)r->id);
    scalar(o, "craftd_term", "gauge", "Current Raft term.", (double)r->term);
    scalar(o, "craftd_is_leader", "gauge", "1 if this node leads.",
           r->leader ? 1 : 0);
    scalar(o, "craftd_leader_id", "gauge", "Known leader's id, 0 if none.",
           (double)r->leader_id);
    scalar(o, "craftd_commit_index", "gauge", "Highest committed log index.",
           (double)r->commit);
    scalar(o, "craftd_applied_index", "gauge",
           "Highest log index applied to the key-value state.",
           (double)r->applied);
    scalar(o, "craftd_last_index", "gauge", "Last index in the log.",
           (double)r->last_index);
    scalar(o, "craftd_snapshot_index", "gauge",
           "Log index of the latest snapshot.", (double)r->snapshot_index);
    scalar(o, "craftd_log_bytes", "gauge",
           "Log entry bytes written since the latest snapshot.",
           (double)r->log_bytes);
    scalar(o, "craftd_pending_proposals", "gauge",
           "Writes proposed and not yet answered.",
           (double)r->pending_proposals);
    scalar(o, "craftd_elections_total", "counter",
           "Times this node started an election (became pre-candidate or "
           "candidate).",
           (double)obs.elections);
    scalar(o, "craftd_leader_changes_total", "counter",
           "Times this node saw a new leader.", (double)obs.leader_changes);
    scalar(o, "craftd_snapshots_total", "counter",
           "Local snapshots written and made durable.", (double)obs.snapshots);
    scalar(o, "craftd_snapshots_failed_total", "counter",
           "Local snapshots abandoned.", (double)obs.snapshots_failed);
    scalar(o, "craftd_snapshots_installed_total", "counter",
           "Snapshots received from a leader and installed.",
           (double)obs.snapshots_installed);
    family(o, "craftd_snapshot_duration_seconds", "histogram",
           "Time from the fork of a local snapshot to its being durable.");
    hist_samples(o, "craftd_snapshot_duration_seconds", "", &obs.snapshot);
    family(o, "craftd_fsync_duration_seconds", "histogram",
           "Duration of each group-commit fdatasync of the Raft log.");
    hist_samples(o, "craftd_fsync_duration_seconds", "", &obs.fsync);
    scalar(o, "craftd_fsync_stalls_total", "counter",
           "fdatasyncs of the log slower than 125 ms.",
           (double)obs.fsync_stalls);
}

static void clients(struct out *o, const struct node_report *r)
{
    scalar(o, "craftd_connected_clients", "gauge",
           "Client connections open now.", (double)r->clients);
    scalar(o, "craftd_connections_received_total", "counter",
           "Client connections accepted.", (double)obs.connections_received);
    scalar(o, "craftd_connections_rejected_total", "counter",
           "Client connections refused by --max-clients.",
           (double)obs.connections_rejected);
    scalar(o, "craftd_keys", "gauge", "Keys in the store.", (double)r->keys);
    scalar(o, "craftd_keys_with_expiry", "gauge",
           "Keys in the store that have a TTL.", (double)r->expires);
    scalar(o, "craftd_keyspace_hits_total", "counter",
           "GETs that found their key.", (double)obs.keyspace_hits);
    scalar(o, "craftd_keyspace_misses_total", "counter",
           "GETs that did not find their key.", (double)obs.keyspace_misses);
}

static void process(struct out *o)
{
    struct node_proc p;
    node_proc_read(&p);
    scalar(o, "process_resident_memory_bytes", "gauge",
           "Resident memory size in bytes.", (double)p.rss_bytes);
    scalar(o, "process_virtual_memory_bytes", "gauge",
           "Virtual memory size in bytes.", (double)p.vsize_bytes);
    scalar(o, "process_cpu_seconds_total", "counter",
           "User and system CPU time spent in seconds.",
           p.cpu_user_s + p.cpu_sys_s);
    scalar(o, "process_open_fds", "gauge", "Open file descriptors.",
           (double)p.open_fds);
    scalar(o, "process_start_time_seconds", "gauge",
           "Start time of the process since the Unix epoch in seconds.",
           (double)(obs.start_unix_ms / 1000u));
}

int node_metrics_write(const struct node_report *r, struct buf *b)
{
    CRAFT_ASSERT(r != NULL && b != NULL);
    struct out o = {.b = b, .rv = 0};
    raft(&o, r);
    peers(&o, r);
    commands(&o);
    clients(&o, r);
    process(&o);
    CRAFT_ASSERT(o.rv != 0 || b->len > 0);
    return o.rv;
}
