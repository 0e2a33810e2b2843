/* Storage backend vtable, private to src/store/: store.c dispatches every public call through it.
 */
#ifndef HK_STORE_BACKEND_H
#define HK_STORE_BACKEND_H

#include "store/store.h"

/*
 * One backend (sqlite.c today, postgres.c later). store.c has already validated the arguments
 * (non-NULL pointers, JSON values are objects, required strings present) and zeroed every out
 * struct / array before calling, so a backend only does the storage work. Each function receives
 * the backend's own state (`impl`, from its open function) and follows the contract written in
 * store.h for the public function of the same name. JSON inputs may be NULL where store.h allows
 * it; the backend decides what NULL means there ({} or "keep").
 */
typedef struct hk_store_backend_s {
    const char *name; /* "sqlite", "postgres": for logs */

    void (*close)(void *impl);
    int (*ping)(void *impl);

    int (*user_upsert)(void *impl, const char *email, const char *name, int max_bots,
                       const json_t *data, hk_user_t *out, bool *created);
    int (*user_get)(void *impl, int64_t id, hk_user_t *out);
    int (*user_get_by_email)(void *impl, const char *email, hk_user_t *out);
    int (*user_list)(void *impl, int limit, int offset, hk_user_t **out, size_t *n);
    int (*user_update)(void *impl, int64_t id, const char *name, int max_bots, const json_t *data,
                       hk_user_t *out);

    int (*token_create)(void *impl, int64_t user_id, const char *hash_hex, hk_token_t *out);
    int (*token_list)(void *impl, int64_t user_id, hk_token_t **out, size_t *n);
    int (*token_delete)(void *impl, int64_t token_id, int64_t *user_id_out);
    int (*token_lookup)(void *impl, const char *hash_hex, int64_t *user_id, int64_t *token_id);
    int (*token_touch)(void *impl, int64_t token_id, int64_t at_ms);

    /* `ev` may be NULL; *armed receives how many deliveries the events created. */
    int (*meeting_create)(void *impl, const hk_meeting_t *in, int max_active,
                          const hk_store_events_t *ev, int *armed, hk_meeting_t *out);
    int (*meeting_get)(void *impl, int64_t user_id, int64_t id, hk_meeting_t *out);
    int (*meeting_find)(void *impl, int64_t user_id, const char *platform, const char *native_id,
                        hk_meeting_t *out);
    int (*meeting_list)(void *impl, int64_t user_id, int limit, int64_t before_id,
                        hk_meeting_t **out, size_t *n);
    int (*meeting_list_active)(void *impl, int64_t user_id, hk_meeting_t **out, size_t *n);
    int (*meeting_set_data)(void *impl, int64_t id, int64_t expect_updated_at, const json_t *data,
                            hk_meeting_t *out);
    int (*meeting_set_status)(void *impl, int64_t id, const char *expect_status,
                              int64_t expect_updated_at, const char *new_status, const json_t *data,
                              int64_t start_time, int64_t end_time, const hk_store_events_t *ev,
                              int *armed, hk_meeting_t *out);
    int (*meeting_purge)(void *impl, int64_t id, int64_t expect_updated_at, const json_t *data);

    int (*session_create)(void *impl, int64_t meeting_id, const char *uid, int64_t started_at,
                          int64_t *session_id);
    int (*session_end)(void *impl, int64_t session_id, int64_t ended_at);

    int (*segments_put)(void *impl, const hk_segment_t *v, size_t n);
    int (*segments_list)(void *impl, int64_t meeting_id, hk_segment_t **out, size_t *n);
    int (*segments_count)(void *impl, int64_t meeting_id, int64_t *n);
    int (*analytics)(void *impl, int64_t user_id, int64_t since_ms, int64_t tz_offset_ms,
                     hk_analytics_t *out);

    /* *armed: how many pending deliveries were made due now. */
    int (*webhook_put)(void *impl, int64_t user_id, const char *url, bool set_secret,
                       const char *secret, const json_t *events, int *armed, hk_webhook_cfg_t *out);
    int (*webhook_get)(void *impl, int64_t user_id, hk_webhook_cfg_t *out);
    int (*webhook_delete)(void *impl, int64_t user_id);
    int (*delivery_list)(void *impl, int64_t user_id, int limit, int64_t before_id,
                         hk_delivery_t **out, size_t *n);
    int (*delivery_redeliver)(void *impl, int64_t user_id, int64_t id, hk_delivery_t *out);
    int (*webhook_claim)(void *impl, int64_t now, int limit, hk_delivery_t **out, size_t *n,
                         int64_t *next_due);
    int (*webhook_record)(void *impl, const hk_delivery_result_t *v, size_t n);
    int (*webhook_reset_sending)(void *impl, int64_t *n);
    int (*webhook_prune)(void *impl, int64_t before_ms, int64_t *deliveries, int64_t *events);
} hk_store_backend_t;

/* The opaque handle of store.h: a backend and its state. Immutable after open (any thread). */
struct hk_store_s {
    const hk_store_backend_t *be;
    void *impl;         /* owned by the backend, released by be->close */
    int schema_version; /* after migrations */
    /* Change counters for hk_store_meetings_version(): bumped by store.c after every committed
     * meeting write (any thread, atomics). The buckets are indexed by user id; `epoch` is bumped
     * when the writer does not know the user (purge) and invalidates every user. */
    _Atomic uint64_t meeting_versions[1024];
    _Atomic uint64_t meeting_epoch;
    /* hk_store_set_outbox_hook(): set at start-up, read by any thread after. */
    void (*outbox_fn)(void *arg);
    void *outbox_arg;
};

/*
 * Opens the SQLite backend on the database file `path` (created if missing) with `pool_size`
 * connections and applies pending migrations. On success returns 0 and fills *be, *impl (release
 * with (*be)->close(*impl)) and *version; otherwise HK_ESTORE with the reason in err[errlen].
 */
int hk_store_sqlite_open(const char *path, int pool_size, const hk_store_backend_t **be,
                         void **impl, int *version, char *err, size_t errlen);

#endif
