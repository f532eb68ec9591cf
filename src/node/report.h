/*
 * report.h -- what a node tells operators: one snapshot of its state
 * (struct node_report, filled by node.c), written out as Redis INFO
 * sections (info.c) and as Prometheus metrics (metrics.c).
 *
 * The report is a copy: formatting it touches no live node state, so
 * info.c and metrics.c know nothing of struct node, and node.c knows
 * nothing of either output format.  Counters that grow as things happen
 * (commands, fsyncs, elections, snapshots) are in the global `obs`
 * (util/obs.h), read directly.
 */
#ifndef CRAFT_NODE_REPORT_H
#define CRAFT_NODE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/config.h"
#include "util/buf.h"

struct node_report_peer {
    uint64_t id;
    unsigned index; /* in the member list, for obs.peer_bytes_in */
    char addr[NODE_HOST_MAX + 8];      /* client address HOST:PORT */
    char raft_addr[NODE_HOST_MAX + 8]; /* Raft address */
    bool connected;                    /* our link to it is up */
    /* The leader's view (progress); has_progress false elsewhere. */
    bool has_progress;
    uint64_t match, next, lag;
    const char *state;       /* "probe", "replicate", "snapshot" or "-" */
    int64_t last_contact_ms; /* -1 if unknown */
    /* Our link to it. */
    uint64_t connects, connect_fails;
    uint64_t frames_sent, bytes_sent, frames_dropped, bytes_dropped;
    uint64_t bytes_received, frames_received;
};

struct node_report {
    const struct node_config *cfg;
    uint64_t id;
    unsigned n_members;
    const char *role; /* raft_role_name() */
    bool leader;
    uint64_t term, vote, leader_id;
    char leader_addr[NODE_HOST_MAX + 8]; /* "" if no leader is known */
    uint64_t commit, applied, first_index, last_index, durable_index;
    uint64_t snapshot_index, snapshot_term;
    uint64_t log_bytes;     /* entry bytes since the last snapshot */
    uint64_t persist_bytes; /* handed to the store, not yet durable */
    unsigned pending_proposals;
    bool snapshot_in_progress;
    bool receiving_snapshot;
    uint64_t keys, expires;
    unsigned clients, max_clients;
    bool stopping;
    unsigned n_peers;
    struct node_report_peer peers[NODE_MEMBERS_MAX];
};

/* Which INFO sections to write (a bit mask). */
enum {
    INFO_SERVER = 1u << 0,
    INFO_CLIENTS = 1u << 1,
    INFO_MEMORY = 1u << 2,
    INFO_PERSISTENCE = 1u << 3,
    INFO_STATS = 1u << 4,
    INFO_REPLICATION = 1u << 5,
    INFO_RAFT = 1u << 6,
    INFO_KEYSPACE = 1u << 7, /* written after cluster, as Redis orders */
    INFO_CLUSTER = 1u << 8,
    INFO_COMMANDSTATS = 1u << 9,
    INFO_DEFAULT = (1u << 9) - 1, /* all but commandstats, as Redis */
    INFO_ALL = (1u << 10) - 1
};

/* The sections INFO's arguments name (case-insensitive; none means
 * "default"; "all" and "everything" mean every section); names it does
 * not know select nothing, as in Redis. */
unsigned node_info_sections(size_t argc, const uint8_t *const *argv,
                            const size_t *lens);

/* Append the INFO text of the sections in mask to b: "# Name" headers,
 * "field:value" lines, CRLF line ends, a blank line between sections.
 * 0 or CRAFT_ENOMEM. */
int node_info_write(const struct node_report *r, unsigned mask, struct buf *b);

/* Append the Prometheus text exposition (format 0.0.4) of r and obs to b.
 * 0 or CRAFT_ENOMEM. */
int node_metrics_write(const struct node_report *r, struct buf *b);

/* Process figures from /proc/self: resident set and virtual size in bytes,
 * CPU seconds (user + system), open file descriptors.  Zero when
 * unreadable. */
struct node_proc {
    uint64_t rss_bytes, vsize_bytes;
    double cpu_user_s, cpu_sys_s;
    unsigned open_fds;
};
void node_proc_read(struct node_proc *p);

/* Bytes in use by malloc (mallinfo2), for INFO's used_memory.  mallinfo2
 * walks every free chunk under the arena lock: tens of ms on the loop
 * after many deletes.  So it is measured at most once per
 * NODE_HEAP_SAMPLE_MS and the last figure served in between. */
#define NODE_HEAP_SAMPLE_MS 10000u
uint64_t node_heap_bytes(void);

/* node_heap_bytes()'s cache, exposed for its unit test: measure() runs
 * when c holds nothing, or a figure NODE_HEAP_SAMPLE_MS old or older. */
struct node_heap_cache {
    bool valid;
    uint64_t at_ms, bytes;
};
uint64_t node_heap_sample(struct node_heap_cache *c, uint64_t now_ms,
                          uint64_t (*measure)(void));

#endif /* CRAFT_NODE_REPORT_H */
