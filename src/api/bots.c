/* Bots API: start transcribing a meeting (POST /bots), list running bots, reconfigure, stop.
 * Platforms served: "stream" (the caller brings the audio) and "janus" (a bot process joins a
 * Janus AudioBridge room; src/bot/). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "api/api.h"
#include "bot/runner.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/jwt.h"
#include "core/timeutil.h"
#include "pipeline/lifecycle.h"

static const char *const served_platforms[] = {"stream", "janus"};
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

/* Janus rooms are numbered. Janus' API carries them as JSON integers, which jansson (Janus' and
 * ours) holds as signed 64-bit: 1 .. 2^63-1 (a larger one would be sent negative). */
static bool janus_room_valid(const char *s)
{
    if (!*s || strlen(s) > 19 || *s == '0')
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    return errno == 0 && v > 0 && v <= (unsigned long long)INT64_MAX;
}

/* The Janus HTTP API base URL: http(s)://host[:port][/path], no spaces, quotes or controls. */
static bool janus_url_valid(const char *u)
{
    size_t skip = strncasecmp(u, "http://", 7) == 0    ? 7
                  : strncasecmp(u, "https://", 8) == 0 ? 8
                                                       : 0;
    if (skip == 0 || u[skip] == '\0' || u[skip] == '/')
        return false;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' || *p == '<' || *p == '>')
            return false;
    return true;
}

