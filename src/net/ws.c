/* WebSocket server connections: wslay parses frames and makes control frames, we own the bytes. */
#include "net/ws.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "core/log.h"
#include "core/json.h"

/*
 * Design (the full state machine is in docs/internals/websocket.md):
 *
 *   OPEN ──(hk_ws_close, slow consumer, peer's close, bad input)──▶ CLOSING ──▶ CLOSED
 *     └──────────────(EOF, read/write error, ping timeout)──────────────────────▲
 *
 * Every byte we send goes through one ordered queue of items (or, when that queue is empty and
 * nothing is in flight, straight to the kernel with uv_try_write, the remainder then queued and
 * written at once as our own bytes, so it is never dropped): an item is either a reference to
 * a shared, pre-framed hk_ws_msg_t (data messages) or bytes we own (the 101 response and the
 * control frames wslay makes: pong, close). wslay never holds output: its send callback only
 * appends to our queue and never blocks, and we drain wslay (wslay_event_send) right after every
 * call that may queue a control frame. So wslay's queue is empty between our calls and the order
 * of frames is the order of the calls. At most one uv_write is in flight, carrying up to MAX_IOV
 * items; the queue behind it is what a slow consumer lets grow, and what we drop when it hits the
 * cap (whole frames only: the in-flight frames finish, then our close frame follows).
 *
 * Memory: the queue is capped (a message is refused once max_queue_bytes less HK_WS_CLOSE_RESERVE
 * are queued before it, so at most the cap plus one message is held), incoming messages are capped
 * by wslay (max_recv_msg_length), the read buffer is fixed. The hk_ws_t and everything it holds are
 * freed once both libuv handles (tcp, timer) have closed.
 */

#define READ_BUF_SIZE (16 * 1024)
#define MAX_IOV 64        /* items per uv_write */
#define OWNED_MIN_CAP 256 /* owned items are sized for a few control frames */
#define DEFAULT_MAX_MESSAGE (1024 * 1024)
#define DEFAULT_MAX_QUEUE (4 * 1024 * 1024)
#define DEFAULT_CLOSE_TIMEOUT_MS 5000
#define MAX_REASON 123
#define SURPLUS_MAX (256 * 1024) /* above the HTTP server's own cap on unparsed bytes */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum ws_state { WS_OPEN, WS_CLOSING, WS_CLOSED };

struct hk_ws_msg_s {
    atomic_size_t refs;
    size_t hdr_len;   /* frame header bytes at the start of frame[] */
    size_t frame_len; /* header + payload */
    unsigned char frame[];
};

struct item {
    struct item *next;
    hk_ws_msg_t *msg; /* shared frame, or NULL: the bytes are data[0..len) */
    size_t len;
    size_t cap;     /* capacity of data[] for owned items */
    bool has_close; /* holds the last byte of our close frame */
    unsigned char data[];
};

struct hk_ws_s {
    uv_tcp_t *tcp; /* malloc'd by the HTTP server; freed in its close callback */
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    wslay_event_context_ptr ctx;
    hk_ws_config_t cfg;
    void *data;
    uint64_t id;

    int state;   /* enum ws_state */
    int handles; /* libuv handles not closed yet */
    bool started;
    bool writing; /* wreq in flight, carrying the first `ninflight` items */
    bool in_recv; /* inside wslay_event_recv: defer draining wslay */
    bool close_marked;
    bool close_written; /* our close frame reached the kernel */
    bool shutdown_sent;
    bool awaiting_pong;
    bool close_code_set;
    bool bad_close; /* a protocol error: our close says 1002 (wslay's would carry no code) */

    struct item *head, *tail;
    unsigned ninflight;
    size_t queued;

    const unsigned char *in; /* bytes being fed to wslay */
    size_t in_len;
    struct {                   /* frame headers in the input, read ahead of wslay (scan_input) */
        unsigned char hdr[14]; /* the header being collected */
        size_t hlen;
        uint64_t left;    /* payload bytes of the current frame still to come */
        uint64_t msg_len; /* payload of the current data message so far */
        bool over;        /* a message over the cap was reported */
    } scan;
    hk_buf_t surplus; /* read by the HTTP server past the upgrade request */

