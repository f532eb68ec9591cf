# Nemesis tests (docs/nemesis.md): faults on real craftd processes --
# kill -9, SIGSTOP/SIGCONT, iptables partitions -- under a concurrent
# workload whose history craft-lincheck checks.  One ctest per scenario so
# that they run in parallel and fail separately; each bounds itself to
# 80 s (its own alarm, so that cleanup runs) below the ctest TIMEOUT.  A
# partition scenario exits 77 (skipped) where iptables is not allowed.
# craft-lincheck and craft-cli (tools/, configured after tests/) are
# checked by the script itself.
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t kill9_leader kill9_any sigstop_leader sigstop_minority_majority
          partition_leader partition_long partition_majority_minority
          partition_bridge
          partition_oneway five_nodes_mixed)
    add_test(NAME nemesis_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/nemesis.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(nemesis_${t} PROPERTIES TIMEOUT 110 LABELS system
      SKIP_RETURN_CODE 77
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
  # The checks flag planted violations; the firewall chain goes away after
  # SIGTERM, SIGINT, close(), and (at the next start) after SIGKILL.
  add_test(NAME nemesis_selftest
    COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/nemesis.py --selftest
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(nemesis_selftest PROPERTIES TIMEOUT 60 LABELS system
    ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endif()
