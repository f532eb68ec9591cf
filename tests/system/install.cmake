# Packaging tests (issue #7): `cmake --install` into a temporary DESTDIR,
# programs built against the staged files through pkg-config, the
# installed craftd serving the installed client; and `cpack -G DEB`.
# Both read the build tree, so they need everything built first (ctest
# runs after `make build`, as `make test` does).
if(TARGET craftd AND TARGET craftclient_shared)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  foreach(t install deb)
    add_test(NAME pkg_${t}
      COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/install_test.py ${t}
      WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(pkg_${t} PROPERTIES TIMEOUT 300 LABELS system
      ENVIRONMENT "CRAFT_BUILD_DIR=${CMAKE_BINARY_DIR};CRAFT_SOURCE_DIR=${CMAKE_SOURCE_DIR};CRAFT_CC=${CMAKE_C_COMPILER};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endif()
