/* Unit tests for src/core/crypto: known-answer vectors, random tokens, constant-time compare. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "core/crypto.h"

static void test_sha256_vectors(void **state)
{
    (void)state;
    char out[HK_SHA256_HEX_LEN + 1];
    hk_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hk_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* FIPS 180-2, two-block message. */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hk_sha256_hex(m, strlen(m), out);
    assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* Only len bytes are hashed. */
    hk_sha256_hex("abcdef", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(strlen(out), HK_SHA256_HEX_LEN);
}

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    char out[HK_SHA256_HEX_LEN + 1];
    /* RFC 4231 test case 2. */
    const char *data = "what do ya want for nothing?";
    hk_hmac_sha256_hex("Jefe", 4, data, strlen(data), out);
    assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* RFC 4231 test case 1: 20 bytes of 0x0b, "Hi There". */
    unsigned char key[20];
    memset(key, 0x0b, sizeof(key));
    hk_hmac_sha256_hex(key, sizeof(key), "Hi There", 8, out);
    assert_string_equal(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    /* RFC 4231 test case 6: a key longer than the block size (131 bytes of 0xaa). */
    unsigned char longkey[131];
    memset(longkey, 0xaa, sizeof(longkey));
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    hk_hmac_sha256_hex(longkey, sizeof(longkey), d6, strlen(d6), out);
    assert_string_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static bool all_lower_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static void test_random_token(void **state)
{
    (void)state;
    char a[64], b[64];
    assert_int_equal(hk_random_token("hk_", 16, a, sizeof(a)), 0);
    assert_int_equal(hk_random_token("hk_", 16, b, sizeof(b)), 0);
    assert_int_equal(strlen(a), 3 + 32);
    assert_memory_equal(a, "hk_", 3);
    assert_true(all_lower_hex(a + 3));
    assert_int_equal(strlen(b), 3 + 32);
    assert_string_not_equal(a, b);

    /* No prefix, and the largest size. */
    char c[200];
    assert_int_equal(hk_random_token("", 64, c, sizeof(c)), 0);
    assert_int_equal(strlen(c), 128);
    assert_true(all_lower_hex(c));
}

static void test_random_token_sizes(void **state)
{
    (void)state;
    char out[64];
    memset(out, 'X', sizeof(out));
    /* Exactly enough room: prefix + 2*n + NUL. */
    assert_int_equal(hk_random_token("p_", 8, out, 2 + 16 + 1), 0);
    assert_int_equal(strlen(out), 18);
    assert_int_equal(out[19], 'X');

    memset(out, 'X', sizeof(out));
    assert_int_equal(hk_random_token("p_", 8, out, 2 + 16), HK_ETOOBIG);
    assert_int_equal(out[0], 'X'); /* nothing written */
    assert_int_equal(hk_random_token("", 1, out, 2), HK_ETOOBIG);
    assert_int_equal(hk_random_token("", 65, out, sizeof(out)), HK_ETOOBIG);
    assert_int_equal(hk_random_token("", 0, out, 0), HK_ETOOBIG);
}

static void test_random_bytes(void **state)
{
    (void)state;
    unsigned char a[32], b[32];
    assert_int_equal(hk_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(hk_random_bytes(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

static void test_ct_streq(void **state)
{
    (void)state;
    assert_true(hk_ct_streq("secret-token", "secret-token"));
    assert_true(hk_ct_streq("", ""));
    assert_false(hk_ct_streq("secret-token", "secret-tokeN"));
    assert_false(hk_ct_streq("Secret-token", "secret-token"));
    assert_false(hk_ct_streq("secret", "secret-token")); /* prefix */
    assert_false(hk_ct_streq("secret-token", "secret"));
    assert_false(hk_ct_streq("", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_random_token),   cmocka_unit_test(test_random_token_sizes),
        cmocka_unit_test(test_random_bytes),   cmocka_unit_test(test_ct_streq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
