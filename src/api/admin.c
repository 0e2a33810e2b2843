/* Admin API: users and their API tokens (X-Admin-API-Key). */
#include <string.h>
#include "api/api.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/timeutil.h"

static json_t *user_json(const hk_user_t *u)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(u->id));
    json_object_set_new(o, "email", json_string(u->email));
    hk_json_set_str_or_null(o, "name", u->name && u->name[0] ? u->name : NULL);
    json_object_set_new(o, "max_concurrent_bots", json_integer(u->max_concurrent_bots));
    json_object_set_new(o, "data", u->data ? json_incref(u->data) : json_object());
    hk_json_set_time_or_null(o, "created_at", u->created_at);
    return o;
}

/* Validates the optional user fields shared by create and update. */
static int user_fields(hk_ctx_t *c, const char **name, bool *has_name, long long *max_bots,
                       bool *has_max, json_t **data)
{
    char detail[200];
    if (hk_json_opt_string(c->body, "name", "name", 1000, true, name, has_name, detail,
                           sizeof(detail)) ||
        hk_json_opt_int(c->body, "max_concurrent_bots", "max_concurrent_bots", 0, 1000, max_bots,
                        has_max, detail, sizeof(detail)) ||
        hk_json_opt_object(c->body, "data", "data", data, detail, sizeof(detail))) {
        hk_api_error(c, 422, "%s", detail);
        return HK_EINVAL;
    }
    return 0;
}