    uint64_t last_rx; /* loop ms */
    uint64_t ping_sent;
    uint64_t close_deadline;

    uint16_t close_code;
    char close_reason[MAX_REASON + 1];
    char remote[48];
};

static atomic_uint_fast64_t next_id = 1;

static void after_wslay(hk_ws_t *ws);
static void close_handles(hk_ws_t *ws);
static void start_close(hk_ws_t *ws, uint16_t code, const char *reason);
static void arm_timer(hk_ws_t *ws);
static void drain_wslay(hk_ws_t *ws);

/* ---- handshake ---------------------------------------------------------------------------- */

/* True when the comma-separated header value lists `token` (case-insensitive). */
static bool has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return true;
    }
    return false;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Copies the header value without surrounding blanks into out; false when missing or too long. */
static bool header_trimmed(const hk_http_req_t *req, const char *name, char *out, size_t outlen)
{
    const char *v = hk_http_req_header(req, name);
    if (!v)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= outlen)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

int hk_ws_check_upgrade(const hk_http_req_t *req, const char **detail)
{
    const char *why = NULL;
    int status = 400;
    char buf[64];
    const char *v;
    if (strcmp(req->method, "GET") != 0) {
        why = "websocket upgrade requires GET";
    } else if (!(v = hk_http_req_header(req, "upgrade")) || !has_token(v, "websocket")) {
        why = "missing or invalid Upgrade header (expected websocket)";
    } else if (!(v = hk_http_req_header(req, "connection")) || !has_token(v, "upgrade")) {
        why = "Connection header must contain upgrade";
    } else if (!header_trimmed(req, "sec-websocket-version", buf, sizeof(buf)) ||
               strcmp(buf, "13") != 0) {
        why = "unsupported or missing Sec-WebSocket-Version (expected 13)";
        status = 426;
    } else if (!header_trimmed(req, "sec-websocket-key", buf, sizeof(buf)) || strlen(buf) != 24 ||
               buf[22] != '=' || buf[23] != '=') {
        why = "missing or invalid Sec-WebSocket-Key";
    } else {
        for (int i = 0; i < 22; i++) {
            if (!is_b64(buf[i])) {
                why = "missing or invalid Sec-WebSocket-Key";
                break;
            }
        }
    }
    if (detail)
        *detail = why;
    return why ? status : 0;
}

int hk_ws_accept_key(const char *key, size_t key_len, char out[HK_WS_ACCEPT_LEN + 1])
{
    char in[64 + sizeof(WS_GUID)];
    if (key_len > 64)
        return HK_EINVAL;
    memcpy(in, key, key_len);
    memcpy(in + key_len, WS_GUID, sizeof(WS_GUID) - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(in, key_len + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return HK_EINVAL;
    /* 20 bytes encode to exactly 28 characters + NUL */
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != HK_WS_ACCEPT_LEN)
        return HK_EINVAL;
    return 0;
}

void hk_ws_reject(hk_http_req_t *req, int err)
{
    const char *detail = NULL;
    int status = hk_ws_check_upgrade(req, &detail);
    const char *extra = NULL;
    if (status == 426) {
        extra = "Sec-WebSocket-Version: 13\r\n";
    } else if (status == 0 && err == HK_EINVAL) {
        status = 500;
        detail = "invalid websocket configuration";
    } else if (status == 0) {
        status = 503;
        detail = "cannot upgrade this connection now";
    }
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"detail\":\"%s\"}", detail);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = 0;
    hk_http_respond(req, status, "application/json; charset=utf-8", extra, body, (size_t)n);
}

/* ---- shared messages ---------------------------------------------------------------------- */

/* Writes an unmasked, final frame header; returns its length (2, 4 or 10). */
static size_t frame_header(unsigned char *h, int opcode, size_t len)
{
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    uint64_t l = len;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)(l >> (56 - 8 * i));
    return 10;
}

hk_ws_msg_t *hk_ws_msg_new(int opcode, const void *data, size_t len)
{
    if ((opcode != HK_WS_OP_TEXT && opcode != HK_WS_OP_BINARY) || (len && !data) ||
        len > SIZE_MAX - sizeof(hk_ws_msg_t) - 10)
        return NULL;
    hk_ws_msg_t *m = malloc(sizeof(*m) + 10 + len);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->hdr_len = frame_header(m->frame, opcode, len);
    if (len)
        memcpy(m->frame + m->hdr_len, data, len);
    m->frame_len = m->hdr_len + len;
    return m;
}

