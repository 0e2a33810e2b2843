/* Webhooks API: the user's endpoint (PUT/GET/DELETE /user/webhook), delivery history and
 * redelivery. Delivery itself is src/webhook/delivery.c; events come from pipeline/lifecycle.c. */
#include <stdio.h>
#include <string.h>
#include "api/api.h"
#include "core/json.h"
#include "pipeline/lifecycle.h"
#include "webhook/policy.h"

#define SECRET_MAX 256

static const char *const event_types[] = {HK_EVENT_STATUS_CHANGE, HK_EVENT_COMPLETED,
                                          HK_EVENT_TRANSCRIPT_READY};

static bool known_type(const char *t)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(event_types); i++)
        if (strcmp(t, event_types[i]) == 0)
            return true;
    return false;
}

/* {webhook_url, events, has_secret, created_at, updated_at}: never the secret. */
static json_t *webhook_json(const hk_webhook_cfg_t *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "webhook_url", json_string(w->url));
    json_t *ev = json_array();
    for (size_t i = 0; i < HK_ARRAY_SIZE(event_types); i++) {
        bool on = w->events == NULL;
        size_t j;
        json_t *v;
        json_array_foreach(w->events, j, v)
        {
            const char *t = json_string_value(v);
            on = on || (t != NULL && strcmp(t, event_types[i]) == 0);
        }
        if (on)
            json_array_append_new(ev, json_string(event_types[i]));
    }
    json_object_set_new(o, "events", ev);
    json_object_set_new(o, "has_secret", json_boolean(w->secret != NULL && w->secret[0]));
    hk_json_set_time_or_null(o, "created_at", w->created_at);
    hk_json_set_time_or_null(o, "updated_at", w->updated_at);
    return o;
}

static json_t *delivery_json(const hk_delivery_t *d)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(d->id));
    json_object_set_new(o, "event_id", json_string(d->event_id));
    json_object_set_new(o, "event_type", json_string(d->event_type));
    json_object_set_new(o, "meeting_id", d->meeting_id ? json_integer(d->meeting_id) : json_null());
    /* "sending" is internal (claimed by the running server): for the user it is still pending. */
    json_object_set_new(o, "state",
                        json_string(strcmp(d->state, "sending") == 0 ? "pending" : d->state));
    json_object_set_new(o, "attempts", json_integer(d->attempts));
    json_object_set_new(o, "last_status",
                        d->last_status ? json_integer(d->last_status) : json_null());
    hk_json_set_str_or_null(o, "last_error", d->last_error);
    bool pending = strcmp(d->state, "pending") == 0 || strcmp(d->state, "sending") == 0;
    hk_json_set_time_or_null(o, "next_attempt_at", pending ? d->next_attempt_at : 0);
    hk_json_set_time_or_null(o, "delivered_at", d->delivered_at);
    hk_json_set_time_or_null(o, "event_created_at", d->event_created_at);
    hk_json_set_time_or_null(o, "created_at", d->created_at);
    hk_json_set_time_or_null(o, "updated_at", d->updated_at);
    return o;
}

/* Validates `events`: NULL (all) or a non-empty array of known types; *out is a new reference
 * without duplicates, or NULL. Answers 422 itself. */
static int parse_events(hk_ctx_t *c, json_t **out)
{
    *out = NULL;
    json_t *v = json_object_get(c->body, "events");
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 ||
        json_array_size(v) > HK_ARRAY_SIZE(event_types) * 4) {
        hk_api_error(c, 422,
                     "events: must be a non-empty array of event types (omit it for all): "
                     "meeting.status_change, meeting.completed, transcript.ready");
        return HK_EINVAL;
    }
    json_t *list = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        const char *t = json_string_value(e);
        if (t == NULL || strlen(t) != json_string_length(e) || !known_type(t)) {
            json_decref(list);
            hk_api_error(c, 422,
                         "events[%zu]: must be one of meeting.status_change, meeting.completed, "
                         "transcript.ready",
                         i);
            return HK_EINVAL;
        }
        bool dup = false;
        size_t j;
        json_t *have;
        json_array_foreach(list, j, have) dup = dup || strcmp(json_string_value(have), t) == 0;
        if (!dup)
            json_array_append_new(list, json_string(t));
    }
    *out = list;
    return 0;
}

