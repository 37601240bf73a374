/* tmpdir.c -- see tmpdir.h. */
#include "tmpdir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Goes on past an entry it cannot remove: rm -rf removes what it can. */
static int tu_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void tu_tmpdir_make(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "/tmp/relay-test-%s-XXXXXX", name);
    cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

void tu_tmpdir_remove(const char *path)
{
    if (path[0])
        nftw(path, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
