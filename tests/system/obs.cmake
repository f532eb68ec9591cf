# Observability system tests (tests/system/obs_test.py): INFO sections,
# the Prometheus endpoint, structured logs and craft-timeline, craft-cli
# status.  One ctest per scenario, so they run in parallel.
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t info metrics timeline log_json expires_large status)
    add_test(NAME obs_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/obs_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(obs_${t} PROPERTIES TIMEOUT 90 LABELS system
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
