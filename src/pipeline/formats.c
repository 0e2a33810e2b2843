/* Transcript rendering (JSON, txt, SRT, WebVTT): pure functions over borrowed segment views. */
#include "pipeline/formats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/json.h"
#include "core/timeutil.h"

/* 9999:59:59.999, the largest time any renderer writes. */
#define MAX_MS ((int64_t)(HK_FORMAT_MAX_HOURS + 1) * 3600000 - 1)

static const struct {
    const char *name, *content_type;
} formats[] = {
    [HK_FORMAT_JSON] = {"json", "application/json; charset=utf-8"},
    [HK_FORMAT_TXT] = {"txt", "text/plain; charset=utf-8"},
    [HK_FORMAT_SRT] = {"srt", "application/x-subrip; charset=utf-8"},
    [HK_FORMAT_VTT] = {"vtt", "text/vtt; charset=utf-8"},
};

int hk_format_parse(const char *name, hk_format_t *out)
{
    for (size_t i = 0; name && i < HK_ARRAY_SIZE(formats); i++) {
        if (strcasecmp(name, formats[i].name) == 0) {
            *out = (hk_format_t)i;
            return 0;
        }
    }
    return HK_EINVAL;
}

const char *hk_format_content_type(hk_format_t f)
{
    return (unsigned)f < HK_ARRAY_SIZE(formats) ? formats[f].content_type : NULL;
}

const char *hk_format_extension(hk_format_t f)
{
    return (unsigned)f < HK_ARRAY_SIZE(formats) ? formats[f].name : NULL;
}

/* ---- ordering ---- */

/* NaN sorts first so the comparison stays a total order (qsort needs one). */
static double sort_key(double t)
{
    return isnan(t) ? -HUGE_VAL : t;
}

static int by_start_then_id(const void *a, const void *b)
{
    const hk_segment_view_t *x = *(const hk_segment_view_t *const *)a;
    const hk_segment_view_t *y = *(const hk_segment_view_t *const *)b;
    double kx = sort_key(x->start), ky = sort_key(y->start);
    if (kx < ky)
        return -1;
    if (kx > ky)
        return 1;
    return strcmp(x->segment_id, y->segment_id);
}

/* A sorted array of pointers into t (malloc'd; NULL when t is empty or on ENOMEM: check n). */
static const hk_segment_view_t **sorted(const hk_transcript_t *t)
{
    if (t->n == 0)
        return NULL;
    const hk_segment_view_t **p = malloc(t->n * sizeof(*p));
    if (!p)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        p[i] = &t->v[i];
    qsort(p, t->n, sizeof(*p), by_start_then_id);
    return p;
}

/* ---- merging stored and live segments ---- */

/* Epoch ms of `seconds` into a meeting that started at t0_ms; 0 (null) when it has not. */
int64_t hk_format_absolute_ms(int64_t t0_ms, double seconds)
{
    if (t0_ms == 0 || !isfinite(seconds) || fabs(seconds) > 1e10)
        return 0;
    return t0_ms + (int64_t)llround(seconds * 1000.0);
}

static hk_segment_view_t view_of(const hk_segment_t *seg, bool completed, int64_t t0_ms)
{
    hk_segment_view_t v = {
        .segment_id = seg->segment_id,
        .start = seg->start,
        .end = seg->end,
        .text = seg->text ? seg->text : "",
        .speaker = seg->speaker,
        .language = seg->language,
        .completed = completed,
        .absolute_start_ms = hk_format_absolute_ms(t0_ms, seg->start),
        .absolute_end_ms = hk_format_absolute_ms(t0_ms, seg->end),
        .updated_at = seg->updated_at,
    };
    return v;
}

static int by_segment_id(const void *a, const void *b)
{
    const hk_segment_t *x = *(const hk_segment_t *const *)a;
    const hk_segment_t *y = *(const hk_segment_t *const *)b;
    return strcmp(x->segment_id, y->segment_id);
}

