# craftd: TCP_USER_TIMEOUT of the peer links from the election timeout.
craft_test(test_peer_timeout SOURCES test_peer_timeout.c LIBS craft_nodecfg
  TIMEOUT 30)
