/* Tests for the WebSocket layer: the real HTTP server and hk_ws on a loop thread, raw blocking
 * RFC 6455 clients here (every read bounded by poll, so a bug fails instead of hanging). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "net/http.h"
#include "net/ws.h"
#include "testnet.h"

#define IO_TIMEOUT_MS 3000
#define MAX_MESSAGE (64 * 1024)
#define MAX_QUEUE (256 * 1024)
#define FLOOD_MSG (32 * 1024)
#define PING_MS 100
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 section 1.3 */

/* ---- server side (loop thread) ------------------------------------------------------------ */

/* cmocka's asserts may only fail on the test thread; the loop thread aborts instead. */
#define LOOP_CHECK(x)                                                                              \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: loop check failed: %s\n", __FILE__, __LINE__, #x);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct conn_s conn_t;

typedef struct {
    hk_http_config_t cfg;
    tn_loop_t lt;
    uv_async_t stop;
    uv_timer_t flood;
    hk_http_server_t *srv;
    bool started, joined;
    int port;
    /* loop thread only */
    conn_t *conns;
    hk_ws_t *flood_ws;
    hk_ws_msg_t *flood_msg;
    /* published to the test thread */
    atomic_int opened, closed, last_code;
    atomic_int flood_rc; /* 1 while flooding, then the failing send's result */
    atomic_int big_sent; /* the "big" command's send returned (with big_rc) */
    atomic_int big_rc;
    atomic_size_t max_queued;
    char last_reason[128]; /* written before `closed` is incremented */
} fixture_t;

struct conn_s {
    fixture_t *f;
    hk_ws_t *ws;
    conn_t *next;
};

static void ws_on_text(hk_ws_t *ws, const char *data, size_t len);
static void ws_on_too_big(hk_ws_t *ws, uint64_t len)
{
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "too big: %llu", (unsigned long long)len);
    hk_ws_send_text(ws, msg, (size_t)n);
}

static void ws_on_binary(hk_ws_t *ws, const char *data, size_t len);
static void ws_on_close(hk_ws_t *ws, uint16_t code, const char *reason);

static void flood_tick(uv_timer_t *t)
{
    fixture_t *f = t->data;
    for (int i = 0; i < 4 && f->flood_ws; i++) {
        int rc = hk_ws_send_shared(f->flood_ws, f->flood_msg);
        size_t q = hk_ws_queued_bytes(f->flood_ws);
        if (q > atomic_load(&f->max_queued))
            atomic_store(&f->max_queued, q);
        if (rc) {
            atomic_store(&f->flood_rc, rc);
            f->flood_ws = NULL;
            uv_timer_stop(t);
        }
    }
}

static void ws_on_text(hk_ws_t *ws, const char *data, size_t len)
{
    conn_t *c = hk_ws_get_data(ws);
    fixture_t *f = c->f;
    if (len == 5 && memcmp(data, "flood", 5) == 0) {
        f->flood_ws = ws;
        atomic_store(&f->flood_rc, 1);
        uv_timer_start(&f->flood, flood_tick, 1, 1);
    } else if (len >= 6 && memcmp(data, "bcast:", 6) == 0) {
        hk_ws_msg_t *m = hk_ws_msg_new(HK_WS_OP_TEXT, data + 6, len - 6);
        LOOP_CHECK(m);
        for (conn_t *o = f->conns; o; o = o->next)
            hk_ws_send_shared(o->ws, m);
        hk_ws_msg_unref(m); /* the connections hold their own references */
    } else if (len == 3 && memcmp(data, "big", 3) == 0) {
        /* one frame larger than the whole send queue */
        size_t n = 3 * MAX_QUEUE;
        char *p = malloc(n);
        LOOP_CHECK(p);
        for (size_t i = 0; i < n; i++)
            p[i] = (char)(i * 13);
        atomic_store(&f->big_rc, hk_ws_send_binary(ws, p, n));
        atomic_store(&f->big_sent, 1);
        free(p);
    } else if (len == 5 && memcmp(data, "close", 5) == 0) {
        hk_ws_send_text(ws, "closing", 7);
        hk_ws_close(ws, 4000, "bye from server");
        hk_ws_send_text(ws, "too late", 8); /* refused: after the close frame nothing goes */
    } else {
        hk_ws_send_text(ws, data, len);
    }
}

