# Issue #7 commands on real craftd processes (tests/system/cmds_test.py):
# expiry by replicated clock entries, READONLY follower reads, WATCH,
# RESP3, CONFIG and CLIENT.  One ctest per scenario.
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t expiry readonly watch config redis)
    add_test(NAME cmds_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/cmds_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(cmds_${t} PROPERTIES TIMEOUT 60 LABELS system
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
