/* array.h -- the one growable-array helper: room for `need` elements, grown
 * geometrically, with the multiplication checked for overflow. */
#ifndef RL_ARRAY_H
#define RL_ARRAY_H

#include <stddef.h>

/* Returns an array with room for at least `need` elements of `size` bytes:
 * `v` itself when *cap already holds them, else `v` reallocated to the larger
 * of twice *cap, `first` and `need` elements, with *cap updated. On overflow of
 * the byte count or out of memory returns NULL and leaves `v` (still owned by
 * the caller, still valid) and *cap unchanged. v may be NULL with *cap 0. */
void *rl_array_grow(void *v, size_t *cap, size_t need, size_t size, size_t first);

#endif
