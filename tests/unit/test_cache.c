/* The REST layer's API-key cache: a deleted token must not come back through a lookup that
 * raced its deletion. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "api/cache.h"
#include "core/crypto.h"

static void digest(const char *key, char out[HK_SHA256_HEX_LEN + 1])
{
    hk_sha256_hex(key, strlen(key), out);
}

static void test_put_get_forget(void **state)
{
    (void)state;
    hk_auth_cache_t c;
    assert_int_equal(hk_auth_cache_init(&c), 0);
    char a[HK_SHA256_HEX_LEN + 1], b[HK_SHA256_HEX_LEN + 1];
    digest("key-a", a);
    digest("key-b", b);
    int64_t user = 0, token = 0;
    assert_false(hk_auth_cache_get(&c, a, &user, &token));
    hk_auth_cache_put(&c, hk_auth_cache_epoch(&c), a, 7, 70);
    hk_auth_cache_put(&c, hk_auth_cache_epoch(&c), b, 8, 80);
    assert_true(hk_auth_cache_get(&c, a, &user, &token));
    assert_int_equal(user, 7);
    assert_int_equal(token, 70);
    hk_auth_cache_forget_token(&c, 70);
    assert_false(hk_auth_cache_get(&c, a, &user, &token));
    hk_auth_cache_dispose(&c);
}

/* A request looked token 70 up in the store (found) just before its deletion committed; the
 * deletion then forgot it (nothing cached yet); the request's put comes last. */
static void test_put_after_a_forget_is_dropped(void **state)
{
    (void)state;
    hk_auth_cache_t c;
    assert_int_equal(hk_auth_cache_init(&c), 0);
    char a[HK_SHA256_HEX_LEN + 1];
    digest("key-a", a);
    uint64_t before_lookup = hk_auth_cache_epoch(&c);
    hk_auth_cache_forget_token(&c, 70); /* the deletion, between lookup and put */
    hk_auth_cache_put(&c, before_lookup, a, 7, 70);
    int64_t user = 0, token = 0;
    assert_false(hk_auth_cache_get(&c, a, &user, &token));
    /* a lookup that starts after the deletion caches normally (another token, say) */
    hk_auth_cache_put(&c, hk_auth_cache_epoch(&c), a, 7, 71);
    assert_true(hk_auth_cache_get(&c, a, &user, &token));
    assert_int_equal(token, 71);
    hk_auth_cache_dispose(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_forget),
        cmocka_unit_test(test_put_after_a_forget_is_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
