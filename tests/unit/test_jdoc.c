/* test_jdoc.c -- the JSON tokenizer (relay/event/jdoc.c), against jdoc.h:
 * table-driven valid and invalid documents (each also given to jansson, which
 * must agree except on numbers it finds too big), the depth limit, escapes and
 * surrogates, UTF-8, numbers, lookups, raw spans and out-of-memory injection. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "jdoc.h"

static rl_jdoc_t *doc(void)
{
    rl_jdoc_t *d = rl_jdoc_new(NULL, 0);
    cr_assert_not_null(d);
    return d;
}

static int parse(rl_jdoc_t *d, const char *s, int depth)
{
    char err[256];
    return rl_jdoc_parse(d, s, strlen(s), depth, err, sizeof(err));
}

typedef struct doc_case {
    const char *text;
    int ok;            /* jdoc accepts */
    int jansson_agree; /* jansson (JSON_DECODE_ANY) gives the same verdict */
} doc_case_t;

static const doc_case_t cases[] = {
    {"{}", 1, 1},
    {"[]", 1, 1},
    {" {\"a\" : [1, -2.5e+3, true, false, null, \"x\"]} \n", 1, 1},
    {"\"scalar\"", 1, 1},
    {"0", 1, 1},
    {"-0", 1, 1},
    {"1E9", 1, 1},
    {"{\"a\":1,\"a\":2}", 1, 1},
    {"\"\\u00e9\\ud83d\\ude00\\n\\/\"", 1, 1},
    {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", 1, 1},
    {"99999999999999999999999", 1, 0}, /* jansson: too big integer */
    {"1e400", 1, 0},                   /* jansson: real number overflow */
    {"", 0, 1},
    {"   ", 0, 1},
    {"{", 0, 1},
    {"[1,]", 0, 1},
    {"{\"a\":1,}", 0, 1},
    {"{\"a\" 1}", 0, 1},
    {"{1:2}", 0, 1},
    {"[1 2]", 0, 1},
    {"01", 0, 1},
    {"-", 0, 1},
    {"1.", 0, 1},
    {".5", 0, 1},
    {"1e", 0, 1},
    {"+1", 0, 1},
    {"tru", 0, 1},
    {"truex", 0, 1},
    {"nul", 0, 1},
    {"[NaN]", 0, 1},
    {"{} {}", 0, 1},
    {"[\"a\"]x", 0, 1},
    {"\"unterminated", 0, 1},
    {"\"tab\there\"", 0, 1},
    {"\"\\x\"", 0, 1},
    {"\"\\u12\"", 0, 1},
    {"\"\\u0000\"", 0, 1},
    {"\"\\ud800\"", 0, 1},
    {"\"\\ud800\\u0041\"", 0, 1},
    {"\"\\udc00\"", 0, 1},
    {"\"\xff\"", 0, 1},
    {"\"\xc0\xaf\"", 0, 1},         /* overlong */
    {"\"\xed\xa0\x80\"", 0, 1},     /* an encoded surrogate */
    {"\"\xf4\x90\x80\x80\"", 0, 1}, /* above U+10FFFF */
    {"\"\xe2\x82\"", 0, 1},         /* truncated */
    {"[1]\x00", 0, 1},
};

Test(jdoc, table_agrees_with_jansson)
{
    rl_jdoc_t *d = doc();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].text;
        size_t len = strlen(s) + (i == sizeof(cases) / sizeof(cases[0]) - 1); /* the NUL one */
        char err[256] = "";
        int rc = rl_jdoc_parse(d, s, len, 64, err, sizeof(err));
        cr_expect_eq(rc == 0, cases[i].ok, "case %zu '%s': rc %d (%s)", i, s, rc, err);
        if (rc != 0)
            cr_expect(err[0], "case %zu: no reason", i);
        json_t *j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
        cr_expect_eq(j != NULL, cases[i].jansson_agree ? cases[i].ok : !cases[i].ok,
                     "case %zu '%s': jansson disagrees", i, s);
        json_decref(j);
    }
    rl_jdoc_destroy(d);
}

Test(jdoc, depth_limit_is_exact)
{
    rl_jdoc_t *d = doc();

    cr_expect_eq(parse(d, "[[[]]]", 3), 0);
    cr_expect_eq(parse(d, "[[[]]]", 2), RL_JDOC_TOO_DEEP);
    cr_expect_eq(parse(d, "{\"a\":{\"b\":[1]}}", 3), 0);
    cr_expect_eq(parse(d, "{\"a\":{\"b\":[1]}}", 2), RL_JDOC_TOO_DEEP);
    cr_expect_eq(parse(d, "[\"[[[[[[\"]", 1), 0, "brackets in strings do not count");
    cr_expect_eq(parse(d, "[[],[],[[]]]", 3), 0, "siblings do not add up");
    cr_expect_eq(parse(d, "1", 0), 0);
    cr_expect_eq(parse(d, "[]", 0), RL_JDOC_TOO_DEEP);
    rl_jdoc_destroy(d);
}

