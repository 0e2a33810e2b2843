/* Tests for the HTTP/1.1 server: a real loop on a background thread, blocking clients here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "net/http.h"
#include "testnet.h"

#define IO_TIMEOUT_MS 3000

/* ---- server side (runs on the loop thread) ---------------------------------------------- */

typedef struct {
    hk_http_config_t cfg;
    tn_loop_t lt;
    uv_async_t stop;
    hk_http_server_t *srv;
    bool started, joined;
    int port;
    atomic_int dispatched; /* requests handed to on_request; polled by the client side */
    /* written by the loop thread, read after join */
    bool done;
    int requests, responses, last_status;
    size_t last_bytes;
    hk_http_stats_t final_stats;
} fixture_t;

typedef struct {
    uv_timer_t t;
    hk_http_req_t *req;
} held_t;

typedef struct {
    uv_write_t w;
    uv_tcp_t *tcp;
    char data[256];
} hijack_write_t;

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

static void held_fire(uv_timer_t *t)
{
    held_t *h = (held_t *)t;
    hk_http_respond(h->req, 200, "text/plain", "X-Slow: yes\r\n", "slow done", 9);
    uv_close((uv_handle_t *)t, free_handle_cb);
}

static void hijack_written(uv_write_t *w, int status)
{
    (void)status;
    hijack_write_t *hw = (hijack_write_t *)w;
    uv_close((uv_handle_t *)hw->tcp, free_handle_cb);
    free(hw);
}

static void on_request(hk_http_req_t *req, void *data)
{
    fixture_t *f = data;
    f->requests++;
    atomic_fetch_add(&f->dispatched, 1);
    char body[1024];
    if (strcmp(req->path, "/slow") == 0) {
        char ms[16];
        long delay = 300;
        if (hk_http_query_get(req, "ms", ms, sizeof(ms)) == 0)
            delay = strtol(ms, NULL, 10);
        held_t *h = malloc(sizeof(*h));
        assert_non_null(h);
        h->req = req;
        uv_timer_init(&f->lt.loop, &h->t);
        uv_timer_start(&h->t, held_fire, (uint64_t)delay, 0);
    } else if (strcmp(req->path, "/ws") == 0) {
        uv_tcp_t *tcp = NULL;
        hk_buf_t surplus;
        hk_buf_init(&surplus, 4096);
        int rc = hk_http_hijack(req, &tcp, &surplus);
        if (rc) {
            hk_http_respond(req, 500, "text/plain", NULL, "no hijack", 9);
            hk_buf_dispose(&surplus);
            return;
        }
        hijack_write_t *hw = calloc(1, sizeof(*hw));
        hw->tcp = tcp;
        int n =
            snprintf(hw->data, sizeof(hw->data), "HIJACKED:%s", surplus.data ? surplus.data : "");
        hk_buf_dispose(&surplus);
        uv_buf_t b = uv_buf_init(hw->data, (unsigned)n);
        uv_write(&hw->w, (uv_stream_t *)tcp, &b, 1, hijack_written);
    } else if (strcmp(req->path, "/echo") == 0) {
        int n = snprintf(body, sizeof(body), "m=%s p=%s q=%s b=%.*s", req->method, req->path,
                         req->query ? req->query : "-", (int)req->body_len, req->body);
        hk_http_respond(req, 200, "text/plain", NULL, body, (size_t)n);
    } else if (strcmp(req->path, "/rid") == 0) {
        hk_http_respond(req, 200, "text/plain", NULL, req->request_id, strlen(req->request_id));
    } else if (strcmp(req->path, "/hdr") == 0) {
        const char *v = hk_http_req_header(req, "x-test");
        int n = snprintf(body, sizeof(body), "[%s] n=%zu", v ? v : "(none)", req->nheaders);
        hk_http_respond(req, 200, "text/plain", NULL, body, (size_t)n);
    } else if (strcmp(req->path, "/big") == 0) {
        char nb[16];
        size_t len = 300000;
        if (hk_http_query_get(req, "n", nb, sizeof(nb)) == 0)
            len = (size_t)strtoul(nb, NULL, 10);
        char *big = malloc(len);
        for (size_t i = 0; i < len; i++)
            big[i] = (char)('a' + i % 26);
        hk_http_respond(req, 200, "application/octet-stream", NULL, big, len);
        free(big);
    } else if (strcmp(req->path, "/nocontent") == 0) {
        hk_http_respond(req, 204, NULL, NULL, NULL, 0);
    } else {
        hk_http_respond(req, 404, "application/json; charset=utf-8", NULL,
                        "{\"detail\":\"not found\"}", 22);
    }
}

