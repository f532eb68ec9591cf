# Run the same random KV seeds twice and compare the digests of the runs
# (run by ctest as sim_deterministic_kv): client traffic, faults and
# replies must replay event for event.
foreach(i 1 2)
  execute_process(COMMAND ${SIM} --random --kv --seed 4242 --runs 10
    OUTPUT_VARIABLE out${i} RESULT_VARIABLE rv)
  if(NOT rv EQUAL 0)
    message(FATAL_ERROR "craft-sim failed: ${out${i}}")
  endif()
  string(REGEX MATCH "digest [0-9a-f]+" digest${i} "${out${i}}")
endforeach()
if(digest1 STREQUAL "" OR digest1 STREQUAL "digest 0000000000000000"
   OR NOT digest1 STREQUAL digest2)
  message(FATAL_ERROR "two runs of the same seeds differ: '${digest1}' vs '${digest2}'")
endif()
message("${digest1}")
