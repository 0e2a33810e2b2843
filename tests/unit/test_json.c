/* Unit tests for src/core/json: body parsing with line/column errors and the typed field
 * validators that produce 422 details. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "core/json.h"

/* Parses a test document that must be a valid object. */
static json_t *parse(const char *s)
{
    json_t *o = NULL;
    char detail[256] = "";
    int rc = hk_json_parse_object(s, strlen(s), &o, detail, sizeof(detail));
    if (rc != 0)
        print_error("parse failed: %s\n", detail);
    assert_int_equal(rc, 0);
    assert_non_null(o);
    return o;
}

/* Parses s expecting rc; returns the detail in detail[]. */
static void parse_fail(const char *s, int expect_rc, char *detail, size_t dlen)
{
    json_t *o = NULL;
    detail[0] = '\0';
    assert_int_equal(hk_json_parse_object(s, strlen(s), &o, detail, dlen), expect_rc);
    assert_null(o);
    assert_true(detail[0] != '\0');
}

/* ---- hk_json_parse_object ---- */

static void test_parse_valid_object(void **state)
{
    (void)state;
    json_t *o = parse("{\"a\": 1, \"b\": \"x\", \"c\": [true, null], \"d\": {}}");
    assert_true(json_is_object(o));
    assert_int_equal(json_integer_value(json_object_get(o, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "b")), "x");
    assert_int_equal(json_array_size(json_object_get(o, "c")), 2);
    assert_true(json_is_object(json_object_get(o, "d")));
    json_decref(o);

    o = parse("  {}\n");
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
}

static void test_parse_respects_length(void **state)
{
    (void)state;
    const char *s = "{\"a\":1}garbage";
    json_t *o = NULL;
    char detail[128];
    assert_int_equal(hk_json_parse_object(s, 7, &o, detail, sizeof(detail)), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "a")), 1);
    json_decref(o);
    o = NULL;
    assert_int_equal(hk_json_parse_object(s, 6, &o, detail, sizeof(detail)), HK_EINVAL);
    assert_null(o);
}

static void test_parse_malformed_reports_position(void **state)
{
    (void)state;
    char detail[256];
    /* The '}' where a value should be is the 6th character. */
    parse_fail("{\"a\":}", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "invalid JSON"));
    assert_non_null(strstr(detail, "line 1, column 6"));

    parse_fail("{\"a\":1,}", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "line 1, column 8"));

    parse_fail("{\"a\" 1}", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "line 1, column 6"));

    /* The error is on the second line, 6th column. */
    parse_fail("{\n\"a\": }", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "line 2, column 6"));

    parse_fail("{\"a\": 1,\n \"b\": 2,\n \"c\": x}", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "line 3, column"));

    parse_fail("{} x", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "line 1, column 4"));

    parse_fail("", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "line 1"));

    parse_fail("{\"a\":\"\xff\"}", HK_EINVAL, detail, sizeof(detail)); /* not UTF-8 */
    assert_non_null(strstr(detail, "line 1"));
}

static void test_parse_non_object(void **state)
{
    (void)state;
    const char *docs[] = {"5", "[1]", "null", "\"s\"", "true", "[]", "-1.5"};
    char detail[256];
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        parse_fail(docs[i], HK_ESTATE, detail, sizeof(detail));
        assert_non_null(strstr(detail, "body"));
        assert_non_null(strstr(detail, "object"));
    }
}

static void test_parse_duplicate_keys(void **state)
{
    (void)state;
    char detail[256];
    parse_fail("{\"a\":1,\"a\":2}", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "duplicate"));
    assert_non_null(strstr(detail, "line 1"));
    parse_fail("{\"o\":{\"k\":1,\"k\":1}}", HK_EINVAL, detail, sizeof(detail));
    assert_non_null(strstr(detail, "duplicate"));
}

