# craftd's Redis Cluster face (src/server/cluster.c): key slots, node ids,
# the CLUSTER replies.
craft_test(test_cluster SOURCES test_cluster.c LIBS craft_srv TIMEOUT 60)
