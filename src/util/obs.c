#include "util/obs.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "util/assert.h"

struct obs obs;

/* Where each name's slot is found: open addressing over a table twice
 * the size of obs.cmds, by FNV-1a of the lower-cased name; entries are
 * slot index + 1, 0 empty.  A command is counted on every reply, so the
 * lookup is one hash and usually one compare, not a scan. */
#define OBS_CMD_HASH (2 * OBS_CMDS_MAX)
static uint8_t cmd_hash[OBS_CMD_HASH];
static bool (*cmd_known)(const char *name, size_t len);
_Static_assert(OBS_CMDS_MAX < 255, "slot indices fit in uint8_t");

const double obs_bucket_bounds[OBS_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

const char *const obs_result_names[OBS_RESULTS] = {
    "ok", "error", "moved", "clusterdown", "uncertain", "shutdown"};

const char *const obs_class_names[OBS_CLASSES] = {"local", "read", "write"};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t obs_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void obs_init(void)
{
    memset(&obs, 0, sizeof obs);
    memset(cmd_hash, 0, sizeof cmd_hash);
    obs.start_ns = mono_ns();
    obs.start_unix_ms = obs_unix_ms();
}

void obs_reset_stats(void)
{
    obs.connections_received = 0;
    obs.connections_rejected = 0;
    obs.commands = 0;
    obs.keyspace_hits = 0;
    obs.keyspace_misses = 0;
    /* Names stay (cmd_hash indexes them); only their counts go. */
    for (unsigned i = 0; i < obs.n_cmds; i++) {
        memset(obs.cmds[i].calls, 0, sizeof obs.cmds[i].calls);
    }
    memset(obs.cmd_latency, 0, sizeof obs.cmd_latency);
    memset(&obs.fsync, 0, sizeof obs.fsync);
    obs.fsync_stalls = 0;
    obs.sample_next = 0;
    obs.n_samples = 0;
    obs.sample_last_ms = 0;
}

void obs_command_filter(bool (*known)(const char *name, size_t len))
{
    cmd_known = known;
}

void obs_hist_observe(struct obs_hist *h, double seconds)
{
    CRAFT_ASSERT(h != NULL);
    if (seconds < 0) {
        seconds = 0;
    }
    unsigned i = 0;
    while (i < OBS_BUCKETS && seconds > obs_bucket_bounds[i]) {
        i++;
    }
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
    h->last = seconds;
    if (seconds > h->max) {
        h->max = seconds;
    }
    CRAFT_ASSERT(h->counts[i] <= h->count);
}

double obs_hist_quantile(const struct obs_hist *h, double q)
{
    CRAFT_ASSERT(q > 0 && q <= 1);
    if (h->count == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
    uint64_t seen = 0;
    for (unsigned i = 0; i < OBS_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            /* The bucket's bound, but never more than the largest value
             * seen (a bucket bound far above every sample misleads). */
            return obs_bucket_bounds[i] < h->max ? obs_bucket_bounds[i]
                                                 : h->max;
        }
    }
    return h->max;
}

enum obs_result obs_result_of(const char *reply, size_t len)
{
    if (len == 0 || reply[0] != '-') {
        return OBS_OK;
    }
    static const struct {
        const char *prefix;
        enum obs_result r;
    } kinds[] = {{"-MOVED ", OBS_MOVED},
                 {"-CLUSTERDOWN ", OBS_CLUSTERDOWN},
                 {"-UNCERTAIN ", OBS_UNCERTAIN},
                 {"-SHUTDOWN ", OBS_SHUTDOWN}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (len >= n && memcmp(reply, kinds[i].prefix, n) == 0) {
            return kinds[i].r;
        }
    }
    return OBS_ERR;
}

static struct obs_cmd *cmd_find_or_add(const char *low, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)low[i]) * 16777619u;
    }
    for (unsigned probe = 0; probe < OBS_CMD_HASH; probe++) {
        unsigned at = (h + probe) % OBS_CMD_HASH;
        if (cmd_hash[at] == 0) {
            bool ours =
                strcmp(low, "unknown") == 0 || strcmp(low, "other") == 0;
            if (!ours && cmd_known != NULL && !cmd_known(low, len)) {
                /* Only names of the command table get a label: a client
                 * (unauthenticated, too) cannot choose them. */
                return cmd_find_or_add("unknown", 7);
            }
            if (obs.n_cmds + 1 >= OBS_CMDS_MAX && strcmp(low, "other") != 0) {
                return cmd_find_or_add("other", 5);
            }
            struct obs_cmd *c = &obs.cmds[obs.n_cmds++];
            memcpy(c->name, low, len + 1);
            cmd_hash[at] = (uint8_t)obs.n_cmds;
            return c;
        }
        struct obs_cmd *c = &obs.cmds[cmd_hash[at] - 1];
        if (strcmp(c->name, low) == 0) {
            return c;
        }
    }
    CRAFT_UNREACHABLE(); /* never more than half full */
    return NULL;
}