static void ws_on_binary(hk_ws_t *ws, const char *data, size_t len)
{
    hk_ws_send_binary(ws, data, len);
}

static void ws_on_close(hk_ws_t *ws, uint16_t code, const char *reason)
{
    conn_t *c = hk_ws_get_data(ws);
    fixture_t *f = c->f;
    for (conn_t **p = &f->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    if (f->flood_ws == ws) {
        f->flood_ws = NULL;
        uv_timer_stop(&f->flood);
    }
    LOOP_CHECK(hk_ws_send_text(ws, "x", 1) == HK_ESTATE);
    snprintf(f->last_reason, sizeof(f->last_reason), "%s", reason);
    atomic_store(&f->last_code, code);
    atomic_fetch_add(&f->closed, 1);
    free(c);
}

static void on_request(hk_http_req_t *req, void *data)
{
    fixture_t *f = data;
    if (strcmp(req->path, "/ws") != 0 && strcmp(req->path, "/ws/ping") != 0) {
        hk_http_respond(req, 404, "application/json", NULL, "{\"detail\":\"not found\"}", 22);
        return;
    }
    conn_t *c = calloc(1, sizeof(*c));
    LOOP_CHECK(c);
    c->f = f;
    hk_ws_config_t cfg = {
        .max_message_bytes = MAX_MESSAGE,
        .max_queue_bytes = MAX_QUEUE,
        .ping_interval_ms = strcmp(req->path, "/ws/ping") == 0 ? PING_MS : 0,
        .close_timeout_ms = 2000,
        .on_text = ws_on_text,
        .on_binary = ws_on_binary,
        .on_close = ws_on_close,
        .on_too_big = ws_on_too_big,
        .data = c,
    };
    int rc = hk_ws_accept(req, &cfg, &c->ws);
    if (rc) {
        free(c);
        hk_ws_reject(req, rc);
        return;
    }
    LOOP_CHECK(hk_ws_is_open(c->ws));
    LOOP_CHECK(hk_ws_get_data(c->ws) == c);
    c->next = f->conns;
    f->conns = c;
    atomic_fetch_add(&f->opened, 1);
}

static void done_cb(void *data)
{
    fixture_t *f = data;
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void stop_cb(uv_async_t *a)
{
    fixture_t *f = a->data;
    for (conn_t *c = f->conns; c; c = c->next)
        hk_ws_close(c->ws, HK_WS_CLOSE_GOING_AWAY, "server stopping");
    uv_close((uv_handle_t *)&f->flood, NULL);
    hk_ws_msg_unref(f->flood_msg);
    f->flood_msg = NULL;
    hk_http_server_shutdown(f->srv, done_cb, f);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    tn_http_config(&f->cfg);
    f->cfg.max_header_bytes = 8192;
    f->cfg.on_request = on_request;
    f->cfg.data = f;
    char *payload = malloc(FLOOD_MSG);
    assert_non_null(payload);
    for (size_t i = 0; i < FLOOD_MSG; i++)
        payload[i] = (char)(i * 7);
    f->flood_msg = hk_ws_msg_new(HK_WS_OP_BINARY, payload, FLOOD_MSG);
    free(payload);
    assert_non_null(f->flood_msg);

    assert_int_equal(uv_loop_init(&f->lt.loop), 0);
    assert_int_equal(hk_http_server_new(&f->lt.loop, &f->cfg, &f->srv), 0);
    f->port = hk_http_server_port(f->srv);
    assert_int_equal(uv_async_init(&f->lt.loop, &f->stop, stop_cb), 0);
    f->stop.data = f;
    assert_int_equal(uv_timer_init(&f->lt.loop, &f->flood), 0);
    f->flood.data = f;
    tn_loop_start(&f->lt);
    f->started = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    uv_async_send(&f->stop);
    tn_loop_join(&f->lt);
    assert_int_equal(f->lt.close_rc, 0); /* every handle closed */
    assert_int_equal(atomic_load(&f->opened), atomic_load(&f->closed));
    hk_http_server_free(f->srv);
    free(f);
    return 0;
}

/* ---- client side (test thread) ------------------------------------------------------------ */

typedef struct {
    int fin, opcode;
    size_t len;
    unsigned char *data; /* points into the client's frame storage */
    unsigned char raw_head[14];
    size_t raw_head_len;
} frame_t;

static unsigned char frame_storage[1 << 20];

/* Reads the HTTP response head into head (NUL-terminated) and returns the status, or -1. */
static int cl_http_head(tn_client_t *c, char *head, size_t headlen)
{
    size_t n = tn_head_len(c, IO_TIMEOUT_MS);
    if (n == 0 || n >= headlen)
        return -1;
    memcpy(head, c->buf, n);
    head[n] = '\0';
    tn_consume(c, n);
    int status = -1;
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1)
        return -1;
    return status;
}

/* Builds one client frame (masked unless told otherwise) into out; returns its length. */
static size_t make_frame(unsigned char *out, int fin, int opcode, const void *payload, size_t len,
                         bool masked)
{
    size_t n = 0;
    out[n++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    unsigned char m = masked ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (unsigned char)(m | len);
    } else if (len <= 0xffff) {
        out[n++] = m | 126;
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (masked) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++)
        out[n + i] = masked ? p[i] ^ key[i % 4] : p[i];
    return n + len;
}

static unsigned char send_storage[1 << 20];

static void cl_frame(tn_client_t *c, int fin, int opcode, const void *payload, size_t len,
                     bool masked)
{
    assert_true(len + 14 <= sizeof(send_storage));
    size_t n = make_frame(send_storage, fin, opcode, payload, len, masked);
    tn_send(c, send_storage, n);
}

static void cl_text(tn_client_t *c, const char *s)
{
    cl_frame(c, 1, 1, s, strlen(s), true);
}

/* Reads one server frame: 1 ok, 0 timeout, -1 connection ended. Payload in frame_storage. */
static int cl_read_frame(tn_client_t *c, frame_t *fr, int timeout_ms)
{
    for (;;) {
        const unsigned char *b = (const unsigned char *)c->buf;
        if (c->len >= 2) {
            size_t hl = 2, len = b[1] & 0x7f;
            assert_int_equal(b[1] & 0x80, 0); /* server frames are never masked */
            if (len == 126)
                hl = 4;
            else if (len == 127)
                hl = 10;
            if (c->len >= hl) {
                if (len == 126)
                    len = (size_t)b[2] << 8 | b[3];
                else if (len == 127) {
                    len = 0;
                    for (int i = 0; i < 8; i++)
                        len = len << 8 | b[2 + i];
                }
                assert_true(len <= sizeof(frame_storage));
                if (c->len >= hl + len) {
                    fr->fin = b[0] >> 7;
                    fr->opcode = b[0] & 0x0f;
                    fr->len = len;
                    fr->raw_head_len = hl;
                    memcpy(fr->raw_head, c->buf, hl);
                    memcpy(frame_storage, c->buf + hl, len);
                    fr->data = frame_storage;
                    tn_consume(c, hl + len);
                    return 1;
                }
            }
        }
        int r = tn_more(c, timeout_ms);
        if (r == 0)
            return 0;
        if (r < 0)
            return -1;
    }
}

/* Reads frames until a close frame; returns its code (0 when none came), reason into out. */
static int cl_expect_close(tn_client_t *c, char *reason, size_t rlen)
{
    frame_t fr;
    while (cl_read_frame(c, &fr, IO_TIMEOUT_MS) == 1) {
        if (fr.opcode != 8)
            continue;
        if (fr.len < 2)
            return 1005;
        if (reason) {
            size_t n = fr.len - 2 < rlen - 1 ? fr.len - 2 : rlen - 1;
            memcpy(reason, fr.data + 2, n);
            reason[n] = '\0';
        }
        return fr.data[0] << 8 | fr.data[1];
    }
    return 0;
}

/* True when the server ends the TCP connection within IO_TIMEOUT_MS (data before it ignored). */
static bool cl_expect_eof(tn_client_t *c)
{
    for (;;) {
        c->len = 0;
        int r = tn_more(c, IO_TIMEOUT_MS);
        if (r < 0)
            return true;
        if (r == 0)
            return false;
    }
}

static void cl_send_close(tn_client_t *c, uint16_t code, const char *reason)
{
    unsigned char p[128];
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    size_t n = strlen(reason);
    memcpy(p + 2, reason, n);
    cl_frame(c, 1, 8, p, n + 2, true);
}

static void upgrade_request(char *out, size_t outlen, const char *path, const char *extra)
{
    snprintf(out, outlen,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
             path, extra);
}

/* Connects and upgrades; `after` bytes (may be NULL) are sent in the same write as the request,
 * so they reach the server as surplus behind the upgrade. */
static tn_client_t *ws_open(fixture_t *f, const char *path, const void *after, size_t after_len,
                            int rcvbuf)
{
    tn_client_t *c = tn_connect(f->port, rcvbuf);
    char req[1024];
    upgrade_request(req, sizeof(req), path, "Sec-WebSocket-Key: " RFC_KEY "\r\n");
    size_t n = strlen(req);
    assert_true(n + after_len <= sizeof(send_storage));
    memcpy(send_storage, req, n);
    if (after_len)
        memcpy(send_storage + n, after, after_len);
    tn_send(c, send_storage, n + after_len);
    char head[2048];
    assert_int_equal(cl_http_head(c, head, sizeof(head)), 101);
    assert_non_null(strcasestr(head, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strcasestr(head, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(head, "\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"));
    return c;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_accept_key(void **state)
{
    (void)state;
    char out[HK_WS_ACCEPT_LEN + 1];
    assert_int_equal(hk_ws_accept_key(RFC_KEY, strlen(RFC_KEY), out), 0);
    assert_string_equal(out, RFC_ACCEPT);
}

static void test_msg_framing(void **state)
{
    (void)state;
    static char big[70000];
    memset(big, 'z', sizeof(big));
    const size_t lens[] = {0, 125, 126, 65535, 65536, sizeof(big)};
    for (size_t i = 0; i < HK_ARRAY_SIZE(lens); i++) {
        hk_ws_msg_t *m = hk_ws_msg_new(HK_WS_OP_BINARY, big, lens[i]);
        assert_non_null(m);
        size_t len = 99;
        const char *p = hk_ws_msg_payload(m, &len);
        assert_int_equal(len, lens[i]);
        assert_memory_equal(p, big, len);
        assert_ptr_equal(hk_ws_msg_ref(m), m);
        hk_ws_msg_unref(m);
        hk_ws_msg_unref(m);
    }
    assert_null(hk_ws_msg_new(9 /* ping */, "x", 1));
    hk_ws_msg_unref(NULL);
}

static void test_echo_text_binary(void **state)
{
    fixture_t *f = *state;
    /* a frame pipelined behind the upgrade request exercises the surplus path */
    unsigned char first[64];
    size_t n = make_frame(first, 1, 1, "early", 5, true);
    tn_client_t *c = ws_open(f, "/ws", first, n, 0);
    frame_t fr;
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 1);
    assert_int_equal(fr.fin, 1);
    assert_int_equal(fr.len, 5);
    assert_memory_equal(fr.data, "early", 5);

    cl_text(c, "hello, wörld");
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 1);
    assert_int_equal(fr.len, strlen("hello, wörld"));
    assert_memory_equal(fr.data, "hello, wörld", fr.len);

    static unsigned char bin[40000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 31 + 7);
    cl_frame(c, 1, 2, bin, sizeof(bin), true);
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 2);
    assert_int_equal(fr.len, sizeof(bin));
    assert_memory_equal(fr.data, bin, sizeof(bin));

    /* client-initiated close: the server echoes the code, then ends TCP */
    cl_send_close(c, 1000, "bye");
    char reason[128] = "";
    assert_int_equal(cl_expect_close(c, reason, sizeof(reason)), 1000);
    assert_string_equal(reason, "bye");
    assert_true(cl_expect_eof(c));
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1000);
    assert_string_equal(f->last_reason, "bye");
    tn_close(c);
}

