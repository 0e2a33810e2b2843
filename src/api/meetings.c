/* Meetings API: list, get, patch user data, delete (purge) a finished meeting. */
#include <stdio.h>
#include <string.h>
#include "api/api.h"
#include "core/json.h"

enum { CACHE_MEETINGS_LIST = 1 };

/* Parses limit and cursor; answers 422 itself on bad values. */
static int list_params(hk_ctx_t *c, long long *limit, int64_t *before)
{
    return hk_api_page_params(c, 100, 50, limit, before);
}

/* Loop thread: an unchanged listing is answered from the response cache. */
static void list_meetings_fast(hk_ctx_t *c)
{
    long long limit;
    int64_t before;
    if (list_params(c, &limit, &before))
        return; /* the 422 is the answer */
    uint64_t version = hk_store_meetings_version(c->app->store, c->user_id);
    if (hk_resp_cache_respond(&c->app->resp_cache, c->user_id, CACHE_MEETINGS_LIST, limit, before,
                              version, c->req, "application/json; charset=utf-8"))
        c->loop_fn = hk_api_answered;
}

static void list_meetings(hk_ctx_t *c)
{
    long long limit;
    int64_t before;
    if (list_params(c, &limit, &before))
        return;
    /* Read before the query: a write that lands meanwhile makes this entry stale at once. */
    uint64_t version = hk_store_meetings_version(c->app->store, c->user_id);
    int rc;
    hk_meeting_t *v = NULL;
    size_t n = 0;
    /* One extra row tells whether another page exists without a COUNT query. */
    rc = hk_store_meeting_list(c->app->store, c->user_id, (int)limit + 1, before, &v, &n);
    if (rc) {
        hk_api_store_error(c, rc, "meetings");
        return;
    }
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    json_t *arr = json_array();
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, hk_api_meeting_json(c->app, &v[i]));
    json_t *o = json_object();
    json_object_set_new(o, "meetings", arr);
    hk_api_set_next_cursor(o, n > shown, shown ? v[shown - 1].id : 0);
    hk_store_free_meetings(v, n);
    hk_api_json(c, 200, o);
    if (c->status == 200)
        hk_resp_cache_put(&c->app->resp_cache, c->user_id, CACHE_MEETINGS_LIST, limit, before,
                          version, c->resp_body, c->resp_len);
}

static void get_meeting(hk_ctx_t *c)
{
    int64_t id;
    hk_meeting_t m;
    if (hk_api_parse_id(c->req->params[0], &id)) {
        hk_api_error(c, 404, "meeting not found");
        return;
    }
    int rc = hk_store_meeting_get(c->app->store, c->user_id, id, &m);
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return;
    }
    hk_api_json(c, 200, hk_api_meeting_json(c->app, &m));
    hk_meeting_dispose(&m);
}

/* Validates the user-editable part of data; answers 400/422 itself. */
static json_t *patch_fields(hk_ctx_t *c)
{
    json_t *patch = c->body ? json_object_get(c->body, "data") : NULL;
    if (!patch || (json_is_object(patch) && json_object_size(patch) == 0)) {
        hk_api_error(c, 400,
                     "nothing to update: send {\"data\": {name, participants, languages, "
                     "notes}}");
        return NULL;
    }
    if (!json_is_object(patch)) {
        hk_api_error(c, 422, "data: must be an object");
        return NULL;
    }
    const char *key;
    json_t *val;
    char detail[200];
    json_object_foreach(patch, key, val)
    {
        char field[96];
        snprintf(field, sizeof(field), "data.%.80s", key);
        const char *s;
        json_t *arr;
        int rc;
        if (!strcmp(key, "name"))
            rc = hk_json_opt_string(patch, key, field, 500, true, &s, NULL, detail, sizeof(detail));
        else if (!strcmp(key, "notes"))
            rc = hk_json_opt_string(patch, key, field, 20000, true, &s, NULL, detail,
                                    sizeof(detail));
        else if (!strcmp(key, "participants"))
            rc = hk_json_opt_string_array(patch, key, field, 500, 200, false, &arr, NULL, detail,
                                          sizeof(detail));
        else if (!strcmp(key, "languages"))
            rc = hk_json_opt_string_array(patch, key, field, 20, 16, false, &arr, NULL, detail,
                                          sizeof(detail));
        else {
            snprintf(detail, sizeof(detail),
                     "%s: unknown field (allowed: name, participants, "
                     "languages, notes)",
                     field);
            rc = HK_EINVAL;
        }
        if (rc) {
            hk_api_error(c, 422, "%s", detail);
            return NULL;
        }
    }
    const char *extra;
    json_object_foreach(c->body, extra, val)
    {
        if (strcmp(extra, "data") != 0) {
            hk_api_error(c, 422, "%s: unknown field (send {\"data\": {...}})", extra);
            return NULL;
        }
    }
    return patch;
}