int hk_transcript_merge(const hk_segment_t *stored, size_t nstored, const hk_segment_t *live,
                        const bool *live_completed, size_t nlive, int64_t t0_ms,
                        hk_segment_view_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (nstored + nlive == 0)
        return 0;
    hk_segment_view_t *v = malloc((nstored + nlive) * sizeof(*v));
    const hk_segment_t **ids = nlive ? malloc(nlive * sizeof(*ids)) : NULL;
    if (!v || (nlive && !ids)) {
        free(v);
        free(ids);
        return HK_ENOMEM;
    }
    /* The live segments by id, so each stored one is looked up in O(log n). */
    size_t nids = 0;
    for (size_t i = 0; i < nlive; i++)
        if (live[i].segment_id)
            ids[nids++] = &live[i];
    if (nids)
        qsort(ids, nids, sizeof(*ids), by_segment_id);
    size_t k = 0;
    for (size_t i = 0; i < nstored; i++) {
        const hk_segment_t *key = &stored[i];
        if (!key->segment_id || (nids && bsearch(&key, ids, nids, sizeof(*ids), by_segment_id)))
            continue;
        v[k++] = view_of(key, true, t0_ms);
    }
    for (size_t i = 0; i < nlive; i++)
        if (live[i].segment_id)
            v[k++] = view_of(&live[i], live_completed && live_completed[i], t0_ms);
    free(ids);
    *out = v;
    *n = k;
    return 0;
}

/* ---- text ---- */

enum { CP_VISIBLE, CP_SPACE, CP_NEWLINE, CP_INVALID };

/*
 * Classifies the code point at p (not at the terminating NUL) and returns how many bytes it
 * takes. ASCII and C1 control characters count as spaces; CR, LF and CRLF as one newline; a byte
 * that does not start a well-formed UTF-8 sequence (overlong, surrogate, > U+10FFFF, truncated) is
 * CP_INVALID, one byte long. Never reads past a NUL.
 */
static size_t next_cp(const unsigned char *p, int *kind)
{
    unsigned char c = p[0];
    if (c == '\r' || c == '\n') {
        *kind = CP_NEWLINE;
        return c == '\r' && p[1] == '\n' ? 2 : 1;
    }
    if (c < 0x20 || c == ' ' || c == 0x7f) {
        *kind = CP_SPACE;
        return 1;
    }
    if (c < 0x80) {
        *kind = CP_VISIBLE;
        return 1;
    }
    *kind = CP_VISIBLE;
    if (c >= 0xc2 && c <= 0xdf && (p[1] & 0xc0) == 0x80) {
        if (c == 0xc2 && p[1] < 0xa0)
            *kind = CP_SPACE; /* U+0080..U+009F */
        return 2;
    }
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80)
            return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80)
            return 4;
    }
    *kind = CP_INVALID;
    return 1;
}

/* Whether s has anything to show once control characters and whitespace are dropped. */
static bool has_visible(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (s && *p) {
        int kind;
        p += next_cp(p, &kind);
        if (kind == CP_VISIBLE || kind == CP_INVALID)
            return true;
    }
    return false;
}

enum {
    T_MULTILINE = 1 << 0, /* keep line breaks (never two in a row); else they become spaces */
    T_ESCAPE = 1 << 1,    /* WebVTT: & < > as character references */
    T_NO_ARROW = 1 << 2,  /* SRT: "-->" never appears (a space goes before the '>') */
};

/*
 * Appends s cleaned for a cue or a line: whitespace runs (control characters included) become one
 * space, leading and trailing whitespace of every line is dropped, empty lines are dropped,
 * invalid UTF-8 becomes U+FFFD, and the flags above apply. Returns hk_buf_append's result.
 */
static int put_text(hk_buf_t *b, const char *s, unsigned flags)
{
    const unsigned char *p = (const unsigned char *)s;
    bool line = false, newline = false, space = false;
    char prev[2] = {0, 0}; /* the last two bytes written on this line */
    int rc = 0;
    while (*p && rc == 0) {
        int kind;
        size_t n = next_cp(p, &kind);
        if (kind == CP_NEWLINE && (flags & T_MULTILINE)) {
            newline = newline || line;
            space = false;
            line = false;
        } else if (kind == CP_NEWLINE || kind == CP_SPACE) {
            space = space || line;
        } else {
            if (newline || space) {
                rc = hk_buf_append(b, newline ? "\n" : " ", 1);
                prev[0] = newline ? 0 : prev[1];
                prev[1] = newline ? 0 : ' ';
                newline = space = false;
            }
            const char *out = (const char *)p;
            size_t len = n;
            if (kind == CP_INVALID) {
                out = "\xef\xbf\xbd";
                len = 3;
            } else if ((flags & T_ESCAPE) && (*p == '&' || *p == '<' || *p == '>')) {
                out = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : "&gt;";
                len = strlen(out);
            } else if ((flags & T_NO_ARROW) && *p == '>' && prev[0] == '-' && prev[1] == '-') {
                out = " >";
                len = 2;
            }
            if (rc == 0)
                rc = hk_buf_append(b, out, len);
            prev[0] = len >= 2 ? out[len - 2] : prev[1];
            prev[1] = out[len - 1];
            line = true;
        }
        p += n;
    }
    return rc;
}

