# Bad input on real processes, one ctest per group of rows of
# docs/bad-input.md.
if(TARGET craftd)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t resp_every_byte resp_limits peer_port other_cluster slow_reader
          max_clients corrupt_files full_disk)
    add_test(NAME badinput_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/badinput_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    # 77: the machine cannot run it (no tmpfs mount, no file limit).
    set_tests_properties(badinput_${t} PROPERTIES TIMEOUT 120 LABELS system
      SKIP_RETURN_CODE 77
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
  # Fills and replays 64 MiB of log twice: slow under ASan on a busy box.
  set_tests_properties(badinput_full_disk PROPERTIES TIMEOUT 400)
endif()
