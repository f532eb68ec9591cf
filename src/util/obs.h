/*
 * obs.h -- process-wide counters and histograms for observability (INFO,
 * the Prometheus endpoint): what the layers count as things happen.
 *
 * One struct, `obs`, holds every counter.  The layers increment it at the
 * places where the counted thing happens (a connection accepted, a command
 * answered, a group-commit fdatasync finished, a snapshot stored); INFO
 * and /metrics only read it.  A global rather than a handle passed down:
 * the hooks must stay one line long in files many people edit, and a
 * process runs one node.
 *
 * Invariants:
 *  1. Everything here is touched on the loop thread only.  The storage
 *     layer times its fdatasync on a worker thread and hands the duration
 *     to obs_fsync() from its after-work callback, on the loop.
 *  2. Counters only grow (Prometheus counters); histograms are cumulative
 *     from process start.
 *  3. The command label set is bounded: obs_command() records at most
 *     OBS_CMDS_MAX distinct names; an unknown command is counted as
 *     "unknown", names beyond the table as "other".  With a filter
 *     (obs_command_filter) only names it knows get a label of their own:
 *     whatever else a client sends, refused before or after the command
 *     look-up (-NOAUTH), is counted as "unknown".
 */
#ifndef CRAFT_UTIL_OBS_H
#define CRAFT_UTIL_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Buckets of every latency histogram, in seconds: 100 us to 10 s, about
 * three per decade (Prometheus's default buckets start at 5 ms, too
 * coarse for a loopback write or an fdatasync on an SSD). */
#define OBS_BUCKETS 16
extern const double obs_bucket_bounds[OBS_BUCKETS];

struct obs_hist {
    uint64_t counts[OBS_BUCKETS + 1]; /* the last is +Inf */
    uint64_t count;
    double sum;  /* seconds */
    double max;  /* seconds, since start */
    double last; /* seconds, the latest observation */
};

void obs_hist_observe(struct obs_hist *h, double seconds);
/* The upper bound of the bucket holding quantile q (0 < q <= 1), in
 * seconds; 0 if the histogram is empty, max if q falls in +Inf. */
double obs_hist_quantile(const struct obs_hist *h, double q);

/* How a command ended, the `result` label. */
enum obs_result {
    OBS_OK = 0,      /* a reply that is not an error */
    OBS_ERR,         /* an error reply (-ERR, -WRONGTYPE, ...) */
    OBS_MOVED,       /* -MOVED: not the leader */
    OBS_CLUSTERDOWN, /* -CLUSTERDOWN: no leader known */
    OBS_UNCERTAIN,   /* -UNCERTAIN: leadership lost after proposing */
    OBS_SHUTDOWN,    /* -SHUTDOWN */
    OBS_RESULTS
};
extern const char *const obs_result_names[OBS_RESULTS];

/* The `class` label of the latency histogram (local: not timed). */
enum obs_class { OBS_LOCAL = 0, OBS_READ, OBS_WRITE, OBS_CLASSES };
extern const char *const obs_class_names[OBS_CLASSES];

/* Distinct command names counted; craftd knows fewer than 80 commands. */
#define OBS_CMDS_MAX 128
#define OBS_CMD_NAME_MAX 24
/* Members per cluster whose traffic is counted (NODE_MEMBERS_MAX). */
#define OBS_PEERS_MAX 8
/* A group-commit fdatasync longer than this is logged as a stall: half
 * the default minimum election timeout, so an operator sees the disk
 * before it starts costing elections. */
#define OBS_FSYNC_STALL_MS 125

/* instantaneous_ops_per_sec as Redis computes it: 16 samples, 100 ms
 * apart. */
#define OBS_SAMPLES 16
#define OBS_SAMPLE_MS 100

struct obs_cmd {
    char name[OBS_CMD_NAME_MAX + 1];
    uint64_t calls[OBS_RESULTS];
};

struct obs {
    uint64_t start_ns; /* uv_hrtime() at obs_init() */
    uint64_t start_unix_ms;

    /* Clients (src/server). */
    uint64_t connections_received;
    uint64_t connections_rejected; /* --max-clients reached */
    uint64_t commands;             /* every command answered */
    uint64_t keyspace_hits;        /* GET that found its key */
    uint64_t keyspace_misses;      /* GET that did not */
    struct obs_cmd cmds[OBS_CMDS_MAX];
    unsigned n_cmds;
    struct obs_hist cmd_latency[OBS_CLASSES];

    /* Storage. */
    struct obs_hist fsync; /* each group-commit fdatasync of the log */
    uint64_t fsync_stalls; /* longer than OBS_FSYNC_STALL_MS */

    /* Raft (src/node). */
    uint64_t elections;           /* times this node became (pre-)candidate */
    uint64_t leader_changes;      /* times the known leader changed to a node */
    uint64_t snapshots;           /* local snapshots stored */
    uint64_t snapshots_failed;    /* abandoned: failed, or replaced by
                                     the leader's, or the node stopped */
    bool snapshot_last_abandoned; /* the latest attempt did not finish */
    uint64_t snapshots_installed; /* received from a leader */
    struct obs_hist snapshot;     /* fork to durable, per local snapshot */
    uint64_t snapshot_last_unix_ms;
    uint64_t snapshot_last_index;
    uint64_t snapshot_last_bytes;
    uint64_t peer_bytes_in[OBS_PEERS_MAX]; /* by member index */
    uint64_t peer_frames_in[OBS_PEERS_MAX];

    /* instantaneous_ops_per_sec: commands sampled every
     * OBS_SAMPLE_MS over the last OBS_SAMPLES samples, as Redis. */
    uint64_t sample_ms[OBS_SAMPLES];
    uint64_t sample_cmds[OBS_SAMPLES];
    unsigned sample_next, n_samples;
    uint64_t sample_last_ms;
};

extern struct obs obs;

/* Reset everything and note the start time.  Call once at start-up. */
void obs_init(void);

/* A command answered: name (argv[0], any case), the class it ran in, how
 * it ended, and how long it took from arrival to reply (ns, ignored for
 * OBS_LOCAL: those are answered at once, and a clock read costs as much
 * as the command).  An error reply
 * starting "ERR unknown command" is counted under the name "unknown". */
void obs_command(const uint8_t *name, size_t len, enum obs_class cls,
                 enum obs_result result, const char *reply, size_t reply_len,
                 uint64_t ns);

/* CONFIG RESETSTAT: zero the client and command statistics (connections,
 * commands by name and result, keyspace hits and misses, command and fsync
 * latencies, the ops/s samples), as Redis resets its INFO stats.  Raft and
 * snapshot counters are kept.  Prometheus sees a counter reset, which
 * rate() and increase() handle as after a restart. */
void obs_reset_stats(void);

/* Names for which known(lower-cased name, len) is false are counted as
 * "unknown" (invariant 3).  srv_start() sets its command table's; NULL
 * (the default) lets every well-formed name in.  obs_init() keeps it. */
void obs_command_filter(bool (*known)(const char *name, size_t len));

/* The result label a reply stands for (its first bytes). */
enum obs_result obs_result_of(const char *reply, size_t len);

/* One group-commit fdatasync took ns nanoseconds. */
void obs_fsync(uint64_t ns);

/* Called every tick: takes an ops/s sample every OBS_SAMPLE_MS. */
void obs_tick(uint64_t now_ms);
/* Commands per second over the recent samples (Redis's
 * instantaneous_ops_per_sec). */
double obs_ops_per_sec(void);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t obs_unix_ms(void);

#endif /* CRAFT_UTIL_OBS_H */