static void on_response(const hk_http_req_t *req, int status, size_t bytes, uint64_t latency_ns,
                        void *data)
{
    (void)req;
    (void)latency_ns;
    fixture_t *f = data;
    f->responses++;
    f->last_status = status;
    f->last_bytes = bytes;
}

static void done_cb(void *data)
{
    fixture_t *f = data;
    f->done = true;
    hk_http_server_stats(f->srv, &f->final_stats);
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void stop_cb(uv_async_t *a)
{
    fixture_t *f = a->data;
    hk_http_server_shutdown(f->srv, done_cb, f);
}

static void default_config(fixture_t *f)
{
    tn_http_config(&f->cfg);
    f->cfg.on_request = on_request;
    f->cfg.on_response = on_response;
    f->cfg.data = f;
}

static void fixture_start(fixture_t *f)
{
    assert_int_equal(uv_loop_init(&f->lt.loop), 0);
    assert_int_equal(hk_http_server_new(&f->lt.loop, &f->cfg, &f->srv), 0);
    f->port = hk_http_server_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->lt.loop, &f->stop, stop_cb), 0);
    f->stop.data = f;
    tn_loop_start(&f->lt);
    f->started = true;
}

/* Waits until the server has dispatched n requests in total. */
static void wait_dispatched(fixture_t *f, int n)
{
    assert_true(tn_wait_atomic(&f->dispatched, n, 5000));
}

static void fixture_request_stop(fixture_t *f)
{
    uv_async_send(&f->stop);
}

/* Waits for the loop thread to finish (shutdown completed, every handle closed). */
static void fixture_join(fixture_t *f)
{
    tn_loop_join(&f->lt);
    f->joined = true;
    hk_http_server_free(f->srv);
    f->srv = NULL;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    default_config(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->started && !f->joined) {
        fixture_request_stop(f);
        fixture_join(f);
    }
    free(f);
    return 0;
}

/* ---- client side (the test thread) ------------------------------------------------------ */

typedef struct {
    int status;
    char head[8192];
    char body[400000];
    size_t body_len;
} resp_t;

static resp_t resp_storage;

static bool header_get(const resp_t *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2]) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p = strstr(p, "\r\n");
    }
    return false;
}

