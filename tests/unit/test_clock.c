/* test_clock.c -- the clocks and timed waits (relay/common/clock.c), against
 * clock.h, and the promise behind them: no timed wait in relay runs on the wall
 * clock, so a wall-clock step (NTP, a resumed VM) neither stretches nor cuts it.
 *
 * The machine's clock is not touched. This binary defines clock_gettime itself,
 * and relay's code, linked in statically, calls this one: it answers the true
 * time, except that CLOCK_REALTIME is moved `step_s` seconds ahead. A deadline
 * computed from that wall clock and handed to a condition variable on the wall
 * clock lies `step_s` seconds in the kernel's future: the wait would last an
 * hour. Each test below would then hit its Criterion timeout. The first test
 * shows that the step is seen by relay's code and that the check can fail. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "connguard.h"
#include "tmpdir.h"
#include "wal.h"

static _Atomic long step_s;

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int rc = (int)syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && id == CLOCK_REALTIME)
        ts->tv_sec += atomic_load(&step_s);
    return rc;
}

#define HOUR 3600

/* The wall clock relay reads has stepped; a wait on the wall clock is stretched
 * by the step (2 s here, so that this control test stays short); the same wait
 * through clock.h is not. */
Test(clock, a_wall_clock_wait_is_stretched_and_ours_is_not, .timeout = 30)
{
    struct timespec real;
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &real);
    atomic_store(&step_s, 2);
    int64_t seen = rl_clock_wall_ms(), truth = (int64_t)real.tv_sec * 1000 + real.tv_nsec / 1000000;
    cr_assert_geq(seen - truth, 1900, "relay's code did not see the stepped clock (%lld ms)",
                  (long long)(seen - truth));

    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t wall, mono;
    pthread_cond_init(&wall, NULL); /* the default: times out on CLOCK_REALTIME */
    cr_assert_eq(rl_cond_init(&mono), 0);

    pthread_mutex_lock(&mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 100 * 1000000L;
    dl.tv_sec += dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    int64_t t0 = rl_clock_mono_ms();
    while (pthread_cond_timedwait(&wall, &mu, &dl) != ETIMEDOUT) {
    }
    int64_t stretched = rl_clock_mono_ms() - t0;

    t0 = rl_clock_mono_ms();
    while (rl_cond_wait_ms(&mono, &mu, 100 - (rl_clock_mono_ms() - t0)) != ETIMEDOUT) {
    }
    int64_t ours = rl_clock_mono_ms() - t0;
    pthread_mutex_unlock(&mu);

    cr_expect_geq(stretched, 1500, "a wall-clock wait of 100 ms took %lld ms",
                  (long long)stretched);
    cr_expect_geq(ours, 100, "rl_cond_wait_ms returned early: %lld ms", (long long)ours);
    cr_expect_lt(ours, 1000, "rl_cond_wait_ms of 100 ms took %lld ms", (long long)ours);
    pthread_cond_destroy(&wall);
    pthread_cond_destroy(&mono);
}

Test(clock, until_a_passed_deadline_does_not_wait)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    cr_assert_eq(rl_cond_init(&cv), 0);
    pthread_mutex_lock(&mu);
    cr_expect_eq(rl_cond_wait_until(&cv, &mu, rl_clock_mono_ms() - 1), ETIMEDOUT);
    cr_expect_eq(rl_cond_wait_ms(&cv, &mu, 0), ETIMEDOUT);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
}

/* The slowloris guard's tick: a request that does not arrive is still cut after
 * its timeout with the wall clock an hour ahead. */
Test(clock, connguard_deadline_ignores_a_wall_clock_step, .timeout = 30)
{
    atomic_store(&step_s, HOUR);
    char err[128] = "";
    rl_connguard_opts_t o = {
        .max_total = 4, .max_per_ip = 4, .request_timeout_ms = 200, .tick_ms = 50};
    rl_connguard_t *g = rl_connguard_new(&o, NULL, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    int sp[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000)};
    a.sin_addr.s_addr = htonl(0x0a000001); /* 10.0.0.1 */
    cr_assert(rl_connguard_admit(g, (struct sockaddr *)&a, sizeof(a)));
    rl_conn_t *c = rl_connguard_open(g, sp[0], (struct sockaddr *)&a, sizeof(a));
    cr_assert_not_null(c);

    struct pollfd p = {sp[1], POLLIN, 0};
    char ch;
    int cut = poll(&p, 1, 5000) > 0 && read(sp[1], &ch, 1) == 0;
    cr_expect(cut, "a slow request was not cut within 5 s of its 200 ms deadline");
    rl_connguard_close(g, c);
    rl_connguard_destroy(g);
    close(sp[0]);
    close(sp[1]);
}

static char waldir[128];

static void wal_setup(void)
{
    tu_tmpdir_make(waldir, sizeof(waldir), "clock");
}

static void wal_teardown(void)
{
    tu_tmpdir_remove(waldir);
}