hk_ws_msg_t *hk_ws_msg_ref(hk_ws_msg_t *msg)
{
    atomic_fetch_add_explicit(&msg->refs, 1, memory_order_relaxed);
    return msg;
}

void hk_ws_msg_unref(hk_ws_msg_t *msg)
{
    if (msg && atomic_fetch_sub_explicit(&msg->refs, 1, memory_order_acq_rel) == 1)
        free(msg);
}

const void *hk_ws_msg_payload(const hk_ws_msg_t *msg, size_t *len)
{
    if (len)
        *len = msg->frame_len - msg->hdr_len;
    return msg->frame + msg->hdr_len;
}

/* ---- output queue ------------------------------------------------------------------------- */

static void item_free(struct item *it)
{
    hk_ws_msg_unref(it->msg);
    free(it);
}

static void queue_push(hk_ws_t *ws, struct item *it)
{
    it->next = NULL;
    if (ws->tail)
        ws->tail->next = it;
    else
        ws->head = it;
    ws->tail = it;
    ws->queued += it->len;
}

/* The last item, when bytes may still be appended to it (owned and not being written). */
static struct item *open_tail(hk_ws_t *ws)
{
    struct item *t = ws->tail;
    if (!t || t->msg)
        return NULL;
    if (ws->writing) {
        unsigned i = 0;
        for (struct item *it = ws->head; it && i < ws->ninflight; it = it->next, i++)
            if (it == t)
                return NULL;
    }
    return t;
}

/* Appends bytes we own (101 response, control frames). Not capped here: callers check. */
static int append_owned(hk_ws_t *ws, const void *p, size_t n)
{
    struct item *t = open_tail(ws);
    if (t && t->cap - t->len >= n && !t->has_close) {
        memcpy(t->data + t->len, p, n);
        t->len += n;
        ws->queued += n;
        return 0;
    }
    size_t cap = n < OWNED_MIN_CAP ? OWNED_MIN_CAP : n;
    struct item *it = malloc(sizeof(*it) + cap);
    if (!it)
        return HK_ENOMEM;
    it->msg = NULL;
    it->cap = cap;
    it->len = n;
    it->has_close = false;
    memcpy(it->data, p, n);
    queue_push(ws, it);
    return 0;
}

/* Frees every item not being written (whole frames, so the stream stays well-formed). */
static void drop_unsent(hk_ws_t *ws)
{
    struct item *keep = NULL, **link = &ws->head;
    unsigned i = 0;
    if (ws->writing) {
        while (*link && i < ws->ninflight) {
            keep = *link;
            link = &(*link)->next;
            i++;
        }
    }
    struct item *it = *link;
    *link = NULL;
    ws->tail = keep;
    while (it) {
        struct item *next = it->next;
        ws->queued -= it->len;
        item_free(it);
        it = next;
    }
}

static void write_cb(uv_write_t *req, int status);

static void kick_write(hk_ws_t *ws)
{
    if (ws->writing || ws->state == WS_CLOSED || !ws->head)
        return;
    uv_buf_t bufs[MAX_IOV];
    unsigned n = 0;
    for (struct item *it = ws->head; it && n < MAX_IOV; it = it->next, n++) {
        if (it->msg)
            bufs[n] = uv_buf_init((char *)it->msg->frame, (unsigned)it->msg->frame_len);
        else
            bufs[n] = uv_buf_init((char *)it->data, (unsigned)it->len);
    }
    ws->wreq.data = ws;
    int rc = uv_write(&ws->wreq, (uv_stream_t *)ws->tcp, bufs, n, write_cb);
    if (rc) {
        hk_log_debug("ws", "op=write id=%llu err=\"%s\"", (unsigned long long)ws->id,
                     uv_strerror(rc));
        close_handles(ws);
        return;
    }
    ws->writing = true;
    ws->ninflight = n;
}