static void test_fragmented_and_ping(void **state)
{
    fixture_t *f = *state;
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 0, 1, "Hel", 3, true);
    cl_frame(c, 1, 9, "p1", 2, true); /* control frames may interleave fragments */
    cl_frame(c, 0, 0, "lo, ", 4, true);
    cl_frame(c, 1, 0, "world", 5, true);
    frame_t fr;
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 0xA); /* pong, same payload */
    assert_int_equal(fr.len, 2);
    assert_memory_equal(fr.data, "p1", 2);
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 1);
    assert_int_equal(fr.len, 12);
    assert_memory_equal(fr.data, "Hello, world", 12);

    cl_frame(c, 1, 9, "solo", 4, true);
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 0xA);
    assert_memory_equal(fr.data, "solo", 4);
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1006); /* TCP gone without a close frame */
}

static void test_too_large(void **state)
{
    fixture_t *f = *state;
    static unsigned char big[MAX_MESSAGE + 100];
    memset(big, 'a', sizeof(big));

    /* the application hears of it first (on_too_big), and what it sends precedes the close */
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 1, 2, big, sizeof(big), true);
    frame_t fr;
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 1);
    assert_int_equal(fr.len, strlen("too big: 65636"));
    assert_memory_equal(fr.data, "too big: 65636", fr.len);
    assert_int_equal(cl_expect_close(c, NULL, 0), 1009);
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1009);

    /* fragments each under the cap, together over it; a ping between them does not count */
    c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 0, 2, big, MAX_MESSAGE / 2 + 10, true);
    cl_frame(c, 1, 9, big, 100, true);
    cl_frame(c, 1, 0, big, MAX_MESSAGE / 2 + 10, true);
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 10); /* the pong */
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 1);
    assert_memory_equal(fr.data, "too big: 65556", fr.len);
    assert_int_equal(cl_expect_close(c, NULL, 0), 1009);
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 2, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1009);

    /* exactly the cap is fine */
    c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 1, 2, big, MAX_MESSAGE, true);
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.len, MAX_MESSAGE);
    tn_close(c);
}