static rl_wal_t *wal_open1(const char *const *readers)
{
    char err[256] = "";
    rl_wal_opts_t o = {.dir = waldir,
                       .segment_size = 1 << 20,
                       .max_size = 64 << 20,
                       .fsync = 0,
                       .readers = readers,
                       .nreaders = 1};
    rl_wal_t *w = rl_wal_open(&o, NULL, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    return w;
}

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls, status;
} waiter_t;

static void waiter_cb(void *opaque, int status)
{
    waiter_t *wt = opaque;
    pthread_mutex_lock(&wt->m);
    wt->calls++;
    wt->status = status;
    pthread_cond_broadcast(&wt->c);
    pthread_mutex_unlock(&wt->m);
}

/* A sink's reader waiting for records, and an ack = publish waiter whose sink
 * never acknowledges: both give up on time with the wall clock an hour ahead. */
Test(clock, wal_waits_ignore_a_wall_clock_step, .init = wal_setup, .fini = wal_teardown,
     .timeout = 30)
{
    static const char *const one[] = {"kafka"};
    atomic_store(&step_s, HOUR);
    rl_wal_t *w = wal_open1(one);
    rl_wal_reader_t *r = rl_wal_reader(w, "kafka");
    cr_assert_not_null(r);
    char err[256] = "";
    rl_wal_rec_t rec;

    int64_t t0 = rl_clock_mono_ms();
    cr_expect_eq(rl_wal_reader_next(r, &rec, 200, err, sizeof(err)), 0, "%s", err);
    int64_t took = rl_clock_mono_ms() - t0;
    cr_expect_lt(took, 5000, "a reader's 200 ms wait took %lld ms", (long long)took);

    uint8_t payload[16] = "x";
    struct iovec iov = {payload, sizeof(payload)};
    uint64_t seq = 0;
    cr_assert_eq(rl_wal_append_sync(w, &iov, 1, &seq), RL_WAL_OK);
    waiter_t wt = {.m = PTHREAD_MUTEX_INITIALIZER, .status = 99};
    cr_assert_eq(rl_cond_init(&wt.c), 0);
    t0 = rl_clock_mono_ms();
    cr_assert_eq(rl_wal_await_published(w, seq, t0 + 200, waiter_cb, &wt), RL_WAL_OK);
    pthread_mutex_lock(&wt.m);
    while (!wt.calls && rl_clock_mono_ms() - t0 < 5000)
        rl_cond_wait_ms(&wt.c, &wt.m, 100);
    pthread_mutex_unlock(&wt.m);
    took = rl_clock_mono_ms() - t0;
    cr_expect_eq(wt.calls, 1, "the publish waiter's 200 ms deadline had not fired after %lld ms",
                 (long long)took);
    cr_expect_eq(wt.status, RL_WAL_TIMEOUT);
    rl_wal_close(w);
    pthread_cond_destroy(&wt.c);
}

/* rl_clock_parse_ms keeps the milliseconds that rl_clock_parse_time drops, and
 * rl_clock_format_ms writes them back: the channel state's times go both ways. */
Test(clock, times_in_milliseconds)
{
    static const struct {
        const char *in;
        int64_t ms;
    } ok[] = {
        {"2026-12-07T08:01:18Z", 1796630478000LL},
        {"2026-12-07T08:01:18.5Z", 1796630478500LL},
        {"2026-12-07T08:01:18.123456Z", 1796630478123LL},
        {"2026-12-07T09:01:18.250+01:00", 1796630478250LL},
        {"1796630478", 1796630478000LL},    /* seconds */
        {"1796630478123", 1796630478123LL}, /* milliseconds */
    };
    static const char *const bad[] = {"", "2026-12-07 08:01:18Z", "2026-12-07T08:01:18",
                                      "2026-13-07T08:01:18Z", "soon"};
    char buf[40];
    int64_t ms, secs;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(rl_clock_parse_ms(ok[i].in, 1, &ms), 0, "%s", ok[i].in);
        cr_expect_eq(ms, ok[i].ms, "%s: %lld", ok[i].in, (long long)ms);
        cr_assert_eq(rl_clock_parse_time(ok[i].in, 1, &secs), 0, "%s", ok[i].in);
        cr_expect_eq(secs, ok[i].ms / 1000, "%s: %lld s", ok[i].in, (long long)secs);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(rl_clock_parse_ms(bad[i], 1, &ms), -1, "'%s' was taken", bad[i]);
    cr_expect_eq(rl_clock_parse_ms("2026-12-07T08:01:18Z", 0, &ms), -1, "RFC 3339 not allowed");

    cr_expect_str_eq(rl_clock_format_ms(1796630478123LL, buf, sizeof(buf)),
                     "2026-12-07T08:01:18.123Z");
    cr_expect_str_eq(rl_clock_format_ms(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
    cr_expect_str_eq(rl_clock_format_ms(1796630478123LL, buf, 10), "", "too small: empty");
    cr_assert_eq(rl_clock_parse_ms(rl_clock_format_ms(1796630478007LL, buf, sizeof(buf)), 1, &ms),
                 0);
    cr_expect_eq(ms, 1796630478007LL, "a formatted time parses back");
}