/* Reads one response; for HEAD requests pass head=true (no body follows). 0 or -1. */
static int cl_response(tn_client_t *c, resp_t *r, bool head)
{
    memset(r->head, 0, sizeof(r->head));
    r->body_len = 0;
    r->status = 0;
    size_t hlen = tn_head_len(c, IO_TIMEOUT_MS);
    if (hlen == 0)
        return -1;
    if (hlen >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->buf, hlen);
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    size_t blen = 0;
    char cl[32];
    if (!head && r->status >= 200 && r->status != 204 && r->status != 304 &&
        header_get(r, "content-length", cl, sizeof(cl)))
        blen = (size_t)strtoul(cl, NULL, 10);
    if (blen >= sizeof(r->body))
        return -1;
    while (c->len < hlen + blen)
        if (tn_more(c, IO_TIMEOUT_MS) <= 0)
            return -1;
    memcpy(r->body, c->buf + hlen, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    tn_consume(c, hlen + blen);
    return 0;
}

/* Reads a response head, then streams over a /big body checking its pattern. Returns the number
 * of body bytes seen (less than announced when the connection ends early). */
static size_t cl_big_response(tn_client_t *c, size_t *announced)
{
    *announced = 0;
    size_t hlen = tn_head_len(c, IO_TIMEOUT_MS);
    if (hlen == 0)
        return 0;
    resp_t *r = &resp_storage;
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    char cl[32];
    if (!header_get(r, "content-length", cl, sizeof(cl)))
        return 0;
    *announced = (size_t)strtoul(cl, NULL, 10);
    tn_consume(c, hlen);
    size_t seen = 0;
    while (seen < *announced) {
        if (c->len == 0 && tn_more(c, IO_TIMEOUT_MS) <= 0)
            break;
        size_t take = c->len < *announced - seen ? c->len : *announced - seen;
        for (size_t i = 0; i < take; i++)
            if (c->buf[i] != (char)('a' + (seen + i) % 26))
                return 0;
        seen += take;
        tn_consume(c, take);
    }
    return seen;
}

/* True when the server closes the connection within timeout_ms without sending anything more. */
static bool cl_closed(tn_client_t *c, int timeout_ms)
{
    size_t before = c->len;
    for (;;) {
        int r = tn_more(c, timeout_ms);
        if (r < 0)
            return c->len == before;
        if (r == 0)
            return false;
    }
}

static bool nothing_within(tn_client_t *c, int ms)
{
    return tn_more(c, ms) == 0;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- tests ------------------------------------------------------------------------------ */

static void test_keep_alive(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    char v[256];

    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/echo?x=1"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "m=GET p=/echo q=x=1 b=");
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "keep-alive");
    assert_true(header_get(r, "content-type", v, sizeof(v)));
    assert_string_equal(v, "text/plain");
    assert_true(header_get(r, "date", v, sizeof(v)));
    assert_int_equal(strlen(v), 29);
    assert_string_equal(v + 25, " GMT");
    assert_true(header_get(r, "x-request-id", v, sizeof(v)));
    assert_int_equal(strlen(v), 19);
    assert_true(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);

    tn_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=POST p=/echo q=- b=hello");

    /* absolute-form targets and fragments */
    tn_send_str(c, "GET http://example.com:8080/echo?a=b#frag HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=a=b b=");
    tn_send_str(c, "GET http://example.com HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 404);
    tn_send_str(c, "GET /echo#only-frag HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=- b=");

    tn_send_str(c, "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 404);
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* HTTP/1.0: close by default, keep-alive on request */
    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /echo HTTP/1.0\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "keep-alive");
    tn_send_str(c, "GET /echo?again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=again b=");
    tn_close(c);
}

static void test_pipelining(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *c = tn_connect(f->port, 0);
    /* an asynchronous handler in the middle must not let later responses overtake it */
    tn_send_str(c,
                GET("/echo?n=1") GET("/slow?ms=200") "POST /echo?n=3 HTTP/1.1\r\nContent-Length: "
                                                     "3\r\n\r\nabc" GET("/echo?n=4"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=n=1 b=");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "slow done");
    char v[64];
    assert_true(header_get(r, "x-slow", v, sizeof(v)));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=POST p=/echo q=n=3 b=abc");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=n=4 b=");

    /* a deep pipeline in one write: answered in order, no recursion, bounded buffering */
    enum { N = 2000 };
    size_t cap = (size_t)N * 48, len = 0;
    char *all = malloc(cap);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(all + len, cap - len, "GET /echo?i=%d HTTP/1.1\r\n\r\n", i);
    tn_send(c, all, len);
    free(all);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof(want), "m=GET p=/echo q=i=%d b=", i);
        assert_int_equal(cl_response(c, r, false), 0);
        assert_string_equal(r->body, want);
    }

    /* >64 KiB queued behind a slow handler: the server stops reading, then resumes */
    enum { M = 4000 };
    cap = (size_t)M * 48 + 64;
    all = malloc(cap);
    len = (size_t)snprintf(all, cap, "%s", GET("/slow?ms=150"));
    for (int i = 0; i < M; i++)
        len += (size_t)snprintf(all + len, cap - len, "GET /echo?j=%d HTTP/1.1\r\n\r\n", i);
    assert_true(len > 100000);
    tn_send(c, all, len);
    free(all);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "slow done");
    for (int i = 0; i < M; i++) {
        char want[64];
        snprintf(want, sizeof(want), "m=GET p=/echo q=j=%d b=", i);
        assert_int_equal(cl_response(c, r, false), 0);
        assert_string_equal(r->body, want);
    }
    tn_close(c);
}

