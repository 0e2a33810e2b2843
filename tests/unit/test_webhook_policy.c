/* Unit tests for src/webhook/policy: SSRF address rules, URL checks, outcome classes, retry
 * timing and Retry-After parsing, and the retry schedule parser of the config table. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include "core/config.h"
#include "webhook/policy.h"

static bool public_str(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(s, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, s, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, s, &a->sin_addr), 1);
    }
    return hk_webhook_addr_public((struct sockaddr *)&ss);
}

static void test_addr_rules(void **state)
{
    (void)state;
    const char *denied[] = {"127.0.0.1",
                            "127.255.0.9",
                            "10.0.0.1",
                            "172.16.0.1",
                            "172.31.255.255",
                            "192.168.0.1",
                            "169.254.169.254",
                            "100.64.0.1",
                            "100.127.255.254",
                            "0.0.0.0",
                            "0.1.2.3",
                            "224.0.0.1",
                            "239.255.255.250",
                            "255.255.255.255",
                            "240.0.0.1",
                            "192.0.0.8",
                            "198.18.0.1",
                            "::",
                            "::1",
                            "fe80::1",
                            "fc00::1",
                            "fd12:3456::1",
                            "ff02::1",
                            "fec0::1",
                            "::ffff:127.0.0.1",
                            "::ffff:10.0.0.1",
                            "::127.0.0.1",
                            "64:ff9b::a00:1",
                            "2002:7f00:1::1"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        if (public_str(denied[i]))
            fail_msg("%s should not be public", denied[i]);
    }
    const char *allowed[] = {"8.8.8.8",         "93.184.216.34",   "172.15.255.255",
                             "172.32.0.1",      "100.63.255.255",  "100.128.0.1",
                             "192.169.0.1",     "2606:4700::1111", "::ffff:8.8.8.8",
                             "2002:808:808::1", "64:ff9b::808:808"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (!public_str(allowed[i]))
            fail_msg("%s should be public", allowed[i]);
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_false(hk_webhook_addr_public(&un));
    assert_false(hk_webhook_addr_public(NULL));
}

static void test_url_check(void **state)
{
    (void)state;
    char d[300];
    assert_int_equal(hk_webhook_url_check("https://93.184.216.34/hook", false, d, sizeof(d)), 0);
    assert_int_equal(hk_webhook_url_check("http://[2606:4700::1111]:8443/x", false, d, sizeof(d)),
                     0);
    assert_int_equal(hk_webhook_url_check("http://127.0.0.1:8080/x", true, d, sizeof(d)), 0);
    assert_int_equal(hk_webhook_url_check("http://127.0.0.1:8080/x", false, d, sizeof(d)),
                     HK_EINVAL);
    assert_non_null(strstr(d, "webhook_url"));
    assert_int_equal(hk_webhook_url_check("http://[::1]/x", false, d, sizeof(d)), HK_EINVAL);
    assert_int_equal(hk_webhook_url_check("http://10.9.8.7/x", false, d, sizeof(d)), HK_EINVAL);
    assert_int_equal(hk_webhook_url_check("ftp://93.184.216.34/x", true, d, sizeof(d)), HK_EINVAL);
    assert_non_null(strstr(d, "http or https"));
    assert_int_equal(hk_webhook_url_check("gopher://x/", true, d, sizeof(d)), HK_EINVAL);
    assert_int_equal(hk_webhook_url_check("no scheme", true, d, sizeof(d)), HK_EINVAL);
    assert_int_equal(hk_webhook_url_check("http://", true, d, sizeof(d)), HK_EINVAL);
    assert_int_equal(hk_webhook_url_check("", true, d, sizeof(d)), HK_EINVAL);
    assert_int_equal(hk_webhook_url_check("http://a\x01.example/", true, d, sizeof(d)), HK_EINVAL);
    char longurl[HK_WEBHOOK_URL_MAX + 32];
    memset(longurl, 'a', sizeof(longurl) - 1);
    longurl[sizeof(longurl) - 1] = '\0';
    memcpy(longurl, "http://e.com/", 13);
    assert_int_equal(hk_webhook_url_check(longurl, true, d, sizeof(d)), HK_EINVAL);
}

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(hk_webhook_classify(200), HK_WEBHOOK_DELIVERED);
    assert_int_equal(hk_webhook_classify(204), HK_WEBHOOK_DELIVERED);
    assert_int_equal(hk_webhook_classify(0), HK_WEBHOOK_RETRY);
    assert_int_equal(hk_webhook_classify(500), HK_WEBHOOK_RETRY);
    assert_int_equal(hk_webhook_classify(503), HK_WEBHOOK_RETRY);
    assert_int_equal(hk_webhook_classify(408), HK_WEBHOOK_RETRY);
    assert_int_equal(hk_webhook_classify(429), HK_WEBHOOK_RETRY);
    assert_int_equal(hk_webhook_classify(400), HK_WEBHOOK_FINAL);
    assert_int_equal(hk_webhook_classify(404), HK_WEBHOOK_FINAL);
    assert_int_equal(hk_webhook_classify(410), HK_WEBHOOK_FINAL);
    assert_int_equal(hk_webhook_classify(301), HK_WEBHOOK_FINAL);
}

static void test_retry_delay(void **state)
{
    (void)state;
    const int sched[] = {5, 300, 1800};
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 1, -1, 1.0), 5000);
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 2, -1, 1.2), 360000);
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 3, -1, 0.8), 1440000);
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 4, -1, 1.0), -1);
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 0, -1, 1.0), -1);
    /* Retry-After only ever lengthens the wait, and is capped at a day. */
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 1, 60, 1.0), 60000);
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 2, 60, 1.0), 300000);
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 1, 999999, 1.0), 86400000);
    /* Absurd jitter is clamped. */
    assert_int_equal(hk_webhook_retry_delay_ms(sched, 3, 1, -1, 9.0), 7500);
}

