/* err.h -- the one error setter behind every `char *errstr, size_t errstr_size`
 * pair in relay (as Redis's anetSetError): a function that fails writes why
 * into the caller's buffer, truncated to fit, and the caller decides whether to
 * log it, answer with it or pass it up. */
#ifndef RL_ERR_H
#define RL_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* snprintf into errstr; does nothing when errstr is NULL or errstr_size is 0.
 * errstr may be one of the arguments only if it is not changed before it is
 * read (the message is formatted into a copy first). */
void rl_seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rl_vseterr(char *errstr, size_t errstr_size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
