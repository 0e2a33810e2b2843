/* GET /ws/audio: audio ingest (protocols.md section 2). One WebSocket = one audio session of one
 * meeting: config frame → token check → SERVER_READY → audio / speaker events / external segments
 * → END_OF_AUDIO. Audio goes to the ASR engine; results and external segments go to the
 * collector. Everything here runs on the loop thread except the store calls in work callbacks.
 * State machine: docs/internals/ingest.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/api.h"
#include "api/ingest.h"
#include "asr/engine.h"
#include "audio/convert.h"
#include "bot/runner.h"
#include "core/json.h"
#include "core/jwt.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "net/ws.h"
#include "pipeline/collector.h"
#include "pipeline/lifecycle.h"

typedef enum { S_CONFIG, S_VERIFYING, S_RUNNING, S_FINISHING, S_DONE } state_t;

/* Caps on client-given strings (bytes): they are kept in memory and stored with every segment. */
#define MAX_TEXT_BYTES 10000  /* a segment's text */
#define MAX_NAME_BYTES 256    /* a participant's or segment's speaker name */
#define MAX_LANGUAGE_BYTES 16 /* a segment's language tag */
#define MAX_TIME_S 10000000   /* a segment's end, seconds into its session (~115 days) */

typedef struct meeting_rt_s meeting_rt_t;
typedef struct ingest_s ingest_t;

/* Per meeting with at least one session (or a pending idle completion). Loop thread. */
struct meeting_rt_s {
    hk_app_t *app;
    int64_t meeting_id;
    int nsessions;
    int nverifying; /* sessions whose token is being checked: not in `sessions` yet */
    ingest_t *sessions;
    uv_timer_t idle;
    bool idle_armed;
    bool idle_deferred; /* the idle timeout passed while a session was verifying */
    bool ended;         /* completed (idle) or reached a final status (bus): admit no one */
    bool bot;           /* a bot meeting: its runner, not an idle timer, ends it */
    bool closing;
    hk_bus_sub_t *sub;
    uv_work_t work;
    bool working;
    int idle_rc; /* the completion's result (worker) */
    meeting_rt_t *next;
};

typedef struct {
    double start; /* as sent by the client */
    uint32_t seq;
} ext_key_t;

struct ingest_s {
    hk_app_t *app;
    hk_ws_t *ws;
    state_t state;
    char uid[130];
    bool float32;
    unsigned rate;
    char language[17];
    hk_resampler_t *rs;
    int64_t meeting_id, user_id, session_id;
    hk_meeting_t meeting; /* filled by the verify work */
    meeting_rt_t *rt;
    ingest_t *rt_next;
    ingest_t *all_next;
    hk_live_t *live;
    hk_asr_session_t *asr;
    bool external;
    ext_key_t *ext;
    size_t next_ext, ext_cap;
    double offset_s; /* this session's first sample on the meeting timeline */
    bool origin_set; /* offset_s is fixed (at the first audio or timestamped message) */
    int pending;     /* work items in flight: the struct lives until 0 and the ws is gone */
    bool verifying; /* the verify work owns `work` and session_id (state may be S_DONE meanwhile) */
    meeting_rt_t *vrt; /* while verifying: the meeting it counts in (nverifying) */
    bool ws_gone;
    bool session_ended;
    uv_work_t work;
    int work_rc;
    char work_err[160];
    int16_t *pcm;
    size_t pcm_cap;
    uint64_t dropped_samples;
};

static meeting_rt_t *rts; /* loop thread */
static ingest_t *ingests; /* every ingest connection not yet freed */
static size_t ningests;
static bool shutting_down;

/* A reply to the client: WhisperLive puts the session's uid first in every one. */
static json_t *reply_new(const ingest_t *in)
{
    json_t *o = json_object();
    json_object_set_new(o, "uid", json_string(in->uid));
    return o;
}

/* Encodes and sends a reply; takes o. */
static void send_json(ingest_t *in, json_t *o)
{
    size_t len;
    char *s = hk_json_encode(o, &len);
    json_decref(o);
    if (s && in->ws && hk_ws_is_open(in->ws))
        hk_ws_send_text(in->ws, s, len);
    free(s);
}

static void send_status(ingest_t *in, const char *status, const char *message)
{
    json_t *o = reply_new(in);
    json_object_set_new(o, "status", json_string(status));
    hk_json_set_str_or_null(o, "message", message);
    send_json(in, o);
}

/* Logs why the session is refused and tells the client with an ERROR frame. */
static void report_reject(ingest_t *in, const char *message)
{
    hk_log_info("ingest", "meeting_id=%lld uid=%s op=reject reason=\"%s\"",
                (long long)in->meeting_id, in->uid[0] ? in->uid : "-", message);
    send_status(in, "ERROR", message);
}

/* Ends the session with an ERROR frame and a close; nothing else is affected. */
static void fail(ingest_t *in, uint16_t code, const char *message)
{
    report_reject(in, message);
    in->state = S_DONE;
    if (in->ws)
        hk_ws_close(in->ws, code, message);
}

