/* Storage interface: the only way into hark's database. No SQL outside src/store/.
 *
 * A hk_store_t is opened once and shared by all threads: each call takes a connection from the
 * store's own pool (sized at open), runs in its own transaction, and gives the connection back.
 * Calls block: run them on worker threads, never on the event loop, except at start-up.
 * The backend is chosen by the location: a directory → SQLite (`<dir>/hark.db`); later
 * `postgres://…` → PostgreSQL, behind the same functions.
 *
 * Ownership: out-structs are filled with heap data owned by the caller; release them with the
 * matching _dispose() (arrays with hk_store_free_*). Inputs are copied; the store keeps no pointer.
 * Times are milliseconds since the Unix epoch; 0 means NULL/unset.
 * Returns: 0, HK_ENOTFOUND, HK_ECONFLICT, HK_ELIMIT, HK_EINVAL, HK_ENOMEM or HK_ESTORE (details
 * logged).
 */
#ifndef HK_STORE_H
#define HK_STORE_H

#include <jansson.h>
#include "core/common.h"

typedef struct hk_store_s hk_store_t;

typedef struct {
    int64_t id;
    char *email;
    char *name; /* may be NULL */
    int max_concurrent_bots;
    json_t *data; /* object, never NULL in a filled struct */
    int64_t created_at;
} hk_user_t;

typedef struct {
    int64_t id;
    int64_t user_id;
    int64_t created_at;
    int64_t last_used_at; /* 0 = never */
} hk_token_t;

typedef struct {
    int64_t id;
    int64_t user_id;
    char *platform;
    char *native_meeting_id;
    char *status;
    int64_t start_time; /* 0 = not started */
    int64_t end_time;   /* 0 = not ended */
    int64_t created_at;
    int64_t updated_at;
    json_t *data;   /* public data object (name, participants, status_transition, ...) */
    json_t *config; /* private bot config object (meeting_url, passcode, bot_name, language,
                       task, ...): never returned by the API as is */
} hk_meeting_t;

/* A stored segment. `segment_id` is the stable public id ("<meeting>:<session>:<seq>"). */
typedef struct {
    char *segment_id;
    int64_t meeting_id;
    int64_t session_id;
    double start; /* seconds from the meeting's first audio */
    double end;
    char *text;
    char *speaker;  /* may be NULL */
    char *language; /* may be NULL */
    int64_t created_at;
    int64_t updated_at;
} hk_segment_t;

/* A user's webhook endpoint (one per user). */
typedef struct {
    int64_t user_id;
    char *url;
    char *secret;   /* may be NULL (deliveries are then unsigned); never shown by the API */
    json_t *events; /* array of subscribed event types, or NULL for every type */
    int64_t created_at;
    int64_t updated_at;
} hk_webhook_cfg_t;

/* One delivery of an event to a user's endpoint, as listed in the delivery history. */
typedef struct {
    int64_t id;
    int64_t user_id;
    int64_t meeting_id; /* 0 when the event has no meeting */
    char *event_id;
    char *event_type;
    int64_t event_created_at;
    char *state; /* pending, delivered, failed ("sending" is listed as pending) */
    int attempts;
    int last_status;         /* HTTP status of the last attempt, 0 = none */
    char *last_error;        /* may be NULL */
    int64_t next_attempt_at; /* 0 when none is planned */
    int64_t delivered_at;
    int64_t created_at;
    int64_t updated_at;
    /* Filled only by hk_store_webhook_claim: what the sender needs. */
    char *payload; /* the envelope, exactly the bytes to POST */
    char *url;
    char *secret; /* may be NULL */
} hk_delivery_t;

/* The outcome of one attempt, written by hk_store_webhook_record. */
typedef struct {
    int64_t id;
    const char *state; /* "pending" (retry at next_attempt_at), "delivered" or "failed" */
    int attempts;
    int last_status;        /* 0 = no HTTP status (connection error, timeout) */
    const char *last_error; /* may be NULL */
    int64_t next_attempt_at;
} hk_delivery_result_t;

