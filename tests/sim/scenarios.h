/*
 * tests/sim/scenarios.h -- the classic Raft scenarios (reference §2) and KV
 * service scenarios (§4), one function each, named after the original in
 * snake case.
 */
#ifndef CRAFT_SIM_SCENARIOS_H
#define CRAFT_SIM_SCENARIOS_H

#include <stddef.h>

#include "harness.h"

struct sim_scenario {
    const char *name;
    void (*fn)(struct sim_test *t);
};

extern const struct sim_scenario sim_scenarios[];
extern const size_t sim_n_scenarios;

#define SIM_SCENARIOS(X)                                                       \
    X(initial_election_2a)                                                     \
    X(re_election_2a)                                                          \
    X(many_elections_2a)                                                       \
    X(basic_agree_2b)                                                          \
    X(rpc_bytes_2b)                                                            \
    X(follower_failure_2b)                                                     \
    X(leader_failure_2b)                                                       \
    X(fail_agree_2b)                                                           \
    X(fail_no_agree_2b)                                                        \
    X(concurrent_starts_2b)                                                    \
    X(rejoin_2b)                                                               \
    X(backup_2b)                                                               \
    X(count_2b)                                                                \
    X(persist1_2c)                                                             \
    X(persist2_2c)                                                             \
    X(persist3_2c)                                                             \
    X(figure8_2c)                                                              \
    X(unreliable_agree_2c)                                                     \
    X(figure8_unreliable_2c)                                                   \
    X(reliable_churn_2c)                                                       \
    X(unreliable_churn_2c)                                                     \
    X(snapshot_basic_2d)                                                       \
    X(snapshot_install_2d)                                                     \
    X(snapshot_install_unreliable_2d)                                          \
    X(snapshot_install_crash_2d)                                               \
    X(snapshot_install_uncrash_2d)                                             \
    X(snapshot_all_crash_2d)                                                   \
    X(snapshot_init_2d)

/* The classic KV service scenarios (reference §4), in kv_scenarios.c. */
#define SIM_KV_SCENARIOS(X)                                                    \
    X(basic_3a)                                                                \
    X(speed_3a)                                                                \
    X(concurrent_3a)                                                           \
    X(unreliable_3a)                                                           \
    X(unreliable_one_key_3a)                                                   \
    X(one_partition_3a)                                                        \
    X(many_partitions_one_client_3a)                                           \
    X(many_partitions_many_clients_3a)                                         \
    X(persist_one_client_3a)                                                   \
    X(persist_concurrent_3a)                                                   \
    X(persist_concurrent_unreliable_3a)                                        \
    X(persist_partition_3a)                                                    \
    X(persist_partition_unreliable_3a)                                         \
    X(persist_partition_unreliable_linearizable_3a)                            \
    X(snapshot_rpc_3b)                                                         \
    X(snapshot_size_3b)                                                        \
    X(speed_3b)                                                                \
    X(snapshot_recover_3b)                                                     \
    X(snapshot_recover_many_clients_3b)                                        \
    X(snapshot_unreliable_3b)                                                  \
    X(snapshot_unreliable_recover_3b)                                          \
    X(snapshot_unreliable_recover_concurrent_partition_3b)                     \
    X(snapshot_unreliable_recover_concurrent_partition_linearizable_3b)

#define SIM__DECLARE(name) void sc_##name(struct sim_test *t);
SIM_SCENARIOS(SIM__DECLARE)
SIM_KV_SCENARIOS(SIM__DECLARE)
#undef SIM__DECLARE

#endif /* CRAFT_SIM_SCENARIOS_H */
