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

char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0);
    buf = malloc((size_t)n + 1);
    cr_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "%s", path);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}