/* Both close frames are through: send FIN and drain until the client closes (or the timer). */
static void maybe_finish(hk_ws_t *ws);

static void write_cb(uv_write_t *req, int status)
{
    hk_ws_t *ws = req->data;
    ws->writing = false;
    for (unsigned i = 0; i < ws->ninflight && ws->head; i++) {
        struct item *it = ws->head;
        ws->head = it->next;
        if (!ws->head)
            ws->tail = NULL;
        ws->queued -= it->len;
        if (it->has_close)
            ws->close_written = true;
        item_free(it);
    }
    ws->ninflight = 0;
    if (ws->state == WS_CLOSED)
        return;
    if (status < 0) {
        hk_log_debug("ws", "op=write id=%llu err=\"%s\"", (unsigned long long)ws->id,
                     uv_strerror(status));
        close_handles(ws);
        return;
    }
    kick_write(ws);
    maybe_finish(ws);
}

static size_t data_cap(const hk_ws_t *ws)
{
    return ws->cfg.max_queue_bytes - HK_WS_CLOSE_RESERVE;
}

static void slow_consumer(hk_ws_t *ws)
{
    hk_log_warn("ws", "op=send id=%llu remote=%s err=\"slow consumer\" queued=%zu cap=%zu",
                (unsigned long long)ws->id, ws->remote, ws->queued, ws->cfg.max_queue_bytes);
    drop_unsent(ws);
    start_close(ws, HK_WS_CLOSE_POLICY, "slow consumer");
}

/* ---- wslay glue --------------------------------------------------------------------------- */

