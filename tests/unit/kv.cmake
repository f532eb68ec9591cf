craft_test(test_kv SOURCES test_kv.c LIBS craft_kv TIMEOUT 120)
