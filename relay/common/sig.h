/* sig.h -- the cryptographic primitives of request authentication, all from
 * OpenSSL: HMAC-SHA256 over several pieces (no copy of the body), Base64 and
 * constant-time comparison. Nothing here is hand-written crypto; the hex
 * decoder is plain text parsing.
 *
 * Every function is thread-safe and allocation-free unless it says otherwise. */
#ifndef RL_SIG_H
#define RL_SIG_H

#include <stddef.h>
#include <stdint.h>

#define RL_SHA256_LEN 32

/* One piece of signed content. */
typedef struct rl_sig_part {
    const void *p;
    size_t len;
} rl_sig_part_t;

/* HMAC-SHA256(key, parts[0] || parts[1] || ...) into out. 0, or -1 when OpenSSL
 * fails (out of memory). */
int rl_hmac_sha256(const uint8_t *key, size_t keylen, const rl_sig_part_t *parts, size_t nparts,
                   uint8_t out[RL_SHA256_LEN]);

/* SHA-256 of len bytes into out, as lower-case hex (65 bytes with the NUL).
 * 0, or -1 when OpenSSL fails. */
int rl_sha256_hex(const void *p, size_t len, char out[2 * RL_SHA256_LEN + 1]);

/* 1 when the n bytes at a and b are equal, in time that does not depend on
 * where they differ (CRYPTO_memcmp). */
int rl_sig_equal(const void *a, const void *b, size_t n);

/* Decodes `len` hex digits (either case; len even) into out. Returns the number
 * of bytes, or -1 when the text is not hex or does not fit outsz. */
int rl_hex_decode(const char *in, size_t len, uint8_t *out, size_t outsz);

/* Decodes padded standard Base64 (RFC 4648, len a multiple of 4) into out.
 * Returns the number of bytes, or -1 when the text is not Base64 or does not
 * fit outsz (which needs len / 4 * 3 bytes). */
int rl_b64_decode(const char *in, size_t len, uint8_t *out, size_t outsz);

/* Standard padded Base64 of len bytes: malloc'd, NUL-terminated (caller frees);
 * NULL on out-of-memory or when len is too large to encode. */
char *rl_b64_encode(const uint8_t *in, size_t len);

#endif
