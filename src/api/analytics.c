/* Analytics API: a user's meetings per day, by platform and by status, and minutes transcribed. */
#include <stdio.h>
#include <time.h>
#include "api/api.h"
#include "core/timeutil.h"

#define DAY_MS 86400000LL

/* Floor division: days before 1970 (or a negative offset near the epoch) round down. */
static int64_t day_of(int64_t ms)
{
    return ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
}

static void date_of(int64_t day, char out[16])
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 16, "%Y-%m-%d", &tm) == 0)
        snprintf(out, 16, "?");
}

static json_t *counts_object(const hk_store_count_t *v, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, v[i].key ? v[i].key : "", json_integer(v[i].count));
    return o;
}

/* Minutes rounded to 0.01 so the JSON stays short and stable. */
static json_t *minutes(double seconds)
{
    return json_real((double)(long long)(seconds / 60.0 * 100.0 + 0.5) / 100.0);
}

static void get_analytics(hk_ctx_t *c)
{
    long long days, tz_min;
    if (hk_api_query_int(c, "days", 1, 366, 30, &days) ||
        hk_api_query_int(c, "tz_offset_minutes", -840, 840, 0, &tz_min))
        return;
    int64_t off = (int64_t)tz_min * 60000, now = hk_time_now_ms();
    int64_t today = day_of(now + off), first = today - (days - 1);
    hk_analytics_t a;
    int rc = hk_store_analytics(c->app->store, c->user_id, first * DAY_MS - off, off, &a);
    if (rc) {
        hk_api_store_error(c, rc, "analytics");
        return;
    }
    json_t *per_day = json_array();
    for (int64_t d = first; d <= today; d++) {
        int64_t count = 0;
        for (size_t i = 0; i < a.nday; i++)
            if (a.per_day[i].day == d)
                count = a.per_day[i].count;
        char date[16];
        date_of(d, date);
        json_array_append_new(per_day,
                              json_pack("{s:s, s:I}", "date", date, "count", (json_int_t)count));
    }
    int64_t total = 0;
    for (size_t i = 0; i < a.nstatus; i++)
        total += a.by_status[i].count;
    char from[16], to[16];
    date_of(first, from);
    date_of(today, to);
    json_t *o = json_object();
    json_object_set_new(o, "days", json_integer(days));
    json_object_set_new(o, "tz_offset_minutes", json_integer(tz_min));
    json_object_set_new(o, "from", json_string(from));
    json_object_set_new(o, "to", json_string(to));
    json_object_set_new(o, "meetings_total", json_integer(total));
    json_object_set_new(o, "meetings_per_day", per_day);
    json_object_set_new(o, "by_platform", counts_object(a.by_platform, a.nplatform));
    json_object_set_new(o, "by_status", counts_object(a.by_status, a.nstatus));
    json_object_set_new(o, "segments", json_integer(a.segments));
    json_object_set_new(o, "minutes_transcribed", minutes(a.segment_seconds));
    json_object_set_new(o, "meeting_minutes", minutes(a.meeting_seconds));
    hk_analytics_dispose(&a);
    hk_api_json(c, 200, o);
}

const hk_api_route_t hk_analytics_routes[] = {
    {"GET", "/analytics", get_analytics, HK_ROUTE_USER, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
