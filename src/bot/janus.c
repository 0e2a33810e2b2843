/* Janus AudioBridge as a plain-RTP participant. Threads: the loop thread owns the UDP socket,
 * the Opus codec state, the timers and the participant list; one poll thread runs the HTTP
 * conversation up to the join and then long-polls events, handing them to the loop through a
 * mutex-guarded queue and uv_async; keepalive and the leave sequence run as libuv work items,
 * each with its own curl handle. */
#include "bot/janus.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>
#include <opus/opus.h>
#include "audio/convert.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"

enum {
    PT_OPUS = 111,
    OPUS_RATE = 48000,
    FRAME_48K = 960,        /* 20 ms */
    MAX_FRAME_48K = 5760,   /* 120 ms, Opus' longest frame */
    RESPONSE_CAP = 1 << 20, /* a Janus HTTP answer, at most */
    KEEPALIVE_MS = 25000,   /* Janus drops a session after 60 s of silence */
    MAX_PARTICIPANTS = 256,
    MAX_PLC_FRAMES = 5, /* conceal at most 100 ms of lost packets */
};

typedef struct ev_s {
    json_t *o; /* a Janus event, or {"_error": "..."} from the poll thread */
    struct ev_s *next;
} ev_t;

typedef struct {
    char id[24];
    char display[128];
} participant_t;

struct hk_janus_s {
    uv_loop_t *loop;
    hk_janus_callbacks_t cb;
    void *data;
    char *url, *room, *pin, *display;
    int alone_s, max_s;
    char local_ip[64];
    uint16_t local_port;

    /* Shared with the poll thread: guarded by mu. */
    pthread_mutex_t mu;
    ev_t *evs, **evs_tail;
    uint64_t session_id, handle_id;
    bool async_closed;
    atomic_bool stop_poll; /* the poll thread's transfers abort when set */
    pthread_t poll_thread;
    bool poll_started;

    /* Loop thread. */
    uv_async_t async;
    uv_udp_t udp;
    uv_timer_t send_timer, alone_timer, max_timer, keepalive_timer;
    int open_handles;
    bool joined, leaving, ended, freed, closed; /* freed: hk_janus_free was called */
    char leave_status[16], leave_reason[256];
    struct sockaddr_storage dest;
    bool have_dest;
    OpusEncoder *enc;
    OpusDecoder *dec;
    unsigned char silence[64];
    int silence_len;
    uint16_t tx_seq;
    uint32_t tx_ts, tx_ssrc;
    bool rx_started;
    uint16_t rx_seq;
    hk_resampler_t *rs;
    int16_t pcm48[MAX_FRAME_48K * (MAX_PLC_FRAMES + 1)];
    int16_t pcm16[MAX_FRAME_48K * (MAX_PLC_FRAMES + 1)];
    participant_t parts[MAX_PARTICIPANTS];
    size_t nparts;
    uint64_t our_id;
    uint64_t rx_packets;
    uv_work_t ka_work, leave_work;
    bool ka_busy;
};

/* ---- HTTP (any thread; one curl handle per caller) ---- */

typedef struct {
    char *buf;
    size_t len;
    bool over;
} resp_t;

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t k = size * n;
    if (r->len + k > RESPONSE_CAP) {
        r->over = true;
        return 0;
    }
    char *nb = realloc(r->buf, r->len + k + 1);
    if (!nb)
        return 0;
    r->buf = nb;
    memcpy(r->buf + r->len, p, k);
    r->len += k;
    r->buf[r->len] = '\0';
    return k;
}

static int progress_cb(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    HK_UNUSED(dt);
    HK_UNUSED(dn);
    HK_UNUSED(ut);
    HK_UNUSED(un);
    atomic_bool *stop = ud;
    return stop && atomic_load(stop) ? 1 : 0;
}

/*
 * One request: POST with a JSON body (consumed: the reference is stolen; a transaction is added)
 * or GET when body is NULL. Returns
 * the parsed answer (new reference) or NULL with err filled.
 */
