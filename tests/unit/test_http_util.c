/* Unit tests for the HTTP helpers: percent-decoding, query parameters, headers, reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "net/http.h"

static void test_pct_decode_good(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(hk_http_pct_decode("abc", 3, out, sizeof(out), false), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(hk_http_pct_decode("a%20b%2Fc", 9, out, sizeof(out), false), 5);
    assert_string_equal(out, "a b/c");
    assert_int_equal(hk_http_pct_decode("%c3%A9", 6, out, sizeof(out), false), 2);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(hk_http_pct_decode("a+b", 3, out, sizeof(out), false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(hk_http_pct_decode("a+b", 3, out, sizeof(out), true), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(hk_http_pct_decode("%2B", 3, out, sizeof(out), true), 1);
    assert_string_equal(out, "+");
    assert_int_equal(hk_http_pct_decode("", 0, out, sizeof(out), false), 0);
    assert_string_equal(out, "");
    /* only len bytes are read */
    assert_int_equal(hk_http_pct_decode("abcdef", 2, out, sizeof(out), false), 2);
    assert_string_equal(out, "ab");
}

static void test_pct_decode_bad(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(hk_http_pct_decode("%zz", 3, out, sizeof(out), false), HK_EINVAL);
    assert_int_equal(hk_http_pct_decode("a%4", 3, out, sizeof(out), false), HK_EINVAL);
    assert_int_equal(hk_http_pct_decode("a%", 2, out, sizeof(out), false), HK_EINVAL);
    assert_int_equal(hk_http_pct_decode("%4g", 3, out, sizeof(out), false), HK_EINVAL);
    assert_int_equal(hk_http_pct_decode("a%00b", 5, out, sizeof(out), false), HK_EINVAL);
    assert_int_equal(hk_http_pct_decode("a\0b", 3, out, sizeof(out), false), HK_EINVAL);
    /* "%41" is fine but cut at len leaves a truncated escape */
    assert_int_equal(hk_http_pct_decode("%41", 2, out, sizeof(out), false), HK_EINVAL);
    /* output cap: 7 chars + NUL fit in 8, 8 do not */
    assert_int_equal(hk_http_pct_decode("1234567", 7, out, sizeof(out), false), 7);
    assert_int_equal(hk_http_pct_decode("12345678", 8, out, sizeof(out), false), HK_ETOOBIG);
    assert_int_equal(hk_http_pct_decode("%41%41%41%41%41%41%41%41", 24, out, sizeof(out), false),
                     HK_ETOOBIG);
    assert_int_equal(hk_http_pct_decode("a", 1, out, 0, false), HK_ETOOBIG);
}

static void test_query_get(void **state)
{
    (void)state;
    hk_http_req_t req;
    memset(&req, 0, sizeof(req));
    char q[] = "limit=10&q=hello+world&empty=&flag&name%20x=v%2Fw&bad=%zz&limit=20&long=abcdefghij";
    req.query = q;
    char out[8];
    assert_int_equal(hk_http_query_get(&req, "limit", out, sizeof(out)), 0);
    assert_string_equal(out, "10"); /* first occurrence wins */
    char big[32];
    assert_int_equal(hk_http_query_get(&req, "q", big, sizeof(big)), 0);
    assert_string_equal(big, "hello world");
    assert_int_equal(hk_http_query_get(&req, "empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(hk_http_query_get(&req, "flag", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(hk_http_query_get(&req, "name x", out, sizeof(out)), 0);
    assert_string_equal(out, "v/w");
    assert_int_equal(hk_http_query_get(&req, "bad", out, sizeof(out)), HK_EINVAL);
    assert_int_equal(hk_http_query_get(&req, "long", out, sizeof(out)), HK_ETOOBIG);
    assert_int_equal(hk_http_query_get(&req, "missing", out, sizeof(out)), HK_ENOTFOUND);
    assert_int_equal(hk_http_query_get(&req, "lim", out, sizeof(out)), HK_ENOTFOUND);

    req.query = NULL;
    assert_int_equal(hk_http_query_get(&req, "limit", out, sizeof(out)), HK_ENOTFOUND);
    char q2[] = "";
    req.query = q2;
    assert_int_equal(hk_http_query_get(&req, "limit", out, sizeof(out)), HK_ENOTFOUND);
    char q3[] = "&&a=1&";
    req.query = q3;
    assert_int_equal(hk_http_query_get(&req, "a", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
}

static void test_req_header(void **state)
{
    (void)state;
    hk_http_header_t hs[] = {
        {(char *)"host", (char *)"example.com"},
        {(char *)"x-request-id", (char *)"abc"},
    };
    hk_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.headers = hs;
    req.nheaders = 2;
    assert_string_equal(hk_http_req_header(&req, "host"), "example.com");
    assert_string_equal(hk_http_req_header(&req, "x-request-id"), "abc");
    assert_null(hk_http_req_header(&req, "accept"));
    req.nheaders = 0;
    assert_null(hk_http_req_header(&req, "host"));
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(hk_http_reason(200), "OK");
    assert_string_equal(hk_http_reason(201), "Created");
    assert_string_equal(hk_http_reason(204), "No Content");
    assert_string_equal(hk_http_reason(400), "Bad Request");
    assert_string_equal(hk_http_reason(404), "Not Found");
    assert_string_equal(hk_http_reason(405), "Method Not Allowed");
    assert_string_equal(hk_http_reason(408), "Request Timeout");
    assert_string_equal(hk_http_reason(413), "Content Too Large");
    assert_string_equal(hk_http_reason(422), "Unprocessable Content");
    assert_string_equal(hk_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(hk_http_reason(500), "Internal Server Error");
    assert_string_equal(hk_http_reason(503), "Service Unavailable");
    assert_string_equal(hk_http_reason(299), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_decode_good), cmocka_unit_test(test_pct_decode_bad),
        cmocka_unit_test(test_query_get),       cmocka_unit_test(test_req_header),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
