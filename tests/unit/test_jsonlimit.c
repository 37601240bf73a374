/* test_jsonlimit.c -- the nesting-depth pre-check of request bodies
 * (relay/ingest/jsonlimit.c), against jsonlimit.h: brackets inside strings and escapes
 * do not count, the boundary is exact, any bytes are safe. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "jsonlimit.h"

static int too_deep(const char *s, int max)
{
    return rl_json_too_deep((const uint8_t *)s, strlen(s), max);
}

/* n arrays inside one another: "[[[...]]]". */
static char *nested(int n, char open, char close)
{
    char *s = malloc((size_t)n * 2 + 1);
    cr_assert_not_null(s);
    memset(s, open, (size_t)n);
    memset(s + n, close, (size_t)n);
    s[2 * n] = '\0';
    return s;
}

Test(jsonlimit, boundary_is_exact)
{
    for (int max = 1; max <= 70; max++) {
        char *ok = nested(max, '[', ']'), *over = nested(max + 1, '{', '}');
        cr_expect_eq(too_deep(ok, max), 0, "depth %d with max %d", max, max);
        cr_expect_eq(too_deep(over, max), 1, "depth %d with max %d", max + 1, max);
        free(ok);
        free(over);
    }
    cr_expect_eq(too_deep("{\"a\":[1,{\"b\":[2]}],\"c\":{}}", 4), 0);
    cr_expect_eq(too_deep("{\"a\":[1,{\"b\":[2]}],\"c\":{}}", 3), 1);
    cr_expect_eq(too_deep("[][][][][][][][][][][]", 1), 0, "siblings are not depth");
    cr_expect_eq(too_deep("", 1), 0);
    cr_expect_eq(too_deep("42", 1), 0);
}

Test(jsonlimit, strings_do_not_count)
{
    cr_expect_eq(too_deep("{\"k\":\"[[[[[[[[[[{{{{{{{\"}", 1), 0);
    cr_expect_eq(too_deep("[\"\\\"[[[[\"]", 1), 0, "an escaped quote does not end the string");
    cr_expect_eq(too_deep("[\"\\\\\",[[]]]", 2), 1, "an escaped backslash does");
    cr_expect_eq(too_deep("[\"\\\\\",[[]]]", 3), 0);
    cr_expect_eq(too_deep("\"unterminated [[[[[[", 1), 0);
}

/* Agrees with jansson on what it parses: a body jansson reads at depth d is
 * judged by depth d. */
Test(jsonlimit, agrees_with_the_parser)
{
    static const char *const bodies[] = {
        "{\"messages\":[{\"id\":\"x\",\"text\":{\"body\":\"]}\"}}],\"event\":{\"type\":\"m\"}}",
        "[[1,[2,[3,[4]]]],[[[[5]]]]]",
        "{\"a\":{\"b\":{\"c\":{\"d\":\"\\u005b\\u005b\"}}}}",
    };
    static const int depth[] = {4, 5, 4};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *j = json_loads(bodies[i], 0, NULL);
        cr_assert_not_null(j, "test bug: %s", bodies[i]);
        json_decref(j);
        cr_expect_eq(too_deep(bodies[i], depth[i]), 0, "%s at %d", bodies[i], depth[i]);
        cr_expect_eq(too_deep(bodies[i], depth[i] - 1), 1, "%s at %d", bodies[i], depth[i] - 1);
    }
}

Test(jsonlimit, unbalanced_and_binary_input)
{
    cr_expect_eq(too_deep("]]]]]]]]]]]][[", 2), 0, "closers first do not go negative");
    cr_expect_eq(too_deep("]]]]]]]]]]]][[[", 2), 1);
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    rl_json_too_deep(junk, sizeof(junk), 3); /* any answer: it must only not crash */
    cr_expect_eq(rl_json_too_deep((const uint8_t *)"[\"\\", 3, 1), 0, "escape at the very end");
}
