# Issue #7 commands of the KV state machine: active expiry with clock
# entries, read-time evaluation, WATCH versions.
craft_test(test_kv_cmds SOURCES test_kv_cmds.c LIBS craft_kv TIMEOUT 60)
# The front end's command helpers: RESP3 conversion, WATCH lists, CONFIG.
craft_test(test_srv_cmds SOURCES test_srv_cmds.c LIBS craft_srv TIMEOUT 60)