static void maybe_free(ingest_t *in)
{
    if (!in->ws_gone || in->pending > 0)
        return;
    for (ingest_t **pp = &ingests; *pp; pp = &(*pp)->all_next) {
        if (*pp == in) {
            *pp = in->all_next;
            break;
        }
    }
    ningests--;
    hk_meeting_dispose(&in->meeting);
    hk_resampler_free(in->rs);
    free(in->ext);
    free(in->pcm);
    free(in);
}

/* ---- per-meeting runtime: session count, idle completion, reaction to a stop ---- */

static void rt_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void rt_release_if_idle(meeting_rt_t *rt)
{
    if (rt->nsessions > 0 || rt->nverifying > 0 || rt->idle_armed || rt->working || rt->closing)
        return;
    for (meeting_rt_t **pp = &rts; *pp; pp = &(*pp)->next) {
        if (*pp == rt) {
            *pp = rt->next;
            break;
        }
    }
    hk_bus_unsubscribe(rt->sub);
    rt->closing = true;
    uv_close((uv_handle_t *)&rt->idle, rt_close_cb);
}

static void idle_work_cb(uv_work_t *w)
{
    meeting_rt_t *rt = w->data;
    hk_meeting_t m;
    int rc = hk_lifecycle_transition(rt->app->store, rt->meeting_id, "completed", "stream_ended",
                                     HK_SOURCE_SYSTEM, &m);
    rt->idle_rc = rc;
    if (rc == 0 || rc == HK_ESTATE)
        hk_meeting_dispose(&m);
}

static void idle_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    meeting_rt_t *rt = w->data;
    rt->working = false;
    if (rt->idle_rc == 0)
        rt->ended = true;
    rt_release_if_idle(rt);
}

static void idle_timer_cb(uv_timer_t *t)
{
    meeting_rt_t *rt = t->data;
    rt->idle_armed = false;
    if (rt->nsessions > 0)
        return;
    if (rt->nverifying > 0) { /* decided when that session is in or refused (verify_done) */
        rt->idle_deferred = true;
        return;
    }
    if (rt->working) { /* the previous completion is still being written: look again soon */
        uv_timer_start(&rt->idle, idle_timer_cb, 100, 0);
        rt->idle_armed = true;
        return;
    }
    rt->work.data = rt;
    rt->working = uv_queue_work(rt->app->loop, &rt->work, idle_work_cb, idle_after_cb) == 0;
    rt_release_if_idle(rt);
}

/* A meeting that reached a final state ends its sessions (e.g. DELETE /bots while streaming). */
static void rt_bus_cb(hk_bus_msg_t *msg, void *data)
{
    meeting_rt_t *rt = data;
    static const char prefix[] = "{\"type\":\"meeting.status\"";
    if (msg->len < sizeof(prefix) || memcmp(msg->data, prefix, sizeof(prefix) - 1) != 0)
        return;
    json_t *o = json_loadb(msg->data, msg->len, 0, NULL);
    const char *status =
        json_string_value(json_object_get(json_object_get(o, "payload"), "status"));
    if (status && hk_meeting_status_terminal(status)) {
        rt->ended = true; /* a session still verifying is refused when its check returns */
        for (ingest_t *in = rt->sessions; in; in = in->rt_next)
            if (in->state != S_DONE)
                fail(in, HK_WS_CLOSE_NORMAL, "meeting has ended");
    }
    json_decref(o);
}

static meeting_rt_t *rt_get(hk_app_t *app, int64_t meeting_id)
{
    for (meeting_rt_t *rt = rts; rt; rt = rt->next)
        if (rt->meeting_id == meeting_id && !rt->closing)
            return rt;
    meeting_rt_t *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return NULL;
    rt->app = app;
    rt->meeting_id = meeting_id;
    uv_timer_init(app->loop, &rt->idle);
    rt->idle.data = rt;
    if (app->bus)
        hk_bus_subscribe(app->bus, meeting_id, rt_bus_cb, rt, &rt->sub);
    rt->next = rts;
    rts = rt;
    return rt;
}

static void rt_add(meeting_rt_t *rt, ingest_t *in)
{
    rt->nsessions++;
    rt->idle_deferred = false;
    if (rt->idle_armed) {
        uv_timer_stop(&rt->idle);
        rt->idle_armed = false;
    }
    in->rt = rt;
    in->rt_next = rt->sessions;
    rt->sessions = in;
}

static void rt_remove(ingest_t *in)
{
    meeting_rt_t *rt = in->rt;
    if (!rt)
        return;
    for (ingest_t **pp = &rt->sessions; *pp; pp = &(*pp)->rt_next) {
        if (*pp == in) {
            *pp = in->rt_next;
            break;
        }
    }
    in->rt = NULL;
    rt->nsessions--;
    if (shutting_down) {
        /* Not completed on shutdown: a restart may see the client reconnect. */
        rt_release_if_idle(rt);
        return;
    }
    if (rt->nsessions == 0 && !rt->bot) {
        uint64_t ms = (uint64_t)rt->app->cfg->stream_idle_timeout_ms;
        uv_timer_start(&rt->idle, idle_timer_cb, ms, 0);
        rt->idle_armed = true;
    }
}