/* ---- times ---- */

/* Seconds → milliseconds, clamped to [0, MAX_MS]; NaN and infinities are 0 (as in JSON). */
static int64_t to_ms(double s)
{
    if (!isfinite(s) || s <= 0)
        return 0;
    if (s * 1000.0 >= (double)MAX_MS)
        return MAX_MS;
    return (int64_t)llround(s * 1000.0);
}

/* A cue's start and end in ms, with end > start. */
static void cue_times(const hk_segment_view_t *v, int64_t *start, int64_t *end)
{
    *start = to_ms(v->start);
    *end = to_ms(v->end);
    if (*start >= MAX_MS)
        *start = MAX_MS - 1;
    if (*end <= *start)
        *end = *start + 1;
}

/* "HH:MM:SS<sep>mmm" (hours widen past 99). */
static int put_time(hk_buf_t *b, int64_t ms, char sep)
{
    return hk_buf_printf(b, "%02lld:%02d:%02d%c%03d", (long long)(ms / 3600000),
                         (int)(ms / 60000 % 60), (int)(ms / 1000 % 60), sep, (int)(ms % 1000));
}

/* ---- renderers ---- */

static int render_txt(hk_buf_t *b, const hk_segment_view_t *v)
{
    int64_t s = to_ms(v->start) / 1000;
    int rc = hk_buf_printf(b, "[%02lld:%02d:%02d] ", (long long)(s / 3600), (int)(s / 60 % 60),
                           (int)(s % 60));
    if (rc == 0 && has_visible(v->speaker)) {
        rc = put_text(b, v->speaker, 0);
        if (rc == 0)
            rc = hk_buf_append(b, ": ", 2);
    }
    if (rc == 0)
        rc = put_text(b, v->text, 0);
    return rc ? rc : hk_buf_append(b, "\n", 1);
}

static int render_srt(hk_buf_t *b, const hk_segment_view_t *v, size_t number)
{
    int64_t start, end;
    cue_times(v, &start, &end);
    int rc = hk_buf_printf(b, "%zu\n", number);
    if (rc == 0)
        rc = put_time(b, start, ',');
    if (rc == 0)
        rc = hk_buf_append(b, " --> ", 5);
    if (rc == 0)
        rc = put_time(b, end, ',');
    if (rc == 0)
        rc = hk_buf_append(b, "\n", 1);
    if (rc == 0 && has_visible(v->speaker)) {
        rc = put_text(b, v->speaker, T_NO_ARROW);
        if (rc == 0)
            rc = hk_buf_append(b, ": ", 2);
    }
    if (rc == 0)
        rc = put_text(b, v->text, T_MULTILINE | T_NO_ARROW);
    return rc ? rc : hk_buf_append(b, "\n\n", 2);
}

static int render_vtt(hk_buf_t *b, const hk_segment_view_t *v)
{
    int64_t start, end;
    cue_times(v, &start, &end);
    int rc = put_time(b, start, '.');
    if (rc == 0)
        rc = hk_buf_append(b, " --> ", 5);
    if (rc == 0)
        rc = put_time(b, end, '.');
    if (rc == 0)
        rc = hk_buf_append(b, "\n", 1);
    /* The voice annotation runs to the first '>' and decodes character references, so escaping
     * keeps any speaker name inside it. */
    if (rc == 0 && has_visible(v->speaker)) {
        rc = hk_buf_append(b, "<v ", 3);
        size_t from = b->len;
        if (rc == 0)
            rc = put_text(b, v->speaker, T_ESCAPE);
        /* "Ann--" + ">" would put "-->" in the cue text, which ends the cue: a space between
         * (the annotation is trimmed) */
        if (rc == 0 && b->len > from && b->data[b->len - 1] == '-')
            rc = hk_buf_append(b, " ", 1);
        if (rc == 0)
            rc = hk_buf_append(b, ">", 1);
    }
    if (rc == 0)
        rc = put_text(b, v->text, T_MULTILINE | T_ESCAPE);
    return rc ? rc : hk_buf_append(b, "\n\n", 2);
}

