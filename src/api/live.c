/* GET /ws: live updates for clients (api.md). A client subscribes to its own meetings; every
 * bus message of a meeting is framed once (hk_ws_msg_t) and the same bytes are queued on every
 * subscribed connection. Loop thread, except the meeting lookups done in work callbacks. */
#include <stdlib.h>
#include <string.h>
#include "api/api.h"
#include "api/ingest.h"
#include "bus/bus.h"
#include "core/json.h"
#include "core/log.h"
#include "net/ws.h"
#include "pipeline/formats.h"

#define MAX_SUBS_PER_CONN 100

typedef struct live_conn_s live_conn_t;

/* One subscribed meeting: its bus subscription and the connections that follow it. */
typedef struct topic_s {
    int64_t meeting_id;
    hk_bus_sub_t *sub;
    live_conn_t **conns;
    size_t nconns, cap;
    struct topic_s *next;
} topic_t;

typedef struct {
    int64_t meeting_id;
    char *platform, *native_id;
} conn_sub_t;

struct live_conn_s {
    hk_app_t *app;
    hk_ws_t *ws;
    int64_t user_id;
    conn_sub_t *subs; /* grown on demand: an idle connection costs little */
    size_t nsubs, subs_cap;
    int pending;
    bool gone;
    live_conn_t *next; /* all connections, for shutdown */
};

typedef struct {
    uv_work_t work;
    live_conn_t *conn;
    json_t *wanted; /* [{platform, native_id}] */
    json_t *found;  /* [{id, platform, native_id}] */
    json_t *missing;
} sub_job_t;

#define MAX_CLIENT_MESSAGE 65536 /* subscribe/unsubscribe/ping messages from a client */

static topic_t *topics;
static live_conn_t *conns;
static size_t nconns_alive; /* allocated, including closed ones with work in flight */
static bool shutting_down;

static void send_json(live_conn_t *lc, json_t *o)
{
    size_t len;
    char *s = hk_json_encode(o, &len);
    json_decref(o);
    if (s && lc->ws && hk_ws_is_open(lc->ws))
        hk_ws_send_text(lc->ws, s, len);
    free(s);
}

static void send_error(live_conn_t *lc, const char *error, const char *detail)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("error"));
    json_object_set_new(o, "error", json_string(error));
    if (detail)
        json_object_set_new(o, "detail", json_string(detail));
    send_json(lc, o);
}

static void topic_cb(hk_bus_msg_t *msg, void *data)
{
    topic_t *t = data;
    if (t->nconns == 0)
        return;
    hk_ws_msg_t *m = hk_ws_msg_new(HK_WS_OP_TEXT, msg->data, msg->len);
    if (!m)
        return;
    /* Iterate over a copy: a send may close a slow connection, but on_close comes later, so the
     * list does not change during this loop. */
    for (size_t i = 0; i < t->nconns; i++)
        if (t->conns[i]->ws && hk_ws_is_open(t->conns[i]->ws))
            hk_ws_send_shared(t->conns[i]->ws, m);
    hk_ws_msg_unref(m);
}

static int topic_add(hk_app_t *app, int64_t meeting_id, live_conn_t *lc)
{
    topic_t *t;
    for (t = topics; t; t = t->next)
        if (t->meeting_id == meeting_id)
            break;
    if (!t) {
        t = calloc(1, sizeof(*t));
        if (!t || hk_bus_subscribe(app->bus, meeting_id, topic_cb, t, &t->sub) != 0) {
            free(t);
            return HK_ENOMEM;
        }
        t->meeting_id = meeting_id;
        t->next = topics;
        topics = t;
    }
    for (size_t i = 0; i < t->nconns; i++)
        if (t->conns[i] == lc)
            return 0;
    if (t->nconns == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 4;
        live_conn_t **p = realloc(t->conns, ncap * sizeof(*p));
        if (!p)
            return HK_ENOMEM;
        t->conns = p;
        t->cap = ncap;
    }
    t->conns[t->nconns++] = lc;
    return 0;
}

static void topic_remove(int64_t meeting_id, live_conn_t *lc)
{
    for (topic_t **pp = &topics; *pp; pp = &(*pp)->next) {
        topic_t *t = *pp;
        if (t->meeting_id != meeting_id)
            continue;
        for (size_t i = 0; i < t->nconns; i++) {
            if (t->conns[i] == lc) {
                t->conns[i] = t->conns[--t->nconns];
                break;
            }
        }
        if (t->nconns == 0) {
            *pp = t->next;
            hk_bus_unsubscribe(t->sub);
            free(t->conns);
            free(t);
        }
        return;
    }
}

static void conn_free_if_done(live_conn_t *lc)
{
    if (!lc->gone || lc->pending)
        return;
    nconns_alive--;
    for (size_t i = 0; i < lc->nsubs; i++) {
        free(lc->subs[i].platform);
        free(lc->subs[i].native_id);
    }
    free(lc->subs);
    free(lc);
}