/* ---- session end (store) ---- */

static void end_work_cb(uv_work_t *w)
{
    ingest_t *in = w->data;
    hk_store_session_end(in->app->store, in->session_id, hk_time_now_ms());
}

static void end_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    ingest_t *in = w->data;
    in->pending--;
    maybe_free(in);
}

static void end_session(ingest_t *in)
{
    if (in->session_ended || in->session_id == 0)
        return;
    in->session_ended = true;
    if (in->live) {
        hk_collector_complete_session(in->live, in->session_id);
        hk_collector_release(in->live);
        in->live = NULL;
    }
    in->work.data = in;
    if (uv_queue_work(in->app->loop, &in->work, end_work_cb, end_after_cb) == 0)
        in->pending++;
    rt_remove(in);
}

/* ---- ASR results ---- */

static void send_segment(ingest_t *in, const hk_asr_result_t *r)
{
    char start[32], end[32];
    snprintf(start, sizeof(start), "%.3f", in->offset_s + r->start_s);
    snprintf(end, sizeof(end), "%.3f", in->offset_s + r->end_s);
    json_t *seg = json_object();
    json_object_set_new(seg, "start", json_string(start));
    json_object_set_new(seg, "end", json_string(end));
    json_object_set_new(seg, "text", json_string(r->text ? r->text : ""));
    json_object_set_new(seg, "completed", json_boolean(r->kind == HK_ASR_FINAL));
    json_t *o = reply_new(in);
    json_t *arr = json_array();
    json_array_append_new(arr, seg);
    json_object_set_new(o, "segments", arr);
    send_json(in, o);
}

static void asr_result_cb(hk_asr_session_t *s, const hk_asr_result_t *r, void *user)
{
    HK_UNUSED(s);
    ingest_t *in = user;
    if (!in->live)
        return;
    hk_seg_update_t u = {
        .session_id = in->session_id,
        .seq = (uint32_t)r->seq,
        .start = in->offset_s + r->start_s,
        .end = in->offset_s + (r->end_s > r->start_s ? r->end_s : r->start_s),
        .text = r->text ? r->text : "",
        .language = in->language,
        .completed = r->kind == HK_ASR_FINAL,
    };
    hk_collector_put(in->live, &u, 1);
    send_segment(in, r);
}

static void asr_done_cb(hk_asr_session_t *s, int status, void *user)
{
    ingest_t *in = user;
    if (status)
        hk_log_warn("ingest", "meeting_id=%lld op=asr_finish err=\"%s\"", (long long)in->meeting_id,
                    hk_strerror(status));
    hk_asr_session_free(s);
    in->asr = NULL;
    end_session(in);
    in->state = S_DONE;
    if (in->ws)
        hk_ws_close(in->ws, HK_WS_CLOSE_NORMAL, "end of audio");
}

static void finish(ingest_t *in)
{
    if (in->state != S_RUNNING)
        return;
    in->state = S_FINISHING;
    if (in->asr && hk_asr_session_finish(in->asr) == 0)
        return; /* asr_done_cb closes */
    asr_done_cb(in->asr, 0, in);
}

/* ---- verification (worker) ---- */

static void verify_work_cb(uv_work_t *w)
{
    ingest_t *in = w->data;
    hk_store_t *st = in->app->store;
    hk_meeting_t m;
    int rc = hk_store_meeting_get(st, in->user_id, in->meeting_id, &m);
    if (rc) {
        snprintf(in->work_err, sizeof(in->work_err), "invalid token: meeting not found");
        in->work_rc = HK_EAUTH;
        return;
    }
    if (hk_meeting_status_terminal(m.status)) {
        snprintf(in->work_err, sizeof(in->work_err), "invalid token: meeting is %s", m.status);
        in->work_rc = HK_ESTATE;
        hk_meeting_dispose(&m);
        return;
    }
    /* A bot connects before it has joined its meeting and reports its own status; a stream
     * meeting becomes active with its first session. */
    if (strcmp(m.platform, "stream") == 0 && strcmp(m.status, "active") != 0) {
        hk_meeting_t a;
        rc = hk_lifecycle_transition(st, m.id, "active", NULL, HK_SOURCE_SYSTEM, &a);
        if (rc == 0 || rc == HK_ESTATE) {
            hk_meeting_dispose(&m);
            m = a; /* the current state either way */
        }
        if (hk_meeting_status_terminal(m.status) || strcmp(m.status, "active") != 0) {
            snprintf(in->work_err, sizeof(in->work_err), "meeting is %s", m.status);
            in->work_rc = HK_ESTATE;
            hk_meeting_dispose(&m);
            return;
        }
    }
    rc = hk_store_session_create(st, m.id, in->uid, hk_time_now_ms(), &in->session_id);
    if (rc) {
        snprintf(in->work_err, sizeof(in->work_err), "could not start the session");
        in->work_rc = rc;
        hk_meeting_dispose(&m);
        return;
    }
    in->meeting = m;
    in->work_rc = 0;
}

