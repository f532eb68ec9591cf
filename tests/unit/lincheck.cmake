craft_test(test_lincheck SOURCES test_lincheck.c LIBS craft_lincheck
  TIMEOUT 120)
add_dependencies(test_lincheck craft-lincheck)