static ssize_t recv_callback(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user)
{
    (void)flags;
    hk_ws_t *ws = user;
    if (ws->in_len == 0 || ws->state == WS_CLOSED) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_callback(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user)
{
    (void)flags;
    hk_ws_t *ws = user;
    size_t taken = len; /* what wslay is told was sent */
    static const uint8_t empty_close[] = {0x88, 0x00}, close_1002[] = {0x88, 0x02, 0x03, 0xEA};
    if (ws->bad_close && len == sizeof(empty_close) && memcmp(data, empty_close, len) == 0) {
        /* wslay closes a protocol error (a fragmented or oversized control frame, a close with
         * a 1-byte body) without a status code: say 1002, as RFC 6455 asks */
        data = close_1002;
        len = sizeof(close_1002);
    }
    if (ws->state != WS_CLOSED && append_owned(ws, data, len)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)taken;
}

static void set_close(hk_ws_t *ws, uint16_t code, const char *reason, size_t reason_len)
{
    if (ws->close_code_set)
        return;
    ws->close_code_set = true;
    ws->close_code = code;
    if (reason_len > MAX_REASON)
        reason_len = MAX_REASON;
    if (reason_len)
        memcpy(ws->close_reason, reason, reason_len);
    ws->close_reason[reason_len] = '\0';
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user)
{
    (void)ctx;
    hk_ws_t *ws = user;
    if (ws->state == WS_OPEN && !wslay_is_ctrl_frame(arg->opcode))
        drain_wslay(ws); /* a pong for an earlier ping leaves before any reply to this message */
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (ws->state == WS_OPEN && ws->cfg.on_text)
            ws->cfg.on_text(ws, (const char *)arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        if (ws->state == WS_OPEN && ws->cfg.on_binary)
            ws->cfg.on_binary(ws, (const char *)arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE:
        if (ws->state == WS_OPEN && arg->msg_length == 1) { /* a code needs two bytes */
            ws->bad_close = true;
            set_close(ws, HK_WS_CLOSE_PROTOCOL_ERROR, "", 0);
        } else if (ws->state == WS_OPEN) {
            size_t rlen = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
            set_close(ws, arg->status_code ? arg->status_code : HK_WS_CLOSE_NO_STATUS,
                      rlen ? (const char *)arg->msg + 2 : "", rlen);
        }
        break;
    default: /* ping (wslay queues the pong) and pong: any frame is a sign of life */
        break;
    }
}

/* Moves what wslay queued (pong, close) into our queue. */
static void drain_wslay(hk_ws_t *ws)
{
    if (ws->state == WS_CLOSED || !wslay_event_want_write(ws->ctx))
        return;
    int r = wslay_event_send(ws->ctx);
    if (r < 0) {
        close_handles(ws);
        return;
    }
    if (!ws->close_marked && wslay_event_get_close_sent(ws->ctx)) {
        ws->close_marked = true; /* a close frame is the last thing wslay ever sends */
        if (ws->tail)
            ws->tail->has_close = true;
    }
}

static void enter_closing(hk_ws_t *ws)
{
    if (ws->state != WS_OPEN)
        return;
    ws->state = WS_CLOSING;
    ws->close_deadline = uv_now(ws->tcp->loop) + ws->cfg.close_timeout_ms;
    if (ws->started) /* else the first timer run starts I/O, then sees CLOSING */
        arm_timer(ws);
}

/* After anything that may have queued frames in wslay: drain it, notice closes wslay started
 * itself (peer's close, bad input), enforce the cap on pongs, write, and finish when done. */
static void after_wslay(hk_ws_t *ws)
{
    drain_wslay(ws);
    if (ws->state == WS_CLOSED)
        return;
    if (ws->state == WS_OPEN && wslay_event_get_close_sent(ws->ctx)) {
        uint16_t sent = wslay_event_get_status_code_sent(ws->ctx);
        if (sent == WSLAY_CODE_NO_STATUS_RCVD || sent == WSLAY_CODE_ABNORMAL_CLOSURE)
            sent = HK_WS_CLOSE_PROTOCOL_ERROR;
        set_close(ws, sent, "", 0);
        enter_closing(ws);
    }
    if (ws->state == WS_OPEN && ws->queued > data_cap(ws))
        slow_consumer(ws); /* pongs to a client that does not read */
    if (ws->state == WS_CLOSED)
        return;
    kick_write(ws);
    maybe_finish(ws);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* the read side ends the connection: EOF, error or the close deadline */
}

static void maybe_finish(hk_ws_t *ws)
{
    if (ws->state != WS_CLOSING || !ws->close_written || ws->shutdown_sent ||
        wslay_event_get_read_enabled(ws->ctx))
        return;
    ws->shutdown_sent = true;
    if (uv_shutdown(&ws->sreq, (uv_stream_t *)ws->tcp, shutdown_cb) != 0)
        close_handles(ws);
}

/* Follows the frame headers in the input so that the application hears of a message over the
 * cap (on_too_big) before wslay, which checks each header before buffering, answers 1009: an
 * error message sent then goes out before the close frame. Control frames do not count. */
static void scan_input(hk_ws_t *ws, const unsigned char *p, size_t len)
{
    size_t off = 0;
    while (off < len && !ws->scan.over) {
        if (ws->scan.left > 0) {
            size_t k = len - off < ws->scan.left ? len - off : (size_t)ws->scan.left;
            ws->scan.left -= k;
            off += k;
            continue;
        }
        unsigned char *h = ws->scan.hdr;
        h[ws->scan.hlen++] = p[off++];
        if (ws->scan.hlen < 2)
            continue;
        unsigned l7 = h[1] & 0x7f;
        size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
        if (ws->scan.hlen < need)
            continue;
        uint64_t plen = l7;
        if (l7 == 126)
            plen = (uint64_t)h[2] << 8 | h[3];
        else if (l7 == 127) {
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | h[2 + i];
        }
        unsigned op = h[0] & 0x0f;
        if (op == 1 || op == 2)
            ws->scan.msg_len = plen;
        else if (op == 0)
            ws->scan.msg_len =
                plen > UINT64_MAX - ws->scan.msg_len ? UINT64_MAX : ws->scan.msg_len + plen;
        if (op <= 2 && ws->scan.msg_len > ws->cfg.max_message_bytes) {
            ws->scan.over = true;
            if (ws->cfg.on_too_big)
                ws->cfg.on_too_big(ws, ws->scan.msg_len);
        }
        ws->scan.left = plen;
        ws->scan.hlen = 0;
    }
}

static void process_input(hk_ws_t *ws, const char *data, size_t len)
{
    ws->last_rx = uv_now(ws->tcp->loop);
    ws->awaiting_pong = false;
    if (ws->state == WS_CLOSED || ws->shutdown_sent || !wslay_event_get_read_enabled(ws->ctx))
        return; /* lingering close: discard */
    scan_input(ws, (const unsigned char *)data, len);
    if (ws->state == WS_CLOSED) /* on_too_big may have closed it */
        return;
    ws->in = (const unsigned char *)data;
    ws->in_len = len;
    ws->in_recv = true;
    int r = wslay_event_recv(ws->ctx);
    ws->in_recv = false;
    ws->in_len = 0;
    if (ws->state == WS_CLOSED)
        return;
    if (r < 0) {
        hk_log_debug("ws", "op=recv id=%llu err=%d", (unsigned long long)ws->id, r);
        ws->bad_close = true;
        set_close(ws, HK_WS_CLOSE_PROTOCOL_ERROR, "", 0);
    }
    after_wslay(ws);
    if (r < 0 && ws->state == WS_OPEN) /* wslay could not even queue a close */
        close_handles(ws);
}

/* ---- libuv side --------------------------------------------------------------------------- */

static void handle_closed(hk_ws_t *ws)
{
    if (--ws->handles > 0)
        return;
    while (ws->head) {
        struct item *it = ws->head;
        ws->head = it->next;
        item_free(it);
    }
    ws->tail = NULL;
    ws->queued = 0;
    hk_log_debug("ws", "op=close id=%llu code=%u", (unsigned long long)ws->id,
                 (unsigned)ws->close_code);
    if (ws->cfg.on_close)
        ws->cfg.on_close(ws, ws->close_code, ws->close_reason);
    wslay_event_context_free(ws->ctx);
    hk_buf_dispose(&ws->surplus);
    free(ws);
}

static void tcp_close_cb(uv_handle_t *h)
{
    hk_ws_t *ws = h->data;
    free(h);
    ws->tcp = NULL;
    handle_closed(ws);
}

static void timer_close_cb(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void close_handles(hk_ws_t *ws)
{
    if (ws->state == WS_CLOSED)
        return;
    ws->state = WS_CLOSED;
    set_close(ws, HK_WS_CLOSE_ABNORMAL, "", 0);
    uv_close((uv_handle_t *)ws->tcp, tcp_close_cb); /* cancels the write in flight */
    uv_close((uv_handle_t *)&ws->timer, timer_close_cb);
}

/* One read buffer per loop thread, shared by its connections: process_input() hands each
 * read to wslay synchronously and wslay copies what it keeps, so nothing refers to the buffer
 * after read_cb returns. That saves 16 KB per idle connection. */
static _Thread_local char read_buf[READ_BUF_SIZE];

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)h;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hk_ws_t *ws = s->data;
    if (nread > 0) {
        process_input(ws, buf->base, (size_t)nread);
    } else if (nread < 0) {
        if (nread != UV_EOF)
            hk_log_debug("ws", "op=read id=%llu err=\"%s\"", (unsigned long long)ws->id,
                         uv_strerror((int)nread));
        close_handles(ws);
    }
}

static void start_io(hk_ws_t *ws)
{
    ws->started = true;
    int rc = uv_read_start((uv_stream_t *)ws->tcp, alloc_cb, read_cb);
    if (rc) {
        close_handles(ws);
        return;
    }
    if (ws->surplus.len)
        process_input(ws, ws->surplus.data, ws->surplus.len);
    hk_buf_dispose(&ws->surplus);
}

static void timer_cb(uv_timer_t *t);

/* One timer: the first run starts I/O; then ping/pong while OPEN, the close deadline while
 * CLOSING. Always one-shot, re-armed from the state. */
static void arm_timer(hk_ws_t *ws)
{
    if (ws->state == WS_CLOSED)
        return;
    uint64_t now = uv_now(ws->tcp->loop), due;
    if (ws->state == WS_CLOSING) {
        due = ws->close_deadline;
    } else if (ws->cfg.ping_interval_ms) {
        uint64_t iv = ws->cfg.ping_interval_ms;
        due = ws->awaiting_pong ? ws->ping_sent + 2 * iv : ws->last_rx + iv;
    } else {
        uv_timer_stop(&ws->timer);
        return;
    }
    uv_timer_start(&ws->timer, timer_cb, due > now ? due - now : 1, 0);
}

static void timer_cb(uv_timer_t *t)
{
    hk_ws_t *ws = t->data;
    if (!ws->started)
        start_io(ws);
    if (ws->state == WS_CLOSED)
        return;
    uint64_t now = uv_now(ws->tcp->loop);
    if (ws->state == WS_CLOSING) {
        if (now >= ws->close_deadline) {
            hk_log_debug("ws", "op=close id=%llu err=\"close handshake timed out\"",
                         (unsigned long long)ws->id);
            close_handles(ws);
            return;
        }
    } else if (ws->cfg.ping_interval_ms) {
        uint64_t iv = ws->cfg.ping_interval_ms;
        if (ws->awaiting_pong && now - ws->ping_sent >= 2 * iv) {
            hk_log_info("ws", "op=ping id=%llu remote=%s err=\"ping timeout\"",
                        (unsigned long long)ws->id, ws->remote);
            set_close(ws, HK_WS_CLOSE_ABNORMAL, "ping timeout", 12);
            close_handles(ws);
            return;
        }
        if (!ws->awaiting_pong && now - ws->last_rx >= iv) {
            struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
            if (wslay_event_queue_msg(ws->ctx, &ping) == 0) {
                ws->awaiting_pong = true;
                ws->ping_sent = now;
                after_wslay(ws);
            }
        }
    }
    arm_timer(ws);
}

/* ---- public API --------------------------------------------------------------------------- */

int hk_ws_accept(hk_http_req_t *req, const hk_ws_config_t *cfg, hk_ws_t **out)
{
    if (!req || !cfg || !out || hk_ws_check_upgrade(req, NULL) != 0)
        return HK_EINVAL;
    hk_ws_config_t c = *cfg;
    if (!c.max_message_bytes)
        c.max_message_bytes = DEFAULT_MAX_MESSAGE;
    if (!c.max_queue_bytes)
        c.max_queue_bytes = DEFAULT_MAX_QUEUE;
    if (!c.close_timeout_ms)
        c.close_timeout_ms = DEFAULT_CLOSE_TIMEOUT_MS;
    if (c.max_queue_bytes < HK_WS_MIN_QUEUE_BYTES || c.max_queue_bytes > UINT32_MAX)
        return HK_EINVAL; /* uv_buf_t lengths are unsigned int */

    char key[64], accept[HK_WS_ACCEPT_LEN + 1];
    if (!header_trimmed(req, "sec-websocket-key", key, sizeof(key)) ||
        hk_ws_accept_key(key, strlen(key), accept) != 0)
        return HK_EINVAL;

    hk_ws_t *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return HK_ENOMEM;
    ws->cfg = c;
    ws->data = c.data;
    ws->id = atomic_fetch_add(&next_id, 1);
    ws->state = WS_OPEN;
    snprintf(ws->remote, sizeof(ws->remote), "%s", req->remote_addr);
    hk_buf_init(&ws->surplus, SURPLUS_MAX);

    struct wslay_event_callbacks cbs = {
        .recv_callback = recv_callback,
        .send_callback = send_callback,
        .on_msg_recv_callback = on_msg_recv,
    };
    if (wslay_event_context_server_init(&ws->ctx, &cbs, ws) != 0) {
        free(ws);
        return HK_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, c.max_message_bytes);

    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Request-Id: %s\r\n\r\n",
                     accept, req->request_id);
    int rc = (n > 0 && (size_t)n < sizeof(resp)) ? append_owned(ws, resp, (size_t)n) : HK_EINVAL;
    uv_tcp_t *tcp = NULL;
    if (rc == 0)
        rc = hk_http_hijack(req, &tcp, &ws->surplus);
    if (rc) {
        while (ws->head) {
            struct item *it = ws->head;
            ws->head = it->next;
            item_free(it);
        }
        wslay_event_context_free(ws->ctx);
        hk_buf_dispose(&ws->surplus);
        free(ws);
        return rc;
    }
    /* from here on req is gone and failures surface through on_close */
    ws->tcp = tcp;
    tcp->data = ws;
    ws->handles = 2;
    uv_timer_init(tcp->loop, &ws->timer);
    ws->timer.data = ws;
    ws->last_rx = uv_now(tcp->loop);
    uv_tcp_nodelay(tcp, 1);
    /* Reading starts on the next loop iteration, so no callback runs before we return. */
    uv_timer_start(&ws->timer, timer_cb, 0, 0);
    hk_log_debug("ws", "op=open id=%llu remote=%s", (unsigned long long)ws->id, ws->remote);
    *out = ws;
    kick_write(ws);
    return 0;
}