/*
 * Events of a meeting write (the webhook outbox). `build` is called once, inside the write's
 * transaction, after the meeting row is written, with the meeting as stored and its stored segment
 * count; it returns a new JSON array of event envelopes (objects with string "event_id" and
 * "event_type"; each whole object is stored as the payload), or NULL on failure, which rolls the
 * write back. The store writes one event row per envelope and, when the user has a webhook whose
 * filter takes the type, one pending delivery row. Called on the thread doing the store call.
 */
typedef struct {
    json_t *(*build)(const hk_meeting_t *m, int64_t segment_count, void *arg);
    void *arg;
} hk_store_events_t;

/* Opens (creating if needed) the store at `location` with a pool of `pool_size` connections and
 * applies pending migrations. Returns 0 and *out, or HK_ESTORE (reason in err[errlen]). */
int hk_store_open(const char *location, int pool_size, hk_store_t **out, char *err, size_t errlen);

/* Closes every connection. Callers must have finished all calls. NULL-safe. */
void hk_store_close(hk_store_t *s);

/* Cheap liveness check for /readyz: 0 when a query succeeds. */
int hk_store_ping(hk_store_t *s);

/* Schema version after migrations (for logs and tests). */
int hk_store_schema_version(hk_store_t *s);

void hk_user_dispose(hk_user_t *u);
void hk_meeting_dispose(hk_meeting_t *m);
void hk_segment_dispose(hk_segment_t *seg);
void hk_store_free_users(hk_user_t *v, size_t n);
void hk_store_free_meetings(hk_meeting_t *v, size_t n);
void hk_store_free_segments(hk_segment_t *v, size_t n);

/* ---- users ---- */

/* Find-or-create by email (case-insensitive). On create uses name (may be NULL), max_bots and data
 * (object or NULL → {}). *created tells which happened. An existing user is returned unchanged. */
int hk_store_user_upsert(hk_store_t *s, const char *email, const char *name, int max_bots,
                         const json_t *data, hk_user_t *out, bool *created);
int hk_store_user_get(hk_store_t *s, int64_t id, hk_user_t *out);
int hk_store_user_get_by_email(hk_store_t *s, const char *email, hk_user_t *out);
/* Users by id ascending. *out is a malloc'd array (NULL when n = 0). */
int hk_store_user_list(hk_store_t *s, int limit, int offset, hk_user_t **out, size_t *n);
/* Updates the given fields: name when non-NULL, max_bots when >= 0, data (replaced) when non-NULL.
 * Fills *out with the updated user. */
int hk_store_user_update(hk_store_t *s, int64_t id, const char *name, int max_bots,
                         const json_t *data, hk_user_t *out);

/* ---- API tokens (only SHA-256 hex digests are stored) ---- */

int hk_store_token_create(hk_store_t *s, int64_t user_id, const char *hash_hex, hk_token_t *out);
/* Tokens of a user, by id ascending. */
int hk_store_token_list(hk_store_t *s, int64_t user_id, hk_token_t **out, size_t *n);
/* Deletes a token; *user_id_out (may be NULL) receives its owner. HK_ENOTFOUND if none. */
int hk_store_token_delete(hk_store_t *s, int64_t token_id, int64_t *user_id_out);
/* Resolves a token digest. HK_ENOTFOUND when unknown. */
int hk_store_token_lookup(hk_store_t *s, const char *hash_hex, int64_t *user_id, int64_t *token_id);
/* Sets last_used_at (batched by the caller; not called per request). */
int hk_store_token_touch(hk_store_t *s, int64_t token_id, int64_t at_ms);

/* ---- meetings ---- */

/* Meeting statuses that are final. */
bool hk_meeting_status_terminal(const char *status);

/*
 * Creates a meeting from in->user_id, platform, native_meeting_id, status, data, config
 * (start/end times as given). In the same transaction: HK_ECONFLICT when the user already has a
 * non-terminal meeting with the same (platform, native id); HK_ELIMIT when max_active >= 0 and the
 * user already has that many non-terminal meetings. Fills *out.
 */
int hk_store_meeting_create(hk_store_t *s, const hk_meeting_t *in, int max_active,
                            hk_meeting_t *out);
/* hk_store_meeting_create that also writes the events built by `ev` (may be NULL) in the same
 * transaction: a failed create writes no event. */
int hk_store_meeting_create_ev(hk_store_t *s, const hk_meeting_t *in, int max_active,
                               const hk_store_events_t *ev, hk_meeting_t *out);
