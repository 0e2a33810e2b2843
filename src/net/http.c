/* HTTP/1.1 server: libuv TCP + http-parser, one request in flight per connection. */
#include "net/http.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <http_parser.h>

#include "core/log.h"
#include "core/timeutil.h"

/*
 * Connection life cycle:
 *
 *   OPEN ──(Connection: close, error, shutdown)──▶ FINISH ──(EOF, error, linger timer)──▶ CLOSING
 *     │                                                                                     ▲
 *     ├──(read error, idle timeout, write error)────────────────────────────────────────────┘
 *     └──(hk_http_hijack)──▶ DETACHED (the tcp handle belongs to the caller now)
 *
 * Within OPEN a connection is in one phase: IDLE (between requests), HEADERS, BODY or INFLIGHT
 * (a handler owns the request). Only one request is ever in flight: the parser is paused at the
 * end of each message and bytes read meanwhile wait in `pending`, so pipelined responses leave in
 * order. The conn struct is freed once its libuv handles are closed AND no handler holds its
 * request, which keeps a late hk_http_respond() safe after the client went away.
 *
 * Timeouts use one timer per connection, armed lazily: IDLE counts from the last response (or
 * accept), HEADERS from the first byte of the request, BODY from the end of the headers, FINISH
 * (lingering close) LINGER_MS from our FIN. While a response is still being flushed, a deadline
 * is extended as long as the write queue shrinks. INFLIGHT has no deadline.
 *
 * Shutdown: the listener closes, connections that are IDLE with nothing buffered close at once,
 * the others finish their current request (its response says Connection: close). done_cb runs
 * when the last conn struct is freed, i.e. also after handlers answered requests whose client
 * left.
 */

#define READ_BUF_SIZE (64 * 1024)      /* one read buffer shared by all connections of a server */
#define PENDING_HIGH_WATER (64 * 1024) /* stop reading while this many bytes wait unparsed */
#define WRITE_HIGH_WATER (64 * 1024)   /* stop dispatching while this much output is queued */
#define MAX_HEADERS 100
#define LINGER_MS 2000        /* after our FIN, how long we drain what the client still sends */
#define WBUF_KEEP (64 * 1024) /* response buffer kept between requests up to this capacity */
#define BODY_KEEP (64 * 1024) /* same for the request body buffer */
#define HBUF_KEEP (16 * 1024) /* same for the header buffer */
#define REQ_LINE_OVERHEAD 16  /* method, spaces, version and CRLF counted against the header cap */
#define JSON_CTYPE "application/json; charset=utf-8"

enum conn_state { CS_OPEN, CS_FINISH, CS_CLOSING, CS_DETACHED };
enum conn_phase { PH_IDLE, PH_HEADERS, PH_BODY, PH_INFLIGHT };
enum last_cb { LCB_NONE, LCB_FIELD, LCB_VALUE };

struct hoff {
    uint32_t name, value; /* offsets into hbuf */
};

struct hk_http_conn_s {
    hk_http_server_t *srv;
    uv_tcp_t *tcp;    /* its own allocation, so hijack can hand it over; NULL once closed/given */
    uv_timer_t timer; /* embedded: the conn lives at least until its close callback */
    uv_shutdown_t shutdown_req;
    http_parser parser;
    hk_http_conn_t *prev, *next; /* srv->conns, until freed */
    hk_http_req_t req;           /* the one request of this connection, reused */

    int state;   /* enum conn_state */
    int phase;   /* enum conn_phase, meaningful in CS_OPEN */
    int handles; /* libuv handles not yet closed (tcp, timer) */
    bool req_active;
    bool in_drive;
    bool reading;
    bool peer_eof;
    bool keep_alive;  /* what the client asked for (http_should_keep_alive) */
    bool force_close; /* a server error or an overflow: close after this response */
    bool url_done;
    bool headers_done;
    bool method_known;

    int err_status; /* set by a parser callback before it aborts: >0 respond, <0 just close */
    const char *err_detail;
    char err_buf[128];

    int last_cb; /* enum last_cb, for header fragments */
    size_t hdr_bytes;
    size_t url_len;
    size_t nhdr, hcap;
    struct hoff *hoff;
    hk_http_header_t *hdrs;
    hk_buf_t hbuf;    /* URL, then "name\0value\0" pairs */
    hk_buf_t body;    /* de-chunked body */
    hk_buf_t pending; /* bytes read but not parsed yet; parsing resumes at ppos */
    size_t ppos;

    char *wbuf; /* response under construction, reused */
    size_t wcap;
    unsigned writes_pending;
    size_t last_wq; /* write queue size at the last timer check, to detect progress */

    uint64_t phase_start; /* loop ms */
    uint64_t idle_since;
    uint64_t linger_deadline;
    uint64_t timer_due; /* when the armed timer fires (loop ms), 0 when not armed */
};

struct hk_http_server_s {
    uv_loop_t *loop;
    uv_tcp_t listener;
    hk_http_config_t cfg;
    char *bind;
    int port;
    char *rbuf;
    hk_http_conn_t *conns;
    size_t nconns;     /* conn structs alive (open, closing, or held by a handler) */
    size_t nrejecting; /* over-cap sockets whose close has not completed */
    hk_http_stats_t stats;
    bool shutting_down;
    bool listener_closed;
    bool done_called;
    void (*done_cb)(void *data);
    void *done_data;
    uint64_t date_loop_ms; /* uv_now() when the Date line was last checked */
    time_t date_sec;
    char date_line[48]; /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    size_t date_len;
    char rid_prefix[9];
    uint64_t rid_counter;
};

struct wreq {
    uv_write_t w;
    hk_http_conn_t *conn;
    char *mem;
};

static char empty_str[1];
static char root_str[2] = "/";

