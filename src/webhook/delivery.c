/* Webhook delivery engine: outbox claims on worker threads, HTTP on the loop with curl multi. */
#include "webhook/delivery.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>
#include "core/crypto.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "webhook/policy.h"

/*
 * Threads. Everything here belongs to the loop thread except three things that run on libuv's
 * worker pool through uv_queue_work: the claim (hk_store_webhook_claim), the write of outcomes
 * (hk_store_webhook_record) and nothing else. The loop never waits on the database: SQLite calls
 * may wait on the write lock (busy_timeout), so even "short" calls stay off the loop. A worker
 * touches only the fields its job owns (marked "claim job" / "flush job"), and only while the
 * matching *_busy flag is set; the loop reads them in the after-callback. The store's outbox hook
 * runs on whatever thread committed the events and only calls uv_async_send.
 *
 * Flow: outbox hook / timer → claim (worker: due deliveries → "sending") → queue → start a curl
 * transfer when the endpoint has a free slot → curl finishes (loop) → outcome appended to the
 * pending results → flush (worker: one transaction for the batch) → claim again, which now sees
 * the next event of that meeting.
 */

#define MOD "webhook"
#define CLAIM_BATCH 256 /* deliveries per claim transaction */
#define MAX_HELD 1024   /* claimed deliveries held in memory (queued + in flight) */
#define MAX_ACTIVE 256  /* transfers in flight, all endpoints together */
#define POLL_MS 30000   /* safety net: claim at least this often */

typedef struct xfer_s {
    hk_webhook_t *w;
    struct xfer_s *next, *prev; /* in the queue (next only) or the active list */
    CURL *easy;
    struct curl_slist *headers;
    hk_delivery_t d; /* owned */
    size_t resp_bytes;
    long retry_after_s;
    bool blocked; /* the open-socket check refused the address */
    char blocked_addr[INET6_ADDRSTRLEN];
    char errbuf[CURL_ERROR_SIZE];
} xfer_t;

typedef struct {
    int64_t user_id;
    int active;
} endpoint_t;

typedef struct {
    hk_delivery_result_t r; /* r.last_error points into err when set at flush time */
    bool has_err;
    char err[200];
} result_t;

typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    hk_webhook_t *w;
} sock_t;

struct hk_webhook_s {
    uv_loop_t *loop;
    hk_store_t *store;
    int schedule[32];
    size_t nschedule;
    long connect_timeout_ms, timeout_ms;
    int max_concurrency;
    size_t max_response;
    bool allow_private;
    char user_agent[64];
    uint64_t rng;

    CURLM *multi;
    uv_timer_t curl_timer, poll_timer;
    uv_async_t wake;
    bool stopping;

    xfer_t *q_head, *q_tail; /* claimed, waiting for an endpoint slot */
    size_t nqueued;
    xfer_t *active; /* transfers in flight */
    size_t nactive;
    hk_webhook_stats_t stats; /* counters (attempts, delivered, retrying, failed) */

    int retention_days; /* 0: keep finished deliveries forever */
    uv_timer_t prune_timer;
    uv_work_t prune_work;
    bool prune_busy;
    endpoint_t *eps;
    size_t neps, eps_cap;

    uv_work_t claim_work;
    bool claim_busy, claim_again;
    int claim_limit;        /* claim job */
    hk_delivery_t *claimed; /* claim job */
    size_t nclaimed;        /* claim job */
    int64_t next_due;       /* claim job */
    int claim_rc;           /* claim job */

    result_t *pend; /* outcomes not yet handed to a flush */
    size_t npend, pend_cap;
    uv_work_t flush_work;
    bool flush_busy;
    result_t *fl; /* flush job */
    size_t nfl;
    hk_delivery_result_t *flv; /* flush job */
    int flush_rc;              /* flush job */
};

static void request_claim(hk_webhook_t *w);
static void request_flush(hk_webhook_t *w);
static void pump(hk_webhook_t *w);

/* ---- small helpers ---- */

/* xorshift64*: jitter only, no security role. */
static double jitter(hk_webhook_t *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    uint64_t v = w->rng * 2685821657736338717ull;
    return 0.8 + 0.4 * ((double)(v >> 11) / 9007199254740992.0);
}

