/* Unit tests for src/core/timeutil: ISO 8601 formatting and parsing with milliseconds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "core/timeutil.h"

static void expect_format(int64_t ms, const char *want)
{
    char out[32];
    memset(out, 'X', sizeof(out));
    assert_ptr_equal(hk_time_iso8601(ms, out, sizeof(out)), out);
    assert_string_equal(out, want);
}

static void test_format_known_values(void **state)
{
    (void)state;
    expect_format(0, "1970-01-01T00:00:00.000Z");
    expect_format(1, "1970-01-01T00:00:00.001Z");
    expect_format(999, "1970-01-01T00:00:00.999Z");
    expect_format(1000, "1970-01-01T00:00:01.000Z");
    /* 1763806503 s = 20414 days (2025-11-22) + 36903 s (10:15:03). */
    expect_format(1763806503120LL, "2025-11-22T10:15:03.120Z");
    expect_format(946684800000LL, "2000-01-01T00:00:00.000Z");
    expect_format(1709251199999LL, "2024-02-29T23:59:59.999Z"); /* leap day */
    expect_format(1709251200000LL, "2024-03-01T00:00:00.000Z");
    expect_format(4102444800000LL, "2100-01-01T00:00:00.000Z");
    /* Before the epoch the milliseconds still count forward within the second. */
    expect_format(-1, "1969-12-31T23:59:59.999Z");
}

static void test_format_needs_25_bytes(void **state)
{
    (void)state;
    char out[25];
    hk_time_iso8601(1763806503120LL, out, sizeof(out));
    assert_int_equal(strlen(out), 24);
    assert_string_equal(out, "2025-11-22T10:15:03.120Z");

    /* A short buffer is truncated, never overrun. */
    char small[16];
    memset(small, 'X', sizeof(small));
    hk_time_iso8601(1763806503120LL, small, 11);
    assert_string_equal(small, "2025-11-22");
    assert_int_equal(small[11], 'X');
}

static void expect_parse(const char *s, int64_t want)
{
    int64_t ms = -12345;
    int rc = hk_time_parse_iso8601(s, &ms);
    if (rc != 0)
        print_error("parse of \"%s\" failed\n", s);
    assert_int_equal(rc, 0);
    assert_int_equal(ms, want);
}

static void test_parse_round_trip(void **state)
{
    (void)state;
    const int64_t values[] = {0,
                              1,
                              999,
                              1763806503120LL,
                              946684800000LL,
                              1709251199999LL,
                              1709251200000LL,
                              4102444800000LL,
                              2147483647999LL,
                              2147483648000LL /* past 32-bit time_t */};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char s[32];
        hk_time_iso8601(values[i], s, sizeof(s));
        expect_parse(s, values[i]);
    }
}

static void test_parse_variants(void **state)
{
    (void)state;
    expect_parse("2025-11-22T10:15:03.120Z", 1763806503120LL);
    expect_parse("2025-11-22T10:15:03Z", 1763806503000LL);      /* no millis */
    expect_parse("2025-11-22T10:15:03+00:00", 1763806503000LL); /* offset form */
    expect_parse("2025-11-22T10:15:03.120+00:00", 1763806503120LL);
    expect_parse("2025-11-22T10:15:03.1Z", 1763806503100LL);  /* 1 digit = tenths */
    expect_parse("2025-11-22T10:15:03.12Z", 1763806503120LL); /* 2 digits = hundredths */
    expect_parse("2025-11-22T10:15:03.007Z", 1763806503007LL);
    expect_parse("2025-11-22T10:15:03.123456Z", 1763806503123LL); /* extra digits dropped */
    expect_parse("1970-01-01T00:00:00Z", 0);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "garbage",
        "2025-13-01T00:00:00Z",      /* month 13 */
        "2025-00-10T00:00:00Z",      /* month 0 */
        "2025-11-32T00:00:00Z",      /* day 32 */
        "2025-11-00T00:00:00Z",      /* day 0 */
        "2025-11-22T24:00:00Z",      /* hour 24 */
        "2025-11-22T10:60:00Z",      /* minute 60 */
        "2025-11-22T10:15:03",       /* missing Z */
        "2025-11-22T10:15:03.120",   /* missing Z after millis */
        "2025-11-22T10:15:03Zjunk",  /* trailing garbage */
        "2025-11-22T10:15:03.120Z ", /* trailing space */
        "2025-11-22T10:15:03.Z",     /* dot without digits */
        "2025-11-22T10:15:03+01:00", /* only UTC is accepted */
        "2025-11-22T10:15:03z",
        "2025-11-22 10:15:03Z", /* space for T */
        "2025-11-22",
        "2025-1-22T10:15:03Z", /* one-digit month */
        "1969-12-31T23:59:59Z",
        "25-11-22T10:15:03Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 0;
        if (hk_time_parse_iso8601(bad[i], &ms) != HK_EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

/* Each field is exactly its digits, and the date must exist: sscanf's %2d alone would take a
 * sign or a leading space, and timegm() would roll Feb 31 over into March. */
static void test_parse_rejects_signs_spaces_and_impossible_dates(void **state)
{
    (void)state;
    const char *bad[] = {
        "2025-11-22T-1:15:03Z", /* negative hour */
        "2025-11-22T10:-1:03Z", /* negative minute */
        "2025-11-22T10:15:-1Z", /* negative second */
        "2025-+1-22T10:15:03Z", /* sign in the month */
        "2025-11- 2T10:15:03Z", /* space in the day */
        "2025-02-31T00:00:00Z", /* no such day */
        "2025-02-29T00:00:00Z", /* not a leap year */
        "2025-04-31T00:00:00Z",
    };
    size_t accepted = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 0;
        if (hk_time_parse_iso8601(bad[i], &ms) != HK_EINVAL) {
            char back[32];
            print_error("\"%s\" was accepted as %s\n", bad[i],
                        hk_time_iso8601(ms, back, sizeof(back)));
            accepted++;
        }
    }
    assert_int_equal(accepted, 0);
    expect_parse("2024-02-29T00:00:00Z", 1709164800000LL); /* a leap year has it */
}

static void test_clocks(void **state)
{
    (void)state;
    /* Plausibility, not timing: the wall clock is after this test was written and the
     * monotonic clock never goes back. */
    assert_true(hk_time_now_ms() > 1700000000000LL);
    uint64_t a = hk_time_mono_ns();
    uint64_t b = hk_time_mono_ns();
    assert_true(b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_known_values),
        cmocka_unit_test(test_format_needs_25_bytes),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_variants),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_rejects_signs_spaces_and_impossible_dates),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
