/* tmpdir.h -- the temporary-directory and file helpers of the unit and system tests
 * (tests/common/tmpdir.c, in $(BUILD)/libtests.a, which every test binary links).
 *
 * A test suite makes a fresh directory in its .init and removes it in its .fini:
 *
 *     static char tmpdir[64];
 *     static void setup(void) { tu_tmpdir_make(tmpdir, sizeof tmpdir, "wal"); }
 *     static void teardown(void) { tu_tmpdir_remove(tmpdir); }
 *
 * The directory belongs to the test: nothing else removes it. */
#ifndef RELAY_TEST_TMPDIR_H
#define RELAY_TEST_TMPDIR_H

#include <stddef.h>

/* Makes a new, empty /tmp/relay-test-<name>-XXXXXX (mkdtemp) and writes its path into
 * buf (at least 64 bytes for a short name). Fails the test when it cannot. */
void tu_tmpdir_make(char *buf, size_t size, const char *name);

/* rm -rf path: removes a directory tree (or a file), as much of it as it can, not
 * following symbolic links. Does nothing for "" (a tu_tmpdir_make that never ran). */
void tu_tmpdir_remove(const char *path);

/* The whole file at `path`, malloc'd (the caller frees it) and NUL-terminated,
 * its length in *len. Fails the test when it cannot be read. */
char *tu_slurp(const char *path, size_t *len);

#endif