static endpoint_t *endpoint(hk_webhook_t *w, int64_t user_id, bool create)
{
    for (size_t i = 0; i < w->neps; i++)
        if (w->eps[i].user_id == user_id)
            return &w->eps[i];
    if (!create)
        return NULL;
    if (w->neps == w->eps_cap) {
        size_t ncap = w->eps_cap ? w->eps_cap * 2 : 16;
        endpoint_t *n = realloc(w->eps, ncap * sizeof(*n));
        if (n == NULL)
            return NULL;
        w->eps = n;
        w->eps_cap = ncap;
    }
    w->eps[w->neps] = (endpoint_t){user_id, 0};
    return &w->eps[w->neps++];
}

static void endpoint_release(hk_webhook_t *w, int64_t user_id)
{
    endpoint_t *ep = endpoint(w, user_id, false);
    if (ep == NULL)
        return;
    if (--ep->active <= 0)
        *ep = w->eps[--w->neps]; /* forget idle endpoints: the table holds busy ones only */
}

static void xfer_free(xfer_t *x)
{
    if (x == NULL)
        return;
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    hk_delivery_dispose(&x->d);
    free(x);
}

static void active_unlink(hk_webhook_t *w, xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        w->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->next = x->prev = NULL;
    w->nactive--;
}

/* ---- outcomes ---- */

static void add_result(hk_webhook_t *w, const xfer_t *x, const char *state, int attempts,
                       long status, const char *err, int64_t next_at)
{
    if (w->npend == w->pend_cap) {
        size_t ncap = w->pend_cap ? w->pend_cap * 2 : 64;
        result_t *n = realloc(w->pend, ncap * sizeof(*n));
        if (n == NULL) {
            /* The row stays "sending" and is retried after the next start: at-least-once. */
            hk_log_error(MOD, "op=record delivery_id=%" PRId64 " err=\"out of memory\"", x->d.id);
            return;
        }
        w->pend = n;
        w->pend_cap = ncap;
    }
    result_t *r = &w->pend[w->npend++];
    memset(r, 0, sizeof(*r));
    r->r.id = x->d.id;
    r->r.state = state; /* static strings */
    r->r.attempts = attempts;
    r->r.last_status = (int)status;
    r->r.next_attempt_at = next_at;
    if (err != NULL) {
        r->has_err = true;
        snprintf(r->err, sizeof(r->err), "%s", err);
    }
}

/* Loop thread: turns a finished transfer into an outcome. */
static void finish(hk_webhook_t *w, xfer_t *x, CURLcode res, long status)
{
    int attempts = x->d.attempts + 1;
    char err[200] = "";
    /* A response cut short by our body cap still has its status line: that decides. */
    if (res != CURLE_OK && status > 0 && res != CURLE_WRITE_ERROR)
        status = 0;
    if (status > 0) {
        if (hk_webhook_classify(status) != HK_WEBHOOK_DELIVERED)
            snprintf(err, sizeof(err), "HTTP %ld", status);
    } else if (x->blocked) {
        snprintf(err, sizeof(err), "refused: %s is not a public address", x->blocked_addr);
    } else {
        snprintf(err, sizeof(err), "%.80s%s%.110s", curl_easy_strerror(res),
                 x->errbuf[0] ? ": " : "", x->errbuf);
    }
    hk_webhook_outcome_t oc = hk_webhook_classify(status);
    int64_t now = hk_time_now_ms();
    const char *state;
    int64_t next_at = 0;
    if (oc == HK_WEBHOOK_DELIVERED) {
        state = "delivered";
    } else if (oc == HK_WEBHOOK_FINAL) {
        state = "failed";
    } else {
        int64_t delay = hk_webhook_retry_delay_ms(w->schedule, w->nschedule, attempts,
                                                  x->retry_after_s, jitter(w));
        state = delay < 0 ? "failed" : "pending";
        next_at = delay < 0 ? 0 : now + delay;
    }
    char q[256];
    hk_log_write(oc == HK_WEBHOOK_DELIVERED ? HK_LOG_DEBUG : HK_LOG_INFO, MOD,
                 "op=deliver delivery_id=%" PRId64 " event_id=%s user_id=%" PRId64
                 " meeting_id=%" PRId64 " attempt=%d status=%ld state=%s err=%s",
                 x->d.id, x->d.event_id, x->d.user_id, x->d.meeting_id, attempts, status, state,
                 hk_log_quote(q, sizeof(q), err[0] ? err : "-"));
    w->stats.attempts++;
    if (oc == HK_WEBHOOK_DELIVERED)
        w->stats.delivered++;
    else if (state[0] == 'f')
        w->stats.failed++;
    else
        w->stats.retrying++;
    add_result(w, x, state, attempts, status, err[0] ? err : NULL, next_at);
}

