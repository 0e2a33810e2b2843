/* Bots API: start transcribing a meeting (POST /bots), list running bots, reconfigure, stop.
 * Only the "stream" platform (the caller brings the audio) is served in this version. */
#include <string.h>
#include "api/api.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/jwt.h"
#include "core/timeutil.h"
#include "pipeline/lifecycle.h"

static const char *const served_platforms[] = {"stream"};
static const char *const known_platforms[] = {"stream",      "janus", "sip", "upload",
                                              "google_meet", "teams", "zoom"};
static const char *const languages[] = {"en"};
static const char *const tasks[] = {"transcribe"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static bool native_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 256)
        return false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("._:@-", ch)))
            return false;
    }
    return true;
}

/* Validates language/task (shared by POST /bots and PUT config). Answers 422 on failure. */
static int check_language_task(hk_ctx_t *c, const char **language, const char **task)
{
    char detail[200];
    if (hk_json_opt_string(c->body, "language", "language", 16, true, language, NULL, detail,
                           sizeof(detail)) ||
        hk_json_opt_string(c->body, "task", "task", 32, true, task, NULL, detail, sizeof(detail))) {
        hk_api_error(c, 422, "%s", detail);
        return HK_EINVAL;
    }
    if (*language && !in_list(*language, languages, HK_ARRAY_SIZE(languages))) {
        hk_api_error(c, 422,
                     "language: '%s' is not supported by this server's engine; "
                     "supported: en",
                     *language);
        return HK_EINVAL;
    }
    if (*task && !in_list(*task, tasks, HK_ARRAY_SIZE(tasks))) {
        hk_api_error(c, 422, "task: '%s' is not supported; supported: transcribe", *task);
        return HK_EINVAL;
    }
    return 0;
}

/* Mints the meeting token of protocols.md section 1. */
static char *meeting_token(hk_app_t *app, const hk_meeting_t *m)
{
    int64_t now = hk_time_now_ms() / 1000;
    char jti[40];
    if (hk_random_token("", 16, jti, sizeof(jti)))
        return NULL;
    json_t *cl = json_object();
    json_object_set_new(cl, "meeting_id", json_integer(m->id));
    json_object_set_new(cl, "user_id", json_integer(m->user_id));
    json_object_set_new(cl, "platform", json_string(m->platform));
    json_object_set_new(cl, "native_meeting_id", json_string(m->native_meeting_id));
    json_object_set_new(cl, "scope", json_string("transcribe:write"));
    json_object_set_new(cl, "iss", json_string("hark"));
    json_object_set_new(cl, "aud", json_string("hark-ingest"));
    json_object_set_new(cl, "iat", json_integer(now));
    /* The meeting's longest life plus an hour of margin for reconnects and late flushes. */
    json_object_set_new(cl, "exp", json_integer(now + app->cfg->max_meeting_duration_s + 3600));
    json_object_set_new(cl, "jti", json_string(jti));
    char *tok = NULL;
    hk_jwt_mint(app->token_secret, cl, &tok);
    json_decref(cl);
    return tok;
}

static void create_bot(hk_ctx_t *c)
{
    if (!c->body) {
        hk_api_error(c, 422, "platform: field required");
        return;
    }
    const char *platform = NULL, *native = NULL, *language = NULL, *task = NULL;
    const char *bot_name = NULL, *meeting_url = NULL, *passcode = NULL;
    bool has_platform = false, has_native = false;
    char detail[200];
    if (hk_json_opt_string(c->body, "platform", "platform", 32, false, &platform, &has_platform,
                           detail, sizeof(detail)) ||
        hk_json_opt_string(c->body, "native_meeting_id", "native_meeting_id", 256, false, &native,
                           &has_native, detail, sizeof(detail)) ||
        hk_json_opt_string(c->body, "bot_name", "bot_name", 100, true, &bot_name, NULL, detail,
                           sizeof(detail)) ||
        hk_json_opt_string(c->body, "meeting_url", "meeting_url", 1024, true, &meeting_url, NULL,
                           detail, sizeof(detail)) ||
        hk_json_opt_string(c->body, "passcode", "passcode", 256, true, &passcode, NULL, detail,
                           sizeof(detail))) {
        hk_api_error(c, 422, "%s", detail);
        return;
    }
    if (!has_platform) {
        hk_api_error(c, 422, "platform: field required");
        return;
    }
    if (!in_list(platform, known_platforms, HK_ARRAY_SIZE(known_platforms))) {
        hk_api_error(c, 422,
                     "platform: must be one of stream, janus, sip, upload, google_meet, "
                     "teams, zoom");
        return;
    }
    if (!in_list(platform, served_platforms, HK_ARRAY_SIZE(served_platforms))) {
        hk_api_error(c, 422,
                     "platform: '%s' is not supported by this server yet; supported: stream",
                     platform);
        return;
    }
    if (!has_native || !native_id_valid(native)) {
        hk_api_error(c, 422, "native_meeting_id: %s",
                     has_native ? "must be 1 to 256 characters of A-Z a-z 0-9 . _ : @ -"
                                : "field required");
        return;
    }
    if (check_language_task(c, &language, &task))
        return;

    hk_user_t u;
    int rc = hk_store_user_get(c->app->store, c->user_id, &u);
    if (rc) {
        hk_api_store_error(c, rc, "user");
        return;
    }
    int max_active = u.max_concurrent_bots;
    hk_user_dispose(&u);

    hk_meeting_t in = {0}, m;
    in.user_id = c->user_id;
    in.platform = (char *)platform;
    in.native_meeting_id = (char *)native;
    in.status = "requested";
    in.data = hk_lifecycle_initial_data(language ? language : "en");
    in.config = json_object();
    json_object_set_new(in.config, "language", json_string(language ? language : "en"));
    json_object_set_new(in.config, "task", json_string(task ? task : "transcribe"));
    hk_json_set_str_or_null(in.config, "bot_name", bot_name ? bot_name : "hark");
    hk_json_set_str_or_null(in.config, "meeting_url", meeting_url);
    hk_json_set_str_or_null(in.config, "passcode", passcode);
    rc = hk_lifecycle_create(c->app->store, &in, max_active, &m);
    json_decref(in.data);
    json_decref(in.config);
    if (rc == HK_ECONFLICT) {
        hk_api_error(c, 409, "a meeting for %s/%s is already in progress; stop it first", platform,
                     native);
        return;
    }
    if (rc == HK_ELIMIT) {
        hk_api_error(c, 403, "max_concurrent_bots reached (%d); stop a meeting first", max_active);
        return;
    }
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return;
    }
    json_t *o = hk_api_meeting_json(c->app, &m);
    char *tok = meeting_token(c->app, &m);
    hk_meeting_dispose(&m);
    if (!tok) {
        json_decref(o);
        hk_api_error(c, 500, "could not mint the meeting token");
        return;
    }
    json_object_set_new(o, "meeting_token", json_string(tok));
    json_object_set_new(o, "ingest_url", json_string(c->app->ingest_url));
    free(tok);
    hk_api_json(c, 201, o);
}

