/* Backend-independent storage layer: picks the backend, checks arguments, frees results. */
#include "store/store.h"

#include <stdatomic.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/log.h"
#include "store/backend.h"

/* ---- open / close ---- */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* mkdir -p with mode 0700 for the components we create: the database holds tokens and
 * transcripts, so nobody but the server's user should be able to list or read it. Existing
 * directories keep their mode (the operator chose it). */
static int ensure_dir(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path)) {
        snprintf(err, errlen, "data directory path is empty or too long");
        return HK_ESTORE;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create data directory \"%s\": %s", path, strerror(errno));
            hk_log_error("store", "op=mkdir path=\"%s\" err=\"%s\"", path, strerror(errno));
            return HK_ESTORE;
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data location \"%s\" is not a directory", dir);
        return HK_ESTORE;
    }
    return 0;
}

int hk_store_open(const char *location, int pool_size, hk_store_t **out, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (out == NULL) {
        snprintf(err, errlen, "no output handle");
        return HK_ESTORE;
    }
    *out = NULL;
    if (location == NULL || location[0] == '\0') {
        snprintf(err, errlen, "no storage location given");
        return HK_ESTORE;
    }
    if (pool_size < 1) {
        snprintf(err, errlen, "storage pool size must be at least 1 (got %d)", pool_size);
        return HK_ESTORE;
    }
    if (has_prefix(location, "postgres://") || has_prefix(location, "postgresql://")) {
        snprintf(err, errlen, "PostgreSQL backend not built yet");
        return HK_ESTORE;
    }

    int rc = ensure_dir(location, err, errlen);
    if (rc != 0)
        return rc;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/hark.db", location);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(err, errlen, "data directory path is too long");
        return HK_ESTORE;
    }

    hk_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return HK_ESTORE;
    }
    rc = hk_store_sqlite_open(path, pool_size, &s->be, &s->impl, &s->schema_version, err, errlen);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void hk_store_close(hk_store_t *s)
{
    if (s == NULL)
        return;
    s->be->close(s->impl);
    free(s);
}

int hk_store_ping(hk_store_t *s)
{
    if (s == NULL)
        return HK_EINVAL;
    return s->be->ping(s->impl);
}

int hk_store_schema_version(hk_store_t *s)
{
    return s ? s->schema_version : 0;
}

/* ---- results ---- */

void hk_user_dispose(hk_user_t *u)
{
    if (u == NULL)
        return;
    free(u->email);
    free(u->name);
    json_decref(u->data);
    memset(u, 0, sizeof(*u));
}

void hk_meeting_dispose(hk_meeting_t *m)
{
    if (m == NULL)
        return;
    free(m->platform);
    free(m->native_meeting_id);
    free(m->status);
    json_decref(m->data);
    json_decref(m->config);
    memset(m, 0, sizeof(*m));
}

void hk_segment_dispose(hk_segment_t *seg)
{
    if (seg == NULL)
        return;
    free(seg->segment_id);
    free(seg->text);
    free(seg->speaker);
    free(seg->language);
    memset(seg, 0, sizeof(*seg));
}

void hk_store_free_users(hk_user_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        hk_user_dispose(&v[i]);
    free(v);
}

void hk_store_free_meetings(hk_meeting_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        hk_meeting_dispose(&v[i]);
    free(v);
}

void hk_store_free_segments(hk_segment_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        hk_segment_dispose(&v[i]);
    free(v);
}

bool hk_meeting_status_terminal(const char *status)
{
    /* Keep in sync with the partial unique index in migrations.c and the queries in sqlite.c. */
    return status != NULL && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0);
}

/* ---- dispatch ---- */

/* JSON inputs are either absent or objects: the columns hold objects only. */
static bool obj_or_null(const json_t *j)
{
    return j == NULL || json_is_object(j);
}

