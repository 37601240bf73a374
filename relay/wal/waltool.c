/* waltool.c -- `relay wal stat|dump|verify` (waltool.h): a WAL directory read
 * from outside relay, read-only, beside a live relay if need be.
 *
 * Each segment is read in large chunks through a window (win_get), record by
 * record, as recovery reads it; unlike recovery, a record that is not whole and
 * checksummed does not end the segment: the reading resumes at the next whole
 * record (resync), so that verify names every damaged place, and the end of the
 * last segment is told apart from damage when it is a record still being
 * written (in_progress). */
#include "waltool.h"

#include "array.h"
#include "bytes.h"
#include "config.h"
#include "record.h"
#include "wal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (4u << 20)                /* bytes read at a time */
#define RESYNC_SPAN (1ull << 24)        /* how far above the last seq a resumed record may be */
#define CURSOR_SUFFIX ".cursor"         /* DIR/<reader>.cursor (wal_reader.c) */
#define SPARE_FILE "next-segment.zeros" /* wal_spare.c's SPARE_NAME */

enum { CMD_STAT, CMD_DUMP, CMD_VERIFY };

typedef struct seg {
    uint64_t name;           /* the first seq it may hold: its file name */
    uint64_t first, last;    /* seqs of its first and last whole record (0: none) */
    uint64_t records;        /* whole records */
    uint64_t bytes;          /* their bytes (headers included): what relay counts */
    uint64_t file_bytes;     /* the file's size when it was opened */
    uint64_t zero_bytes;     /* its unused preallocated end */
    uint64_t progress_bytes; /* a record being written (the last segment only) */
    uint64_t progress_off;   /* where it starts */
    uint64_t problems;
    int64_t mtime_ms;
    int gone; /* deleted between the listing and the open (relay freed it) */
    int read; /* scanned (dump skips segments below --from-seq) */
} seg_t;

typedef struct cursor {
    char *name;   /* the reader (owned) */
    uint64_t seq; /* 0 when unreadable: relay then replays everything kept */
    int ok;       /* 12 bytes with a matching checksum, or empty (not written yet) */
    int file;     /* DIR/<name>.cursor exists (relay creates it at open) */
    int reader;   /* one of the config's readers (each is, without a config) */
    uint64_t lag_records, lag_bytes;
} cursor_t;

typedef struct tool {
    int cmd;
    FILE *out, *err;
    FILE *report;    /* where problems are written (NULL: counted only) */
    const char *dir; /* the WAL directory (borrowed from argv or cfg) */
    const char *config_path;
    rl_config_t *cfg; /* NULL: none could be loaded (--dir alone) */
    rl_wal_t paths;   /* only .dir is set: for rl_wal_int_seg_path */
    seg_t *segs;
    size_t nsegs, capsegs;
    cursor_t *curs;
    size_t ncurs, capcurs;
    int spare;
    uint64_t spare_bytes;
    uint64_t prev_seq; /* the last whole record's seq, across segments */
    uint64_t problems;
    int json;
    uint64_t from_seq, limit, dumped; /* dump */
    int64_t now_ms;
} tool_t;

/* ---- reading a segment ---------------------------------------------------- */

/* A window on one file: buf holds file[base, base + len). */
typedef struct win {
    int fd;
    uint64_t size; /* the file's size at open, smaller if it shrank under us */
    uint8_t *buf;
    size_t cap, len;
    uint64_t base;
    int ioerr; /* errno of a failed read, 0 if none */
} win_t;

/* file[off, off + n): a pointer into the window, valid until the next call;
 * NULL when that is past the end of the file, or on an I/O error (w->ioerr). */
static const uint8_t *win_get(win_t *w, uint64_t off, size_t n)
{
    if (off > w->size || n > w->size - off)
        return NULL;
    if (off >= w->base && off + n <= w->base + w->len)
        return w->buf + (off - w->base);
    size_t want = n > CHUNK ? n : CHUNK;
    if (want > w->size - off)
        want = (size_t)(w->size - off);
    uint8_t *nb = rl_array_grow(w->buf, &w->cap, want, 1, 0);
    if (!nb) {
        w->ioerr = ENOMEM;
        return NULL;
    }
    w->buf = nb;
    w->base = off;
    w->len = 0;
    while (w->len < want) {
        ssize_t k = pread(w->fd, w->buf + w->len, want - w->len, (off_t)(off + w->len));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            w->ioerr = errno;
            return NULL;
        }
        if (k == 0) {
            /* Cut back under us (relay's flusher undoes a failed write): the
             * file ends here now. */
            w->size = off + w->len;
            break;
        }
        w->len += (size_t)k;
    }
    return w->len >= n ? w->buf : NULL;
}

/* 1 when a whole record with a matching checksum starts at off: its length,
 * seq and payload in *len, *seq, *payload (valid until the next win_get). */
