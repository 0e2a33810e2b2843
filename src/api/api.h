/* The REST layer: application context, request dispatch (auth, body parsing, worker threads) and
 * the helpers every resource file (admin, bots, meetings, ops, webhooks) uses to answer. */
#ifndef HK_API_H
#define HK_API_H

#include <pthread.h>
#include <uv.h>
#include <jansson.h>
#include "core/config.h"
#include "net/http.h"
#include "net/router.h"
#include "store/store.h"
#include "api/cache.h"

typedef struct hk_metrics_s hk_metrics_t;
typedef struct hk_bus_s hk_bus_t;
typedef struct hk_collector_s hk_collector_t;
typedef struct hk_asr_engine_s hk_asr_engine_t;

typedef struct {
    int64_t token_id, at;
} hk_token_touch_t;

/* Shared application state. Fields are set at start-up on the main thread and read-only after,
 * except where noted. */
typedef struct hk_app_s {
    uv_loop_t *loop;
    const hk_config_t *cfg;
    hk_store_t *store;
    hk_router_t *router;
    hk_http_server_t *http;
    hk_metrics_t *metrics; /* loop thread only */
    char *admin_token;     /* owned */
    char *token_secret;    /* owned; signs meeting tokens */
    char public_url[256];  /* "http://127.0.0.1:8056", no trailing slash */
    char ingest_url[300];  /* "ws://…/ws/audio" */
    /* Token last-use times, collected by request threads and written in batches. */
    pthread_mutex_t touch_mu;
    hk_token_touch_t touch[256];
    size_t ntouch;
    uv_timer_t touch_timer; /* loop thread */
    uv_work_t touch_work;
    bool touch_busy; /* loop thread */
    hk_auth_cache_t auth_cache;
    hk_resp_cache_t resp_cache;
    /* The live pipeline's segments of a meeting (hk_collector_snapshot's contract), merged into
     * GET /transcripts: a live segment replaces the stored one with the same segment_id. NULL
     * while nothing provides them. Called on worker threads. Fills *out with n segments (caller
     * frees with hk_store_free_segments) and *completed with NULL or n flags (caller frees). */
    int (*live_segments)(struct hk_app_s *app, int64_t meeting_id, hk_segment_t **out,
                         bool **completed, size_t *n);
    hk_bus_t *bus;                 /* meeting events → /ws subscribers and ingest sessions */
    hk_collector_t *collector;     /* live transcripts (loop thread; snapshots from any thread) */
    hk_asr_engine_t *asr;          /* the recogniser pool; NULL when disabled */
    struct hk_bot_runner_s *bots;  /* meeting bots (child processes); loop thread + its API */
    struct hk_webhook_s *webhooks; /* webhook delivery engine, for its counters (loop thread) */
} hk_app_t;

enum {
    HK_ROUTE_PUBLIC = 0,
    HK_ROUTE_USER = 1 << 0,  /* needs X-API-Key (or ?api_key=) */
    HK_ROUTE_ADMIN = 1 << 1, /* needs X-Admin-API-Key */
    HK_ROUTE_BODY = 1 << 2,  /* takes a JSON object body */
    HK_ROUTE_INLINE = 1 << 3 /* cheap and non-blocking: runs on the loop thread */
};

/* One request in the hands of a handler. Handlers run on a worker thread (or on the loop thread
 * for HK_ROUTE_INLINE routes) and must set a response through the hk_api_* answer helpers. */
typedef struct hk_ctx_s {
    hk_app_t *app;
    hk_http_req_t *req; /* read-only for handlers */
    int64_t user_id;    /* the authenticated user, for HK_ROUTE_USER routes */
    json_t *body;       /* the parsed object for HK_ROUTE_BODY routes with a body, else NULL */
    /* response */
    int status;
    const char *content_type;
    char *resp_body; /* malloc'd */
    size_t resp_len;
    char extra_headers[256];
    uv_work_t work;
    const struct hk_api_route_s *route;
    /* When a handler sets this, it runs on the loop thread after the handler instead of the
     * response being sent, and must answer c->req itself (respond, or take the connection over
     * for a WebSocket). */
    void (*loop_fn)(struct hk_ctx_s *c);
} hk_ctx_t;

typedef void (*hk_handler_fn)(hk_ctx_t *c);

typedef struct hk_api_route_s {
    const char *method;
    const char *pattern;
    hk_handler_fn fn;
    unsigned flags;
    /* Optional, loop thread: tries to answer from memory (caches) before the request goes to a
     * worker. Runs only when authentication resolved from memory too. Must not block; leaves
     * c->status 0 when it cannot answer. */
    hk_handler_fn fast;
} hk_api_route_t;

