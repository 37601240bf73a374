/* test_connguard.c -- connection limits and the request deadline
 * (relay/http/connguard.c), tested against connguard.h: the total and per-address
 * caps with their counts, IPv4 and IPv4-mapped IPv6 as one client, reservations
 * the server never opened, and the deadline thread shutting down a socket whose
 * request does not arrive in time (a socketpair stands for the client). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connguard.h"
#include "metrics.h"

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000)};
    cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
    cr_assert_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

#define SA(a) ((const struct sockaddr *)&(a)), (socklen_t)sizeof(a)

static rl_connguard_t *guard(rl_metrics_t *m, size_t total, size_t per_ip, int timeout_ms)
{
    char err[128] = "";
    rl_connguard_opts_t o = {
        .max_total = total, .max_per_ip = per_ip, .request_timeout_ms = timeout_ms, .tick_ms = 10};
    rl_connguard_t *g = rl_connguard_new(&o, m, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    return g;
}

/* The value of relay_limit_hits_total{limit="<limit>"} (0 when absent). */
static long hits(rl_metrics_t *m, const char *limit)
{
    size_t len;
    char *text = rl_metrics_render(m, &len), want[128];
    cr_assert_not_null(text);
    snprintf(want, sizeof(want), "relay_limit_hits_total{limit=\"%s\"} ", limit);
    const char *p = strstr(text, want);
    long v = p ? strtol(p + strlen(want), NULL, 10) : 0;
    free(text);
    return v;
}

/* admit + open, as the server does for a connection it serves. */
static rl_conn_t *connect_from(rl_connguard_t *g, const struct sockaddr *a, socklen_t len)
{
    if (!rl_connguard_admit(g, a, len))
        return NULL;
    rl_conn_t *c = rl_connguard_open(g, -1, a, len);
    cr_assert_not_null(c);
    return c;
}

Test(connguard, total_limit)
{
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_connguard_t *g = guard(m, 3, 100, 60000);
    struct sockaddr_in a = v4("10.0.0.1"), b = v4("10.0.0.2"), c = v4("10.0.0.3"),
                       d = v4("10.0.0.4");
    rl_conn_t *ca = connect_from(g, SA(a)), *cb = connect_from(g, SA(b)),
              *cc = connect_from(g, SA(c));
    cr_assert(ca && cb && cc);
    cr_expect_eq(rl_connguard_count(g), 3);
    cr_expect_null(connect_from(g, SA(d)), "a fourth connection with max_total 3");
    cr_expect_eq(hits(m, "max_connections"), 1);
    cr_expect_eq(hits(m, "max_connections_per_ip"), 0);
    rl_connguard_close(g, cb);
    rl_conn_t *cd = connect_from(g, SA(d));
    cr_expect_not_null(cd, "a place was freed");
    rl_connguard_close(g, ca);
    rl_connguard_close(g, cc);
    rl_connguard_close(g, cd);
    rl_connguard_close(g, NULL);
    cr_expect_eq(rl_connguard_count(g), 0);
    rl_connguard_destroy(g);
    rl_connguard_destroy(NULL);
    rl_metrics_destroy(m);
}

Test(connguard, per_address_limit)
{
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_connguard_t *g = guard(m, 100, 2, 60000);
    struct sockaddr_in a = v4("192.0.2.7"), b = v4("192.0.2.8");
    struct sockaddr_in6 mapped = v6("::ffff:192.0.2.7"), other6 = v6("2001:db8::7");
    rl_conn_t *c1 = connect_from(g, SA(a)), *c2 = connect_from(g, SA(mapped));
    cr_assert(c1 && c2);
    cr_expect_null(connect_from(g, SA(a)), "a third from one address (IPv4)");
    cr_expect_null(connect_from(g, SA(mapped)), "IPv4-mapped IPv6 is the same client");
    cr_expect_eq(hits(m, "max_connections_per_ip"), 2);
    rl_conn_t *c3 = connect_from(g, SA(b)), *c4 = connect_from(g, SA(other6));
    cr_expect(c3 && c4, "other addresses are served");
    rl_connguard_close(g, c2);
    rl_conn_t *c5 = connect_from(g, SA(a));
    cr_expect_not_null(c5, "a place of that address was freed");
    rl_connguard_close(g, c1);
    rl_connguard_close(g, c3);
    rl_connguard_close(g, c4);
    rl_connguard_close(g, c5);
    cr_expect_eq(rl_connguard_count(g), 0);
    rl_connguard_destroy(g);
    rl_metrics_destroy(m);
}

/* The server may fail to set up a connection it admitted, without telling: the
 * reservation must not stay taken forever. */
Test(connguard, reservation_never_opened_is_released)
{
    rl_connguard_t *g = guard(NULL, 1, 1, 60000);
    struct sockaddr_in a = v4("10.1.1.1"), b = v4("10.1.1.2");
    cr_expect_eq(rl_connguard_admit(g, SA(a)), 1);
    cr_expect_eq(rl_connguard_count(g), 1);
    /* Never opened: the next admit on this thread takes its place back first. */
    cr_expect_eq(rl_connguard_admit(g, SA(b)), 1, "the lost reservation still counts");
    rl_conn_t *c = rl_connguard_open(g, -1, SA(b));
    cr_assert_not_null(c);
    cr_expect_eq(rl_connguard_count(g), 1);
    rl_connguard_close(g, c);
    cr_expect_eq(rl_connguard_count(g), 0);
    /* A connection opened without an admit is still counted and released. */
    c = rl_connguard_open(g, -1, SA(a));
    cr_assert_not_null(c);
    cr_expect_eq(rl_connguard_count(g), 1);
    rl_connguard_close(g, c);
    cr_expect_eq(rl_connguard_count(g), 0);
    rl_connguard_destroy(g);
}

/* 1 when the peer of fd was shut down (reading gives EOF) within wait_ms. */
static int peer_closed(int fd, int wait_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    if (poll(&p, 1, wait_ms) <= 0)
        return 0;
    return read(fd, &c, 1) == 0;
}

Test(connguard, deadline_cuts_a_slow_request, .timeout = 60)
{
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_connguard_t *g = guard(m, 10, 10, 200);
    struct sockaddr_in a = v4("10.2.0.1");
    int slow[2], busy[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, slow), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, busy), 0);
    cr_assert(rl_connguard_admit(g, SA(a)));
    rl_conn_t *cs = rl_connguard_open(g, slow[0], SA(a));
    cr_assert(rl_connguard_admit(g, SA(a)));
    rl_conn_t *cb = rl_connguard_open(g, busy[0], SA(a));
    cr_assert(cs && cb);
    /* busy has its whole request in: it waits for the WAL, no deadline. */
    rl_connguard_received(g, cb);

    cr_expect(peer_closed(slow[1], 20000), "the slow connection was not cut");
    cr_expect_eq(hits(m, "request_timeout"), 1);
    cr_expect(!peer_closed(busy[1], 1000), "a connection being answered was cut");
    /* Answered: the next request has the full time again, and then is late too. */
    rl_connguard_done(g, cb);
    cr_expect(peer_closed(busy[1], 20000), "the next request's deadline did not apply");
    cr_expect_eq(hits(m, "request_timeout"), 2);
    /* The server closes them; the guard forgets them. */
    rl_connguard_close(g, cs);
    rl_connguard_close(g, cb);
    cr_expect_eq(rl_connguard_count(g), 0);
    for (int i = 0; i < 2; i++) {
        close(slow[i]);
        close(busy[i]);
    }
    rl_connguard_destroy(g);
    rl_metrics_destroy(m);
}
