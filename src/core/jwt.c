/* HS256 JWTs on libjwt. libjwt does the encoding and signature check; the claim checks (issuer,
 * audience, expiry) are ours because libjwt 1.10 does not validate them. */
#include "core/jwt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>

int hk_jwt_mint(const char *secret, const json_t *claims, char **out)
{
    jwt_t *jwt = NULL;
    char *claims_str = NULL;
    int rc = HK_EINVAL;
    if (jwt_new(&jwt) != 0)
        return HK_ENOMEM;
    claims_str = json_dumps(claims, JSON_COMPACT);
    if (!claims_str || jwt_add_grants_json(jwt, claims_str) != 0)
        goto done;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) != 0)
        goto done;
    char *tok = jwt_encode_str(jwt);
    if (!tok)
        goto done;
    *out = strdup(tok);
    free(tok); /* libjwt 1.10 allocates with its default allocator (malloc) */
    rc = *out ? 0 : HK_ENOMEM;
done:
    free(claims_str);
    jwt_free(jwt);
    return rc;
}

int hk_jwt_verify(const char *secret, const char *token, const char *iss, const char *aud,
                  int64_t now_s, json_t **claims, const char **reason)
{
    jwt_t *jwt = NULL;
    *claims = NULL;
    if (!token || !*token || strlen(token) > 8192) {
        *reason = "malformed token";
        return HK_EAUTH;
    }
    int rc = jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret));
    if (rc != 0 || !jwt) {
        *reason = rc == EINVAL ? "bad signature or malformed token" : "malformed token";
        jwt_free(jwt);
        return HK_EAUTH;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        *reason = "wrong algorithm";
        jwt_free(jwt);
        return HK_EAUTH;
    }
    char *js = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    json_t *c = js ? json_loads(js, 0, NULL) : NULL;
    free(js);
    if (!json_is_object(c)) {
        json_decref(c);
        *reason = "malformed claims";
        return HK_EAUTH;
    }
    const char *c_iss = json_string_value(json_object_get(c, "iss"));
    const char *c_aud = json_string_value(json_object_get(c, "aud"));
    json_t *exp = json_object_get(c, "exp");
    json_t *iat = json_object_get(c, "iat");
    if (!c_iss || strcmp(c_iss, iss) != 0)
        *reason = "wrong issuer";
    else if (!c_aud || strcmp(c_aud, aud) != 0)
        *reason = "wrong audience";
    else if (!json_is_integer(exp) || json_integer_value(exp) <= now_s)
        *reason = "expired";
    else if (json_is_integer(iat) && json_integer_value(iat) > now_s + 60)
        *reason = "issued in the future";
    else {
        *claims = c;
        return 0;
    }
    json_decref(c);
    return HK_EAUTH;
}
