# craft-mr unit tests: run files, merge, sort/spill, output, splits and the
# coordinator's state machine (all without processes or network).
craft_test(test_mr SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mr.c
  LIBS craft_mr TIMEOUT 120 LABELS mr)
