/* admin.c -- the admin socket (admin.h): a Unix socket, one JSON line in, one
 * JSON line out, peers of another uid refused. */
#include "admin.h"

#include "bytes.h"
#include "clock.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REQUEST (64 * 1024)
#define READ_TIMEOUT_MS 5000
#define POLL_MS 200

struct rl_admin {
    char *path;
    int fd;
    rl_admin_fn fn;
    void *arg;
    pthread_t thread;
    int started;
    atomic_int stop;
};

void rl_admin_default_path(const char *wal_dir, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/admin.sock", wal_dir);
}

static int addr_of(const char *path, struct sockaddr_un *sa, char *errstr, size_t errstr_size)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        rl_seterr(errstr, errstr_size, "%s: a socket path is at most %zu bytes", path,
                  sizeof(sa->sun_path) - 1);
        return -1;
    }
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

/* Reads one line (up to '\n' or EOF) into a malloc'd NUL-terminated buffer
 * (caller frees), waiting at most timeout_ms in all. NULL on timeout, error or
 * a line over max bytes. */
static char *read_line(int fd, int timeout_ms, size_t max)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    int64_t deadline = rl_clock_mono_ms() + timeout_ms;

    while (buf) {
        int64_t left = deadline - rl_clock_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            goto fail;
        if (len + 1 >= cap) {
            char *nb = cap * 2 > max + 1 ? NULL : realloc(buf, cap * 2);
            if (!nb)
                goto fail;
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        char *nl = memchr(buf + len, '\n', (size_t)n);
        len += (size_t)n;
        if (nl || n == 0) {
            if (nl)
                len = (size_t)(nl - buf);
            buf[len] = '\0';
            return buf;
        }
    }
fail:
    free(buf);
    return NULL;
}

static json_t *refusal(const char *error)
{
    return json_pack("{s:b,s:s}", "ok", 0, "error", error);
}

static void serve(rl_admin_t *a, int fd)
{
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    json_t *req = NULL, *ans = NULL;
    char *line = NULL, *out = NULL;
    json_error_t jerr;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 ||
        (cred.uid != geteuid() && cred.uid != 0)) {
        rl_warn("admin: refused a connection from uid %ld", (long)cred.uid);
        ans = refusal("forbidden: connect as the user relay runs as");
    } else if (!(line = read_line(fd, READ_TIMEOUT_MS, MAX_REQUEST))) {
        goto out;
    } else if (!(req = json_loads(line, 0, &jerr)) || !json_is_object(req)) {
        ans = refusal("the request is not a JSON object");
    } else {
        ans = a->fn(a->arg, req);
        if (!ans)
            ans = refusal("out of memory");
    }
    if (ans && (out = json_dumps(ans, JSON_COMPACT))) {
        size_t n = strlen(out);
        out[n] = '\n'; /* json_dumps's NUL becomes the line's end */
        write_all(fd, (const uint8_t *)out, n + 1);
    }
out:
    free(out);
    free(line);
    json_decref(req);
    json_decref(ans);
}

static void *admin_main(void *arg)
{
    rl_admin_t *a = arg;
    while (!atomic_load(&a->stop)) {
        struct pollfd p = {.fd = a->fd, .events = POLLIN};
        if (poll(&p, 1, POLL_MS) <= 0)
            continue;
        int c = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve(a, c);
        close(c);
    }
    return NULL;
}

rl_admin_t *rl_admin_new(const char *path, rl_admin_fn fn, void *arg, char *errstr,
                         size_t errstr_size)
{
    struct sockaddr_un sa;
    rl_admin_t *a = calloc(1, sizeof(*a));

    if (!a || !(a->path = strdup(path))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto fail;
    }
    a->fd = -1;
    a->fn = fn;
    a->arg = arg;
    if (addr_of(path, &sa, errstr, errstr_size) != 0)
        goto fail;
    /* The WAL directory's lock says no other relay serves here: what is left
     * at the path is a dead one's socket. */
    unlink(path);
    if ((a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(a->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, 0600) != 0 ||
        listen(a->fd, 16) != 0) {
        rl_seterr(errstr, errstr_size, "admin socket %s: %s", path, strerror(errno));
        goto fail;
    }
    if (pthread_create(&a->thread, NULL, admin_main, a) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the admin thread");
        goto fail;
    }
    a->started = 1;
    return a;
fail:
    rl_admin_destroy(a);
    return NULL;
}

void rl_admin_destroy(rl_admin_t *a)
{
    if (!a)
        return;
    if (a->started) {
        atomic_store(&a->stop, 1);
        pthread_join(a->thread, NULL);
    }
    if (a->fd >= 0) {
        close(a->fd);
        unlink(a->path);
    }
    free(a->path);
    free(a);
}

int rl_admin_call(const char *path, json_t *req, int timeout_ms, json_t **answer, char *errstr,
                  size_t errstr_size)
{
    struct sockaddr_un sa;
    char *out = NULL, *line = NULL;
    json_error_t jerr;
    int fd = -1, rc = -1;

    *answer = NULL;
    if (addr_of(path, &sa, errstr, errstr_size) != 0)
        goto out;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rl_seterr(errstr, errstr_size, "%s: %s (is relay running on this WAL directory?)", path,
                  strerror(errno));
        goto out;
    }
    if (!(out = json_dumps(req, JSON_COMPACT))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    size_t n = strlen(out);
    out[n] = '\n';
    if (write_all(fd, (const uint8_t *)out, n + 1) != 0) {
        rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!(line = read_line(fd, timeout_ms, 16u * MAX_REQUEST))) {
        rl_seterr(errstr, errstr_size, "%s: no answer within %d ms", path, timeout_ms);
        goto out;
    }
    if (!(*answer = json_loads(line, 0, &jerr))) {
        rl_seterr(errstr, errstr_size, "%s: the answer is not JSON: %s", path, jerr.text);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(out);
    free(line);
    return rc;
}