/* A loop_fn for handlers that already answered c->req themselves (e.g. from a cache). */
void hk_api_answered(hk_ctx_t *c);

/* Registers a table of routes (terminated by a {NULL} entry) with the app's router. */
int hk_api_register(hk_app_t *app, const hk_api_route_t *routes);

/* The http server's request callback: routes, authenticates, parses, and runs the handler. */
void hk_api_on_request(hk_http_req_t *req, void *data);

/* Answer helpers. hk_api_json steals `v`. hk_api_error formats {"detail": ...}. */
void hk_api_json(hk_ctx_t *c, int status, json_t *v);
void hk_api_error(hk_ctx_t *c, int status, const char *fmt, ...) HK_PRINTF(3, 4);
void hk_api_raw(hk_ctx_t *c, int status, const char *content_type, char *body, size_t len);
/* Maps a store/lifecycle error to a response (404, 409, 403, 500 ...). */
void hk_api_store_error(hk_ctx_t *c, int rc, const char *what);

/* Parses query parameter `key` as an integer in [min,max]; absent → def. On a bad value answers
 * 422 naming the parameter and returns HK_EINVAL. */
int hk_api_query_int(hk_ctx_t *c, const char *key, long long min, long long max, long long def,
                     long long *out);

/* Cursor pagination (newest first, the cursor is the last id shown): parses ?limit (1..max_limit,
 * default def_limit) and ?cursor; answers 422 naming the parameter and returns HK_EINVAL on a bad
 * value. hk_api_set_next_cursor sets "next_cursor" to the id as a string, or null when !more. */
int hk_api_page_params(hk_ctx_t *c, long long max_limit, long long def_limit, long long *limit,
                       int64_t *before);
void hk_api_set_next_cursor(json_t *o, bool more, int64_t last_id);

/* Parses a path parameter as a positive int64 id; HK_EINVAL when it is not one. */
int hk_api_parse_id(const char *s, int64_t *out);

/* Finds the meeting named by {platform}/{native_id} (and ?meeting_id=) for the request's user.
 * On failure answers 404/422 itself and returns non-zero. */
int hk_api_find_meeting(hk_ctx_t *c, hk_meeting_t *m);

/*
 * Sets the top-level keys of `patch` in meeting m's data (m: the meeting as the caller read it),
 * against the data as stored: a status transition (or another change) written since is kept, not
 * overwritten (the write is a compare-and-set on updated_at; on a conflict the meeting is read
 * again and the patch re-applied). HK_ESTATE when the meeting's data was deleted. Fills *out
 * (may be NULL).
 */
int hk_api_merge_meeting_data(hk_app_t *app, const hk_meeting_t *m, const json_t *patch,
                              hk_meeting_t *out);

/* The public JSON form of a meeting. New reference. */
json_t *hk_api_meeting_json(const hk_app_t *app, const hk_meeting_t *m);

/* The user of the request's API key (X-API-Key or ?api_key=), or 0 when there is none or it is
 * invalid; for routes that must answer auth failures their own way (WebSockets). Worker thread. */
int64_t hk_api_try_user(hk_ctx_t *c);

/* Records that a token was used now (written to the store within about a second). */
void hk_api_note_token_use(hk_app_t *app, int64_t token_id);

/* Starts the batch writer timer. Loop thread. */
void hk_api_start(hk_app_t *app);
/* Stops timers and flushes pending token uses synchronously. Loop thread, at shutdown. */
void hk_api_stop(hk_app_t *app);

/* Route tables of each resource file. */
extern const hk_api_route_t hk_admin_routes[];
extern const hk_api_route_t hk_analytics_routes[];
extern const hk_api_route_t hk_web_routes[];
extern const hk_api_route_t hk_bots_routes[];
extern const hk_api_route_t hk_meetings_routes[];
extern const hk_api_route_t hk_ops_routes[];
extern const hk_api_route_t hk_transcripts_routes[];
extern const hk_api_route_t hk_webhooks_routes[];
extern const hk_api_route_t hk_ws_routes[];

/* Metrics (ops.c). */
hk_metrics_t *hk_metrics_new(void);
void hk_metrics_free(hk_metrics_t *m);
void hk_api_on_response(const hk_http_req_t *req, int status, size_t bytes, uint64_t latency_ns,
                        void *data);

#endif