static void test_huge_integer_is_out_of_range_not_malformed(void **state)
{
    (void)state;
    json_t *o = parse("{\"n\": 100000000000000000000, \"m\": 3}");
    json_t *n = json_object_get(o, "n");
    assert_true(json_is_real(n));
    assert_true(json_real_value(n) == 1e20);

    char detail[256] = "";
    long long v = -7;
    bool present = false;
    assert_int_equal(hk_json_opt_int(o, "n", "n", 0, 1000, &v, &present, detail, sizeof(detail)),
                     HK_EINVAL);
    assert_true(present);
    assert_int_equal(v, -7);
    assert_string_equal(detail, "n: must be an integer from 0 to 1000");
    /* Even the widest bounds cannot hold it. */
    assert_int_equal(
        hk_json_opt_int(o, "n", "n", LLONG_MIN, LLONG_MAX, &v, NULL, detail, sizeof(detail)),
        HK_EINVAL);
    /* Other integers of the same document are still usable. */
    assert_int_equal(hk_json_opt_int(o, "m", "m", 0, 10, &v, NULL, detail, sizeof(detail)), 0);
    assert_int_equal(v, 3);
    json_decref(o);

    o = parse("{\"n\": -100000000000000000000}");
    assert_int_equal(hk_json_opt_int(o, "n", "data.n", -5, 5, &v, NULL, detail, sizeof(detail)),
                     HK_EINVAL);
    assert_non_null(strstr(detail, "data.n"));
    json_decref(o);
}

/* 2^63 overflows int64, so it is parsed as a real; it is still above LLONG_MAX and must not be
 * accepted (converting it to long long is undefined and yields LLONG_MIN on x86-64). */
static void test_int_just_above_int64_rejected(void **state)
{
    (void)state;
    json_t *o = parse("{\"n\": 9223372036854775808}");
    char detail[256] = "";
    long long v = -7;
    int rc = hk_json_opt_int(o, "n", "n", 0, LLONG_MAX, &v, NULL, detail, sizeof(detail));
    json_decref(o); /* before asserting, so that a failure leaks nothing */
    if (rc == 0)
        print_error("9223372036854775808 accepted as %lld\n", v);
    assert_int_equal(rc, HK_EINVAL);
    assert_int_equal(v, -7);
}

static void test_embedded_nul_rejected_by_validators(void **state)
{
    (void)state;
    json_t *o = parse("{\"s\": \"a\\u0000b\", \"arr\": [\"ok\", \"x\\u0000\"]}");
    const char *out = "untouched";
    bool present = false;
    char detail[256];
    assert_int_equal(
        hk_json_opt_string(o, "s", "s", 100, false, &out, &present, detail, sizeof(detail)),
        HK_EINVAL);
    assert_string_equal(out, "untouched");
    assert_string_equal(detail, "s: must not contain NUL characters");

    json_t *arr = NULL;
    assert_int_equal(hk_json_opt_string_array(o, "arr", "arr", 10, 100, false, &arr, NULL, detail,
                                              sizeof(detail)),
                     HK_EINVAL);
    assert_null(arr);
    assert_non_null(strstr(detail, "arr[1]"));
    json_decref(o);
}

/* ---- hk_json_opt_string ---- */