/* Reads body.automatic_leave (optional) over the defaults. Answers 422 on failure. */
static int automatic_leave(hk_ctx_t *c, json_t **out)
{
    long long wait_s = 300, alone_s = 60, max_s = c->app->cfg->max_meeting_duration_s;
    json_t *al = NULL;
    char detail[200];
    if (hk_json_opt_object(c->body, "automatic_leave", "automatic_leave", &al, detail,
                           sizeof(detail)) ||
        (al &&
         (hk_json_opt_int(al, "max_wait_for_admission_s",
                          "automatic_leave.max_wait_for_admission_s", 1, 86400, &wait_s, NULL,
                          detail, sizeof(detail)) ||
          hk_json_opt_int(al, "max_time_left_alone_s", "automatic_leave.max_time_left_alone_s", 1,
                          86400, &alone_s, NULL, detail, sizeof(detail)) ||
          hk_json_opt_int(al, "max_duration_s", "automatic_leave.max_duration_s", 1,
                          c->app->cfg->max_meeting_duration_s, &max_s, NULL, detail,
                          sizeof(detail))))) {
        hk_api_error(c, 422, "%s", detail);
        return HK_EINVAL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "max_wait_for_admission_s", json_integer(wait_s));
    json_object_set_new(o, "max_time_left_alone_s", json_integer(alone_s));
    json_object_set_new(o, "max_duration_s", json_integer(max_s));
    *out = o;
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
                     "platform: '%s' is not supported by this server yet; supported: stream, janus",
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
    bool janus = strcmp(platform, "janus") == 0;
    json_t *leave = NULL;
    if (janus) {
        if (!janus_room_valid(native)) {
            hk_api_error(c, 422,
                         "native_meeting_id: must be the numeric id of the Janus AudioBridge room");
            return;
        }
        if (!meeting_url || !janus_url_valid(meeting_url)) {
            hk_api_error(c, 422, "meeting_url: %s",
                         meeting_url ? "must be the http(s) URL of the Janus HTTP API, e.g. "
                                       "http://127.0.0.1:8088/janus"
                                     : "field required (the Janus HTTP API URL)");
            return;
        }
        if (automatic_leave(c, &leave))
            return;
        if (!c->app->bots || hk_bot_runner_reserve(c->app->bots) != 0) {
            json_decref(leave);
            hk_api_error(c, 503,
                         "this server runs its maximum number of bots (max_bots=%d); "
                         "try again later",
                         c->app->cfg->max_bots);
            return;
        }
    }

    hk_user_t u;
    int rc = hk_store_user_get(c->app->store, c->user_id, &u);
    if (rc) {
        if (janus) {
            hk_bot_runner_release(c->app->bots);
            json_decref(leave);
        }
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
    if (rc && janus) {
        hk_bot_runner_release(c->app->bots);
        json_decref(leave);
    }
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
    if (janus) {
        /* The bot gets the token; the caller does not need it (protocols.md section 3). */
        json_t *bc = json_object();
        json_object_set_new(bc, "meeting_id", json_integer(m.id));
        json_object_set_new(bc, "platform", json_string("janus"));
        json_object_set_new(bc, "native_meeting_id", json_string(native));
        json_object_set_new(bc, "meeting_url", json_string(meeting_url));
        hk_json_set_str_or_null(bc, "passcode", passcode);
        json_object_set_new(bc, "bot_name", json_string(bot_name ? bot_name : "hark"));
        json_object_set_new(bc, "language", json_string(language ? language : "en"));
        json_object_set_new(bc, "task", json_string(task ? task : "transcribe"));
        hk_json_set_str_or_null(bc, "token", tok);
        json_object_set_new(bc, "ingest_url", json_string(c->app->ingest_url));
        json_object_set_new(bc, "automatic_leave", leave);
        int64_t id = m.id;
        bool minted = tok != NULL;
        hk_meeting_dispose(&m);
        free(tok);
        if (!minted || hk_bot_runner_start(c->app->bots, id, bc) != 0) {
            json_decref(bc);
            json_decref(o);
            if (!minted)
                hk_bot_runner_release(c->app->bots);
            /* (hk_bot_runner_start releases the reservation itself when it fails.) The meeting
             * must not stay requested. */
            hk_meeting_t f;
            if (hk_lifecycle_transition(c->app->store, id, "failed", "bot_crashed",
                                        HK_SOURCE_SYSTEM, &f) == 0)
                hk_meeting_dispose(&f);
            hk_api_error(c, 500, "could not start the bot");
            return;
        }
        json_decref(bc);
        hk_api_json(c, 201, o);
        return;
    }
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
        int pid = c->app->bots ? hk_bot_runner_pid(c->app->bots, v[i].id) : -1;
        if (pid > 0)
            json_object_set_new(o, "pid", json_integer(pid));
        else
            json_object_set_new(o, "pid", json_null());
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
    const char *key;
    json_t *val;
    json_object_foreach(c->body, key, val)
    {
        if (strcmp(key, "language") != 0 && strcmp(key, "task") != 0) {
            hk_api_error(c, 422, "%.80s: unknown field (allowed: language, task)", key);
            return;
        }
    }
    if (check_language_task(c, &language, &task))
        return;
    if (!language && !task) {
        hk_api_error(c, 400, "nothing to change: send language and/or task");
        return;
    }
    hk_meeting_t m;
    if (hk_api_find_meeting(c, &m))
        return;
    if (strcmp(m.status, "active") != 0) {
        hk_api_error(c, 409, "meeting is %s, not active", m.status);
        hk_meeting_dispose(&m);
        return;
    }
    /* Recorded now; the live pipeline picks the new settings up for its next session. */
    json_t *patch = json_object();
    if (language) {
        json_t *langs = json_array();
        json_array_append_new(langs, json_string(language));
        json_object_set_new(patch, "languages", langs);
    }
    int rc = hk_api_merge_meeting_data(c->app, &m, patch, NULL);
    json_decref(patch);
    if (rc == 0 && c->app->bots && hk_bot_runner_pid(c->app->bots, m.id) >= 0) {
        /* The bot starts a new audio session with the new settings. */
        json_t *cmd = json_object();
        json_object_set_new(cmd, "type", json_string("command"));
        json_object_set_new(cmd, "action", json_string("reconfigure"));
        if (language)
            json_object_set_new(cmd, "language", json_string(language));
        if (task)
            json_object_set_new(cmd, "task", json_string(task));
        size_t len;
        char *s = hk_json_encode(cmd, &len);
        json_decref(cmd);
        if (s)
            hk_bot_runner_command(c->app->bots, m.id, s);
        free(s);
    }
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
    /* A meeting with a bot here goes to stopping; the bot leaves, flushes and exits, and its
     * exit completes the meeting. Without one (stream, or a bot already gone) it completes now. */
    bool bot = c->app->bots && hk_bot_runner_pid(c->app->bots, id) >= 0;
    int rc = hk_lifecycle_transition(c->app->store, id, bot ? "stopping" : "completed", "stopped",
                                     HK_SOURCE_USER, &m);
    if (rc == 0 && bot)
        hk_bot_runner_stop(c->app->bots, id);
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