/* Invalid control frames are answered with close 1002 (a status code, not an empty close). */
static void test_bad_control_frames_close_1002(void **state)
{
    fixture_t *f = *state;
    static unsigned char big[200];
    memset(big, 'p', sizeof(big));
    struct {
        int fin, opcode;
        const void *payload;
        size_t len;
    } cases[] = {
        {0, 9, "frag", 4},       /* a fragmented ping */
        {1, 9, big, sizeof big}, /* a ping over 125 bytes */
        {1, 8, "x", 1},          /* a close whose body cannot hold a code */
    };
    for (size_t i = 0; i < HK_ARRAY_SIZE(cases); i++) {
        tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
        cl_frame(c, cases[i].fin, cases[i].opcode, cases[i].payload, cases[i].len, true);
        assert_int_equal(cl_expect_close(c, NULL, 0), 1002);
        assert_true(cl_expect_eof(c));
        tn_close(c);
        assert_true(tn_wait_atomic(&f->closed, (int)i + 1, IO_TIMEOUT_MS));
        assert_int_equal(atomic_load(&f->last_code), 1002);
    }
    /* an empty close is valid (no code given): echoed empty, recorded as 1005 */
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 1, 8, "", 0, true);
    assert_int_equal(cl_expect_close(c, NULL, 0), 1005);
    tn_close(c);
}