static void test_opt_string(void **state)
{
    (void)state;
    json_t *o = parse("{\"name\": \"Alice\", \"nul\": null, \"num\": 5, \"utf\": \"\\u00e9\","
                      " \"empty\": \"\"}");
    char detail[256] = "";
    const char *out = "untouched";
    bool present = true;

    /* Absent: out untouched, present false. */
    assert_int_equal(hk_json_opt_string(o, "missing", "missing", 10, false, &out, &present, detail,
                                        sizeof(detail)),
                     0);
    assert_false(present);
    assert_string_equal(out, "untouched");

    assert_int_equal(
        hk_json_opt_string(o, "name", "name", 10, false, &out, &present, detail, sizeof(detail)),
        0);
    assert_true(present);
    assert_string_equal(out, "Alice");

    assert_int_equal(
        hk_json_opt_string(o, "empty", "empty", 0, false, &out, NULL, detail, sizeof(detail)), 0);
    assert_string_equal(out, "");

    /* null: accepted as NULL when nullable, a type error otherwise. */
    out = "untouched";
    assert_int_equal(
        hk_json_opt_string(o, "nul", "nul", 10, true, &out, &present, detail, sizeof(detail)), 0);
    assert_true(present);
    assert_null(out);
    out = "untouched";
    assert_int_equal(
        hk_json_opt_string(o, "nul", "nul", 10, false, &out, &present, detail, sizeof(detail)),
        HK_EINVAL);
    assert_string_equal(detail, "nul: must be a string");
    assert_string_equal(out, "untouched");

    /* Wrong type names the field as given (a path). */
    assert_int_equal(
        hk_json_opt_string(o, "num", "data.num", 10, true, &out, NULL, detail, sizeof(detail)),
        HK_EINVAL);
    assert_string_equal(detail, "data.num: must be a string or null");

    /* maxlen is inclusive and counts bytes. */
    assert_int_equal(
        hk_json_opt_string(o, "name", "name", 5, false, &out, NULL, detail, sizeof(detail)), 0);
    out = "untouched";
    assert_int_equal(
        hk_json_opt_string(o, "name", "name", 4, false, &out, NULL, detail, sizeof(detail)),
        HK_EINVAL);
    assert_string_equal(detail, "name: must be at most 4 bytes");
    assert_string_equal(out, "untouched");
    assert_int_equal(
        hk_json_opt_string(o, "utf", "utf", 2, false, &out, NULL, detail, sizeof(detail)), 0);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(
        hk_json_opt_string(o, "utf", "utf", 1, false, &out, NULL, detail, sizeof(detail)),
        HK_EINVAL);
    json_decref(o);
}

/* ---- hk_json_opt_int ---- */

static void test_opt_int(void **state)
{
    (void)state;
    json_t *o = parse("{\"lo\": 1, \"hi\": 10, \"neg\": -3, \"two\": 2.0, \"half\": 2.5,"
                      " \"t\": true, \"s\": \"3\", \"nul\": null, \"big\": 11.0}");
    char detail[256] = "";
    long long v = -99;
    bool present = true;

    assert_int_equal(
        hk_json_opt_int(o, "missing", "missing", 1, 10, &v, &present, detail, sizeof(detail)), 0);
    assert_false(present);
    assert_int_equal(v, -99);

    /* Bounds are inclusive. */
    assert_int_equal(hk_json_opt_int(o, "lo", "lo", 1, 10, &v, &present, detail, sizeof(detail)),
                     0);
    assert_true(present);
    assert_int_equal(v, 1);
    assert_int_equal(hk_json_opt_int(o, "hi", "hi", 1, 10, &v, NULL, detail, sizeof(detail)), 0);
    assert_int_equal(v, 10);
    v = -99;
    assert_int_equal(hk_json_opt_int(o, "lo", "lo", 2, 10, &v, NULL, detail, sizeof(detail)),
                     HK_EINVAL);
    assert_string_equal(detail, "lo: must be an integer from 2 to 10");
    assert_int_equal(hk_json_opt_int(o, "hi", "hi", 1, 9, &v, NULL, detail, sizeof(detail)),
                     HK_EINVAL);
    assert_int_equal(v, -99);
    assert_int_equal(hk_json_opt_int(o, "neg", "neg", -3, 0, &v, NULL, detail, sizeof(detail)), 0);
    assert_int_equal(v, -3);

    /* An integral real is judged by its value. */
    assert_int_equal(hk_json_opt_int(o, "two", "two", 0, 5, &v, NULL, detail, sizeof(detail)), 0);
    assert_int_equal(v, 2);
    v = -99;
    assert_int_equal(hk_json_opt_int(o, "big", "big", 0, 10, &v, NULL, detail, sizeof(detail)),
                     HK_EINVAL);
    assert_int_equal(v, -99);

    const char *bad[] = {"half", "t", "s", "nul"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        detail[0] = '\0';
        assert_int_equal(
            hk_json_opt_int(o, bad[i], bad[i], 0, 5, &v, &present, detail, sizeof(detail)),
            HK_EINVAL);
        assert_true(present);
        assert_int_equal(v, -99);
        assert_true(strncmp(detail, bad[i], strlen(bad[i])) == 0);
        assert_non_null(strstr(detail, "must be an integer from 0 to 5"));
    }
    json_decref(o);
}

