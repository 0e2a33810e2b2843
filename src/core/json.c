/* JSON helpers: parsing errors become precise 400/422 details. */
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/timeutil.h"

int hk_json_parse_object(const char *body, size_t len, json_t **out, char *detail, size_t dlen)
{
    json_error_t jerr;
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *v = json_loadb(body, len, flags, &jerr);
    /* An integer beyond int64 is well-formed JSON: parse it as a number so that the field
     * validators report it as out of range (422, naming the field) instead of a 400. */
    if (!v && json_error_code(&jerr) == json_error_numeric_overflow)
        v = json_loadb(body, len, flags | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!v) {
        snprintf(detail, dlen, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return HK_EINVAL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(detail, dlen, "body: must be a JSON object");
        return HK_ESTATE;
    }
    *out = v;
    return 0;
}

int hk_json_opt_string(const json_t *obj, const char *key, const char *field, size_t maxlen,
                       bool nullable, const char **out, bool *present, char *detail, size_t dlen)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return 0;
    if (json_is_null(v) && nullable) {
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(detail, dlen, "%s: must be a string%s", field, nullable ? " or null" : "");
        return HK_EINVAL;
    }
    size_t n = json_string_length(v);
    if (n > maxlen) {
        snprintf(detail, dlen, "%s: must be at most %zu bytes", field, maxlen);
        return HK_EINVAL;
    }
    if (strlen(json_string_value(v)) != n) {
        snprintf(detail, dlen, "%s: must not contain NUL characters", field);
        return HK_EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

int hk_json_opt_int(const json_t *obj, const char *key, const char *field, long long min,
                    long long max, long long *out, bool *present, char *detail, size_t dlen)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return 0;
    /* An integral real (3.0, or an integer too large for int64) is judged by its value. */
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* (double)LLONG_MAX rounds up to 2^63, which no long long holds: bound strictly. */
        if (d == floor(d) && d >= (double)min && d <= (double)max && d < ldexp(1, 63) &&
            d >= -ldexp(1, 63)) {
            *out = (long long)d;
            return 0;
        }
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(detail, dlen, "%s: must be an integer from %lld to %lld", field, min, max);
        return HK_EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

int hk_json_opt_object(const json_t *obj, const char *key, const char *field, json_t **out,
                       char *detail, size_t dlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_object(v)) {
        snprintf(detail, dlen, "%s: must be an object", field);
        return HK_EINVAL;
    }
    *out = v;
    return 0;
}

int hk_json_opt_string_array(const json_t *obj, const char *key, const char *field, size_t maxitems,
                             size_t maxlen, bool nullable, json_t **out, bool *present,
                             char *detail, size_t dlen)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return 0;
    if (json_is_null(v) && nullable) {
        *out = v;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > maxitems) {
        snprintf(detail, dlen, "%s: must be an array of at most %zu strings", field, maxitems);
        return HK_EINVAL;
    }
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item) || json_string_length(item) > maxlen ||
            strlen(json_string_value(item)) != json_string_length(item)) {
            snprintf(detail, dlen, "%s[%zu]: must be a string of at most %zu bytes", field, i,
                     maxlen);
            return HK_EINVAL;
        }
    }
    *out = v;
    return 0;
}

char *hk_json_encode(const json_t *v, size_t *len_out)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s && len_out)
        *len_out = strlen(s);
    return s;
}

int hk_json_set_str_or_null(json_t *obj, const char *key, const char *s)
{
    json_t *v = s ? json_string(s) : json_null();
    if (!v)
        return HK_ENOMEM;
    return json_object_set_new(obj, key, v) == 0 ? 0 : HK_ENOMEM;
}

int hk_json_set_time_or_null(json_t *obj, const char *key, int64_t ms)
{
    if (ms == 0)
        return json_object_set_new(obj, key, json_null()) == 0 ? 0 : HK_ENOMEM;
    char ts[32];
    hk_time_iso8601(ms, ts, sizeof(ts));
    return json_object_set_new(obj, key, json_string(ts)) == 0 ? 0 : HK_ENOMEM;
}

size_t hk_utf8_prefix(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    /* back over continuation bytes to the lead byte of the sequence that was cut, then drop it
     * unless the sequence fits whole */
    size_t lead = n;
    while (lead > 0 && ((unsigned char)s[lead] & 0xC0) == 0x80)
        lead--;
    return lead;
}
