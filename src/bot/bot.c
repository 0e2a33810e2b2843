/* The bot process: config → meeting (Janus) → /ws/audio client with reconnects. One libuv loop;
 * the WebSocket client is a small hand-written one (client frames masked, server frames read
 * unfragmented), since the server side of our WebSocket code has no client mode. */
#include "bot/bot.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>
#include <curl/curl.h>
#include <jansson.h>
#include "bot/janus.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"

enum {
    CONFIG_CAP = 64 * 1024,
    RBUF_CAP = 4 << 20,        /* incoming WebSocket bytes held at most */
    AUDIO_CHUNK = 1600,        /* 100 ms at 16 kHz per binary frame */
    WRITE_QUEUE_CAP = 2 << 20, /* audio is dropped while the server is this far behind */
    BACKOFF_MIN_MS = 1000,
    BACKOFF_MAX_MS = 10000,
    FINAL_WAIT_MS = 10000, /* how long the final status may take to reach the server */
    MAX_PENDING = 8,
};

typedef enum { C_DOWN, C_CONNECTING, C_HANDSHAKE, C_CONFIG_SENT, C_READY, C_CLOSING } conn_t;

typedef struct {
    uv_loop_t *loop;
    /* config */
    long long meeting_id;
    char platform[16], room[32], url[1024], passcode[257], bot_name[101], language[17], task[33],
        token[4096], ingest_url[1024];
    bool has_passcode;
    int alone_s, max_s;
    char host[256], port[8], path[512];
    /* connection to hark */
    conn_t st;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t creq;
    char *rbuf;
    size_t rlen;
    uv_timer_t retry_timer, exit_timer;
    int backoff_ms;
    bool reconnect_now, server_refused;
    uint64_t session_samples;
    int16_t abuf[AUDIO_CHUNK];
    size_t alen;
    char *pending[MAX_PENDING]; /* status frames not yet sent */
    size_t npending;
    /* meeting */
    hk_janus_t *janus;
    bool ending, final_sent, done;
    char final_status[16], final_reason[256];
    uv_signal_t sigterm, sigint, sighup;
    int signals;
    int exit_code;
} bot_t;

static void ws_connect(bot_t *b);
static void finish(bot_t *b, int code);

/* ---- WebSocket client frames ---- */

typedef struct {
    uv_write_t req;
    char *buf;
} wreq_t;

static void ws_write_cb(uv_write_t *w, int status)
{
    HK_UNUSED(status);
    wreq_t *r = (wreq_t *)w;
    free(r->buf);
    free(r);
}

static void raw_write(bot_t *b, char *buf, size_t len)
{
    wreq_t *r = malloc(sizeof(*r));
    if (!r || !b->tcp_open) {
        free(r);
        free(buf);
        return;
    }
    r->buf = buf;
    uv_buf_t ub = uv_buf_init(buf, (unsigned)len);
    if (uv_write(&r->req, (uv_stream_t *)&b->tcp, &ub, 1, ws_write_cb) != 0) {
        free(buf);
        free(r);
    }
}

static void ws_send(bot_t *b, int opcode, const void *data, size_t len)
{
    if (!b->tcp_open)
        return;
    char *f = malloc(len + 14);
    if (!f)
        return;
    size_t h = 0;
    f[h++] = (char)(0x80 | opcode);
    if (len < 126) {
        f[h++] = (char)(0x80 | len);
    } else if (len < 65536) {
        f[h++] = (char)(0x80 | 126);
        f[h++] = (char)(len >> 8);
        f[h++] = (char)len;
    } else {
        f[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--)
            f[h++] = (char)((uint64_t)len >> (8 * i));
    }
    unsigned char mask[4];
    hk_random_bytes(mask, sizeof(mask));
    memcpy(f + h, mask, 4);
    h += 4;
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        f[h + i] = (char)(p[i] ^ mask[i & 3]);
    raw_write(b, f, h + len);
}

static void ws_send_json(bot_t *b, json_t *o)
{
    size_t len;
    char *s = hk_json_encode(o, &len);
    json_decref(o);
    if (s)
        ws_send(b, 1, s, len);
    free(s);
}

/* ---- status reports ---- */