static void bots_status(hk_ctx_t *c)
{
    hk_meeting_t *v = NULL;
    size_t n = 0;
    int rc = hk_store_meeting_list_active(c->app->store, c->user_id, &v, &n);
    if (rc) {
        hk_api_store_error(c, rc, "meetings");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "meeting_id", json_integer(v[i].id));
        json_object_set_new(o, "platform", json_string(v[i].platform));
        json_object_set_new(o, "native_meeting_id", json_string(v[i].native_meeting_id));
        json_object_set_new(o, "status", json_string(v[i].status));
        hk_json_set_time_or_null(o, "created_at", v[i].created_at);
        hk_json_set_time_or_null(o, "started_at", v[i].start_time);
        json_array_append_new(arr, o);
    }
    hk_store_free_meetings(v, n);
    json_t *o = json_object();
    json_object_set_new(o, "running_bots", arr);
    hk_api_json(c, 200, o);
}

static void reconfigure_bot(hk_ctx_t *c)
{
    const char *language = NULL, *task = NULL;
    if (!c->body || json_object_size(c->body) == 0) {
        hk_api_error(c, 400, "nothing to change: send language and/or task");
        return;
    }
    if (check_language_task(c, &language, &task))
        return;
    hk_meeting_t m;
    if (hk_api_find_meeting(c, &m))
        return;
    if (strcmp(m.status, "active") != 0) {
        hk_api_error(c, 409, "meeting is %s, not active", m.status);
        hk_meeting_dispose(&m);
        return;
    }
    /* Recorded now; the live pipeline picks the new settings up for its next session. */
    json_t *data = json_deep_copy(m.data);
    if (language) {
        json_t *langs = json_array();
        json_array_append_new(langs, json_string(language));
        json_object_set_new(data, "languages", langs);
    }
    int rc = hk_store_meeting_set_data(c->app->store, m.id, data, NULL);
    json_decref(data);
    hk_meeting_dispose(&m);
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return;
    }
    hk_api_error(c, 202, "reconfiguration accepted");
}

static void stop_bot(hk_ctx_t *c)
{
    hk_meeting_t m;
    if (hk_api_find_meeting(c, &m))
        return;
    if (hk_meeting_status_terminal(m.status)) {
        hk_api_error(c, 202, "Meeting already %s.", m.status);
        hk_meeting_dispose(&m);
        return;
    }
    int64_t id = m.id;
    hk_meeting_dispose(&m);
    /* A stream meeting has no bot to wait for: it completes at once. */
    int rc = hk_lifecycle_transition(c->app->store, id, "completed", "stopped", HK_SOURCE_USER, &m);
    if (rc == HK_ESTATE) {
        hk_api_error(c, 202, "Meeting already %s.", m.status);
        hk_meeting_dispose(&m);
        return;
    }
    if (rc) {
        hk_api_store_error(c, rc, "meeting");
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "detail", json_string("Meeting stopped."));
    json_object_set_new(o, "meeting", hk_api_meeting_json(c->app, &m));
    hk_meeting_dispose(&m);
    hk_api_json(c, 202, o);
}

const hk_api_route_t hk_bots_routes[] = {
    {"POST", "/bots", create_bot, HK_ROUTE_USER | HK_ROUTE_BODY, NULL},
    {"GET", "/bots/status", bots_status, HK_ROUTE_USER, NULL},
    {"PUT", "/bots/{platform}/{native_id}/config", reconfigure_bot, HK_ROUTE_USER | HK_ROUTE_BODY,
     NULL},
    {"DELETE", "/bots/{platform}/{native_id}", stop_bot, HK_ROUTE_USER, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
