/* test_redis_conn.c -- Redis URLs (relay/common/redis_conn.c), shared by the Redis sink and
 * the shared dedup window. Connecting needs a server: the system tests do that. */
#include <criterion/criterion.h>
#include <string.h>

#include "redis_conn.h"

static rl_redis_target_t parse_ok(const char *url)
{
    rl_redis_target_t t;
    char err[128] = "";
    cr_assert_eq(rl_redis_target_parse(&t, url, err, sizeof(err)), 0, "%s: %s", url, err);
    return t;
}

Test(redis_conn, host_port_db_password)
{
    rl_redis_target_t t = parse_ok("redis://127.0.0.1:6380/3");
    cr_expect_str_eq(t.host, "127.0.0.1");
    cr_expect_eq(t.port, 6380);
    cr_expect_eq(t.db, 3);
    cr_expect_str_eq(t.password, "");
    cr_expect_str_eq(t.unix_path, "");

    t = parse_ok("redis://:s3cret@cache.example/1");
    cr_expect_str_eq(t.host, "cache.example");
    cr_expect_eq(t.port, 6379, "default port");
    cr_expect_eq(t.db, 1);
    cr_expect_str_eq(t.password, "s3cret");

    cr_expect_str_eq(t.user, "", "no user: AUTH password");

    /* user:password (ACL form): AUTH user password. */
    t = parse_ok("redis://relay:p@ss@h:7000");
    cr_expect_str_eq(t.user, "relay");
    cr_expect_str_eq(t.password, "p@ss");
    cr_expect_str_eq(t.host, "h");
    cr_expect_eq(t.db, 0);

    t = parse_ok("redis://[::1]:6390/0");
    cr_expect_str_eq(t.host, "::1");
    cr_expect_eq(t.port, 6390);

    t = parse_ok("redis://");
    cr_expect_str_eq(t.host, "127.0.0.1", "empty host: loopback");
}

Test(redis_conn, unix_socket)
{
    rl_redis_target_t t = parse_ok("unix:///run/redis/redis.sock?db=2");
    cr_expect_str_eq(t.unix_path, "/run/redis/redis.sock");
    cr_expect_eq(t.db, 2);
    t = parse_ok("unix:///tmp/r.sock");
    cr_expect_str_eq(t.unix_path, "/tmp/r.sock");
    cr_expect_eq(t.db, 0);
}

Test(redis_conn, bad_port)
{
    rl_redis_target_t t;
    char err[128] = "";
    cr_expect_eq(rl_redis_target_parse(&t, "redis://h:70000/0", err, sizeof(err)), -1);
    cr_expect_neq(err[0], '\0');
    cr_expect_eq(rl_redis_target_parse(&t, "redis://h:0", err, sizeof(err)), -1);
}