Test(jdoc, strings_decode_escapes_and_surrogates)
{
    rl_jdoc_t *d = doc();
    size_t n;

    cr_assert_eq(parse(d,
                       "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\", "
                       "\"plain \xc3\xa9\", \"\"]",
                       8),
                 0);
    int v = rl_jdoc_first(d, 0);
    cr_expect_str_eq(rl_jdoc_str(d, v, &n), "a\"b\\c/d\b\f\n\r\t");
    cr_expect_eq(n, 12);
    v = rl_jdoc_next(d, 0, v);
    cr_expect_str_eq(rl_jdoc_str(d, v, &n), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    cr_expect_eq(n, 9);
    v = rl_jdoc_next(d, 0, v);
    const char *first = rl_jdoc_str(d, v, NULL);
    cr_expect_str_eq(first, "plain \xc3\xa9");
    cr_expect_eq(rl_jdoc_str(d, v, NULL), first, "decoded once, then cached");
    v = rl_jdoc_next(d, 0, v);
    cr_expect_str_eq(rl_jdoc_str(d, v, &n), "");
    cr_expect_eq(rl_jdoc_next(d, 0, v), -1);
    cr_expect_null(rl_jdoc_str(d, 0, NULL), "not a string");
    rl_jdoc_destroy(d);
}

Test(jdoc, numbers)
{
    rl_jdoc_t *d = doc();
    long long i;
    double r;

    cr_assert_eq(parse(d,
                       "[0,-0,9223372036854775807,-9223372036854775808,9223372036854775808,"
                       "1.5,-2e3,123456789012]",
                       2),
                 0);
    int v = rl_jdoc_first(d, 0);
    cr_expect(rl_jdoc_int(d, v, &i) == 0 && i == 0);
    v = rl_jdoc_next(d, 0, v);
    cr_expect(rl_jdoc_int(d, v, &i) == 0 && i == 0);
    v = rl_jdoc_next(d, 0, v);
    cr_expect(rl_jdoc_int(d, v, &i) == 0 && i == LLONG_MAX);
    v = rl_jdoc_next(d, 0, v);
    cr_expect(rl_jdoc_int(d, v, &i) == 0 && i == LLONG_MIN);
    v = rl_jdoc_next(d, 0, v);
    cr_expect_eq(rl_jdoc_int(d, v, &i), -1, "overflows a long long");
    cr_expect(rl_jdoc_is_integer(d, v));
    v = rl_jdoc_next(d, 0, v);
    cr_expect_eq(rl_jdoc_int(d, v, &i), -1, "a fraction");
    cr_expect(rl_jdoc_real(d, v, &r) == 0 && r == 1.5);
    v = rl_jdoc_next(d, 0, v);
    cr_expect(!rl_jdoc_is_integer(d, v));
    cr_expect(rl_jdoc_real(d, v, &r) == 0 && r == -2000.0);
    v = rl_jdoc_next(d, 0, v);
    cr_expect(rl_jdoc_int(d, v, &i) == 0 && i == 123456789012LL);
    cr_expect_eq(rl_jdoc_int(d, 0, &i), -1, "an array is no number");
    rl_jdoc_destroy(d);
}

Test(jdoc, lookup_and_raw_spans)
{
    rl_jdoc_t *d = doc();
    const char *body =
        "{ \"a\" : 1, \"b\":{\"c\": [1, {\"d\":2}] }, \"a\":\"last\", \"e\\u0073c\":3 }";
    size_t n;

    cr_assert_eq(parse(d, body, 8), 0);
    cr_expect_eq(rl_jdoc_type(d, 0), RL_JOBJECT);
    cr_expect_eq(rl_jdoc_count(d, 0), 4);
    cr_expect_str_eq(rl_jdoc_getstr(d, 0, "a"), "last", "the last repeated key wins");
    int b = rl_jdoc_get(d, 0, "b");
    const char *raw = rl_jdoc_raw(d, b, &n);
    cr_expect(n == strlen("{\"c\": [1, {\"d\":2}] }") &&
                  !memcmp(raw, "{\"c\": [1, {\"d\":2}] }", n),
              "raw span: %.*s", (int)n, raw);
    int c = rl_jdoc_get(d, b, "c");
    cr_expect_eq(rl_jdoc_type(d, c), RL_JARRAY);
    cr_expect_eq(rl_jdoc_count(d, c), 2);
    int e = rl_jdoc_next(d, c, rl_jdoc_first(d, c));
    cr_expect_eq(rl_jdoc_type(d, rl_jdoc_get(d, e, "d")), RL_JNUMBER);
    cr_expect_eq(rl_jdoc_next(d, c, e), -1);
    long long x;
    cr_expect(rl_jdoc_int(d, rl_jdoc_get(d, 0, "esc"), &x) == 0 && x == 3, "an escaped key");
    cr_expect_eq(rl_jdoc_get(d, 0, "zz"), -1);
    cr_expect_eq(rl_jdoc_get(d, c, "a"), -1, "not an object");
    cr_expect_eq(rl_jdoc_type(d, -1), RL_JNONE);
    cr_expect_eq(rl_jdoc_first(d, rl_jdoc_get(d, 0, "a")), -1);
    raw = rl_jdoc_raw(d, 0, &n);
    cr_expect_eq(n, strlen(body) - 0, "the root spans the whole body without outer blanks");
    rl_jdoc_destroy(d);
}

Test(jdoc, errors_say_where)
{
    rl_jdoc_t *d = doc();
    char err[256];

    cr_expect_eq(rl_jdoc_parse(d, "{\n  \"a\": x}", 11, 8, err, sizeof(err)), RL_JDOC_SYNTAX);
    cr_expect(strstr(err, "line 2"), "%s", err);
    cr_expect_eq(rl_jdoc_parse(d, "[[1]]", 5, 1, err, sizeof(err)), RL_JDOC_TOO_DEEP);
    cr_expect(strstr(err, "deeper than 1"), "%s", err);
    cr_expect_eq(rl_jdoc_type(d, 0), RL_JNONE, "a failed parse leaves no tokens");
    rl_jdoc_destroy(d);
}

Test(jdoc, out_of_memory_is_sticky_until_the_next_parse)
{
    rl_jdoc_t *d = doc();
    char err[256], body[6000];

    /* A string long enough that its decoded copy needs the arena to grow. */
    memset(body, 'v', sizeof(body));
    memcpy(body, "{\"k\":\"", 6);
    memcpy(body + sizeof(body) - 11, "\",\"n\":[1]}", 10);
    body[sizeof(body) - 1] = '\0';

    rl_jdoc_test_fail_after(d, 0);
    cr_expect_eq(rl_jdoc_parse(d, body, sizeof(body) - 1, 8, err, sizeof(err)), RL_JDOC_NOMEM);
    cr_expect(rl_jdoc_nomem(d));
    rl_jdoc_test_fail_after(d, 1); /* the tokens, then not the strings */
    cr_expect_eq(rl_jdoc_parse(d, body, sizeof(body) - 1, 8, err, sizeof(err)), 0);
    cr_expect(!rl_jdoc_nomem(d), "cleared by the parse");
    cr_expect_null(rl_jdoc_getstr(d, 0, "k"));
    cr_expect(rl_jdoc_nomem(d));
    rl_jdoc_test_fail_after(d, -1);
    cr_expect_eq(rl_jdoc_parse(d, body, sizeof(body) - 1, 8, err, sizeof(err)), 0);
    cr_expect(!rl_jdoc_nomem(d));
    cr_expect_eq(strlen(rl_jdoc_getstr(d, 0, "k")), sizeof(body) - 17);
    long before = rl_jdoc_test_allocs(d);
    cr_expect_eq(rl_jdoc_parse(d, body, sizeof(body) - 1, 8, err, sizeof(err)), 0);
    cr_expect_not_null(rl_jdoc_getstr(d, 0, "k"));
    cr_expect_eq(rl_jdoc_test_allocs(d), before, "a second parse reuses the arena");
    rl_jdoc_destroy(d);
    rl_jdoc_destroy(NULL);
}

/* RFC 6901's own examples (section 5), and what names nothing. */
Test(jdoc, json_pointer)
{
    static const char *body = "{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,"
                              "\"g|h\":4,\"i\\\\j\":5,\"k\\\"l\":6,\" \":7,\"m~n\":8,"
                              "\"deep\":{\"x\":[{\"y\":\"z\"}]},\"dup\":1,\"dup\":2}";
    static const struct {
        const char *ptr, *raw; /* NULL: names nothing */
    } cases[] = {
        {"/foo", "[\"bar\",\"baz\"]"},
        {"/foo/0", "\"bar\""},
        {"/foo/1", "\"baz\""},
        {"/", "0"},
        {"/a~1b", "1"},
        {"/c%d", "2"},
        {"/e^f", "3"},
        {"/g|h", "4"},
        {"/i\\j", "5"},
        {"/k\"l", "6"},
        {"/ ", "7"},
        {"/m~0n", "8"},
        {"/deep/x/0/y", "\"z\""},
        {"/dup", "2"},
        {"/foo/2", NULL},
        {"/foo/01", NULL},
        {"/foo/-", NULL},
        {"/foo/", NULL},
        {"/foo/0/x", NULL},
        {"/missing", NULL},
        {"foo", NULL},
        {"/deep/x/0/y/z", NULL},
    };
    rl_jdoc_t *d = doc();
    size_t len;

    cr_assert_eq(parse(d, body, 64), 0);
    cr_expect_eq(rl_jdoc_pointer(d, 0, ""), 0, "the empty pointer is the whole document");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int v = rl_jdoc_pointer(d, 0, cases[i].ptr);
        if (!cases[i].raw) {
            cr_expect_eq(v, -1, "%s names something", cases[i].ptr);
            continue;
        }
        const char *raw = rl_jdoc_raw(d, v, &len);
        cr_expect(raw && len == strlen(cases[i].raw) && !memcmp(raw, cases[i].raw, len), "%s: %.*s",
                  cases[i].ptr, raw ? (int)len : 0, raw ? raw : "");
    }
    cr_expect_eq(rl_jdoc_pointer(d, -1, "/foo"), -1);
    rl_jdoc_destroy(d);
}
