/* test_waltool.c -- `relay wal stat|dump|verify` (relay/wal/waltool.c), tested
 * through rl_waltool_run against WALs written by the WAL itself (rl_wal_open,
 * appends of real records from record.c), then damaged byte by byte.
 *
 * Every test gets its own directory (mkdtemp under /tmp), removed afterwards.
 * Output is captured with open_memstream; JSON is read back with jansson. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "codec.h"
#include "log.h"
#include "record.h"
#include "tmpdir.h"
#include "wal.h"
#include "waltool.h"

#define HDR 16 /* u32 len | u32 crc | u64 seq, from wal.h */
#define NREC 60
#define SEG_SIZE 4096 /* a few records a segment: a WAL of several segments */

/* As relay opens them with both sinks on (main.c). */
static const char *const READERS[] = {"dedup", "kafka", "redis"};

static char tmpdir[64];
static char waldir[128];
static char conf[128];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof tmpdir, "waltool");
    snprintf(waldir, sizeof(waldir), "%s/wal", tmpdir);
    snprintf(conf, sizeof(conf), "%s/relay.conf", tmpdir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[wal]\ndir = %s\nmax_size = 1m\nsegment_size = 64k\nretention = 1h\n"
            "[kafka]\ntopic = ev.{family}.{source}\n"
            "[redis]\nstream = s:{channel_id}\n"
            "[source timely]\ncodec = timely\n",
            waldir);
    fclose(f);
    rl_log_set_level("error"); /* the WAL's recovery warnings are expected here */
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(waltool, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------ */

static rl_wal_t *wal_open(int preallocate)
{
    char err[256] = "";
    rl_wal_opts_t o = {
        .dir = waldir,
        .segment_size = SEG_SIZE,
        .max_size = 1 << 20,
        .fsync = 0,
        .readers = READERS,
        .nreaders = 3,
        .preallocate = preallocate,
        .retention_s = 3600, /* published segments stay: stat shows them */
    };
    rl_wal_t *w = rl_wal_open(&o, NULL, err, sizeof(err));
    cr_assert_not_null(w, "rl_wal_open(%s): %s", waldir, err);
    return w;
}

/* Record i's payload: events from source "timely", every 10th a dead letter,
 * every 7th a scoped event (its own CloudEvent source). */
static void payload(int i, uint8_t **p, size_t *len)
{
    char id[32], chan[32];
    snprintf(id, sizeof(id), "ev-%d", i);
    snprintf(chan, sizeof(chan), "ch-%d", i % 3);
    if (i % 10 == 9) {
        char body[64], *dlid = NULL;
        snprintf(body, sizeof(body), "not json %d", i);
        rl_deadletter_t dl = {.source = "timely",
                              .provider = "timely",
                              .reason = "invalid_json",
                              .message = "bad",
                              .body = (const uint8_t *)body,
                              .len = strlen(body)};
        cr_assert_eq(rl_record_deadletter(&dl, 1700000000000ULL + (uint64_t)i, p, len, &dlid), 0);
        free(dlid);
        return;
    }
    rl_event_t ev = {.id = id,
                     .type = "message.received",
                     .channel_id = chan,
                     .time = "2026-04-19T10:00:00Z",
                     .ce_source = i % 7 == 6 ? "urn:producer" : NULL};
    cr_assert_eq(rl_record_event("timely", "timely", &ev, 1700000000000ULL + (uint64_t)i, p, len),
                 0);
}

/* Appends records 0..n-1; their sizes on disk (header included) add up in *bytes. */
static void append_n(rl_wal_t *w, int n, uint64_t *bytes)
{
    for (int i = 0; i < n; i++) {
        uint8_t *p;
        size_t len;
        uint64_t seq;
        payload(i, &p, &len);
        struct iovec iov = {p, len};
        cr_assert_eq(rl_wal_append_sync(w, &iov, 1, &seq), RL_WAL_OK);
        if (bytes)
            *bytes += HDR + len;
        free(p);
    }
}

/* A closed WAL of NREC records, kafka's cursor at 30, redis's at 0. */
static uint64_t make_wal(void)
{
    uint64_t bytes = 0;
    rl_wal_t *w = wal_open(0);
    append_n(w, NREC, &bytes);
    rl_wal_reader_commit(rl_wal_reader(w, "kafka"), 30);
    rl_wal_close(w);
    return bytes;
}

typedef struct run {
    int rc;
    char *out, *err;
    size_t outlen, errlen;
} run_t;

/* rl_waltool_run on argv (NULL-terminated), output captured. */
static run_t tool(const char *const *args)
{
    char *argv[32];
    int argc = 0;
    run_t r = {0};
    while (args[argc]) {
        cr_assert_lt(argc, 31);
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    FILE *out = open_memstream(&r.out, &r.outlen), *err = open_memstream(&r.err, &r.errlen);
    cr_assert(out && err);
    r.rc = rl_waltool_run(argc, argv, conf, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

static json_t *stat_json(void)
{
    run_t r = tool((const char *const[]){"wal", "stat", "--json", NULL});
    cr_assert_eq(r.rc, 0, "stat: %d: %s", r.rc, r.err);
    json_error_t e;
    json_t *j = json_loads(r.out, 0, &e);
    cr_assert_not_null(j, "stat --json is not JSON (%s): %s", e.text, r.out);
    run_free(&r);
    return j;
}

static uint64_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return (uint64_t)json_integer_value(v);
}

static size_t nsegments(void)
{
    json_t *j = stat_json();
    size_t n = json_array_size(json_object_get(j, "segments"));
    json_decref(j);
    return n;
}

/* The path of the WAL's idx-th segment (0: the oldest; -1: the last). */
static void segment_path(int idx, char *out, size_t size)
{
    json_t *j = stat_json(), *segs = json_object_get(j, "segments");
    size_t n = json_array_size(segs);
    cr_assert_gt(n, 0);
    json_t *s = json_array_get(segs, idx < 0 ? n - 1 : (size_t)idx);
    snprintf(out, size, "%s/%s", waldir, json_string_value(json_object_get(s, "file")));
    json_decref(j);
}

/* The file offset of record k (0-based) of a segment file. */
static uint64_t record_offset(const char *path, int k)
{
    int fd = open(path, O_RDONLY);
    uint64_t off = 0;
    cr_assert_geq(fd, 0);
    for (int i = 0; i < k; i++) {
        uint8_t h[4];
        cr_assert_eq(pread(fd, h, 4, (off_t)off), 4);
        off += HDR +
               ((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24);
    }
    close(fd);
    return off;
}

static void flip(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* verify: its exit code, and that its output names `want` (NULL: nothing). */
static void expect_verify(int rc, const char *want)
{
    run_t r = tool((const char *const[]){"wal", "verify", NULL});
    cr_expect_eq(r.rc, rc, "verify returned %d, not %d:\n%s%s", r.rc, rc, r.out, r.err);
    if (want)
        cr_expect_not_null(strstr(r.out, want), "verify does not say '%s':\n%s", want, r.out);
    run_free(&r);
}

/* ---- stat ------------------------------------------------------------------------ */

Test(waltool, stat_counts_segments_records_cursors_and_lag)
{
    uint64_t bytes = make_wal();
    json_t *j = stat_json();

    cr_expect_eq(jint(j, "records"), NREC);
    cr_expect_eq(jint(j, "first_seq"), 1);
    cr_expect_eq(jint(j, "last_seq"), NREC);
    cr_expect_eq(jint(j, "bytes"), bytes);
    cr_expect_eq(jint(j, "max_size"), 1 << 20);
    cr_expect_eq(jint(j, "problems"), 0);
    json_t *segs = json_object_get(j, "segments");
    cr_assert_gt(json_array_size(segs), 3, "several segments of %d bytes", SEG_SIZE);
    uint64_t recs = 0, sbytes = 0, prev_last = 0;
    size_t i;
    json_t *s;
    json_array_foreach (segs, i, s) {
        cr_expect_eq(jint(s, "first_seq"), prev_last + 1, "segment %zu starts after the last", i);
        cr_expect_eq(jint(s, "name_seq"), jint(s, "first_seq"));
        recs += jint(s, "records");
        sbytes += jint(s, "bytes");
        prev_last = jint(s, "last_seq");
        cr_expect_eq(jint(s, "file_bytes"), jint(s, "bytes"), "no preallocation here");
    }
    cr_expect_eq(recs, NREC);
    cr_expect_eq(sbytes, bytes);

    json_t *rd = json_object_get(j, "readers"), *k = json_object_get(rd, "kafka"),
           *r = json_object_get(rd, "redis");
    cr_assert(k && r, "both readers' cursors");
    cr_expect_eq(jint(k, "cursor"), 30);
    cr_expect_eq(jint(k, "lag_records"), NREC - 30);
    cr_expect_eq(jint(r, "cursor"), 0);
    cr_expect_eq(jint(r, "lag_records"), NREC);
    cr_expect_eq(jint(r, "lag_bytes"), bytes);
    cr_expect_lt(jint(k, "lag_bytes"), bytes);
    /* Nothing is published while redis is at 0: retention keeps nothing. */
    json_t *ret = json_object_get(j, "retention");
    cr_expect_eq(jint(ret, "seconds"), 3600);
    cr_expect_eq(jint(ret, "segments"), 0);
    json_decref(j);

    run_t t = tool((const char *const[]){"wal", "stat", NULL});
    cr_expect_eq(t.rc, 0);
    cr_expect_not_null(strstr(t.out, "seqs 1..60"), "%s", t.out);
    cr_expect_not_null(strstr(t.out, "kafka        cursor 30, lag 30 records"), "%s", t.out);
    run_free(&t);
}

Test(waltool, stat_shows_what_retention_keeps)
{
    uint64_t bytes = 0;
    rl_wal_t *w = wal_open(0);
    append_n(w, NREC, &bytes);
    rl_wal_reader_commit(rl_wal_reader(w, "dedup"), NREC);
    rl_wal_reader_commit(rl_wal_reader(w, "kafka"), NREC);
    rl_wal_reader_commit(rl_wal_reader(w, "redis"), 40);
    rl_wal_close(w);

    json_t *j = stat_json(), *segs = json_object_get(j, "segments"),
           *ret = json_object_get(j, "retention");
    uint64_t npub = 0, pub_bytes = 0;
    size_t i;
    json_t *s;
    json_array_foreach (segs, i, s) {
        int pub = json_is_true(json_object_get(s, "published"));
        /* Published: the next segment starts at or below redis's cursor + 1. */
        json_t *next = json_array_get(segs, i + 1);
        cr_expect_eq(pub, next && jint(next, "name_seq") - 1 <= 40, "segment %zu", i);
        if (pub) {
            npub++;
            pub_bytes += jint(s, "bytes");
            cr_expect_leq(jint(s, "last_seq"), 40);
        }
    }
    cr_expect_gt(npub, 0);
    cr_expect_eq(jint(ret, "segments"), npub);
    cr_expect_eq(jint(ret, "bytes"), pub_bytes);
    cr_expect_eq(jint(ret, "first_seq"), 1);
    cr_expect(json_is_string(json_object_get(ret, "oldest")));
    json_decref(j);
}

Test(waltool, only_the_configs_readers_hold_segments_back)
{
    /* redis disabled since: its cursor file (at 0) holds nothing back, and
     * dedup, a reader relay would open, is at 0 with no file yet. */
    make_wal();
    char path[256];
    snprintf(path, sizeof(path), "%s/dedup.cursor", waldir);
    cr_assert_eq(unlink(path), 0);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f, "[wal]\ndir = %s\n[redis]\nenabled = false\n[source timely]\ncodec = timely\n",
            waldir);
    fclose(f);
    json_t *j = stat_json(), *rd = json_object_get(j, "readers");
    json_t *k = json_object_get(rd, "kafka"), *r = json_object_get(rd, "redis"),
           *d = json_object_get(rd, "dedup");
    cr_assert(k && r && d);
    cr_expect(json_is_true(json_object_get(k, "reader")));
    cr_expect(json_is_false(json_object_get(r, "reader")));
    cr_expect(json_is_true(json_object_get(d, "reader")));
    cr_expect(json_is_false(json_object_get(d, "file")));
    cr_expect_eq(jint(json_object_get(j, "retention"), "segments"), 0, "dedup is at 0");
    json_decref(j);

    /* With dedup's cursor at the end, kafka's 30 is what holds them. */
    uint8_t b[12];
    uint64_t v = NREC;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0L, b, 8);
    for (int i = 0; i < 4; i++)
        b[8 + i] = (uint8_t)(crc >> (8 * i));
    f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, sizeof(b), f), sizeof(b));
    fclose(f);
    j = stat_json();
    json_t *segs = json_object_get(j, "segments"), *ret = json_object_get(j, "retention");
    size_t npub = jint(ret, "segments");
    cr_expect_gt(npub, 0);
    cr_expect_leq(jint(json_array_get(segs, npub - 1), "last_seq"), 30);
    cr_expect_gt(jint(json_array_get(segs, npub), "last_seq"), 30);
    json_decref(j);
}

/* ---- dump ------------------------------------------------------------------------ */

Test(waltool, dump_writes_one_json_line_per_record)
{
    make_wal();
    run_t r = tool((const char *const[]){"wal", "dump", NULL});
    cr_assert_eq(r.rc, 0, "%s", r.err);

    char *save = NULL, *line = strtok_r(r.out, "\n", &save);
    uint64_t n = 0;
    for (; line; line = strtok_r(NULL, "\n", &save), n++) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        cr_assert_not_null(j, "not JSON (%s): %s", e.text, line);
        int i = (int)n;
        uint8_t *p;
        size_t len;
        rl_record_t rec;
        char topic[256], stream[256];
        payload(i, &p, &len);
        cr_assert_eq(rl_record_decode(p, len, &rec), 0);
        int dead = rec.kind == RL_RECORD_DEADLETTER;
        rl_record_render(dead ? "events.deadletter" : "ev.{family}.{source}", &rec, 1, topic,
                         sizeof(topic));
        rl_record_render(dead ? "events:deadletter" : "s:{channel_id}", &rec, 0, stream,
                         sizeof(stream));

        cr_expect_eq(jint(j, "seq"), n + 1);
        cr_expect_eq(jint(j, "bytes"), HDR + len);
        cr_expect_str_eq(json_string_value(json_object_get(j, "kind")),
                         dead ? "deadletter" : "event");
        cr_expect_str_eq(json_string_value(json_object_get(j, "source")), "timely");
        cr_expect_str_eq(json_string_value(json_object_get(j, "topic")), topic);
        cr_expect_str_eq(json_string_value(json_object_get(j, "stream")), stream);
        char when[32];
        snprintf(when, sizeof(when), "2023-11-14T22:13:20.%03dZ", i);
        cr_expect_str_eq(json_string_value(json_object_get(j, "time")), when);
        if (!dead) {
            char id[32], chan[32];
            snprintf(id, sizeof(id), "ev-%d", i);
            snprintf(chan, sizeof(chan), "ch-%d", i % 3);
            cr_expect_str_eq(json_string_value(json_object_get(j, "id")), id);
            cr_expect_str_eq(json_string_value(json_object_get(j, "type")), "message.received");
            cr_expect_str_eq(json_string_value(json_object_get(j, "channel_id")), chan);
        }
        json_t *ces = json_object_get(j, "ce_source");
        if (rec.scoped)
            cr_expect_str_eq(json_string_value(ces), "urn:producer");
        else
            cr_expect_null(ces, "ce_source only for scoped events (record %d)", i);
        free(p);
        json_decref(j);
    }
    cr_expect_eq(n, NREC);
    run_free(&r);
}

