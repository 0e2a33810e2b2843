/* Unit tests for src/core/jwt: HS256 round trip, and every way a token must be refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "core/jwt.h"

#define SECRET "test-secret-0123456789abcdef"
#define ISS "hark"
#define AUD "hark-meeting"
#define NOW 1763806503LL

static json_t *claims_with(const char *iss, const char *aud, long long exp, long long iat)
{
    json_t *c =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "iss", iss, "aud", aud, "exp", (json_int_t)exp,
                  "iat", (json_int_t)iat, "meeting_id", (json_int_t)42, "platform", "google_meet");
    assert_non_null(c);
    return c;
}

static char *mint(const char *secret, json_t *claims)
{
    char *tok = NULL;
    assert_int_equal(hk_jwt_mint(secret, claims, &tok), 0);
    assert_non_null(tok);
    json_decref(claims);
    return tok;
}

/* Verifies with the standard issuer/audience/time and returns the result code. */
static int verify(const char *secret, const char *token, const char **reason)
{
    json_t *claims = (json_t *)1;
    *reason = NULL;
    int rc = hk_jwt_verify(secret, token, ISS, AUD, NOW, &claims, reason);
    if (rc == 0) {
        assert_non_null(claims);
        json_decref(claims);
    } else {
        assert_null(claims);
        assert_non_null(*reason);
    }
    return rc;
}

/* base64url without padding, malloc'd. */
static char *b64url(const unsigned char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 4 / 3 + 4);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* Builds header.payload.signature by hand; signs with HMAC-SHA256 when secret is non-NULL,
 * otherwise leaves the signature empty. Caller frees. */
static char *hand_token(const char *header, const char *payload, const char *secret)
{
    char *h = b64url((const unsigned char *)header, strlen(header));
    char *p = b64url((const unsigned char *)payload, strlen(payload));
    size_t need = strlen(h) + strlen(p) + 64;
    char *tok = malloc(need);
    assert_non_null(tok);
    snprintf(tok, need, "%s.%s", h, p);
    char *sig = NULL;
    if (secret) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok,
                             strlen(tok), md, &mdlen));
        assert_int_equal(mdlen, 32);
        sig = b64url(md, mdlen);
    }
    size_t len = strlen(tok);
    snprintf(tok + len, need - len, ".%s", sig ? sig : "");
    free(sig);
    free(h);
    free(p);
    return tok;
}

#define GOOD_PAYLOAD                                                                               \
    "{\"iss\":\"hark\",\"aud\":\"hark-meeting\",\"exp\":1763810103,\"iat\":1763806503}"

static void test_round_trip(void **state)
{
    (void)state;
    char *tok = mint(SECRET, claims_with(ISS, AUD, NOW + 3600, NOW));
    /* Three non-empty base64url parts. */
    char *d1 = strchr(tok, '.');
    assert_non_null(d1);
    char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    assert_true(d1 > tok && d2 > d1 + 1 && d2[1] != '\0');

    json_t *claims = NULL;
    const char *reason = NULL;
    assert_int_equal(hk_jwt_verify(SECRET, tok, ISS, AUD, NOW, &claims, &reason), 0);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")), ISS);
    assert_string_equal(json_string_value(json_object_get(claims, "aud")), AUD);
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), NOW + 3600);
    assert_int_equal(json_integer_value(json_object_get(claims, "iat")), NOW);
    assert_int_equal(json_integer_value(json_object_get(claims, "meeting_id")), 42);
    assert_string_equal(json_string_value(json_object_get(claims, "platform")), "google_meet");
    json_decref(claims);
    free(tok);
}

static void test_hand_made_hs256_token_verifies(void **state)
{
    (void)state;
    /* Checks the helper itself, so that the refusals below are refusals of the content. */
    char *tok = hand_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, SECRET);
    const char *reason;
    assert_int_equal(verify(SECRET, tok, &reason), 0);
    free(tok);
}

static void test_wrong_secret(void **state)
{
    (void)state;
    char *tok = mint(SECRET, claims_with(ISS, AUD, NOW + 3600, NOW));
    const char *reason;
    assert_int_equal(verify("another-secret", tok, &reason), HK_EAUTH);
    assert_int_equal(verify("", tok, &reason), HK_EAUTH);
    free(tok);
}

static void test_tampered_payload(void **state)
{
    (void)state;
    char *tok = mint(SECRET, claims_with(ISS, AUD, NOW + 3600, NOW));
    const char *reason;

    /* Flip one character in the middle of the payload part. */
    char *d1 = strchr(tok, '.');
    char *d2 = strchr(d1 + 1, '.');
    char *mid = d1 + 1 + (d2 - d1 - 1) / 2;
    *mid = *mid == 'A' ? 'B' : 'A';
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);

    /* A well-formed payload of another token spliced onto this token's signature. */
    char *a = mint(SECRET, claims_with(ISS, AUD, NOW + 3600, NOW));
    json_t *other = claims_with(ISS, AUD, NOW + 3600, NOW);
    json_object_set_new(other, "meeting_id", json_integer(43));
    char *b = mint(SECRET, other);
    char *a1 = strchr(a, '.'), *a2 = strchr(a1 + 1, '.');
    char *b1 = strchr(b, '.'), *b2 = strchr(b1 + 1, '.');
    char spliced[2048];
    snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int)(a1 - a), a, (int)(b2 - b1), b1, a2);
    assert_string_not_equal(spliced, a);
    assert_int_equal(verify(SECRET, spliced, &reason), HK_EAUTH);
    /* The signature part removed. */
    a2[1] = '\0';
    assert_int_equal(verify(SECRET, a, &reason), HK_EAUTH);
    free(a);
    free(b);
}

