/* err.c -- the error setter (err.h). */
#include "err.h"

#include <stdio.h>
#include <string.h>

void rl_vseterr(char *errstr, size_t errstr_size, const char *fmt, va_list ap)
{
    char buf[1024];

    if (!errstr || !errstr_size)
        return;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    snprintf(errstr, errstr_size, "%s", buf);
}

void rl_seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rl_vseterr(errstr, errstr_size, fmt, ap);
    va_end(ap);
}