Test(waltool, dump_from_seq_skips_whole_segments)
{
    make_wal();
    run_t r = tool((const char *const[]){"wal", "dump", "--from-seq", "45", "--limit", "3", NULL});
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_expect_eq(strncmp(r.out, "{\"seq\":45,", 10), 0, "%s", r.out);
    cr_expect_not_null(strstr(r.out, "\n{\"seq\":47,"), "%s", r.out);
    cr_expect_null(strstr(r.out, "\"seq\":48,"), "--limit 3: %s", r.out);
    run_free(&r);

    /* A damaged first segment is not read at all for a --from-seq past it. */
    char first[256];
    segment_path(0, first, sizeof(first));
    flip(first, record_offset(first, 0) + HDR + 3, 0x40);
    r = tool((const char *const[]){"wal", "dump", "--from-seq", "45", NULL});
    cr_expect_eq(r.rc, 0, "%s", r.err);
    cr_expect_eq(r.errlen, 0, "nothing to say: %s", r.err);
    run_free(&r);
    r = tool((const char *const[]){"wal", "dump", NULL});
    cr_expect_eq(r.rc, 1, "a full dump skipped damage");
    cr_expect_not_null(strstr(r.err, "offset 0: seq 1: checksum mismatch"), "%s", r.err);
    cr_expect_eq(strncmp(r.out, "{\"seq\":2,", 9), 0, "%s", r.out);
    run_free(&r);
}

