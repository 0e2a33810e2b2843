/* Webhook delivery policy, pure functions: which addresses and URLs may be called (SSRF), how an
 * attempt's outcome is classified, and when the next attempt is due. */
#ifndef HK_WEBHOOK_POLICY_H
#define HK_WEBHOOK_POLICY_H

#include <sys/socket.h>
#include "core/common.h"

#define HK_WEBHOOK_URL_MAX 2048

/*
 * True when `sa` (AF_INET or AF_INET6) is a public unicast address. False for loopback, private
 * (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), multicast,
 * unspecified, "this network" 0/8, CGNAT 100.64/10, reserved 240/4 and broadcast, and for IPv6
 * forms that embed such an IPv4 address (v4-mapped, v4-compatible, NAT64 64:ff9b::/96, 6to4).
 * Unknown families are not public. Any thread.
 */
bool hk_webhook_addr_public(const struct sockaddr *sa);

/*
 * Checks a webhook URL: at most HK_WEBHOOK_URL_MAX bytes, parses, scheme http or https, has a
 * host. Unless allow_private, resolves the host (getaddrinfo: blocking, worker threads only) and
 * refuses it when it does not resolve or any address is not public. Returns 0, or HK_EINVAL with
 * a reason ("webhook_url: ...") in detail[dlen].
 */
int hk_webhook_url_check(const char *url, bool allow_private, char *detail, size_t dlen);

typedef enum {
    HK_WEBHOOK_DELIVERED, /* 2xx */
    HK_WEBHOOK_RETRY,     /* 5xx, 408, 429, timeouts, connection errors */
    HK_WEBHOOK_FINAL      /* any other status: the receiver said no */
} hk_webhook_outcome_t;

/* Classifies an attempt: http_status > 0 when a response status line arrived (it decides), else
 * a transport failure (retried). Any thread. */
hk_webhook_outcome_t hk_webhook_classify(long http_status);

/*
 * Milliseconds to wait before the retry that follows attempt number `attempts` (1 = the first
 * attempt just failed): schedule[attempts - 1] seconds scaled by `jitter` (e.g. 0.8 .. 1.2), but
 * never less than retry_after_s (>= 0: the receiver's Retry-After, capped at one day). Returns -1
 * when the schedule is exhausted (the delivery becomes failed). Any thread.
 */
int64_t hk_webhook_retry_delay_ms(const int *schedule, size_t n, int attempts, long retry_after_s,
                                  double jitter);

/* Parses a Retry-After header value given in seconds; -1 for absent, negative or HTTP-date
 * values (the schedule then applies). */
long hk_webhook_parse_retry_after(const char *value, size_t len);

#endif