static json_t *http_json(CURL *h, const char *url, json_t *body, long timeout_s, atomic_bool *stop,
                         char *err, size_t errlen)
{
    resp_t r = {0};
    char *payload = NULL;
    struct curl_slist *hdrs = NULL;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, stop);
    if (body) {
        char tx[24];
        hk_random_token("", 8, tx, sizeof(tx));
        json_object_set_new(body, "transaction", json_string(tx));
        size_t len;
        payload = hk_json_encode(body, &len);
        json_decref(body); /* the request body is consumed here, whatever happens */
        if (!payload) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdrs);
    free(payload);
    json_t *o = NULL;
    if (cc != CURLE_OK)
        snprintf(err, errlen, "%s", r.over ? "answer too large" : curl_easy_strerror(cc));
    else if (code != 200)
        snprintf(err, errlen, "HTTP status %ld", code);
    else if (!(o = json_loadb(r.buf ? r.buf : "", r.len, 0, NULL)))
        snprintf(err, errlen, "answer is not JSON");
    free(r.buf);
    return o;
}

/* A request whose answer must be {"janus":"success"|"ack"}; returns it or NULL (err filled,
 * with Janus' own error text when it sent one). */
static json_t *janus_call(CURL *h, const char *url, json_t *body, atomic_bool *stop, char *err,
                          size_t errlen)
{
    json_t *o = http_json(h, url, body, 10, stop, err, errlen);
    if (!o)
        return NULL;
    const char *j = json_string_value(json_object_get(o, "janus"));
    if (!j || (strcmp(j, "success") && strcmp(j, "ack"))) {
        json_t *e = json_object_get(o, "error");
        snprintf(err, errlen, "Janus error %lld: %s",
                 (long long)json_integer_value(json_object_get(e, "code")),
                 json_string_value(json_object_get(e, "reason"))
                     ? json_string_value(json_object_get(e, "reason"))
                     : "unexpected answer");
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A create/attach request: the new session or handle id from {"data":{"id":N}}, or 0 (err). */
static uint64_t janus_new_id(CURL *h, const char *url, json_t *body, atomic_bool *stop, char *err,
                             size_t errlen)
{
    json_t *o = janus_call(h, url, body, stop, err, errlen);
    uint64_t id =
        o ? (uint64_t)json_integer_value(json_object_get(json_object_get(o, "data"), "id")) : 0;
    json_decref(o);
    return id;
}

static json_t *req(const char *janus)
{
    json_t *o = json_object();
    json_object_set_new(o, "janus", json_string(janus));
    return o;
}

/* ---- poll thread ---- */

static void push_event(hk_janus_t *j, json_t *o)
{
    ev_t *e = calloc(1, sizeof(*e));
    if (!e) {
        json_decref(o);
        return;
    }
    e->o = o;
    pthread_mutex_lock(&j->mu);
    if (j->async_closed) {
        pthread_mutex_unlock(&j->mu);
        json_decref(o);
        free(e);
        return;
    }
    *j->evs_tail = e;
    j->evs_tail = &e->next;
    uv_async_send(&j->async);
    pthread_mutex_unlock(&j->mu);
}

static void push_error(hk_janus_t *j, const char *fmt, const char *detail)
{
    char msg[400];
    snprintf(msg, sizeof(msg), fmt, detail);
    json_t *o = json_object();
    json_object_set_new(o, "_error", json_string(msg));
    push_event(j, o);
}

static void *poll_main(void *arg)
{
    hk_janus_t *j = arg;
    CURL *h = curl_easy_init();
    char err[300] = "", url[1400];
    if (!h) {
        push_error(j, "%s", "cannot start an HTTP client");
        return NULL;
    }
    uint64_t sid = janus_new_id(h, j->url, req("create"), &j->stop_poll, err, sizeof(err));
    if (!sid) {
        if (!atomic_load(&j->stop_poll))
            push_error(j, "cannot reach Janus: %s", err);
        curl_easy_cleanup(h);
        return NULL;
    }
    pthread_mutex_lock(&j->mu);
    j->session_id = sid;
    pthread_mutex_unlock(&j->mu);
    snprintf(url, sizeof(url), "%s/%llu", j->url, (unsigned long long)sid);
    json_t *at = req("attach");
    json_object_set_new(at, "plugin", json_string("janus.plugin.audiobridge"));
    uint64_t hid = janus_new_id(h, url, at, &j->stop_poll, err, sizeof(err));
    if (!hid) {
        if (!atomic_load(&j->stop_poll))
            push_error(j, "cannot use the AudioBridge plugin: %s", err);
        curl_easy_cleanup(h);
        return NULL;
    }
    pthread_mutex_lock(&j->mu);
    j->handle_id = hid;
    pthread_mutex_unlock(&j->mu);
    char hurl[1500];
    snprintf(hurl, sizeof(hurl), "%s/%llu", url, (unsigned long long)hid);
    json_t *body = json_object();
    json_object_set_new(body, "request", json_string("join"));
    json_object_set_new(body, "room", json_integer((json_int_t)strtoull(j->room, NULL, 10)));
    json_object_set_new(body, "display", json_string(j->display));
    if (j->pin)
        json_object_set_new(body, "pin", json_string(j->pin));
    json_t *rtp = json_object();
    json_object_set_new(rtp, "ip", json_string(j->local_ip));
    json_object_set_new(rtp, "port", json_integer(j->local_port));
    json_object_set_new(rtp, "payload_type", json_integer(PT_OPUS));
    json_object_set_new(body, "rtp", rtp);
    json_t *msg = req("message");
    json_object_set_new(msg, "body", body);
    json_t *o = janus_call(h, hurl, msg, &j->stop_poll, err, sizeof(err));
    json_decref(o);
    if (!o) {
        if (!atomic_load(&j->stop_poll))
            push_error(j, "join request refused: %s", err);
        curl_easy_cleanup(h);
        return NULL;
    }
    /* Long-poll until told to stop. Janus answers within 30 s (a keepalive when idle). */
    snprintf(url + strlen(url), sizeof(url) - strlen(url), "?maxev=20");
    int failures = 0;
    while (!atomic_load(&j->stop_poll)) {
        o = http_json(h, url, NULL, 45, &j->stop_poll, err, sizeof(err));
        if (atomic_load(&j->stop_poll)) {
            json_decref(o);
            break;
        }
        if (!o) {
            if (++failures >= 10) {
                push_error(j, "lost the connection to Janus: %s", err);
                break;
            }
            usleep(500 * 1000);
            continue;
        }
        failures = 0;
        if (json_is_array(o)) {
            size_t i;
            json_t *v;
            json_array_foreach(o, i, v) push_event(j, json_incref(v));
            json_decref(o);
        } else {
            push_event(j, o);
        }
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* ---- RTP ---- */

static void send_silence(hk_janus_t *j)
{
    if (!j->have_dest || j->silence_len <= 0)
        return;
    unsigned char pkt[12 + sizeof(j->silence)];
    pkt[0] = 0x80;
    pkt[1] = PT_OPUS;
    pkt[2] = (unsigned char)(j->tx_seq >> 8);
    pkt[3] = (unsigned char)j->tx_seq;
    uint32_t ts = j->tx_ts, ssrc = j->tx_ssrc;
    for (int i = 0; i < 4; i++) {
        pkt[4 + i] = (unsigned char)(ts >> (24 - 8 * i));
        pkt[8 + i] = (unsigned char)(ssrc >> (24 - 8 * i));
    }
    memcpy(pkt + 12, j->silence, (size_t)j->silence_len);
    j->tx_seq++;
    j->tx_ts += FRAME_48K;
    uv_buf_t b = uv_buf_init((char *)pkt, (unsigned)(12 + j->silence_len));
    uv_udp_try_send(&j->udp, &b, 1, (const struct sockaddr *)&j->dest);
}

static void send_timer_cb(uv_timer_t *t)
{
    send_silence(t->data);
}

static void deliver(hk_janus_t *j, const int16_t *pcm, size_t n)
{
    size_t m = hk_resampler_process(j->rs, pcm, n, j->pcm16, HK_ARRAY_SIZE(j->pcm16));
    if (m && j->cb.audio_cb)
        j->cb.audio_cb(j->data, j->pcm16, m);
}

static void udp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    HK_UNUSED(h);
    HK_UNUSED(suggested);
    static char slab[2048]; /* one loop thread; libuv reads one datagram at a time */
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void udp_recv_cb(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    HK_UNUSED(flags);
    hk_janus_t *j = u->data;
    if (nread < 12 || !from || j->leaving)
        return;
    const unsigned char *p = (const unsigned char *)buf->base;
    size_t len = (size_t)nread;
    if ((p[0] >> 6) != 2 || (p[1] & 0x7f) != PT_OPUS)
        return;
    size_t off = 12 + 4u * (p[0] & 0x0f);
    if (p[0] & 0x10) { /* header extension */
        if (off + 4 > len)
            return;
        off += 4 + 4u * (((size_t)p[off + 2] << 8) | p[off + 3]);
    }
    size_t end = len;
    if (p[0] & 0x20) { /* padding */
        if (p[len - 1] > len)
            return;
        end -= p[len - 1];
    }
    if (off >= end)
        return;
    uint16_t seq = (uint16_t)((p[2] << 8) | p[3]);
    int lost = 0;
    if (j->rx_started) {
        uint16_t gap = (uint16_t)(seq - j->rx_seq);
        if (gap == 0 || gap > 0x8000)
            return; /* duplicate or late: dropped */
        lost = gap - 1 > MAX_PLC_FRAMES ? MAX_PLC_FRAMES : gap - 1;
    }
    j->rx_started = true;
    j->rx_seq = seq;
    j->rx_packets++;
    for (int i = 0; i < lost; i++) { /* keep the timeline: conceal what was lost */
        int n = opus_decode(j->dec, NULL, 0, j->pcm48, FRAME_48K, 0);
        if (n > 0)
            deliver(j, j->pcm48, (size_t)n);
    }
    int n = opus_decode(j->dec, p + off, (opus_int32)(end - off), j->pcm48, MAX_FRAME_48K, 0);
    if (n > 0)
        deliver(j, j->pcm48, (size_t)n);
}

/* ---- participants and events (loop thread) ---- */

static const char *display_of(hk_janus_t *j, const char *id)
{
    for (size_t i = 0; i < j->nparts; i++)
        if (strcmp(j->parts[i].id, id) == 0)
            return j->parts[i].display;
    return NULL;
}

static void id_text(json_t *v, char *out, size_t outlen)
{
    if (json_is_integer(v))
        snprintf(out, outlen, "%llu", (unsigned long long)json_integer_value(v));
    else
        snprintf(out, outlen, "%s", json_string_value(v) ? json_string_value(v) : "");
}

static void alone_timer_cb(uv_timer_t *t)
{
    hk_janus_t *j = t->data;
    hk_log_info("janus", "op=leave reason=left_alone alone_s=%d", j->alone_s);
    hk_janus_leave(j, "left_alone");
}

static void max_timer_cb(uv_timer_t *t)
{
    hk_janus_t *j = t->data;
    hk_log_info("janus", "op=leave reason=max_duration max_duration_s=%d", j->max_s);
    hk_janus_leave(j, "max_duration");
}

/* Alone (nobody else in the room) for max_time_left_alone_s: leave. */
static void alone_check(hk_janus_t *j)
{
    if (!j->joined || j->leaving)
        return;
    if (j->nparts == 0) {
        if (!uv_is_active((uv_handle_t *)&j->alone_timer))
            uv_timer_start(&j->alone_timer, alone_timer_cb, (uint64_t)j->alone_s * 1000, 0);
    } else {
        uv_timer_stop(&j->alone_timer);
    }
}

static void add_participants(hk_janus_t *j, json_t *list)
{
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        char id[24];
        id_text(json_object_get(p, "id"), id, sizeof(id));
        if (!id[0] || (j->our_id && strtoull(id, NULL, 10) == j->our_id))
            continue;
        const char *disp = json_string_value(json_object_get(p, "display"));
        participant_t *slot = NULL;
        for (size_t k = 0; k < j->nparts; k++)
            if (strcmp(j->parts[k].id, id) == 0)
                slot = &j->parts[k];
        if (!slot) {
            if (j->nparts == MAX_PARTICIPANTS)
                continue;
            slot = &j->parts[j->nparts++];
            snprintf(slot->id, sizeof(slot->id), "%s", id);
            hk_log_info("janus", "op=participant_joined id=%s", id);
        }
        const char *name = disp && disp[0] ? disp : id; /* cut whole characters only */
        size_t len = hk_utf8_prefix(name, sizeof(slot->display) - 1);
        memcpy(slot->display, name, len);
        slot->display[len] = '\0';
    }
    alone_check(j);
}

static void remove_participant(hk_janus_t *j, json_t *idv)
{
    char id[24];
    id_text(idv, id, sizeof(id));
    for (size_t k = 0; k < j->nparts; k++) {
        if (strcmp(j->parts[k].id, id) == 0) {
            j->parts[k] = j->parts[--j->nparts];
            hk_log_info("janus", "op=participant_left id=%s", id);
            break;
        }
    }
    alone_check(j);
}

/* The reason a user reads when the room refused us. */
static void join_error(hk_janus_t *j, long long code, const char *msg)
{
    char reason[256];
    if (code == 485)
        snprintf(reason, sizeof(reason), "join_failure: Janus room %s does not exist", j->room);
    else if (code == 489 && msg && strstr(msg, "pin"))
        snprintf(reason, sizeof(reason),
                 "join_failure: wrong PIN for Janus room %s (check the passcode)", j->room);
    else if (code == 489 && msg && strstr(msg, "RTP"))
        snprintf(reason, sizeof(reason),
                 "join_failure: Janus room %s does not allow plain-RTP participants "
                 "(set allow_rtp_participants = true)",
                 j->room);
    else
        snprintf(reason, sizeof(reason), "join_failure: Janus error %lld: %s", code,
                 msg ? msg : "unknown");
    hk_log_warn("janus", "op=join room=%s err=\"%s\"", j->room, reason);
    snprintf(j->leave_status, sizeof(j->leave_status), "failed");
    hk_janus_leave(j, reason);
}

static void on_joined(hk_janus_t *j, json_t *d)
{
    json_t *rtp = json_object_get(d, "rtp");
    const char *ip = json_string_value(json_object_get(rtp, "ip"));
    json_int_t port = json_integer_value(json_object_get(rtp, "port"));
    j->our_id = (uint64_t)json_integer_value(json_object_get(d, "id"));
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICHOST},
                    *ai = NULL;
    char ports[16];
    snprintf(ports, sizeof(ports), "%lld", (long long)port);
    if (!ip || port <= 0 || port > 65535 || getaddrinfo(ip, ports, &hints, &ai) != 0) {
        snprintf(j->leave_status, sizeof(j->leave_status), "failed");
        hk_janus_leave(j, "join_failure: Janus did not say where to send RTP");
        return;
    }
    memcpy(&j->dest, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    j->have_dest = true;
    j->joined = true;
    hk_log_info("janus", "op=joined room=%s id=%llu rtp_peer=%s:%lld local=%s:%u", j->room,
                (unsigned long long)j->our_id, ip, (long long)port, j->local_ip, j->local_port);
    /* Janus starts sending the mix once it has one valid packet from us; silence keeps the
     * path (and any NAT binding) alive. */
    send_silence(j);
    uv_timer_start(&j->send_timer, send_timer_cb, 20, 20);
    if (j->max_s > 0)
        uv_timer_start(&j->max_timer, max_timer_cb, (uint64_t)j->max_s * 1000, 0);
    add_participants(j, json_object_get(d, "participants"));
    alone_check(j);
    if (j->cb.status_cb)
        j->cb.status_cb(j->data, "active", NULL);
}

static void on_event(hk_janus_t *j, json_t *o)
{
    const char *err = json_string_value(json_object_get(o, "_error"));
    if (err) {
        char reason[256];
        snprintf(reason, sizeof(reason), "%s%s", j->joined ? "" : "join_failure: ", err);
        hk_log_warn("janus", "op=poll err=\"%s\"", err);
        snprintf(j->leave_status, sizeof(j->leave_status), "failed");
        hk_janus_leave(j, reason);
        return;
    }
    const char *kind = json_string_value(json_object_get(o, "janus"));
    if (!kind || j->leaving)
        return;
    if (!strcmp(kind, "timeout")) { /* Janus dropped our session */
        snprintf(j->leave_status, sizeof(j->leave_status), "failed");
        hk_janus_leave(j, "janus_session_lost");
        return;
    }
    if (!strcmp(kind, "detached") || !strcmp(kind, "hangup")) {
        hk_janus_leave(j, "room_closed");
        return;
    }
    if (strcmp(kind, "event") != 0)
        return; /* keepalive, ack, webrtcup, media ... */
    json_t *d = json_object_get(json_object_get(o, "plugindata"), "data");
    const char *ab = json_string_value(json_object_get(d, "audiobridge"));
    if (!ab)
        return;
    json_t *ec = json_object_get(d, "error_code");
    if (ec) {
        const char *msg = json_string_value(json_object_get(d, "error"));
        if (!j->joined)
            join_error(j, (long long)json_integer_value(ec), msg);
        else
            hk_log_warn("janus", "op=event error_code=%lld err=\"%s\"",
                        (long long)json_integer_value(ec), msg ? msg : "");
        return;
    }
    if (!strcmp(ab, "joined")) {
        if (!j->joined && json_object_get(d, "rtp"))
            on_joined(j, d);
        else
            add_participants(j, json_object_get(d, "participants"));
    } else if (!strcmp(ab, "event")) {
        if (json_object_get(d, "participants"))
            add_participants(j, json_object_get(d, "participants"));
        if (json_object_get(d, "leaving"))
            remove_participant(j, json_object_get(d, "leaving"));
    } else if (!strcmp(ab, "talking") || !strcmp(ab, "stopped-talking")) {
        char id[24];
        id_text(json_object_get(d, "id"), id, sizeof(id));
        const char *name = display_of(j, id);
        if (name && j->cb.speaker_cb)
            j->cb.speaker_cb(j->data, name, id, ab[0] == 't');
    } else if (!strcmp(ab, "destroyed")) {
        hk_log_info("janus", "op=leave reason=room_closed room=%s", j->room);
        hk_janus_leave(j, "room_closed");
    } else if (!strcmp(ab, "kicked") || !strcmp(ab, "left")) {
        if (!strcmp(ab, "kicked"))
            hk_janus_leave(j, "room_closed");
    }
}

static void async_cb(uv_async_t *a)
{
    hk_janus_t *j = a->data;
    pthread_mutex_lock(&j->mu);
    ev_t *e = j->evs;
    j->evs = NULL;
    j->evs_tail = &j->evs;
    pthread_mutex_unlock(&j->mu);
    while (e) {
        ev_t *next = e->next;
        on_event(j, e->o);
        json_decref(e->o);
        free(e);
        e = next;
    }
}

/* ---- keepalive and leave (worker threads) ---- */

static void ka_work_cb(uv_work_t *w)
{
    hk_janus_t *j = w->data;
    pthread_mutex_lock(&j->mu);
    uint64_t sid = j->session_id;
    pthread_mutex_unlock(&j->mu);
    if (!sid)
        return;
    CURL *h = curl_easy_init();
    if (!h)
        return;
    char url[1400], err[300];
    snprintf(url, sizeof(url), "%s/%llu", j->url, (unsigned long long)sid);
    json_decref(janus_call(h, url, req("keepalive"), NULL, err, sizeof(err)));
    curl_easy_cleanup(h);
}

static void close_all(hk_janus_t *j);

/* After hk_janus_free: closes the handles once no work item uses the struct any more. */
static void maybe_close(hk_janus_t *j)
{
    if (j->freed && !j->closed && !j->ka_busy && (!j->leaving || j->ended)) {
        j->closed = true;
        close_all(j);
    }
}

static void ka_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    hk_janus_t *j = w->data;
    j->ka_busy = false;
    maybe_close(j); /* hk_janus_free may have waited for this work */
}

static void keepalive_timer_cb(uv_timer_t *t)
{
    hk_janus_t *j = t->data;
    if (j->ka_busy || j->leaving)
        return;
    j->ka_work.data = j;
    j->ka_busy = uv_queue_work(j->loop, &j->ka_work, ka_work_cb, ka_after_cb) == 0;
}

static void leave_work_cb(uv_work_t *w)
{
    hk_janus_t *j = w->data;
    atomic_store(&j->stop_poll, true);
    if (j->poll_started)
        pthread_join(j->poll_thread, NULL); /* its transfer aborts within about a second */
    uint64_t sid = j->session_id, hid = j->handle_id; /* the poll thread is gone */
    if (!sid)
        return;
    CURL *h = curl_easy_init();
    if (!h)
        return;
    char url[1400], hurl[1500], err[300];
    snprintf(url, sizeof(url), "%s/%llu", j->url, (unsigned long long)sid);
    snprintf(hurl, sizeof(hurl), "%s/%llu", url, (unsigned long long)hid);
    if (hid) {
        json_t *body = json_object();
        json_object_set_new(body, "request", json_string("leave"));
        json_t *msg = req("message");
        json_object_set_new(msg, "body", body);
        json_decref(janus_call(h, hurl, msg, NULL, err, sizeof(err)));
        json_decref(janus_call(h, hurl, req("detach"), NULL, err, sizeof(err)));
    }
    json_t *o = janus_call(h, url, req("destroy"), NULL, err, sizeof(err));
    if (!o)
        hk_log_warn("janus", "op=destroy session=%llu err=\"%s\"", (unsigned long long)sid, err);
    else
        hk_log_info("janus", "op=left room=%s session=%llu destroyed=true", j->room,
                    (unsigned long long)sid);
    json_decref(o);
    curl_easy_cleanup(h);
}

static void leave_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    hk_janus_t *j = w->data;
    j->ended = true;
    if (j->freed) { /* freed while leaving: nobody to tell */
        maybe_close(j);
        return;
    }
    if (j->cb.ended_cb)
        j->cb.ended_cb(j->data, j->leave_status[0] ? j->leave_status : "completed",
                       j->leave_reason);
}

void hk_janus_leave(hk_janus_t *j, const char *reason)
{
    if (j->leaving)
        return;
    j->leaving = true;
    if (!j->leave_status[0])
        snprintf(j->leave_status, sizeof(j->leave_status), "completed");
    snprintf(j->leave_reason, sizeof(j->leave_reason), "%s", reason ? reason : "stopped");
    uv_timer_stop(&j->send_timer);
    uv_timer_stop(&j->alone_timer);
    uv_timer_stop(&j->max_timer);
    uv_timer_stop(&j->keepalive_timer);
    uv_udp_recv_stop(&j->udp);
    hk_log_info("janus", "op=leave room=%s status=%s reason=\"%s\" rx_packets=%llu", j->room,
                j->leave_status, j->leave_reason, (unsigned long long)j->rx_packets);
    j->leave_work.data = j;
    if (uv_queue_work(j->loop, &j->leave_work, leave_work_cb, leave_after_cb) != 0) {
        leave_work_cb(&j->leave_work); /* no thread pool: do it here */
        leave_after_cb(&j->leave_work, 0);
    }
}

/* ---- start / free ---- */

/* The local address that reaches the Janus host (what we declare for RTP). */
static int local_ip_for(const char *url, char *out, size_t outlen)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        size_t hl = strlen(host);
        if (hl > 2 && host[0] == '[') { /* IPv6 literal */
            memmove(host, host + 1, hl - 2);
            host[hl - 2] = '\0';
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
        if (getaddrinfo(host, "9", &hints, &ai) == 0) {
            int fd = socket(ai->ai_family, SOCK_DGRAM, 0);
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
                getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
                const void *a = ss.ss_family == AF_INET
                                    ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                    : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
                if (inet_ntop(ss.ss_family, a, out, (socklen_t)outlen))
                    rc = 0;
            }
            if (fd >= 0)
                close(fd);
            freeaddrinfo(ai);
        }
    }
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