static void test_retry_after_parse(void **state)
{
    (void)state;
    assert_int_equal(hk_webhook_parse_retry_after(" 120\r\n", 6), 120);
    assert_int_equal(hk_webhook_parse_retry_after("0", 1), 0);
    const char *date = " Wed, 21 Oct 2015 07:28:00 GMT\r\n";
    assert_int_equal(hk_webhook_parse_retry_after(date, strlen(date)), -1);
    assert_int_equal(hk_webhook_parse_retry_after("-5", 2), -1);
    assert_int_equal(hk_webhook_parse_retry_after("  \r\n", 4), -1);
    assert_int_equal(hk_webhook_parse_retry_after("99999999999", 11), -1);
}

static void test_schedule_list(void **state)
{
    (void)state;
    int v[32];
    size_t n = 0;
    assert_int_equal(hk_config_int_list("5,300,1800,7200,18000,36000,36000", 0, 604800, v, 32, &n),
                     0);
    assert_int_equal(n, 7);
    assert_int_equal(v[6], 36000);
    assert_int_equal(hk_config_int_list("1, 1 ,1", 0, 604800, v, 32, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(hk_config_int_list("0", 0, 604800, v, 32, &n), 0);
    const char *bad[] = {"", ",", "1,", ",1", "1,,2", "a", "1;2", "-1", "604801", "1.5", "+3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hk_config_int_list(bad[i], 0, 604800, v, 32, &n) != HK_EINVAL)
            fail_msg("\"%s\" should be refused", bad[i]);
    }
    assert_int_equal(hk_config_int_list("1,2,3", 0, 10, v, 2, &n), HK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_rules),        cmocka_unit_test(test_url_check),
        cmocka_unit_test(test_classify),          cmocka_unit_test(test_retry_delay),
        cmocka_unit_test(test_retry_after_parse), cmocka_unit_test(test_schedule_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