static void put_webhook(hk_ctx_t *c)
{
    if (c->body == NULL) {
        hk_api_error(c, 422, "webhook_url: field required");
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(c->body, key, val)
    {
        if (strcmp(key, "webhook_url") && strcmp(key, "webhook_secret") && strcmp(key, "events")) {
            hk_api_error(c, 422,
                         "%.100s: unknown field (allowed: webhook_url, webhook_secret, events)",
                         key);
            return;
        }
    }
    const char *url = NULL, *secret = NULL;
    bool has_url = false, has_secret = false;
    char detail[300];
    if (hk_json_opt_string(c->body, "webhook_url", "webhook_url", HK_WEBHOOK_URL_MAX, false, &url,
                           &has_url, detail, sizeof(detail)) ||
        hk_json_opt_string(c->body, "webhook_secret", "webhook_secret", SECRET_MAX, true, &secret,
                           &has_secret, detail, sizeof(detail))) {
        hk_api_error(c, 422, "%s", detail);
        return;
    }
    if (!has_url) {
        hk_api_error(c, 422, "webhook_url: field required");
        return;
    }
    if (secret != NULL && secret[0] == '\0') {
        hk_api_error(c, 422, "webhook_secret: must be 1 to %d bytes, or null to remove it",
                     SECRET_MAX);
        return;
    }
    json_t *events = NULL;
    if (parse_events(c, &events))
        return;
    if (hk_webhook_url_check(url, c->app->cfg->webhook_allow_private, detail, sizeof(detail))) {
        json_decref(events);
        hk_api_error(c, 422, "%s", detail);
        return;
    }
    hk_webhook_cfg_t w;
    int rc = hk_store_webhook_put(c->app->store, c->user_id, url, has_secret, secret, events, &w);
    json_decref(events);
    if (rc) {
        hk_api_store_error(c, rc, "webhook");
        return;
    }
    hk_api_json(c, 200, webhook_json(&w));
    hk_webhook_cfg_dispose(&w);
}

static void get_webhook(hk_ctx_t *c)
{
    hk_webhook_cfg_t w;
    int rc = hk_store_webhook_get(c->app->store, c->user_id, &w);
    if (rc == HK_ENOTFOUND) {
        hk_api_error(c, 404, "no webhook configured (PUT /user/webhook)");
        return;
    }
    if (rc) {
        hk_api_store_error(c, rc, "webhook");
        return;
    }
    hk_api_json(c, 200, webhook_json(&w));
    hk_webhook_cfg_dispose(&w);
}

static void delete_webhook(hk_ctx_t *c)
{
    int rc = hk_store_webhook_delete(c->app->store, c->user_id);
    if (rc == HK_ENOTFOUND) {
        hk_api_error(c, 404, "no webhook configured");
        return;
    }
    if (rc) {
        hk_api_store_error(c, rc, "webhook");
        return;
    }
    hk_api_error(c, 200, "Webhook removed; its pending deliveries are marked failed.");
}

static void list_deliveries(hk_ctx_t *c)
{
    long long limit;
    int64_t before;
    if (hk_api_page_params(c, 100, 50, &limit, &before))
        return;
    hk_delivery_t *v = NULL;
    size_t n = 0;
    int rc = hk_store_delivery_list(c->app->store, c->user_id, (int)limit + 1, before, &v, &n);
    if (rc) {
        hk_api_store_error(c, rc, "deliveries");
        return;
    }
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    json_t *arr = json_array();
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, delivery_json(&v[i]));
    json_t *o = json_object();
    json_object_set_new(o, "deliveries", arr);
    hk_api_set_next_cursor(o, n > shown, shown ? v[shown - 1].id : 0);
    hk_store_free_deliveries(v, n);
    hk_api_json(c, 200, o);
}

static void redeliver(hk_ctx_t *c)
{
    int64_t id;
    if (hk_api_parse_id(c->req->params[0], &id)) {
        hk_api_error(c, 404, "delivery not found");
        return;
    }
    hk_delivery_t d;
    int rc = hk_store_delivery_redeliver(c->app->store, c->user_id, id, &d);
    if (rc == HK_ESTATE) {
        hk_api_error(c, 409, "no webhook configured (PUT /user/webhook first)");
        return;
    }
    if (rc) {
        hk_api_store_error(c, rc, "delivery");
        return;
    }
    hk_api_json(c, 202, delivery_json(&d));
    hk_delivery_dispose(&d);
}

const hk_api_route_t hk_webhooks_routes[] = {
    {"PUT", "/user/webhook", put_webhook, HK_ROUTE_USER | HK_ROUTE_BODY, NULL},
    {"GET", "/user/webhook", get_webhook, HK_ROUTE_USER, NULL},
    {"DELETE", "/user/webhook", delete_webhook, HK_ROUTE_USER, NULL},
    {"GET", "/user/webhook/deliveries", list_deliveries, HK_ROUTE_USER, NULL},
    {"POST", "/user/webhook/deliveries/{id}/redeliver", redeliver, HK_ROUTE_USER, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
