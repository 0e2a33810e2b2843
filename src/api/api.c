/* Request dispatch: route → authenticate → parse body → handler on a worker thread → respond on
 * the loop thread. Handlers never touch the connection; they fill the context's response. */
#include "api/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "pipeline/lifecycle.h"

#define JSON_CT "application/json; charset=utf-8"

int hk_api_register(hk_app_t *app, const hk_api_route_t *routes)
{
    for (const hk_api_route_t *r = routes; r->method; r++) {
        /* The router calls back with (req, ctx); dispatch happens in hk_api_on_request, so the
         * router only needs to hand back which route matched. */
        int rc = hk_router_add(app->router, r->method, r->pattern, NULL, (void *)r, r->flags);
        if (rc)
            return rc;
    }
    return 0;
}

void hk_api_raw(hk_ctx_t *c, int status, const char *content_type, char *body, size_t len)
{
    free(c->resp_body);
    c->status = status;
    c->content_type = content_type;
    c->resp_body = body;
    c->resp_len = len;
}

void hk_api_json(hk_ctx_t *c, int status, json_t *v)
{
    size_t len = 0;
    char *s = v ? hk_json_encode(v, &len) : NULL;
    json_decref(v);
    if (!s) {
        hk_api_error(c, 500, "could not encode the response");
        return;
    }
    hk_api_raw(c, status, JSON_CT, s, len);
}

void hk_api_error(hk_ctx_t *c, int status, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    /* json_string rejects invalid UTF-8 (a detail may quote client bytes): fall back to a
     * generic text rather than failing. */
    json_t *d = json_string(detail);
    json_object_set_new(o, "detail", d ? d : json_string("invalid input"));
    size_t len = 0;
    char *s = hk_json_encode(o, &len);
    json_decref(o);
    hk_api_raw(c, status, JSON_CT, s, s ? len : 0);
}

void hk_api_store_error(hk_ctx_t *c, int rc, const char *what)
{
    switch (rc) {
    case HK_ENOTFOUND:
        hk_api_error(c, 404, "%s not found", what);
        break;
    case HK_ECONFLICT:
        hk_api_error(c, 409, "%s: conflicting state, retry", what);
        break;
    case HK_ELIMIT:
        hk_api_error(c, 403, "%s: limit reached", what);
        break;
    case HK_ESTATE:
        hk_api_error(c, 409, "%s: not allowed in its current state", what);
        break;
    default:
        hk_log_error("api", "op=%s path=%s err=\"%s\" request_id=%s", what, c->req->path,
                     hk_strerror(rc), c->req->request_id);
        hk_api_error(c, 500, "internal error (request %s)", c->req->request_id);
    }
}

int hk_api_parse_id(const char *s, int64_t *out)
{
    if (!s || !*s || strlen(s) > 18)
        return HK_EINVAL;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return HK_EINVAL;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno || v <= 0)
        return HK_EINVAL;
    *out = v;
    return 0;
}