/* ---- subscribe: meeting lookups on a worker ---- */

static void sub_work_cb(uv_work_t *w)
{
    sub_job_t *j = w->data;
    size_t i;
    json_t *item;
    json_array_foreach(j->wanted, i, item)
    {
        const char *platform = json_string_value(json_object_get(item, "platform"));
        const char *native = json_string_value(json_object_get(item, "native_id"));
        hk_meeting_t m;
        /* Only the user's own meetings are visible; another user's look exactly like none. */
        if (hk_store_meeting_find(j->conn->app->store, j->conn->user_id, platform, native, &m) ==
            0) {
            json_array_append_new(j->found, hk_format_meeting_ref(m.id, platform, native));
            hk_meeting_dispose(&m);
        } else {
            json_array_append(j->missing, item);
        }
    }
}

static void sub_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    sub_job_t *j = w->data;
    live_conn_t *lc = j->conn;
    lc->pending--;
    if (!lc->gone) {
        size_t i;
        json_t *item;
        json_t *ok = json_array();
        json_array_foreach(j->found, i, item)
        {
            int64_t id = json_integer_value(json_object_get(item, "id"));
            bool have = false;
            for (size_t k = 0; k < lc->nsubs && !have; k++)
                have = lc->subs[k].meeting_id == id;
            if (!have && lc->nsubs == lc->subs_cap && lc->nsubs < MAX_SUBS_PER_CONN) {
                size_t ncap = lc->subs_cap ? lc->subs_cap * 2 : 4;
                conn_sub_t *p = realloc(lc->subs, ncap * sizeof(*p));
                if (p) {
                    lc->subs = p;
                    lc->subs_cap = ncap;
                }
            }
            if (!have) {
                if (lc->nsubs >= MAX_SUBS_PER_CONN || lc->nsubs == lc->subs_cap ||
                    topic_add(lc->app, id, lc) != 0) {
                    send_error(lc, "invalid_payload", "too many subscriptions on this connection");
                    break;
                }
                conn_sub_t *s = &lc->subs[lc->nsubs++];
                s->meeting_id = id;
                s->platform = strdup(json_string_value(json_object_get(item, "platform")));
                s->native_id = strdup(json_string_value(json_object_get(item, "native_id")));
            }
            json_array_append(ok, item);
        }
        if (json_array_size(j->missing)) {
            json_t *o = json_object();
            json_object_set_new(o, "type", json_string("error"));
            json_object_set_new(o, "error", json_string("not_found"));
            json_object_set(o, "meetings", j->missing);
            send_json(lc, o);
        }
        if (json_array_size(ok)) {
            json_t *o = json_object();
            json_object_set_new(o, "type", json_string("subscribed"));
            json_object_set_new(o, "meetings", ok);
            send_json(lc, o);
        } else {
            json_decref(ok);
        }
    }
    json_decref(j->wanted);
    json_decref(j->found);
    json_decref(j->missing);
    free(j);
    conn_free_if_done(lc);
}

/* Validates [{platform, native_id}, ...]; answers invalid_payload itself. */
static json_t *meeting_list(live_conn_t *lc, json_t *msg)
{
    json_t *arr = json_object_get(msg, "meetings");
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > MAX_SUBS_PER_CONN) {
        send_error(lc, "invalid_payload", "meetings must be a non-empty array of at most 100");
        return NULL;
    }
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item)
    {
        const char *p = json_string_value(json_object_get(item, "platform"));
        const char *n = json_string_value(json_object_get(item, "native_id"));
        if (!p || !n || strlen(p) > 32 || strlen(n) > 256) {
            send_error(lc, "invalid_payload", "each meeting needs string platform and native_id");
            return NULL;
        }
    }
    return arr;
}

static void on_text(hk_ws_t *ws, const char *data, size_t len)
{
    live_conn_t *lc = hk_ws_get_data(ws);
    json_t *msg = json_loadb(data, len, 0, NULL);
    if (!json_is_object(msg)) {
        json_decref(msg);
        send_error(lc, "invalid_json", NULL);
        return;
    }
    const char *action = json_string_value(json_object_get(msg, "action"));
    if (action && strcmp(action, "ping") == 0) {
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string("pong"));
        send_json(lc, o);
    } else if (action && strcmp(action, "subscribe") == 0) {
        json_t *arr = meeting_list(lc, msg);
        sub_job_t *j = arr ? calloc(1, sizeof(*j)) : NULL;
        if (j) {
            j->conn = lc;
            j->wanted = json_incref(arr);
            j->found = json_array();
            j->missing = json_array();
            j->work.data = j;
            if (uv_queue_work(lc->app->loop, &j->work, sub_work_cb, sub_after_cb) == 0) {
                lc->pending++;
            } else {
                json_decref(j->wanted);
                json_decref(j->found);
                json_decref(j->missing);
                free(j);
                send_error(lc, "invalid_payload", "server busy");
            }
        }
    } else if (action && strcmp(action, "unsubscribe") == 0) {
        json_t *arr = meeting_list(lc, msg);
        if (arr) {
            json_t *done = json_array();
            size_t i;
            json_t *item;
            json_array_foreach(arr, i, item)
            {
                const char *p = json_string_value(json_object_get(item, "platform"));
                const char *n = json_string_value(json_object_get(item, "native_id"));
                for (size_t k = 0; k < lc->nsubs; k++) {
                    conn_sub_t *s = &lc->subs[k];
                    if (strcmp(s->platform, p) || strcmp(s->native_id, n))
                        continue;
                    topic_remove(s->meeting_id, lc);
                    json_array_append_new(done, hk_format_meeting_ref(s->meeting_id, p, n));
                    free(s->platform);
                    free(s->native_id);
                    lc->subs[k] = lc->subs[--lc->nsubs];
                    break;
                }
            }
            json_t *o = json_object();
            json_object_set_new(o, "type", json_string("unsubscribed"));
            json_object_set_new(o, "meetings", done);
            send_json(lc, o);
        }
    } else {
        send_error(lc, "unknown_action", NULL);
    }
    json_decref(msg);
}

