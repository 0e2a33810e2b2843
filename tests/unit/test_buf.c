/* Unit tests for src/core/buf: the capped buffer grows, formats, hands over its data, and
 * disposes itself when a cap is exceeded. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include "core/buf.h"

static void test_init_is_empty(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 100);
    hk_buf_dispose(&b);
    hk_buf_dispose(NULL); /* NULL-safe */
}

static void test_append_and_puts(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 1024);
    assert_int_equal(hk_buf_append(&b, "hello", 5), 0);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "hello");
    assert_int_equal(hk_buf_puts(&b, ", world"), 0);
    assert_int_equal(b.len, 12);
    assert_string_equal(b.data, "hello, world");
    /* Binary data with an embedded NUL counts every byte and stays NUL-terminated. */
    assert_int_equal(hk_buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 15);
    assert_memory_equal(b.data, "hello, worlda\0b", 15);
    assert_int_equal(b.data[15], '\0');
    /* An empty append changes nothing. */
    assert_int_equal(hk_buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 15);
    hk_buf_dispose(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_append_grows_past_initial_allocation(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 10000);
    char expect[5000];
    for (size_t i = 0; i < sizeof(expect); i++) {
        char c = (char)('a' + i % 26);
        expect[i] = c;
        assert_int_equal(hk_buf_append(&b, &c, 1), 0);
    }
    assert_int_equal(b.len, sizeof(expect));
    assert_memory_equal(b.data, expect, sizeof(expect));
    assert_int_equal(b.data[b.len], '\0');
    hk_buf_dispose(&b);
}

static void test_printf(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 4096);
    assert_int_equal(hk_buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "42-x");
    assert_int_equal(hk_buf_printf(&b, "|%05.1f|", 3.14159), 0);
    assert_string_equal(b.data, "42-x|003.1|");
    assert_int_equal(b.len, strlen("42-x|003.1|"));
    /* Longer than any first allocation: the formatted text must arrive whole. */
    char big[1001];
    memset(big, 'z', 1000);
    big[1000] = '\0';
    assert_int_equal(hk_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 11 + 1002);
    assert_int_equal(b.data[11], '[');
    assert_int_equal(b.data[12], 'z');
    assert_int_equal(b.data[1011], 'z');
    assert_int_equal(b.data[1012], ']');
    assert_int_equal(b.data[1013], '\0');
    /* An empty format appends nothing. */
    assert_int_equal(hk_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 1013);
    hk_buf_dispose(&b);
}

static void test_steal(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 64);
    size_t len = 99;
    assert_null(hk_buf_steal(&b, &len)); /* nothing yet */
    assert_int_equal(len, 0);

    assert_int_equal(hk_buf_puts(&b, "payload"), 0);
    char *p = hk_buf_steal(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 7);
    assert_string_equal(p, "payload");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 64);

    /* The buffer is reusable and does not share memory with the stolen data. */
    assert_int_equal(hk_buf_puts(&b, "next"), 0);
    assert_string_equal(b.data, "next");
    assert_string_equal(p, "payload");
    free(p);
    p = hk_buf_steal(&b, NULL);
    assert_string_equal(p, "next");
    free(p);
    hk_buf_dispose(&b);
}

static void test_reset_keeps_allocation(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 256);
    hk_buf_reset(&b); /* on an empty buffer: harmless */
    assert_null(b.data);
    assert_int_equal(hk_buf_puts(&b, "some text"), 0);
    char *before = b.data;
    size_t cap = b.cap;
    hk_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.data, "");
    assert_int_equal(hk_buf_puts(&b, "ab"), 0);
    assert_string_equal(b.data, "ab");
    assert_int_equal(b.len, 2);
    hk_buf_dispose(&b);
}

static void test_cap_exactly_reached_then_one_over(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 10);
    assert_int_equal(hk_buf_append(&b, "0123", 4), 0);
    assert_int_equal(hk_buf_append(&b, "456789", 6), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_int_equal(hk_buf_append(&b, "", 0), 0); /* still within the cap */

    assert_int_equal(hk_buf_append(&b, "x", 1), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);

    /* Disposed, not broken: the same cap applies to new content. */
    assert_int_equal(hk_buf_append(&b, "0123456789", 10), 0);
    assert_string_equal(b.data, "0123456789");
    hk_buf_dispose(&b);
}

static void test_single_append_over_cap(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 10);
    assert_int_equal(hk_buf_puts(&b, "abc"), 0);
    assert_int_equal(hk_buf_append(&b, "01234567890", 11), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    /* A size that would overflow len + n must be refused, not wrapped (p is never read). */
    assert_int_equal(hk_buf_puts(&b, "abc"), 0);
    assert_int_equal(hk_buf_append(&b, "x", SIZE_MAX), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    hk_buf_dispose(&b);
}

static void test_puts_over_cap(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 4);
    assert_int_equal(hk_buf_puts(&b, "abcd"), 0);
    assert_int_equal(hk_buf_puts(&b, "e"), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    hk_buf_dispose(&b);
}

static void test_zero_cap(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 0);
    assert_int_equal(hk_buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(hk_buf_append(&b, "a", 1), HK_ETOOBIG);
    assert_null(b.data);
    hk_buf_dispose(&b);
}

static void test_printf_over_cap(void **state)
{
    (void)state;
    hk_buf_t b;
    hk_buf_init(&b, 8);
    assert_int_equal(hk_buf_printf(&b, "%s", "12345678"), 0); /* exactly the cap */
    assert_string_equal(b.data, "12345678");
    assert_int_equal(hk_buf_printf(&b, "%d", 9), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    assert_int_equal(hk_buf_printf(&b, "%s", "123456789"), HK_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    assert_int_equal(hk_buf_puts(&b, "ab"), 0);
    assert_int_equal(hk_buf_printf(&b, "%s%d", "cdefg", 12), HK_ETOOBIG); /* 2 + 7 > 8 */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    hk_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_and_puts),
        cmocka_unit_test(test_append_grows_past_initial_allocation),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_reset_keeps_allocation),
        cmocka_unit_test(test_cap_exactly_reached_then_one_over),
        cmocka_unit_test(test_single_append_over_cap),
        cmocka_unit_test(test_puts_over_cap),
        cmocka_unit_test(test_zero_cap),
        cmocka_unit_test(test_printf_over_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
