# craftd: a snapshot from the leader parsed as it arrives (src/node/snapload.c).
craft_test(test_snapload SOURCES test_snapload.c LIBS craft_node TIMEOUT 60)