int hk_janus_start(uv_loop_t *loop, const hk_janus_config_t *cfg, const hk_janus_callbacks_t *cb,
                   void *data, hk_janus_t **out)
{
    hk_janus_t *j = calloc(1, sizeof(*j));
    if (!j)
        return HK_ENOMEM;
    j->loop = loop;
    j->cb = *cb;
    j->data = data;
    j->url = strdup(cfg->url);
    j->room = strdup(cfg->room);
    j->pin = cfg->pin ? strdup(cfg->pin) : NULL;
    j->display = strdup(cfg->display);
    j->alone_s = cfg->max_time_left_alone_s;
    j->max_s = cfg->max_duration_s;
    j->evs_tail = &j->evs;
    pthread_mutex_init(&j->mu, NULL);
    int err = 0;
    j->enc = opus_encoder_create(OPUS_RATE, 1, OPUS_APPLICATION_VOIP, &err);
    if (err == OPUS_OK)
        j->dec = opus_decoder_create(OPUS_RATE, 1, &err);
    int rc = HK_ENOMEM;
    if (!j->url || !j->room || !j->display || (cfg->pin && !j->pin) || err != OPUS_OK ||
        hk_resampler_new(OPUS_RATE, HK_AUDIO_ASR_RATE, &j->rs))
        goto fail;
    int16_t zeros[FRAME_48K] = {0};
    j->silence_len = opus_encode(j->enc, zeros, FRAME_48K, j->silence, sizeof(j->silence));
    uint32_t rnd[3];
    hk_random_bytes(rnd, sizeof(rnd));
    j->tx_seq = (uint16_t)rnd[0];
    j->tx_ts = rnd[1];
    j->tx_ssrc = rnd[2];
    rc = HK_EINVAL;
    if (local_ip_for(j->url, j->local_ip, sizeof(j->local_ip))) {
        hk_log_error("janus", "op=resolve url=%s err=\"cannot find a route to the Janus host\"",
                     j->url);
        goto fail;
    }
    uv_udp_init(loop, &j->udp);
    uv_timer_init(loop, &j->send_timer);
    uv_timer_init(loop, &j->alone_timer);
    uv_timer_init(loop, &j->max_timer);
    uv_timer_init(loop, &j->keepalive_timer);
    uv_async_init(loop, &j->async, async_cb);
    j->open_handles = 6;
    j->udp.data = j->send_timer.data = j->alone_timer.data = j->max_timer.data =
        j->keepalive_timer.data = j->async.data = j;
    struct sockaddr_storage ss;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICHOST | AI_PASSIVE},
                    *ai = NULL;
    int urc = getaddrinfo(j->local_ip, "0", &hints, &ai) == 0 ? 0 : UV_EINVAL;
    if (urc == 0) {
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        freeaddrinfo(ai);
        urc = uv_udp_bind(&j->udp, (const struct sockaddr *)&ss, 0);
    }
    int sl = sizeof(ss);
    if (urc == 0)
        urc = uv_udp_getsockname(&j->udp, (struct sockaddr *)&ss, &sl);
    if (urc == 0)
        urc = uv_udp_recv_start(&j->udp, udp_alloc_cb, udp_recv_cb);
    if (urc) {
        hk_log_error("janus", "op=udp_bind ip=%s err=\"%s\"", j->local_ip, uv_strerror(urc));
        j->leaving = j->ended = true;
        hk_janus_free(j);
        return urc;
    }
    j->local_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                  : ((struct sockaddr_in6 *)&ss)->sin6_port);
    uv_timer_start(&j->keepalive_timer, keepalive_timer_cb, KEEPALIVE_MS, KEEPALIVE_MS);
    if (pthread_create(&j->poll_thread, NULL, poll_main, j) != 0) {
        j->leaving = j->ended = true;
        hk_janus_free(j);
        return HK_ENOMEM;
    }
    j->poll_started = true;
    hk_log_info("janus", "op=join room=%s url=%s display=\"%s\" rtp_local=%s:%u", j->room, j->url,
                j->display, j->local_ip, j->local_port);
    *out = j;
    return 0;
