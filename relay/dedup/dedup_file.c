/* dedup_file.c -- see dedup_file.h for the format and the compaction rule. */
#include "dedup_file.h"

#include "array.h"
#include "bytes.h"
#include "log.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DF_MAGIC "RLDEDUP1"
#define DF_KEY_FILE "key"
#define DF_KEY_SIZE (RL_DEDUP_KEY_LEN + 4)
#define DF_MIN_SEGMENT_RECORDS 1024
#define DF_READ_RECORDS 4096 /* records read per read() at load */

typedef struct df_seg {
    uint64_t num;     /* file name */
    uint64_t records; /* valid records */
    uint32_t tmax;    /* newest record time, 0 when empty */
} df_seg_t;

struct rl_dfile {
    rl_dfile_opts_t o;
    char *dir;
    int dirfd;
    unsigned char key[RL_DEDUP_KEY_LEN];
    int fresh;
    int loaded;
    df_seg_t *segs; /* oldest first; the last is the active one while active_fd >= 0 */
    size_t nsegs, capsegs;
    int active_fd;          /* -1: the next append starts a segment */
    uint32_t active_tfirst; /* time of the active segment's first record */
    uint64_t records;
};

static void seg_path(const rl_dfile_t *f, uint64_t num, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%020llu.dd", f->dir, (unsigned long long)num);
}

static void set_err(char *errstr, size_t errstr_size, const char *what, const char *path)
{
    if (errstr && errstr_size > 0)
        rl_seterr(errstr, errstr_size, "%s %s: %s", what, path, strerror(errno));
}

/* ------------------------------------------------------------------- key -- */

/* Reads the key; 0, or -1 when it is missing or damaged. */
static int key_read(rl_dfile_t *f)
{
    uint8_t b[DF_KEY_SIZE];
    int fd = openat(f->dirfd, DF_KEY_FILE, O_RDONLY | O_CLOEXEC);
    int ok = fd >= 0 && read(fd, b, sizeof(b)) == (ssize_t)sizeof(b) &&
             (uint32_t)crc32(0L, b, RL_DEDUP_KEY_LEN) == get32(b + RL_DEDUP_KEY_LEN);

    if (fd >= 0)
        close(fd);
    if (ok)
        memcpy(f->key, b, RL_DEDUP_KEY_LEN);
    OPENSSL_cleanse(b, sizeof(b));
    return ok ? 0 : -1;
}

/* Makes a new key durable (temporary file, fsync, rename, fsync of the directory), after
 * deleting every segment: they were made with a key that is gone. */
static int key_create(rl_dfile_t *f, char *errstr, size_t errstr_size)
{
    uint8_t b[DF_KEY_SIZE];
    char path[4096];
    DIR *d = NULL;
    struct dirent *de;
    int fd = -1, rc = -1;

    if ((d = fdopendir(dup(f->dirfd)))) {
        while ((de = readdir(d)))
            if (strlen(de->d_name) > 3 && !strcmp(de->d_name + strlen(de->d_name) - 3, ".dd"))
                unlinkat(f->dirfd, de->d_name, 0);
        closedir(d);
    }
    if (RAND_bytes(f->key, RL_DEDUP_KEY_LEN) != 1) {
        rl_seterr(errstr, errstr_size, "cannot get random bytes for the dedup key");
        goto out;
    }
    memcpy(b, f->key, RL_DEDUP_KEY_LEN);
    put32(b + RL_DEDUP_KEY_LEN, (uint32_t)crc32(0L, b, RL_DEDUP_KEY_LEN));
    snprintf(path, sizeof(path), "%s/" DF_KEY_FILE, f->dir);
    /* The key only makes digests unguessable; still, nobody else needs to read it. */
    fd = openat(f->dirfd, DF_KEY_FILE ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, b, sizeof(b)) != 0 || fsync(fd) != 0 ||
        renameat(f->dirfd, DF_KEY_FILE ".tmp", f->dirfd, DF_KEY_FILE) != 0 ||
        fsync(f->dirfd) != 0) {
        set_err(errstr, errstr_size, "cannot write", path);
        goto out;
    }
    f->fresh = 1;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(b, sizeof(b));
    return rc;
}

/* -------------------------------------------------------------- segments -- */