static bool nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int hk_store_user_upsert(hk_store_t *s, const char *email, const char *name, int max_bots,
                         const json_t *data, hk_user_t *out, bool *created)
{
    if (s == NULL || out == NULL || !nonempty(email) || max_bots < 0 || !obj_or_null(data))
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    bool dummy;
    if (created == NULL)
        created = &dummy;
    *created = false;
    return s->be->user_upsert(s->impl, email, name, max_bots, data, out, created);
}

int hk_store_user_get(hk_store_t *s, int64_t id, hk_user_t *out)
{
    if (s == NULL || out == NULL)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->user_get(s->impl, id, out);
}

int hk_store_user_get_by_email(hk_store_t *s, const char *email, hk_user_t *out)
{
    if (s == NULL || out == NULL || email == NULL)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->user_get_by_email(s->impl, email, out);
}

int hk_store_user_list(hk_store_t *s, int limit, int offset, hk_user_t **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL || offset < 0)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    if (limit == 0)
        return 0;
    return s->be->user_list(s->impl, limit, offset, out, n);
}

int hk_store_user_update(hk_store_t *s, int64_t id, const char *name, int max_bots,
                         const json_t *data, hk_user_t *out)
{
    if (s == NULL || out == NULL || !obj_or_null(data))
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->user_update(s->impl, id, name, max_bots, data, out);
}

int hk_store_token_create(hk_store_t *s, int64_t user_id, const char *hash_hex, hk_token_t *out)
{
    if (s == NULL || out == NULL || !nonempty(hash_hex))
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->token_create(s->impl, user_id, hash_hex, out);
}

int hk_store_token_list(hk_store_t *s, int64_t user_id, hk_token_t **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    return s->be->token_list(s->impl, user_id, out, n);
}

int hk_store_token_delete(hk_store_t *s, int64_t token_id, int64_t *user_id_out)
{
    if (s == NULL)
        return HK_EINVAL;
    int64_t dummy;
    if (user_id_out == NULL)
        user_id_out = &dummy;
    *user_id_out = 0;
    return s->be->token_delete(s->impl, token_id, user_id_out);
}

int hk_store_token_lookup(hk_store_t *s, const char *hash_hex, int64_t *user_id, int64_t *token_id)
{
    if (s == NULL || hash_hex == NULL)
        return HK_EINVAL;
    int64_t d1, d2;
    if (user_id == NULL)
        user_id = &d1;
    if (token_id == NULL)
        token_id = &d2;
    *user_id = 0;
    *token_id = 0;
    return s->be->token_lookup(s->impl, hash_hex, user_id, token_id);
}

int hk_store_token_touch(hk_store_t *s, int64_t token_id, int64_t at_ms)
{
    if (s == NULL)
        return HK_EINVAL;
    return s->be->token_touch(s->impl, token_id, at_ms);
}

static void bump(hk_store_t *s, int64_t user_id)
{
    if (user_id > 0)
        atomic_fetch_add(&s->meeting_versions[(uint64_t)user_id % 1024], 1);
    else
        atomic_fetch_add(&s->meeting_epoch, 1);
}

uint64_t hk_store_meetings_version(hk_store_t *s, int64_t user_id)
{
    /* Both terms only grow, so their sum changes whenever either does. */
    return atomic_load(&s->meeting_epoch) +
           atomic_load(&s->meeting_versions[(uint64_t)user_id % 1024]);
}

int hk_store_meeting_create(hk_store_t *s, const hk_meeting_t *in, int max_active,
                            hk_meeting_t *out)
{
    if (s == NULL || in == NULL || out == NULL || !nonempty(in->platform) ||
        !nonempty(in->native_meeting_id) || !nonempty(in->status) || !obj_or_null(in->data) ||
        !obj_or_null(in->config))
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = s->be->meeting_create(s->impl, in, max_active, out);
    if (rc == 0)
        bump(s, in->user_id);
    return rc;
}

