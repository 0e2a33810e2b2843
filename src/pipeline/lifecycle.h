/* The meeting status machine, in one place for every platform: which transitions are allowed,
 * how each is recorded in data.status_transition, and the times it sets. See
 * docs/internals/meeting-lifecycle.md. */
#ifndef HK_LIFECYCLE_H
#define HK_LIFECYCLE_H

#include "store/store.h"

/* Who caused a transition (recorded as `source`). */
#define HK_SOURCE_USER "user"
#define HK_SOURCE_BOT "bot"
#define HK_SOURCE_SYSTEM "system"

/* True when a known status (requested, joining, awaiting_admission, active, stopping, completed,
 * failed). */
bool hk_lifecycle_status_valid(const char *status);

/* True when from → to is allowed by the machine. */
bool hk_lifecycle_allowed(const char *from, const char *to);

/* Builds the data object of a new meeting: name/participants/languages/notes/completion_reason/
 * failure_stage set (null or []), and an empty status_transition list. New reference. */
json_t *hk_lifecycle_initial_data(const char *language);

/* Webhook event types. */
#define HK_EVENT_STATUS_CHANGE "meeting.status_change"
#define HK_EVENT_COMPLETED "meeting.completed"
#define HK_EVENT_TRANSCRIPT_READY "transcript.ready"

/* The public JSON form of a meeting (the API's and the webhook envelopes'). New reference, or
 * NULL on allocation failure. Any thread. */
json_t *hk_meeting_public_json(const hk_meeting_t *m);

/*
 * The webhook events of meeting `m` having just moved from `from` (NULL: created) to m->status
 * at `at` for `reason`: meeting.status_change always; on completed also meeting.completed
 * (duration_seconds, segment_count) and transcript.ready (transcript.segment_count). Returns a new
 * array of envelopes (see docs/api.md), NULL on allocation failure. Any thread.
 */
json_t *hk_lifecycle_events(const hk_meeting_t *m, const char *from, const char *reason, int64_t at,
                            int64_t segment_count);

/* Creates a meeting (hk_store_meeting_create) and, in the same transaction, its
 * meeting.status_change event (from null to in->status, reason "created"). Blocking (store):
 * worker threads. Returns what hk_store_meeting_create returns; *out as there. */
int hk_lifecycle_create(hk_store_t *store, const hk_meeting_t *in, int max_active,
                        hk_meeting_t *out);

/*
 * Moves meeting `id` to status `to`, recording {from,to,reason,timestamp,source}; sets
 * start_time on the first move to active and end_time on terminal states, completion_reason on
 * completed/failed and failure_stage (the status it failed in) on failed. Retries the store's
 * compare-and-set when another writer moved the meeting first. The transition's webhook events
 * (hk_lifecycle_events) are written in the same transaction. Blocking (store): worker threads.
 * Returns 0 and *out (may be NULL; caller disposes), HK_ESTATE when the transition is not allowed
 * from the current status (*out then holds the current meeting), HK_ENOTFOUND, or a store error.
 */
int hk_lifecycle_transition(hk_store_t *store, int64_t id, const char *to, const char *reason,
                            const char *source, hk_meeting_t *out);

typedef struct {
    /* start_time to record if this is the first move to active (0 = now): a bot meeting's live
     * transcript already has its time origin when the bot reports active, and absolute segment
     * times are start_time + start, live and stored alike. */
    int64_t start_ms;
    /* Keys set into the meeting's data by the same compare-and-set (NULL: none), so that they
     * are written exactly when the transition is, never over a concurrent one. */
    json_t *data_set;
} hk_transition_opts_t;

/* hk_lifecycle_transition with options (o may be NULL). */
int hk_lifecycle_transition_ex(hk_store_t *store, int64_t id, const char *to, const char *reason,
                               const char *source, const hk_transition_opts_t *o,
                               hk_meeting_t *out);

/* Called after every committed transition with the meeting as it was before (id, user,
 * platform, native id, old status), the new status and the reason. Runs on the thread that made
 * the transition (usually a worker): it must be thread-safe and must not block. */
typedef void (*hk_lifecycle_observer_fn)(const hk_meeting_t *before, const char *to,
                                         const char *reason, void *data);

/* Installs the observer (one; NULL removes it). Call at start-up, before any transition. */
void hk_lifecycle_set_observer(hk_lifecycle_observer_fn fn, void *data);

#endif
