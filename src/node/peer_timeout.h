/*
 * peer_timeout.h -- TCP_USER_TIMEOUT of craftd's peer links, from the
 * election timeout (review2 F).
 *
 * Linux applies TCP_USER_TIMEOUT to zero-window probes as well: a peer that
 * is alive but whose loop does not read for longer (a large snapshot loaded
 * on the loop, the fork() of a big process, a slow command) gets its link
 * aborted, and everything queued on it is dropped.  A fixed 2 s did that to
 * clusters run with a long election timeout (--election-ms 1000-2000),
 * whose members are expected to stall for about that long.  So the timeout
 * is twice the upper election timeout: a stall Raft itself tolerates never
 * cuts a link.
 *
 * It stays between 2 s (the net layer's default, NET_USER_TIMEOUT_MS_DEFAULT;
 * four default election timeouts) and 6 s: a link through a healed
 * partition stays silent for up to about this long plus the reconnect
 * backoff (2 s), and the nemesis suite requires every member to catch up
 * within 8 s of healing (docs/nemesis.md, partition_long cuts for 13 s).
 */
#ifndef CRAFT_NODE_PEER_TIMEOUT_H
#define CRAFT_NODE_PEER_TIMEOUT_H

#define NODE_PEER_USER_TIMEOUT_MIN_MS 2000u
#define NODE_PEER_USER_TIMEOUT_MAX_MS 6000u

static inline unsigned node_peer_user_timeout_ms(unsigned election_ms_max)
{
    unsigned ms = election_ms_max > NODE_PEER_USER_TIMEOUT_MAX_MS / 2
                      ? NODE_PEER_USER_TIMEOUT_MAX_MS
                      : 2 * election_ms_max;
    return ms < NODE_PEER_USER_TIMEOUT_MIN_MS ? NODE_PEER_USER_TIMEOUT_MIN_MS
                                              : ms;
}

#endif /* CRAFT_NODE_PEER_TIMEOUT_H */