int hk_format_render(const hk_transcript_t *t, hk_format_t f, hk_buf_t *out)
{
    if (f != HK_FORMAT_TXT && f != HK_FORMAT_SRT && f != HK_FORMAT_VTT)
        return HK_EINVAL;
    const hk_segment_view_t **p = sorted(t);
    if (t->n && !p) {
        hk_buf_dispose(out);
        return HK_ENOMEM;
    }
    int rc = 0;
    if (f == HK_FORMAT_VTT)
        rc = hk_buf_puts(out, "WEBVTT\n\n");
    size_t number = 0;
    for (size_t i = 0; rc == 0 && i < t->n; i++) {
        if (!has_visible(p[i]->text))
            continue;
        if (f == HK_FORMAT_TXT)
            rc = render_txt(out, p[i]);
        else if (f == HK_FORMAT_SRT)
            rc = render_srt(out, p[i], ++number);
        else
            rc = render_vtt(out, p[i]);
    }
    free(p);
    return rc;
}

/* ---- JSON ---- */

/* A JSON string of s, with invalid UTF-8 replaced by U+FFFD (json_string refuses it). */
static json_t *utf8_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    hk_buf_t b;
    hk_buf_init(&b, 4 * strlen(s) + 1);
    const unsigned char *p = (const unsigned char *)s;
    int rc = hk_buf_append(&b, "", 0);
    while (*p && rc == 0) {
        int kind;
        size_t n = next_cp(p, &kind);
        rc = kind == CP_INVALID ? hk_buf_append(&b, "\xef\xbf\xbd", 3) : hk_buf_append(&b, p, n);
        p += n;
    }
    j = rc == 0 ? json_stringn(b.data, b.len) : NULL;
    hk_buf_dispose(&b);
    return j;
}

static json_t *opt_string(const char *s)
{
    return s ? utf8_string(s) : json_null();
}

/* Seconds rounded to the millisecond, like the live updates (hk_segment_json), so a client that
 * merges both sees one value. */
static json_t *seconds_real(double x)
{
    double r = round(x * 1000.0) / 1000.0; /* infinite past ~1.8e305: such a time is shown as 0 */
    return json_real(isfinite(r) ? r : 0.0);
}

json_t *hk_format_segment_json(const hk_segment_view_t *v)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    /* One statement per key: the keys appear in this order in the output. */
    int rc = json_object_set_new(o, "segment_id", utf8_string(v->segment_id));
    rc |= json_object_set_new(o, "start", seconds_real(v->start));
    rc |= json_object_set_new(o, "end", seconds_real(v->end));
    rc |= json_object_set_new(o, "text", utf8_string(v->text));
    rc |= json_object_set_new(o, "speaker", opt_string(v->speaker));
    rc |= json_object_set_new(o, "language", opt_string(v->language));
    rc |= json_object_set_new(o, "completed", json_boolean(v->completed));
    rc |= hk_json_set_time_or_null(o, "absolute_start_time", v->absolute_start_ms);
    rc |= hk_json_set_time_or_null(o, "absolute_end_time", v->absolute_end_ms);
    rc |= hk_json_set_time_or_null(o, "updated_at", v->updated_at);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *hk_format_json(const hk_transcript_t *t)
{
    const hk_segment_view_t **p = sorted(t);
    json_t *arr = json_array();
    if (!arr || (t->n && !p)) {
        free(p);
        json_decref(arr);
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (json_array_append_new(arr, hk_format_segment_json(p[i]))) {
            json_decref(arr);
            arr = NULL;
            break;
        }
    }
    free(p);
    return arr;
}

json_t *hk_format_meeting_ref(int64_t id, const char *platform, const char *native_id)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "platform", json_string(platform));
    json_object_set_new(o, "native_id", json_string(native_id));
    return o;
}

char *hk_format_live_message(const char *type, int64_t id, const char *platform,
                             const char *native_id, json_t *payload, size_t *len)
{
    json_t *msg = json_object();
    json_object_set_new(msg, "type", json_string(type));
    json_object_set_new(msg, "meeting", hk_format_meeting_ref(id, platform, native_id));
    json_object_set_new(msg, "payload", payload);
    hk_json_set_time_or_null(msg, "ts", hk_time_now_ms());
    char *s = json_dumps(msg, HK_FORMAT_JSON_FLAGS);
    json_decref(msg);
    *len = s ? strlen(s) : 0;
    return s;
}
