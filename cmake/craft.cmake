# Shared compile settings: the warnings of STYLE.md as errors, the sanitizer
# flags of the test build, and helpers to declare libraries and tests.

set(CRAFT_WARNINGS
  -Wall -Wextra -Wpedantic -Werror -Wshadow -Wconversion -Wsign-conversion
  -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wold-style-definition
  -Wcast-align -Wpointer-arith -Wundef -Wvla -Wwrite-strings
  -Wimplicit-fallthrough -Wnull-dereference)

if(CRAFT_SANITIZE)
  add_compile_options(-O1 -g -fno-omit-frame-pointer
    -fsanitize=address,undefined -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
  add_compile_definitions(CRAFT_TEST_BUILD=1)
elseif(CMAKE_BUILD_TYPE STREQUAL "Release" OR
       CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo")
  add_compile_options(-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong)
endif()

# Debug-only checks (CRAFT_DASSERT, raft invariants after every step) are on
# in every build that runs tests; craftd release packaging may turn them off.
option(CRAFT_DEBUG_CHECKS "Compile O(n) debug assertions" ON)
if(CRAFT_DEBUG_CHECKS)
  add_compile_definitions(CRAFT_DEBUG_CHECKS=1)
endif()

# craft_target_flags(target [RAFT]): warnings, visibility, _GNU_SOURCE except
# for the pure Raft core, which must compile as strict C11.
function(craft_target_flags target)
  target_compile_options(${target} PRIVATE ${CRAFT_WARNINGS})
  set_target_properties(${target} PROPERTIES C_VISIBILITY_PRESET hidden
    POSITION_INDEPENDENT_CODE ON)
  if(NOT "RAFT" IN_LIST ARGN)
    target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
  endif()
  target_include_directories(${target} PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
endfunction()

# craft_test(name SOURCES a.c b.c LIBS x y [TIMEOUT s] [LABELS l]):
# a cmocka test binary registered with ctest.  Tests may relax -Wconversion.
function(craft_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  craft_target_flags(${name})
  target_compile_options(${name} PRIVATE -Wno-conversion -Wno-sign-conversion)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS}
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "CRAFT_SOURCE_DIR=${CMAKE_SOURCE_DIR};CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR}")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()

find_package(PkgConfig REQUIRED)
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
find_package(Threads REQUIRED)
