/* HS256 JSON Web Tokens (libjwt): minting and verification of meeting tokens. Thread-safe. */
#ifndef HK_JWT_H
#define HK_JWT_H

#include <jansson.h>
#include "core/common.h"

/* Signs `claims` (an object) with HS256. Returns 0 and *out (caller frees with free()). */
int hk_jwt_mint(const char *secret, const json_t *claims, char **out);

/*
 * Verifies an HS256 token: signature with `secret`, alg exactly HS256, `iss`, `aud`, `exp` > now
 * and `iat` not in the future (60 s leeway). Returns 0 and *claims (caller decrefs), or HK_EAUTH
 * with *reason set to a static text ("bad signature", "expired", "wrong audience", ...).
 */
int hk_jwt_verify(const char *secret, const char *token, const char *iss, const char *aud,
                  int64_t now_s, json_t **claims, const char **reason);

#endif