/* The verify work is over: the session no longer counts as starting in its meeting. */
static meeting_rt_t *verify_done(ingest_t *in)
{
    meeting_rt_t *rt = in->vrt;
    in->verifying = false;
    in->vrt = NULL;
    rt->nverifying--;
    return rt;
}

/* After a session was refused or gave up while starting: an idle completion that waited for it
 * runs now (its timeout has passed), and an unused meeting record is freed. */
static void rt_settle(meeting_rt_t *rt)
{
    if (rt->idle_deferred && rt->nsessions == 0 && rt->nverifying == 0 && !rt->idle_armed) {
        rt->idle_deferred = false;
        uv_timer_start(&rt->idle, idle_timer_cb, 0, 0);
        rt->idle_armed = true;
    }
    rt_release_if_idle(rt);
}

/* A session that will not run: no recogniser slot, its stored session (if any) ended. */
static void drop_start(ingest_t *in, meeting_rt_t *rt)
{
    hk_asr_session_free(in->asr);
    in->asr = NULL;
    end_session(in); /* no-op when no session was created */
    rt_settle(rt);
}

static void verify_after_cb(uv_work_t *w, int status)
{
    ingest_t *in = w->data;
    in->pending--;
    meeting_rt_t *rt = verify_done(in);
    if (in->ws_gone || in->state == S_DONE) { /* closed, or failed by an early frame, meanwhile */
        in->state = S_DONE;
        drop_start(in, rt);
        maybe_free(in);
        return;
    }
    if (status || in->work_rc) {
        fail(in, HK_WS_CLOSE_POLICY, in->work_err[0] ? in->work_err : "server busy");
        drop_start(in, rt);
        return;
    }
    /* The meeting was completed (idle timeout, DELETE /bots) while the token was checked: the
     * check may have read it active just before. */
    if (rt->ended || rt->working) {
        fail(in, HK_WS_CLOSE_POLICY, "meeting has ended");
        drop_start(in, rt);
        return;
    }
    hk_app_t *app = in->app;
    if (hk_collector_attach(app->collector, &in->meeting, &in->live) != 0) {
        fail(in, HK_WS_CLOSE_INTERNAL, "out of memory");
        drop_start(in, rt);
        return;
    }
    rt->bot = strcmp(in->meeting.platform, "stream") != 0;
    rt_add(rt, in);
    if (in->rate != HK_AUDIO_ASR_RATE && hk_resampler_new(in->rate, HK_AUDIO_ASR_RATE, &in->rs)) {
        fail(in, HK_WS_CLOSE_INTERNAL, "cannot resample");
        end_session(in);
        return;
    }
    in->state = S_RUNNING;
    json_t *o = reply_new(in);
    json_object_set_new(o, "message", json_string("SERVER_READY"));
    json_object_set_new(o, "backend", json_string(app->asr ? "pocketsphinx" : "external"));
    json_object_set_new(o, "session_id", json_integer(in->session_id));
    json_object_set_new(o, "meeting_id", json_integer(in->meeting_id));
    send_json(in, o);
    hk_log_info("ingest", "meeting_id=%lld session_id=%lld uid=%s op=ready rate=%u format=%s",
                (long long)in->meeting_id, (long long)in->session_id, in->uid, in->rate,
                in->float32 ? "float32" : "int16");
}

/* The session's times count from its first audio sample (protocols.md section 2), so its place
 * on the meeting timeline is fixed when that sample arrives, not when the client connected (a
 * bot connects, then joins its meeting, and only then has audio). A client that sends a
 * timestamped message (speaker event, external segments) before any audio fixes it then. */
static void fix_origin(ingest_t *in)
{
    if (in->origin_set)
        return;
    in->origin_set = true;
    int64_t t0 = hk_live_t0(in->live);
    int64_t now = hk_time_now_ms();
    in->offset_s = now > t0 ? (double)(now - t0) / 1000.0 : 0;
    hk_log_info("ingest", "meeting_id=%lld session_id=%lld op=origin offset_s=%.3f",
                (long long)in->meeting_id, (long long)in->session_id, in->offset_s);
}

/* Takes a recogniser slot (WAIT when there is none: the meeting is not touched) and a place
 * among the meeting's sessions, then checks the token's meeting on a worker (verify_*). */