static void send_status(bot_t *b, const char *status, const char *reason)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("status"));
    json_object_set_new(o, "status", json_string(status));
    hk_json_set_str_or_null(o, "reason", reason);
    hk_log_info("bot", "op=status status=%s reason=\"%s\" connected=%s", status,
                reason ? reason : "", b->st == C_READY ? "yes" : "no");
    if (b->st == C_READY) {
        ws_send_json(b, o);
        return;
    }
    /* Sent once the server is ready again. */
    char *s = hk_json_encode(o, NULL);
    json_decref(o);
    if (!s)
        return;
    if (b->npending == MAX_PENDING) {
        free(b->pending[0]);
        memmove(b->pending, b->pending + 1, (MAX_PENDING - 1) * sizeof(char *));
        b->npending--;
    }
    b->pending[b->npending++] = s;
}

static void flush_audio(bot_t *b)
{
    if (b->alen && b->st == C_READY) {
        ws_send(b, 2, b->abuf, b->alen * sizeof(int16_t));
        b->alen = 0;
    }
}

/* The meeting is over: final status, then END_OF_AUDIO (the server flushes, then closes). */
static void send_final(bot_t *b)
{
    if (b->final_sent || b->st != C_READY)
        return;
    flush_audio(b);
    send_status(b, b->final_status, b->final_reason[0] ? b->final_reason : NULL);
    ws_send(b, 2, "END_OF_AUDIO", 12);
    b->final_sent = true;
}

/* ---- meeting callbacks ---- */

static void on_meeting_status(void *data, const char *status, const char *reason)
{
    send_status(data, status, reason);
}

static void on_audio(void *data, const int16_t *pcm, size_t n)
{
    bot_t *b = data;
    if (b->st != C_READY || b->ending)
        return; /* while disconnected the audio is lost; the server's timeline stays wall-clock */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&b->tcp) > WRITE_QUEUE_CAP)
        return;
    while (n > 0) {
        size_t k = AUDIO_CHUNK - b->alen;
        if (k > n)
            k = n;
        memcpy(b->abuf + b->alen, pcm, k * sizeof(int16_t));
        b->alen += k;
        b->session_samples += k;
        pcm += k;
        n -= k;
        if (b->alen == AUDIO_CHUNK)
            flush_audio(b);
    }
}

static void on_speaker(void *data, const char *name, const char *id, bool start)
{
    bot_t *b = data;
    if (b->st != C_READY)
        return;
    json_t *p = json_object();
    json_object_set_new(p, "event_type", json_string(start ? "SPEAKER_START" : "SPEAKER_END"));
    json_object_set_new(p, "participant_name", json_string(name));
    json_object_set_new(p, "participant_id", json_string(id));
    json_object_set_new(p, "relative_client_timestamp_ms",
                        json_integer((json_int_t)(b->session_samples / 16)));
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("speaker_activity"));
    json_object_set_new(o, "payload", p);
    ws_send_json(b, o);
}

static void exit_timer_cb(uv_timer_t *t)
{
    bot_t *b = t->data;
    hk_log_warn("bot", "op=exit msg=\"the final status did not reach the server in time\"");
    finish(b, 1);
}

static void on_ended(void *data, const char *status, const char *reason)
{
    bot_t *b = data;
    b->ending = true;
    snprintf(b->final_status, sizeof(b->final_status), "%s", status);
    snprintf(b->final_reason, sizeof(b->final_reason), "%s", reason ? reason : "");
    if (b->server_refused) {
        finish(b, 1);
        return;
    }
    send_final(b);
    uv_timer_start(&b->exit_timer, exit_timer_cb, FINAL_WAIT_MS, 0);
}

static void leave_meeting(bot_t *b, const char *reason)
{
    if (b->janus)
        hk_janus_leave(b->janus, reason);
}

/* ---- connection to hark ---- */

static void retry_timer_cb(uv_timer_t *t)
{
    ws_connect(t->data);
}

static void tcp_closed_cb(uv_handle_t *h)
{
    bot_t *b = h->data;
    b->st = C_DOWN;
    if (b->done)
        return;
    if (b->ending && b->final_sent) {
        finish(b, 0);
        return;
    }
    if (b->server_refused) {
        if (!b->ending)
            leave_meeting(b, "stopped");
        else
            finish(b, 1); /* already out of the room; nobody will take the final status */
        return;
    }
    uint64_t delay = b->reconnect_now ? 0 : (uint64_t)b->backoff_ms;
    if (!b->reconnect_now) {
        b->backoff_ms *= 2;
        if (b->backoff_ms > BACKOFF_MAX_MS)
            b->backoff_ms = BACKOFF_MAX_MS;
    }
    b->reconnect_now = false;
    hk_log_info("bot", "op=reconnect delay_ms=%llu", (unsigned long long)delay);
    uv_timer_start(&b->retry_timer, retry_timer_cb, delay, 0);
}

