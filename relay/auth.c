/* auth.c -- compares in constant time (OpenSSL's CRYPTO_memcmp), so the time a
 * wrong token takes to reject says nothing about how much of it was right. */
#include "auth.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int token_check(const rl_source_conf_t *src, rl_header_fn header, void *ctx,
                       const char **reason)
{
    const char *got = header(ctx, src->token_header);
    const char *want = src->secret;
    size_t gl, wl;

    if (!got) {
        *reason = "missing_token";
        return -1;
    }
    /* For Authorization the token is a bearer credential: "Bearer <secret>". */
    if (!strcasecmp(src->token_header, "Authorization")) {
        if (strncasecmp(got, "Bearer ", 7) != 0) {
            *reason = "bad_token";
            return -1;
        }
        got += 7;
        while (*got == ' ')
            got++;
    }
    gl = strlen(got);
    wl = strlen(want);
    if (gl != wl || CRYPTO_memcmp(got, want, wl) != 0) {
        *reason = "bad_token";
        return -1;
    }
    return 0;
}

int rl_auth_check(const rl_source_conf_t *src, rl_header_fn header, void *ctx,
                  const char **reason)
{
    if (!strcmp(src->auth, "none"))
        return 0;
    if (!strcmp(src->auth, "token"))
        return token_check(src, header, ctx, reason);
    *reason = "unknown_scheme";
    return -1;
}
