/*
 * memfs -- an in-memory struct store_vfs that knows what is durable, for
 * crash-consistency tests (in the spirit of SQLite's test6.c crash VFS).
 *
 * Every file has its current contents and its durable contents; fsync and
 * fdatasync make the current contents durable.  The directory likewise has
 * current and durable entries; fsync_dir makes the current ones durable.
 * Mutating operations (write, truncate, preallocate, create, rename,
 * unlink) are numbered from 1.  A test can:
 *   - take a crash image "before operation n" (memfs_capture_at): the state
 *     a crash at that instant leaves, in one of the modes below;
 *   - make operation n fail with an errno (memfs_fail_at);
 *   - flip a bit in a file.
 * Crash modes: MEMFS_LOSE drops every unsynced change; MEMFS_TEAR keeps the
 * unsynced changes except the last write, of which only the first
 * tear_bytes bytes survive; MEMFS_SECTORS keeps a pseudo-random subset of
 * the 512-byte sectors of the last write (later sectors may survive while
 * earlier ones do not); MEMFS_DIRNOW drops unsynced file data but keeps
 * every directory change, as a file system does whose journal committed
 * the directory before the data was synced.
 */
#ifndef CRAFT_TEST_MEMFS_H
#define CRAFT_TEST_MEMFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/vfs.h"

struct memfs;

enum memfs_crash { MEMFS_LOSE = 1, MEMFS_TEAR, MEMFS_SECTORS, MEMFS_DIRNOW };

struct memfs *memfs_new(void);
void memfs_free(struct memfs *fs);
struct store_vfs *memfs_vfs(struct memfs *fs);

/* Mutating operations so far. */
uint64_t memfs_ops(struct memfs *fs);
/* Length of the last write before the current point. */
size_t memfs_last_write_len(struct memfs *fs);

/* Replace the whole state with the crash image of fs right now (all open
 * descriptors become invalid). */
void memfs_crash(struct memfs *fs, enum memfs_crash mode, size_t tear_bytes,
                 uint64_t seed);

/* A copy of fs (files, directory, durable state; no descriptors). */
struct memfs *memfs_clone(struct memfs *fs);

/* Make mutating operation number n (>= 1) fail with -err (once). */
void memfs_fail_at(struct memfs *fs, uint64_t n, int err);
/* Capture a clone of the state just before mutating operation n. */
void memfs_capture_at(struct memfs *fs, uint64_t n);
/* The clone captured (NULL if op n was never reached); caller frees. */
struct memfs *memfs_take_capture(struct memfs *fs);

/* Flip bit `bit` of byte off of the named file (current and durable).
 * false if the file does not exist or is too short. */
bool memfs_flip(struct memfs *fs, const char *name, uint64_t off, int bit);
/* Size of a file (current), or -1. */
int64_t memfs_size(struct memfs *fs, const char *name);
/* Names of the files in the directory, sorted, each at most 63 bytes. */
size_t memfs_list(struct memfs *fs, char (*names)[64], size_t max);

#endif
