/* Meeting status machine. The store only provides compare-and-set; every rule lives here. */
#include "pipeline/lifecycle.h"

#include <stdio.h>
#include <string.h>
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"

/* Forward order of the non-terminal states; "stopping" and the terminal states are reachable
 * from any of them. */
static const char *const forward[] = {"requested", "joining", "awaiting_admission", "active"};

static int forward_rank(const char *s)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(forward); i++)
        if (strcmp(s, forward[i]) == 0)
            return (int)i;
    return -1;
}

bool hk_lifecycle_status_valid(const char *status)
{
    return forward_rank(status) >= 0 || strcmp(status, "stopping") == 0 ||
           hk_meeting_status_terminal(status);
}

bool hk_lifecycle_allowed(const char *from, const char *to)
{
    if (!hk_lifecycle_status_valid(from) || !hk_lifecycle_status_valid(to))
        return false;
    if (hk_meeting_status_terminal(from))
        return false;
    if (strcmp(to, "stopping") == 0)
        return strcmp(from, "stopping") != 0;
    if (hk_meeting_status_terminal(to))
        return true;
    int rf = forward_rank(from), rt = forward_rank(to);
    return rf >= 0 && rt > rf; /* only forward; nothing leaves "stopping" but the terminal states */
}

json_t *hk_lifecycle_initial_data(const char *language)
{
    json_t *d = json_object();
    json_t *langs = json_array();
    if (language)
        json_array_append_new(langs, json_string(language));
    json_object_set_new(d, "name", json_null());
    json_object_set_new(d, "participants", json_array());
    json_object_set_new(d, "languages", langs);
    json_object_set_new(d, "notes", json_null());
    json_object_set_new(d, "completion_reason", json_null());
    json_object_set_new(d, "failure_stage", json_null());
    json_object_set_new(d, "status_transition", json_array());
    return d;
}

static const char *const data_defaults[] = {"name", "notes", "completion_reason", "failure_stage"};

json_t *hk_meeting_public_json(const hk_meeting_t *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(m->id));
    json_object_set_new(o, "user_id", json_integer(m->user_id));
    json_object_set_new(o, "platform", json_string(m->platform));
    json_object_set_new(o, "native_meeting_id", json_string(m->native_meeting_id));
    const char *url = json_string_value(json_object_get(m->config, "meeting_url"));
    if (url && strcmp(m->platform, "janus") == 0) {
        char buf[1200];
        snprintf(buf, sizeof(buf), "%s?room=%s", url, m->native_meeting_id);
        json_object_set_new(o, "constructed_meeting_url", json_string(buf));
    } else {
        json_object_set_new(o, "constructed_meeting_url", json_null());
    }
    json_object_set_new(o, "status", json_string(m->status));
    hk_json_set_time_or_null(o, "start_time", m->start_time);
    hk_json_set_time_or_null(o, "end_time", m->end_time);
    /* Meetings are created with every default key; only copy (and fill in) when one is missing. */
    bool complete = json_is_object(m->data) && json_object_get(m->data, "participants") &&
                    json_object_get(m->data, "languages") &&
                    json_object_get(m->data, "status_transition");
    for (size_t i = 0; complete && i < HK_ARRAY_SIZE(data_defaults); i++)
        complete = json_object_get(m->data, data_defaults[i]) != NULL;
    if (complete) {
        json_object_set(o, "data", m->data);
        goto times;
    }
    json_t *data = json_is_object(m->data) ? json_deep_copy(m->data) : json_object();
    for (size_t i = 0; i < HK_ARRAY_SIZE(data_defaults); i++)
        if (!json_object_get(data, data_defaults[i]))
            json_object_set_new(data, data_defaults[i], json_null());
    if (!json_object_get(data, "participants"))
        json_object_set_new(data, "participants", json_array());
    if (!json_object_get(data, "languages"))
        json_object_set_new(data, "languages", json_array());
    if (!json_object_get(data, "status_transition"))
        json_object_set_new(data, "status_transition", json_array());
    json_object_set_new(o, "data", data);
times:
    hk_json_set_time_or_null(o, "created_at", m->created_at);
    hk_json_set_time_or_null(o, "updated_at", m->updated_at);
    return o;
}

/* ---- webhook events (built inside the store's transaction) ---- */

/* What caused the events: the transition just written (from is NULL for a creation). */
typedef struct {
    const char *from, *to, *reason;
    int64_t at;
} change_t;

/* {"event_id","event_type","api_version","created_at","data":{"meeting","status_change"}}. */
static json_t *envelope(const char *type, const hk_meeting_t *m, const change_t *ch)
{
    char id[48];
    if (hk_random_token("evt_", 16, id, sizeof(id)))
        return NULL;
    json_t *e = json_object();
    json_t *data = json_object();
    json_t *sc = json_object();
    json_t *mj = hk_meeting_public_json(m);
    if (!e || !data || !sc || !mj) {
        json_decref(e);
        json_decref(data);
        json_decref(sc);
        json_decref(mj);
        return NULL;
    }
    hk_json_set_str_or_null(sc, "from", ch->from);
    hk_json_set_str_or_null(sc, "to", ch->to);
    hk_json_set_str_or_null(sc, "reason", ch->reason);
    hk_json_set_time_or_null(sc, "timestamp", ch->at);
    json_object_set_new(data, "meeting", mj);
    json_object_set_new(data, "status_change", sc);
    json_object_set_new(e, "event_id", json_string(id));
    json_object_set_new(e, "event_type", json_string(type));
    json_object_set_new(e, "api_version", json_string("1"));
    hk_json_set_time_or_null(e, "created_at", ch->at);
    json_object_set_new(e, "data", data);
    return e;
}

