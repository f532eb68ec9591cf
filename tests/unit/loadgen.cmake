craft_test(test_loadgen SOURCES test_loadgen.c LIBS craft_loadgen_proto
  TIMEOUT 60)
target_include_directories(test_loadgen PRIVATE
  ${CMAKE_SOURCE_DIR}/tools/loadgen)