void hk_webhook_stats(const hk_webhook_t *w, hk_webhook_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!w)
        return;
    *out = w->stats;
    out->in_flight = w->nactive;
    out->queued = w->nqueued;
}

/* ---- retention: finished deliveries and their events older than retention_days ---- */

enum { PRUNE_EVERY_MS = 3600 * 1000 };

/* Blocking store call: at start-up, or on a worker thread. */
static void prune(hk_webhook_t *w)
{
    int64_t before = hk_time_now_ms() - (int64_t)w->retention_days * 86400 * 1000;
    int64_t nd = 0, ne = 0;
    int rc = hk_store_webhook_prune(w->store, before, &nd, &ne);
    if (rc != 0)
        hk_log_warn(MOD, "op=prune err=\"%s\"", hk_strerror(rc));
    else if (nd > 0 || ne > 0)
        hk_log_info(MOD, "op=prune retention_days=%d deliveries=%" PRId64 " events=%" PRId64,
                    w->retention_days, nd, ne);
}

static void prune_work_cb(uv_work_t *r)
{
    prune(r->data);
}

static void prune_after_cb(uv_work_t *r, int status)
{
    HK_UNUSED(status);
    hk_webhook_t *w = r->data;
    w->prune_busy = false;
}

static void prune_timer_cb(uv_timer_t *t)
{
    hk_webhook_t *w = t->data;
    if (w->prune_busy || w->stopping)
        return;
    w->prune_work.data = w;
    if (uv_queue_work(w->loop, &w->prune_work, prune_work_cb, prune_after_cb) == 0)
        w->prune_busy = true;
}

/* ---- curl callbacks (loop thread: curl calls them from socket_action/add/remove) ---- */

static size_t discard_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    HK_UNUSED(ptr);
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    x->resp_bytes += n;
    /* Bodies are not needed; past the cap the transfer is ended (the status is kept). */
    return x->resp_bytes > x->w->max_response ? 0 : n;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0)
        x->retry_after_s =
            hk_webhook_parse_retry_after(buf + sizeof(name) - 1, n - (sizeof(name) - 1));
    return n;
}

/* The SSRF check at connect time: curl hands us each address it is about to connect to, after
 * its own resolution, so a name that resolved publicly at PUT and privately now (DNS rebinding)
 * is refused here. */
static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    xfer_t *x = clientp;
    if (purpose == CURLSOCKTYPE_IPCXN && !x->w->allow_private &&
        !hk_webhook_addr_public(&addr->addr)) {
        x->blocked = true;
        const void *a = addr->family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&addr->addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&addr->addr)->sin_addr;
        if (!inet_ntop(addr->family, a, x->blocked_addr, sizeof(x->blocked_addr)))
            snprintf(x->blocked_addr, sizeof(x->blocked_addr), "address");
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static void check_done(hk_webhook_t *w)
{
    CURLMsg *msg;
    int left;
    bool any = false;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode res = msg->data.result;
        xfer_t *x = NULL;
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(w->multi, e);
        active_unlink(w, x);
        endpoint_release(w, x->d.user_id);
        finish(w, x, res, status);
        xfer_free(x);
        any = true;
    }
    if (any && !w->stopping) {
        pump(w);
        request_flush(w);
        if (w->claim_again)
            request_claim(w);
    }
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    sock_t *s = h->data;
    hk_webhook_t *w = s->w;
    int flags = 0, running = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(w->multi, s->fd, flags, &running);
    check_done(w);
}