static int frame_at(win_t *w, uint64_t off, uint32_t *len, uint64_t *seq, const uint8_t **payload)
{
    const uint8_t *h = win_get(w, off, HDR);
    if (!h)
        return 0;
    *len = get32(h);
    *seq = get64(h + 8);
    if (*len > MAX_REC || off + HDR + *len > w->size)
        return 0;
    if (!(h = win_get(w, off, HDR + *len)))
        return 0;
    *payload = h + HDR;
    return rl_wal_int_rec_crc(h + 8, h + HDR, *len) == get32(h + 4);
}

/* Where the file's trailing zeros begin (its size when its last byte is not
 * zero): the unused end of a preallocated segment. UINT64_MAX on an I/O error. */
static uint64_t zero_from(win_t *w)
{
    uint64_t end = w->size;
    while (end > 0) {
        size_t n = end < CHUNK ? (size_t)end : CHUNK;
        const uint8_t *p = win_get(w, end - n, n);
        if (!p)
            return w->ioerr ? UINT64_MAX : w->size;
        size_t k = n;
        while (k > 0 && p[k - 1] == 0)
            k--;
        if (k > 0)
            return end - n + k;
        end -= n;
    }
    return 0;
}

/* The offset of the next whole record after the bad bytes at pos (its seq
 * above the last one read), or zf (where the zeros begin) when there is none.
 * The frame's own length is tried first: a damaged payload or checksum
 * leaves it right. Then every offset, cheaply: a seq in range, then the CRC. */
static uint64_t resync(tool_t *t, win_t *w, const seg_t *s, uint64_t pos, uint64_t zf)
{
    uint64_t lo = t->prev_seq + 1 > s->name ? t->prev_seq + 1 : s->name, seq;
    const uint8_t *h = win_get(w, pos, HDR), *p;
    uint32_t len;

    if (h && get32(h) <= MAX_REC) {
        uint64_t q = pos + HDR + get32(h);
        if (q == zf || (q < zf && frame_at(w, q, &len, &seq, &p) && seq >= lo))
            return q;
    }
    for (uint64_t q = pos + 1; q + HDR <= zf; q++) {
        if (!(h = win_get(w, q, HDR)))
            break;
        seq = get64(h + 8);
        if (seq < lo || seq - lo > RESYNC_SPAN || get32(h) > MAX_REC)
            continue;
        if (frame_at(w, q, &len, &seq, &p))
            return q;
    }
    return zf;
}

/* The bad bytes at pos, with nothing whole after them, are a record relay is
 * still writing: too few for a header, or a record whose end is past the end
 * of the file or still in its zeros (a write into a preallocated segment
 * lands from the front). */
static int in_progress(win_t *w, uint64_t pos, uint64_t zf)
{
    const uint8_t *h = win_get(w, pos, HDR);
    if (!h)
        return !w->ioerr;
    uint64_t end = pos + HDR + get32(h);
    return get32(h) <= MAX_REC && (end > w->size || end > zf);
}