static void test_chunked_body(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "m=POST p=/echo q=- b=hello world");

    /* the same, trickled byte by byte, with a trailer */
    const char *msg = "POST /echo?t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for (const char *p = msg; *p; p++)
        tn_send(c, p, 1);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=POST p=/echo q=t b=abcde");

    /* over the cap (4096) in chunks: 413 as soon as the cap is passed, then close */
    char chunk[1100];
    memset(chunk, 'z', sizeof(chunk));
    tn_send_str(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 4; i++) {
        tn_send_str(c, "44c\r\n");
        tn_send(c, chunk, sizeof(chunk));
        tn_send_str(c, "\r\n");
    }
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 413);
    char v[64];
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(header_get(r, "content-type", v, sizeof(v)));
    assert_string_equal(v, "application/json; charset=utf-8");
    assert_non_null(strstr(r->body, "{\"detail\":\"request body exceeds"));
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);
}

static void test_expect_continue(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 100);
    assert_string_equal(r->head, "HTTP/1.1 100 Continue\r\n\r\n");
    tn_send_str(c, "12345");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "m=PUT p=/echo q=- b=12345");

    /* too big: 413 at once, no 100 Continue, connection closed */
    tn_send_str(c, "PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 413);
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);
}

static void test_413_content_length(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "POST /echo HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 413);
    assert_string_equal(r->body, "{\"detail\":\"request body exceeds the limit of 4096 bytes\"}");
    char v[64];
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* a client that keeps sending its body still reads the 413 (lingering close) */
    c = tn_connect(f->port, 0);
    tn_send_str(c, "POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
    char junk[8192];
    memset(junk, 'j', sizeof(junk));
    for (int i = 0; i < 8; i++)
        tn_send(c, junk, sizeof(junk));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 413);
    tn_close(c);

    /* exactly at the cap is fine */
    c = tn_connect(f->port, 0);
    char *req = malloc(8192);
    int n = snprintf(req, 8192, "POST /hdr HTTP/1.1\r\nContent-Length: 4096\r\n\r\n");
    memset(req + n, 'b', 4096);
    tn_send(c, req, (size_t)n + 4096);
    free(req);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    tn_close(c);
}