static void conn_drive(hk_http_conn_t *c, const char *data, size_t len);
static void req_reset(hk_http_conn_t *c);
static void conn_close_now(hk_http_conn_t *c);
static void conn_finish(hk_http_conn_t *c);
static void conn_arm(hk_http_conn_t *c);
static void send_error(hk_http_conn_t *c, int status, const char *detail);

/* ---- small helpers ---------------------------------------------------------------------- */

static size_t pending_len(const hk_http_conn_t *c)
{
    return c->pending.len - c->ppos;
}

static int pending_add(hk_http_conn_t *c, const char *data, size_t len)
{
    if (c->ppos && c->ppos == c->pending.len) {
        hk_buf_reset(&c->pending);
        c->ppos = 0;
    } else if (c->ppos > c->pending.len / 2) {
        /* compact so the buffer does not creep towards its cap */
        memmove(c->pending.data, c->pending.data + c->ppos, c->pending.len - c->ppos);
        c->pending.len -= c->ppos;
        c->pending.data[c->pending.len] = '\0';
        c->ppos = 0;
    }
    int rc = hk_buf_append(&c->pending, data, len);
    if (rc)
        c->ppos = 0; /* the buffer disposed itself */
    return rc;
}

static char *put_str(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

#define PUT_LIT(w, lit) put_str((w), (lit), sizeof(lit) - 1)

static char *put_uint(char *w, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *w++ = tmp[--n];
    return w;
}

/* JSON-escapes s into out (always NUL-terminated); returns the length written. */
static size_t json_escape(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 7 < outlen; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20) {
            out[o++] = '\\';
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = "0123456789abcdef"[*p >> 4];
            out[o++] = "0123456789abcdef"[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

static void update_date(hk_http_server_t *srv)
{
    uint64_t now = uv_now(srv->loop);
    if (srv->date_len && now == srv->date_loop_ms)
        return;
    srv->date_loop_ms = now;
    time_t t = time(NULL);
    if (srv->date_len && t == srv->date_sec)
        return;
    srv->date_sec = t;
    struct tm tm;
    gmtime_r(&t, &tm);
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int n =
        snprintf(srv->date_line, sizeof(srv->date_line),
                 "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday % 7], tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_len = (n > 0 && (size_t)n < sizeof(srv->date_line)) ? (size_t)n : 0;
}

static bool request_id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
        if (!ok || n >= 19)
            return false;
    }
    return n > 0;
}

static void set_request_id(hk_http_conn_t *c)
{
    hk_http_req_t *req = &c->req;
    const char *v = c->headers_done ? hk_http_req_header(req, "x-request-id") : NULL;
    if (v && request_id_ok(v)) {
        memcpy(req->request_id, v, strlen(v) + 1);
        return;
    }
    /* 8 random hex digits per server, '-', 10 hex digits of a counter: unique and 19 chars */
    hk_http_server_t *srv = c->srv;
    uint64_t n = ++srv->rid_counter;
    memcpy(req->request_id, srv->rid_prefix, 8);
    req->request_id[8] = '-';
    for (int i = 18; i >= 9; i--) {
        req->request_id[i] = "0123456789abcdef"[n & 15];
        n >>= 4;
    }
    req->request_id[19] = '\0';
}

/* ---- reading and timers ----------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    HK_UNUSED(suggested);
    hk_http_conn_t *c = h->data;
    /* Every read is consumed (or copied to `pending`) before read_cb returns, so one buffer
     * per server is enough: libuv calls alloc_cb, read(2) and read_cb back to back. */
    *buf = uv_buf_init(c->srv->rbuf, READ_BUF_SIZE);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void set_reading(hk_http_conn_t *c, bool on)
{
    if (!c->tcp || on == c->reading)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) == 0)
            c->reading = true;
    } else {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = false;
    }
}

static uint64_t conn_deadline(const hk_http_conn_t *c)
{
    const hk_http_config_t *cfg = &c->srv->cfg;
    if (c->state == CS_FINISH)
        return c->linger_deadline;
    if (c->state != CS_OPEN)
        return 0;
    switch (c->phase) {
    case PH_IDLE:
        return cfg->idle_timeout_ms ? c->idle_since + cfg->idle_timeout_ms : 0;
    case PH_HEADERS:
        return cfg->header_timeout_ms ? c->phase_start + cfg->header_timeout_ms : 0;
    case PH_BODY:
        return cfg->body_timeout_ms ? c->phase_start + cfg->body_timeout_ms : 0;
    default:
        return 0;
    }
}

static void timer_cb(uv_timer_t *t)
{
    hk_http_conn_t *c = t->data;
    c->timer_due = 0;
    uint64_t d = conn_deadline(c);
    if (!d)
        return;
    uint64_t now = uv_now(c->srv->loop);
    if (now < d) {
        conn_arm(c);
        return;
    }
    if (c->writes_pending && c->tcp) {
        /* A response is still being flushed: keep going while the client makes progress. */
        size_t wq = uv_stream_get_write_queue_size((uv_stream_t *)c->tcp);
        if (wq != c->last_wq) {
            c->last_wq = wq;
            if (c->state == CS_FINISH)
                c->linger_deadline = now + LINGER_MS;
            else if (c->phase == PH_IDLE)
                c->idle_since = now;
            conn_arm(c);
            return;
        }
    }
    if (c->state == CS_OPEN && c->phase == PH_HEADERS)
        send_error(c, 408, "timed out reading the request headers");
    else if (c->state == CS_OPEN && c->phase == PH_BODY)
        send_error(c, 408, "timed out reading the request body");
    else
        conn_close_now(c);
}

/* Makes sure the timer fires no later than the current deadline. Timers fire early rather than
 * being restarted on every request: timer_cb re-arms for the remainder, so a busy keep-alive
 * connection costs no timer work per request. */