static void sock_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    HK_UNUSED(easy);
    hk_webhook_t *w = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_close_cb);
            curl_multi_assign(w->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->fd = fd;
        s->w = w;
        if (uv_poll_init_socket(w->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(w->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, poll_cb);
    return 0;
}

static void curl_timer_fire(uv_timer_t *t)
{
    hk_webhook_t *w = t->data;
    int running = 0;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    HK_UNUSED(multi);
    hk_webhook_t *w = userp;
    if (w->stopping)
        return 0; /* the timer handle may already be closing */
    if (timeout_ms < 0)
        uv_timer_stop(&w->curl_timer);
    else
        /* 0 means "act now": do it from the loop, not from inside curl's call. */
        uv_timer_start(&w->curl_timer, curl_timer_fire, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- starting transfers ---- */

static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return HK_ENOMEM;
    *list = n;
    return 0;
}

/* Builds the signed request of a claimed delivery and hands it to curl. */
static int start(hk_webhook_t *w, xfer_t *x)
{
    size_t blen = strlen(x->d.payload);
    char ts[24], line[160];
    snprintf(ts, sizeof(ts), "%" PRId64, hk_time_now_ms() / 1000);
    int rc = 0;
    snprintf(line, sizeof(line), "X-Webhook-Id: %s", x->d.event_id);
    rc |= add_header(&x->headers, "Content-Type: application/json");
    rc |= add_header(&x->headers, line);
    snprintf(line, sizeof(line), "X-Webhook-Timestamp: %s", ts);
    rc |= add_header(&x->headers, line);
    if (x->d.secret != NULL && x->d.secret[0] != '\0') {
        /* HMAC-SHA256(secret, "<timestamp>.<body>") over the exact bytes sent. */
        size_t tl = strlen(ts);
        char *msg = malloc(tl + 1 + blen);
        if (msg == NULL)
            return HK_ENOMEM;
        memcpy(msg, ts, tl);
        msg[tl] = '.';
        memcpy(msg + tl + 1, x->d.payload, blen);
        char hex[HK_SHA256_HEX_LEN + 1];
        hk_hmac_sha256_hex(x->d.secret, strlen(x->d.secret), msg, tl + 1 + blen, hex);
        free(msg);
        snprintf(line, sizeof(line), "X-Webhook-Signature: sha256=%s", hex);
        rc |= add_header(&x->headers, line);
    }
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    rc |= add_header(&x->headers, "Expect:");
    if (rc != 0)
        return HK_ENOMEM;

    CURL *e = x->easy = curl_easy_init();
    if (e == NULL)
        return HK_ENOMEM;
    curl_easy_setopt(e, CURLOPT_URL, x->d.url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through an environment proxy */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, w->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->d.payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, w->user_agent);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK)
        return HK_ENOMEM;
    return 0;
}

/* Starts queued deliveries while their endpoints have free slots (order kept per endpoint). */
static void pump(hk_webhook_t *w)
{
    xfer_t **pp = &w->q_head, *prev = NULL;
    while (*pp != NULL && w->nactive < MAX_ACTIVE && !w->stopping) {
        xfer_t *x = *pp;
        endpoint_t *ep = endpoint(w, x->d.user_id, true);
        if (ep != NULL && ep->active >= w->max_concurrency) {
            prev = x;
            pp = &x->next;
            continue;
        }
        *pp = x->next;
        if (w->q_tail == x)
            w->q_tail = prev;
        w->nqueued--;
        x->next = NULL;
        if (ep == NULL || start(w, x) != 0) {
            hk_log_error(MOD, "op=start delivery_id=%" PRId64 " err=\"out of memory\"", x->d.id);
            add_result(w, x, "pending", x->d.attempts, 0, "could not start the request",
                       hk_time_now_ms() + 1000);
            xfer_free(x);
            continue;
        }
        ep->active++;
        x->next = w->active;
        if (w->active)
            w->active->prev = x;
        w->active = x;
        w->nactive++;
    }
}

/* ---- claim and flush (worker jobs) ---- */

static void claim_work_cb(uv_work_t *req)
{
    hk_webhook_t *w = req->data;
    w->claim_rc = hk_store_webhook_claim(w->store, hk_time_now_ms(), w->claim_limit, &w->claimed,
                                         &w->nclaimed, &w->next_due);
}

static void poll_timer_cb(uv_timer_t *t)
{
    hk_webhook_t *w = t->data;
    request_flush(w);
    request_claim(w);
}

static void claim_after_cb(uv_work_t *req, int status)
{
    hk_webhook_t *w = req->data;
    w->claim_busy = false;
    hk_delivery_t *v = w->claimed;
    size_t n = w->nclaimed;
    w->claimed = NULL;
    w->nclaimed = 0;
    if (w->stopping || status != 0 || w->claim_rc != 0) {
        /* Claimed rows stay "sending" until hk_webhook_free (or the next start) resets them. */
        hk_store_free_deliveries(v, n);
        if (!w->stopping)
            uv_timer_start(&w->poll_timer, poll_timer_cb, 1000, 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        xfer_t *x = calloc(1, sizeof(*x));
        if (x == NULL) {
            hk_delivery_dispose(&v[i]);
            continue;
        }
        x->w = w;
        x->d = v[i]; /* moved */
        x->retry_after_s = -1;
        if (w->q_tail)
            w->q_tail->next = x;
        else
            w->q_head = x;
        w->q_tail = x;
        w->nqueued++;
    }
    free(v);
    pump(w);
    int64_t delay = POLL_MS;
    if (w->next_due > 0) {
        delay = w->next_due - hk_time_now_ms();
        delay = delay < 0 ? 0 : delay > POLL_MS ? POLL_MS : delay;
    }
    uv_timer_start(&w->poll_timer, poll_timer_cb, (uint64_t)delay, 0);
    if (w->claim_again || n == (size_t)w->claim_limit)
        request_claim(w);
}

static void request_claim(hk_webhook_t *w)
{
    if (w->stopping)
        return;
    if (w->claim_busy) {
        w->claim_again = true;
        return;
    }
    size_t held = w->nqueued + w->nactive;
    if (held >= MAX_HELD) {
        w->claim_again = true; /* a finishing transfer asks again */
        return;
    }
    size_t room = MAX_HELD - held;
    w->claim_limit = (int)(room < CLAIM_BATCH ? room : CLAIM_BATCH);
    w->claim_again = false;
    w->claim_work.data = w;
    if (uv_queue_work(w->loop, &w->claim_work, claim_work_cb, claim_after_cb) == 0)
        w->claim_busy = true;
}

static void flush_work_cb(uv_work_t *req)
{
    hk_webhook_t *w = req->data;
    w->flush_rc = hk_store_webhook_record(w->store, w->flv, w->nfl);
}

static void flush_after_cb(uv_work_t *req, int status)
{
    hk_webhook_t *w = req->data;
    w->flush_busy = false;
    if (status != 0 || w->flush_rc != 0) {
        /* Keep the outcomes and try again shortly; meanwhile the rows stay "sending". */
        hk_log_error(MOD, "op=record n=%zu err=\"%s\"", w->nfl,
                     hk_strerror(status ? status : w->flush_rc));
        size_t need = w->npend + w->nfl;
        if (need > w->pend_cap) {
            result_t *nv = realloc(w->pend, need * sizeof(*nv));
            if (nv != NULL) {
                w->pend = nv;
                w->pend_cap = need;
            }
        }
        if (need <= w->pend_cap) {
            memcpy(w->pend + w->npend, w->fl, w->nfl * sizeof(*w->fl));
            w->npend = need;
        }
        if (!w->stopping)
            uv_timer_start(&w->poll_timer, poll_timer_cb, 1000, 0);
    }
    free(w->fl);
    free(w->flv);
    w->fl = NULL;
    w->flv = NULL;
    w->nfl = 0;
    if (w->stopping || w->flush_rc != 0 || status != 0)
        return;
    request_claim(w); /* the next event of each finished meeting is due now */
    request_flush(w);
}

/* Points each result's error at its own buffer (the array no longer moves). */
static hk_delivery_result_t *results_view(result_t *v, size_t n)
{
    hk_delivery_result_t *out = malloc((n ? n : 1) * sizeof(*out));
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = v[i].r;
        out[i].last_error = v[i].has_err ? v[i].err : NULL;
    }
    return out;
}

static void request_flush(hk_webhook_t *w)
{
    if (w->stopping || w->flush_busy || w->npend == 0)
        return;
    hk_delivery_result_t *view = results_view(w->pend, w->npend);
    if (view == NULL)
        return;
    w->fl = w->pend;
    w->nfl = w->npend;
    w->flv = view;
    w->pend = NULL;
    w->npend = w->pend_cap = 0;
    w->flush_work.data = w;
    if (uv_queue_work(w->loop, &w->flush_work, flush_work_cb, flush_after_cb) == 0) {
        w->flush_busy = true;
        return;
    }
    w->pend = w->fl;
    w->npend = w->pend_cap = w->nfl;
    free(view);
    w->fl = NULL;
    w->flv = NULL;
    w->nfl = 0;
}

/* ---- wake-up from the store (any thread) ---- */

static void outbox_hook(void *arg)
{
    hk_webhook_t *w = arg;
    uv_async_send(&w->wake);
}

static void wake_cb(uv_async_t *h)
{
    request_claim(h->data);
}

/* ---- life cycle ---- */

int hk_webhook_new(uv_loop_t *loop, hk_store_t *store, const hk_config_t *cfg, hk_webhook_t **out)
{
    *out = NULL;
    hk_webhook_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return HK_ENOMEM;
    w->loop = loop;
    w->store = store;
    if (hk_config_int_list(cfg->webhook_retry_schedule, 0, 604800, w->schedule,
                           HK_ARRAY_SIZE(w->schedule), &w->nschedule)) {
        free(w);
        return HK_EINVAL;
    }
    w->connect_timeout_ms = cfg->webhook_connect_timeout_ms;
    w->timeout_ms = cfg->webhook_timeout_ms;
    w->max_concurrency = cfg->webhook_max_concurrency;
    w->max_response = cfg->webhook_max_response_bytes;
    w->allow_private = cfg->webhook_allow_private;
    snprintf(w->user_agent, sizeof(w->user_agent), "hark/%s", HK_VERSION);
    if (hk_random_bytes(&w->rng, sizeof(w->rng)) != 0 || w->rng == 0)
        w->rng = 0x9e3779b97f4a7c15ull;

    w->retention_days = cfg->webhook_retention_days;
    if (w->retention_days > 0)
        prune(w);
    int64_t reset = 0;
    if (hk_store_webhook_reset_sending(store, &reset) != 0) {
        free(w);
        return HK_ESTORE;
    }
    if (reset > 0)
        hk_log_info(MOD,
                    "op=start msg=\"deliveries interrupted by the last stop are due again\" "
                    "n=%" PRId64,
                    reset);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        (w->multi = curl_multi_init()) == NULL) {
        free(w);
        return HK_ENOMEM;
    }
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    uv_timer_init(loop, &w->curl_timer);
    uv_timer_init(loop, &w->poll_timer);
    uv_async_init(loop, &w->wake, wake_cb);
    uv_timer_init(loop, &w->prune_timer);
    w->curl_timer.data = w->poll_timer.data = w->wake.data = w->prune_timer.data = w;
    if (w->retention_days > 0)
        uv_timer_start(&w->prune_timer, prune_timer_cb, PRUNE_EVERY_MS, PRUNE_EVERY_MS);
    hk_store_set_outbox_hook(store, outbox_hook, w);
    if (w->allow_private)
        hk_log_warn(MOD, "msg=\"webhook_allow_private is on: deliveries may reach loopback and "
                         "private addresses\"");
    request_claim(w);
    *out = w;
    return 0;
}

void hk_webhook_stop(hk_webhook_t *w)
{
    if (w == NULL || w->stopping)
        return;
    hk_store_set_outbox_hook(w->store, NULL, NULL);
    w->stopping = true;
    /* Aborted transfers keep their "sending" rows; hk_webhook_free puts them back to pending. */
    while (w->active != NULL) {
        xfer_t *x = w->active;
        curl_multi_remove_handle(w->multi, x->easy);
        active_unlink(w, x);
        xfer_free(x);
    }
    while (w->q_head != NULL) {
        xfer_t *x = w->q_head;
        w->q_head = x->next;
        xfer_free(x);
    }
    w->q_tail = NULL;
    w->nqueued = 0;
    /* Closes cached connections now, while the loop can still close their poll handles. */
    curl_multi_cleanup(w->multi);
    w->multi = NULL;
    uv_timer_stop(&w->curl_timer);
    uv_timer_stop(&w->poll_timer);
    uv_close((uv_handle_t *)&w->curl_timer, NULL);
    uv_close((uv_handle_t *)&w->poll_timer, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_timer_stop(&w->prune_timer);
    uv_close((uv_handle_t *)&w->prune_timer, NULL); /* a prune in flight ends before the loop */
}

void hk_webhook_free(hk_webhook_t *w)
{
    if (w == NULL)
        return;
    if (w->npend > 0) {
        hk_delivery_result_t *view = results_view(w->pend, w->npend);
        if (view != NULL && hk_store_webhook_record(w->store, view, w->npend) != 0)
            hk_log_error(MOD,
                         "op=record n=%zu err=\"outcomes lost; those deliveries are "
                         "sent again\"",
                         w->npend);
        free(view);
    }
    hk_store_webhook_reset_sending(w->store, NULL);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    free(w->pend);
    free(w->fl);
    free(w->flv);
    free(w->eps);
    free(w);
    curl_global_cleanup();
}
