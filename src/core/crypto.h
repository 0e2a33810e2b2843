/* Hashes, HMAC, randomness and constant-time comparison (OpenSSL). Thread-safe. */
#ifndef HK_CRYPTO_H
#define HK_CRYPTO_H

#include "core/common.h"

#define HK_SHA256_HEX_LEN 64

/* SHA-256 of data as 64 lower-case hex chars + NUL into out[65]. */
void hk_sha256_hex(const void *data, size_t len, char out[HK_SHA256_HEX_LEN + 1]);

/* HMAC-SHA256(key, data) as 64 hex chars + NUL into out[65]. */
void hk_hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t len,
                        char out[HK_SHA256_HEX_LEN + 1]);

/* Fills buf with n cryptographically random bytes. 0 or HK_EINVAL (RNG failure). */
int hk_random_bytes(void *buf, size_t n);

/* Writes `prefix` followed by 2*nbytes random hex chars into out. 0, HK_ETOOBIG or HK_EINVAL. */
int hk_random_token(const char *prefix, size_t nbytes, char *out, size_t outlen);

/* Compares two strings in time that depends only on their lengths. */
bool hk_ct_streq(const char *a, const char *b);

#endif
