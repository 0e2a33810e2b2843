/* Transcript rendering: a meeting's segments as JSON, plain text, SubRip (SRT) and WebVTT. */
#ifndef HK_FORMATS_H
#define HK_FORMATS_H

#include <jansson.h>
#include "core/buf.h"
#include "core/common.h"
#include "store/store.h"

/*
 * One segment as the renderers see it. Every pointer is borrowed: the view owns nothing and must
 * not outlive the strings it points to. Times are epoch milliseconds, 0 meaning unknown (null).
 */
typedef struct {
    const char *segment_id; /* stable public id; never NULL */
    double start;           /* seconds from the meeting's first audio */
    double end;
    const char *text;     /* UTF-8 (invalid bytes are rendered as U+FFFD); never NULL */
    const char *speaker;  /* may be NULL */
    const char *language; /* may be NULL */
    bool completed;       /* false: text that may still change */
    int64_t absolute_start_ms, absolute_end_ms;
    int64_t updated_at;
} hk_segment_view_t;

/* A transcript: n views (borrowed, in any order). */
typedef struct {
    const hk_segment_view_t *v;
    size_t n;
} hk_transcript_t;

/*
 * Views of a meeting's transcript: the stored segments (completed) merged with the live
 * pipeline's (`live_completed`: NULL or nlive flags), a live segment replacing the stored one with
 * the same segment_id; entries without a segment_id are skipped. Absolute times are
 * t0_ms + start/end (null when t0_ms is 0, the meeting has not started). *out (free() it) borrows
 * the segments' strings; *n views. Returns 0 or HK_ENOMEM. Any thread.
 */
int hk_transcript_merge(const hk_segment_t *stored, size_t nstored, const hk_segment_t *live,
                        const bool *live_completed, size_t nlive, int64_t t0_ms,
                        hk_segment_view_t **out, size_t *n);

typedef enum {
    HK_FORMAT_JSON,
    HK_FORMAT_TXT,
    HK_FORMAT_SRT,
    HK_FORMAT_VTT,
} hk_format_t;

/* Rendered times are capped at 9999:59:59.999 (HK_FORMAT_MAX_HOURS + 1 hours, minus 1 ms) so a
 * corrupt time cannot produce an unbounded field; real meetings end long before. Hours take more
 * than two digits past 99, which SRT and WebVTT parsers accept. */
#define HK_FORMAT_MAX_HOURS 9999

/* Parses a format name ("json", "txt", "srt", "vtt", ASCII case-insensitive). 0 or HK_EINVAL. */
int hk_format_parse(const char *name, hk_format_t *out);

/* The HTTP Content-Type of a format ("text/vtt; charset=utf-8", …) and its file extension
 * ("vtt", …). Static strings. */
const char *hk_format_content_type(hk_format_t f);
const char *hk_format_extension(hk_format_t f);

/*
 * The segments as a JSON array of segment objects ("segment_id", "start", "end", "text",
 * "speaker", "language", "completed", "absolute_start_time", "absolute_end_time", "updated_at"),
 * ordered by start then segment_id; start and end are rounded to the millisecond (non-finite: 0).
 * Returns a new reference, or NULL when out of memory. Any thread; the transcript is only read.
 */
json_t *hk_format_json(const hk_transcript_t *t);

/* Epoch ms of a point `seconds` into a meeting that started at t0_ms; 0 (unknown) when t0_ms is 0
 * or the time is not finite. Any thread. */
int64_t hk_format_absolute_ms(int64_t t0_ms, double seconds);

/* One segment object as in api.md (the same for REST and the live /ws frames). New reference,
 * NULL on allocation failure. Any thread. */
json_t *hk_format_segment_json(const hk_segment_view_t *v);

/* {"id","platform","native_id"}: how /ws messages name a meeting. New reference (NULL on
 * allocation failure). Any thread. */
json_t *hk_format_meeting_ref(int64_t id, const char *platform, const char *native_id);

/* A /ws message {"type","meeting":{…},"payload","ts"} encoded once (api.md): `payload` is stolen.
 * Returns a malloc'd string and its length, or NULL. Any thread. */
char *hk_format_live_message(const char *type, int64_t id, const char *platform,
                             const char *native_id, json_t *payload, size_t *len);

/* json_dumps flags for documents holding segment objects: 15 significant digits print times as
 * 12.34 rather than 12.339999999999999 (17 digits, jansson's default) and keep milliseconds for
 * any time below HK_FORMAT_MAX_HOURS. */
#define HK_FORMAT_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/*
 * Appends the transcript rendered as `f` (HK_FORMAT_TXT, _SRT or _VTT) to `out`, which the caller
 * initialised with its cap, ordered by start then segment_id:
 *   txt: "[HH:MM:SS] Speaker: text" lines (no "Speaker: " when there is none);
 *   srt: numbered cues "HH:MM:SS,mmm --> HH:MM:SS,mmm" / "Speaker: text", a blank line after each;
 *   vtt: "WEBVTT" then cues "HH:MM:SS.mmm --> HH:MM:SS.mmm" / "<v Speaker>text".
 * Text is made safe for each format: no blank lines inside a cue, no "-->" in cue text, VTT
 * entities escaped, control characters as spaces, invalid UTF-8 as U+FFFD. Segments whose text is
 * empty after that are left out; a cue never ends before it starts (at least 1 ms long).
 * Returns 0 (out->data stays NULL when nothing was written: a txt or srt transcript without
 * segments); HK_ETOOBIG or HK_ENOMEM (the buffer has then disposed itself); HK_EINVAL for
 * HK_FORMAT_JSON. Any thread.
 */
int hk_format_render(const hk_transcript_t *t, hk_format_t f, hk_buf_t *out);

#endif
