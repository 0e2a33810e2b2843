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

/* Wakes the delivery engine after a commit that made deliveries due. */
static void outbox_notify(hk_store_t *s, int armed)
{
    if (armed > 0 && s->outbox_fn != NULL)
        s->outbox_fn(s->outbox_arg);
}

int hk_store_meeting_create(hk_store_t *s, const hk_meeting_t *in, int max_active,
                            hk_meeting_t *out)
{
    return hk_store_meeting_create_ev(s, in, max_active, NULL, out);
}

int hk_store_meeting_create_ev(hk_store_t *s, const hk_meeting_t *in, int max_active,
                               const hk_store_events_t *ev, hk_meeting_t *out)
{
    if (s == NULL || in == NULL || out == NULL || !nonempty(in->platform) ||
        !nonempty(in->native_meeting_id) || !nonempty(in->status) || !obj_or_null(in->data) ||
        !obj_or_null(in->config) || (ev != NULL && ev->build == NULL))
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    int armed = 0;
    int rc = s->be->meeting_create(s->impl, in, max_active, ev, &armed, out);
    if (rc == 0) {
        bump(s, in->user_id);
        outbox_notify(s, armed);
    }
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

int hk_store_meeting_set_data(hk_store_t *s, int64_t id, int64_t expect_updated_at,
                              const json_t *data, hk_meeting_t *out)
{
    if (s == NULL || !json_is_object(data))
        return HK_EINVAL;
    hk_meeting_t local;
    hk_meeting_t *o = out ? out : &local;
    memset(o, 0, sizeof(*o));
    int rc = s->be->meeting_set_data(s->impl, id, expect_updated_at, data, o);
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
    return hk_store_meeting_set_status_ev(s, id, expect_status, 0, new_status, data, start_time,
                                          end_time, NULL, out);
}

int hk_store_meeting_set_status_ev(hk_store_t *s, int64_t id, const char *expect_status,
                                   int64_t expect_updated_at, const char *new_status,
                                   const json_t *data, int64_t start_time, int64_t end_time,
                                   const hk_store_events_t *ev, hk_meeting_t *out)
{
    if (s == NULL || expect_status == NULL || !nonempty(new_status) || !obj_or_null(data) ||
        (ev != NULL && ev->build == NULL))
        return HK_EINVAL;
    hk_meeting_t local;
    hk_meeting_t *o = out ? out : &local;
    memset(o, 0, sizeof(*o));
    int armed = 0;
    int rc = s->be->meeting_set_status(s->impl, id, expect_status, expect_updated_at, new_status,
                                       data, start_time, end_time, ev, &armed, o);
    if (rc == 0) {
        bump(s, o->user_id);
        outbox_notify(s, armed);
    }
    if (!out)
        hk_meeting_dispose(&local);
    return rc;
}

int hk_store_meeting_purge(hk_store_t *s, int64_t id, int64_t expect_updated_at, const json_t *data)
{
    if (s == NULL || !obj_or_null(data))
        return HK_EINVAL;
    int rc = s->be->meeting_purge(s->impl, id, expect_updated_at, data);
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

/* ---- analytics ---- */

static void free_counts(hk_store_count_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].key);
    free(v);
}

void hk_analytics_dispose(hk_analytics_t *a)
{
    if (a == NULL)
        return;
    free_counts(a->by_platform, a->nplatform);
    free_counts(a->by_status, a->nstatus);
    free_counts(a->per_day, a->nday);
    memset(a, 0, sizeof(*a));
}

int hk_store_analytics(hk_store_t *s, int64_t user_id, int64_t since_ms, int64_t tz_offset_ms,
                       hk_analytics_t *out)
{
    if (s == NULL || out == NULL || user_id <= 0)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = s->be->analytics(s->impl, user_id, since_ms, tz_offset_ms, out);
    if (rc)
        hk_analytics_dispose(out);
    return rc;
}

/* ---- webhooks ---- */

void hk_store_set_outbox_hook(hk_store_t *s, void (*fn)(void *arg), void *arg)
{
    if (s == NULL)
        return;
    s->outbox_fn = fn;
    s->outbox_arg = arg;
}

