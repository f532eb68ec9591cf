craft_test(test_kv SOURCES test_kv.c LIBS craft_kv TIMEOUT 120)
craft_test(test_kv_snapshot SOURCES test_kv_snapshot.c LIBS craft_kv
  TIMEOUT 120)
