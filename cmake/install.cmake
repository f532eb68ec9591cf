# Packaging (issue #7): `make install` / `cmake --install build` and
# `cpack -G DEB`.
#
# Installed: the programs craftd, craft-cli, craft-mr and craft-timeline;
# libcraft (the Raft core alone, no I/O) and libcraftclient (the craftd
# client on hiredis + libuv), each as a shared library with a SONAME and as a
# self-contained static archive; the public headers; pkg-config files
# craft.pc and craftclient.pc; man pages; the example MapReduce plugins.
#
# The in-tree static libraries (craft_raft, craftclient, ...) stay what the
# build and the tests link; the packaged libraries below are assembled from
# the same object files, so nothing is compiled twice except error.c
# (craft_strerror/craft_errname, part of every public library's API).
include(GNUInstallDirs)

# Installing never builds: `make install` / `make deb` build first, and
# cpack (which runs the `preinstall` target) must not rebuild binaries
# under the feet of tests running in parallel (tests/system/install.cmake).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CRAFT_SOVERSION 0)

# craft_strerror() and craft_errname() on their own, for the public
# libraries: craft_util holds much more (logging, buffers) that is not API.
add_library(craft_pkg_error OBJECT ${CMAKE_SOURCE_DIR}/src/util/error.c)
craft_target_flags(craft_pkg_error RAFT)

# ---- libcraft: the Raft core --------------------------------------------
add_library(craft_lib_shared SHARED $<TARGET_OBJECTS:craft_raft>
  $<TARGET_OBJECTS:craft_pkg_error>)
set_target_properties(craft_lib_shared PROPERTIES OUTPUT_NAME craft
  VERSION ${PROJECT_VERSION} SOVERSION ${CRAFT_SOVERSION}
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/pkg/lib)
# -z defs: a symbol missing from the objects above is a link error here,
# not a surprise for the first user.  (Not with the sanitizers: clang
# leaves their runtime to the executable.)
if(NOT CRAFT_SANITIZE)
  target_link_options(craft_lib_shared PRIVATE -Wl,-z,defs)
endif()

add_library(craft_lib_static STATIC $<TARGET_OBJECTS:craft_raft>
  $<TARGET_OBJECTS:craft_pkg_error>)
set_target_properties(craft_lib_static PROPERTIES OUTPUT_NAME craft
  ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/pkg/lib)

set(craft_pkg_libs craft_lib_shared craft_lib_static)
set(craft_pkg_pcs craft)

# ---- libcraftclient ------------------------------------------------------
# src/client builds libcraftclient.so (craftclient_shared) itself; give it
# a SONAME.  Its in-tree static archive leaves craft_strerror to
# craft_util, so the packaged archive adds error.c and lives apart
# (build/pkg/lib) to keep the names distinct.
if(TARGET craftclient_shared)
  set_target_properties(craftclient_shared PROPERTIES
    VERSION ${PROJECT_VERSION} SOVERSION ${CRAFT_SOVERSION})
  add_library(craftclient_pkg_static STATIC $<TARGET_OBJECTS:craftclient>
    $<TARGET_OBJECTS:craft_pkg_error>)
  set_target_properties(craftclient_pkg_static PROPERTIES
    OUTPUT_NAME craftclient
    ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/pkg/lib)
  list(APPEND craft_pkg_libs craftclient_shared craftclient_pkg_static)
  list(APPEND craft_pkg_pcs craftclient)
endif()

# With the sanitizers on, the libraries reference the ASan/UBSan runtimes:
# say so in the .pc files, so that a program built against an installed
# test build still links.
set(CRAFT_PC_EXTRA_LIBS "")
if(CRAFT_SANITIZE)
  set(CRAFT_PC_EXTRA_LIBS "-fsanitize=address,undefined")
endif()

# ---- pkg-config files ----------------------------------------------------
# Relocatable: prefix is found from the .pc file's own place, so the same
# files serve `--prefix`, DESTDIR staging and the .deb.
file(RELATIVE_PATH CRAFT_PC_UP
  /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" CRAFT_PC_UP "${CRAFT_PC_UP}")
foreach(pc ${craft_pkg_pcs})
  configure_file(${CMAKE_SOURCE_DIR}/cmake/${pc}.pc.in
    ${CMAKE_BINARY_DIR}/pkg/${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/pkg/${pc}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
endforeach()

# ---- install rules -------------------------------------------------------
install(TARGETS craftd craft-cli craft-mr craft-timeline
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT bin)
install(TARGETS ${craft_pkg_libs}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib
    NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES
  ${CMAKE_SOURCE_DIR}/include/craft/common.h
  ${CMAKE_SOURCE_DIR}/include/craft/raft.h
  ${CMAKE_SOURCE_DIR}/include/craft/client.h
  ${CMAKE_SOURCE_DIR}/include/craft/mr.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/craft COMPONENT dev)
# Man pages, compressed as Debian policy asks (gzip -9n: no name or time
# stamp, so the output is reproducible); man(1) reads them either way.
set(craft_man_gz "")
foreach(page craftd craft-cli craft-mr craft-timeline)
  set(src ${CMAKE_SOURCE_DIR}/man/${page}.1)
  set(gz ${CMAKE_BINARY_DIR}/pkg/man/${page}.1.gz)
  add_custom_command(OUTPUT ${gz}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/pkg/man
    COMMAND gzip -9n -c ${src} > ${gz}
    DEPENDS ${src} VERBATIM)
  list(APPEND craft_man_gz ${gz})
endforeach()
add_custom_target(craft_man ALL DEPENDS ${craft_man_gz})
install(FILES ${craft_man_gz}
  DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT bin)
# The example MapReduce applications, ready for `craft-mr --plugin`.
foreach(p wc indexer grep)
  if(TARGET mr_plugin_${p})
    install(TARGETS mr_plugin_${p}
      LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/craft/mr COMPONENT bin)
  endif()
endforeach()
install(FILES ${CMAKE_SOURCE_DIR}/src/client/example.c
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples RENAME client-example.c
  COMPONENT dev)

# ---- the Debian package ---------------------------------------------------
# `cd build && cpack -G DEB` -> craft_<version>_<arch>.deb with everything
# above (one package: programs, libraries and headers).
set(CPACK_PACKAGE_NAME craft)
set(CPACK_PACKAGE_VENDOR "craft project")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "Raft library, replicated Redis-protocol KV store and MapReduce")
set(CPACK_PACKAGE_DESCRIPTION
  "craftd is a replicated, linearizable key-value store speaking the Redis
protocol, built on libcraft, a deterministic Raft core with no I/O.
craft-cli administers a cluster; craft-mr runs MapReduce jobs from
plugins.  Includes libcraft and libcraftclient (shared and static),
headers and pkg-config files.")
set(CPACK_PACKAGE_CONTACT "craft maintainers <craft@localhost>")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libuv1 (>= 1.44), libhiredis0.14, libc6")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES OFF)
set(CPACK_GENERATOR DEB)
include(CPack)