static void conn_arm(hk_http_conn_t *c)
{
    if (c->state != CS_OPEN && c->state != CS_FINISH)
        return;
    uint64_t d = conn_deadline(c);
    if (!d || (c->timer_due && c->timer_due <= d))
        return;
    uint64_t now = uv_now(c->srv->loop);
    uv_timer_start(&c->timer, timer_cb, d > now ? d - now : 0, 0);
    c->timer_due = d > now ? d : now;
}

/* ---- freeing ---------------------------------------------------------------------------- */

static void server_maybe_done(hk_http_server_t *srv)
{
    if (!srv->shutting_down || !srv->listener_closed || srv->nconns || srv->nrejecting ||
        srv->done_called)
        return;
    srv->done_called = true;
    if (srv->done_cb)
        srv->done_cb(srv->done_data); /* last touch of srv: the callee may free it */
}

static void req_release(hk_http_conn_t *c)
{
    hk_http_req_t *req = &c->req;
    size_t n = req->nparams < HK_HTTP_MAX_PARAMS ? req->nparams : HK_HTTP_MAX_PARAMS;
    for (size_t i = 0; i < n; i++) {
        free(req->params[i]);
        req->params[i] = NULL;
    }
    c->req_active = false;
    /* clear every field, so an error before the next request line sees no stale pointers */
    req_reset(c);
    /* do not keep large buffers around on idle keep-alive connections */
    if (c->body.cap > BODY_KEEP)
        hk_buf_dispose(&c->body);
    if (c->hbuf.cap > HBUF_KEEP)
        hk_buf_dispose(&c->hbuf);
}

static void conn_free(hk_http_conn_t *c)
{
    hk_http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hk_buf_dispose(&c->hbuf);
    hk_buf_dispose(&c->body);
    hk_buf_dispose(&c->pending);
    free(c->hoff);
    free(c->hdrs);
    free(c->wbuf);
    free(c);
    srv->nconns--;
    server_maybe_done(srv);
}

static void conn_maybe_free(hk_http_conn_t *c)
{
    if (c->handles == 0 && !c->req_active)
        conn_free(c);
}

static void tcp_close_cb(uv_handle_t *h)
{
    hk_http_conn_t *c = h->data;
    free(h);
    c->tcp = NULL;
    c->handles--;
    conn_maybe_free(c);
}

static void timer_close_cb(uv_handle_t *h)
{
    hk_http_conn_t *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

/* Closes both handles now; queued writes are cancelled. The struct outlives this while a
 * handler holds the request. */
static void conn_close_now(hk_http_conn_t *c)
{
    if (c->state == CS_CLOSING || c->state == CS_DETACHED)
        return;
    c->state = CS_CLOSING;
    c->reading = false;
    c->srv->stats.open_connections--;
    uv_close((uv_handle_t *)c->tcp, tcp_close_cb);
    uv_close((uv_handle_t *)&c->timer, timer_close_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    hk_http_conn_t *c = req->data;
    if (c->state != CS_FINISH)
        return; /* cancelled by uv_close */
    if (status < 0 || c->peer_eof) {
        conn_close_now(c);
        return;
    }
    /* everything was sent: give the client a moment to read it and close its side */
    c->linger_deadline = uv_now(c->srv->loop) + LINGER_MS;
    conn_arm(c);
}

/* Graceful close: flush queued output, send FIN, then drain the socket until the client closes
 * (or LINGER_MS passes), so a client still sending a body reads our error instead of a RST. */
static void conn_finish(hk_http_conn_t *c)
{
    if (c->state != CS_OPEN)
        return;
    c->state = CS_FINISH;
    hk_buf_dispose(&c->pending);
    c->ppos = 0;
    if (c->peer_eof && !c->writes_pending) {
        conn_close_now(c);
        return;
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)c->tcp, shutdown_cb) != 0) {
        conn_close_now(c);
        return;
    }
    if (!c->peer_eof)
        set_reading(c, true);
    c->last_wq = uv_stream_get_write_queue_size((uv_stream_t *)c->tcp);
    c->linger_deadline = uv_now(c->srv->loop) + LINGER_MS;
    conn_arm(c);
}

/* ---- writing ---------------------------------------------------------------------------- */

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    hk_http_conn_t *c = wr->conn;
    free(wr->mem);
    free(wr);
    c->writes_pending--;
    if (status < 0) {
        conn_close_now(c);
        return;
    }
    if (c->state == CS_OPEN && c->phase == PH_IDLE)
        c->idle_since = uv_now(c->srv->loop);
    /* pipelined requests may have waited for the output to drain */
    if (c->state == CS_OPEN && !c->req_active && !c->in_drive && pending_len(c))
        conn_drive(c, NULL, 0);
}

/* Sends data[0..n). uv_try_write first; whatever the kernel does not take now is queued with
 * uv_write. When `is_wbuf`, data is c->wbuf and may be handed over instead of copied. */
static int conn_send(hk_http_conn_t *c, const char *data, size_t n, bool is_wbuf)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)c->tcp, &b, 1);
    if (r >= 0 && (size_t)r == n)
        return 0;
    if (r < 0 && r != UV_EAGAIN)
        return r;
    size_t off = r > 0 ? (size_t)r : 0;
    struct wreq *wr = malloc(sizeof(*wr));
    if (!wr)
        return UV_ENOMEM;
    char *ptr;
    if (is_wbuf && c->wcap > WBUF_KEEP) {
        wr->mem = c->wbuf; /* large: hand the buffer over rather than copy it */
        ptr = c->wbuf + off;
        c->wbuf = NULL;
        c->wcap = 0;
    } else {
        wr->mem = malloc(n - off);
        if (!wr->mem) {
            free(wr);
            return UV_ENOMEM;
        }
        memcpy(wr->mem, data + off, n - off);
        ptr = wr->mem;
    }
    wr->conn = c;
    b = uv_buf_init(ptr, (unsigned)(n - off));
    r = uv_write(&wr->w, (uv_stream_t *)c->tcp, &b, 1, write_cb);
    if (r) {
        free(wr->mem);
        free(wr);
        return r;
    }
    c->writes_pending++;
    return 0;
}