int hk_api_query_int(hk_ctx_t *c, const char *key, long long min, long long max, long long def,
                     long long *out)
{
    char buf[32];
    int rc = hk_http_query_get(c->req, key, buf, sizeof(buf));
    if (rc == HK_ENOTFOUND) {
        *out = def;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    /* digits with an optional '-': strtoll would also take leading blanks and a '+' */
    bool plain = rc == 0 && (buf[0] == '-' ? buf[1] >= '0' && buf[1] <= '9'
                                           : buf[0] >= '0' && buf[0] <= '9');
    long long v = plain ? strtoll(buf, &end, 10) : 0;
    if (!plain || errno || *end || v < min || v > max) {
        hk_api_error(c, 422, "%s: must be an integer from %lld to %lld", key, min, max);
        return HK_EINVAL;
    }
    *out = v;
    return 0;
}

int hk_api_page_params(hk_ctx_t *c, long long max_limit, long long def_limit, long long *limit,
                       int64_t *before)
{
    if (hk_api_query_int(c, "limit", 1, max_limit, def_limit, limit))
        return HK_EINVAL;
    char cur[32];
    *before = 0;
    int rc = hk_http_query_get(c->req, "cursor", cur, sizeof(cur));
    if (rc != HK_ENOTFOUND && (rc != 0 || hk_api_parse_id(cur, before))) {
        hk_api_error(c, 422, "cursor: must be a next_cursor value from a previous page");
        return HK_EINVAL;
    }
    return 0;
}

void hk_api_set_next_cursor(json_t *o, bool more, int64_t last_id)
{
    if (!more) {
        json_object_set_new(o, "next_cursor", json_null());
        return;
    }
    char next[32];
    snprintf(next, sizeof(next), "%lld", (long long)last_id);
    json_object_set_new(o, "next_cursor", json_string(next));
}

int hk_api_find_meeting(hk_ctx_t *c, hk_meeting_t *m)
{
    const char *platform = c->req->params[0], *native = c->req->params[1];
    char idbuf[32];
    int rc = hk_http_query_get(c->req, "meeting_id", idbuf, sizeof(idbuf));
    if (rc == 0) {
        int64_t id;
        if (hk_api_parse_id(idbuf, &id)) {
            hk_api_error(c, 422, "meeting_id: must be a positive integer");
            return HK_EINVAL;
        }
        rc = hk_store_meeting_get(c->app->store, c->user_id, id, m);
        if (rc == 0 && (strcmp(m->platform, platform) || strcmp(m->native_meeting_id, native))) {
            hk_meeting_dispose(m);
            rc = HK_ENOTFOUND;
        }
    } else if (rc == HK_ENOTFOUND) {
        rc = hk_store_meeting_find(c->app->store, c->user_id, platform, native, m);
    } else {
        hk_api_error(c, 422, "meeting_id: must be a positive integer");
        return HK_EINVAL;
    }
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return rc;
    }
    return 0;
}

int hk_api_merge_meeting_data(hk_app_t *app, const hk_meeting_t *m, const json_t *patch,
                              hk_meeting_t *out)
{
    hk_meeting_t fresh = {0};
    const hk_meeting_t *cur = m; /* the caller's read first, then re-reads after a conflict */
    int rc = HK_ECONFLICT;
    for (int attempt = 0; attempt < 8 && rc == HK_ECONFLICT; attempt++) {
        if (attempt > 0) {
            hk_meeting_dispose(&fresh);
            if ((rc = hk_store_meeting_get(app->store, -1, m->id, &fresh)) != 0)
                break;
            cur = &fresh;
        }
        if (json_is_true(json_object_get(cur->data, "deleted"))) {
            rc = HK_ESTATE;
            break;
        }
        json_t *data = json_deep_copy(cur->data);
        rc = data ? json_object_update(data, (json_t *)patch) : -1;
        rc = rc == 0 ? hk_store_meeting_set_data(app->store, m->id, cur->updated_at, data, out)
                     : HK_ENOMEM;
        json_decref(data);
    }
    hk_meeting_dispose(&fresh);
    return rc;
}

json_t *hk_api_meeting_json(const hk_app_t *app, const hk_meeting_t *m)
{
    HK_UNUSED(app);
    /* One rendering for the API and the webhook envelopes (pipeline/lifecycle.c). */
    return hk_meeting_public_json(m);
}

/* ---- token last-use batching ---- */

void hk_api_note_token_use(hk_app_t *app, int64_t token_id)
{
    int64_t now = hk_time_now_ms();
    pthread_mutex_lock(&app->touch_mu);
    size_t i;
    for (i = 0; i < app->ntouch; i++)
        if (app->touch[i].token_id == token_id)
            break;
    if (i < HK_ARRAY_SIZE(app->touch)) {
        /* When more distinct tokens than slots are used within one flush interval, the extra
         * ones are recorded at their next use: last_used_at is approximate by design. */
        app->touch[i].token_id = token_id;
        app->touch[i].at = now;
        if (i == app->ntouch)
            app->ntouch++;
    }
    pthread_mutex_unlock(&app->touch_mu);
}

static void flush_touches(hk_app_t *app)
{
    hk_token_touch_t batch[HK_ARRAY_SIZE(app->touch)];
    pthread_mutex_lock(&app->touch_mu);
    size_t n = app->ntouch;
    memcpy(batch, app->touch, n * sizeof(batch[0]));
    app->ntouch = 0;
    pthread_mutex_unlock(&app->touch_mu);
    for (size_t i = 0; i < n; i++)
        hk_store_token_touch(app->store, batch[i].token_id, batch[i].at);
}

