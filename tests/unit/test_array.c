/* test_array.c -- the growable-array helper (relay/common/array.c), against
 * array.h: growth, the overflow check, and the array left intact on failure. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "array.h"

Test(array, grows_geometrically_from_first)
{
    size_t cap = 0;
    int *v = rl_array_grow(NULL, &cap, 1, sizeof(int), 8);
    cr_assert_not_null(v);
    cr_expect_eq(cap, 8);
    for (int i = 0; i < 8; i++)
        v[i] = i;
    cr_expect_eq(rl_array_grow(v, &cap, 8, sizeof(int), 8), v, "no growth needed");
    v = rl_array_grow(v, &cap, 9, sizeof(int), 8);
    cr_assert_not_null(v);
    cr_expect_eq(cap, 16);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(v[i], i, "element %d kept", i);
    v = rl_array_grow(v, &cap, 100, sizeof(int), 8);
    cr_assert_not_null(v);
    cr_expect_eq(cap, 100, "a jump past twice the capacity gets what it needs");
    free(v);
}

Test(array, overflow_leaves_the_array_alone)
{
    size_t cap = 4;
    uint64_t *v = calloc(cap, sizeof(*v));
    cr_assert_not_null(v);
    v[3] = 42;
    cr_expect_null(rl_array_grow(v, &cap, SIZE_MAX / 4, sizeof(*v), 8));
    cr_expect_eq(cap, 4);
    cr_expect_eq(v[3], 42);
    free(v);
}
