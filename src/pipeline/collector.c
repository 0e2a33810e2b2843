/* Live transcripts: stable segment ids, speaker assignment, change-only publishing, batched
 * durable writes. The loop thread owns all mutation; `mu` lets workers take snapshots. */
#include "pipeline/collector.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/json.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "pipeline/formats.h"

typedef struct {
    hk_segment_t seg; /* owned strings */
    bool completed;
    bool speaker_fixed; /* given by the source: never reassigned */
    uint64_t version;   /* bumped on every change */
    uint64_t stored_version;
} live_seg_t;

/* One speaking interval; `who` indexes the meeting's speaker names (lt->names). */
typedef struct {
    uint32_t who;
    bool open; /* still speaking: the interval reaches every later time */
    double start, end;
} spk_t;

#define NO_NAME UINT32_MAX

struct hk_live_s {
    hk_collector_t *c;
    int64_t meeting_id;
    char *platform, *native_id;
    int64_t t0;
    int refs;
    live_seg_t *segs;
    size_t nsegs, cap;
    spk_t *spk;
    size_t nspk, spk_cap;
    /* Distinct speaker names, in the order people first spoke (so an id also breaks ties), with
     * an open-addressing index (slot = id + 1, 0 = empty) and assign_speaker's scratch sums. */
    char **names;
    size_t nnames, names_cap;
    uint32_t *index;
    size_t index_cap;
    double *acc;
    uint32_t *touched;
    hk_live_t *next;
};

typedef struct {
    int64_t meeting_id;
    char *segment_id; /* borrowed from batch[i].segment_id */
    uint64_t version;
} batch_ref_t;