/* ---- verify ---------------------------------------------------------------------- */

Test(waltool, verify_clean_wal)
{
    make_wal();
    expect_verify(0, "verify: ");
    run_t r = tool((const char *const[]){"wal", "verify", NULL});
    cr_expect_not_null(strstr(r.out, "60 records (seqs 1..60)"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, ": clean\n"), "%s", r.out);
    run_free(&r);
}

/* One flipped byte in record 2 of the second segment, at `where` bytes into
 * the record: verify returns 1, names its offset, and reads on after it. */
static void flipped(uint64_t where, const char *what)
{
    char path[256], want[128];
    make_wal();
    segment_path(1, path, sizeof(path));
    uint64_t off = record_offset(path, 2);
    flip(path, off + where, 0x01);
    snprintf(want, sizeof(want), "%s: offset %llu: ", path, (unsigned long long)off);
    run_t r = tool((const char *const[]){"wal", "verify", NULL});
    cr_expect_eq(r.rc, 1, "%s", r.out);
    cr_expect_not_null(strstr(r.out, want), "verify does not name '%s':\n%s", want, r.out);
    cr_expect_not_null(strstr(r.out, what), "verify does not say '%s':\n%s", what, r.out);
    cr_expect_not_null(strstr(r.out, "59 records"), "the rest read on:\n%s", r.out);
    cr_expect_not_null(strstr(r.out, "1 problem: DAMAGED"), "%s", r.out);
    run_free(&r);
}