void hk_webhook_cfg_dispose(hk_webhook_cfg_t *w)
{
    if (w == NULL)
        return;
    free(w->url);
    free(w->secret);
    json_decref(w->events);
    memset(w, 0, sizeof(*w));
}

void hk_delivery_dispose(hk_delivery_t *d)
{
    if (d == NULL)
        return;
    free(d->event_id);
    free(d->event_type);
    free(d->state);
    free(d->last_error);
    free(d->payload);
    free(d->url);
    free(d->secret);
    memset(d, 0, sizeof(*d));
}

void hk_store_free_deliveries(hk_delivery_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        hk_delivery_dispose(&v[i]);
    free(v);
}

int hk_store_webhook_put(hk_store_t *s, int64_t user_id, const char *url, bool set_secret,
                         const char *secret, const json_t *events, hk_webhook_cfg_t *out)
{
    if (s == NULL || out == NULL || !nonempty(url) || (events != NULL && !json_is_array(events)))
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    int armed = 0;
    int rc = s->be->webhook_put(s->impl, user_id, url, set_secret, secret, events, &armed, out);
    if (rc == 0)
        outbox_notify(s, armed);
    return rc;
}

int hk_store_webhook_get(hk_store_t *s, int64_t user_id, hk_webhook_cfg_t *out)
{
    if (s == NULL || out == NULL)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    return s->be->webhook_get(s->impl, user_id, out);
}

int hk_store_webhook_delete(hk_store_t *s, int64_t user_id)
{
    if (s == NULL)
        return HK_EINVAL;
    return s->be->webhook_delete(s->impl, user_id);
}

int hk_store_delivery_list(hk_store_t *s, int64_t user_id, int limit, int64_t before_id,
                           hk_delivery_t **out, size_t *n)
{
    if (s == NULL || out == NULL || n == NULL)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    if (limit <= 0)
        return 0;
    return s->be->delivery_list(s->impl, user_id, limit, before_id, out, n);
}

int hk_store_delivery_redeliver(hk_store_t *s, int64_t user_id, int64_t id, hk_delivery_t *out)
{
    if (s == NULL || out == NULL)
        return HK_EINVAL;
    memset(out, 0, sizeof(*out));
    int rc = s->be->delivery_redeliver(s->impl, user_id, id, out);
    if (rc == 0)
        outbox_notify(s, 1);
    return rc;
}

int hk_store_webhook_claim(hk_store_t *s, int64_t now, int limit, hk_delivery_t **out, size_t *n,
                           int64_t *next_due)
{
    if (s == NULL || out == NULL || n == NULL || next_due == NULL)
        return HK_EINVAL;
    *out = NULL;
    *n = 0;
    *next_due = 0;
    if (limit < 0)
        return HK_EINVAL;
    return s->be->webhook_claim(s->impl, now, limit, out, n, next_due);
}

int hk_store_webhook_record(hk_store_t *s, const hk_delivery_result_t *v, size_t n)
{
    if (s == NULL || (v == NULL && n > 0))
        return HK_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!nonempty(v[i].state))
            return HK_EINVAL;
    if (n == 0)
        return 0;
    return s->be->webhook_record(s->impl, v, n);
}

int hk_store_webhook_prune(hk_store_t *s, int64_t before_ms, int64_t *deliveries, int64_t *events)
{
    int64_t d = 0, e = 0;
    if (deliveries)
        *deliveries = 0;
    if (events)
        *events = 0;
    if (s == NULL || before_ms <= 0)
        return HK_EINVAL;
    int rc = s->be->webhook_prune(s->impl, before_ms, &d, &e);
    if (rc == 0 && deliveries)
        *deliveries = d;
    if (rc == 0 && events)
        *events = e;
    return rc;
}

int hk_store_webhook_reset_sending(hk_store_t *s, int64_t *n)
{
    int64_t dummy;
    if (n == NULL)
        n = &dummy;
    *n = 0;
    if (s == NULL)
        return HK_EINVAL;
    return s->be->webhook_reset_sending(s->impl, n);
}
