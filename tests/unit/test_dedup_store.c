/* test_dedup_store.c -- relay's deduplication with store = local (relay/dedup/dedup_store.c)
 * over a real WAL in a mkdtemp directory: verdicts, the persister, and what survives a
 * restart or a crash once the WAL segments holding the events are gone. store = redis
 * needs a Redis server and is covered by tests/system/test_dedup.c.
 *
 * Nothing waits a fixed time: where the persister works in the background the test
 * polls for the outcome, with a guard that only turns a hang into a failure. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dedup_file.h"
#include "dedup_store.h"
#include "log.h"
#include "tmpdir.h"
#include "record.h"
#include "wal.h"

static char tmpdir[64];
static char waldir[128];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof(tmpdir), "dstore");
    snprintf(waldir, sizeof(waldir), "%s/wal", tmpdir);
    rl_log_set_level("error");
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(dstore, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------------ fixture -- */

typedef struct env {
    rl_config_t *cfg;
    rl_wal_t *wal;
    rl_dstore_t *ds;
} env_t;

static rl_config_t *config(const char *dedup_extra)
{
    char path[192], err[512];
    snprintf(path, sizeof(path), "%s/relay.conf", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[wal]\ndir = %s\nsegment_size = 64k\n[dedup]\nwindow = 1h\n%s\n"
            "[source s]\ncodec = timely\n",
            waldir, dedup_extra);
    fclose(f);
    rl_config_t *cfg = rl_config_load(path, err, sizeof(err));
    cr_assert_not_null(cfg, "config: %s", err);
    return cfg;
}

/* Opens the WAL with only the dedup reader (so nothing else holds segments) and the store. */
static void env_open(env_t *e, const char *dedup_extra)
{
    static const char *const readers[] = {"dedup"};
    char err[512] = "";
    e->cfg = config(dedup_extra);
    rl_wal_opts_t wo = {.dir = e->cfg->wal.dir,
                        .segment_size = (uint64_t)e->cfg->wal.segment_size,
                        .max_size = (uint64_t)e->cfg->wal.max_size,
                        .fsync = 1,
                        .readers = readers,
                        .nreaders = 1};
    e->wal = rl_wal_open(&wo, NULL, err, sizeof(err));
    cr_assert_not_null(e->wal, "wal: %s", err);
    e->ds = rl_dstore_new(e->cfg, e->wal, NULL, err, sizeof(err));
    cr_assert_not_null(e->ds, "dstore: %s", err);
    cr_assert_geq(rl_dstore_rebuild(e->ds, err, sizeof(err)), 0, "rebuild: %s", err);
}

static void env_close(env_t *e)
{
    rl_dstore_destroy(e->ds);
    rl_wal_close(e->wal);
    rl_config_destroy(e->cfg);
    memset(e, 0, sizeof(*e));
}

