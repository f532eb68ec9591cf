craft_test(test_kv SOURCES test_kv.c LIBS craft_kv TIMEOUT 120)
craft_test(test_kv_snapshot SOURCES test_kv_snapshot.c LIBS craft_kv
  TIMEOUT 120)
# Compares replies with a real redis-server (skipped if it is missing).
craft_test(test_kv_redis SOURCES test_kv_redis.c LIBS craft_kv TIMEOUT 120)
craft_test(test_kv_lincheck SOURCES test_kv_lincheck.c
  LIBS craft_kv craft_lincheck TIMEOUT 120)