static int wbuf_reserve(hk_http_conn_t *c, size_t need)
{
    if (need <= c->wcap)
        return 0;
    size_t ncap = c->wcap ? c->wcap : 1024;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    char *p = realloc(c->wbuf, ncap);
    if (!p)
        return HK_ENOMEM;
    c->wbuf = p;
    c->wcap = ncap;
    return 0;
}

/* Formats the response into c->wbuf and sends it. *written gets the total size. */
static int write_response(hk_http_conn_t *c, int status, const char *ctype, const char *extra,
                          const void *body, size_t body_len, bool keep, size_t *written)
{
    hk_http_server_t *srv = c->srv;
    bool bodiless = status < 200 || status == 204 || status == 304;
    bool send_body = !bodiless && c->req.method_id != HTTP_HEAD && body_len;
    const char *reason = hk_http_reason(status);
    size_t rlen = strlen(reason);
    size_t ctlen = ctype ? strlen(ctype) : 0;
    size_t exlen = extra ? strlen(extra) : 0;
    size_t head = 32 + rlen + sizeof(srv->date_line) + ctlen + 64 + 48 + 32 + exlen + 4;
    if (send_body && body_len > (size_t)INT_MAX - head)
        return HK_ETOOBIG;
    if (exlen > (size_t)INT_MAX / 2)
        return HK_ETOOBIG;
    size_t need = head + (send_body ? body_len : 0);
    if (wbuf_reserve(c, need))
        return HK_ENOMEM;
    update_date(srv);

    char *w = c->wbuf;
    w = PUT_LIT(w, "HTTP/1.1 ");
    w = put_uint(w, (uint64_t)status);
    *w++ = ' ';
    w = put_str(w, reason, rlen);
    w = PUT_LIT(w, "\r\n");
    w = put_str(w, srv->date_line, srv->date_len);
    if (ctype) {
        w = PUT_LIT(w, "Content-Type: ");
        w = put_str(w, ctype, ctlen);
        w = PUT_LIT(w, "\r\n");
    }
    if (!bodiless) {
        w = PUT_LIT(w, "Content-Length: ");
        w = put_uint(w, body_len);
        w = PUT_LIT(w, "\r\n");
    }
    w = PUT_LIT(w, "X-Request-Id: ");
    w = put_str(w, c->req.request_id, strlen(c->req.request_id));
    w = keep ? PUT_LIT(w, "\r\nConnection: keep-alive\r\n")
             : PUT_LIT(w, "\r\nConnection: close\r\n");
    if (exlen) {
        w = put_str(w, extra, exlen);
        if (exlen < 2 || extra[exlen - 2] != '\r' || extra[exlen - 1] != '\n')
            w = PUT_LIT(w, "\r\n");
    }
    w = PUT_LIT(w, "\r\n");
    if (send_body)
        w = put_str(w, body, body_len);
    size_t n = (size_t)(w - c->wbuf);
    *written = n;
    int rc = conn_send(c, c->wbuf, n, true);
    if (c->wcap > WBUF_KEEP) { /* sent in full (or failed): do not keep a huge buffer */
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
    return rc;
}

/* ---- parser callbacks ------------------------------------------------------------------- */

static int fail(hk_http_conn_t *c, int status, const char *detail)
{
    c->err_status = status;
    c->err_detail = detail;
    return -1;
}

static void req_reset(hk_http_conn_t *c)
{
    hk_http_req_t *req = &c->req;
    hk_buf_reset(&c->hbuf);
    hk_buf_reset(&c->body);
    c->nhdr = 0;
    c->last_cb = LCB_NONE;
    c->hdr_bytes = REQ_LINE_OVERHEAD;
    c->url_len = 0;
    c->url_done = false;
    c->headers_done = false;
    c->method_known = false;
    c->err_status = 0;
    c->err_detail = NULL;
    req->method = "-";
    req->method_id = -1;
    req->path = empty_str;
    req->query = NULL;
    req->headers = NULL;
    req->nheaders = 0;
    req->body = empty_str;
    req->body_len = 0;
    req->request_id[0] = '\0';
    req->start_ns = 0;
    req->route = NULL;
    req->nparams = 0;
    req->user = NULL;
}

static int hb_add(hk_http_conn_t *c, const char *at, size_t len)
{
    int rc = hk_buf_append(&c->hbuf, at, len);
    if (rc == HK_ENOMEM)
        return fail(c, 503, "out of memory");
    if (rc)
        return fail(c, 431, "request headers too large");
    return 0;
}

static int count_header_bytes(hk_http_conn_t *c, size_t len)
{
    c->hdr_bytes += len;
    if (c->hdr_bytes > c->srv->cfg.max_header_bytes)
        return fail(c, 431, "request headers too large");
    return 0;
}

static int on_message_begin(http_parser *p)
{
    hk_http_conn_t *c = p->data;
    req_reset(c);
    c->phase = PH_HEADERS;
    c->phase_start = uv_now(c->srv->loop);
    c->req.start_ns = hk_time_mono_ns();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hk_http_conn_t *c = p->data;
    c->method_known = true;
    c->url_len += len;
    if (c->url_len > c->srv->cfg.max_header_bytes)
        return fail(c, 414, "request target too long");
    if (count_header_bytes(c, len))
        return -1;
    return hb_add(c, at, len);
}

static int end_url(hk_http_conn_t *c)
{
    c->url_done = true;
    return hb_add(c, "", 1);
}

/* NUL-terminates the header being collected (name, and value when present). */
static int end_header(hk_http_conn_t *c)
{
    if (c->last_cb == LCB_FIELD) { /* no value callback: empty value */
        if (hb_add(c, "", 1))
            return -1;
        c->hoff[c->nhdr - 1].value = (uint32_t)c->hbuf.len;
    } else if (c->last_cb == LCB_VALUE) {
        size_t start = c->hoff[c->nhdr - 1].value;
        while (c->hbuf.len > start &&
               (c->hbuf.data[c->hbuf.len - 1] == ' ' || c->hbuf.data[c->hbuf.len - 1] == '\t'))
            c->hbuf.len--;
    }
    c->last_cb = LCB_NONE;
    return hb_add(c, "", 1);
}

/* RFC 9110 token characters: what a header name is made of. http-parser lets a space (or other
 * separators) through, so "Transfer-Encoding : chunked" would frame the body while a proxy in
 * front may read it as another header: refused with 400 (RFC 9112 section 5.1). */
static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hk_http_conn_t *c = p->data;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)at[i]))
            return fail(c, 400, "invalid character in a header name");
    if (c->headers_done) /* trailers of a chunked body: counted, not kept */
        return count_header_bytes(c, len + 4);
    if (!c->url_done && end_url(c))
        return -1;
    if (c->last_cb != LCB_FIELD) {
        if (c->last_cb == LCB_VALUE && end_header(c))
            return -1;
        if (c->nhdr == MAX_HEADERS)
            return fail(c, 431, "too many request headers");
        if (c->nhdr == c->hcap) {
            size_t ncap = c->hcap ? c->hcap * 2 : 16;
            if (ncap > MAX_HEADERS)
                ncap = MAX_HEADERS;
            struct hoff *ho = realloc(c->hoff, ncap * sizeof(*ho));
            if (!ho)
                return fail(c, 503, "out of memory");
            c->hoff = ho;
            hk_http_header_t *hd = realloc(c->hdrs, ncap * sizeof(*hd));
            if (!hd)
                return fail(c, 503, "out of memory");
            c->hdrs = hd;
            c->hcap = ncap;
        }
        c->hoff[c->nhdr].name = (uint32_t)c->hbuf.len;
        c->hoff[c->nhdr].value = (uint32_t)c->hbuf.len;
        c->nhdr++;
        c->last_cb = LCB_FIELD;
        if (count_header_bytes(c, 4))
            return -1;
    }
    if (count_header_bytes(c, len))
        return -1;
    size_t start = c->hbuf.len;
    if (hb_add(c, at, len))
        return -1;
    for (size_t i = start; i < c->hbuf.len; i++) {
        char ch = c->hbuf.data[i];
        if (ch >= 'A' && ch <= 'Z')
            c->hbuf.data[i] = (char)(ch + ('a' - 'A'));
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hk_http_conn_t *c = p->data;
    if (c->headers_done)
        return count_header_bytes(c, len);
    if (c->last_cb == LCB_FIELD) {
        if (hb_add(c, "", 1))
            return -1;
        c->hoff[c->nhdr - 1].value = (uint32_t)c->hbuf.len;
        c->last_cb = LCB_VALUE;
    }
    if (count_header_bytes(c, len))
        return -1;
    return hb_add(c, at, len);
}

