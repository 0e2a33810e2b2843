/* Transcripts API: a meeting's segments (stored and still-mutable) as JSON, txt, SRT or WebVTT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/api.h"
#include "core/log.h"
#include "pipeline/formats.h"

/* Rendered txt/srt/vtt documents stop here (a week-long meeting needs about a tenth of it). */
#define TRANSCRIPT_MAX_BYTES ((size_t)256 << 20)

/* Segments of one meeting, owned, with the views that point into them. */
typedef struct {
    hk_segment_t *stored, *live;
    size_t nstored, nlive;
    bool *live_completed; /* nlive flags, or NULL */
    hk_segment_view_t *views;
    size_t nviews;
} transcript_src_t;

static void src_dispose(transcript_src_t *s)
{
    hk_store_free_segments(s->stored, s->nstored);
    hk_store_free_segments(s->live, s->nlive);
    free(s->live_completed);
    free(s->views);
}

/*
 * Collects the meeting's transcript: stored segments (completed) merged with the live pipeline's
 * still-mutable ones, a live segment replacing the stored one with the same segment_id.
 */
static int collect(hk_app_t *app, const hk_meeting_t *m, transcript_src_t *s)
{
    memset(s, 0, sizeof(*s));
    /* Live first: a segment stored (and dropped from the live set) between the two reads is then
     * seen at least once, in the live copy or in the store. */
    int rc = 0;
    if (app->live_segments)
        rc = app->live_segments(app, m->id, &s->live, &s->live_completed, &s->nlive);
    if (rc == 0)
        rc = hk_store_segments_list(app->store, m->id, &s->stored, &s->nstored);
    if (rc)
        return rc;
    return hk_transcript_merge(s->stored, s->nstored, s->live, s->live_completed, s->nlive,
                               m->start_time, &s->views, &s->nviews);
}

/* Copies into out up to maxlen characters of s: those safe in a quoted filename, '_' for others. */
static void safe_name(char *out, size_t cap, const char *s, size_t maxlen)
{
    size_t n = 0;
    for (; s[n] && n < maxlen && n + 1 < cap; n++) {
        char ch = s[n];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        out[n] = ok ? ch : '_';
    }
    out[n] = '\0';
}

static void set_disposition(hk_ctx_t *c, const hk_meeting_t *m, hk_format_t f)
{
    char platform[33], native[101];
    safe_name(platform, sizeof(platform), m->platform, 32);
    safe_name(native, sizeof(native), m->native_meeting_id, 100);
    snprintf(c->extra_headers, sizeof(c->extra_headers),
             "Content-Disposition: inline; filename=\"%s-%s-%lld.%s\"\r\n", platform, native,
             (long long)m->id, hk_format_extension(f));
}

static void respond_json(hk_ctx_t *c, const hk_meeting_t *m, const hk_transcript_t *t)
{
    json_t *o = hk_api_meeting_json(c->app, m);
    json_t *segments = hk_format_json(t);
    char *body = NULL;
    if (o && segments && json_object_set_new(o, "segments", segments) == 0)
        body = json_dumps(o, HK_FORMAT_JSON_FLAGS);
    else
        json_decref(segments);
    json_decref(o);
    if (!body) {
        hk_api_error(c, 500, "could not encode the transcript (request %s)", c->req->request_id);
        return;
    }
    hk_api_raw(c, 200, hk_format_content_type(HK_FORMAT_JSON), body, strlen(body));
}

static void respond_document(hk_ctx_t *c, const hk_meeting_t *m, const hk_transcript_t *t,
                             hk_format_t f)
{
    hk_buf_t b;
    hk_buf_init(&b, TRANSCRIPT_MAX_BYTES);
    int rc = hk_format_render(t, f, &b);
    if (rc == 0 && !b.data)
        rc = hk_buf_append(&b, "", 0); /* an empty document still needs a body to hand over */
    if (rc) {
        hk_log_error("api",
                     "op=render_transcript meeting_id=%lld format=%s err=\"%s\" request_id=%s",
                     (long long)m->id, hk_format_extension(f), hk_strerror(rc), c->req->request_id);
        hk_api_error(c, 500, "could not render the transcript as %s (request %s)",
                     hk_format_extension(f), c->req->request_id);
        return;
    }
    size_t len = 0;
    char *body = hk_buf_steal(&b, &len);
    hk_api_raw(c, 200, hk_format_content_type(f), body, len);
    set_disposition(c, m, f);
}

static void get_transcript(hk_ctx_t *c)
{
    hk_format_t f = HK_FORMAT_JSON;
    char name[16];
    int rc = hk_http_query_get(c->req, "format", name, sizeof(name));
    if (rc != HK_ENOTFOUND && (rc != 0 || hk_format_parse(name, &f) != 0)) {
        hk_api_error(c, 422, "format: must be one of json, txt, srt, vtt");
        return;
    }
    hk_meeting_t m;
    if (hk_api_find_meeting(c, &m))
        return;
    transcript_src_t src;
    rc = collect(c->app, &m, &src);
    if (rc) {
        hk_api_store_error(c, rc, "transcript");
    } else {
        hk_transcript_t t = {src.views, src.nviews};
        if (f == HK_FORMAT_JSON)
            respond_json(c, &m, &t);
        else
            respond_document(c, &m, &t, f);
    }
    src_dispose(&src);
    hk_meeting_dispose(&m);
}

const hk_api_route_t hk_transcripts_routes[] = {
    {"GET", "/transcripts/{platform}/{native_id}", get_transcript, HK_ROUTE_USER, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
