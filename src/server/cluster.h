/*
 * cluster.h -- the Redis Cluster face of craftd: CRC16 key slots, the
 * CLUSTER command (SLOTS SHARDS NODES INFO MYID KEYSLOT HELP) and the slot
 * of a command turned away with -MOVED.
 *
 * craftd is one replicated shard, not a sharded cluster, but cluster-aware
 * clients (redis-py's RedisCluster, ioredis's Cluster, redis-benchmark
 * --cluster, redis-cli -c) already know how to find "the node that owns a
 * key" and to follow it when it moves.  So craftd presents itself as a
 * Redis cluster of one master: the Raft leader owns all 16384 slots, and
 * the followers are its replicas.  A leader change is, to such a client,
 * a failover, which it handles with the MOVED replies and topology
 * refreshes it already implements.
 *
 * Invariants:
 *  1. Every node answers with the same topology as long as they agree on
 *     the leader: the leader is the only master and owns 0-16383, every
 *     other member is a replica of it.
 *  2. A node that knows no leader right now answers CLUSTER INFO with
 *     cluster_state:fail.  CLUSTER SLOTS, SHARDS and NODES then name the
 *     view's last_leader as the master, as a Redis replica keeps listing
 *     its failed master until a replica is promoted: clients try that
 *     master, fail, and ask again.  (Answering -CLUSTERDOWN during every
 *     election breaks redis-py 4.3, whose topology refresh crashes when
 *     every node refuses CLUSTER SLOTS.)  Without a last_leader (the
 *     backend decides: craftd gives one only for a few election timeouts,
 *     and never itself) they answer -CLUSTERDOWN, so that clients ask
 *     another node.
 *  3. A member's node id is the same on every node and across restarts:
 *     the first 40 hex digits of SHA-256(cluster id, member id).
 *  4. -MOVED carries the slot of the command's first key, computed as
 *     Redis does (CRC16/XMODEM of the key or of its {hash tag}, mod
 *     16384), so that a client updating its slot table for that slot
 *     finds the leader on its retry.
 *
 * Threads: pure functions; srv__cluster_command() runs on the loop thread.
 */
#ifndef CRAFT_SERVER_CLUSTER_H
#define CRAFT_SERVER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Redis Cluster's number of hash slots (CLUSTER_SLOTS in Redis). */
#define SRV_CLUSTER_SLOTS 16384
/* Length of a Redis Cluster node id: 40 hex digits (CLUSTER_NAMELEN). */
#define SRV_CLUSTER_ID_LEN 40
/* Members a view holds; craftd runs clusters of at most 7 (config.h). */
#define SRV_CLUSTER_MEMBERS_MAX 8
/* Longest member host name (NODE_HOST_MAX in config.h). */
#define SRV_CLUSTER_HOST_MAX 64

struct resp_cmd;
struct srv_backend;

/* One member as the CLUSTER replies show it. */
struct srv_cluster_member {
    uint64_t id; /* craftd's member id, hashed into the node id */
    char host[SRV_CLUSTER_HOST_MAX];
    uint16_t port;     /* client (RESP) port */
    uint16_t bus_port; /* Raft port, shown as Redis's cluster bus port */
    bool connected;    /* this node has a link to it (true for itself) */
    uint64_t offset;   /* applied (itself) or replicated (leader's view)
                          log index, 0 when unknown */
};

/* What the backend tells the front end about the cluster, filled on each
 * CLUSTER command (struct srv_backend's cluster callback). */
struct srv_cluster_view {
    uint64_t cluster_id;
    uint64_t term; /* shown as the config epoch */
    unsigned n_members;
    unsigned self;   /* index of this node in members */
    int leader;      /* index of the known leader in members, or -1 */
    int last_leader; /* the leader, or while there is none a recent one
                        to name as the master; -1 for none */
    struct srv_cluster_member members[SRV_CLUSTER_MEMBERS_MAX];
};

/* CRC16/XMODEM (polynomial 0x1021, initial value 0), Redis's crc16(). */
uint16_t srv_cluster_crc16(const void *p, size_t n);

/* The Redis Cluster hash slot of key: CRC16 of the key, or of the part
 * between the first '{' and the next '}' when that part is not empty,
 * modulo 16384. */
unsigned srv_cluster_keyslot(const uint8_t *key, size_t len);

/* The node id of member_id in cluster_id (invariant 3) into out, NUL
 * terminated. */
void srv_cluster_node_id(uint64_t cluster_id, uint64_t member_id,
                         char out[SRV_CLUSTER_ID_LEN + 1]);

/* The slot of the first key of a command (argv[0] is its name; a
 * CRAFT.EXEC envelope is looked through), or 0 for a command without
 * keys. */
unsigned srv_cluster_cmd_slot(size_t argc, const uint8_t *const *argv,
                              const size_t *lens);

/* Answer "CLUSTER ..." (cmd->argv[0] is CLUSTER) into b, asking the
 * backend's cluster callback for the view; without one, Redis's error for
 * an instance with cluster support disabled. */
void srv__cluster_command(const struct srv_backend *backend,
                          const struct resp_cmd *cmd, struct buf *b);

#endif /* CRAFT_SERVER_CLUSTER_H */
