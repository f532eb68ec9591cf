# craftd: command line, data-dir identity, RESP front end.
craft_test(test_node_config SOURCES test_node_config.c LIBS craft_nodecfg
  TIMEOUT 60)
craft_test(test_srv SOURCES test_srv.c LIBS craft_srv Threads::Threads
  TIMEOUT 60)
