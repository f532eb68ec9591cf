# Check that `craft-sim --list` prints exactly the scenarios of the
# SIM_SCENARIOS table (EXPECTED, comma-separated), in order, and that there
# are all 28 of the classic suite (run by ctest as sim_scenario_list).
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
if(NOT n EQUAL 28)
  message(FATAL_ERROR "expected 28 scenarios, found ${n}")
endif()
