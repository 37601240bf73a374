/* test_dedup_file.c -- the dedup window on disk (relay/dedup/dedup_file.c), tested against
 * dedup_file.h: key persistence, round trips, torn tails, compaction, and the bytes one
 * remembered id costs on disk. Every test gets its own mkdtemp directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup_file.h"
#include "log.h"
#include "tmpdir.h"

static char tmpdir[64];
static char dir[128];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof(tmpdir), "dfile");
    snprintf(dir, sizeof(dir), "%s/dedup", tmpdir);
    rl_log_set_level("error"); /* torn-tail warnings are expected here */
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(dfile, .init = setup, .fini = teardown);

static rl_dfile_t *open_f(uint64_t window, uint64_t max, uint64_t seg_records)
{
    char err[256] = "";
    rl_dfile_opts_t o = {dir, window, max, seg_records, 1};
    rl_dfile_t *f = rl_dfile_open(&o, err, sizeof(err));
    cr_assert_not_null(f, "rl_dfile_open: %s", err);
    return f;
}

/* Record i: a digest that says which one it is, at time t. */
static rl_dfile_rec_t rec(uint64_t i, uint32_t t)
{
    rl_dfile_rec_t r = {{{i * 0x9e3779b97f4a7c15ULL + 1, ~i}}, t};
    return r;
}

static void append(rl_dfile_t *f, uint64_t from, uint64_t n, uint32_t t, uint64_t now)
{
    char err[256] = "";
    rl_dfile_rec_t *v = calloc(n, sizeof(*v));
    cr_assert_not_null(v);
    for (uint64_t i = 0; i < n; i++)
        v[i] = rec(from + i, t);
    cr_assert_eq(rl_dfile_append(f, v, n, now, err, sizeof(err)), 0, "append: %s", err);
    free(v);
}

/* A new file holding records 0 .. n-1 at time 1000, closed. */
static void write_closed(uint64_t n)
{
    char err[256] = "";
    rl_dfile_t *f = open_f(3600, 100000, 0);
    cr_assert_geq(rl_dfile_load(f, 1000, NULL, NULL, err, sizeof(err)), 0, "load: %s", err);
    append(f, 0, n, 1000, 1000);
    rl_dfile_close(f);
}

/* What load passes on: the records, in order. */
typedef struct seen {
    rl_dfile_rec_t v[20000];
    size_t n;
} seen_t;

static void collect(void *arg, const rl_dfile_rec_t *r)
{
    seen_t *s = arg;
    if (s->n < sizeof(s->v) / sizeof(s->v[0]))
        s->v[s->n] = *r;
    s->n++;
}

static long load(rl_dfile_t *f, uint64_t now, seen_t *s)
{
    char err[256] = "";
    s->n = 0;
    long n = rl_dfile_load(f, now, collect, s, err, sizeof(err));
    cr_assert_geq(n, 0, "load: %s", err);
    return n;
}

static int count_dd(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '\\.dd$'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert_not_null(p);
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* The last segment file, for the torn-tail tests. */
static void last_segment(char *out, size_t outsz)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls %s/*.dd | tail -n 1", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(out, (int)outsz, p));
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

Test(dfile, key_is_made_once_and_kept)
{
    unsigned char k1[RL_DEDUP_KEY_LEN];
    rl_dfile_t *f = open_f(3600, 1000, 0);
    cr_expect_eq(rl_dfile_fresh(f), 1);
    memcpy(k1, rl_dfile_key(f), sizeof(k1));
    rl_dfile_close(f);

    f = open_f(3600, 1000, 0);
    cr_expect_eq(rl_dfile_fresh(f), 0, "an existing key is reused");
    cr_expect_eq(memcmp(k1, rl_dfile_key(f), sizeof(k1)), 0, "the same key after reopening");
    rl_dfile_close(f);

    /* The key file is private. */
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/key", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0077, 0, "key mode %o", st.st_mode & 0777);
    rl_dfile_close(NULL);
}