Test(waltool, verify_finds_a_flipped_payload_byte)
{
    flipped(HDR + 40, "checksum mismatch");
}

Test(waltool, verify_finds_a_flipped_length_byte)
{
    flipped(0, "checksum mismatch");
}

Test(waltool, verify_finds_a_length_out_of_bounds)
{
    flipped(3, "length"); /* 0x01 in the top byte: 16 MiB past the file */
}

Test(waltool, verify_finds_a_flipped_crc_byte)
{
    flipped(5, "checksum mismatch");
}

Test(waltool, verify_finds_a_flipped_seq_byte)
{
    flipped(8, "checksum mismatch");
}

Test(waltool, verify_flags_every_byte_of_a_record)
{
    char path[256];
    make_wal();
    segment_path(0, path, sizeof(path));
    uint64_t off = record_offset(path, 1), end = record_offset(path, 2);
    for (uint64_t b = off; b < end; b++) {
        flip(path, b, 0x80);
        run_t r = tool((const char *const[]){"wal", "verify", NULL});
        cr_expect_eq(r.rc, 1, "byte %llu of %llu..%llu not found:\n%s", (unsigned long long)b,
                     (unsigned long long)off, (unsigned long long)end, r.out);
        run_free(&r);
        flip(path, b, 0x80);
    }
    expect_verify(0, ": clean");
}