static void problem(tool_t *t, seg_t *s, uint64_t off, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void problem(tool_t *t, seg_t *s, uint64_t off, uint64_t seq, const char *fmt, ...)
{
    char path[4096];
    va_list ap;

    s->problems++;
    t->problems++;
    if (!t->report)
        return;
    rl_wal_int_seg_path(&t->paths, s->name, path, sizeof(path));
    fprintf(t->report, "%s: offset %llu: seq %llu: ", path, (unsigned long long)off,
            (unsigned long long)seq);
    va_start(ap, fmt);
    vfprintf(t->report, fmt, ap);
    va_end(ap);
    fputc('\n', t->report);
}

/* What to do with a whole record: 0 go on, 1 stop reading (dump's limit). */
typedef int (*rec_fn)(tool_t *t, seg_t *s, uint64_t off, uint64_t seq, const uint8_t *payload,
                      uint32_t len);

/* The bad bytes at pos: says what they are and returns where to go on
 * reading (at or past the end: nothing more is whole). */
static uint64_t bad_bytes(tool_t *t, seg_t *s, win_t *w, uint64_t pos, uint64_t zf, int last)
{
    uint64_t next = resync(t, w, s, pos, zf);
    const uint8_t *h = win_get(w, pos, HDR);
    char what[160], rest[160];

    if (next >= zf && last && in_progress(w, pos, zf)) {
        s->progress_bytes = zf - pos;
        s->progress_off = pos;
        return w->size;
    }
    if (!h)
        snprintf(what, sizeof(what), "%llu bytes, too few for a record header",
                 (unsigned long long)(zf - pos));
    else if (get32(h) > MAX_REC)
        snprintf(what, sizeof(what), "length %lu is out of bounds (at most %u)",
                 (unsigned long)get32(h), MAX_REC);
    else if (pos + HDR + get32(h) > w->size)
        snprintf(what, sizeof(what), "length %lu runs past the end of the file",
                 (unsigned long)get32(h));
    else
        snprintf(what, sizeof(what), "checksum mismatch (its header says length %lu)",
                 (unsigned long)get32(h));
    if (next >= zf)
        snprintf(rest, sizeof(rest), "the rest of the segment (%llu bytes) holds no whole record",
                 (unsigned long long)(zf - pos));
    else
        snprintf(rest, sizeof(rest), "%llu bytes skipped to the next record, at offset %llu",
                 (unsigned long long)(next - pos), (unsigned long long)next);
    problem(t, s, pos, h ? get64(h + 8) : 0, "%s; %s", what, rest);
    return next >= zf ? w->size : next;
}

/* Reads segment i record by record, calling fn on each whole one. Returns 0,
 * 1 when fn stopped it, -1 on an I/O error (said on err). */
static int scan_seg(tool_t *t, size_t i, rec_fn fn)
{
    seg_t *s = &t->segs[i];
    char path[4096];
    win_t w = {.fd = -1};
    struct stat st;
    uint64_t pos = 0, zf = UINT64_MAX;
    int rc = -1, last = i + 1 == t->nsegs;

    rl_wal_int_seg_path(&t->paths, s->name, path, sizeof(path));
    s->read = 1;
    if ((w.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 && errno == ENOENT) {
        s->gone = 1; /* freed by relay since the listing: nothing in it was needed */
        rc = 0;
        goto out;
    }
    if (w.fd < 0 || fstat(w.fd, &st) != 0) {
        fprintf(t->err, "relay wal: %s: %s\n", path, strerror(errno));
        goto out;
    }
    w.size = s->file_bytes = (uint64_t)st.st_size;
    s->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    while (pos < w.size) {
        uint32_t len;
        uint64_t seq;
        const uint8_t *payload;
        if (!frame_at(&w, pos, &len, &seq, &payload)) {
            if (w.ioerr)
                break;
            if (zf == UINT64_MAX && (zf = zero_from(&w)) == UINT64_MAX)
                break;
            if (pos >= zf) { /* preallocated and not used yet */
                s->zero_bytes = w.size - pos;
                break;
            }
            pos = bad_bytes(t, s, &w, pos, zf, last);
            if (pos >= w.size && zf < w.size)
                s->zero_bytes = w.size - zf;
            continue;
        }
        if (seq <= t->prev_seq || seq < s->name) {
            problem(t, s, pos, seq, "a whole record, but its seq is %s %llu",
                    seq <= t->prev_seq ? "not above the previous record's" : "below its segment's",
                    (unsigned long long)(seq <= t->prev_seq ? t->prev_seq : s->name));
        } else {
            t->prev_seq = s->last = seq;
            if (!s->first)
                s->first = seq;
            s->records++;
            s->bytes += HDR + len;
            if (fn && fn(t, s, pos, seq, payload, len) != 0) {
                rc = 1;
                goto out;
            }
        }
        pos += HDR + len;
    }
    if (w.ioerr) {
        fprintf(t->err, "relay wal: %s: %s\n", path, strerror(w.ioerr));
        goto out;
    }
    rc = 0;
out:
    if (w.fd >= 0)
        close(w.fd);
    free(w.buf);
    return rc;
}

/* ---- the directory ---------------------------------------------------------- */

static int cmp_seg(const void *a, const void *b)
{
    const seg_t *x = a, *y = b;
    return x->name < y->name ? -1 : x->name > y->name;
}

static int cmp_cursor(const void *a, const void *b)
{
    return strcmp(((const cursor_t *)a)->name, ((const cursor_t *)b)->name);
}

/* A new entry for reader `name` (namelen bytes of it). NULL on out-of-memory (said). */
static cursor_t *push_cursor(tool_t *t, const char *name, size_t namelen)
{
    cursor_t *v = rl_array_grow(t->curs, &t->capcurs, t->ncurs + 1, sizeof(*v), 4), *c = NULL;
    if (v) {
        t->curs = v;
        c = &t->curs[t->ncurs];
        *c = (cursor_t){.name = strndup(name, namelen), .ok = 1, .reader = !t->cfg};
        if (c->name)
            t->ncurs++;
        else
            c = NULL;
    }
    if (!c)
        fprintf(t->err, "relay wal: out of memory\n");
    return c;
}

/* Reads DIR/<file> (its reader's name is namelen bytes) into a new entry. 0,
 * or -1 (out of memory, said). */
static int add_cursor(tool_t *t, const char *file, size_t namelen)
{
    char path[4096];
    uint8_t b[12];
    cursor_t *c = push_cursor(t, file, namelen);
    if (!c)
        return -1;
    c->file = 1;
    snprintf(path, sizeof(path), "%s/%s", t->dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t k = fd >= 0 ? pread(fd, b, sizeof(b), 0) : -1;
    /* Empty: created at open and not written yet (the flusher writes it lazily). */
    c->ok = k == 0 || (k == (ssize_t)sizeof(b) && rl_wal_int_cursor_parse(b, &c->seq) == 0);
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Marks the readers relay opens with this config (main.c's app_start: dedup,
 * then each enabled sink): only they hold segments back. One with no file yet
 * is at 0. Cursor files of other names (a sink since disabled) hold nothing. */
static int note_readers(tool_t *t)
{
    const char *names[3] = {"dedup"};
    size_t n = 1;
    if (!t->cfg)
        return 0;
    if (t->cfg->kafka.enabled)
        names[n++] = "kafka";
    if (t->cfg->redis.enabled)
        names[n++] = "redis";
    for (size_t i = 0; i < n; i++) {
        cursor_t *c = NULL;
        for (size_t j = 0; j < t->ncurs && !c; j++)
            if (!strcmp(t->curs[j].name, names[i]))
                c = &t->curs[j];
        if (!c && !(c = push_cursor(t, names[i], strlen(names[i]))))
            return -1;
        c->reader = 1;
    }
    if (t->ncurs)
        qsort(t->curs, t->ncurs, sizeof(*t->curs), cmp_cursor);
    return 0;
}

/* Lists the segments (as recovery names them), cursors and the spare. 0, or
 * -1 (said on err). */
static int list_dir(tool_t *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *de;
    int rc = -1;

    if (!d) {
        fprintf(t->err, "relay wal: %s: %s\n", t->dir, strerror(errno));
        goto out;
    }
    while ((de = readdir(d))) {
        char *end;
        size_t n = strlen(de->d_name), sl = strlen(CURSOR_SUFFIX);
        unsigned long long first = strtoull(de->d_name, &end, 10);
        if (end != de->d_name && strcmp(end, ".wal") == 0) {
            seg_t *v = rl_array_grow(t->segs, &t->capsegs, t->nsegs + 1, sizeof(*v), 16);
            if (!v) {
                fprintf(t->err, "relay wal: out of memory\n");
                goto out;
            }
            t->segs = v;
            t->segs[t->nsegs++] = (seg_t){.name = first};
        } else if (n > sl && strcmp(de->d_name + n - sl, CURSOR_SUFFIX) == 0) {
            if (add_cursor(t, de->d_name, n - sl) != 0)
                goto out;
        } else if (strcmp(de->d_name, SPARE_FILE) == 0) {
            char path[4096];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", t->dir, de->d_name);
            if (stat(path, &st) == 0) {
                t->spare = 1;
                t->spare_bytes = (uint64_t)st.st_size;
            }
        }
    }
    if (t->nsegs)
        qsort(t->segs, t->nsegs, sizeof(*t->segs), cmp_seg);
    rc = note_readers(t);
out:
    if (d)
        closedir(d);
    return rc;
}

/* ---- output helpers ----------------------------------------------------------- */

/* "2026-04-19T10:00:00.123Z" */
static void fmt_ms(int64_t ms, char *buf, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char day[32];
    gmtime_r(&s, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", day, (int)(ms % 1000));
}

/* "12.3 MiB" */
static const char *fmt_bytes(uint64_t n, char *buf, size_t size)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, size, "%.1f %s", v, unit[u]);
    return buf;
}

/* A JSON string of n bytes that may not be UTF-8 (a damaged or odd field):
 * bytes that make it invalid become '?'. NULL on out-of-memory. */
static json_t *jstr(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j || !s)
        return j;
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_stringn(c, n);
    free(c);
    return j;
}

static json_t *juint(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* ---- the published segments (wal_spare.c's passed_segments, from files) ---- */

/* The lowest reader's cursor, and the last seq read when that is lower:
 * every seq up to it is published. */
static uint64_t min_cursor(const tool_t *t)
{
    uint64_t min = t->prev_seq;
    for (size_t i = 0; i < t->ncurs; i++)
        if (t->curs[i].reader && t->curs[i].seq < min)
            min = t->curs[i].seq;
    return min;
}

/* How many of the oldest segments every reader has passed (never the last). */
static size_t published(const tool_t *t)
{
    uint64_t min = min_cursor(t);
    size_t n = 0;
    while (n + 1 < t->nsegs && t->segs[n + 1].name - 1 <= min)
        n++;
    return n;
}

/* ---- stat ------------------------------------------------------------------------ */

static int stat_rec(tool_t *t, seg_t *s, uint64_t off, uint64_t seq, const uint8_t *payload,
                    uint32_t len)
{
    (void)s, (void)off, (void)payload;
    for (size_t i = 0; i < t->ncurs; i++)
        if (seq > t->curs[i].seq) {
            t->curs[i].lag_records++;
            t->curs[i].lag_bytes += HDR + len;
        }
    return 0;
}

typedef struct totals {
    uint64_t first, last, records, bytes, file_bytes, progress, zero;
    size_t npub;
    uint64_t pub_bytes;
} totals_t;

static void totals(const tool_t *t, totals_t *to)
{
    *to = (totals_t){.npub = published(t)};
    for (size_t i = 0; i < t->nsegs; i++) {
        const seg_t *s = &t->segs[i];
        if (!to->first)
            to->first = s->first;
        if (s->last)
            to->last = s->last;
        to->records += s->records;
        to->bytes += s->bytes;
        to->file_bytes += s->file_bytes;
        to->progress += s->progress_bytes;
        to->zero += s->zero_bytes;
        if (i < to->npub)
            to->pub_bytes += s->bytes;
    }
}

static void stat_text(tool_t *t)
{
    totals_t to;
    char b1[32], b2[32], when[40];
    FILE *o = t->out;

    totals(t, &to);
    fprintf(o, "WAL %s\n", t->dir);
    if (to.records)
        fprintf(o, "records: %llu, seqs %llu..%llu\n", (unsigned long long)to.records,
                (unsigned long long)to.first, (unsigned long long)to.last);
    else
        fprintf(o, "records: none\n");
    fprintf(o, "bytes: %llu (%s)", (unsigned long long)to.bytes, fmt_bytes(to.bytes, b1, 32));
    if (t->cfg && t->cfg->wal.max_size)
        fprintf(o, " of wal.max_size %s (%.1f%%)",
                fmt_bytes((uint64_t)t->cfg->wal.max_size, b2, 32),
                100.0 * (double)to.bytes / (double)t->cfg->wal.max_size);
    fprintf(o, "; on disk %s with preallocated room", fmt_bytes(to.file_bytes, b2, 32));
    if (t->spare)
        fprintf(o, " and the spare segment (%s)", fmt_bytes(t->spare_bytes, b1, 32));
    fprintf(o, "\nsegments: %zu\n", t->nsegs);
    if (t->nsegs)
        fprintf(o, "  %-24s %12s %12s %10s %10s  %-24s %s\n", "file", "first", "last", "records",
                "bytes", "modified", "state");
    for (size_t i = 0; i < t->nsegs; i++) {
        const seg_t *s = &t->segs[i];
        char name[32];
        snprintf(name, sizeof(name), "%020llu.wal", (unsigned long long)s->name);
        if (s->gone) {
            fprintf(o, "  %-24s deleted by relay while this ran\n", name);
            continue;
        }
        fmt_ms(s->mtime_ms, when, sizeof(when));
        fprintf(o, "  %-24s %12llu %12llu %10llu %10s  %-24s %s", name,
                (unsigned long long)s->first, (unsigned long long)s->last,
                (unsigned long long)s->records, fmt_bytes(s->bytes, b1, 32), when,
                i < to.npub         ? "published"
                : i + 1 == t->nsegs ? "active"
                                    : "unpublished");
        if (s->zero_bytes)
            fprintf(o, ", %s preallocated", fmt_bytes(s->zero_bytes, b1, 32));
        if (s->progress_bytes)
            fprintf(o, ", a record in progress (%llu bytes)",
                    (unsigned long long)s->progress_bytes);
        if (s->problems)
            fprintf(o, ", %llu damaged places (relay wal verify)", (unsigned long long)s->problems);
        fputc('\n', o);
    }
    fprintf(o, "readers: %zu\n", t->ncurs);
    for (size_t i = 0; i < t->ncurs; i++) {
        const cursor_t *c = &t->curs[i];
        fprintf(o, "  %-12s cursor %llu%s, lag %llu records, %s%s\n", c->name,
                (unsigned long long)c->seq,
                !c->file ? " (no file yet)"
                : c->ok  ? ""
                         : " (unreadable: relay replays all kept)",
                (unsigned long long)c->lag_records, fmt_bytes(c->lag_bytes, b1, 32),
                c->reader ? "" : " (not a reader of this config: holds nothing back)");
    }
    if (t->cfg)
        fprintf(o, "retention: wal.retention %lld s, wal.retention_size %s\n",
                t->cfg->wal.retention,
                t->cfg->wal.retention_size ? fmt_bytes((uint64_t)t->cfg->wal.retention_size, b1, 32)
                                           : "0 (no cap but wal.max_size)");
    else
        fprintf(o, "retention: unknown (no config)\n");
    if (to.npub) {
        fmt_ms(t->segs[0].mtime_ms, when, sizeof(when));
        fprintf(o,
                "retained (published, kept by retention): %zu segments, %s, seqs %llu..%llu, "
                "oldest written %s\n",
                to.npub, fmt_bytes(to.pub_bytes, b1, 32), (unsigned long long)t->segs[0].first,
                (unsigned long long)t->segs[to.npub - 1].last, when);
    } else {
        fprintf(o, "retained (published, kept by retention): none\n");
    }
    if (t->problems)
        fprintf(o, "damage: %llu places (relay wal verify names them)\n",
                (unsigned long long)t->problems);
}

static json_t *stat_json(tool_t *t)
{
    totals_t to;
    char when[40];
    json_t *o = json_object(), *segs = json_array(), *rd = json_object(), *ret = json_object();

    totals(t, &to);
    for (size_t i = 0; i < t->nsegs; i++) {
        const seg_t *s = &t->segs[i];
        char name[32];
        snprintf(name, sizeof(name), "%020llu.wal", (unsigned long long)s->name);
        fmt_ms(s->mtime_ms, when, sizeof(when));
        json_t *j = json_object();
        json_object_set_new(j, "file", json_string(name));
        json_object_set_new(j, "name_seq", juint(s->name));
        json_object_set_new(j, "first_seq", juint(s->first));
        json_object_set_new(j, "last_seq", juint(s->last));
        json_object_set_new(j, "records", juint(s->records));
        json_object_set_new(j, "bytes", juint(s->bytes));
        json_object_set_new(j, "file_bytes", juint(s->file_bytes));
        json_object_set_new(j, "preallocated_bytes", juint(s->zero_bytes));
        json_object_set_new(j, "in_progress_bytes", juint(s->progress_bytes));
        json_object_set_new(j, "problems", juint(s->problems));
        json_object_set_new(j, "mtime", s->gone ? json_null() : json_string(when));
        json_object_set_new(j, "published", json_boolean(i < to.npub));
        json_object_set_new(j, "deleted", json_boolean(s->gone));
        json_array_append_new(segs, j);
    }
    for (size_t i = 0; i < t->ncurs; i++) {
        const cursor_t *c = &t->curs[i];
        json_object_set_new(rd, c->name,
                            json_pack("{s:o,s:b,s:b,s:b,s:o,s:o}", "cursor", juint(c->seq), "valid",
                                      c->ok, "file", c->file, "reader", c->reader, "lag_records",
                                      juint(c->lag_records), "lag_bytes", juint(c->lag_bytes)));
    }
    json_object_set_new(ret, "seconds", t->cfg ? json_integer(t->cfg->wal.retention) : json_null());
    json_object_set_new(ret, "max_bytes",
                        t->cfg ? json_integer(t->cfg->wal.retention_size) : json_null());
    json_object_set_new(ret, "segments", juint(to.npub));
    json_object_set_new(ret, "bytes", juint(to.pub_bytes));
    json_object_set_new(ret, "first_seq", juint(to.npub ? t->segs[0].first : 0));
    fmt_ms(to.npub ? t->segs[0].mtime_ms : 0, when, sizeof(when));
    json_object_set_new(ret, "oldest", to.npub ? json_string(when) : json_null());
    json_object_set_new(o, "dir", json_string(t->dir));
    json_object_set_new(o, "config", t->cfg ? json_string(t->config_path) : json_null());
    json_object_set_new(o, "segments", segs);
    json_object_set_new(o, "first_seq", juint(to.first));
    json_object_set_new(o, "last_seq", juint(to.last));
    json_object_set_new(o, "records", juint(to.records));
    json_object_set_new(o, "bytes", juint(to.bytes));
    json_object_set_new(o, "file_bytes", juint(to.file_bytes));
    json_object_set_new(o, "max_size", t->cfg ? json_integer(t->cfg->wal.max_size) : json_null());
    json_object_set_new(o, "spare_bytes", t->spare ? juint(t->spare_bytes) : json_null());
    json_object_set_new(o, "in_progress_bytes", juint(to.progress));
    json_object_set_new(o, "problems", juint(t->problems));
    json_object_set_new(o, "readers", rd);
    json_object_set_new(o, "retention", ret);
    return o;
}

/* ---- dump -------------------------------------------------------------------------- */

/* A destination named as the sink names it (sink_kafka.c, sink_redis.c):
 * null when the sink is off, there is no config, or the name does not render
 * (the sink drops such a record). */
static json_t *dest(const rl_record_t *rec, int enabled, const char *tpl, const char *dl_tpl,
                    int topic_safe, size_t max)
{
    char buf[RL_RECORD_KEY_MAX + 1];
    if (!enabled || rl_record_render(rec->kind == RL_RECORD_DEADLETTER ? dl_tpl : tpl, rec,
                                     topic_safe, buf, max + 1) < 0)
        return json_null();
    return json_string(buf);
}

static int dump_rec(tool_t *t, seg_t *s, uint64_t off, uint64_t seq, const uint8_t *payload,
                    uint32_t len)
{
    rl_record_t rec;
    char when[40];
    json_t *j = NULL;

    if (seq < t->from_seq)
        return 0;
    if (rl_record_decode(payload, len, &rec) != 0) {
        problem(t, s, off, seq, "the payload does not decode (%lu bytes)", (unsigned long)len);
        return 0;
    }
    fmt_ms((int64_t)rec.received_ms, when, sizeof(when));
    j = json_object();
    json_object_set_new(j, "seq", juint(seq));
    json_object_set_new(j, "time", json_string(when));
    json_object_set_new(j, "kind",
                        json_string(rec.kind == RL_RECORD_DEADLETTER ? "deadletter" : "event"));
    json_object_set_new(j, "source", jstr(rec.source, rec.source_len));
    json_object_set_new(j, "id", jstr(rec.id, rec.id_len));
    json_object_set_new(j, "type", jstr(rec.type, rec.type_len));
    json_object_set_new(j, "channel_id", jstr(rec.channel_id, rec.channel_id_len));
    if (rec.scoped)
        json_object_set_new(j, "ce_source", jstr(rec.ce_source, rec.ce_source_len));
    const rl_config_t *c = t->cfg;
    json_object_set_new(j, "topic",
                        c ? dest(&rec, (int)c->kafka.enabled, c->kafka.topic,
                                 c->kafka.deadletter_topic, 1, RL_RECORD_TOPIC_MAX)
                          : json_null());
    json_object_set_new(j, "stream",
                        c ? dest(&rec, (int)c->redis.enabled, c->redis.stream,
                                 c->redis.deadletter_stream, 0, RL_RECORD_KEY_MAX)
                          : json_null());
    json_object_set_new(j, "bytes", juint(HDR + len));
    json_dumpf(j, t->out, JSON_COMPACT);
    fputc('\n', t->out);
    json_decref(j);
    return t->limit && ++t->dumped >= t->limit;
}

/* ---- verify ------------------------------------------------------------------------- */

static int verify_rec(tool_t *t, seg_t *s, uint64_t off, uint64_t seq, const uint8_t *payload,
                      uint32_t len)
{
    rl_record_t rec;
    if (rl_record_decode(payload, len, &rec) != 0)
        problem(t, s, off, seq,
                "a whole record, but its payload does not decode as an event or dead letter "
                "(%lu bytes)",
                (unsigned long)len);
    return 0;
}

static void verify_summary(tool_t *t)
{
    totals_t to;
    char b[32];

    totals(t, &to);
    for (size_t i = 0; i < t->ncurs; i++)
        if (!t->curs[i].ok) {
            t->problems++;
            fprintf(t->out, "%s/%s%s: unreadable (checksum or length): relay replays all kept\n",
                    t->dir, t->curs[i].name, CURSOR_SUFFIX);
        }
    for (size_t i = 0; i < t->nsegs; i++)
        if (t->segs[i].progress_bytes) {
            char path[4096];
            rl_wal_int_seg_path(&t->paths, t->segs[i].name, path, sizeof(path));
            fprintf(t->out,
                    "%s: offset %llu: a record in progress (%llu bytes so far): relay is "
                    "writing it; not damage\n",
                    path, (unsigned long long)t->segs[i].progress_off,
                    (unsigned long long)t->segs[i].progress_bytes);
        }
    fprintf(t->out, "verify: %zu segments, %llu records", t->nsegs, (unsigned long long)to.records);
    if (to.records)
        fprintf(t->out, " (seqs %llu..%llu)", (unsigned long long)to.first,
                (unsigned long long)to.last);
    fprintf(t->out, ", %s: ", fmt_bytes(to.bytes, b, sizeof(b)));
    if (t->problems)
        fprintf(t->out, "%llu problem%s: DAMAGED\n", (unsigned long long)t->problems,
                t->problems == 1 ? "" : "s");
    else
        fprintf(t->out, "clean%s\n", to.progress ? " (one record in progress at the end)" : "");
}

/* ---- the command line ----------------------------------------------------------------- */

void rl_waltool_usage(FILE *out)
{
    fprintf(out, "  relay wal stat   [-c FILE] [--dir DIR] [--json]  segments, readers, lag, "
                 "retention\n"
                 "  relay wal dump   [-c FILE] [--dir DIR] [--from-seq N] [--limit K]\n"
                 "                                                 one JSON line per record\n"
                 "  relay wal verify [-c FILE] [--dir DIR]         every record checked; exit 0 "
                 "clean,\n"
                 "                                                 1 damage found, 2 usage or I/O "
                 "error\n"
                 "  (read-only: safe beside a running relay; --dir instead of the config's "
                 "wal.dir)\n");
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno)
        return -1;
    *v = x;
    return 0;
}

/* Parses argv (argv[0] the command). 0, or -1 (said on err). */
static int parse_args(tool_t *t, int argc, char **argv, const char *default_config)
{
    static const struct option opts[] = {
        {.name = "config", .has_arg = required_argument, .val = 'c'},
        {.name = "dir", .has_arg = required_argument, .val = 'd'},
        {.name = "json", .has_arg = no_argument, .val = 'j'},
        {.name = "from-seq", .has_arg = required_argument, .val = 'f'},
        {.name = "limit", .has_arg = required_argument, .val = 'l'},
        {.name = "help", .has_arg = no_argument, .val = 'h'},
        {0},
    };
    int c;

    t->config_path = default_config;
    optind = 0; /* glibc: start afresh (a test runs several commands) */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': t->config_path = optarg; break;
        case 'd': t->dir = optarg; break;
        case 'j': t->json = 1; break;
        case 'f':
        case 'l':
            if (t->cmd != CMD_DUMP || parse_u64(optarg, c == 'f' ? &t->from_seq : &t->limit)) {
                fprintf(t->err, "relay wal %s: --%s %s: %s\n", argv[0],
                        c == 'f' ? "from-seq" : "limit", optarg,
                        t->cmd != CMD_DUMP ? "only for dump" : "not a number");
                return -1;
            }
            break;
        case 'h': rl_waltool_usage(t->out); return 1;
        case ':':
            fprintf(t->err, "relay wal %s: %s needs a value\n", argv[0], argv[optind - 1]);
            return -1;
        default:
            fprintf(t->err, "relay wal %s: unknown option %s\n", argv[0], argv[optind - 1]);
            return -1;
        }
    }
    if (t->json && t->cmd != CMD_STAT) {
        fprintf(t->err, "relay wal %s: --json is for stat\n", argv[0]);
        return -1;
    }
    if (optind < argc) {
        fprintf(t->err, "relay wal %s: unexpected argument %s\n", argv[0], argv[optind]);
        return -1;
    }
    return 0;
}

/* Loads the config (as relay does) and settles the directory. 0, or -1. */
static int load_config(tool_t *t)
{
    char errstr[1024];
    if (!(t->cfg = rl_config_load(t->config_path, errstr, sizeof(errstr)))) {
        if (!t->dir) {
            fprintf(t->err, "relay wal: %s\n(--dir DIR reads a WAL without a config)\n", errstr);
            return -1;
        }
        fprintf(t->err,
                "relay wal: %s\nrelay wal: going on without a config: no topics, streams, "
                "retention or max_size\n",
                errstr);
    }
    if (!t->dir)
        t->dir = t->cfg->wal.dir;
    t->paths.dir = (char *)t->dir; /* read only by rl_wal_int_seg_path */
    return 0;
}

static int run(tool_t *t)
{
    static const rec_fn fns[] = {
        [CMD_STAT] = stat_rec, [CMD_DUMP] = dump_rec, [CMD_VERIFY] = verify_rec};
    int rc = RL_WALTOOL_ERROR;

    if (load_config(t) != 0 || list_dir(t) != 0)
        goto out;
    t->report = t->cmd == CMD_VERIFY ? t->out : t->cmd == CMD_DUMP ? t->err : NULL;
    for (size_t i = 0; i < t->nsegs; i++) {
        /* dump: a segment whose next one starts at or below --from-seq holds
         * only records below it, and is not read at all. */
        if (t->cmd == CMD_DUMP && i + 1 < t->nsegs && t->segs[i + 1].name <= t->from_seq)
            continue;
        int k = scan_seg(t, i, fns[t->cmd]);
        if (k < 0)
            goto out;
        if (k > 0)
            break;
    }
    if (t->cmd == CMD_STAT && t->json) {
        json_t *j = stat_json(t);
        if (!j || json_dumpf(j, t->out, JSON_COMPACT) != 0) {
            json_decref(j);
            fprintf(t->err, "relay wal: out of memory\n");
            goto out;
        }
        fputc('\n', t->out);
        json_decref(j);
    } else if (t->cmd == CMD_STAT) {
        stat_text(t);
    } else if (t->cmd == CMD_VERIFY) {
        verify_summary(t);
    }
    rc = t->problems && t->cmd != CMD_STAT ? RL_WALTOOL_DAMAGE : RL_WALTOOL_OK;
out:
    return rc;
}

int rl_waltool_run(int argc, char **argv, const char *default_config, FILE *out, FILE *err)
{
    static const char *const cmds[] = {
        [CMD_STAT] = "stat", [CMD_DUMP] = "dump", [CMD_VERIFY] = "verify"};
    tool_t t = {.out = out, .err = err, .cmd = -1};
    int rc = RL_WALTOOL_ERROR, k;

    for (int i = 0; argc > 1 && i < 3; i++)
        if (!strcmp(argv[1], cmds[i]))
            t.cmd = i;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        rl_waltool_usage(out);
        rc = RL_WALTOOL_OK;
        goto out;
    }
    if (t.cmd < 0) {
        fprintf(err, "relay wal: %s%s\nusage:\n",
                argc > 1 ? "unknown command " : "a command, please", argc > 1 ? argv[1] : "");
        rl_waltool_usage(err);
        goto out;
    }
    if ((k = parse_args(&t, argc - 1, argv + 1, default_config)) != 0) {
        rc = k > 0 ? RL_WALTOOL_OK : RL_WALTOOL_ERROR;
        goto out;
    }
    rc = run(&t);
out:
    fflush(out);
    for (size_t i = 0; i < t.ncurs; i++)
        free(t.curs[i].name);
    free(t.curs);
    free(t.segs);
    rl_config_destroy(t.cfg);
    return rc;
}

int rl_waltool_main(int argc, char **argv, const char *default_config)
{
    return rl_waltool_run(argc, argv, default_config, stdout, stderr);
}