/* Splits the NUL-terminated request target in place into path and query. */
static void split_target(hk_http_req_t *req, char *url)
{
    char *rest = url;
    if (url[0] != '/') { /* absolute-form: skip scheme://authority */
        char *s = strstr(url, "://");
        if (s)
            rest = s + 3 + strcspn(s + 3, "/?#");
    }
    char *hash = strchr(rest, '#');
    if (hash)
        *hash = '\0';
    char *qm = strchr(rest, '?');
    req->query = NULL;
    if (qm) {
        *qm = '\0';
        req->query = qm + 1;
    }
    if (*rest)
        req->path = rest;
    else
        req->path = rest == url ? url : root_str;
}

static int on_headers_complete(http_parser *p)
{
    hk_http_conn_t *c = p->data;
    hk_http_server_t *srv = c->srv;
    hk_http_req_t *req = &c->req;
    if (!c->url_done && end_url(c))
        return -1;
    if (c->nhdr && c->last_cb != LCB_NONE && end_header(c))
        return -1;
    char *base = c->hbuf.data;
    if (!base)
        return fail(c, 400, "malformed HTTP request: empty request target");
    for (size_t i = 0; i < c->nhdr; i++) {
        c->hdrs[i].name = base + c->hoff[i].name;
        c->hdrs[i].value = base + c->hoff[i].value;
    }
    req->headers = c->nhdr ? c->hdrs : NULL;
    req->nheaders = c->nhdr;
    req->method = http_method_str((enum http_method)p->method);
    req->method_id = (int)p->method;
    split_target(req, base);
    c->headers_done = true;
    set_request_id(c);

    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_len = !chunked && p->content_length != ULLONG_MAX;
    if (has_len && p->content_length > srv->cfg.max_body_bytes) {
        snprintf(c->err_buf, sizeof(c->err_buf), "request body exceeds the limit of %zu bytes",
                 srv->cfg.max_body_bytes);
        return fail(c, 413, c->err_buf);
    }
    if (chunked || (has_len && p->content_length > 0)) {
        c->phase = PH_BODY;
        c->phase_start = uv_now(srv->loop);
        const char *expect = hk_http_req_header(req, "expect");
        if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
            p->http_minor >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (conn_send(c, cont, sizeof(cont) - 1, false))
                return fail(c, -1, NULL);
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hk_http_conn_t *c = p->data;
    int rc = hk_buf_append(&c->body, at, len);
    if (rc == HK_ETOOBIG) {
        snprintf(c->err_buf, sizeof(c->err_buf), "request body exceeds the limit of %zu bytes",
                 c->srv->cfg.max_body_bytes);
        return fail(c, 413, c->err_buf);
    }
    if (rc)
        return fail(c, 503, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hk_http_conn_t *c = p->data;
    c->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1); /* one request at a time: conn_drive dispatches it */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- request flow ----------------------------------------------------------------------- */

static void send_error(hk_http_conn_t *c, int status, const char *detail)
{
    hk_http_req_t *req = &c->req;
    if (!c->headers_done) {
        if (c->method_known) {
            req->method = http_method_str((enum http_method)c->parser.method);
            req->method_id = (int)c->parser.method;
        }
        req->path = empty_str;
        req->query = NULL;
        req->headers = NULL;
        req->nheaders = 0;
    }
    if (!req->request_id[0])
        set_request_id(c);
    if (req->start_ns == 0)
        req->start_ns = hk_time_mono_ns();
    req->body = empty_str;
    req->body_len = 0;
    char body[256];
    size_t n = 0;
    memcpy(body, "{\"detail\":\"", 11);
    n = 11;
    n += json_escape(body + n, sizeof(body) - n - 3, detail ? detail : hk_http_reason(status));
    memcpy(body + n, "\"}", 3);
    n += 2;
    c->force_close = true;
    c->req_active = true;
    c->phase = PH_INFLIGHT;
    hk_http_respond(req, status, JSON_CTYPE, NULL, body, n);
}

static void parse_error(hk_http_conn_t *c, enum http_errno e)
{
    if (c->err_status < 0 || e == HPE_CLOSED_CONNECTION) {
        conn_close_now(c);
    } else if (c->err_status > 0) {
        send_error(c, c->err_status, c->err_detail);
    } else if (e == HPE_HEADER_OVERFLOW) {
        send_error(c, 431, "request headers too large");
    } else {
        snprintf(c->err_buf, sizeof(c->err_buf), "malformed HTTP request: %s",
                 http_errno_description(e));
        send_error(c, 400, c->err_buf);
    }
}

static void dispatch(hk_http_conn_t *c)
{
    hk_http_server_t *srv = c->srv;
    c->req.body = c->body.data ? c->body.data : empty_str;
    c->req.body_len = c->body.len;
    c->phase = PH_INFLIGHT;
    c->req_active = true;
    srv->cfg.on_request(&c->req, srv->cfg.data);
}

static bool write_backlogged(const hk_http_conn_t *c)
{
    return c->writes_pending &&
           uv_stream_get_write_queue_size((const uv_stream_t *)c->tcp) > WRITE_HIGH_WATER;
}

static void conn_after_io(hk_http_conn_t *c)
{
    if (c->state == CS_OPEN) {
        if (!c->req_active && c->peer_eof && !pending_len(c)) {
            conn_finish(c); /* the client sent everything it will send */
            return;
        }
        set_reading(c, !c->peer_eof && pending_len(c) < PENDING_HIGH_WATER);
    }
    conn_arm(c);
}

/* Parses buffered then fresh bytes and dispatches complete requests, one at a time. Handlers
 * may respond synchronously: hk_http_respond() then returns here (in_drive) instead of
 * recursing, so deep pipelines cannot grow the stack. */
static void conn_drive(hk_http_conn_t *c, const char *data, size_t len)
{
    if (c->in_drive)
        return;
    if (len && pending_len(c)) {
        if (pending_add(c, data, len)) {
            conn_close_now(c);
            return;
        }
        len = 0;
    }
    c->in_drive = true;
    while (c->state == CS_OPEN && !c->req_active && !write_backlogged(c)) {
        bool from_pending = pending_len(c) > 0;
        const char *p = from_pending ? c->pending.data + c->ppos : data;
        size_t n = from_pending ? pending_len(c) : len;
        if (!n)
            break;
        size_t used = http_parser_execute(&c->parser, &parser_settings, p, n);
        if (from_pending) {
            c->ppos += used;
            if (c->ppos >= c->pending.len) {
                hk_buf_reset(&c->pending);
                c->ppos = 0;
            }
        } else {
            data += used;
            len -= used;
        }
        if (c->state != CS_OPEN)
            break;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->parser.upgrade) /* not hijacked (yet): keep parsing as HTTP afterwards */
                http_parser_init(&c->parser, HTTP_REQUEST);
            if (len) { /* keep the rest in order, where hk_http_hijack() can find it */
                if (pending_add(c, data, len))
                    c->force_close = true;
                len = 0;
            }
            dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            parse_error(c, e);
            break;
        }
        if (used < n) { /* cannot happen without a pause; never spin */
            parse_error(c, HPE_UNKNOWN);
            break;
        }
    }
    if (len && c->state == CS_OPEN && pending_add(c, data, len)) {
        c->in_drive = false;
        conn_close_now(c);
        return;
    }
    c->in_drive = false;
    conn_after_io(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hk_http_conn_t *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && c->state == CS_OPEN) {
            /* maybe a half-close: answer what was asked and flush it, then close */
            c->peer_eof = true;
            c->reading = false; /* libuv stopped reading at EOF */
            if (!c->req_active && !pending_len(c))
                conn_finish(c);
            else
                conn_arm(c);
            return;
        }
        conn_close_now(c);
        return;
    }
    if (c->state != CS_OPEN)
        return; /* lingering: discard */
    if (c->req_active) {
        if (pending_add(c, buf->base, (size_t)nread)) {
            c->force_close = true;
            set_reading(c, false);
            return;
        }
        if (pending_len(c) >= PENDING_HIGH_WATER)
            set_reading(c, false);
        return;
    }
    conn_drive(c, buf->base, (size_t)nread);
}