static void touch_work_cb(uv_work_t *w)
{
    flush_touches(w->data);
}

static void touch_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    hk_app_t *app = w->data;
    app->touch_busy = false;
}

static void touch_timer_cb(uv_timer_t *t)
{
    hk_app_t *app = t->data;
    if (app->touch_busy)
        return;
    pthread_mutex_lock(&app->touch_mu);
    size_t n = app->ntouch;
    pthread_mutex_unlock(&app->touch_mu);
    if (n == 0)
        return;
    app->touch_work.data = app;
    if (uv_queue_work(app->loop, &app->touch_work, touch_work_cb, touch_after_cb) == 0)
        app->touch_busy = true;
}

void hk_api_start(hk_app_t *app)
{
    uv_timer_init(app->loop, &app->touch_timer);
    app->touch_timer.data = app;
    uv_timer_start(&app->touch_timer, touch_timer_cb, 1000, 1000);
}

void hk_api_stop(hk_app_t *app)
{
    uv_timer_stop(&app->touch_timer);
    uv_close((uv_handle_t *)&app->touch_timer, NULL);
    if (!app->touch_busy)
        flush_touches(app);
}

/* ---- dispatch ---- */

/* Digest of the request's user key (X-API-Key, else ?api_key=); false when there is none. */
static bool user_key_hash(hk_http_req_t *req, char hash[HK_SHA256_HEX_LEN + 1])
{
    const char *key = hk_http_req_header(req, "x-api-key");
    char qkey[256];
    if ((!key || !*key) && hk_http_query_get(req, "api_key", qkey, sizeof(qkey)) == 0)
        key = qkey;
    if (!key || !*key)
        return false;
    hk_sha256_hex(key, strlen(key), hash);
    return true;
}

int64_t hk_api_try_user(hk_ctx_t *c)
{
    char hash[HK_SHA256_HEX_LEN + 1];
    int64_t user_id = 0, token_id = 0;
    if (!user_key_hash(c->req, hash))
        return 0;
    if (!hk_auth_cache_get(&c->app->auth_cache, hash, &user_id, &token_id)) {
        uint64_t epoch = hk_auth_cache_epoch(&c->app->auth_cache);
        if (hk_store_token_lookup(c->app->store, hash, &user_id, &token_id) != 0)
            return 0;
        hk_auth_cache_put(&c->app->auth_cache, epoch, hash, user_id, token_id);
    }
    hk_api_note_token_use(c->app, token_id);
    return user_id;
}

static bool authenticate(hk_ctx_t *c)
{
    hk_http_req_t *req = c->req;
    if (c->route->flags & HK_ROUTE_ADMIN) {
        const char *key = hk_http_req_header(req, "x-admin-api-key");
        if (!key || !*key) {
            hk_api_error(c, 401, "missing X-Admin-API-Key header");
            return false;
        }
        if (!hk_ct_streq(key, c->app->admin_token)) {
            hk_api_error(c, 401, "invalid admin token");
            return false;
        }
        return true;
    }
    if ((c->route->flags & HK_ROUTE_USER) && c->user_id == 0) {
        char hash[HK_SHA256_HEX_LEN + 1];
        if (!user_key_hash(req, hash)) {
            hk_api_error(c, 401, "missing X-API-Key header");
            return false;
        }
        int64_t token_id = 0;
        uint64_t epoch = hk_auth_cache_epoch(&c->app->auth_cache);
        int rc = hk_store_token_lookup(c->app->store, hash, &c->user_id, &token_id);
        if (rc == HK_ENOTFOUND) {
            hk_api_error(c, 401, "invalid API key");
            return false;
        }
        if (rc) {
            hk_api_store_error(c, rc, "authentication");
            return false;
        }
        hk_auth_cache_put(&c->app->auth_cache, epoch, hash, c->user_id, token_id);
        hk_api_note_token_use(c->app, token_id);
    }
    return true;
}

