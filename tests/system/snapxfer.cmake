# An abandoned snapshot transfer is forgotten by the follower (review2 B):
# tests/system/snapxfer_test.py, three real craftd processes.
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  add_test(NAME snapxfer_abandoned_transfer
    COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/snapxfer_test.py
      abandoned_transfer
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(snapxfer_abandoned_transfer PROPERTIES TIMEOUT 120
    LABELS system
    ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endif()