Test(waltool, verify_finds_a_damaged_last_record)
{
    /* Whole and at the very end, but its checksum fails: damage, not a write
     * in progress. */
    char path[256];
    make_wal();
    segment_path(-1, path, sizeof(path));
    flip(path, file_size(path) - 2, 0x10);
    expect_verify(1, "checksum mismatch");
}

Test(waltool, verify_finds_a_payload_that_does_not_decode)
{
    /* A whole record with a good checksum whose payload is not relay's. */
    rl_wal_t *w = wal_open(0);
    append_n(w, 3, NULL);
    struct iovec iov = {"garbage", 7};
    uint64_t seq;
    cr_assert_eq(rl_wal_append_sync(w, &iov, 1, &seq), RL_WAL_OK);
    rl_wal_close(w);
    expect_verify(1, "seq 4: a whole record, but its payload does not decode");
}

Test(waltool, verify_finds_seqs_that_go_backwards)
{
    /* A segment copied over under a later name: its records repeat seqs. */
    char first[256], copy[256];
    make_wal();
    segment_path(0, first, sizeof(first));
    snprintf(copy, sizeof(copy), "%s/%020d.wal", waldir, 100000);
    size_t len;
    char *data = tu_slurp(first, &len);
    FILE *f = fopen(copy, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    free(data);
    expect_verify(1, "seq 1: a whole record, but its seq is not above the previous record's 60");
}

Test(waltool, verify_names_an_unreadable_cursor)
{
    char path[256];
    make_wal();
    snprintf(path, sizeof(path), "%s/kafka.cursor", waldir);
    flip(path, 0, 0x01);
    expect_verify(1, "kafka.cursor: unreadable");
}

Test(waltool, truncated_last_record_is_in_progress_not_damage)
{
    char path[256];
    make_wal();
    segment_path(-1, path, sizeof(path));
    uint64_t size = file_size(path), last = 0;
    for (int k = 1; record_offset(path, k) < size; k++)
        last = record_offset(path, k);
    cr_assert_eq(truncate(path, (off_t)(size - 5)), 0);
    run_t r = tool((const char *const[]){"wal", "verify", NULL});
    cr_expect_eq(r.rc, 0, "%s", r.out);
    cr_expect_not_null(strstr(r.out, "a record in progress"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "59 records"), "%s", r.out);
    run_free(&r);

    /* Only a few bytes of its header written. */
    cr_assert_eq(truncate(path, (off_t)(last + 5)), 0);
    expect_verify(0, "a record in progress");

    /* The same tail in an older segment is damage. */
    rl_wal_t *w = wal_open(0); /* recovery cuts the torn tail; appends go on */
    append_n(w, 40, NULL);
    rl_wal_close(w);
    cr_assert_gt(nsegments(), 1);
    segment_path(0, path, sizeof(path));
    cr_assert_eq(truncate(path, (off_t)(file_size(path) - 5)), 0);
    expect_verify(1, "runs past the end of the file");
}

Test(waltool, record_landing_in_preallocated_zeros_is_in_progress)
{
    /* A write into a preallocated segment lands front first: the record's end
     * is still zeros, and zeros follow it. */
    char path[256];
    make_wal();
    segment_path(-1, path, sizeof(path));
    uint64_t size = file_size(path);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    static const uint8_t zeros[8192];
    cr_assert_eq(pwrite(fd, zeros, 20, (off_t)(size - 20)), 20);
    cr_assert_eq(pwrite(fd, zeros, sizeof(zeros), (off_t)size), (ssize_t)sizeof(zeros));
    close(fd);
    expect_verify(0, "a record in progress");
    json_t *j = stat_json();
    cr_expect_eq(jint(j, "records"), NREC - 1);
    cr_expect_gt(jint(j, "in_progress_bytes"), 0);
    json_decref(j);
}

Test(waltool, live_wal_with_preallocation_is_read_without_its_lock)
{
    uint64_t bytes = 0;
    rl_wal_t *w = wal_open(1);
    append_n(w, NREC, &bytes);
    /* relay holds DIR/.lock all along: the tool neither takes nor needs it. */
    json_t *j = stat_json();
    cr_expect_eq(jint(j, "records"), NREC);
    cr_expect_eq(jint(j, "bytes"), bytes);
    cr_expect_eq(jint(j, "problems"), 0);
    cr_expect_geq(jint(j, "file_bytes"), bytes);
    json_decref(j);
    expect_verify(0, ": clean");
    append_n(w, 5, NULL);
    run_t r = tool((const char *const[]){"wal", "dump", "--from-seq", "61", NULL});
    cr_expect_eq(r.rc, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "{\"seq\":65,"), "%s", r.out);
    run_free(&r);
    rl_wal_close(w);
    expect_verify(0, ": clean");
}