static void test_431_and_414(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;

    char *big = malloc(20000);
    memset(big, 'a', 19999);
    big[19999] = '\0';

    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /echo HTTP/1.1\r\nX-Big: ");
    tn_send(c, big, 10000);
    tn_send_str(c, "\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 431);
    assert_string_equal(r->body, "{\"detail\":\"request headers too large\"}");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /");
    tn_send(c, big, 10000);
    tn_send_str(c, " HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 414);
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* too many headers */
    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /hdr HTTP/1.1\r\n");
    for (int i = 0; i < 101; i++)
        tn_send_str(c, "A: b\r\n");
    tn_send_str(c, "\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 431);
    assert_string_equal(r->body, "{\"detail\":\"too many request headers\"}");
    tn_close(c);

    /* 100 headers are fine; names are lower-cased, values trimmed */
    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /hdr HTTP/1.1\r\nX-TEST:   spaced value  \r\n");
    for (int i = 0; i < 99; i++)
        tn_send_str(c, "A: b\r\n");
    tn_send_str(c, "\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "[spaced value] n=100");
    tn_send_str(c, "GET /hdr HTTP/1.1\r\nX-Test:\r\nX-Other: 1\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "[] n=2");
    tn_send_str(c, "GET /hdr HTTP/1.1\r\nX-Other: 1\r\nX-Test:\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "[] n=2");
    tn_close(c);
    free(big);
}

static void test_malformed(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    char v[64];

    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 400);
    assert_string_equal(r->body,
                        "{\"detail\":\"malformed HTTP request: invalid character in content-length "
                        "header\"}");
    assert_true(header_get(r, "content-type", v, sizeof(v)));
    assert_string_equal(v, "application/json; charset=utf-8");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* garbage as the very first byte; and after a good request on the same connection */
    c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/echo") "\x01\x02garbage\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 400);
    assert_non_null(strstr(r->body, "malformed HTTP request: "));
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* both Content-Length and chunked */
    c = tn_connect(f->port, 0);
    tn_send_str(c,
                "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 400);
    tn_close(c);
}

static void test_head_and_204(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    char v[64];
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "HEAD /echo HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(c, r, true), 0);
    assert_int_equal(r->status, 200);
    assert_true(header_get(r, "content-length", v, sizeof(v)));
    snprintf(r->body, sizeof(r->body), "%zu", strlen("m=HEAD p=/echo q=- b="));
    assert_string_equal(v, r->body);
    tn_send_str(c, "GET /nocontent HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 204);
    assert_false(header_get(r, "content-length", v, sizeof(v)));
    /* no stray body bytes: the next response parses */
    tn_send_str(c, GET("/echo"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=- b=");
    assert_true(nothing_within(c, 50));
    tn_close(c);
}

static void test_request_id(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    char v[64];
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /rid HTTP/1.1\r\nX-Request-Id: abc-123_x.Y\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "abc-123_x.Y");
    assert_true(header_get(r, "x-request-id", v, sizeof(v)));
    assert_string_equal(v, "abc-123_x.Y");

    char first[32];
    tn_send_str(c, "GET /rid HTTP/1.1\r\nX-Request-Id: has space\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(strlen(r->body), 19);
    memcpy(first, r->body, 20);
    tn_send_str(c, "GET /rid HTTP/1.1\r\nX-Request-Id: 01234567890123456789\r\n\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(strlen(r->body), 19);
    assert_string_not_equal(r->body, first);
    assert_string_not_equal(r->body, "0123456789012345678");
    tn_close(c);
}

static void test_timeouts(void **state)
{
    fixture_t *f = *state;
    f->cfg.idle_timeout_ms = 300;
    f->cfg.header_timeout_ms = 300;
    f->cfg.body_timeout_ms = 300;
    fixture_start(f);
    resp_t *r = &resp_storage;

    /* idle: closed without a response */
    tn_client_t *c = tn_connect(f->port, 0);
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* idle after a request */
    c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/echo"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* headers too slow: 408 */
    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /echo HTTP/1.1\r\nHost: t\r\n");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 408);
    assert_string_equal(r->body, "{\"detail\":\"timed out reading the request headers\"}");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* body too slow: 408 */
    c = tn_connect(f->port, 0);
    tn_send_str(c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 408);
    assert_string_equal(r->body, "{\"detail\":\"timed out reading the request body\"}");
    tn_close(c);

    /* no timeout while a handler works, and a busy connection is not idle */
    c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/slow?ms=700"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "slow done");
    for (int i = 0; i < 8; i++) {
        usleep(100 * 1000);
        tn_send_str(c, GET("/echo"));
        assert_int_equal(cl_response(c, r, false), 0);
        assert_int_equal(r->status, 200);
    }
    tn_close(c);
}

static void test_client_gone_while_handler_works(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/slow?ms=200"));
    tn_close(c);
    /* a reset instead of a FIN */
    c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/slow?ms=200") GET("/echo"));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    wait_dispatched(f, 2);
    tn_close(c);
    usleep(400 * 1000);

    c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/echo"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    tn_close(c);

    /* half-close: the response still arrives */
    c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/slow?ms=100"));
    shutdown(c->fd, SHUT_WR);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "slow done");
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    fixture_request_stop(f);
    fixture_join(f);
    assert_int_equal(f->final_stats.open_connections, 0);
    assert_int_equal(f->final_stats.accepted_total, 4);
}

static void test_graceful_shutdown(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    resp_t *r = &resp_storage;
    char v[64];

    tn_client_t *idle = tn_connect(f->port, 0);
    tn_send_str(idle, GET("/echo"));
    assert_int_equal(cl_response(idle, r, false), 0);

    tn_client_t *busy = tn_connect(f->port, 0);
    tn_send_str(busy, GET("/slow?ms=400"));
    wait_dispatched(f, 2);

    fixture_request_stop(f);
    assert_true(cl_closed(idle, IO_TIMEOUT_MS));
    tn_close(idle);

    /* the listener is gone */
    int refused = 0;
    for (int i = 0; i < 100 && !refused; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = tn_loopback(f->port);
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno == ECONNREFUSED)
            refused = 1;
        close(fd);
        if (!refused)
            usleep(10 * 1000);
    }
    assert_true(refused);

    assert_int_equal(cl_response(busy, r, false), 0);
    assert_string_equal(r->body, "slow done");
    assert_true(header_get(r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(cl_closed(busy, IO_TIMEOUT_MS));
    tn_close(busy);

    fixture_join(f);
    assert_true(f->done);
    assert_int_equal(f->lt.close_rc, 0);
    assert_int_equal(f->final_stats.open_connections, 0);
    assert_int_equal(f->final_stats.accepted_total, 2);
    assert_int_equal(f->final_stats.requests_total, 2);
    assert_int_equal(f->responses, 2);
}

static void test_shutdown_with_client_gone(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c, GET("/slow?ms=300"));
    wait_dispatched(f, 1);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* RST: the client is really gone */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    tn_close(c);
    usleep(50 * 1000);
    fixture_request_stop(f);
    fixture_join(f); /* done only after the handler answered */
    assert_true(f->done);
    assert_int_equal(f->lt.close_rc, 0);
    assert_int_equal(f->responses, 1);
    assert_int_equal(f->last_bytes, 0);
}

static void test_hijack(void **state)
{
    fixture_t *f = *state;
    fixture_start(f);
    tn_client_t *c = tn_connect(f->port, 0);
    tn_send_str(c,
                "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nEXTRA-bytes");
    const char *want = "HIJACKED:EXTRA-bytes";
    while (c->len < strlen(want))
        assert_int_equal(tn_more(c, IO_TIMEOUT_MS), 1);
    c->buf[c->len] = '\0';
    assert_string_equal(c->buf, want);
    c->len = 0;
    assert_true(cl_closed(c, IO_TIMEOUT_MS));
    tn_close(c);

    /* an upgrade request that is answered normally keeps speaking HTTP */
    resp_t *r = &resp_storage;
    c = tn_connect(f->port, 0);
    tn_send_str(c, "GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" GET(
                       "/echo?after"));
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=after b=");
    tn_close(c);

    fixture_request_stop(f);
    fixture_join(f);
    assert_int_equal(f->final_stats.open_connections, 0);
    assert_int_equal(f->final_stats.requests_total, 3);
}

static void test_max_connections(void **state)
{
    fixture_t *f = *state;
    f->cfg.max_connections = 2;
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *a = tn_connect(f->port, 0);
    tn_client_t *b = tn_connect(f->port, 0);
    tn_send_str(a, GET("/echo"));
    assert_int_equal(cl_response(a, r, false), 0);
    tn_send_str(b, GET("/echo"));
    assert_int_equal(cl_response(b, r, false), 0);
    tn_client_t *x = tn_connect(f->port, 0); /* the kernel accepts; the server closes it */
    assert_true(cl_closed(x, IO_TIMEOUT_MS));
    tn_close(x);
    tn_close(a);
    int ok = 0; /* room again once the server has seen the close */
    for (int i = 0; i < 100 && !ok; i++) {
        x = tn_connect(f->port, 0);
        tn_send_str(x, GET("/echo"));
        ok = cl_response(x, r, false) == 0 && r->status == 200;
        tn_close(x);
        if (!ok)
            usleep(20 * 1000);
    }
    assert_true(ok);
    tn_close(b);
    fixture_request_stop(f);
    fixture_join(f);
    assert_true(f->final_stats.accepted_total >= 4);
}

static void test_slow_reader(void **state)
{
    fixture_t *f = *state;
    f->cfg.idle_timeout_ms = 400;
    fixture_start(f);
    resp_t *r = &resp_storage;

    /* the response backs up in uv_write; the pipelined request waits for it, then goes out */
    tn_client_t *c = tn_connect(f->port, 8192);
    tn_send_str(c, GET("/big?n=8000000") GET("/echo?after-big"));
    usleep(300 * 1000);
    size_t announced;
    assert_int_equal(cl_big_response(c, &announced), 8000000);
    assert_int_equal(announced, 8000000);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=after-big b=");
    tn_close(c);

    /* a client that stops reading is dropped after the idle timeout without progress */
    c = tn_connect(f->port, 8192);
    tn_send_str(c, GET("/big?n=20000000"));
    usleep(1500 * 1000);
    size_t seen = cl_big_response(c, &announced);
    assert_int_equal(announced, 20000000);
    assert_true(seen < announced);
    tn_close(c);

    fixture_request_stop(f);
    fixture_join(f);
    assert_int_equal(f->final_stats.open_connections, 0);
}

static void test_big_response_and_access_log(void **state)
{
    fixture_t *f = *state;
    f->cfg.access_log = true;
    FILE *logf = tmpfile();
    assert_non_null(logf);
    hk_log_init(HK_LOG_INFO, logf);
    fixture_start(f);
    resp_t *r = &resp_storage;
    tn_client_t *c = tn_connect(f->port, 0);
    /* two large responses queued behind each other; the client reads late */
    tn_send_str(c, GET("/big?n=300000") GET("/big?n=200000") GET("/echo"));
    usleep(200 * 1000);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->body_len, 300000);
    assert_int_equal(r->body[299999], 'a' + 299999 % 26);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_int_equal(r->body_len, 200000);
    assert_int_equal(cl_response(c, r, false), 0);
    assert_string_equal(r->body, "m=GET p=/echo q=- b=");
    tn_close(c);
    fixture_request_stop(f);
    fixture_join(f);
    hk_log_init(HK_LOG_OFF, NULL);

    fflush(logf);
    rewind(logf);
    char line[1024];
    int n = 0, echo = 0;
    while (fgets(line, sizeof(line), logf)) {
        n++;
        if (strstr(line, "mod=http method=GET path=\"/echo\" status=200 bytes=") &&
            strstr(line, " remote=127.0.0.1") && strstr(line, "latency_ms="))
            echo++;
    }
    fclose(logf);
    assert_int_equal(n, 3);
    assert_int_equal(echo, 1);
}

static void test_new_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    hk_http_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.bind = "not-an-ip";
    cfg.on_request = on_request;
    cfg.max_header_bytes = 1024;
    hk_http_server_t *srv = NULL;
    assert_int_equal(hk_http_server_new(&loop, &cfg, &srv), UV_EINVAL);
    cfg.bind = "127.0.0.1";
    cfg.on_request = NULL;
    assert_int_equal(hk_http_server_new(&loop, &cfg, &srv), UV_EINVAL);

    /* port in use */
    cfg.on_request = on_request;
    assert_int_equal(hk_http_server_new(&loop, &cfg, &srv), 0);
    hk_http_server_t *srv2 = NULL;
    cfg.port = hk_http_server_port(srv);
    assert_int_equal(hk_http_server_new(&loop, &cfg, &srv2), UV_EADDRINUSE);
    assert_null(srv2);

    /* shutdown with no connection: done_cb runs from the loop, once */
    hk_http_server_shutdown(srv, NULL, NULL);
    hk_http_server_shutdown(srv, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    hk_http_server_free(srv);
    hk_http_server_free(NULL);

    /* IPv6 loopback */
    cfg.bind = "::1";
    cfg.port = 0;
    if (hk_http_server_new(&loop, &cfg, &srv) == 0) {
        assert_true(hk_http_server_port(srv) > 0);
        hk_http_server_shutdown(srv, NULL, NULL);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        hk_http_server_free(srv);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    hk_log_init(HK_LOG_OFF, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_431_and_414, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_and_204, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_while_handler_works, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_with_client_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hijack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_response_and_access_log, setup, teardown),
        cmocka_unit_test(test_new_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