static void test_unmasked_and_bad_utf8(void **state)
{
    fixture_t *f = *state;
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 1, 1, "naked", 5, false);
    assert_int_equal(cl_expect_close(c, NULL, 0), 1002);
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1002);

    c = ws_open(f, "/ws", NULL, 0, 0);
    cl_frame(c, 1, 1, "\xff\xfe", 2, true);
    assert_int_equal(cl_expect_close(c, NULL, 0), 1007);
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 2, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1007);
}

static void test_server_close(void **state)
{
    fixture_t *f = *state;
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
    cl_text(c, "close");
    frame_t fr;
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 1);
    assert_memory_equal(fr.data, "closing", 7);
    char reason[128] = "";
    assert_int_equal(cl_expect_close(c, reason, sizeof(reason)), 4000);
    assert_string_equal(reason, "bye from server");
    /* the server waits for our close frame before it ends TCP */
    assert_int_equal(tn_more(c, 200), 0);
    cl_send_close(c, 4000, "");
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 4000);
    assert_string_equal(f->last_reason, "bye from server");
}

static void test_slow_consumer(void **state)
{
    fixture_t *f = *state;
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 4096);
    cl_text(c, "flood"); /* then read nothing while the server floods */
    for (int i = 0; i < 2000 && atomic_load(&f->flood_rc) >= 0; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&f->flood_rc), HK_ELIMIT);
    /* a send is refused once the backlog is over the cap: at most the cap plus one message */
    assert_true(atomic_load(&f->max_queued) <= MAX_QUEUE + FLOOD_MSG);
    assert_true(atomic_load(&f->max_queued) > MAX_QUEUE / 2);

    /* now read: whole data frames, then the close frame */
    frame_t fr;
    int data_frames = 0, code = 0;
    char reason[128] = "";
    while (cl_read_frame(c, &fr, IO_TIMEOUT_MS) == 1) {
        if (fr.opcode == 2) {
            assert_int_equal(fr.len, FLOOD_MSG);
            assert_int_equal(fr.data[FLOOD_MSG - 1], (unsigned char)((FLOOD_MSG - 1) * 7));
            data_frames++;
            continue;
        }
        assert_int_equal(fr.opcode, 8);
        code = fr.data[0] << 8 | fr.data[1];
        memcpy(reason, fr.data + 2, fr.len - 2);
        reason[fr.len - 2] = '\0';
        break;
    }
    assert_int_equal(code, 1008);
    assert_string_equal(reason, "slow consumer");
    assert_true(data_frames > 0);
    cl_send_close(c, 1008, "");
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1008);
}

