/* dirlock.c -- see dirlock.h. */
#include "dirlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "err.h"

#define LOCK_NAME ".lock"

struct rl_dirlock {
    int fd;
};

/* The pid the holder wrote, or 0 when unreadable. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

rl_dirlock_t *rl_dirlock_take(const char *dir, char *errstr, size_t errstr_size)
{
    char path[4096], pid[32];
    rl_dirlock_t *l = NULL;
    int fd = -1, n;

    if ((size_t)snprintf(path, sizeof(path), "%s/" LOCK_NAME, dir) >= sizeof(path)) {
        rl_seterr(errstr, errstr_size, "%s: path too long", dir);
        goto fail;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            long holder = holder_pid(fd);
            if (holder > 0)
                rl_seterr(errstr, errstr_size,
                          "%s is in use by another relay (pid %ld): one process per directory", dir,
                          holder);
            else
                rl_seterr(errstr, errstr_size,
                          "%s is in use by another relay: one process per directory", dir);
        } else {
            rl_seterr(errstr, errstr_size, "%s: cannot lock: %s", path, strerror(errno));
        }
        goto fail;
    }
    /* The pid is for the message a second process prints; the lock, not the
     * file's content, is what keeps it out. */
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        rl_seterr(errstr, errstr_size, "%s: cannot write: %s", path, strerror(errno));
        goto fail;
    }
    if (!(l = malloc(sizeof(*l)))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto fail;
    }
    l->fd = fd;
    return l;
fail:
    if (fd >= 0)
        close(fd); /* drops the lock if this process took it */
    return NULL;
}

void rl_dirlock_release(rl_dirlock_t *l)
{
    if (!l)
        return;
    close(l->fd);
    free(l);
}
