/* Webhook delivery policy: SSRF address rules, URL checks, outcome classes and retry timing. */
#include "webhook/policy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

/* IPv4 in host order. */
static bool v4_public(uint32_t a)
{
    static const struct {
        uint32_t net, mask;
    } denied[] = {
        {0x00000000u, 0xff000000u}, /* 0/8 "this network", includes 0.0.0.0 */
        {0x0a000000u, 0xff000000u}, /* 10/8 */
        {0x64400000u, 0xffc00000u}, /* 100.64/10 CGNAT */
        {0x7f000000u, 0xff000000u}, /* 127/8 loopback */
        {0xa9fe0000u, 0xffff0000u}, /* 169.254/16 link-local (cloud metadata) */
        {0xac100000u, 0xfff00000u}, /* 172.16/12 */
        {0xc0000000u, 0xffffff00u}, /* 192.0.0/24 IETF protocol assignments */
        {0xc0a80000u, 0xffff0000u}, /* 192.168/16 */
        {0xc6120000u, 0xfffe0000u}, /* 198.18/15 benchmarking */
        {0xe0000000u, 0xf0000000u}, /* 224/4 multicast */
        {0xf0000000u, 0xf0000000u}, /* 240/4 reserved, 255.255.255.255 broadcast */
    };
    for (size_t i = 0; i < HK_ARRAY_SIZE(denied); i++)
        if ((a & denied[i].mask) == denied[i].net)
            return false;
    return true;
}

static uint32_t v4_at(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static bool v6_public(const unsigned char *b)
{
    static const unsigned char zero[16] = {0};
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
        return false; /* :: and ::1 */
    if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
        return v4_public(v4_at(b + 12)); /* ::ffff:a.b.c.d */
    if (memcmp(b, zero, 12) == 0)
        return v4_public(v4_at(b + 12)); /* ::a.b.c.d (deprecated compatible form) */
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (memcmp(b, nat64, 12) == 0)
        return v4_public(v4_at(b + 12)); /* 64:ff9b::/96 */
    if (b[0] == 0x20 && b[1] == 0x02)
        return v4_public(v4_at(b + 2)); /* 2002::/16 6to4 */
    if ((b[0] & 0xfe) == 0xfc)
        return false; /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return false; /* fe80::/10 link-local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return false; /* fec0::/10 site-local (deprecated) */
    if (b[0] == 0xff)
        return false; /* ff00::/8 multicast */
    return true;
}

bool hk_webhook_addr_public(const struct sockaddr *sa)
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_public(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return v6_public(in6->sin6_addr.s6_addr);
    }
    return false;
}

int hk_webhook_url_check(const char *url, bool allow_private, char *detail, size_t dlen)
{
    size_t len = strlen(url);
    if (len == 0 || len > HK_WEBHOOK_URL_MAX) {
        snprintf(detail, dlen, "webhook_url: must be 1 to %d characters", HK_WEBHOOK_URL_MAX);
        return HK_EINVAL;
    }
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            snprintf(detail, dlen, "webhook_url: must not contain spaces or control characters");
            return HK_EINVAL;
        }
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = HK_EINVAL;
    if (u == NULL) {
        snprintf(detail, dlen, "webhook_url: out of memory");
        return HK_ENOMEM;
    }
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        snprintf(detail, dlen, "webhook_url: not a valid absolute URL");
        goto out;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        snprintf(detail, dlen, "webhook_url: scheme must be http or https");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
        snprintf(detail, dlen, "webhook_url: must name a host");
        goto out;
    }
    if (allow_private) {
        rc = 0;
        goto out;
    }
    /* IPv6 literals come back in brackets. */
    char name[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        hl -= 2;
        memmove(host, host + 1, hl);
        host[hl] = '\0';
    }
    if (hl >= sizeof(name)) {
        snprintf(detail, dlen, "webhook_url: host name too long");
        goto out;
    }
    memcpy(name, host, hl + 1);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &res) != 0 || res == NULL) {
        snprintf(detail, dlen, "webhook_url: host \"%.200s\" does not resolve", name);
        goto out;
    }
    rc = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!hk_webhook_addr_public(ai->ai_addr)) {
            snprintf(detail, dlen,
                     "webhook_url: host \"%.200s\" resolves to a loopback, private, link-local "
                     "or otherwise non-public address",
                     name);
            rc = HK_EINVAL;
            break;
        }
    }
    freeaddrinfo(res);
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

hk_webhook_outcome_t hk_webhook_classify(long http_status)
{
    if (http_status <= 0)
        return HK_WEBHOOK_RETRY;
    if (http_status >= 200 && http_status < 300)
        return HK_WEBHOOK_DELIVERED;
    if (http_status >= 500 || http_status == 408 || http_status == 429)
        return HK_WEBHOOK_RETRY;
    return HK_WEBHOOK_FINAL;
}

int64_t hk_webhook_retry_delay_ms(const int *schedule, size_t n, int attempts, long retry_after_s,
                                  double jitter)
{
    if (attempts < 1 || (size_t)attempts > n)
        return -1;
    if (jitter < 0.5)
        jitter = 0.5;
    if (jitter > 1.5)
        jitter = 1.5;
    int64_t delay = (int64_t)((double)schedule[attempts - 1] * 1000.0 * jitter);
    if (retry_after_s > 86400)
        retry_after_s = 86400;
    if (retry_after_s > 0 && (int64_t)retry_after_s * 1000 > delay)
        delay = (int64_t)retry_after_s * 1000;
    return delay;
}

long hk_webhook_parse_retry_after(const char *value, size_t len)
{
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                       value[len - 1] == '\n'))
        len--;
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return -1; /* an HTTP-date: use the schedule */
        v = v * 10 + (value[i] - '0');
    }
    return v;
}
