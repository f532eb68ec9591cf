/*
 * The node's CONFIG parameters (see cfgcmd.h).  Redis's names where Redis
 * has the parameter (loglevel, logfile, dir), craftd's own otherwise.
 * Values are this node's; CONFIG SET changes this node only and is not
 * kept across a restart (the command line is the configuration).
 */
#include "node/cfgcmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "craft/common.h"
#include "util/assert.h"
#include "util/log.h"

static const char *level_name(enum log_level l)
{
    switch (l) {
    case LOG_DEBUG:
        return "debug";
    case LOG_INFO:
        return "info";
    case LOG_WARN:
        return "warn";
    case LOG_ERROR:
        return "error";
    case LOG_OFF:
        return "off";
    }
    return "?";
}

static const char *const names[] = {
    "loglevel",         "logfile",        "dir",
    "data-dir",         "node-id",        "cluster-members",
    "raft-port-offset", "raft-tick-ms",   "election-timeout-ms",
    "heartbeat-ms",     "snapshot-bytes",
};

const char *node__config_get(const struct node_config *cfg, size_t i, char *v,
                             size_t cap)
{
    CRAFT_ASSERT(cfg != NULL && v != NULL);
    switch (i) {
    case 0:
        snprintf(v, cap, "%s", level_name(log_get_level()));
        break;
    case 1:
        snprintf(v, cap, "%s", cfg->log_file);
        break;
    case 2:
    case 3:
        snprintf(v, cap, "%s", cfg->data_dir);
        break;
    case 4:
        snprintf(v, cap, "%llu", (unsigned long long)cfg->id);
        break;
    case 5:
        node_config_members_string(cfg, v, cap);
        break;
    case 6:
        snprintf(v, cap, "%u", cfg->raft_port_offset);
        break;
    case 7:
        snprintf(v, cap, "%u", cfg->tick_ms);
        break;
    case 8:
        snprintf(v, cap, "%u-%u", cfg->election_ms_min, cfg->election_ms_max);
        break;
    case 9:
        snprintf(v, cap, "%u", cfg->heartbeat_ms);
        break;
    case 10:
        snprintf(v, cap, "%llu", (unsigned long long)cfg->snapshot_bytes);
        break;
    default:
        return NULL;
    }
    CRAFT_ASSERT(i < CRAFT_ARRAY_LEN(names));
    return names[i];
}

/* Redis's memory values: digits with an optional k, kb, m, mb, g or gb
 * (1024-based, case-insensitive). */
static int parse_bytes(const char *s, unsigned long long *out)
{
    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K') {
        mul = 1ull << 10;
    } else if (*end == 'm' || *end == 'M') {
        mul = 1ull << 20;
    } else if (*end == 'g' || *end == 'G') {
        mul = 1ull << 30;
    }
    end += mul != 1;
    end += mul != 1 && (*end == 'b' || *end == 'B');
    if (errno != 0 || *end != '\0' || v > UINT64_MAX / mul) {
        return -1;
    }
    *out = v * mul;
    return 0;
}

static int set_loglevel(const char *value, bool apply, char *err, size_t cap)
{
    /* Redis's names, mapped onto craftd's levels, and craftd's own. */
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {
        {"debug", LOG_DEBUG},  {"verbose", LOG_INFO}, {"notice", LOG_INFO},
        {"warning", LOG_WARN}, {"nothing", LOG_OFF},  {"info", LOG_INFO},
        {"warn", LOG_WARN},    {"error", LOG_ERROR},  {"off", LOG_OFF}};
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(levels); i++) {
        if (strcasecmp(value, levels[i].name) == 0) {
            if (apply) {
                log_set_level(levels[i].level);
            }
            return 0;
        }
    }
    snprintf(err, cap,
             "argument(s) must be one of the following: debug, verbose, "
             "notice, warning, nothing, info, warn, error, off");
    return CRAFT_EINVAL;
}

int node__config_set(struct node_config *cfg, const char *name,
                     const char *value, bool apply, char *err, size_t cap)
{
    CRAFT_ASSERT(cfg != NULL && name != NULL && value != NULL);
    if (strcmp(name, "loglevel") == 0) {
        return set_loglevel(value, apply, err, cap);
    }
    if (strcmp(name, "snapshot-bytes") == 0) {
        unsigned long long v;
        if (parse_bytes(value, &v) != 0) {
            snprintf(err, cap, "argument must be a memory value");
            return CRAFT_EINVAL;
        }
        if (v == 0) {
            snprintf(err, cap, "argument must be between 1 and %llu inclusive",
                     (unsigned long long)UINT64_MAX);
            return CRAFT_EINVAL;
        }
        if (apply) {
            cfg->snapshot_bytes = v;
        }
        return 0;
    }
    for (size_t i = 0; i < CRAFT_ARRAY_LEN(names); i++) {
        if (strcmp(names[i], name) == 0) {
            snprintf(err, cap, "can't set immutable config");
            return CRAFT_EINVAL;
        }
    }
    return CRAFT_ENOENT;
}