fail:
    if (j->enc)
        opus_encoder_destroy(j->enc);
    if (j->dec)
        opus_decoder_destroy(j->dec);
    hk_resampler_free(j->rs);
    free(j->url);
    free(j->room);
    free(j->pin);
    free(j->display);
    pthread_mutex_destroy(&j->mu);
    free(j);
    return rc;
}

static void handle_closed_cb(uv_handle_t *h)
{
    hk_janus_t *j = h->data;
    if (--j->open_handles > 0)
        return;
    pthread_mutex_lock(&j->mu);
    ev_t *e = j->evs;
    j->evs = NULL;
    pthread_mutex_unlock(&j->mu);
    while (e) {
        ev_t *next = e->next;
        json_decref(e->o);
        free(e);
        e = next;
    }
    opus_encoder_destroy(j->enc);
    opus_decoder_destroy(j->dec);
    hk_resampler_free(j->rs);
    free(j->url);
    free(j->room);
    free(j->pin);
    free(j->display);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void hk_janus_free(hk_janus_t *j)
{
    if (!j || j->freed)
        return;
    j->freed = true;
    if (!j->leaving && j->poll_started) {
        /* Freed without leaving (the process is going away at once): the poll thread uses the
         * struct, so it stops first; its transfer aborts within about a second. */
        atomic_store(&j->stop_poll, true);
        pthread_join(j->poll_thread, NULL);
        j->poll_started = false;
    }
    maybe_close(j); /* else when the keepalive or the leave sequence is done */
}

static void close_all(hk_janus_t *j)
{
    pthread_mutex_lock(&j->mu);
    j->async_closed = true;
    pthread_mutex_unlock(&j->mu);
    uv_close((uv_handle_t *)&j->udp, handle_closed_cb);
    uv_close((uv_handle_t *)&j->send_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&j->alone_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&j->max_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&j->keepalive_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&j->async, handle_closed_cb);
}
