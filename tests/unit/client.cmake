# libcraftclient: the retry policy without a network, then both clients
# against scripted fake RESP servers on loopback (free ports only).
if(TARGET craftclient)
  craft_test(test_client SOURCES test_client.c LIBS craftclient
    Threads::Threads TIMEOUT 120)
endif()
