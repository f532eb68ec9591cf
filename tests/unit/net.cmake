# src/net: the pure frame codec and address parsing, then the libuv
# transport over loopback (free ports only, so both run in parallel).
craft_test(test_net_frame SOURCES test_net_frame.c LIBS craft_net TIMEOUT 60)
craft_test(test_net SOURCES test_net.c LIBS craft_net TIMEOUT 120)
# Figures for docs/net.md; sanity floors only, so it cannot flake on a slow
# machine.
craft_test(test_net_perf SOURCES test_net_perf.c LIBS craft_net TIMEOUT 120
  LABELS perf)

# The frame decoder's libFuzzer target is in tests/fuzz.