static void ws_drop(bot_t *b, const char *why)
{
    if (!b->tcp_open)
        return;
    if (why)
        hk_log_info("bot", "op=disconnect reason=\"%s\"", why);
    b->tcp_open = false;
    b->st = C_CLOSING;
    b->rlen = 0;
    b->alen = 0;
    uv_close((uv_handle_t *)&b->tcp, tcp_closed_cb);
}

static void on_server_text(bot_t *b, const char *s, size_t len)
{
    json_t *o = json_loadb(s, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    const char *msg = json_string_value(json_object_get(o, "message"));
    const char *status = json_string_value(json_object_get(o, "status"));
    const char *type = json_string_value(json_object_get(o, "type"));
    if (msg && !strcmp(msg, "SERVER_READY")) {
        b->st = C_READY;
        b->backoff_ms = BACKOFF_MIN_MS;
        b->session_samples = 0;
        hk_log_info("bot", "op=ready session_id=%lld",
                    (long long)json_integer_value(json_object_get(o, "session_id")));
        for (size_t i = 0; i < b->npending; i++) {
            ws_send(b, 1, b->pending[i], strlen(b->pending[i]));
            free(b->pending[i]);
        }
        b->npending = 0;
        if (b->ending)
            send_final(b);
    } else if (status && !strcmp(status, "ERROR")) {
        hk_log_warn("bot", "op=server_error msg=\"%s\"", msg ? msg : "");
        /* The meeting is over or the token is no longer good: nothing to reconnect to. */
        if (msg && (strstr(msg, "invalid token") || strstr(msg, "meeting has ended") ||
                    strstr(msg, "meeting is")))
            b->server_refused = true;
    } else if (status && !strcmp(status, "WAIT")) {
        hk_log_info("bot", "op=server_wait msg=\"server at capacity\"");
    } else if (type && !strcmp(type, "command")) {
        const char *action = json_string_value(json_object_get(o, "action"));
        hk_log_info("bot", "op=command action=%s", action ? action : "-");
        if (action && !strcmp(action, "leave")) {
            leave_meeting(b, "stopped");
        } else if (action && !strcmp(action, "reconfigure") && !b->ending) {
            const char *l = json_string_value(json_object_get(o, "language"));
            const char *t = json_string_value(json_object_get(o, "task"));
            if (l && strlen(l) < sizeof(b->language))
                snprintf(b->language, sizeof(b->language), "%s", l);
            if (t && strlen(t) < sizeof(b->task))
                snprintf(b->task, sizeof(b->task), "%s", t);
            /* A new audio session with the new settings; the server keeps the timeline. */
            flush_audio(b);
            ws_send(b, 2, "END_OF_AUDIO", 12);
            b->st = C_CONFIG_SENT; /* no more audio on this session */
            b->reconnect_now = true;
        }
    }
    json_decref(o);
}

/* Parses whole frames from rbuf. Returns false when the connection was dropped. */
static bool parse_frames(bot_t *b)
{
    size_t pos = 0;
    while (b->rlen - pos >= 2) {
        const unsigned char *p = (const unsigned char *)b->rbuf + pos;
        int opcode = p[0] & 0x0f;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (b->rlen - pos < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (len == 127) {
            if (b->rlen - pos < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            h = 10;
        }
        if (masked)
            h += 4;
        if (len > RBUF_CAP) {
            ws_drop(b, "frame too large");
            return false;
        }
        if (b->rlen - pos < h + len)
            break;
        char *payload = b->rbuf + pos + h;
        if (masked)
            for (uint64_t i = 0; i < len; i++)
                payload[i] ^= (char)p[h - 4 + (i & 3)];
        if (opcode == 1) {
            on_server_text(b, payload, (size_t)len);
        } else if (opcode == 8) {
            ws_send(b, 8, payload, len >= 2 ? 2 : 0);
            ws_drop(b, "server closed");
            return false;
        } else if (opcode == 9) {
            ws_send(b, 10, payload, (size_t)len);
        }
        pos += h + (size_t)len;
        if (!b->tcp_open)
            return false;
    }
    memmove(b->rbuf, b->rbuf + pos, b->rlen - pos);
    b->rlen -= pos;
    return true;
}

static void send_config(bot_t *b)
{
    json_t *o = json_object();
    char uid[64];
    snprintf(uid, sizeof(uid), "bot-%lld-%d", b->meeting_id, (int)getpid());
    json_object_set_new(o, "uid", json_string(uid));
    json_object_set_new(o, "token", json_string(b->token));
    json_object_set_new(o, "language", json_string(b->language));
    json_object_set_new(o, "task", json_string(b->task));
    json_object_set_new(o, "audio_format", json_string("int16"));
    json_object_set_new(o, "sample_rate", json_integer(16000));
    json_object_set_new(o, "use_vad", json_true());
    ws_send_json(b, o);
    b->st = C_CONFIG_SENT;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    HK_UNUSED(h);
    HK_UNUSED(suggested);
    static char slab[65536];
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bot_t *b = s->data;
    if (nread < 0) {
        ws_drop(b, uv_strerror((int)nread));
        return;
    }
    if (b->rlen + (size_t)nread > RBUF_CAP) {
        ws_drop(b, "server sent too much");
        return;
    }
    memcpy(b->rbuf + b->rlen, buf->base, (size_t)nread);
    b->rlen += (size_t)nread;
    if (b->st == C_HANDSHAKE) {
        char *end = memmem(b->rbuf, b->rlen, "\r\n\r\n", 4);
        if (!end)
            return;
        if (b->rlen < 12 || memcmp(b->rbuf, "HTTP/1.1 101", 12) != 0) {
            ws_drop(b, "WebSocket upgrade refused");
            return;
        }
        size_t used = (size_t)(end - b->rbuf) + 4;
        memmove(b->rbuf, b->rbuf + used, b->rlen - used);
        b->rlen -= used;
        send_config(b);
    }
    parse_frames(b);
}

static void connect_cb(uv_connect_t *c, int status)
{
    bot_t *b = c->data;
    if (status) {
        ws_drop(b, uv_strerror(status));
        return;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char rnd[18];
    hk_random_bytes(rnd, sizeof(rnd));
    char key[25];
    for (int i = 0; i < 6; i++) {
        unsigned v =
            ((unsigned)rnd[3 * i] << 16) | ((unsigned)rnd[3 * i + 1] << 8) | rnd[3 * i + 2];
        for (int k = 0; k < 4; k++)
            key[4 * i + k] = b64[(v >> (18 - 6 * k)) & 63];
    }
    key[22] = key[23] = '='; /* 16 bytes of key */
    key[24] = '\0';
    char *req = malloc(2048);
    if (!req) {
        ws_drop(b, "out of memory");
        return;
    }
    int n = snprintf(req, 2048,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: hark-bot\r\n\r\n",
                     b->path, b->host, b->port, key);
    if (n <= 0 || n >= 2048) {
        free(req);
        ws_drop(b, "URL too long");
        return;
    }
    b->st = C_HANDSHAKE;
    raw_write(b, req, (size_t)n);
    uv_read_start((uv_stream_t *)&b->tcp, alloc_cb, read_cb);
}

static void ws_connect(bot_t *b)
{
    if (b->done || b->tcp_open)
        return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(b->loop, &gai, NULL, b->host, b->port, &hints);
    uv_tcp_init(b->loop, &b->tcp);
    b->tcp.data = b;
    b->tcp_open = true;
    b->st = C_CONNECTING;
    if (rc == 0) {
        b->creq.data = b;
        rc = uv_tcp_connect(&b->creq, &b->tcp, gai.addrinfo->ai_addr, connect_cb);
        uv_freeaddrinfo(gai.addrinfo);
    }
    if (rc)
        ws_drop(b, uv_strerror(rc));
}

/* ---- process ---- */

static void closed_noop(uv_handle_t *h)
{
    HK_UNUSED(h);
}

static void finish(bot_t *b, int code)
{
    if (b->done)
        return;
    b->done = true;
    b->exit_code = code;
    hk_log_info("bot", "op=exit code=%d final=%s reason=\"%s\"", code,
                b->final_status[0] ? b->final_status : "-", b->final_reason);
    uv_timer_stop(&b->retry_timer);
    uv_close((uv_handle_t *)&b->retry_timer, closed_noop);
    uv_close((uv_handle_t *)&b->exit_timer, closed_noop);
    uv_close((uv_handle_t *)&b->sigterm, closed_noop);
    uv_close((uv_handle_t *)&b->sigint, closed_noop);
    uv_close((uv_handle_t *)&b->sighup, closed_noop);
    if (b->tcp_open) {
        b->tcp_open = false;
        uv_close((uv_handle_t *)&b->tcp, tcp_closed_cb);
    }
    hk_janus_free(b->janus);
    b->janus = NULL;
}

static void signal_cb(uv_signal_t *s, int signum)
{
    bot_t *b = s->data;
    hk_log_info("bot", "op=signal signal=%d", signum);
    if (signum == SIGHUP) {
        /* The server died (parent-death signal). The kernel may send it once per thread of the
         * server as they exit, so it only ever means "leave". */
        if (b->janus)
            leave_meeting(b, "stopped");
        else
            finish(b, 1);
        return;
    }
    if (++b->signals > 1 || !b->janus) {
        finish(b, 1);
        return;
    }
    leave_meeting(b, "stopped");
}

static bool copy_str(json_t *cfg, const char *key, bool required, char *out, size_t outlen,
                     bool *present, char *err, size_t errlen)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required)
            snprintf(err, errlen, "%s: required", key);
        return !required;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= outlen) {
        snprintf(err, errlen, "%s: must be a string under %zu bytes", key, outlen);
        return false;
    }
    snprintf(out, outlen, "%s", s);
    if (present)
        *present = true;
    return true;
}

static int read_config(bot_t *b, char *err, size_t errlen)
{
    char *buf = malloc(CONFIG_CAP + 1);
    size_t n = 0;
    if (!buf)
        return -1;
    for (;;) {
        ssize_t k = read(0, buf + n, CONFIG_CAP - n);
        if (k < 0) {
            snprintf(err, errlen, "cannot read the config from stdin");
            free(buf);
            return -1;
        }
        if (k == 0 || (n += (size_t)k) == CONFIG_CAP ||
            memchr(buf + n - (size_t)k, '\n', (size_t)k))
            break;
    }
    json_t *cfg = json_loadb(buf, n, JSON_DISABLE_EOF_CHECK, NULL);
    free(buf);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        snprintf(err, errlen, "the config on stdin is not a JSON object");
        return -1;
    }
    int rc = -1;
    json_t *al = json_object_get(cfg, "automatic_leave");
    snprintf(b->language, sizeof(b->language), "en");
    snprintf(b->task, sizeof(b->task), "transcribe");
    snprintf(b->bot_name, sizeof(b->bot_name), "hark");
    if (!json_is_integer(json_object_get(cfg, "meeting_id"))) {
        snprintf(err, errlen, "meeting_id: required integer");
        goto out;
    }
    b->meeting_id = json_integer_value(json_object_get(cfg, "meeting_id"));
    if (!copy_str(cfg, "platform", true, b->platform, sizeof(b->platform), NULL, err, errlen) ||
        !copy_str(cfg, "native_meeting_id", true, b->room, sizeof(b->room), NULL, err, errlen) ||
        !copy_str(cfg, "meeting_url", true, b->url, sizeof(b->url), NULL, err, errlen) ||
        !copy_str(cfg, "passcode", false, b->passcode, sizeof(b->passcode), &b->has_passcode, err,
                  errlen) ||
        !copy_str(cfg, "bot_name", false, b->bot_name, sizeof(b->bot_name), NULL, err, errlen) ||
        !copy_str(cfg, "language", false, b->language, sizeof(b->language), NULL, err, errlen) ||
        !copy_str(cfg, "task", false, b->task, sizeof(b->task), NULL, err, errlen) ||
        !copy_str(cfg, "token", true, b->token, sizeof(b->token), NULL, err, errlen) ||
        !copy_str(cfg, "ingest_url", true, b->ingest_url, sizeof(b->ingest_url), NULL, err, errlen))
        goto out;
    if (strcmp(b->platform, "janus") != 0) {
        snprintf(err, errlen, "platform: '%s' has no bot (supported: janus)", b->platform);
        goto out;
    }
    json_t *v = json_object_get(al, "max_time_left_alone_s");
    b->alone_s = json_is_integer(v) && json_integer_value(v) > 0 ? (int)json_integer_value(v) : 60;
    v = json_object_get(al, "max_duration_s");
    b->max_s = json_is_integer(v) && json_integer_value(v) > 0 ? (int)json_integer_value(v) : 14400;
    /* ws://host:port/path (wss is not supported by this client; bots run next to the server) */
    const char *u = b->ingest_url;
    if (strncasecmp(u, "ws://", 5) != 0) {
        snprintf(err, errlen, "ingest_url: must be ws://host:port/path");
        goto out;
    }
    u += 5;
    const char *slash = strchr(u, '/');
    size_t hl = slash ? (size_t)(slash - u) : strlen(u);
    char hostport[256];
    if (hl == 0 || hl >= sizeof(hostport)) {
        snprintf(err, errlen, "ingest_url: bad host");
        goto out;
    }
    memcpy(hostport, u, hl);
    hostport[hl] = '\0';
    snprintf(b->path, sizeof(b->path), "%s", slash ? slash : "/");
    char *colon = strrchr(hostport, ':');
    char *rb = strrchr(hostport, ']');
    if (colon && (!rb || colon > rb)) {
        *colon = '\0';
        snprintf(b->port, sizeof(b->port), "%s", colon + 1);
    } else {
        snprintf(b->port, sizeof(b->port), "80");
    }
    const char *host = hostport;
    size_t l = strlen(host);
    if (l > 2 && host[0] == '[' && host[l - 1] == ']') {
        hostport[l - 1] = '\0';
        host = hostport + 1;
    }
    snprintf(b->host, sizeof(b->host), "%s", host);
    rc = 0;
out:
    json_decref(cfg);
    return rc;
}