struct hk_collector_s {
    uv_loop_t *loop;
    hk_store_t *store;
    hk_bus_t *bus;
    hk_collector_config_t cfg;
    pthread_mutex_t mu;
    hk_live_t *lives;
    uv_timer_t timer;
    uv_work_t work;
    bool flushing;
    bool closing;
    hk_segment_t *batch;
    batch_ref_t *refs;
    size_t nbatch;
    int batch_rc;
    _Atomic uint64_t n_live, n_published, n_stored, n_failures;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool streq_null(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

json_t *hk_segment_json(const hk_segment_t *s, bool completed, int64_t t0_ms)
{
    /* One rendering for live frames and GET /transcripts (formats.c), so a client upserting
     * frames holds byte-for-byte what the REST transcript returns. */
    hk_segment_view_t v = {
        .segment_id = s->segment_id,
        .start = s->start,
        .end = s->end,
        .text = s->text ? s->text : "",
        .speaker = s->speaker,
        .language = s->language,
        .completed = completed,
        .absolute_start_ms = hk_format_absolute_ms(t0_ms, s->start),
        .absolute_end_ms = hk_format_absolute_ms(t0_ms, s->end),
        .updated_at = s->updated_at,
    };
    return hk_format_segment_json(&v);
}

/* ---- flushing completed segments to the store ---- */

static void flush_work_cb(uv_work_t *w)
{
    hk_collector_t *c = w->data;
    c->batch_rc = hk_store_segments_put(c->store, c->batch, c->nbatch);
}

static void free_live(hk_live_t *lt)
{
    for (size_t i = 0; i < lt->nsegs; i++)
        hk_segment_dispose(&lt->segs[i].seg);
    for (size_t i = 0; i < lt->nnames; i++)
        free(lt->names[i]);
    free(lt->names);
    free(lt->index);
    free(lt->acc);
    free(lt->touched);
    free(lt->segs);
    free(lt->spk);
    free(lt->platform);
    free(lt->native_id);
    free(lt);
}

/* Drops stored completed segments, and live transcripts nobody references any more. Holds mu. */
static void evict_locked(hk_collector_t *c)
{
    for (hk_live_t **pp = &c->lives; *pp;) {
        hk_live_t *lt = *pp;
        size_t keep = 0;
        for (size_t i = 0; i < lt->nsegs; i++) {
            live_seg_t *s = &lt->segs[i];
            if (s->completed && s->stored_version == s->version)
                hk_segment_dispose(&s->seg);
            else
                lt->segs[keep++] = *s;
        }
        lt->nsegs = keep;
        if (lt->refs == 0 && lt->nsegs == 0) {
            *pp = lt->next;
            free_live(lt);
            atomic_fetch_sub(&c->n_live, 1);
        } else {
            pp = &lt->next;
        }
    }
}

static void flush_after_cb(uv_work_t *w, int status)
{
    hk_collector_t *c = w->data;
    bool ok = status == 0 && c->batch_rc == 0;
    pthread_mutex_lock(&c->mu);
    if (ok) {
        for (size_t i = 0; i < c->nbatch; i++) {
            for (hk_live_t *lt = c->lives; lt; lt = lt->next) {
                if (lt->meeting_id != c->refs[i].meeting_id)
                    continue;
                for (size_t j = 0; j < lt->nsegs; j++)
                    if (strcmp(lt->segs[j].seg.segment_id, c->refs[i].segment_id) == 0 &&
                        lt->segs[j].version >= c->refs[i].version)
                        lt->segs[j].stored_version = c->refs[i].version;
            }
        }
        atomic_fetch_add(&c->n_stored, c->nbatch);
    } else {
        atomic_fetch_add(&c->n_failures, 1);
        hk_log_error("collector", "op=store_segments n=%zu err=\"%s\"", c->nbatch,
                     hk_strerror(c->batch_rc));
    }
    evict_locked(c);
    pthread_mutex_unlock(&c->mu);
    hk_store_free_segments(c->batch, c->nbatch);
    free(c->refs);
    c->batch = NULL;
    c->refs = NULL;
    c->nbatch = 0;
    c->flushing = false;
}

/* Copies every completed, not yet stored segment into the batch. Holds mu. Without a store there
 * is nothing to write: completed segments then stay live until the collector is freed. */
static size_t collect_locked(hk_collector_t *c)
{
    if (!c->store)
        return 0;
    size_t n = 0;
    for (hk_live_t *lt = c->lives; lt; lt = lt->next)
        for (size_t i = 0; i < lt->nsegs; i++)
            n += lt->segs[i].completed && lt->segs[i].stored_version != lt->segs[i].version;
    if (n == 0)
        return 0;
    c->batch = calloc(n, sizeof(*c->batch));
    c->refs = calloc(n, sizeof(*c->refs));
    if (!c->batch || !c->refs) {
        free(c->batch);
        free(c->refs);
        c->batch = NULL;
        c->refs = NULL;
        return 0;
    }
    size_t k = 0;
    for (hk_live_t *lt = c->lives; lt; lt = lt->next) {
        for (size_t i = 0; i < lt->nsegs; i++) {
            live_seg_t *s = &lt->segs[i];
            if (!s->completed || s->stored_version == s->version)
                continue;
            hk_segment_t *d = &c->batch[k];
            *d = s->seg;
            d->segment_id = strdup(s->seg.segment_id);
            d->text = strdup(s->seg.text ? s->seg.text : "");
            d->speaker = dup_or_null(s->seg.speaker);
            d->language = dup_or_null(s->seg.language);
            c->refs[k] = (batch_ref_t){lt->meeting_id, d->segment_id, s->version};
            k++;
        }
    }
    c->nbatch = k;
    return k;
}

static void timer_cb(uv_timer_t *t)
{
    hk_collector_t *c = t->data;
    if (c->flushing)
        return;
    pthread_mutex_lock(&c->mu);
    size_t n = collect_locked(c);
    if (n == 0)
        evict_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (n == 0)
        return;
    c->flushing = true;
    c->work.data = c;
    if (uv_queue_work(c->loop, &c->work, flush_work_cb, flush_after_cb) != 0) {
        c->batch_rc = HK_ESTORE;
        flush_after_cb(&c->work, 0);
    }
}

hk_collector_t *hk_collector_new(uv_loop_t *loop, hk_store_t *store, hk_bus_t *bus,
                                 const hk_collector_config_t *cfg)
{
    hk_collector_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->store = store;
    c->bus = bus;
    c->cfg = *cfg;
    if (c->cfg.flush_interval_ms <= 0 || c->cfg.flush_interval_ms > 1000)
        c->cfg.flush_interval_ms = 250;
    if (c->cfg.max_live_segments == 0)
        c->cfg.max_live_segments = 10000;
    if (c->cfg.max_speaker_events == 0)
        c->cfg.max_speaker_events = 10000;
    pthread_mutex_init(&c->mu, NULL);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, timer_cb, (uint64_t)c->cfg.flush_interval_ms,
                   (uint64_t)c->cfg.flush_interval_ms);
    return c;
}

static void timer_closed_cb(uv_handle_t *h)
{
    hk_collector_t *c = h->data;
    pthread_mutex_lock(&c->mu);
    while (c->lives) {
        hk_live_t *lt = c->lives;
        c->lives = lt->next;
        free_live(lt);
    }
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void hk_collector_free(hk_collector_t *c)
{
    if (!c)
        return;
    uv_timer_stop(&c->timer);
    /* Shutdown: write what is pending now, on this thread; a flush already in flight has its
     * after-callback run by the loop before the timer's close callback. */
    if (!c->flushing) {
        pthread_mutex_lock(&c->mu);
        size_t n = collect_locked(c);
        pthread_mutex_unlock(&c->mu);
        if (n) {
            c->work.data = c;
            c->batch_rc = hk_store_segments_put(c->store, c->batch, c->nbatch);
            flush_after_cb(&c->work, 0);
        }
    }
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
}

int hk_collector_attach(hk_collector_t *c, const hk_meeting_t *m, hk_live_t **out)
{
    pthread_mutex_lock(&c->mu);
    for (hk_live_t *lt = c->lives; lt; lt = lt->next) {
        if (lt->meeting_id == m->id) {
            lt->refs++;
            pthread_mutex_unlock(&c->mu);
            *out = lt;
            return 0;
        }
    }
    hk_live_t *lt = calloc(1, sizeof(*lt));
    if (!lt || !(lt->platform = strdup(m->platform)) ||
        !(lt->native_id = strdup(m->native_meeting_id))) {
        pthread_mutex_unlock(&c->mu);
        if (lt) {
            free(lt->platform);
            free(lt);
        }
        return HK_ENOMEM;
    }
    lt->c = c;
    lt->meeting_id = m->id;
    lt->t0 = m->start_time ? m->start_time : hk_time_now_ms();
    lt->refs = 1;
    lt->next = c->lives;
    c->lives = lt;
    atomic_fetch_add(&c->n_live, 1);
    pthread_mutex_unlock(&c->mu);
    *out = lt;
    return 0;
}

void hk_collector_release(hk_live_t *lt)
{
    if (!lt)
        return;
    pthread_mutex_lock(&lt->c->mu);
    lt->refs--;
    pthread_mutex_unlock(&lt->c->mu);
    /* Freed by the next flush tick once its segments are stored. */
}

int64_t hk_live_t0(const hk_live_t *lt)
{
    return lt->t0;
}

static uint64_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* The id of `name`, or NO_NAME; with `add`, a new name gets the next id (NO_NAME when the
 * meeting already has `max` names or memory is short). */
static uint32_t name_id(hk_live_t *lt, const char *name, bool add, size_t max)
{
    size_t mask = lt->index_cap - 1;
    for (size_t i = lt->index_cap ? name_hash(name) & mask : 0; lt->index_cap; i = (i + 1) & mask) {
        uint32_t slot = lt->index[i];
        if (slot == 0)
            break;
        if (strcmp(lt->names[slot - 1], name) == 0)
            return slot - 1;
    }
    if (!add || lt->nnames >= max)
        return NO_NAME;
    if (lt->nnames == lt->names_cap) {
        size_t ncap = lt->names_cap ? lt->names_cap * 2 : 8;
        char **nn = realloc(lt->names, ncap * sizeof(*nn));
        if (nn)
            lt->names = nn;
        double *na = realloc(lt->acc, ncap * sizeof(*na));
        if (na)
            lt->acc = na;
        uint32_t *nt = realloc(lt->touched, ncap * sizeof(*nt));
        if (nt)
            lt->touched = nt;
        if (!nn || !na || !nt)
            return NO_NAME;
        for (size_t i = lt->names_cap; i < ncap; i++)
            lt->acc[i] = 0;
        lt->names_cap = ncap;
    }
    if ((lt->nnames + 1) * 2 > lt->index_cap) { /* at most half full: rebuild twice as large */
        size_t ncap = lt->index_cap ? lt->index_cap * 2 : 16;
        uint32_t *ni = calloc(ncap, sizeof(*ni));
        if (!ni)
            return NO_NAME;
        for (size_t k = 0; k < lt->nnames; k++) {
            size_t i = name_hash(lt->names[k]) & (ncap - 1);
            while (ni[i])
                i = (i + 1) & (ncap - 1);
            ni[i] = (uint32_t)k + 1;
        }
        free(lt->index);
        lt->index = ni;
        lt->index_cap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return NO_NAME;
    uint32_t id = (uint32_t)lt->nnames++;
    lt->names[id] = copy;
    size_t i = name_hash(name) & (lt->index_cap - 1);
    while (lt->index[i])
        i = (i + 1) & (lt->index_cap - 1);
    lt->index[i] = id + 1;
    return id;
}

/* Who spoke most during [start, end]: the name with the largest total overlap, or NULL; on a tie,
 * whoever spoke first in the meeting (the smaller id). Called for every segment update: one pass
 * over the intervals, summing per name id in lt->acc (only the ids touched are reset). */
static const char *assign_speaker(hk_live_t *lt, double start, double end)
{
    size_t nt = 0;
    for (size_t i = 0; i < lt->nspk; i++) {
        const spk_t *iv = &lt->spk[i];
        double e = iv->open ? end : iv->end;
        double ov = fmin(e, end) - fmax(iv->start, start);
        if (ov <= 0)
            continue;
        if (lt->acc[iv->who] == 0)
            lt->touched[nt++] = iv->who;
        lt->acc[iv->who] += ov;
    }
    uint32_t best = NO_NAME;
    double best_total = 0;
    for (size_t k = 0; k < nt; k++) {
        uint32_t id = lt->touched[k];
        if (best == NO_NAME || lt->acc[id] > best_total ||
            (lt->acc[id] == best_total && id < best)) {
            best = id;
            best_total = lt->acc[id];
        }
        lt->acc[id] = 0;
    }
    return best == NO_NAME ? NULL : lt->names[best];
}

static void publish(hk_live_t *lt, json_t *segments)
{
    hk_collector_t *c = lt->c;
    size_t n = json_array_size(segments);
    if (n == 0 || !c->bus) {
        json_decref(segments);
        return;
    }
    json_t *payload = json_object();
    json_object_set_new(payload, "segments", segments);
    size_t len;
    char *s = hk_format_live_message("transcript.mutable", lt->meeting_id, lt->platform,
                                     lt->native_id, payload, &len);
    if (s) {
        hk_bus_publish(c->bus, lt->meeting_id, s, len);
        atomic_fetch_add(&c->n_published, n);
    }
    free(s);
}

static live_seg_t *find_seg(hk_live_t *lt, const char *id)
{
    for (size_t i = 0; i < lt->nsegs; i++)
        if (strcmp(lt->segs[i].seg.segment_id, id) == 0)
            return &lt->segs[i];
    return NULL;
}

/* Applies one update under mu; returns true when the segment changed. */
static int apply_locked(hk_live_t *lt, const hk_seg_update_t *u, live_seg_t **changed)
{
    char id[64];
    snprintf(id, sizeof(id), "%lld:%lld:%u", (long long)lt->meeting_id, (long long)u->session_id,
             u->seq);
    live_seg_t *s = find_seg(lt, id);
    *changed = NULL;
    if (!s) {
        if (lt->nsegs >= lt->c->cfg.max_live_segments)
            return HK_ELIMIT;
        if (lt->nsegs == lt->cap) {
            size_t ncap = lt->cap ? lt->cap * 2 : 16;
            live_seg_t *p = realloc(lt->segs, ncap * sizeof(*p));
            if (!p)
                return HK_ENOMEM;
            lt->segs = p;
            lt->cap = ncap;
        }
        s = &lt->segs[lt->nsegs++];
        memset(s, 0, sizeof(*s));
        s->seg.segment_id = strdup(id);
        s->seg.meeting_id = lt->meeting_id;
        s->seg.session_id = u->session_id;
        s->seg.created_at = hk_time_now_ms();
        /* version 0 = not yet filled; versions start at 1, so stored_version 0 = never stored */
    }
    const char *speaker = u->speaker;
    s->speaker_fixed = u->speaker != NULL;
    if (!speaker)
        speaker = assign_speaker(lt, u->start, u->end);
    bool same = s->version > 0 && s->seg.start == u->start && s->seg.end == u->end &&
                s->completed == u->completed && streq_null(s->seg.text, u->text) &&
                streq_null(s->seg.speaker, speaker) && streq_null(s->seg.language, u->language);
    if (same)
        return 0;
    s->seg.start = u->start;
    s->seg.end = u->end;
    char *text = strdup(u->text ? u->text : "");
    char *spk = dup_or_null(speaker);
    char *lang = dup_or_null(u->language);
    free(s->seg.text);
    free(s->seg.speaker);
    free(s->seg.language);
    s->seg.text = text;
    s->seg.speaker = spk;
    s->seg.language = lang;
    s->completed = u->completed;
    s->seg.updated_at = hk_time_now_ms();
    s->version++;
    *changed = s;
    return 0;
}

int hk_collector_put(hk_live_t *lt, const hk_seg_update_t *u, size_t n)
{
    json_t *changed = json_array();
    int rc = 0;
    pthread_mutex_lock(&lt->c->mu);
    for (size_t i = 0; i < n; i++) {
        live_seg_t *s;
        int r = apply_locked(lt, &u[i], &s);
        if (r) {
            rc = r;
            continue;
        }
        if (s)
            json_array_append_new(changed, hk_segment_json(&s->seg, s->completed, lt->t0));
    }
    pthread_mutex_unlock(&lt->c->mu);
    if (rc)
        hk_log_warn("collector", "meeting_id=%lld op=put err=\"%s\"", (long long)lt->meeting_id,
                    hk_strerror(rc));
    publish(lt, changed);
    return rc;
}

void hk_collector_complete_session(hk_live_t *lt, int64_t session_id)
{
    json_t *changed = json_array();
    pthread_mutex_lock(&lt->c->mu);
    for (size_t i = 0; i < lt->nsegs; i++) {
        live_seg_t *s = &lt->segs[i];
        if (s->seg.session_id != session_id || s->completed)
            continue;
        s->completed = true;
        s->seg.updated_at = hk_time_now_ms();
        s->version++;
        json_array_append_new(changed, hk_segment_json(&s->seg, true, lt->t0));
    }
    pthread_mutex_unlock(&lt->c->mu);
    publish(lt, changed);
}

void hk_collector_speaker(hk_live_t *lt, const char *name, double t, bool start)
{
    if (!name || !*name)
        return;
    hk_collector_t *c = lt->c;
    json_t *changed = json_array();
    pthread_mutex_lock(&c->mu);
    uint32_t who = name_id(lt, name, start, c->cfg.max_speaker_events);
    if (who == NO_NAME) {
        /* an end for someone who never started, or past the cap on distinct names */
    } else if (start) {
        if (lt->nspk == c->cfg.max_speaker_events) { /* forget the oldest quarter at once */
            size_t drop = lt->nspk / 4 ? lt->nspk / 4 : 1;
            memmove(lt->spk, lt->spk + drop, (lt->nspk - drop) * sizeof(*lt->spk));
            lt->nspk -= drop;
        }
        if (lt->nspk == lt->spk_cap) { /* doubling: not one realloc per event */
            size_t ncap = lt->spk_cap ? lt->spk_cap * 2 : 16;
            spk_t *p = realloc(lt->spk, ncap * sizeof(*p));
            if (p) {
                lt->spk = p;
                lt->spk_cap = ncap;
            }
        }
        if (lt->nspk < lt->spk_cap)
            lt->spk[lt->nspk++] = (spk_t){.who = who, .open = true, .start = t, .end = t};
    } else {
        /* Close this person's latest open interval. */
        for (size_t i = lt->nspk; i-- > 0;) {
            if (lt->spk[i].open && lt->spk[i].who == who) {
                lt->spk[i].open = false;
                lt->spk[i].end = t < lt->spk[i].start ? lt->spk[i].start : t;
                break;
            }
        }
    }
    for (size_t i = 0; i < lt->nsegs; i++) {
        live_seg_t *s = &lt->segs[i];
        if (s->completed || s->speaker_fixed)
            continue;
        const char *spk = assign_speaker(lt, s->seg.start, s->seg.end);
        if (streq_null(spk, s->seg.speaker))
            continue;
        char *d = dup_or_null(spk);
        free(s->seg.speaker);
        s->seg.speaker = d;
        s->seg.updated_at = hk_time_now_ms();
        s->version++;
        json_array_append_new(changed, hk_segment_json(&s->seg, false, lt->t0));
    }
    pthread_mutex_unlock(&c->mu);
    publish(lt, changed);
}

int hk_collector_snapshot(hk_collector_t *c, int64_t meeting_id, hk_segment_t **out,
                          bool **completed, size_t *n)
{
    *out = NULL;
    *completed = NULL;
    *n = 0;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (hk_live_t *lt = c->lives; lt; lt = lt->next) {
        if (lt->meeting_id != meeting_id || lt->nsegs == 0)
            continue;
        hk_segment_t *v = calloc(lt->nsegs, sizeof(*v));
        bool *done = calloc(lt->nsegs, sizeof(*done));
        if (!v || !done) {
            free(v);
            free(done);
            rc = HK_ENOMEM;
            break;
        }
        for (size_t i = 0; i < lt->nsegs; i++) {
            v[i] = lt->segs[i].seg;
            v[i].segment_id = strdup(lt->segs[i].seg.segment_id);
            v[i].text = strdup(lt->segs[i].seg.text ? lt->segs[i].seg.text : "");
            v[i].speaker = dup_or_null(lt->segs[i].seg.speaker);
            v[i].language = dup_or_null(lt->segs[i].seg.language);
            done[i] = lt->segs[i].completed;
        }
        *out = v;
        *completed = done;
        *n = lt->nsegs;
        break;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void hk_collector_stats(hk_collector_t *c, hk_collector_stats_t *out)
{
    out->live_meetings = atomic_load(&c->n_live);
    out->segments_published = atomic_load(&c->n_published);
    out->segments_stored = atomic_load(&c->n_stored);
    out->store_failures = atomic_load(&c->n_failures);
}