/* A message larger than the send queue's cap reaches a client that keeps up (it is not a slow
 * consumer: nothing was queued before it), and the connection stays open. */
static void test_message_larger_than_queue_cap(void **state)
{
    fixture_t *f = *state;
    atomic_store(&f->big_sent, 0);
    tn_client_t *c = ws_open(f, "/ws", NULL, 0, 0);
    cl_text(c, "big");
    frame_t fr;
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.opcode, 2);
    assert_int_equal(fr.len, 3 * MAX_QUEUE);
    for (size_t i = 0; i < fr.len; i += 4099)
        assert_int_equal(fr.data[i], (unsigned char)(i * 13));
    assert_true(tn_wait_atomic(&f->big_sent, 1, IO_TIMEOUT_MS)); /* it may return after we read */
    assert_int_equal(atomic_load(&f->big_rc), 0);
    cl_text(c, "still open");
    assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
    assert_int_equal(fr.len, 10);
    assert_memory_equal(fr.data, "still open", 10);
    cl_send_close(c, 1000, "");
    char reason[128] = "";
    assert_int_equal(cl_expect_close(c, reason, sizeof(reason)), 1000);
    assert_true(cl_expect_eof(c));
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    tn_close(c);
}

static void test_shared_broadcast(void **state)
{
    fixture_t *f = *state;
    tn_client_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = ws_open(f, "/ws", NULL, 0, 0);
    assert_true(tn_wait_atomic(&f->opened, 3, IO_TIMEOUT_MS));
    static char text[3000];
    memset(text, 'q', sizeof(text));
    memcpy(text, "bcast:", 6);
    text[sizeof(text) - 1] = '\0';
    cl_text(c[1], text);
    unsigned char first[sizeof(text) + 16];
    size_t first_len = 0;
    for (int i = 0; i < 3; i++) {
        frame_t fr;
        assert_int_equal(cl_read_frame(c[i], &fr, IO_TIMEOUT_MS), 1);
        assert_int_equal(fr.opcode, 1);
        assert_int_equal(fr.len, sizeof(text) - 1 - 6);
        assert_memory_equal(fr.data, text + 6, fr.len);
        unsigned char raw[sizeof(first)];
        memcpy(raw, fr.raw_head, fr.raw_head_len);
        memcpy(raw + fr.raw_head_len, fr.data, fr.len);
        if (i == 0) {
            first_len = fr.raw_head_len + fr.len;
            memcpy(first, raw, first_len);
        } else {
            assert_int_equal(fr.raw_head_len + fr.len, first_len);
            assert_memory_equal(raw, first, first_len);
        }
    }
    for (int i = 0; i < 3; i++)
        tn_close(c[i]);
    assert_true(tn_wait_atomic(&f->closed, 3, IO_TIMEOUT_MS));
}