/* ---- hk_json_opt_object ---- */

static void test_opt_object(void **state)
{
    (void)state;
    json_t *o = parse("{\"cfg\": {\"k\": 1}, \"arr\": [], \"nul\": null}");
    char detail[256] = "";
    json_t *out = (json_t *)1;

    assert_int_equal(hk_json_opt_object(o, "missing", "missing", &out, detail, sizeof(detail)), 0);
    assert_ptr_equal(out, (json_t *)1);

    assert_int_equal(hk_json_opt_object(o, "cfg", "cfg", &out, detail, sizeof(detail)), 0);
    assert_ptr_equal(out, json_object_get(o, "cfg")); /* borrowed, not copied */
    assert_int_equal(json_integer_value(json_object_get(out, "k")), 1);

    out = NULL;
    assert_int_equal(hk_json_opt_object(o, "arr", "data.arr", &out, detail, sizeof(detail)),
                     HK_EINVAL);
    assert_string_equal(detail, "data.arr: must be an object");
    assert_null(out);
    assert_int_equal(hk_json_opt_object(o, "nul", "nul", &out, detail, sizeof(detail)), HK_EINVAL);
    assert_null(out);
    json_decref(o);
}

/* ---- hk_json_opt_string_array ---- */

static void test_opt_string_array(void **state)
{
    (void)state;
    json_t *o = parse("{\"langs\": [\"en\", \"de\"], \"mixed\": [\"en\", 1], \"empty\": [],"
                      " \"nul\": null, \"str\": \"en\", \"long\": [\"abcdef\"]}");
    char detail[256] = "";
    json_t *out = (json_t *)1;
    bool present = true;

    assert_int_equal(hk_json_opt_string_array(o, "missing", "missing", 5, 10, false, &out, &present,
                                              detail, sizeof(detail)),
                     0);
    assert_false(present);
    assert_ptr_equal(out, (json_t *)1);

    assert_int_equal(hk_json_opt_string_array(o, "langs", "langs", 2, 2, false, &out, &present,
                                              detail, sizeof(detail)),
                     0);
    assert_true(present);
    assert_ptr_equal(out, json_object_get(o, "langs"));

    assert_int_equal(hk_json_opt_string_array(o, "empty", "empty", 0, 10, false, &out, NULL, detail,
                                              sizeof(detail)),
                     0);
    assert_int_equal(json_array_size(out), 0);

    out = NULL;
    assert_int_equal(hk_json_opt_string_array(o, "mixed", "mixed", 5, 10, false, &out, NULL, detail,
                                              sizeof(detail)),
                     HK_EINVAL);
    assert_null(out);
    assert_non_null(strstr(detail, "mixed[1]"));

    /* Too many items names the array; too long an item names the item. */
    assert_int_equal(hk_json_opt_string_array(o, "langs", "langs", 1, 10, false, &out, NULL, detail,
                                              sizeof(detail)),
                     HK_EINVAL);
    assert_non_null(strstr(detail, "langs: "));
    assert_non_null(strstr(detail, "at most 1 "));
    assert_int_equal(hk_json_opt_string_array(o, "long", "long", 5, 5, false, &out, NULL, detail,
                                              sizeof(detail)),
                     HK_EINVAL);
    assert_non_null(strstr(detail, "long[0]"));
    assert_int_equal(hk_json_opt_string_array(o, "long", "long", 5, 6, false, &out, NULL, detail,
                                              sizeof(detail)),
                     0);

    /* null when nullable: out is the JSON null. */
    out = NULL;
    assert_int_equal(hk_json_opt_string_array(o, "nul", "nul", 5, 10, true, &out, &present, detail,
                                              sizeof(detail)),
                     0);
    assert_true(present);
    assert_true(json_is_null(out));
    out = NULL;
    assert_int_equal(
        hk_json_opt_string_array(o, "nul", "nul", 5, 10, false, &out, NULL, detail, sizeof(detail)),
        HK_EINVAL);
    assert_null(out);
    assert_int_equal(
        hk_json_opt_string_array(o, "str", "str", 5, 10, true, &out, NULL, detail, sizeof(detail)),
        HK_EINVAL);
    assert_non_null(strstr(detail, "str: "));
    json_decref(o);
}

