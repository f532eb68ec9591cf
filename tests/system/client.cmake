# Client library and craft-cli system tests: a real 3-node craftd cluster
# on loopback (tests/system/craftd_harness.py), a leader killed with -9
# under a stream of exactly-once appends, and the CLI's commands.
if(TARGET craftd AND TARGET craftclient)
  add_executable(client_driver ${CMAKE_CURRENT_SOURCE_DIR}/client_driver.c)
  craft_target_flags(client_driver)
  target_link_libraries(client_driver PRIVATE craftclient)
  set_target_properties(client_driver PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t example redirect failover_sync failover_async no_quorum cli
          snapshot)
    add_test(NAME client_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/client_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(client_${t} PROPERTIES TIMEOUT 120 LABELS system
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