static void patch_meeting(hk_ctx_t *c)
{
    json_t *patch = patch_fields(c);
    if (!patch)
        return;
    hk_meeting_t m;
    if (hk_api_find_meeting(c, &m))
        return;
    hk_meeting_t out;
    int rc = hk_api_merge_meeting_data(c->app, &m, patch, &out);
    hk_meeting_dispose(&m);
    if (rc == HK_ESTATE) {
        hk_api_error(c, 409, "meeting data was deleted");
        return;
    }
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return;
    }
    hk_api_json(c, 200, hk_api_meeting_json(c->app, &out));
    hk_meeting_dispose(&out);
}

/* Answers DELETE for meeting *m (as read), or returns HK_ECONFLICT without answering when it was
 * written since (the caller reads it again). */
static int purge_meeting(hk_ctx_t *c, const hk_meeting_t *m)
{
    if (!hk_meeting_status_terminal(m->status)) {
        hk_api_error(c, 409, "meeting is %s; stop it before deleting its data", m->status);
        return HK_ESTATE;
    }
    if (json_is_true(json_object_get(m->data, "deleted"))) {
        hk_api_error(c, 200, "Meeting data already deleted.");
        return 0;
    }
    /* Keep only what counts usage: status history, reasons, segment count. */
    int64_t segments = 0;
    hk_store_segments_count(c->app->store, m->id, &segments);
    json_t *data = json_object();
    json_object_set_new(data, "deleted", json_true());
    json_object_set_new(data, "segment_count", json_integer(segments));
    const char *keep[] = {"completion_reason", "failure_stage", "status_transition", "languages"};
    for (size_t i = 0; i < HK_ARRAY_SIZE(keep); i++) {
        json_t *v = json_object_get(m->data, keep[i]);
        if (v)
            json_object_set(data, keep[i], v);
    }
    int rc = hk_store_meeting_purge(c->app->store, m->id, m->updated_at, data);
    json_decref(data);
    if (rc == HK_ECONFLICT)
        return rc;
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return rc;
    }
    hk_api_error(c, 200, "Meeting data deleted.");
    return 0;
}

static void delete_meeting(hk_ctx_t *c)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        hk_meeting_t m;
        if (hk_api_find_meeting(c, &m))
            return;
        int rc = purge_meeting(c, &m);
        hk_meeting_dispose(&m);
        if (rc != HK_ECONFLICT)
            return;
    }
    hk_api_error(c, 409, "meeting kept changing; try again");
}

const hk_api_route_t hk_meetings_routes[] = {
    {"GET", "/meetings", list_meetings, HK_ROUTE_USER, list_meetings_fast},
    {"GET", "/meetings/{id}", get_meeting, HK_ROUTE_USER, NULL},
    {"PATCH", "/meetings/{platform}/{native_id}", patch_meeting, HK_ROUTE_USER | HK_ROUTE_BODY,
     NULL},
    {"DELETE", "/meetings/{platform}/{native_id}", delete_meeting, HK_ROUTE_USER, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
