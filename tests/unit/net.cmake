# src/net: the pure frame codec and address parsing, then the libuv
# transport over loopback (free ports only, so both run in parallel).
craft_test(test_net_frame SOURCES test_net_frame.c LIBS craft_net TIMEOUT 60)
craft_test(test_net SOURCES test_net.c LIBS craft_net TIMEOUT 120)
# Figures for docs/net.md; sanity floors only, so it cannot flake on a slow
# machine.
craft_test(test_net_perf SOURCES test_net_perf.c LIBS craft_net TIMEOUT 120
  LABELS perf)

# Fuzzing the frame decoder (clang only, off by default): see the file's
# header for how to run it.
if(CRAFT_FUZZ AND CMAKE_C_COMPILER_ID STREQUAL "Clang")
  # frame.c is compiled in (not linked from craft_net) so that the decoder
  # itself carries the fuzzer's coverage instrumentation.
  add_executable(fuzz_net_frame fuzz_net_frame.c
    ${CMAKE_SOURCE_DIR}/src/net/frame.c)
  craft_target_flags(fuzz_net_frame)
  target_compile_options(fuzz_net_frame PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_net_frame PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_net_frame PRIVATE craft_util)
  set_target_properties(fuzz_net_frame PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
endif()
