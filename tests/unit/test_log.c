/* Unit tests for src/core/log: logfmt quoting, level parsing, and the lines written. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/log.h"
#include "core/timeutil.h"

/* ---- hk_log_quote ---- */

static void expect_quote(const char *in, const char *want)
{
    char out[256];
    assert_ptr_equal(hk_log_quote(out, sizeof(out), in), out);
    assert_string_equal(out, want);
}

static void test_quote_escapes(void **state)
{
    (void)state;
    expect_quote("plain", "\"plain\"");
    expect_quote("two words", "\"two words\"");
    expect_quote("", "\"\"");
    expect_quote(NULL, "\"\"");
    expect_quote("say \"hi\"", "\"say \\\"hi\\\"\"");
    expect_quote("C:\\dir", "\"C:\\\\dir\"");
    expect_quote("a\nb\tc\rd", "\"a\\x0ab\\x09c\\x0dd\"");
    expect_quote("\x01\x1f\x7f", "\"\\x01\\x1f\\x7f\"");
    expect_quote("key=value err=\"x\"", "\"key=value err=\\\"x\\\"\"");
    /* UTF-8 passes through unchanged. */
    expect_quote("caf\xc3\xa9", "\"caf\xc3\xa9\"");
}

/* Checks one call: the result is NUL-terminated inside outlen, quoted, and nothing at or after
 * out[outlen] is written. */
static void check_bounded(const char *in, size_t outlen)
{
    char buf[600];
    assert_true(outlen < sizeof(buf));
    memset(buf, 'Z', sizeof(buf));
    hk_log_quote(buf, outlen, in);
    for (size_t i = outlen; i < sizeof(buf); i++)
        if (buf[i] != 'Z')
            fail_msg("outlen %zu, input of %zu bytes: byte %zu past the end was written", outlen,
                     strlen(in), i);
    size_t len = strnlen(buf, outlen);
    assert_true(len < outlen);
    assert_true(len >= 2);
    assert_int_equal(buf[0], '"');
    assert_int_equal(buf[len - 1], '"');
}

/* check_bounded() for every outlen from 8 to 79 on inputs made by repeating each fill string. */
static void sweep(const char *const *fill, size_t nfill)
{
    for (size_t f = 0; f < nfill; f++) {
        char src[400];
        size_t n = 0, flen = strlen(fill[f]);
        while (n + flen < sizeof(src)) {
            memcpy(src + n, fill[f], flen);
            n += flen;
        }
        src[n] = '\0';
        for (size_t outlen = 8; outlen < 80; outlen++)
            check_bounded(src, outlen);
    }
}

static void test_quote_truncates_within_outlen(void **state)
{
    (void)state;
    char in[1001];
    memset(in, 'a', 1000);
    in[1000] = '\0';
    char out[32];
    hk_log_quote(out, sizeof(out), in);
    size_t len = strlen(out);
    assert_true(len < sizeof(out));
    assert_int_equal(out[0], '"');
    assert_int_equal(out[len - 1], '"');
    assert_int_equal(out[len - 2], '.'); /* marked as truncated */
    assert_int_equal(out[len - 3], '.');
    assert_int_equal(out[1], 'a');

    /* Every size, with plain text and 2-byte escapes. */
    const char *fill[] = {"a", "\"", "\\", "ab\"", "a\\b\"c"};
    sweep(fill, sizeof(fill) / sizeof(fill[0]));
}

/* A 4-byte escape that ends 3 bytes before the end of out, followed by more input: the
 * truncation marker, the closing quote and the NUL need 4 bytes but only 3 are left. */
static void test_quote_escape_at_truncation_point(void **state)
{
    (void)state;
    /* outlen 16: '"' + 8 chars → o = 9; "\x01" → o = 13; then 'z' truncates. */
    check_bounded("abcdefgh\x01z", 16);
    char path[600];
    memset(path, 'a', 504);
    memcpy(path + 504, "\tb", 3);
    check_bounded(path, 512); /* a tab 504 bytes into a request path, as http.c logs it */
    const char *fill[] = {"\n", "a\x01", "ab\"\x02",
                          "\x7f"
                          "abc"};
    sweep(fill, sizeof(fill) / sizeof(fill[0]));
}

static void test_quote_tiny_outlen(void **state)
{
    (void)state;
    char out[8];
    memset(out, 'Z', sizeof(out));
    hk_log_quote(out, 4, "value");
    assert_string_equal(out, "");
    assert_int_equal(out[4], 'Z');
    memset(out, 'Z', sizeof(out));
    hk_log_quote(out, 0, "value");
    assert_int_equal(out[0], 'Z'); /* nothing written at all */
    hk_log_quote(out, 8, "");
    assert_string_equal(out, "\"\"");
}

/* ---- levels ---- */