Test(dfile, records_survive_reopen_in_order)
{
    seen_t *s = calloc(1, sizeof(*s));
    rl_dfile_t *f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1000, s), 0);
    append(f, 0, 10, 1000, 1000);
    append(f, 10, 5, 1001, 1001);
    cr_expect_eq(rl_dfile_records(f), 15);
    rl_dfile_close(f);

    f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1002, s), 15);
    for (uint64_t i = 0; i < 15; i++) {
        rl_dfile_rec_t want = rec(i, i < 10 ? 1000 : 1001);
        cr_expect(!memcmp(&s->v[i].dg, &want.dg, sizeof(want.dg)) && s->v[i].t == want.t,
                  "record %llu differs", (unsigned long long)i);
    }
    /* Appending after a reopen starts a new segment and keeps the old records. */
    append(f, 15, 1, 1003, 1003);
    rl_dfile_close(f);
    f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1004, s), 16);
    cr_expect_eq(count_dd(), 2);
    rl_dfile_close(f);
    free(s);
}

Test(dfile, bytes_per_id_on_disk)
{
    const uint64_t n = 100000;
    rl_dfile_t *f = open_f(86400, 1000000, 0);
    load(f, 1700000000, &(seen_t){0});
    for (uint64_t i = 0; i < n; i += 1000)
        append(f, i, 1000, 1700000000, 1700000000);
    uint64_t bytes = rl_dfile_bytes(f);
    fprintf(stderr, "dedup file: %llu ids, %llu bytes in %zu segment(s), %.2f bytes/id\n",
            (unsigned long long)n, (unsigned long long)bytes, rl_dfile_segments(f),
            (double)bytes / (double)n);
    /* 24 bytes a record, plus an 8-byte header per segment. */
    cr_expect_eq(bytes, n * RL_DFILE_REC_SIZE + rl_dfile_segments(f) * RL_DFILE_HDR_SIZE);
    cr_expect_leq(bytes, n * 25);
    rl_dfile_close(f);

    /* The files hold exactly that. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "cat %s/*.dd | wc -c", dir);
    FILE *p = popen(cmd, "r");
    unsigned long long on_disk = 0;
    cr_assert_eq(fscanf(p, "%llu", &on_disk), 1);
    pclose(p);
    cr_expect_eq(on_disk, bytes);
}

Test(dfile, torn_tail_is_cut_and_appends_go_on)
{
    seen_t *s = calloc(1, sizeof(*s));
    char path[256];
    struct stat st;
    rl_dfile_t *f;
    write_closed(7);

    /* A crash in the middle of the 8th record's write. */
    last_segment(path, sizeof(path));
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "0123456789", 10), 10);
    close(fd);

    f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1001, s), 7);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_size, RL_DFILE_HDR_SIZE + 7 * RL_DFILE_REC_SIZE, "torn tail cut off");
    append(f, 7, 2, 1001, 1001);
    rl_dfile_close(f);
    f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1002, s), 9);
    rl_dfile_close(f);
    free(s);
}

Test(dfile, damaged_record_ends_what_is_trusted)
{
    seen_t *s = calloc(1, sizeof(*s));
    char path[256];
    rl_dfile_t *f;
    write_closed(5);

    /* Flip a bit in the third record's time: its checksum no longer matches. */
    last_segment(path, sizeof(path));
    int fd = open(path, O_RDWR);
    unsigned char b;
    off_t at = RL_DFILE_HDR_SIZE + 2 * RL_DFILE_REC_SIZE + 16;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 1;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);

    f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1001, s), 2, "records after the damage are not trusted");
    rl_dfile_close(f);
    free(s);
}

