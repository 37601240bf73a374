/* headers.h -- how modules read a request's headers (and query arguments)
 * without knowing the HTTP library: a lookup by name and a walk over all. */
#ifndef RL_HEADERS_H
#define RL_HEADERS_H

/* Looks a request header (or query argument) up by name (headers
 * case-insensitively); NULL when absent. The value is borrowed from the request. */
typedef const char *(*rl_header_fn)(void *ctx, const char *name);

/* Calls fn(arg, name, value) for every header of the request, in the order
 * received; fn returns 0 to go on, anything else to stop. */
typedef void (*rl_header_each_fn)(void *ctx,
                                  int (*fn)(void *arg, const char *name, const char *value),
                                  void *arg);

#endif