static void test_level_parse(void **state)
{
    (void)state;
    hk_log_level_t l = HK_LOG_OFF;
    assert_int_equal(hk_log_level_parse("debug", &l), 0);
    assert_int_equal(l, HK_LOG_DEBUG);
    assert_int_equal(hk_log_level_parse("info", &l), 0);
    assert_int_equal(l, HK_LOG_INFO);
    assert_int_equal(hk_log_level_parse("WARN", &l), 0);
    assert_int_equal(l, HK_LOG_WARN);
    assert_int_equal(hk_log_level_parse("Error", &l), 0);
    assert_int_equal(l, HK_LOG_ERROR);
    assert_int_equal(hk_log_level_parse("off", &l), 0);
    assert_int_equal(l, HK_LOG_OFF);
    l = HK_LOG_WARN;
    assert_int_equal(hk_log_level_parse("verbose", &l), HK_EINVAL);
    assert_int_equal(hk_log_level_parse("", &l), HK_EINVAL);
    assert_int_equal(hk_log_level_parse("info ", &l), HK_EINVAL);
    assert_int_equal(l, HK_LOG_WARN);
}

/* ---- hk_log_write ---- */

/* Everything written to f so far, NUL-terminated (caller frees). */
static char *contents(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    rewind(f);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fseek(f, 0, SEEK_END);
    return s;
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_write_line(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    hk_log_init(HK_LOG_INFO, f);
    hk_log_info("x", "op=test n=%d err=%s", 5, "\"boom\"");
    char *s = contents(f);
    assert_true(strncmp(s, "ts=", 3) == 0);
    assert_non_null(strstr(s, " level=info mod=x op=test n=5 err=\"boom\"\n"));
    assert_int_equal(count_char(s, '\n'), 1);
    assert_int_equal(s[strlen(s) - 1], '\n');
    /* The timestamp is a parseable ISO 8601 time. */
    char *sp = strchr(s, ' ');
    assert_non_null(sp);
    *sp = '\0';
    int64_t ms;
    assert_int_equal(hk_time_parse_iso8601(s + 3, &ms), 0);
    free(s);

    hk_log_warn("store", "op=open");
    hk_log_error("http", "op=accept");
    s = contents(f);
    assert_int_equal(count_char(s, '\n'), 3);
    assert_non_null(strstr(s, " level=warn mod=store op=open\n"));
    assert_non_null(strstr(s, " level=error mod=http op=accept\n"));
    free(s);

    hk_log_init(HK_LOG_INFO, NULL);
    fclose(f);
}

static void test_levels_filter(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    hk_log_init(HK_LOG_INFO, f);
    assert_false(hk_log_enabled(HK_LOG_DEBUG));
    assert_true(hk_log_enabled(HK_LOG_INFO));
    assert_true(hk_log_enabled(HK_LOG_ERROR));
    hk_log_debug("x", "hidden=1");
    hk_log_write(HK_LOG_DEBUG, "x", "hidden=2");
    char *s = contents(f);
    assert_string_equal(s, "");
    free(s);

    hk_log_init(HK_LOG_WARN, f);
    hk_log_info("x", "hidden=3");
    hk_log_warn("x", "shown=1");
    s = contents(f);
    assert_null(strstr(s, "hidden"));
    assert_non_null(strstr(s, "level=warn mod=x shown=1\n"));
    free(s);

    hk_log_init(HK_LOG_DEBUG, f);
    assert_true(hk_log_enabled(HK_LOG_DEBUG));
    hk_log_debug("x", "shown=2");
    s = contents(f);
    assert_non_null(strstr(s, "level=debug mod=x shown=2\n"));
    free(s);

    hk_log_init(HK_LOG_OFF, f);
    assert_false(hk_log_enabled(HK_LOG_ERROR));
    hk_log_error("x", "hidden=4");
    s = contents(f);
    assert_null(strstr(s, "hidden"));
    free(s);

    hk_log_init(HK_LOG_INFO, NULL);
    fclose(f);
}

static void test_long_message_stays_one_line(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    hk_log_init(HK_LOG_INFO, f);
    char big[5001];
    memset(big, 'q', 5000);
    big[5000] = '\0';
    hk_log_info("x", "msg=%s", big);
    hk_log_info("x", "after=1");
    char *s = contents(f);
    assert_int_equal(count_char(s, '\n'), 2);
    char *nl = strchr(s, '\n');
    assert_true(nl - s < 2048);
    assert_true(strncmp(nl + 1, "ts=", 3) == 0);
    assert_non_null(strstr(nl + 1, "after=1\n"));
    free(s);
    hk_log_init(HK_LOG_INFO, NULL);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_escapes),
        cmocka_unit_test(test_quote_truncates_within_outlen),
        cmocka_unit_test(test_quote_escape_at_truncation_point),
        cmocka_unit_test(test_quote_tiny_outlen),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_write_line),
        cmocka_unit_test(test_levels_filter),
        cmocka_unit_test(test_long_message_stays_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
