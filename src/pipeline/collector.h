/* The collector: one live transcript per meeting. It receives recognition results (mutable and
 * completed segments) and speaker events, keeps segment ids stable, assigns speakers by largest
 * overlap, publishes only what changed to the bus (encoded once), and writes completed segments
 * to the store in batched transactions (at most flush_interval_ms after completion).
 * See docs/internals/collector.md.
 *
 * Threads: everything runs on the loop thread except hk_collector_snapshot(), which any thread may
 * call (a mutex guards the live segments). */
#ifndef HK_COLLECTOR_H
#define HK_COLLECTOR_H

#include <uv.h>
#include "bus/bus.h"
#include "store/store.h"

typedef struct hk_collector_s hk_collector_t;
typedef struct hk_live_s hk_live_t;

typedef struct {
    int flush_interval_ms;     /* completed → stored within this (≤ 1000) */
    size_t max_live_segments;  /* per meeting: mutable + not yet stored */
    size_t max_speaker_events; /* per meeting, oldest forgotten first */
} hk_collector_config_t;

/* One segment update from an engine. Times are seconds on the meeting's timeline. */
typedef struct {
    int64_t session_id;
    uint32_t seq; /* the segment's number within its session: the stable id part */
    double start, end;
    const char *text;
    const char *language; /* may be NULL */
    const char *speaker;  /* may be NULL: then assigned from speaker events */
    bool completed;
} hk_seg_update_t;

/* Creates a collector. store may be NULL (`hark transcribe`): completed segments are then never
 * written nor evicted, but kept live (hk_collector_snapshot returns them) until the collector is
 * freed; size cfg->max_live_segments for the whole transcript. bus may be NULL (nothing is
 * published). Returns NULL on allocation failure. Loop thread. */
hk_collector_t *hk_collector_new(uv_loop_t *loop, hk_store_t *store, hk_bus_t *bus,
                                 const hk_collector_config_t *cfg);

/* Writes every pending completed segment synchronously (shutdown), stops the timer and frees
 * the collector once its handles closed. Every live meeting must be released. NULL-safe. */
void hk_collector_free(hk_collector_t *c);

/*
 * Attaches to meeting m's live transcript (created on first attach; one per meeting), taking a
 * reference. m->start_time is the meeting's time zero (its first audio), 0 = now.
 * Returns 0 and *out, or HK_ENOMEM.
 */
int hk_collector_attach(hk_collector_t *c, const hk_meeting_t *m, hk_live_t **out);

/* Drops a reference; the live transcript goes away when unreferenced and fully stored. */
void hk_collector_release(hk_live_t *lt);

/* The meeting's time zero (epoch ms). */
int64_t hk_live_t0(const hk_live_t *lt);

/* Applies n updates; publishes one transcript.mutable message with those that changed.
 * Returns 0, or HK_ELIMIT when the live transcript is full (update dropped and logged). */
int hk_collector_put(hk_live_t *lt, const hk_seg_update_t *u, size_t n);

/* Marks every still-mutable segment of a session completed (end of its audio). */
void hk_collector_complete_session(hk_live_t *lt, int64_t session_id);

/* Records that `name` started (start=true) or stopped speaking at meeting time t (seconds);
 * mutable segments whose speaker changes as a result are republished. */
void hk_collector_speaker(hk_live_t *lt, const char *name, double t, bool start);

/*
 * Copies the live (mutable or not yet stored) segments of a meeting: *out (free with
 * hk_store_free_segments) and *completed (malloc'd flags; free()). n = 0 when the meeting is not
 * live. Any thread. Callers merging with the store must take the snapshot BEFORE reading the
 * store, so a segment stored in between is seen at least once.
 */
int hk_collector_snapshot(hk_collector_t *c, int64_t meeting_id, hk_segment_t **out,
                          bool **completed, size_t *n);

/* Counters for /metrics. Any thread (approximate). */
typedef struct {
    uint64_t live_meetings;
    uint64_t segments_published;
    uint64_t segments_stored;
    uint64_t store_failures;
} hk_collector_stats_t;
void hk_collector_stats(hk_collector_t *c, hk_collector_stats_t *out);

/* Renders one segment as the API's JSON object (api.md). New reference. */
json_t *hk_segment_json(const hk_segment_t *s, bool completed, int64_t t0_ms);

#endif