Test(dfile, segment_without_header_is_ignored)
{
    seen_t *s = calloc(1, sizeof(*s));
    char path[256];
    rl_dfile_t *f;
    write_closed(3);
    /* A crash right after creating the next segment, before its header was written. */
    snprintf(path, sizeof(path), "%s/00000000000000000099.dd", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    cr_assert_eq(write(fd, "RLD", 3), 3);
    close(fd);

    f = open_f(3600, 100000, 0);
    cr_expect_eq(load(f, 1001, s), 3);
    cr_expect_eq(access(path, F_OK), -1, "the headless segment is deleted");
    append(f, 3, 1, 1001, 1001);
    rl_dfile_close(f);
    free(s);
}

Test(dfile, damaged_key_starts_empty)
{
    seen_t *s = calloc(1, sizeof(*s));
    char path[256];
    unsigned char k1[RL_DEDUP_KEY_LEN];
    rl_dfile_t *f = open_f(3600, 100000, 0);
    load(f, 1000, s);
    append(f, 0, 3, 1000, 1000);
    memcpy(k1, rl_dfile_key(f), sizeof(k1));
    rl_dfile_close(f);

    snprintf(path, sizeof(path), "%s/key", dir);
    int fd = open(path, O_WRONLY);
    cr_assert_eq(pwrite(fd, "x", 1, 0), 1);
    close(fd);

    f = open_f(3600, 100000, 0);
    cr_expect_eq(rl_dfile_fresh(f), 1);
    cr_expect_neq(memcmp(k1, rl_dfile_key(f), sizeof(k1)), 0, "a new key");
    cr_expect_eq(load(f, 1001, s), 0, "records made with the old key are gone");
    cr_expect_eq(count_dd(), 0);
    rl_dfile_close(f);
    free(s);
}

Test(dfile, load_skips_ids_out_of_the_window)
{
    seen_t *s = calloc(1, sizeof(*s));
    rl_dfile_t *f = open_f(60, 100000, 0);
    load(f, 1000, s);
    append(f, 0, 4, 1000, 1000);
    append(f, 4, 4, 1030, 1030);
    rl_dfile_close(f);
    f = open_f(60, 100000, 0);
    /* At 1060 the first four (t = 1000) are out: remembered while now < t + window. */
    cr_expect_eq(load(f, 1060, s), 4);
    cr_expect_eq(s->v[0].t, 1030);
    rl_dfile_close(f);
    free(s);
}

Test(dfile, compaction_drops_expired_segments)
{
    rl_dfile_t *f = open_f(80, 100000, 1024);
    load(f, 1000, &(seen_t){0});
    /* Segments roll every window/8 = 10 s: one per append below. */
    for (uint32_t t = 1000; t < 1100; t += 11)
        append(f, t, 100, t, t);
    /* At 1099 the segments whose newest record is 1019 or older are gone (1000, 1011);
     * the 8 from 1022 on stay. */
    cr_expect_eq(rl_dfile_segments(f), 8);
    cr_expect_eq(rl_dfile_records(f), 800);
    cr_expect_eq(count_dd(), 8);
    /* Much later, a quiet append (none) drops everything but the active segment. */
    cr_assert_eq(rl_dfile_append(f, NULL, 0, 5000, NULL, 0), 0);
    cr_expect_eq(rl_dfile_segments(f), 1);
    cr_expect_eq(rl_dfile_records(f), 100);
    rl_dfile_close(f);
}

Test(dfile, compaction_bounds_records_by_max_entries)
{
    seen_t *s = calloc(1, sizeof(*s));
    rl_dfile_t *f = open_f(86400, 5000, 1024);
    load(f, 1000, s);
    for (int i = 0; i < 20; i++)
        append(f, (uint64_t)i * 1024, 1024, 1000, 1000);
    /* The segments after the oldest kept one hold fewer than max_entries records, so the
     * disk holds at most max_entries + one segment: here 5 segments (4 * 1024 < 5000). */
    cr_expect_eq(rl_dfile_records(f), 5 * 1024);
    cr_expect_eq(count_dd(), 5);
    rl_dfile_close(f);
    /* The newest 5000 come back, newest last. */
    f = open_f(86400, 5000, 1024);
    long n = load(f, 1001, s);
    cr_expect_eq(n, 5 * 1024);
    rl_dfile_rec_t last = rec(20 * 1024 - 1, 1000);
    cr_expect(!memcmp(&s->v[n - 1].dg, &last.dg, sizeof(last.dg)));
    rl_dfile_close(f);
    free(s);
}

Test(dfile, open_fails_cleanly_where_no_directory_can_be)
{
    char err[256] = "", bad[192];
    snprintf(bad, sizeof(bad), "%s/file", tmpdir);
    FILE *fp = fopen(bad, "w");
    fclose(fp);
    snprintf(bad, sizeof(bad), "%s/file/dedup", tmpdir);
    rl_dfile_opts_t o = {bad, 60, 10, 0, 1};
    cr_expect_null(rl_dfile_open(&o, err, sizeof(err)));
    cr_expect_neq(err[0], '\0');
}