int hk_ws_send_shared(hk_ws_t *ws, hk_ws_msg_t *msg)
{
    if (!msg)
        return HK_EINVAL;
    if (ws->state != WS_OPEN)
        return HK_ESTATE;
    /* Slow means behind by more than the cap already: one more frame is always taken, so a
     * frame larger than the cap reaches a client that keeps up (the queue holds at most the cap
     * plus one frame). */
    if (ws->queued > data_cap(ws)) {
        slow_consumer(ws);
        return HK_ELIMIT;
    }
    if (!ws->writing && !ws->head) {
        /* Nothing queued: hand the frame to the kernel now. Whatever it takes needs no queue
         * item, write request or callback; a remainder is queued as our own bytes. */
        uv_buf_t b = uv_buf_init((char *)msg->frame, (unsigned)msg->frame_len);
        int n = uv_try_write((uv_stream_t *)ws->tcp, &b, 1);
        if (n == (int)msg->frame_len)
            return 0;
        if (n > 0) {
            int rc = append_owned(ws, msg->frame + n, msg->frame_len - (size_t)n);
            if (rc) { /* the frame is cut: the stream cannot go on */
                close_handles(ws);
                return rc;
            }
            kick_write(ws);
            return 0;
        }
        /* UV_EAGAIN, or an error the queued write will report */
    }
    struct item *it = malloc(sizeof(*it));
    if (!it)
        return HK_ENOMEM;
    it->msg = hk_ws_msg_ref(msg);
    it->len = msg->frame_len;
    it->cap = 0;
    it->has_close = false;
    queue_push(ws, it);
    kick_write(ws);
    return 0;
}

