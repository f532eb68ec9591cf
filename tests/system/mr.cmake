# craft-mr system tests (tests/system/mr_test.sh): the checks of the classic
# test-mr.sh plus worker kills, bad plugins and bad command lines, each a
# separate ctest case so they run in parallel.
set(mr_cases wc indexer map_parallelism reduce_parallelism job_count
  early_exit crash kill_mid_map kill_mid_reduce kill_before_fetch bad_abi
  no_symbol segv toobig fail refused usage grep stopped_worker
  bounded_memory corrupt_map_output junk_frames)
foreach(c ${mr_cases})
  add_test(NAME mr/${c} COMMAND ${CMAKE_CURRENT_LIST_DIR}/mr_test.sh ${c})
  set_tests_properties(mr/${c} PROPERTIES TIMEOUT 150 LABELS "mr;system"
    ENVIRONMENT "CRAFT_SOURCE_DIR=${CMAKE_SOURCE_DIR};CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()