static int seg_push(rl_dfile_t *f, uint64_t num)
{
    df_seg_t *v = rl_array_grow(f->segs, &f->capsegs, f->nsegs + 1, sizeof(*v), 16);

    if (!v)
        return -1;
    f->segs = v;
    f->segs[f->nsegs++] = (df_seg_t){.num = num, .records = 0, .tmax = 0};
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const df_seg_t *x = a, *y = b;
    return x->num < y->num ? -1 : x->num > y->num;
}

static int list_segments(rl_dfile_t *f, char *errstr, size_t errstr_size)
{
    DIR *d = fdopendir(dup(f->dirfd));
    struct dirent *de;
    int rc = -1;

    if (!d) {
        set_err(errstr, errstr_size, "cannot list", f->dir);
        return -1;
    }
    while ((de = readdir(d))) {
        char *end;
        unsigned long long num = strtoull(de->d_name, &end, 10);
        if (end == de->d_name || strcmp(end, ".dd") != 0)
            continue;
        if (seg_push(f, num) != 0) {
            rl_seterr(errstr, errstr_size, "out of memory");
            goto out;
        }
    }
    if (f->nsegs)
        qsort(f->segs, f->nsegs, sizeof(*f->segs), cmp_seg);
    rc = 0;
out:
    closedir(d);
    return rc;
}

/* Decodes one on-disk record; 0, or -1 when its checksum is wrong. */
static int rec_decode(const uint8_t *p, rl_dfile_rec_t *rec)
{
    if ((uint32_t)crc32(0L, p, 20) != get32(p + 20))
        return -1;
    memcpy(rec->dg.k, p, sizeof(rec->dg.k));
    rec->t = get32(p + 16);
    return 0;
}

static void rec_encode(const rl_dfile_rec_t *rec, uint8_t *p)
{
    memcpy(p, rec->dg.k, sizeof(rec->dg.k));
    put32(p + 16, rec->t);
    put32(p + 20, (uint32_t)crc32(0L, p, 20));
}

/* Reads segment s, passing in-window records to fn, and cuts what follows the first bad
 * record. Returns the records passed, or -1 on an I/O error. */
