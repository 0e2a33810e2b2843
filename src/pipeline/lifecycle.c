/* Meeting status machine. The store only provides compare-and-set; every rule lives here. */
#include "pipeline/lifecycle.h"

#include <string.h>
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

int hk_lifecycle_transition(hk_store_t *store, int64_t id, const char *to, const char *reason,
                            const char *source, hk_meeting_t *out)
{
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
            start = now;
        if (hk_meeting_status_terminal(to)) {
            end = now;
            hk_json_set_str_or_null(data, "completion_reason", reason);
            if (strcmp(to, "failed") == 0)
                json_object_set_new(data, "failure_stage", json_string(m.status));
        }
        rc = hk_store_meeting_set_status(store, id, m.status, to, data, start, end, out);
        json_decref(data);
        if (rc == 0)
            hk_log_info("lifecycle", "meeting_id=%lld from=%s to=%s reason=%s source=%s",
                        (long long)id, m.status, to, reason ? reason : "-", source);
        hk_meeting_dispose(&m);
        if (rc != HK_ECONFLICT)
            return rc;
    }
    return HK_ECONFLICT;
}
