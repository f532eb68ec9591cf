# Storage unit tests and crash-consistency tests, on the in-memory crash VFS.
craft_test(test_storage SOURCES test_storage.c storage_memfs.c
  LIBS craft_storage TIMEOUT 120)
craft_test(test_storage_crash SOURCES test_storage_crash.c storage_memfs.c
  LIBS craft_storage TIMEOUT 300)
