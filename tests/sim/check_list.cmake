# Check that `craft-sim --list` prints exactly the scenarios of the
# SIM_SCENARIOS and SIM_KV_SCENARIOS tables (EXPECTED, comma-separated), in
# order, and that there are all 51 of the classic suite: 28 Raft and 23 KV
# (run by ctest as sim_scenario_list).
execute_process(COMMAND ${SIM} --list OUTPUT_VARIABLE listed
  RESULT_VARIABLE rv)
if(NOT rv EQUAL 0)
  message(FATAL_ERROR "craft-sim --list failed: ${rv}")
endif()
string(STRIP "${listed}" listed)
string(REPLACE "\n" "," listed "${listed}")
if(NOT listed STREQUAL EXPECTED)
  message(FATAL_ERROR "craft-sim --list: ${listed}\nexpected: ${EXPECTED}")
endif()
string(REPLACE "," ";" names "${EXPECTED}")
list(LENGTH names n)
if(NOT n EQUAL 51)
  message(FATAL_ERROR "expected 51 scenarios, found ${n}")
endif()
