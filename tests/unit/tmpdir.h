/* tmpdir.h -- a fresh directory per unit test (mkdtemp under /tmp), removed afterwards.
 * Header-only: include it from one test file per binary. */
#ifndef RELAY_UNIT_TMPDIR_H
#define RELAY_UNIT_TMPDIR_H

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int tu_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Makes /tmp/relay-test-<name>-XXXXXX into buf (at least 64 bytes). */
static __attribute__((unused)) void tu_tmpdir_make(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "/tmp/relay-test-%s-XXXXXX", name);
    cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

/* rm -rf of a directory made by tu_tmpdir_make (nothing when it is empty). */
static __attribute__((unused)) void tu_tmpdir_remove(const char *dir)
{
    if (dir[0])
        nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
