# Security system tests (docs/craftd-running.md, "Security").
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t auth cluster_secret file_modes bind)
    add_test(NAME security_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/security_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(security_${t} PROPERTIES TIMEOUT 90 LABELS system
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