static void test_expired(void **state)
{
    (void)state;
    const char *reason;
    char *tok = mint(SECRET, claims_with(ISS, AUD, NOW - 1, NOW - 3600));
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "expired");
    free(tok);

    tok = mint(SECRET, claims_with(ISS, AUD, NOW, NOW - 3600)); /* exp == now is expired */
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "expired");
    free(tok);

    json_t *c = claims_with(ISS, AUD, NOW + 3600, NOW);
    json_object_del(c, "exp"); /* no expiry at all */
    tok = mint(SECRET, c);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "expired");
    free(tok);

    c = claims_with(ISS, AUD, NOW + 3600, NOW);
    json_object_set_new(c, "exp", json_string("9999999999")); /* not a number */
    tok = mint(SECRET, c);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);

    tok = mint(SECRET, claims_with(ISS, AUD, NOW + 1, NOW));
    assert_int_equal(verify(SECRET, tok, &reason), 0);
    free(tok);
}

static void test_wrong_audience_and_issuer(void **state)
{
    (void)state;
    const char *reason;
    char *tok = mint(SECRET, claims_with(ISS, "someone-else", NOW + 3600, NOW));
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "wrong audience");
    free(tok);

    tok = mint(SECRET, claims_with("evil", AUD, NOW + 3600, NOW));
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "wrong issuer");
    free(tok);

    json_t *c = claims_with(ISS, AUD, NOW + 3600, NOW);
    json_object_del(c, "aud");
    tok = mint(SECRET, c);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "wrong audience");
    free(tok);

    c = claims_with(ISS, AUD, NOW + 3600, NOW);
    json_object_set_new(c, "iss", json_integer(1));
    tok = mint(SECRET, c);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "wrong issuer");
    free(tok);

    /* A prefix of the expected value is not the value. */
    tok = mint(SECRET, claims_with("har", "hark-meetin", NOW + 3600, NOW));
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
}

static void test_alg_none_refused(void **state)
{
    (void)state;
    const char *reason;
    char *tok = hand_token("{\"alg\":\"none\"}", GOOD_PAYLOAD, NULL);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
    tok = hand_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, NULL);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
    /* HS256 header but no signature. */
    tok = hand_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, NULL);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
}

static void test_other_hmac_alg_refused(void **state)
{
    (void)state;
    /* Correctly signed with the same secret, but HS512: only HS256 is accepted. */
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, GOOD_PAYLOAD), 0);
    assert_int_equal(
        jwt_set_alg(j, JWT_ALG_HS512, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    char *tok = jwt_encode_str(j);
    jwt_free(j);
    assert_non_null(tok);
    const char *reason;
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "wrong algorithm");
    free(tok);
}

static void test_garbage(void **state)
{
    (void)state;
    const char *reason;
    const char *bad[] = {"",   "a",   "a.b",         "...",         "a.b.c",
                         "..", "a..", "eyJ.eyJ.eyJ", "\xff\xfe.x.y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(SECRET, bad[i], &reason), HK_EAUTH);

    json_t *claims = (json_t *)1;
    reason = NULL;
    assert_int_equal(hk_jwt_verify(SECRET, NULL, ISS, AUD, NOW, &claims, &reason), HK_EAUTH);
    assert_null(claims);
    assert_non_null(reason);

    /* Very long: a valid token padded far past any sane size, and plain junk. */
    size_t n = 100000;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'A', n);
    big[n] = '\0';
    assert_int_equal(verify(SECRET, big, &reason), HK_EAUTH);
    big[n / 3] = '.';
    big[2 * n / 3] = '.';
    assert_int_equal(verify(SECRET, big, &reason), HK_EAUTH);
    free(big);

    /* Header or payload that decode to something other than a JSON object. */
    char *tok = hand_token("[]", GOOD_PAYLOAD, SECRET);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
    tok = hand_token("{\"alg\":\"HS256\"}", "[1,2]", SECRET);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
    tok = hand_token("{\"alg\":\"HS256\"}", "not json", SECRET);
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    free(tok);
}

static void test_iat_in_future(void **state)
{
    (void)state;
    const char *reason;
    char *tok = mint(SECRET, claims_with(ISS, AUD, NOW + 7200, NOW + 3600));
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "issued in the future");
    free(tok);

    /* Within the 60 s leeway for clock skew. */
    tok = mint(SECRET, claims_with(ISS, AUD, NOW + 7200, NOW + 60));
    assert_int_equal(verify(SECRET, tok, &reason), 0);
    free(tok);
    tok = mint(SECRET, claims_with(ISS, AUD, NOW + 7200, NOW + 61));
    assert_int_equal(verify(SECRET, tok, &reason), HK_EAUTH);
    assert_string_equal(reason, "issued in the future");
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hand_made_hs256_token_verifies),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_wrong_audience_and_issuer),
        cmocka_unit_test(test_alg_none_refused),
        cmocka_unit_test(test_other_hmac_alg_refused),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_iat_in_future),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
