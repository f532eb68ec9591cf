# craft-loadgen system tests: against redis-server and a fake misbehaving
# server (loadgen), and against a 3-member etcd started with
# bench/lib/etcd-cluster.sh (loadgen_etcd; skipped when etcd is missing).
add_test(NAME loadgen
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/loadgen_test.sh ${CMAKE_BINARY_DIR}
          ${CMAKE_SOURCE_DIR})
set_tests_properties(loadgen PROPERTIES TIMEOUT 120 LABELS system)

add_test(NAME loadgen_etcd
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/loadgen_etcd_test.sh ${CMAKE_BINARY_DIR}
          ${CMAKE_SOURCE_DIR})
set_tests_properties(loadgen_etcd PROPERTIES TIMEOUT 180 LABELS system
  SKIP_RETURN_CODE 77)