/* ---- accepting -------------------------------------------------------------------------- */

static void reject_close_cb(uv_handle_t *h)
{
    hk_http_server_t *srv = h->data;
    free(h);
    srv->nrejecting--;
    server_maybe_done(srv);
}

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    hk_http_server_t *srv = server->data;
    if (status < 0) {
        hk_log_warn("http", "op=accept err=\"%s\"", uv_strerror(status));
        return;
    }
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    if (!tcp)
        return;
    if (uv_tcp_init(srv->loop, tcp) != 0) {
        free(tcp);
        return;
    }
    if (uv_accept(server, (uv_stream_t *)tcp) != 0) {
        uv_close((uv_handle_t *)tcp, free_handle_cb);
        return;
    }
    srv->stats.accepted_total++;
    hk_http_conn_t *c = NULL;
    if (srv->cfg.max_connections <= 0 ||
        srv->stats.open_connections < (uint64_t)srv->cfg.max_connections)
        c = calloc(1, sizeof(*c));
    if (!c) {
        tcp->data = srv;
        srv->nrejecting++;
        uv_close((uv_handle_t *)tcp, reject_close_cb);
        return;
    }
    c->srv = srv;
    c->tcp = tcp;
    tcp->data = c;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    c->state = CS_OPEN;
    c->phase = PH_IDLE;
    c->req.conn = c;
    hk_buf_init(&c->hbuf, srv->cfg.max_header_bytes + 2 * MAX_HEADERS + 64);
    hk_buf_init(&c->body, srv->cfg.max_body_bytes);
    hk_buf_init(&c->pending, srv->cfg.max_header_bytes + srv->cfg.max_body_bytes + READ_BUF_SIZE +
                                 PENDING_HIGH_WATER);
    req_reset(c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_nodelay(tcp, 1);

    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->req.remote_addr, sizeof(c->req.remote_addr));
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->req.remote_addr, sizeof(c->req.remote_addr));
    }

    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->stats.open_connections++;
    c->idle_since = uv_now(srv->loop);
    set_reading(c, true);
    conn_arm(c);
}