Test(waltool, preallocated_tails_are_not_damage)
{
    rl_wal_t *w = wal_open(1);
    append_n(w, NREC, NULL);
    rl_wal_close(w);
    json_t *j = stat_json();
    cr_expect_eq(jint(j, "records"), NREC);
    cr_expect_eq(jint(j, "problems"), 0);
    json_decref(j);
    expect_verify(0, ": clean");
}

/* ---- the command line -------------------------------------------------------------- */

Test(waltool, dir_without_a_config)
{
    make_wal();
    cr_assert_eq(unlink(conf), 0);
    run_t r = tool((const char *const[]){"wal", "stat", NULL});
    cr_expect_eq(r.rc, 2, "no config and no --dir");
    run_free(&r);
    r = tool((const char *const[]){"wal", "dump", "--dir", waldir, "--limit", "1", NULL});
    cr_expect_eq(r.rc, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "going on without a config"), "%s", r.err);
    cr_expect_not_null(strstr(r.out, "\"topic\":null,\"stream\":null"), "%s", r.out);
    run_free(&r);
    r = tool((const char *const[]){"wal", "verify", "--dir", waldir, NULL});
    cr_expect_eq(r.rc, 0, "%s", r.out);
    run_free(&r);
}

Test(waltool, usage_and_io_errors)
{
    const char *const *bad[] = {
        (const char *const[]){"wal", NULL},
        (const char *const[]){"wal", "frob", NULL},
        (const char *const[]){"wal", "stat", "--bogus", NULL},
        (const char *const[]){"wal", "verify", "--json", NULL},
        (const char *const[]){"wal", "stat", "--limit", "3", NULL},
        (const char *const[]){"wal", "dump", "--from-seq", "x", NULL},
        (const char *const[]){"wal", "dump", "--limit", "-1", NULL},
        (const char *const[]){"wal", "stat", "extra", NULL},
        (const char *const[]){"wal", "stat", "--dir", NULL},
        (const char *const[]){"wal", "verify", "--dir", "/nonexistent/wal", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run_t r = tool(bad[i]);
        cr_expect_eq(r.rc, 2, "case %zu returned %d", i, r.rc);
        cr_expect_gt(r.errlen, 0, "case %zu says nothing", i);
        run_free(&r);
    }
    run_t r = tool((const char *const[]){"wal", "--help", NULL});
    cr_expect_eq(r.rc, 0);
    cr_expect_not_null(strstr(r.out, "relay wal verify"));
    run_free(&r);
}

Test(waltool, empty_directory)
{
    cr_assert_eq(mkdir(waldir, 0755), 0);
    json_t *j = stat_json();
    cr_expect_eq(jint(j, "records"), 0);
    json_decref(j);
    expect_verify(0, "0 segments, 0 records");
}
