/* sig.c -- OpenSSL 3 behind the small interface of sig.h.
 *
 * The HMAC goes through EVP_MAC so that signed content made of several pieces
 * ("{id}.{timestamp}." then the raw body) is fed without copying the body. The
 * EVP_MAC algorithm object is fetched once per process: fetching looks the
 * provider up by name, which is the slow part, and a fetched EVP_MAC may be
 * shared by threads (each call has its own context). */
#include "sig.h"

#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int rl_hmac_sha256(const uint8_t *key, size_t keylen, const rl_sig_part_t *parts, size_t nparts,
                   uint8_t out[RL_SHA256_LEN])
{
    EVP_MAC_CTX *ctx = NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    size_t outlen = 0;
    int rc = -1;

    pthread_once(&hmac_once, hmac_fetch);
    if (!hmac_alg || !(ctx = EVP_MAC_CTX_new(hmac_alg)))
        goto out;
    /* An empty key is legal HMAC; OpenSSL wants a non-NULL pointer for it. */
    if (!EVP_MAC_init(ctx, keylen ? key : (const uint8_t *)"", keylen, params))
        goto out;
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len && !EVP_MAC_update(ctx, parts[i].p, parts[i].len))
            goto out;
    if (!EVP_MAC_final(ctx, out, &outlen, RL_SHA256_LEN) || outlen != RL_SHA256_LEN)
        goto out;
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

int rl_sha256_hex(const void *p, size_t len, char out[2 * RL_SHA256_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != RL_SHA256_LEN)
        return -1;
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * mdlen] = '\0';
    return 0;
}

int rl_sig_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int rl_hex_decode(const char *in, size_t len, uint8_t *out, size_t outsz)
{
    if (len % 2 || len / 2 > outsz || len / 2 > INT_MAX)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_value(in[i]), lo = hex_value(in[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(len / 2);
}

int rl_b64_decode(const char *in, size_t len, uint8_t *out, size_t outsz)
{
    size_t pad = 0;
    int n;

    /* EVP_DecodeBlock skips leading and trailing white space and counts padding
     * as zero bytes; we accept only the exact padded form and strip the padding
     * from the length ourselves. */
    if (len == 0 || len % 4 || len > INT_MAX || len / 4 * 3 > outsz)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= len - 2);
        if (!ok)
            return -1;
    }
    if (in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;
    else if (in[len - 2] == '=')
        return -1; /* "x=y" is not padding */
    n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0 || (size_t)n < pad)
        return -1;
    return n - (int)pad;
}

char *rl_b64_encode(const uint8_t *in, size_t len)
{
    /* EVP_EncodeBlock takes an int length and writes 4 bytes per 3, plus a NUL. */
    if (len > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}