/* A WAL payload for event `id` of source "s", about 1 KB so that segments roll. */
static struct iovec payload(const char *id)
{
    static char pad[1000];
    memset(pad, 'x', sizeof(pad) - 1);
    rl_event_t ev = {.id = (char *)id,
                     .type = "message.received",
                     .channel_id = "chan",
                     .time = "2026-04-19T10:00:00Z"};
    char *json = NULL;
    cr_assert_geq(asprintf(&json, "{\"id\":\"%s\",\"pad\":\"%s\"}", id, pad), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(rl_record_encode("s", &ev, json,
                                  (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, &buf,
                                  &len),
                 0);
    free(json);
    return (struct iovec){buf, len};
}

typedef struct commit_ctx {
    rl_wal_t *wal;
    struct iovec *iov;
    int fail; /* 1: refuse, as a full WAL would */
} commit_ctx_t;

/* The commit step as ingest does it: append the new events. (ingest must not block
 * here; a test with one thread may wait for the fsync.) */
static int commit(void *arg, const int *verdict, size_t n)
{
    commit_ctx_t *c = arg;
    struct iovec v[64];
    size_t m = 0;
    uint64_t first;
    if (c->fail)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (verdict[i] == RL_DS_NEW)
            v[m++] = c->iov[i];
    return m && rl_wal_append_sync(c->wal, v, m, &first) != RL_WAL_OK;
}

/* Claims ids (at most 64) for one request; the new ones are durable when it returns.
 * Returns rl_dstore_claim's result. */
static int claim(env_t *e, const char *const *ids, size_t n, int *verdict, int fail)
{
    commit_ctx_t c = {e->wal, calloc(n, sizeof(struct iovec)), fail};
    cr_assert(n <= 64 && c.iov);
    for (size_t i = 0; i < n; i++)
        c.iov[i] = payload(ids[i]);
    int rc = rl_dstore_claim(e->ds, "s", ids, n, (uint64_t)time(NULL), verdict, commit, &c);
    for (size_t i = 0; i < n; i++)
        free(c.iov[i].iov_base);
    free(c.iov);
    return rc;
}

static int claim_one(env_t *e, const char *id)
{
    int v = -1;
    cr_assert_eq(claim(e, &id, 1, &v, 0), 0);
    return v;
}

/* Waits until the persister has passed every durable record. */
static void wait_persisted(env_t *e)
{
    rl_wal_reader_t *r = rl_wal_reader(e->wal, "dedup");
    for (int i = 0; i < 3000 && rl_wal_reader_cursor(r) < rl_wal_durable_seq(e->wal); i++)
        usleep(10000);
    cr_assert_eq(rl_wal_reader_cursor(r), rl_wal_durable_seq(e->wal),
                 "the persister did not catch up");
}

static int file_exists(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", waldir, name);
    return access(path, F_OK) == 0;
}

#define FIRST_SEGMENT "00000000000000000001.wal"

/* How many WAL segment files there are. */
static int wal_segments(void)
{
    char cmd[256];
    int n = -1;
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '\\.wal$'", waldir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* Posts unique events "<prefix>-i" until the WAL has rolled to a second segment, lets the
 * persister pass them all, and waits until the WAL has deleted the first segment (every
 * reader passed it). Returns how many were posted. */
static int fill_past_first_segment(env_t *e, const char *prefix)
{
    char id[64];
    int n = 0;
    for (; n < 2000 && wal_segments() < 2; n++) {
        snprintf(id, sizeof(id), "%s-%d", prefix, n);
        cr_assert_eq(claim_one(e, id), RL_DS_NEW, "%s is new", id);
    }
    wait_persisted(e);
    /* The WAL deletes segments lazily, when it persists the cursors. */
    for (int i = 0; i < 1000 && file_exists(FIRST_SEGMENT); i++)
        usleep(10000);
    cr_assert(!file_exists(FIRST_SEGMENT), "the first WAL segment was never deleted");
    return n;
}

/* Opens the store again and expects "<prefix>-0" .. "<prefix>-(n-1)" to be duplicates. */
static void expect_remembered(const char *prefix, int n, const char *after)
{
    env_t e;
    env_open(&e, "");
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        cr_expect_eq(claim_one(&e, id), RL_DS_DUP, "%s forgotten after %s", id, after);
    }
    cr_expect_eq(claim_one(&e, "never-seen"), RL_DS_NEW);
    env_close(&e);
}

/* A crash: a child process opens the store, runs fn (which returns how many events it
 * made durable, under 255) and dies without closing anything: no cursor written at
 * exit, the persister maybe behind. Returns what fn returned. */
static int in_crashing_child(int (*fn)(env_t *e))
{
    pid_t pid = fork();
    int st;
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        env_t e;
        env_open(&e, "");
        int n = fn(&e);
        _exit(n >= 0 && n < 255 ? n : 255);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 255, "child status 0x%x", st);
    return WEXITSTATUS(st);
}

static int five_events(env_t *e)
{
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof(id), "crash-%d", i);
        if (claim_one(e, id) != RL_DS_NEW)
            return 255;
    }
    return 5;
}

