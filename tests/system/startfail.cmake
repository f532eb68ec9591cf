# craftd start-up failures after its ports are bound (startfail_test.py).
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  add_test(NAME startfail_ident_unwritable
    COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/startfail_test.py ident_unwritable
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(startfail_ident_unwritable PROPERTIES TIMEOUT 60
    LABELS system
    ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
endif()
