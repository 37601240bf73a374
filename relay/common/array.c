/* array.c -- the growable-array helper (array.h). */
#include "array.h"

#include <stdint.h>
#include <stdlib.h>

void *rl_array_grow(void *v, size_t *cap, size_t need, size_t size, size_t first)
{
    size_t c = *cap;

    if (need <= c)
        return v;
    c = c > SIZE_MAX / 2 ? SIZE_MAX : c * 2;
    if (c < first)
        c = first;
    if (c < need)
        c = need;
    if (size && c > SIZE_MAX / size)
        return NULL;
    void *p = realloc(v, c * size);
    if (p)
        *cap = c;
    return p;
}