static void start_verify(ingest_t *in)
{
    hk_app_t *app = in->app;
    meeting_rt_t *rt = rt_get(app, in->meeting_id);
    if (!rt) {
        fail(in, HK_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    int max = app->cfg->max_sessions_per_meeting;
    if (rt->nsessions + rt->nverifying >= max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "meeting has %d sessions already (max_sessions_per_meeting)",
                 max);
        fail(in, HK_WS_CLOSE_POLICY, msg);
        rt_settle(rt);
        return;
    }
    if (app->asr) {
        hk_asr_callbacks_t cb = {asr_result_cb, asr_done_cb};
        int rc = hk_asr_session_new(app->asr, &cb, in, &in->asr);
        if (rc == HK_ELIMIT) {
            hk_asr_stats_t st;
            hk_asr_engine_stats(app->asr, &st);
            /* WAIT carries an estimate in minutes (WhisperLive's shape). */
            json_t *o = reply_new(in);
            json_object_set_new(o, "status", json_string("WAIT"));
            json_object_set_new(o, "message", json_real(st.oldest_wait_ms / 60000.0 + 0.5));
            send_json(in, o);
            in->state = S_DONE;
            hk_ws_close(in->ws, HK_WS_CLOSE_NORMAL, "server at capacity");
            rt_settle(rt);
            return;
        }
        if (rc) {
            fail(in, HK_WS_CLOSE_INTERNAL, "recogniser unavailable");
            rt_settle(rt);
            return;
        }
    }
    rt->nverifying++;
    in->vrt = rt;
    in->verifying = true;
    in->state = S_VERIFYING;
    in->work.data = in;
    if (uv_queue_work(app->loop, &in->work, verify_work_cb, verify_after_cb) != 0) {
        verify_done(in);
        fail(in, HK_WS_CLOSE_INTERNAL, "server busy");
        drop_start(in, rt);
        return;
    }
    in->pending++;
}

/* ---- frames ---- */

static void on_config(ingest_t *in, json_t *o)
{
    const char *uid = json_string_value(json_object_get(o, "uid"));
    if (uid && strlen(uid) < sizeof(in->uid))
        snprintf(in->uid, sizeof(in->uid), "%s", uid);
    const char *token = json_string_value(json_object_get(o, "token"));
    if (!token) {
        fail(in, HK_WS_CLOSE_POLICY, "invalid token: missing");
        return;
    }
    json_t *fmt = json_object_get(o, "audio_format");
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_string_value(fmt);
        if (!f || (strcmp(f, "float32") && strcmp(f, "int16"))) {
            fail(in, HK_WS_CLOSE_POLICY, "invalid config: audio_format must be float32 or int16");
            return;
        }
        in->float32 = strcmp(f, "float32") == 0;
    }
    json_t *rate = json_object_get(o, "sample_rate");
    if (rate && !json_is_null(rate)) {
        if (!json_is_integer(rate) || json_integer_value(rate) < HK_AUDIO_RATE_MIN ||
            json_integer_value(rate) > HK_AUDIO_RATE_MAX) {
            fail(in, HK_WS_CLOSE_POLICY, "invalid config: sample_rate must be 8000..48000");
            return;
        }
        in->rate = (unsigned)json_integer_value(rate);
    }
    json_t *lang = json_object_get(o, "language");
    if (lang && !json_is_null(lang)) {
        const char *l = json_string_value(lang);
        if (!l || strcmp(l, "en") != 0) {
            fail(in, HK_WS_CLOSE_POLICY, "invalid config: language not supported (supported: en)");
            return;
        }
    }
    json_t *task = json_object_get(o, "task");
    if (task && !json_is_null(task) &&
        (!json_is_string(task) || strcmp(json_string_value(task), "transcribe") != 0)) {
        fail(in, HK_WS_CLOSE_POLICY, "invalid config: task not supported (supported: transcribe)");
        return;
    }
    json_t *claims = NULL;
    const char *reason = NULL;
    if (hk_jwt_verify(in->app->token_secret, token, "hark", "hark-ingest", hk_time_now_ms() / 1000,
                      &claims, &reason)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "invalid token: %s", reason);
        fail(in, HK_WS_CLOSE_POLICY, msg);
        return;
    }
    const char *scope = json_string_value(json_object_get(claims, "scope"));
    json_t *mid = json_object_get(claims, "meeting_id"), *uidc = json_object_get(claims, "user_id");
    if (!scope || strcmp(scope, "transcribe:write") != 0 || !json_is_integer(mid) ||
        !json_is_integer(uidc)) {
        json_decref(claims);
        fail(in, HK_WS_CLOSE_POLICY, "invalid token: wrong scope or claims");
        return;
    }
    in->meeting_id = json_integer_value(mid);
    in->user_id = json_integer_value(uidc);
    json_decref(claims);
    start_verify(in);
}

static void on_speaker(ingest_t *in, json_t *payload)
{
    const char *ev = json_string_value(json_object_get(payload, "event_type"));
    const char *name = json_string_value(json_object_get(payload, "participant_name"));
    json_t *ts = json_object_get(payload, "relative_client_timestamp_ms");
    if (!ev || !name || !json_is_number(ts) ||
        (strcmp(ev, "SPEAKER_START") && strcmp(ev, "SPEAKER_END"))) {
        fail(in, HK_WS_CLOSE_POLICY, "invalid speaker_activity payload");
        return;
    }
    if (strlen(name) > MAX_NAME_BYTES) {
        fail(in, HK_WS_CLOSE_POLICY,
             "invalid speaker_activity payload: participant_name over " HK_STR(
                 MAX_NAME_BYTES) " bytes");
        return;
    }
    fix_origin(in);
    double t = in->offset_s + json_number_value(ts) / 1000.0;
    hk_collector_speaker(in->live, name, t, strcmp(ev, "SPEAKER_START") == 0);
}

/* ---- bot status reports (protocols.md section 3) ---- */

