/* OpenSSL-backed primitives. */
#include "core/crypto.h"

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void hk_sha256_hex(const void *data, size_t len, char out[HK_SHA256_HEX_LEN + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, 32, out);
}

void hk_hmac_sha256_hex(const void *key, size_t keylen, const void *data, size_t len,
                        char out[HK_SHA256_HEX_LEN + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), key, (int)keylen, data, len, md, &mdlen);
    to_hex(md, 32, out);
}

int hk_random_bytes(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : HK_EINVAL;
}

int hk_random_token(const char *prefix, size_t nbytes, char *out, size_t outlen)
{
    unsigned char raw[64];
    size_t plen = strlen(prefix);
    if (nbytes > sizeof(raw) || plen + 2 * nbytes + 1 > outlen)
        return HK_ETOOBIG;
    if (hk_random_bytes(raw, nbytes))
        return HK_EINVAL;
    memcpy(out, prefix, plen);
    to_hex(raw, nbytes, out + plen);
    return 0;
}

bool hk_ct_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}
