/* wal_recover.c -- recovery at open: every segment is read record by record
 * and checked (length, sequence, CRC); a torn or damaged tail is cut off and
 * counted, the zeroed end of a preallocated segment is kept. */
#include "wal_int.h"

#include "array.h"
#include "bytes.h"
#include "err.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_CHUNK (4u << 20) /* recovery reads segments this much at a time */

/* Reads a segment record by record, indexing them into seg. *valid is the
 * length of its longest valid prefix, *last_seq the last record's seq there (0
 * if none). The file is read in large chunks, not a header and a payload per
 * record: recovery of a WAL holding a million events is then bound by the CRCs,
 * not by two million system calls. */
static int scan_segment(const char *path, segment_t *seg, uint64_t *valid, uint64_t *last_seq,
                        uint64_t *file_size)
{
    int rc = -1, fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = SCAN_CHUNK, have = 0, at = 0; /* buf[at..have) is file[pos..) */
    uint8_t *buf = malloc(cap);
    uint64_t pos = 0, prev = 0;
    struct stat st;

    *valid = *last_seq = 0;
    if (fd < 0 || !buf || fstat(fd, &st) != 0)
        goto out;
    *file_size = (uint64_t)st.st_size;
    while (pos + HDR <= *file_size) {
        if (have - at < HDR || have - at < HDR + (size_t)get32(buf + at)) {
            /* Not all of the next record is in the buffer: move what is to the
             * front and read on (growing the buffer for a record larger than it). */
            size_t need = HDR;
            if (have - at >= HDR) {
                uint32_t len = get32(buf + at);
                if (len > MAX_REC)
                    break;
                need = HDR + len;
            }
            memmove(buf, buf + at, have - at);
            have -= at;
            at = 0;
            uint8_t *nb = rl_array_grow(buf, &cap, need, 1, 0);
            if (!nb)
                goto out;
            buf = nb;
            ssize_t k = 0;
            while (have < need && (k = pread(fd, buf + have, cap - have, (off_t)(pos + have))) > 0)
                have += (size_t)k;
            if (k < 0)
                goto out;
            if (have < need)
                break; /* the file ends inside this record */
        }
        const uint8_t *hdr = buf + at;
        uint32_t len = get32(hdr);
        uint64_t seq = get64(hdr + 8);
        if (len > MAX_REC || pos + HDR + len > *file_size || seq <= prev)
            break;
        if (rl_wal_int_rec_crc(hdr + 8, hdr + HDR, len) != get32(hdr + 4))
            break;
        if (rl_wal_int_seg_note(seg, seq, pos) != 0)
            goto out;
        prev = seq;
        pos += HDR + len;
        at += HDR + len;
    }
    *valid = pos;
    *last_seq = prev;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

static int cmp_seg(const void *a, const void *b)
{
    const segment_t *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* 1 when path's bytes [from, to) are all zero: the unused end of a
 * preallocated segment (wal.preallocate), which is not damage. */
static int zero_tail(const char *path, uint64_t from, uint64_t to)
{
    const size_t chunk = 64 * 1024;
    uint8_t *buf = malloc(chunk);
    int fd = open(path, O_RDONLY | O_CLOEXEC), zero = buf && fd >= 0;

    while (zero && from < to) {
        size_t n = to - from < chunk ? (size_t)(to - from) : chunk;
        ssize_t k = pread(fd, buf, n, (off_t)from);
        zero = k > 0 && memcmp(buf, rl_wal_int_zeros, (size_t)k) == 0;
        from += k > 0 ? (uint64_t)k : 0;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return zero;
}

int rl_wal_int_load_segments(rl_wal_t *w, uint64_t *last_seq, char *errstr, size_t errstr_size)
{
    DIR *d = opendir(w->dir);
    struct dirent *de;
    int rc = -1;

    *last_seq = 0;
    if (!d) {
        rl_seterr(errstr, errstr_size, "%s: %s", w->dir, strerror(errno));
        goto out;
    }
    while ((de = readdir(d))) {
        char *end;
        unsigned long long first = strtoull(de->d_name, &end, 10);
        if (end == de->d_name || strcmp(end, ".wal") != 0)
            continue;
        if (rl_wal_int_seg_push(w, first, 0) != 0)
            goto out;
    }
    if (w->nsegs) /* segs is NULL in an empty directory: qsort(NULL, 0) is undefined */
        qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seg);
    for (size_t i = 0; i < w->nsegs; i++) {
        char path[4096];
        uint64_t valid, last, fsize = 0;
        rl_wal_int_seg_path(w, w->segs[i].first_seq, path, sizeof(path));
        if (scan_segment(path, &w->segs[i], &valid, &last, &fsize) != 0) {
            rl_seterr(errstr, errstr_size, "%s: cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (last && last < *last_seq) {
            rl_seterr(errstr, errstr_size, "%s: sequence numbers go backwards", path);
            goto out;
        }
        if (valid < fsize && zero_tail(path, valid, fsize)) {
            /* Preallocated and not used up: appends go on at `valid`. */
        } else if (valid < fsize) {
            /* A torn tail (crash mid-write) in the last segment is expected; in
             * an older one it is damage. Either way only the valid prefix can be
             * trusted, and it is all that was ever acknowledged. */
            rl_log(i + 1 == w->nsegs ? RL_LOG_WARN : RL_LOG_ERROR,
                   "wal: %s: dropping %llu bytes of torn or damaged records after offset %llu",
                   path, (unsigned long long)(fsize - valid), (unsigned long long)valid);
            if (truncate(path, (off_t)valid) != 0) {
                rl_seterr(errstr, errstr_size, "%s: truncate: %s", path, strerror(errno));
                goto out;
            }
            w->torn++;
            w->torn_bytes += fsize - valid;
        }
        w->segs[i].size = valid;
        w->bytes += valid;
        /* Retention's clock after a restart: the file's last write, and the end
         * of the segment before it as when it began. */
        struct stat st;
        if (stat(path, &st) == 0)
            w->segs[i].last_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        w->segs[i].first_ms = i ? w->segs[i - 1].last_ms : w->segs[i].last_ms;
        if (last)
            *last_seq = last;
        /* A segment's records are never below its name, even when it is empty
         * (a fresh active segment after the older ones were deleted): new seqs
         * must not restart below it. */
        if (w->segs[i].first_seq && w->segs[i].first_seq - 1 > *last_seq)
            *last_seq = w->segs[i].first_seq - 1;
    }
    rc = 0;
out:
    if (d)
        closedir(d);
    return rc;
}