typedef struct {
    uv_work_t work;
    hk_app_t *app;
    int64_t meeting_id;
    char status[24];
    char reason[256];
    int64_t start_ms; /* the live transcript's time origin: start_time if this makes it active */
} status_work_t;

static void status_work_cb(uv_work_t *w)
{
    status_work_t *sw = w->data;
    hk_meeting_t m;
    hk_transition_opts_t o = {.start_ms = sw->start_ms};
    int rc = hk_lifecycle_transition_ex(sw->app->store, sw->meeting_id, sw->status,
                                        sw->reason[0] ? sw->reason : NULL, HK_SOURCE_BOT, &o, &m);
    if (rc == 0 || rc == HK_ESTATE)
        hk_meeting_dispose(&m);
    if (rc == HK_ESTATE) /* e.g. "active" after the user already asked it to stop */
        hk_log_info("ingest", "meeting_id=%lld op=bot_status to=%s msg=\"not allowed now\"",
                    (long long)sw->meeting_id, sw->status);
}

static void status_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    free(w->data);
}

static void on_bot_status(ingest_t *in, json_t *o)
{
    static const char *const allowed[] = {"joining", "awaiting_admission", "active", "completed",
                                          "failed"};
    const char *st = json_string_value(json_object_get(o, "status"));
    json_t *rj = json_object_get(o, "reason");
    const char *reason = json_string_value(rj);
    bool ok = st != NULL && (!rj || json_is_null(rj) || (reason && strlen(reason) < 256));
    bool known = false;
    for (size_t i = 0; ok && i < HK_ARRAY_SIZE(allowed); i++)
        known = known || strcmp(st, allowed[i]) == 0;
    if (!ok || !known) {
        fail(in, HK_WS_CLOSE_POLICY,
             "invalid status: needs status joining|awaiting_admission|active|completed|failed "
             "and an optional reason under 256 bytes");
        return;
    }
    hk_log_info("ingest", "meeting_id=%lld session_id=%lld op=bot_status status=%s",
                (long long)in->meeting_id, (long long)in->session_id, st);
    if (hk_meeting_status_terminal(st)) {
        /* Applied by the runner when the bot has flushed its audio and exited. */
        if (in->app->bots)
            hk_bot_runner_report_final(in->app->bots, in->meeting_id, st, reason);
        return;
    }
    status_work_t *sw = calloc(1, sizeof(*sw));
    if (!sw)
        return;
    sw->app = in->app;
    sw->meeting_id = in->meeting_id;
    snprintf(sw->status, sizeof(sw->status), "%s", st);
    snprintf(sw->reason, sizeof(sw->reason), "%s", reason ? reason : "");
    sw->start_ms = in->live ? hk_live_t0(in->live) : 0;
    sw->work.data = sw;
    if (uv_queue_work(in->app->loop, &sw->work, status_work_cb, status_after_cb) != 0)
        free(sw);
}

size_t hk_ingest_send_command(int64_t meeting_id, const char *json, size_t len, void *data)
{
    HK_UNUSED(data);
    size_t n = 0;
    for (meeting_rt_t *rt = rts; rt; rt = rt->next) {
        if (rt->meeting_id != meeting_id || rt->closing)
            continue;
        for (ingest_t *in = rt->sessions; in; in = in->rt_next) {
            if (in->state == S_RUNNING && in->ws && hk_ws_is_open(in->ws)) {
                hk_ws_send_text(in->ws, json, len);
                n++;
            }
        }
    }
    return n;
}

/* The seq of an external segment identified by its start as sent; UINT32_MAX when the session
 * has more distinct segments than max_session_segments (the table grows with client input) or
 * memory runs out. Searched newest first: a growing segment is almost always the latest. */
static uint32_t ext_seq(ingest_t *in, double start)
{
    for (size_t i = in->next_ext; i-- > 0;)
        if (in->ext[i].start == start)
            return in->ext[i].seq;
    if (in->next_ext >= (size_t)in->app->cfg->max_session_segments)
        return UINT32_MAX;
    if (in->next_ext == in->ext_cap) {
        size_t ncap = in->ext_cap ? in->ext_cap * 2 : 64;
        ext_key_t *p = realloc(in->ext, ncap * sizeof(*p));
        if (!p)
            return UINT32_MAX;
        in->ext = p;
        in->ext_cap = ncap;
    }
    in->ext[in->next_ext] = (ext_key_t){start, (uint32_t)in->next_ext};
    return (uint32_t)in->next_ext++;
}