static int events_past_first_segment(env_t *e)
{
    return fill_past_first_segment(e, "gone");
}

/* -------------------------------------------------------------------- tests -- */

Test(dstore, verdicts_new_duplicate_and_twice_in_one_request)
{
    env_t e;
    env_open(&e, "");
    const char *ids[] = {"a", "b", "a"};
    int v[3];
    cr_assert_eq(claim(&e, ids, 3, v, 0), 0);
    cr_expect(v[0] == RL_DS_NEW && v[1] == RL_DS_NEW && v[2] == RL_DS_DUP, "%d %d %d", v[0], v[1],
              v[2]);
    cr_expect_eq(claim_one(&e, "a"), RL_DS_DUP);
    cr_expect_eq(claim_one(&e, "c"), RL_DS_NEW);
    cr_expect_str_eq(rl_dstore_state(e.ds), "local");
    env_close(&e);
}

Test(dstore, failed_commit_and_release_let_the_retry_in)
{
    env_t e;
    env_open(&e, "");
    const char *id = "x";
    int v = -1;
    /* The commit step refuses (WAL full): the claim must not stay. */
    cr_expect_neq(claim(&e, &id, 1, &v, 1), 0);
    cr_expect_eq(v, RL_DS_NEW);
    cr_expect_eq(claim_one(&e, "x"), RL_DS_NEW, "the retry is taken");
    /* Appended, then its write failed: the WAL's callback releases it. */
    rl_dstore_release(e.ds, "s", &id, 1);
    cr_expect_eq(claim_one(&e, "x"), RL_DS_NEW);
    cr_expect_eq(claim_one(&e, "x"), RL_DS_DUP);
    env_close(&e);
}

Test(dstore, window_survives_a_restart_after_its_wal_segments_were_deleted)
{
    env_t e;
    env_open(&e, "");
    int n = fill_past_first_segment(&e, "evt");
    cr_assert_gt(n, 40, "a 64 KB segment holds dozens of 1 KB events");
    wait_persisted(&e);
    env_close(&e);
    /* evt-0 was in the deleted segment: only the file can know it. */
    expect_remembered("evt", n, "a restart");
}

/* What a 200 promises is durable: the child dies right after that. */
Test(dstore, window_survives_a_crash_right_after_durable)
{
    expect_remembered("crash", in_crashing_child(five_events), "a crash");
}

Test(dstore, crash_after_the_wal_let_go_of_the_segments)
{
    int n = in_crashing_child(events_past_first_segment);
    cr_assert_gt(n, 40);
    expect_remembered("gone", n, "a crash");
}

Test(dstore, shorter_window_at_restart_forgets_older_ids)
{
    env_t e;
    env_open(&e, "");
    cr_expect_eq(claim_one(&e, "old"), RL_DS_NEW);
    wait_persisted(&e);
    env_close(&e);
    /* The window is the one configured now, not the one the file was written with:
     * restarted with a 1 s window, 2 s later, the id is out of it. */
    sleep(2);
    env_open(&e, "window = 1\n");
    cr_expect_eq(claim_one(&e, "old"), RL_DS_NEW, "out of the 1 s window");
    env_close(&e);
}

Test(dstore, without_a_dedup_reader_the_window_is_memory_only)
{
    char err[256] = "";
    rl_config_t *cfg = config("");
    rl_dstore_t *ds = rl_dstore_new(cfg, NULL, NULL, err, sizeof(err));
    cr_assert_not_null(ds, "%s", err);
    cr_expect_eq(rl_dstore_rebuild(ds, err, sizeof(err)), 0);
    rl_dstore_destroy(ds);
    rl_dstore_destroy(NULL);
    rl_config_destroy(cfg);
    cr_expect(!file_exists("dedup"), "nothing written");
}