/* The table slot for a command name: lower-cased, found or added; the
 * "other" slot when the name is odd or the table is full (invariant 3). */
static struct obs_cmd *cmd_slot(const uint8_t *name, size_t len)
{
    char low[OBS_CMD_NAME_MAX + 1];
    bool ok = len > 0 && len <= OBS_CMD_NAME_MAX;
    for (size_t i = 0; ok && i < len; i++) {
        char ch = (char)name[i];
        if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
        }
        ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '_' || ch == '-';
        low[i] = ch;
    }
    if (!ok) {
        return cmd_find_or_add("other", 5);
    }
    low[len] = '\0';
    return cmd_find_or_add(low, len);
}

void obs_command(const uint8_t *name, size_t len, enum obs_class cls,
                 enum obs_result result, const char *reply, size_t reply_len,
                 uint64_t ns)
{
    CRAFT_ASSERT(cls < OBS_CLASSES);
    CRAFT_ASSERT(result < OBS_RESULTS);
    static const char unknown[] = "-ERR unknown command";
    if (result == OBS_ERR && reply_len >= sizeof unknown - 1 &&
        memcmp(reply, unknown, sizeof unknown - 1) == 0) {
        name = (const uint8_t *)"unknown";
        len = 7;
    }
    obs.commands++;
    cmd_slot(name, len)->calls[result]++;
    if (cls != OBS_LOCAL) { /* local commands are not timed (obs.h) */
        obs_hist_observe(&obs.cmd_latency[cls], (double)ns / 1e9);
    }
    if (result == OBS_OK && len == 3 && (name[0] | 0x20) == 'g' &&
        (name[1] | 0x20) == 'e' && (name[2] | 0x20) == 't') {
        /* A null: "$-1" in RESP2, "_" in RESP3. */
        bool miss = (reply_len >= 3 && memcmp(reply, "$-1", 3) == 0) ||
                    (reply_len >= 1 && reply[0] == '_');
        if (miss) {
            obs.keyspace_misses++;
        } else {
            obs.keyspace_hits++;
        }
    }
}

void obs_fsync(uint64_t ns)
{
    obs_hist_observe(&obs.fsync, (double)ns / 1e9);
    if (ns / 1000000u >= OBS_FSYNC_STALL_MS) {
        obs.fsync_stalls++;
    }
}

void obs_tick(uint64_t now_ms)
{
    if (obs.n_samples > 0 && now_ms < obs.sample_last_ms + OBS_SAMPLE_MS) {
        return;
    }
    obs.sample_last_ms = now_ms;
    obs.sample_ms[obs.sample_next] = now_ms;
    obs.sample_cmds[obs.sample_next] = obs.commands;
    obs.sample_next = (obs.sample_next + 1) % OBS_SAMPLES;
    if (obs.n_samples < OBS_SAMPLES) {
        obs.n_samples++;
    }
}

double obs_ops_per_sec(void)
{
    if (obs.n_samples < 2) {
        return 0;
    }
    unsigned newest = (obs.sample_next + OBS_SAMPLES - 1) % OBS_SAMPLES;
    unsigned oldest =
        obs.n_samples < OBS_SAMPLES ? 0 : obs.sample_next % OBS_SAMPLES;
    uint64_t dt = obs.sample_ms[newest] - obs.sample_ms[oldest];
    if (dt == 0) {
        return 0;
    }
    return (double)(obs.sample_cmds[newest] - obs.sample_cmds[oldest]) *
           1000.0 / (double)dt;
}
