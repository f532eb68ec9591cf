# craftd system tests: real craftd processes on 127.0.0.1 driven by
# tests/system/craftd_test.py (one ctest per scenario, so they run in
# parallel and fail separately).
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t cli_errors single_node basic_three crash_restart snapshot_catchup
          minority_leader five_nodes partition linearizable redis_tools)
    add_test(NAME craftd_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/craftd_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(craftd_${t} PROPERTIES TIMEOUT 180 LABELS system
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