static void test_ping_timeout(void **state)
{
    fixture_t *f = *state;
    tn_client_t *c = ws_open(f, "/ws/ping", NULL, 0, 0);
    frame_t fr;
    /* answered pings keep the connection alive past several intervals */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cl_read_frame(c, &fr, IO_TIMEOUT_MS), 1);
        assert_int_equal(fr.opcode, 9);
        cl_frame(c, 1, 0xA, fr.data, fr.len, true);
    }
    assert_int_equal(atomic_load(&f->closed), 0);
    /* then silence: dropped after about two intervals */
    assert_true(cl_expect_eof(c));
    tn_close(c);
    assert_true(tn_wait_atomic(&f->closed, 1, IO_TIMEOUT_MS));
    assert_int_equal(atomic_load(&f->last_code), 1006);
    assert_string_equal(f->last_reason, "ping timeout");
}

static void test_bad_upgrade(void **state)
{
    fixture_t *f = *state;
    char req[1024], head[2048];
    tn_client_t *c = tn_connect(f->port, 0);
    upgrade_request(req, sizeof(req), "/ws", ""); /* no Sec-WebSocket-Key */
    tn_send(c, req, strlen(req));
    assert_int_equal(cl_http_head(c, head, sizeof(head)), 400);
    tn_close(c);

    c = tn_connect(f->port, 0);
    snprintf(req, sizeof(req),
             "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " RFC_KEY "\r\n\r\n");
    tn_send(c, req, strlen(req));
    assert_int_equal(cl_http_head(c, head, sizeof(head)), 426);
    assert_non_null(strcasestr(head, "\r\nSec-WebSocket-Version: 13\r\n"));
    tn_close(c);

    c = tn_connect(f->port, 0);
    upgrade_request(req, sizeof(req), "/ws", "Sec-WebSocket-Key: c2hvcnQ=\r\n"); /* 5 bytes */
    tn_send(c, req, strlen(req));
    assert_int_equal(cl_http_head(c, head, sizeof(head)), 400);
    tn_close(c);

    c = tn_connect(f->port, 0);
    snprintf(req, sizeof(req),
             "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " RFC_KEY "\r\n\r\n");
    tn_send(c, req, strlen(req));
    assert_int_equal(cl_http_head(c, head, sizeof(head)), 400); /* no Upgrade header */
    tn_close(c);
    assert_int_equal(atomic_load(&f->opened), 0);
}

int main(void)
{
    hk_log_init(HK_LOG_ERROR, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_msg_framing),
        cmocka_unit_test_setup_teardown(test_echo_text_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragmented_and_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmasked_and_bad_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_control_frames_close_1002, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_larger_than_queue_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_broadcast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_upgrade, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