static void on_segments(ingest_t *in, json_t *arr)
{
    if (!json_is_array(arr) || json_array_size(arr) > 1000) {
        fail(in, HK_WS_CLOSE_POLICY, "invalid segments payload");
        return;
    }
    fix_origin(in);
    if (!in->external) {
        /* An external engine transcribes this session: stop our own recogniser. */
        in->external = true;
        hk_asr_session_free(in->asr);
        in->asr = NULL;
    }
    size_t n = json_array_size(arr);
    hk_seg_update_t *u = calloc(n ? n : 1, sizeof(*u));
    if (!u) {
        fail(in, HK_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(arr, i);
        json_t *st = json_object_get(s, "start"), *en = json_object_get(s, "end");
        const char *text = json_string_value(json_object_get(s, "text"));
        json_t *sp = json_object_get(s, "speaker"), *lg = json_object_get(s, "language");
        json_t *done = json_object_get(s, "completed");
        if (!json_is_number(st) || !json_is_number(en) || !text || json_number_value(st) < 0 ||
            json_number_value(en) < json_number_value(st) || json_number_value(en) > MAX_TIME_S ||
            (sp && !json_is_null(sp) && !json_is_string(sp)) ||
            (lg && !json_is_null(lg) && !json_is_string(lg)) || (done && !json_is_boolean(done)) ||
            strlen(text) > MAX_TEXT_BYTES) {
            free(u);
            fail(in, HK_WS_CLOSE_POLICY,
                 "invalid segment: needs 0 <= start <= end <= " HK_STR(MAX_TIME_S) " s, text");
            return;
        }
        if ((json_is_string(sp) && strlen(json_string_value(sp)) > MAX_NAME_BYTES) ||
            (json_is_string(lg) && strlen(json_string_value(lg)) > MAX_LANGUAGE_BYTES)) {
            free(u);
            fail(
                in, HK_WS_CLOSE_POLICY,
                "invalid segment: speaker over " HK_STR(
                    MAX_NAME_BYTES) " bytes or language over " HK_STR(MAX_LANGUAGE_BYTES) " bytes");
            return;
        }
        uint32_t seq = ext_seq(in, json_number_value(st));
        if (seq == UINT32_MAX) {
            free(u);
            fail(in, HK_WS_CLOSE_POLICY, "too many segments in one session");
            return;
        }
        u[i] = (hk_seg_update_t){
            .session_id = in->session_id,
            .seq = seq,
            .start = in->offset_s + json_number_value(st),
            .end = in->offset_s + json_number_value(en),
            .text = text,
            .language = json_string_value(lg) ? json_string_value(lg) : in->language,
            .speaker = json_string_value(sp),
            .completed = json_is_true(done),
        };
    }
    hk_collector_put(in->live, u, n);
    free(u);
}

static void on_text(hk_ws_t *ws, const char *data, size_t len)
{
    ingest_t *in = hk_ws_get_data(ws);
    if (in->state == S_DONE || in->state == S_FINISHING)
        return;
    if (in->state == S_VERIFYING) {
        fail(in, HK_WS_CLOSE_POLICY, "wait for SERVER_READY before sending");
        return;
    }
    json_t *o = json_loadb(data, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        fail(in, HK_WS_CLOSE_POLICY, "invalid JSON message");
        return;
    }
    if (in->state == S_CONFIG) {
        on_config(in, o);
        json_decref(o);
        return;
    }
    const char *type = json_string_value(json_object_get(o, "type"));
    if (type && strcmp(type, "speaker_activity") == 0)
        on_speaker(in, json_object_get(o, "payload"));
    else if (type && strcmp(type, "segments") == 0)
        on_segments(in, json_object_get(o, "segments"));
    else if (type && strcmp(type, "status") == 0 && strcmp(in->meeting.platform, "janus") == 0)
        on_bot_status(in, o);
    else if (type && strcmp(type, "session_control") == 0) {
        const char *ev = json_string_value(json_object_get(json_object_get(o, "payload"), "event"));
        if (ev && strcmp(ev, "LEAVING_MEETING") == 0)
            finish(in);
        else
            fail(in, HK_WS_CLOSE_POLICY, "unknown session_control event");
    } else {
        fail(in, HK_WS_CLOSE_POLICY, "unknown message type");
    }
    json_decref(o);
}

static void on_binary(hk_ws_t *ws, const char *data, size_t len)
{
    ingest_t *in = hk_ws_get_data(ws);
    if (in->state == S_DONE || in->state == S_FINISHING)
        return;
    if (in->state != S_RUNNING) {
        fail(in, HK_WS_CLOSE_POLICY, "audio before SERVER_READY");
        return;
    }
    if (len == 12 && memcmp(data, "END_OF_AUDIO", 12) == 0) {
        finish(in);
        return;
    }
    size_t width = in->float32 ? 4 : 2;
    if (len % width != 0) {
        fail(in, HK_WS_CLOSE_INVALID_DATA, "broken audio: frame is not whole samples");
        return;
    }
    if (len > 0)
        fix_origin(in);
    if (in->external || !in->asr)
        return; /* another engine transcribes this session, or none is configured */
    size_t n = len / width;
    size_t need = n + (in->rs ? hk_resampler_max_output(in->rs, n) : 0);
    if (need > in->pcm_cap) {
        int16_t *p = realloc(in->pcm, need * sizeof(*p));
        if (!p) {
            fail(in, HK_WS_CLOSE_INTERNAL, "out of memory");
            return;
        }
        in->pcm = p;
        in->pcm_cap = need;
    }
    if (in->float32)
        hk_audio_f32le_to_s16(data, n, in->pcm);
    else
        hk_audio_s16le_to_s16(data, n, in->pcm);
    const int16_t *pcm = in->pcm;
    size_t m = n;
    if (in->rs) {
        m = hk_resampler_process(in->rs, in->pcm, n, in->pcm + n, in->pcm_cap - n);
        pcm = in->pcm + n;
    }
    int rc = hk_asr_session_feed(in->asr, pcm, m);
    if (rc) {
        if (in->dropped_samples == 0)
            hk_log_warn("ingest",
                        "meeting_id=%lld session_id=%lld op=feed err=\"%s\" "
                        "msg=\"recogniser behind; dropping audio\"",
                        (long long)in->meeting_id, (long long)in->session_id, hk_strerror(rc));
        in->dropped_samples += m;
    }
}

/* A frame over --max-ws-message-bytes: the ERROR goes out before wslay's close 1009. */
static void on_too_big(hk_ws_t *ws, uint64_t len)
{
    ingest_t *in = hk_ws_get_data(ws);
    char msg[96];
    snprintf(msg, sizeof(msg), "message of %llu bytes is over the cap (max_ws_message_bytes %zu)",
             (unsigned long long)len, in->app->cfg->max_ws_message_bytes);
    report_reject(in, msg); /* ws.c closes with 1009 right after */
}

static void on_close(hk_ws_t *ws, uint16_t code, const char *reason)
{
    ingest_t *in = hk_ws_get_data(ws);
    bool verifying = in->verifying;
    hk_log_info("ingest",
                "meeting_id=%lld session_id=%lld op=closed code=%u reason=\"%s\" "
                "dropped_samples=%llu",
                (long long)in->meeting_id, verifying ? 0LL : (long long)in->session_id, code,
                reason, (unsigned long long)in->dropped_samples);
    in->ws = NULL;
    in->ws_gone = true;
    if (verifying)
        return; /* the verify work owns in->work and session_id; its after-callback cleans up */
    hk_asr_session_free(in->asr);
    in->asr = NULL;
    in->state = S_DONE;
    end_session(in);
    maybe_free(in);
}

void hk_ingest_accept(hk_ctx_t *c)
{
    hk_app_t *app = c->app;
    ingest_t *in = calloc(1, sizeof(*in));
    if (!in) {
        hk_http_respond(c->req, 503, "application/json; charset=utf-8", NULL,
                        "{\"detail\":\"out of memory\"}", 26);
        return;
    }
    in->app = app;
    in->rate = HK_AUDIO_ASR_RATE;
    in->float32 = true;
    snprintf(in->language, sizeof(in->language), "en");
    hk_ws_config_t wc = {
        .max_message_bytes = app->cfg->max_ws_message_bytes,
        .max_queue_bytes = app->cfg->max_ws_queue_bytes,
        .ping_interval_ms = (uint64_t)app->cfg->ws_ping_interval_ms,
        .close_timeout_ms = 2000,
        .on_text = on_text,
        .on_binary = on_binary,
        .on_close = on_close,
        .on_too_big = on_too_big,
        .data = in,
    };
    if (shutting_down) {
        free(in);
        hk_http_respond(c->req, 503, "application/json; charset=utf-8", NULL,
                        "{\"detail\":\"shutting down\"}", 26);
        return;
    }
    int rc = hk_ws_accept(c->req, &wc, &in->ws);
    if (rc) {
        free(in);
        hk_ws_reject(c->req, rc);
        return;
    }
    in->all_next = ingests;
    ingests = in;
    ningests++;
}

void hk_ingest_recover(hk_app_t *app)
{
    hk_meeting_t *v = NULL;
    size_t n = 0;
    if (hk_store_meeting_list_active(app->store, -1, &v, &n) != 0)
        return;
    size_t armed = 0;
    for (size_t i = 0; i < n; i++) {
        /* An active stream meeting left by a previous run has no session now: give its client
         * the idle timeout to reconnect, then complete it (stream_ended). */
        if (strcmp(v[i].platform, "stream") != 0 || strcmp(v[i].status, "active") != 0)
            continue;
        meeting_rt_t *rt = rt_get(app, v[i].id);
        if (!rt)
            continue;
        uv_timer_start(&rt->idle, idle_timer_cb, (uint64_t)app->cfg->stream_idle_timeout_ms, 0);
        rt->idle_armed = true;
        armed++;
    }
    hk_store_free_meetings(v, n);
    if (armed)
        hk_log_info("ingest", "op=recover active_stream_meetings=%zu idle_timeout_ms=%d", armed,
                    app->cfg->stream_idle_timeout_ms);
}

void hk_ingest_shutdown(void)
{
    shutting_down = true;
    for (ingest_t *in = ingests; in; in = in->all_next)
        if (in->ws)
            hk_ws_close(in->ws, HK_WS_CLOSE_GOING_AWAY, "server shutting down");
    for (meeting_rt_t *rt = rts, *next; rt; rt = next) {
        next = rt->next;
        if (rt->idle_armed) {
            uv_timer_stop(&rt->idle);
            rt->idle_armed = false;
        }
        rt_release_if_idle(rt);
    }
}

size_t hk_ingest_active(void)
{
    return ningests + (rts != NULL);
}

size_t hk_ingest_connections(void)
{
    return ningests;
}
