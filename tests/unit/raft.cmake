# Unit tests of the Raft core: scenarios on an in-process cluster, and the
# wire codec.
craft_test(test_raft SOURCES test_raft.c test_raft_harness.c
  LIBS craft_raft craft_util TIMEOUT 120)
craft_test(test_raft_codec SOURCES test_raft_codec.c
  LIBS craft_raft craft_util TIMEOUT 60)
