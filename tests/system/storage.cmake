# Storage system test: kill -9 a real writer at random moments, then check
# the directory with craft-cli.
add_test(NAME storage_kill
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/storage_kill.sh ${CMAKE_BINARY_DIR} 8)
set_tests_properties(storage_kill PROPERTIES TIMEOUT 240 LABELS system)
add_test(NAME storage_cli
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/storage_cli.sh ${CMAKE_BINARY_DIR})
set_tests_properties(storage_cli PROPERTIES TIMEOUT 120 LABELS system)