/* ---- public API ------------------------------------------------------------------------- */

static void failed_listener_close_cb(uv_handle_t *h)
{
    hk_http_server_t *srv = h->data;
    free(srv->rbuf);
    free(srv->bind);
    free(srv);
}

int hk_http_server_new(uv_loop_t *loop, const hk_http_config_t *cfg, hk_http_server_t **out)
{
    if (!loop || !cfg || !out || !cfg->bind || !cfg->on_request || cfg->port < 0 ||
        cfg->port > 65535)
        return UV_EINVAL;
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sslen;
    if (uv_ip4_addr(cfg->bind, cfg->port, (struct sockaddr_in *)&ss) == 0)
        sslen = sizeof(struct sockaddr_in);
    else if (uv_ip6_addr(cfg->bind, cfg->port, (struct sockaddr_in6 *)&ss) == 0)
        sslen = sizeof(struct sockaddr_in6);
    else
        return UV_EINVAL;

    /* A write to a reset connection must fail with EPIPE, not kill the process: libuv does not
     * ignore SIGPIPE itself. Only touched when nobody installed a handler. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGPIPE, &sa, NULL);
    }

    /* bind and listen on a plain socket first, so every likely failure leaves nothing behind */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int backlog = cfg->backlog > 0 ? cfg->backlog : 511;
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, backlog) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    int port = cfg->port;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);

    hk_http_server_t *srv = calloc(1, sizeof(*srv));
    char *bind_copy = strdup(cfg->bind);
    char *rbuf = malloc(READ_BUF_SIZE);
    if (!srv || !bind_copy || !rbuf) {
        free(srv);
        free(bind_copy);
        free(rbuf);
        close(fd);
        return UV_ENOMEM;
    }
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->cfg.bind = bind_copy;
    srv->bind = bind_copy;
    srv->rbuf = rbuf;
    srv->port = port;
    srv->cfg.backlog = backlog;

    unsigned char rnd[4] = {0};
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        uint64_t t = hk_time_mono_ns() ^ (uint64_t)getpid();
        memcpy(rnd, &t, sizeof(rnd));
    }
    for (int i = 0; i < 4; i++) {
        srv->rid_prefix[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
        srv->rid_prefix[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
    }
    srv->rid_prefix[8] = '\0';

    /* http-parser has its own (process-wide) header limit; keep it above ours */
    if (cfg->max_header_bytes + 4096 > HTTP_MAX_HEADER_SIZE &&
        cfg->max_header_bytes < UINT32_MAX / 2)
        http_parser_set_max_header_size((uint32_t)cfg->max_header_bytes + 4096);

    int rc = uv_tcp_init(loop, &srv->listener);
    if (rc) {
        close(fd);
        free(bind_copy);
        free(rbuf);
        free(srv);
        return rc;
    }
    srv->listener.data = srv;
    rc = uv_tcp_open(&srv->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, backlog, on_connection);
    if (rc) {
        /* the handle exists now: the server is freed once the loop has closed it */
        uv_close((uv_handle_t *)&srv->listener, failed_listener_close_cb);
        return rc;
    }
    *out = srv;
    return 0;
}

int hk_http_server_port(const hk_http_server_t *srv)
{
    return srv ? srv->port : 0;
}

static void listener_close_cb(uv_handle_t *h)
{
    hk_http_server_t *srv = h->data;
    srv->listener_closed = true;
    server_maybe_done(srv);
}

void hk_http_server_shutdown(hk_http_server_t *srv, void (*done_cb)(void *data), void *data)
{
    if (!srv || srv->shutting_down)
        return;
    srv->shutting_down = true;
    srv->done_cb = done_cb;
    srv->done_data = data;
    uv_close((uv_handle_t *)&srv->listener, listener_close_cb);
    for (hk_http_conn_t *c = srv->conns; c; c = c->next) {
        if (c->state != CS_OPEN || c->req_active || c->phase != PH_IDLE || pending_len(c))
            continue; /* busy: its response goes out with Connection: close */
        if (c->writes_pending)
            conn_finish(c);
        else
            conn_close_now(c);
    }
}

void hk_http_server_free(hk_http_server_t *srv)
{
    if (!srv)
        return;
    if (!srv->done_called || !srv->listener_closed) {
        hk_log_error("http", "op=server_free err=\"server not shut down; leaking it\"");
        return;
    }
    free(srv->rbuf);
    free(srv->bind);
    free(srv);
}

void hk_http_server_stats(const hk_http_server_t *srv, hk_http_stats_t *out)
{
    if (!out)
        return;
    if (!srv) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = srv->stats;
}

const char *hk_http_req_header(const hk_http_req_t *req, const char *lname)
{
    if (!req || !lname)
        return NULL;
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcmp(req->headers[i].name, lname) == 0)
            return req->headers[i].value;
    return NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int hk_http_pct_decode(const char *src, size_t len, char *out, size_t outlen, bool plus_is_space)
{
    if (!out || outlen == 0)
        return HK_ETOOBIG;
    out[0] = '\0';
    if (!src && len)
        return HK_EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (len - i < 3)
                return HK_EINVAL;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                out[0] = '\0';
                return HK_EINVAL;
            }
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        } else if (ch == '\0') {
            out[0] = '\0';
            return HK_EINVAL;
        }
        if (o + 1 >= outlen || o >= INT_MAX) {
            out[0] = '\0';
            return HK_ETOOBIG;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return (int)o;
}