static long seg_load(rl_dfile_t *f, df_seg_t *s, uint64_t now, rl_dfile_load_fn fn, void *arg,
                     char *errstr, size_t errstr_size)
{
    char path[4096];
    uint8_t hdr[RL_DFILE_HDR_SIZE];
    uint8_t *buf = malloc(DF_READ_RECORDS * RL_DFILE_REC_SIZE);
    uint64_t valid = RL_DFILE_HDR_SIZE;
    long passed = 0;
    struct stat st;
    int fd, bad = 0;

    seg_path(f, s->num, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (!buf || fd < 0 || fstat(fd, &st) != 0) {
        set_err(errstr, errstr_size, "cannot read", path);
        passed = -1;
        goto out;
    }
    if (read(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) || memcmp(hdr, DF_MAGIC, 8) != 0) {
        /* Not ours, or cut before its header was complete: nothing in it can be trusted. */
        rl_warn("dedup: %s: no valid header, ignored and deleted", path);
        unlink(path);
        s->records = 0;
        goto out;
    }
    while (!bad) {
        ssize_t k = read(fd, buf, DF_READ_RECORDS * RL_DFILE_REC_SIZE);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            set_err(errstr, errstr_size, "cannot read", path);
            passed = -1;
            goto out;
        }
        if (k == 0)
            break;
        /* A short read may end mid-record; the next read starts at a record boundary
         * again because we seek back to `valid` below. */
        size_t n = (size_t)k / RL_DFILE_REC_SIZE;
        for (size_t i = 0; i < n; i++) {
            rl_dfile_rec_t rec;
            if (rec_decode(buf + i * RL_DFILE_REC_SIZE, &rec) != 0) {
                bad = 1;
                break;
            }
            valid += RL_DFILE_REC_SIZE;
            s->records++;
            if (rec.t > s->tmax)
                s->tmax = rec.t;
            if ((uint64_t)rec.t + f->o.window_s > now) {
                if (fn)
                    fn(arg, &rec);
                passed++;
            }
        }
        if ((size_t)k % RL_DFILE_REC_SIZE && lseek(fd, (off_t)valid, SEEK_SET) < 0)
            break;
        if (n == 0)
            break; /* less than one record left: a torn tail */
    }
    if (valid < (uint64_t)st.st_size) {
        /* A crash mid-write leaves a partial record at the end of the segment that was
         * active; anything else is damage. Only the valid prefix was ever relied on. */
        rl_warn("dedup: %s: dropping %llu bytes of torn or damaged records after offset %llu", path,
                (unsigned long long)((uint64_t)st.st_size - valid), (unsigned long long)valid);
        if (truncate(path, (off_t)valid) != 0) {
            set_err(errstr, errstr_size, "cannot truncate", path);
            passed = -1;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return passed;
}

/* Starts a new segment after the last one; its directory entry is durable before any
 * record in it counts. */
static int seg_start(rl_dfile_t *f, uint32_t tfirst, char *errstr, size_t errstr_size)
{
    uint64_t num = f->nsegs ? f->segs[f->nsegs - 1].num + 1 : 1;
    char path[4096];
    int fd;

    seg_path(f, num, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, (const uint8_t *)DF_MAGIC, RL_DFILE_HDR_SIZE) != 0 ||
        (f->o.fsync && (fdatasync(fd) != 0 || fsync(f->dirfd) != 0)) || seg_push(f, num) != 0) {
        set_err(errstr, errstr_size, "cannot start", path);
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return -1;
    }
    f->active_fd = fd;
    f->active_tfirst = tfirst;
    return 0;
}

static void seg_close_active(rl_dfile_t *f)
{
    if (f->active_fd >= 0)
        close(f->active_fd);
    f->active_fd = -1;
}

/* Drops closed segments, oldest first, while compaction allows (dedup_file.h). */
static void compact(rl_dfile_t *f, uint64_t now)
{
    size_t closed = f->active_fd >= 0 ? f->nsegs - 1 : f->nsegs, drop = 0;

    while (drop < closed) {
        const df_seg_t *s = &f->segs[drop];
        int expired = (uint64_t)s->tmax + f->o.window_s <= now;
        int superseded = f->records - s->records >= f->o.max_entries;
        char path[4096];
        if (!expired && !superseded)
            break;
        seg_path(f, s->num, path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT) {
            rl_warn("dedup: cannot delete %s: %s", path, strerror(errno));
            break;
        }
        f->records -= s->records;
        drop++;
    }
    if (drop) {
        memmove(f->segs, f->segs + drop, (f->nsegs - drop) * sizeof(*f->segs));
        f->nsegs -= drop;
    }
}

/* ------------------------------------------------------------------- API -- */

rl_dfile_t *rl_dfile_open(const rl_dfile_opts_t *o, char *errstr, size_t errstr_size)
{
    rl_dfile_t *f = calloc(1, sizeof(*f));
    int ok = 0;

    if (!f || !(f->dir = strdup(o->dir))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    f->o = *o;
    f->o.dir = f->dir;
    f->active_fd = f->dirfd = -1;
    if (!f->o.segment_records) {
        f->o.segment_records = o->max_entries / 8;
        if (f->o.segment_records < DF_MIN_SEGMENT_RECORDS)
            f->o.segment_records = DF_MIN_SEGMENT_RECORDS;
    }
    if (mkdir(f->dir, 0755) != 0 && errno != EEXIST) {
        set_err(errstr, errstr_size, "cannot create", f->dir);
        goto out;
    }
    if ((f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        set_err(errstr, errstr_size, "cannot open", f->dir);
        goto out;
    }
    if (key_read(f) != 0) {
        if (faccessat(f->dirfd, DF_KEY_FILE, F_OK, 0) == 0)
            rl_warn("dedup: %s/" DF_KEY_FILE " is damaged: starting an empty window file", f->dir);
        if (key_create(f, errstr, errstr_size) != 0)
            goto out;
    }
    if (list_segments(f, errstr, errstr_size) != 0)
        goto out;
    ok = 1;
out:
    if (!ok) {
        rl_dfile_close(f);
        f = NULL;
    }
    return f;
}

void rl_dfile_close(rl_dfile_t *f)
{
    if (!f)
        return;
    seg_close_active(f);
    if (f->dirfd >= 0)
        close(f->dirfd);
    OPENSSL_cleanse(f->key, sizeof(f->key));
    free(f->segs);
    free(f->dir);
    free(f);
}

const unsigned char *rl_dfile_key(const rl_dfile_t *f)
{
    return f->key;
}

int rl_dfile_fresh(const rl_dfile_t *f)
{
    return f->fresh;
}

int rl_dfile_forget_last(rl_dfile_t *f, uint64_t n, char *errstr, size_t errstr_size)
{
    while (n > 0 && f->nsegs > 0) {
        df_seg_t *s = &f->segs[f->nsegs - 1];
        char path[4096];
        struct stat st;
        seg_path(f, s->num, path, sizeof(path));
        if (stat(path, &st) != 0) {
            set_err(errstr, errstr_size, "cannot stat", path);
            return -1;
        }
        uint64_t recs = st.st_size > RL_DFILE_HDR_SIZE
                            ? ((uint64_t)st.st_size - RL_DFILE_HDR_SIZE) / RL_DFILE_REC_SIZE
                            : 0;
        if (recs > n) { /* keep the segment's first recs - n records */
            if (truncate(path, (off_t)(RL_DFILE_HDR_SIZE + (recs - n) * RL_DFILE_REC_SIZE)) != 0) {
                set_err(errstr, errstr_size, "cannot truncate", path);
                return -1;
            }
            break;
        }
        if (unlink(path) != 0) {
            set_err(errstr, errstr_size, "cannot delete", path);
            return -1;
        }
        f->nsegs--;
        n -= recs;
    }
    return 0;
}

long rl_dfile_load(rl_dfile_t *f, uint64_t now, rl_dfile_load_fn fn, void *arg, char *errstr,
                   size_t errstr_size)
{
    long total = 0;

    for (size_t i = 0; i < f->nsegs; i++) {
        long k = seg_load(f, &f->segs[i], now, fn, arg, errstr, errstr_size);
        if (k < 0)
            return -1;
        total += k;
        f->records += f->segs[i].records;
    }
    f->loaded = 1;
    compact(f, now);
    return total;
}

int rl_dfile_append(rl_dfile_t *f, const rl_dfile_rec_t *recs, size_t n, uint64_t now, char *errstr,
                    size_t errstr_size)
{
    uint8_t *buf = NULL;
    off_t before = 0;
    int rc = -1;

    if (!f->loaded && rl_dfile_load(f, now, NULL, NULL, errstr, errstr_size) < 0)
        return -1;
    if (n == 0) {
        compact(f, now);
        return 0;
    }
    /* Roll by size, and by age so that compaction can drop expired ids in steps of about
     * an eighth of the window rather than a whole window at a time. */
    if (f->active_fd >= 0 && (f->segs[f->nsegs - 1].records >= f->o.segment_records ||
                              now >= (uint64_t)f->active_tfirst + f->o.window_s / 8 + 1))
        seg_close_active(f);
    if (f->active_fd < 0 && seg_start(f, recs[0].t, errstr, errstr_size) != 0)
        return -1;
    if (!(buf = malloc(n * RL_DFILE_REC_SIZE))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        rec_encode(&recs[i], buf + i * RL_DFILE_REC_SIZE);
    before = lseek(f->active_fd, 0, SEEK_END);
    if (before < 0 || write_all(f->active_fd, buf, n * RL_DFILE_REC_SIZE) != 0 ||
        (f->o.fsync && fdatasync(f->active_fd) != 0)) {
        char path[4096];
        seg_path(f, f->segs[f->nsegs - 1].num, path, sizeof(path));
        set_err(errstr, errstr_size, "cannot write", path);
        /* Never append after a partial record: load would stop there. */
        if (before >= 0 && ftruncate(f->active_fd, before) != 0)
            rl_warn("dedup: cannot truncate %s after a failed write", path);
        seg_close_active(f);
        goto out;
    }
    df_seg_t *s = &f->segs[f->nsegs - 1];
    for (size_t i = 0; i < n; i++)
        if (recs[i].t > s->tmax)
            s->tmax = recs[i].t;
    s->records += n;
    f->records += n;
    compact(f, now);
    rc = 0;
out:
    free(buf);
    return rc;
}

uint64_t rl_dfile_bytes(const rl_dfile_t *f)
{
    return f ? f->records * RL_DFILE_REC_SIZE + f->nsegs * RL_DFILE_HDR_SIZE : 0;
}

uint64_t rl_dfile_records(const rl_dfile_t *f)
{
    return f ? f->records : 0;
}

size_t rl_dfile_segments(const rl_dfile_t *f)
{
    return f ? f->nsegs : 0;
}