/* By id, only if it belongs to user_id (user_id < 0: any user, for internal callers). */
int hk_store_meeting_get(hk_store_t *s, int64_t user_id, int64_t id, hk_meeting_t *out);
/* The user's latest meeting (highest id) with this platform and native id. */
int hk_store_meeting_find(hk_store_t *s, int64_t user_id, const char *platform,
                          const char *native_id, hk_meeting_t *out);
/* Newest first (id descending), ids < before_id when before_id > 0. Fetches up to `limit`. */
int hk_store_meeting_list(hk_store_t *s, int64_t user_id, int limit, int64_t before_id,
                          hk_meeting_t **out, size_t *n);
/* Non-terminal meetings of a user (user_id < 0: of all users), id ascending. */
int hk_store_meeting_list_active(hk_store_t *s, int64_t user_id, hk_meeting_t **out, size_t *n);
/*
 * Replaces the data object when the meeting's updated_at still equals expect_updated_at (the value
 * the caller read and derived `data` from; 0: unconditionally), HK_ECONFLICT otherwise: re-read,
 * re-apply, retry (a concurrent status transition's entry is not overwritten). Every write to a
 * meeting moves updated_at forward by at least 1 ms. Fills *out (may be NULL).
 */
int hk_store_meeting_set_data(hk_store_t *s, int64_t id, int64_t expect_updated_at,
                              const json_t *data, hk_meeting_t *out);
/*
 * Compare-and-set of the status: when the stored status equals expect_status, sets status, data
 * (replaced), and start_time / end_time when they are non-zero; HK_ECONFLICT otherwise (the caller
 * re-reads and retries). Fills *out (may be NULL). The status machine itself lives in
 * pipeline/lifecycle.c; this only stores its decisions atomically.
 */
int hk_store_meeting_set_status(hk_store_t *s, int64_t id, const char *expect_status,
                                const char *new_status, const json_t *data, int64_t start_time,
                                int64_t end_time, hk_meeting_t *out);
/* hk_store_meeting_set_status that also writes the events built by `ev` (may be NULL) in the same
 * transaction: only a successful compare-and-set writes them. With expect_updated_at non-zero the
 * compare also needs updated_at unchanged (data derived from a read: see set_data). */
int hk_store_meeting_set_status_ev(hk_store_t *s, int64_t id, const char *expect_status,
                                   int64_t expect_updated_at, const char *new_status,
                                   const json_t *data, int64_t start_time, int64_t end_time,
                                   const hk_store_events_t *ev, hk_meeting_t *out);
/*
 * Deletes a terminal meeting's segments and sessions and replaces its data with `data` (the
 * anonymised counters) and its config with {}. HK_ESTATE when the meeting is not terminal.
 */
int hk_store_meeting_purge(hk_store_t *s, int64_t id, int64_t expect_updated_at,
                           const json_t *data);

/*
 * A number that changes after every committed write to any meeting of `user_id` (create, data,
 * status, purge). Read it before a query to tag a cached result; a later call returning another
 * number means the result may be stale. Never blocks: callable on the event loop.
 */
uint64_t hk_store_meetings_version(hk_store_t *s, int64_t user_id);

/* ---- sessions and segments (live pipeline) ---- */

/* Records a new audio session of a meeting; *session_id receives its id. */
int hk_store_session_create(hk_store_t *s, int64_t meeting_id, const char *uid, int64_t started_at,
                            int64_t *session_id);
int hk_store_session_end(hk_store_t *s, int64_t session_id, int64_t ended_at);

/* Inserts or replaces (by segment_id) n segments in one transaction. */
int hk_store_segments_put(hk_store_t *s, const hk_segment_t *v, size_t n);
/* Segments of a meeting ordered by start, then segment_id. */
int hk_store_segments_list(hk_store_t *s, int64_t meeting_id, hk_segment_t **out, size_t *n);
int hk_store_segments_count(hk_store_t *s, int64_t meeting_id, int64_t *n);

/* ---- analytics ---- */

/* One counted group: a platform or status name (`key`), or a day (`day`, key NULL). */
typedef struct {
    char *key;
    int64_t day; /* days since 1970-01-01 in the caller's time zone (per-day rows only) */
    int64_t count;
} hk_store_count_t;

