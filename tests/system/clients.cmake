# Real Redis clients against a 3-node craftd cluster through a kill -9 of
# the leader (tests/system/clients_test.py): redis-cli -c, redis-benchmark,
# a hiredis program, redis-py (Debian's python3-redis, plain and
# RedisCluster) and ioredis's Cluster client (npm), plus the shape of the
# CLUSTER replies.  A test whose client is not installed exits 77 (skipped),
# except under CI=true, where it fails.
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  # clients_hiredis is registered even without hiredis, to skip (or fail
  # under CI=true) with a clear message.
  set(clients_tests cluster_replies redis_cli redis_benchmark python_plain
      python_cluster ioredis hiredis)
  if(HIREDIS_FOUND)
    add_executable(hiredis_client ${CMAKE_CURRENT_SOURCE_DIR}/hiredis_client.c)
    craft_target_flags(hiredis_client)
    target_link_libraries(hiredis_client PRIVATE PkgConfig::HIREDIS)
    set_target_properties(hiredis_client PROPERTIES
      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  endif()
  foreach(t ${clients_tests})
    add_test(NAME clients_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/clients_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(clients_${t} PROPERTIES TIMEOUT 90 LABELS system
      SKIP_RETURN_CODE 77
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