/* ---- setters and encoding ---- */

static void test_set_time_or_null(void **state)
{
    (void)state;
    json_t *o = json_object();
    assert_int_equal(hk_json_set_time_or_null(o, "none", 0), 0);
    assert_true(json_is_null(json_object_get(o, "none")));
    assert_int_equal(hk_json_set_time_or_null(o, "at", 1763806503120LL), 0);
    assert_string_equal(json_string_value(json_object_get(o, "at")), "2025-11-22T10:15:03.120Z");
    assert_int_equal(hk_json_set_time_or_null(o, "epoch1", 1), 0);
    assert_string_equal(json_string_value(json_object_get(o, "epoch1")),
                        "1970-01-01T00:00:00.001Z");
    /* Replaces an existing value. */
    assert_int_equal(hk_json_set_time_or_null(o, "at", 0), 0);
    assert_true(json_is_null(json_object_get(o, "at")));

    assert_int_equal(hk_json_set_str_or_null(o, "s", "v"), 0);
    assert_string_equal(json_string_value(json_object_get(o, "s")), "v");
    assert_int_equal(hk_json_set_str_or_null(o, "s", NULL), 0);
    assert_true(json_is_null(json_object_get(o, "s")));
    json_decref(o);
}

static void test_encode(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:i, s:[s, n]}", "a", 1, "b", "x");
    size_t len = 0;
    char *s = hk_json_encode(o, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    /* Compact: no spaces after separators. */
    assert_null(strchr(s, ' '));
    json_t *back = json_loads(s, 0, NULL);
    assert_true(json_equal(back, o));
    json_decref(back);
    free(s);
    json_decref(o);

    json_t *n = json_integer(7); /* any value, not only objects */
    s = hk_json_encode(n, NULL);
    assert_string_equal(s, "7");
    free(s);
    json_decref(n);
}

static void test_utf8_prefix(void **state)
{
    (void)state;
    assert_int_equal(hk_utf8_prefix("abc", 5), 3);
    assert_int_equal(hk_utf8_prefix("abcdef", 3), 3);
    assert_int_equal(hk_utf8_prefix("", 0), 0);
    /* "aé€😀": a(1) é(2) €(3) 😀(4) = 10 bytes */
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    size_t want[11] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10};
    for (size_t max = 0; max <= 10; max++)
        assert_int_equal(hk_utf8_prefix(s, max), want[max]);
    assert_int_equal(hk_utf8_prefix(s, 50), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_object),
        cmocka_unit_test(test_parse_respects_length),
        cmocka_unit_test(test_parse_malformed_reports_position),
        cmocka_unit_test(test_parse_non_object),
        cmocka_unit_test(test_parse_duplicate_keys),
        cmocka_unit_test(test_huge_integer_is_out_of_range_not_malformed),
        cmocka_unit_test(test_int_just_above_int64_rejected),
        cmocka_unit_test(test_embedded_nul_rejected_by_validators),
        cmocka_unit_test(test_opt_string),
        cmocka_unit_test(test_opt_int),
        cmocka_unit_test(test_opt_object),
        cmocka_unit_test(test_opt_string_array),
        cmocka_unit_test(test_set_time_or_null),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_utf8_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