int hk_bot_main(int argc, char **argv)
{
    long parent = 0; /* the server that started us (--parent-pid), 0 = not checked */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--parent-pid") && i + 1 < argc) {
            parent = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: hark bot [--parent-pid PID] < config.json\n\nRuns one meeting bot. "
                   "The server starts it with its JSON config on stdin\n(see docs/api.md, Bots) "
                   "and its own pid: the bot exits if that process is gone.\n");
            return 0;
        }
    }
    hk_log_init(HK_LOG_INFO, stderr);
    signal(SIGPIPE, SIG_IGN);
    /* A bot never outlives its server: it leaves its meeting when the server goes away. Not
     * SIGTERM, whose second delivery means "exit now": this one can come more than once. */
    prctl(PR_SET_PDEATHSIG, SIGHUP);
    if (parent > 0 && getppid() != (pid_t)parent) {
        /* The server died before the line above: no signal will ever come. */
        fprintf(stderr, "hark bot: the server (pid %ld) is gone\n", parent);
        return 1;
    }
    bot_t *b = calloc(1, sizeof(*b));
    if (!b)
        return 1;
    b->rbuf = malloc(RBUF_CAP);
    char err[300] = "";
    if (!b->rbuf || read_config(b, err, sizeof(err))) {
        hk_log_error("bot", "op=config err=\"%s\"", err[0] ? err : "out of memory");
        free(b->rbuf);
        free(b);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    b->loop = uv_default_loop();
    b->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(b->loop, &b->retry_timer);
    uv_timer_init(b->loop, &b->exit_timer);
    b->retry_timer.data = b->exit_timer.data = b;
    uv_signal_init(b->loop, &b->sigterm);
    uv_signal_init(b->loop, &b->sigint);
    uv_signal_init(b->loop, &b->sighup);
    b->sigterm.data = b->sigint.data = b->sighup.data = b;
    uv_signal_start(&b->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&b->sigint, signal_cb, SIGINT);
    uv_signal_start(&b->sighup, signal_cb, SIGHUP);
    hk_log_info("bot", "op=start meeting_id=%lld platform=%s room=%s ingest=%s", b->meeting_id,
                b->platform, b->room, b->ingest_url);
    send_status(b, "joining", NULL);
    ws_connect(b);
    hk_janus_config_t jc = {
        .url = b->url,
        .room = b->room,
        .pin = b->has_passcode ? b->passcode : NULL,
        .display = b->bot_name,
        .max_time_left_alone_s = b->alone_s,
        .max_duration_s = b->max_s,
    };
    hk_janus_callbacks_t cb = {on_meeting_status, on_audio, on_speaker, on_ended};
    int rc = hk_janus_start(b->loop, &jc, &cb, b, &b->janus);
    if (rc) {
        b->janus = NULL;
        char reason[256];
        snprintf(reason, sizeof(reason), "join_failure: cannot set up the Janus connection (%s)",
                 hk_strerror(rc));
        on_ended(b, "failed", reason);
    }
    uv_run(b->loop, UV_RUN_DEFAULT);
    int code = b->exit_code;
    for (size_t i = 0; i < b->npending; i++)
        free(b->pending[i]);
    uv_loop_close(b->loop);
    curl_global_cleanup();
    free(b->rbuf);
    free(b);
    return code;
}