/* A client message over MAX_CLIENT_MESSAGE: say so before the close (1009). */
static void on_too_big(hk_ws_t *ws, uint64_t len)
{
    HK_UNUSED(len);
    send_error(hk_ws_get_data(ws), "message_too_big",
               "messages to /ws are at most " HK_STR(MAX_CLIENT_MESSAGE) " bytes");
}

static void on_close(hk_ws_t *ws, uint16_t code, const char *reason)
{
    live_conn_t *lc = hk_ws_get_data(ws);
    hk_log_debug("live", "conn=%llu op=closed code=%u reason=\"%s\"",
                 (unsigned long long)hk_ws_id(ws), code, reason);
    for (size_t i = 0; i < lc->nsubs; i++)
        topic_remove(lc->subs[i].meeting_id, lc);
    for (live_conn_t **pp = &conns; *pp; pp = &(*pp)->next) {
        if (*pp == lc) {
            *pp = lc->next;
            break;
        }
    }
    lc->ws = NULL;
    lc->gone = true;
    conn_free_if_done(lc);
}

void hk_live_accept(hk_ctx_t *c)
{
    hk_app_t *app = c->app;
    live_conn_t *lc = calloc(1, sizeof(*lc));
    if (!lc) {
        hk_http_respond(c->req, 503, "application/json; charset=utf-8", NULL,
                        "{\"detail\":\"out of memory\"}", 26);
        return;
    }
    lc->app = app;
    lc->user_id = c->user_id;
    hk_ws_config_t wc = {
        .max_message_bytes = MAX_CLIENT_MESSAGE,
        .max_queue_bytes = app->cfg->max_ws_queue_bytes,
        .ping_interval_ms = (uint64_t)app->cfg->ws_ping_interval_ms,
        .on_text = on_text,
        .close_timeout_ms = 2000,
        .on_close = on_close,
        .on_too_big = on_too_big,
        .data = lc,
    };
    if (shutting_down) {
        free(lc);
        hk_http_respond(c->req, 503, "application/json; charset=utf-8", NULL,
                        "{\"detail\":\"shutting down\"}", 26);
        return;
    }
    int rc = hk_ws_accept(c->req, &wc, &lc->ws);
    if (rc) {
        free(lc);
        hk_ws_reject(c->req, rc);
        return;
    }
    lc->next = conns;
    conns = lc;
    nconns_alive++;
    if (lc->user_id == 0) {
        send_error(lc, "unauthorized", "missing or invalid API key");
        hk_ws_close(lc->ws, 4401, "unauthorized");
    }
}

void hk_ws_endpoints_shutdown(hk_app_t *app)
{
    HK_UNUSED(app);
    shutting_down = true;
    for (live_conn_t *lc = conns; lc; lc = lc->next)
        if (lc->ws)
            hk_ws_close(lc->ws, HK_WS_CLOSE_GOING_AWAY, "server shutting down");
    hk_ingest_shutdown();
}

size_t hk_ws_endpoints_connections(void)
{
    return nconns_alive + hk_ingest_connections();
}

size_t hk_ws_endpoints_active(void)
{
    return nconns_alive + hk_ingest_active();
}

/* ---- routes ---- */

static void ws_live_route(hk_ctx_t *c)
{
    c->user_id = hk_api_try_user(c); /* 0: answered with 4401 after the upgrade */
    c->loop_fn = hk_live_accept;
}

static void ws_audio_route(hk_ctx_t *c)
{
    c->loop_fn = hk_ingest_accept; /* the meeting token comes in the first frame */
}

const hk_api_route_t hk_ws_routes[] = {
    {"GET", "/ws", ws_live_route, HK_ROUTE_PUBLIC, NULL},
    {"GET", "/ws/audio", ws_audio_route, HK_ROUTE_INLINE, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