/* A user's meeting statistics (GET /analytics). Arrays are malloc'd (NULL when empty). */
typedef struct {
    hk_store_count_t *by_platform, *by_status, *per_day;
    size_t nplatform, nstatus, nday;
    int64_t segments;       /* stored (completed) segments of the user's meetings */
    double segment_seconds; /* sum of their durations (end - start, negatives as 0) */
    int64_t timed_meetings; /* meetings with both start_time and end_time */
    double meeting_seconds; /* sum of their end_time - start_time */
} hk_analytics_t;

/*
 * Counts user_id's meetings by platform and by status, meetings created at or after since_ms per
 * day (day = (created_at + tz_offset_ms) / 86400000), and sums of segment and meeting durations,
 * all from one consistent read. Fills *out (release with hk_analytics_dispose). Worker thread.
 */
int hk_store_analytics(hk_store_t *s, int64_t user_id, int64_t since_ms, int64_t tz_offset_ms,
                       hk_analytics_t *out);
void hk_analytics_dispose(hk_analytics_t *a);

/* ---- webhooks (outbox and deliveries) ---- */

/*
 * Called after a committed write that created or re-armed deliveries (any thread; must not block:
 * the delivery engine only wakes its loop). Set once at start-up before other threads use the
 * store; NULL to clear.
 */
void hk_store_set_outbox_hook(hk_store_t *s, void (*fn)(void *arg), void *arg);

void hk_webhook_cfg_dispose(hk_webhook_cfg_t *w);
void hk_delivery_dispose(hk_delivery_t *d);
void hk_store_free_deliveries(hk_delivery_t *v, size_t n);

/* Creates or replaces the user's webhook: url; secret when set_secret (NULL clears it), else the
 * stored one is kept; events (array or NULL = all). Also makes the user's pending deliveries due
 * now (a fixed endpoint is retried at once). Fills *out. */
int hk_store_webhook_put(hk_store_t *s, int64_t user_id, const char *url, bool set_secret,
                         const char *secret, const json_t *events, hk_webhook_cfg_t *out);
int hk_store_webhook_get(hk_store_t *s, int64_t user_id, hk_webhook_cfg_t *out);
/* Removes the webhook; its open deliveries become failed ("webhook removed"). HK_ENOTFOUND if
 * none. */
int hk_store_webhook_delete(hk_store_t *s, int64_t user_id);

/* The user's deliveries, newest first, ids < before_id when before_id > 0 (up to limit). */
int hk_store_delivery_list(hk_store_t *s, int64_t user_id, int limit, int64_t before_id,
                           hk_delivery_t **out, size_t *n);
/* Queues the event of the user's delivery `id` again as a new pending delivery (due now); fills
 * *out with it. HK_ENOTFOUND when the delivery is not the user's, HK_ESTATE when the user has no
 * webhook. */
int hk_store_delivery_redeliver(hk_store_t *s, int64_t user_id, int64_t id, hk_delivery_t *out);

/*
 * Delivery engine: claims up to `limit` deliveries due at `now` (pending, next attempt <= now, no
 * earlier open delivery of the same meeting, endpoint still configured) and marks them "sending";
 * fills payload/url/secret. *next_due receives the earliest future next attempt of a pending
 * delivery (0 = none).
 */
int hk_store_webhook_claim(hk_store_t *s, int64_t now, int limit, hk_delivery_t **out, size_t *n,
                           int64_t *next_due);
/* Writes the outcomes of n attempts in one transaction. */
int hk_store_webhook_record(hk_store_t *s, const hk_delivery_result_t *v, size_t n);
/* Puts every "sending" delivery back to pending, due now (start-up: their sender died). *n
 * (may be NULL) receives how many. */
int hk_store_webhook_reset_sending(hk_store_t *s, int64_t *n);
/* Retention: deletes finished deliveries (delivered or failed) last updated before `before_ms`,
 * then events created before it that no delivery refers to any more. Open deliveries and their
 * events are kept whatever their age. *deliveries / *events (may be NULL) receive the counts. */
int hk_store_webhook_prune(hk_store_t *s, int64_t before_ms, int64_t *deliveries, int64_t *events);

#endif