int hk_store_meeting_get(hk_store_t *s, int64_t user_id, int64_t id, hk_meeting_t *out)
{
    if (s == NULL || out == NULL)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->meeting_get(s->impl, user_id, id, out);
}

int hk_store_meeting_find(hk_store_t *s, int64_t user_id, const char *platform,
                          const char *native_id, hk_meeting_t *out)
{
    if (s == NULL || out == NULL || platform == NULL || native_id == NULL)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->meeting_find(s->impl, user_id, platform, native_id, out);
}

int hk_store_meeting_list(hk_store_t *s, int64_t user_id, int limit, int64_t before_id,
                          hk_meeting_t **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    if (limit == 0)
        return 0;
    return s->be->meeting_list(s->impl, user_id, limit, before_id, out, n);
}

int hk_store_meeting_list_active(hk_store_t *s, int64_t user_id, hk_meeting_t **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    return s->be->meeting_list_active(s->impl, user_id, out, n);
}

int hk_store_meeting_set_data(hk_store_t *s, int64_t id, const json_t *data, hk_meeting_t *out)
{
    if (s == NULL || !json_is_object(data))
        return HK_EINVAL;
    hk_meeting_t local;
    hk_meeting_t *o = out ? out : &local;
    memset(o, 0, sizeof(*o));
    int rc = s->be->meeting_set_data(s->impl, id, data, o);
    if (rc == 0)
        bump(s, o->user_id);
    if (!out)
        hk_meeting_dispose(&local);
    return rc;
}

int hk_store_meeting_set_status(hk_store_t *s, int64_t id, const char *expect_status,
                                const char *new_status, const json_t *data, int64_t start_time,
                                int64_t end_time, hk_meeting_t *out)
{
    if (s == NULL || expect_status == NULL || !nonempty(new_status) || !obj_or_null(data))
        return HK_EINVAL;
    hk_meeting_t local;
    hk_meeting_t *o = out ? out : &local;
    memset(o, 0, sizeof(*o));
    int rc = s->be->meeting_set_status(s->impl, id, expect_status, new_status, data, start_time,
                                       end_time, o);
    if (rc == 0)
        bump(s, o->user_id);
    if (!out)
        hk_meeting_dispose(&local);
    return rc;
}

int hk_store_meeting_purge(hk_store_t *s, int64_t id, const json_t *data)
{
    if (s == NULL || !obj_or_null(data))
        return HK_EINVAL;
    int rc = s->be->meeting_purge(s->impl, id, data);
    if (rc == 0)
        bump(s, 0);
    return rc;
}

int hk_store_session_create(hk_store_t *s, int64_t meeting_id, const char *uid, int64_t started_at,
                            int64_t *session_id)
{
    if (s == NULL || session_id == NULL)
        return HK_EINVAL;
    *session_id = 0;
    return s->be->session_create(s->impl, meeting_id, uid, started_at, session_id);
}

int hk_store_session_end(hk_store_t *s, int64_t session_id, int64_t ended_at)
{
    if (s == NULL)
        return HK_EINVAL;
    return s->be->session_end(s->impl, session_id, ended_at);
}

int hk_store_segments_put(hk_store_t *s, const hk_segment_t *v, size_t n)
{
    if (s == NULL || (v == NULL && n > 0))
        return HK_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!nonempty(v[i].segment_id) || v[i].text == NULL)
            return HK_EINVAL;
    }
    if (n == 0)
        return 0;
    return s->be->segments_put(s->impl, v, n);
}

int hk_store_segments_list(hk_store_t *s, int64_t meeting_id, hk_segment_t **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    return s->be->segments_list(s->impl, meeting_id, out, n);
}

int hk_store_segments_count(hk_store_t *s, int64_t meeting_id, int64_t *n)
{
    if (s == NULL || n == NULL)
        return HK_EINVAL;
    *n = 0;
    return s->be->segments_count(s->impl, meeting_id, n);
}