json_t *hk_lifecycle_events(const hk_meeting_t *m, const char *from, const char *reason, int64_t at,
                            int64_t segment_count)
{
    change_t ch = {from, m->status, reason, at};
    json_t *list = json_array();
    json_t *e = envelope(HK_EVENT_STATUS_CHANGE, m, &ch);
    if (!list || !e || json_array_append_new(list, e)) {
        json_decref(list);
        return NULL;
    }
    if (strcmp(m->status, "completed") == 0) {
        /* Segments are written by the live pipeline before the meeting completes, so the stored
         * count is final here: transcript.ready goes out with the completion. */
        json_t *done = envelope(HK_EVENT_COMPLETED, m, &ch);
        json_t *ready = envelope(HK_EVENT_TRANSCRIPT_READY, m, &ch);
        if (!done || !ready) {
            json_decref(done);
            json_decref(ready);
            json_decref(list);
            return NULL;
        }
        int64_t started = m->start_time;
        double duration =
            started > 0 && m->end_time > started ? (double)(m->end_time - started) / 1000.0 : 0.0;
        json_t *dd = json_object_get(done, "data");
        json_object_set_new(dd, "duration_seconds", json_real(duration));
        json_object_set_new(dd, "segment_count", json_integer(segment_count));
        json_t *tr = json_object();
        json_object_set_new(tr, "segment_count", json_integer(segment_count));
        json_object_set_new(json_object_get(ready, "data"), "transcript", tr);
        json_array_append_new(list, done);
        json_array_append_new(list, ready);
    }
    return list;
}

static json_t *build_cb(const hk_meeting_t *m, int64_t segment_count, void *arg)
{
    const change_t *ch = arg;
    return hk_lifecycle_events(m, ch->from, ch->reason, ch->at, segment_count);
}

int hk_lifecycle_create(hk_store_t *store, const hk_meeting_t *in, int max_active,
                        hk_meeting_t *out)
{
    change_t ch = {NULL, in->status, "created", hk_time_now_ms()};
    hk_store_events_t ev = {build_cb, &ch};
    return hk_store_meeting_create_ev(store, in, max_active, &ev, out);
}

static hk_lifecycle_observer_fn observer;
static void *observer_data;

void hk_lifecycle_set_observer(hk_lifecycle_observer_fn fn, void *data)
{
    observer = fn;
    observer_data = data;
}

int hk_lifecycle_transition(hk_store_t *store, int64_t id, const char *to, const char *reason,
                            const char *source, hk_meeting_t *out)
{
    return hk_lifecycle_transition_ex(store, id, to, reason, source, NULL, out);
}

int hk_lifecycle_transition_ex(hk_store_t *store, int64_t id, const char *to, const char *reason,
                               const char *source, const hk_transition_opts_t *o, hk_meeting_t *out)
{
    int64_t start_ms = o ? o->start_ms : 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        hk_meeting_t m;
        int rc = hk_store_meeting_get(store, -1, id, &m);
        if (rc)
            return rc;
        if (!hk_lifecycle_allowed(m.status, to)) {
            if (out)
                *out = m;
            else
                hk_meeting_dispose(&m);
            return HK_ESTATE;
        }
        int64_t now = hk_time_now_ms();
        json_t *data = json_deep_copy(m.data);
        if (o && json_is_object(o->data_set) && json_is_object(data))
            json_object_update(data, o->data_set);
        json_t *list = json_object_get(data, "status_transition");
        if (!json_is_array(list)) {
            list = json_array();
            json_object_set_new(data, "status_transition", list);
        }
        json_t *t = json_object();
        json_object_set_new(t, "from", json_string(m.status));
        json_object_set_new(t, "to", json_string(to));
        hk_json_set_str_or_null(t, "reason", reason);
        hk_json_set_time_or_null(t, "timestamp", now);
        json_object_set_new(t, "source", json_string(source));
        json_array_append_new(list, t);
        int64_t start = 0, end = 0;
        if (strcmp(to, "active") == 0 && m.start_time == 0)
            start = start_ms > 0 ? start_ms : now;
        if (hk_meeting_status_terminal(to)) {
            end = now;
            hk_json_set_str_or_null(data, "completion_reason", reason);
            if (strcmp(to, "failed") == 0)
                json_object_set_new(data, "failure_stage", json_string(m.status));
        }
        /* The events are written in the same transaction as the compare-and-set, so a lost race
         * writes none and a committed move always has its events. */
        change_t ch = {m.status, to, reason, now};
        hk_store_events_t ev = {build_cb, &ch};
        rc = hk_store_meeting_set_status_ev(store, id, m.status, m.updated_at, to, data, start, end,
                                            &ev, out);
        json_decref(data);
        if (rc == 0) {
            hk_log_info("lifecycle", "meeting_id=%lld from=%s to=%s reason=%s source=%s",
                        (long long)id, m.status, to, reason ? reason : "-", source);
            if (observer)
                observer(&m, to, reason, observer_data);
        }
        hk_meeting_dispose(&m);
        if (rc != HK_ECONFLICT)
            return rc;
    }
    return HK_ECONFLICT;
}