int hk_http_query_get(const hk_http_req_t *req, const char *key, char *out, size_t outlen)
{
    if (!req || !key || !req->query)
        return HK_ENOTFOUND;
    size_t klen = strlen(key);
    char kbuf[256];
    const char *q = req->query;
    for (;;) {
        const char *amp = strchr(q, '&');
        size_t seglen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', seglen);
        size_t nlen = eq ? (size_t)(eq - q) : seglen;
        int r = hk_http_pct_decode(q, nlen, kbuf, sizeof(kbuf), true);
        if (r >= 0 && (size_t)r == klen && memcmp(kbuf, key, klen) == 0) {
            if (!eq) {
                if (!out || outlen == 0)
                    return HK_ETOOBIG;
                out[0] = '\0';
                return 0;
            }
            r = hk_http_pct_decode(eq + 1, seglen - nlen - 1, out, outlen, true);
            return r < 0 ? r : 0;
        }
        if (!amp)
            return HK_ENOTFOUND;
        q = amp + 1;
    }
}

void hk_http_respond(hk_http_req_t *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t body_len)
{
    if (!req)
        return;
    hk_http_conn_t *c = req->conn;
    if (!c->req_active) {
        hk_log_error("http", "op=respond err=\"no request in flight\" request_id=%s",
                     req->request_id);
        return;
    }
    hk_http_server_t *srv = c->srv;
    if (status < 100 || status > 999)
        status = 500;
    uint64_t latency = hk_time_mono_ns() - req->start_ns;
    size_t written = 0;
    bool keep = false;
    int rc = 0;
    if (c->state == CS_OPEN) {
        keep = c->keep_alive && !c->force_close && !srv->shutting_down;
        rc = write_response(c, status, content_type, extra_headers, body, body_len, keep, &written);
        if (rc) {
            hk_log_warn("http", "op=write request_id=%s err=\"%s\"", req->request_id,
                        hk_strerror(rc));
            written = 0;
        }
    }
    srv->stats.requests_total++;
    if (srv->cfg.on_response)
        srv->cfg.on_response(req, status, written, latency, srv->cfg.data);
    if (srv->cfg.access_log && hk_log_enabled(HK_LOG_INFO)) {
        char qpath[512];
        hk_log_quote(qpath, sizeof(qpath), req->path);
        hk_log_info("http",
                    "method=%s path=%s status=%d bytes=%zu latency_ms=%.3f request_id=%s "
                    "remote=%s",
                    req->method, qpath, status, written, (double)latency / 1e6, req->request_id,
                    req->remote_addr);
    }
    req_release(c);
    if (c->state != CS_OPEN) { /* the client went away while the handler worked */
        conn_maybe_free(c);
        return;
    }
    if (rc) {
        conn_close_now(c);
        return;
    }
    if (!keep) {
        conn_finish(c);
        return;
    }
    c->phase = PH_IDLE;
    c->idle_since = uv_now(srv->loop);
    if (!c->in_drive)
        conn_drive(c, NULL, 0);
}

int hk_http_hijack(hk_http_req_t *req, uv_tcp_t **tcp_out, hk_buf_t *surplus)
{
    if (!req || !tcp_out)
        return HK_EINVAL;
    hk_http_conn_t *c = req->conn;
    hk_http_server_t *srv = c->srv;
    if (!c->req_active || c->state != CS_OPEN || c->writes_pending || c->peer_eof ||
        c->force_close || srv->shutting_down)
        return HK_ESTATE;
    size_t n = pending_len(c);
    if (n) {
        if (!surplus)
            return HK_ESTATE;
        int rc = hk_buf_append(surplus, c->pending.data + c->ppos, n);
        if (rc)
            return rc;
    }
    set_reading(c, false);
    uv_tcp_t *tcp = c->tcp;
    tcp->data = NULL;
    c->tcp = NULL;
    c->handles--;
    c->state = CS_DETACHED;
    hk_buf_dispose(&c->pending);
    c->ppos = 0;
    srv->stats.open_connections--;
    srv->stats.requests_total++;
    uint64_t latency = hk_time_mono_ns() - req->start_ns;
    if (srv->cfg.on_response)
        srv->cfg.on_response(req, 101, 0, latency, srv->cfg.data);
    if (srv->cfg.access_log && hk_log_enabled(HK_LOG_INFO)) {
        char qpath[512];
        hk_log_quote(qpath, sizeof(qpath), req->path);
        hk_log_info("http",
                    "method=%s path=%s status=101 bytes=0 latency_ms=%.3f request_id=%s "
                    "remote=%s",
                    req->method, qpath, (double)latency / 1e6, req->request_id, req->remote_addr);
    }
    req_release(c);
    uv_close((uv_handle_t *)&c->timer, timer_close_cb); /* frees the conn */
    *tcp_out = tcp;
    return 0;
}

const char *hk_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