static bool parse_body(hk_ctx_t *c)
{
    hk_http_req_t *req = c->req;
    if (!(c->route->flags & HK_ROUTE_BODY) || req->body_len == 0)
        return true;
    const char *ct = hk_http_req_header(req, "content-type");
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    if (!ct || !((n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
                 (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0))) {
        hk_api_error(c, 415, "Content-Type must be application/json");
        return false;
    }
    /* JSON is UTF-8 (RFC 8259): a charset parameter naming anything else is refused, not read as
     * UTF-8 */
    const char *cs = strcasestr(ct + n, "charset=");
    if (cs) {
        cs += 8;
        if (*cs == '"')
            cs++;
        size_t m = strcspn(cs, "\"; \t");
        if (!((m == 5 && strncasecmp(cs, "utf-8", 5) == 0) ||
              (m == 4 && strncasecmp(cs, "utf8", 4) == 0))) {
            hk_api_error(c, 415, "Content-Type charset must be utf-8");
            return false;
        }
    }
    char detail[300];
    int rc = hk_json_parse_object(req->body, req->body_len, &c->body, detail, sizeof(detail));
    if (rc) {
        hk_api_error(c, rc == HK_EINVAL ? 400 : 422, "%s", detail);
        return false;
    }
    return true;
}

static void run(hk_ctx_t *c)
{
    if (authenticate(c) && parse_body(c))
        c->route->fn(c);
    if (c->status == 0 && !c->loop_fn)
        hk_api_error(c, 500, "internal error: no response (request %s)", c->req->request_id);
}

static void finish(hk_ctx_t *c)
{
    if (c->loop_fn && c->status == 0) {
        c->loop_fn(c); /* answers (or takes over) c->req itself */
        json_decref(c->body);
        free(c->resp_body);
        free(c);
        return;
    }
    hk_http_respond(c->req, c->status, c->content_type,
                    c->extra_headers[0] ? c->extra_headers : NULL, c->resp_body, c->resp_len);
    json_decref(c->body);
    free(c->resp_body);
    free(c);
}

/* Loop thread: answers from memory when the key and the response are both cached. */
static bool try_fast(hk_ctx_t *c)
{
    if (c->route->flags & HK_ROUTE_USER) {
        char hash[HK_SHA256_HEX_LEN + 1];
        int64_t token_id;
        if (!user_key_hash(c->req, hash) ||
            !hk_auth_cache_get(&c->app->auth_cache, hash, &c->user_id, &token_id))
            return false;
        hk_api_note_token_use(c->app, token_id);
    }
    c->route->fast(c);
    return c->status != 0 || c->loop_fn != NULL;
}

void hk_api_answered(hk_ctx_t *c)
{
    HK_UNUSED(c); /* the request was answered already: finish() only releases the context */
}

static void work_cb(uv_work_t *w)
{
    run(w->data);
}

static void after_work_cb(uv_work_t *w, int status)
{
    hk_ctx_t *c = w->data;
    if (status == UV_ECANCELED)
        hk_api_error(c, 503, "server is shutting down");
    finish(c);
}

static void respond_detail(hk_http_req_t *req, int status, const char *extra, const char *detail)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"detail\":\"%s\"}", detail);
    hk_http_respond(req, status, JSON_CT, extra, body, (size_t)n);
}

void hk_api_on_request(hk_http_req_t *req, void *data)
{
    hk_app_t *app = data;
    hk_route_match_t m;
    char allow[128];
    int rc = hk_router_match(app->router, req, &m, allow, sizeof(allow));
    if (rc == HK_ENOTFOUND) {
        respond_detail(req, 404, NULL, "Not Found");
        return;
    }
    if (rc == HK_ESTATE) {
        char extra[160];
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
        respond_detail(req, 405, extra, "Method Not Allowed");
        return;
    }
    if (rc) {
        respond_detail(req, 400, NULL, "malformed path");
        return;
    }
    hk_ctx_t *c = calloc(1, sizeof(*c));
    if (!c) {
        respond_detail(req, 503, NULL, "out of memory");
        return;
    }
    c->app = app;
    c->req = req;
    c->route = m.ctx;
    c->work.data = c;
    if (c->route->flags & HK_ROUTE_INLINE) {
        run(c);
        finish(c);
        return;
    }
    if (c->route->fast && try_fast(c)) {
        finish(c);
        return;
    }
    if (uv_queue_work(app->loop, &c->work, work_cb, after_work_cb) != 0) {
        hk_api_error(c, 503, "server busy");
        finish(c);
    }
}