static bool email_valid(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || !at[1] || strchr(at + 1, '@'))
        return false;
    for (const unsigned char *p = (const unsigned char *)e; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static void create_user(hk_ctx_t *c)
{
    if (!c->body) {
        hk_api_error(c, 422, "email: field required");
        return;
    }
    const char *email = NULL, *name = NULL;
    bool has_email = false, has_name = false, has_max = false;
    long long max_bots = c->app->cfg->default_max_concurrent_bots;
    json_t *data = NULL;
    char detail[200];
    if (hk_json_opt_string(c->body, "email", "email", 254, false, &email, &has_email, detail,
                           sizeof(detail))) {
        hk_api_error(c, 422, "%s", detail);
        return;
    }
    if (!has_email || !email_valid(email)) {
        hk_api_error(c, 422,
                     has_email ? "email: must be an email address" : "email: field required");
        return;
    }
    if (user_fields(c, &name, &has_name, &max_bots, &has_max, &data))
        return;
    hk_user_t u;
    bool created = false;
    int rc = hk_store_user_upsert(c->app->store, email, name, (int)max_bots, data, &u, &created);
    if (rc) {
        hk_api_store_error(c, rc, "user");
        return;
    }
    hk_api_json(c, created ? 201 : 200, user_json(&u));
    hk_user_dispose(&u);
}

static void list_users(hk_ctx_t *c)
{
    long long limit, offset;
    if (hk_api_query_int(c, "limit", 1, 1000, 100, &limit) ||
        hk_api_query_int(c, "offset", 0, 1000000000, 0, &offset))
        return;
    hk_user_t *v = NULL;
    size_t n = 0;
    int rc = hk_store_user_list(c->app->store, (int)limit, (int)offset, &v, &n);
    if (rc) {
        hk_api_store_error(c, rc, "users");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, user_json(&v[i]));
    hk_store_free_users(v, n);
    hk_api_json(c, 200, arr);
}

static json_t *user_with_tokens(hk_ctx_t *c, const hk_user_t *u)
{
    json_t *o = user_json(u);
    hk_token_t *t = NULL;
    size_t n = 0;
    json_t *arr = json_array();
    if (hk_store_token_list(c->app->store, u->id, &t, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *to = json_object();
            json_object_set_new(to, "id", json_integer(t[i].id));
            hk_json_set_time_or_null(to, "created_at", t[i].created_at);
            hk_json_set_time_or_null(to, "last_used_at", t[i].last_used_at);
            json_array_append_new(arr, to);
        }
        free(t);
    }
    json_object_set_new(o, "api_tokens", arr);
    return o;
}

/* The user named by the {id} path parameter; answers 404 itself when there is none. */
static int load_user(hk_ctx_t *c, hk_user_t *u)
{
    int64_t id;
    if (hk_api_parse_id(c->req->params[0], &id)) {
        hk_api_error(c, 404, "user not found");
        return HK_ENOTFOUND;
    }
    int rc = hk_store_user_get(c->app->store, id, u);
    if (rc)
        hk_api_store_error(c, rc, "user");
    return rc;
}

static void get_user(hk_ctx_t *c)
{
    hk_user_t u;
    if (load_user(c, &u))
        return;
    hk_api_json(c, 200, user_with_tokens(c, &u));
    hk_user_dispose(&u);
}

static void get_user_by_email(hk_ctx_t *c)
{
    hk_user_t u;
    int rc = hk_store_user_get_by_email(c->app->store, c->req->params[0], &u);
    if (rc) {
        hk_api_store_error(c, rc, "user");
        return;
    }
    hk_api_json(c, 200, user_with_tokens(c, &u));
    hk_user_dispose(&u);
}

static void update_user(hk_ctx_t *c)
{
    int64_t id;
    if (hk_api_parse_id(c->req->params[0], &id)) {
        hk_api_error(c, 404, "user not found");
        return;
    }
    if (!c->body || json_object_size(c->body) == 0) {
        hk_api_error(c, 400, "nothing to update: send name, max_concurrent_bots or data");
        return;
    }
    const char *name = NULL;
    bool has_name = false, has_max = false;
    long long max_bots = -1;
    json_t *data = NULL;
    if (user_fields(c, &name, &has_name, &max_bots, &has_max, &data))
        return;
    const char *key;
    json_t *val;
    json_object_foreach(c->body, key, val)
    {
        if (strcmp(key, "name") && strcmp(key, "max_concurrent_bots") && strcmp(key, "data")) {
            hk_api_error(c, 422, "%s: unknown field", key);
            return;
        }
    }
    /* A null name clears it: the store treats NULL as "unchanged", so pass "" and map back. */
    hk_user_t u;
    int rc = hk_store_user_update(c->app->store, id, has_name ? (name ? name : "") : NULL,
                                  has_max ? (int)max_bots : -1, data, &u);
    if (rc) {
        hk_api_store_error(c, rc, "user");
        return;
    }
    hk_api_json(c, 200, user_json(&u));
    hk_user_dispose(&u);
}

static void create_token(hk_ctx_t *c)
{
    hk_user_t u;
    if (load_user(c, &u))
        return;
    int64_t id = u.id;
    hk_user_dispose(&u);
    char token[80], hash[HK_SHA256_HEX_LEN + 1];
    if (hk_random_token("hk_", 24, token, sizeof(token))) {
        hk_api_error(c, 500, "random number generator failed");
        return;
    }
    hk_sha256_hex(token, strlen(token), hash);
    hk_token_t t;
    int rc = hk_store_token_create(c->app->store, id, hash, &t);
    if (rc) {
        hk_api_store_error(c, rc, "token");
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(t.id));
    json_object_set_new(o, "user_id", json_integer(t.user_id));
    json_object_set_new(o, "token", json_string(token));
    hk_json_set_time_or_null(o, "created_at", t.created_at);
    hk_api_json(c, 201, o);
}

static void delete_token(hk_ctx_t *c)
{
    int64_t id;
    if (hk_api_parse_id(c->req->params[0], &id)) {
        hk_api_error(c, 404, "token not found");
        return;
    }
    int rc = hk_store_token_delete(c->app->store, id, NULL);
    /* Forget it after the delete committed, so no request can re-cache it in between. */
    hk_auth_cache_forget_token(&c->app->auth_cache, id);
    if (rc) {
        hk_api_store_error(c, rc, "token");
        return;
    }
    hk_api_raw(c, 204, NULL, NULL, 0);
}

const hk_api_route_t hk_admin_routes[] = {
    {"POST", "/admin/users", create_user, HK_ROUTE_ADMIN | HK_ROUTE_BODY, NULL},
    {"GET", "/admin/users", list_users, HK_ROUTE_ADMIN, NULL},
    {"GET", "/admin/users/{id}", get_user, HK_ROUTE_ADMIN, NULL},
    {"GET", "/admin/users/email/{email}", get_user_by_email, HK_ROUTE_ADMIN, NULL},
    {"PATCH", "/admin/users/{id}", update_user, HK_ROUTE_ADMIN | HK_ROUTE_BODY, NULL},
    {"POST", "/admin/users/{id}/tokens", create_token, HK_ROUTE_ADMIN, NULL},
    {"DELETE", "/admin/tokens/{id}", delete_token, HK_ROUTE_ADMIN, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
