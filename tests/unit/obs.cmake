# Observability: structured log lines, counters and histograms, INFO and
# Prometheus writers of a node report.
craft_test(test_obs SOURCES test_obs.c LIBS craft_node TIMEOUT 60)