static int send_copy(hk_ws_t *ws, int opcode, const void *data, size_t len)
{
    if (ws->state != WS_OPEN)
        return HK_ESTATE;
    hk_ws_msg_t *m = hk_ws_msg_new(opcode, data, len);
    if (!m)
        return HK_ENOMEM;
    int rc = hk_ws_send_shared(ws, m);
    hk_ws_msg_unref(m);
    return rc;
}

int hk_ws_send_text(hk_ws_t *ws, const char *data, size_t len)
{
    return send_copy(ws, HK_WS_OP_TEXT, data, len);
}

int hk_ws_send_binary(hk_ws_t *ws, const void *data, size_t len)
{
    return send_copy(ws, HK_WS_OP_BINARY, data, len);
}

static bool sendable_code(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

static void start_close(hk_ws_t *ws, uint16_t code, const char *reason)
{
    if (ws->state != WS_OPEN)
        return;
    if (!sendable_code(code))
        code = HK_WS_CLOSE_NORMAL;
    size_t rlen = reason ? hk_utf8_prefix(reason, MAX_REASON) : 0; /* whole characters */
    set_close(ws, code, reason ? reason : "", rlen);
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen) != 0) {
        close_handles(ws);
        return;
    }
    enter_closing(ws);
    if (!ws->in_recv) /* inside a data callback, process_input drains wslay afterwards */
        after_wslay(ws);
}

void hk_ws_close(hk_ws_t *ws, uint16_t code, const char *reason)
{
    if (ws)
        start_close(ws, code, reason);
}

size_t hk_ws_queued_bytes(const hk_ws_t *ws)
{
    return ws->queued;
}

bool hk_ws_is_open(const hk_ws_t *ws)
{
    return ws->state == WS_OPEN;
}

uint64_t hk_ws_id(const hk_ws_t *ws)
{
    return ws->id;
}

const char *hk_ws_remote_addr(const hk_ws_t *ws)
{
    return ws->remote;
}

void hk_ws_set_data(hk_ws_t *ws, void *data)
{
    ws->data = data;
}

void *hk_ws_get_data(const hk_ws_t *ws)
{
    return ws->data;
}
