/* Operations endpoints: /healthz, /readyz, /metrics (Prometheus text format), and the request
 * metrics they report. Metrics are owned by the loop thread: no locks. */
#include <stdlib.h>
#include <string.h>
#include "api/api.h"
#include "core/buf.h"
#include "core/timeutil.h"
#include "api/ingest.h"
#include "asr/engine.h"
#include "bus/bus.h"
#include "pipeline/collector.h"
#include "webhook/delivery.h"

#define MAX_SERIES 512
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct {
    const char *route; /* router-owned pattern or "unmatched" */
    const char *method;
    int status;
    uint64_t count;
} series_t;

struct hk_metrics_s {
    series_t series[MAX_SERIES];
    size_t nseries;
    uint64_t overflow; /* requests whose series did not fit */
    uint64_t hist[NBUCKETS + 1];
    double hist_sum;
    uint64_t hist_count;
    int64_t started_ms;
};

hk_metrics_t *hk_metrics_new(void)
{
    hk_metrics_t *m = calloc(1, sizeof(*m));
    if (m)
        m->started_ms = hk_time_now_ms();
    return m;
}

void hk_metrics_free(hk_metrics_t *m)
{
    free(m);
}

/* Methods are interned so that a series never points into a freed request. */
static const char *intern_method(const char *m)
{
    static const char *const known[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
    for (size_t i = 0; i < HK_ARRAY_SIZE(known); i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "OTHER";
}

void hk_api_on_response(const hk_http_req_t *req, int status, size_t bytes, uint64_t latency_ns,
                        void *data)
{
    HK_UNUSED(bytes);
    hk_app_t *app = data;
    hk_metrics_t *m = app->metrics;
    /* The route pattern is owned by the router, which outlives every request. */
    const char *route = req->route ? req->route : "unmatched";
    const char *method = intern_method(req->method ? req->method : "OTHER");
    size_t i;
    for (i = 0; i < m->nseries; i++) {
        series_t *s = &m->series[i];
        if (s->status == status && s->route == route && s->method == method)
            break;
    }
    if (i == m->nseries) {
        if (m->nseries == MAX_SERIES) {
            m->overflow++;
            goto hist;
        }
        m->series[i] = (series_t){route, method, status, 0};
        m->nseries++;
    }
    m->series[i].count++;
hist:;
    double secs = (double)latency_ns / 1e9;
    size_t b = 0;
    while (b < NBUCKETS && secs > buckets[b])
        b++;
    m->hist[b]++;
    m->hist_sum += secs;
    m->hist_count++;
}

static void healthz(hk_ctx_t *c)
{
    static const char body[] = "{\"status\":\"ok\"}";
    hk_api_raw(c, 200, "application/json; charset=utf-8", strdup(body), sizeof(body) - 1);
}

static void readyz(hk_ctx_t *c)
{
    if (hk_store_ping(c->app->store) != 0) {
        hk_api_error(c, 503, "storage not ready");
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ready"));
    json_object_set_new(o, "store", json_string("ok"));
    hk_api_json(c, 200, o);
}

/* The webhook engine's counters since start. */
static void webhook_metrics(hk_app_t *app, hk_buf_t *b)
{
    if (!app->webhooks)
        return;
    hk_webhook_stats_t w;
    hk_webhook_stats(app->webhooks, &w);
    hk_buf_printf(b,
                  "# HELP hark_webhook_attempts_total Webhook HTTP attempts finished, by outcome "
                  "(delivered, retrying: failed and scheduled again, failed: given up).\n"
                  "# TYPE hark_webhook_attempts_total counter\n"
                  "hark_webhook_attempts_total{outcome=\"delivered\"} %llu\n"
                  "hark_webhook_attempts_total{outcome=\"retrying\"} %llu\n"
                  "hark_webhook_attempts_total{outcome=\"failed\"} %llu\n"
                  "# HELP hark_webhook_in_flight Webhook requests on the wire.\n"
                  "# TYPE hark_webhook_in_flight gauge\nhark_webhook_in_flight %zu\n"
                  "# HELP hark_webhook_queued Claimed deliveries waiting for an endpoint slot.\n"
                  "# TYPE hark_webhook_queued gauge\nhark_webhook_queued %zu\n",
                  (unsigned long long)w.delivered, (unsigned long long)w.retrying,
                  (unsigned long long)w.failed, w.in_flight, w.queued);
}

/* The live pipeline's gauges and counters: recogniser pool and queue, collector, bus, sockets. */
static void live_metrics(hk_app_t *app, hk_buf_t *b)
{
    hk_buf_printf(b,
                  "# HELP hark_ws_connections WebSocket connections (/ws and /ws/audio) open or "
                  "closing.\n# TYPE hark_ws_connections gauge\nhark_ws_connections %zu\n",
                  hk_ws_endpoints_connections());
    if (app->bus)
        hk_buf_printf(b,
                      "# HELP hark_bus_messages_total Messages published to subscribers.\n"
                      "# TYPE hark_bus_messages_total counter\nhark_bus_messages_total %llu\n",
                      (unsigned long long)hk_bus_published(app->bus));
    if (app->collector) {
        hk_collector_stats_t cs;
        hk_collector_stats(app->collector, &cs);
        hk_buf_printf(
            b,
            "# HELP hark_live_meetings Meetings with a live transcript in memory.\n"
            "# TYPE hark_live_meetings gauge\nhark_live_meetings %llu\n"
            "# HELP hark_segments_published_total Segment updates sent live.\n"
            "# TYPE hark_segments_published_total counter\n"
            "hark_segments_published_total %llu\n"
            "# HELP hark_segments_stored_total Completed segments written.\n"
            "# TYPE hark_segments_stored_total counter\nhark_segments_stored_total %llu\n"
            "# HELP hark_segment_store_failures_total Failed segment batches (retried).\n"
            "# TYPE hark_segment_store_failures_total counter\n"
            "hark_segment_store_failures_total %llu\n",
            (unsigned long long)cs.live_meetings, (unsigned long long)cs.segments_published,
            (unsigned long long)cs.segments_stored, (unsigned long long)cs.store_failures);
    }
    if (app->asr) {
        hk_asr_stats_t st;
        hk_asr_engine_stats(app->asr, &st);
        hk_buf_printf(
            b,
            "# HELP hark_asr_decoders Recogniser decoders in the pool.\n"
            "# TYPE hark_asr_decoders gauge\nhark_asr_decoders %u\n"
            "# HELP hark_asr_busy_decoders Decoders serving a session now.\n"
            "# TYPE hark_asr_busy_decoders gauge\nhark_asr_busy_decoders %u\n"
            "# HELP hark_asr_sessions Open recognition sessions.\n"
            "# TYPE hark_asr_sessions gauge\nhark_asr_sessions %u\n"
            "# HELP hark_asr_queue_depth_sessions Sessions with audio queued and no decoder.\n"
            "# TYPE hark_asr_queue_depth_sessions gauge\nhark_asr_queue_depth_sessions %u\n"
            "# HELP hark_asr_queued_seconds Audio waiting for a decoder, seconds.\n"
            "# TYPE hark_asr_queued_seconds gauge\nhark_asr_queued_seconds %.3f\n"
            "# HELP hark_asr_queue_wait_seconds Age of the oldest queued audio now.\n"
            "# TYPE hark_asr_queue_wait_seconds gauge\nhark_asr_queue_wait_seconds %.3f\n"
            "# HELP hark_asr_queue_wait_max_seconds Longest wait for a decoder since start.\n"
            "# TYPE hark_asr_queue_wait_max_seconds gauge\nhark_asr_queue_wait_max_seconds %.3f\n"
            "# HELP hark_asr_decoded_seconds_total Audio decoded, seconds.\n"
            "# TYPE hark_asr_decoded_seconds_total counter\nhark_asr_decoded_seconds_total %.3f\n"
            "# HELP hark_asr_cpu_seconds_total Decoder CPU time.\n"
            "# TYPE hark_asr_cpu_seconds_total counter\nhark_asr_cpu_seconds_total %.3f\n"
            "# HELP hark_asr_utterances_total Final results.\n"
            "# TYPE hark_asr_utterances_total counter\nhark_asr_utterances_total %llu\n",
            st.decoders, st.busy_decoders, st.sessions, st.waiting_sessions,
            (double)st.queued_samples / 16000.0, (double)st.oldest_wait_ms / 1000.0,
            (double)st.max_wait_ms / 1000.0, (double)st.decoded_samples / 16000.0, st.decode_cpu_s,
            (unsigned long long)st.utterances);
    }
}

static void metrics(hk_ctx_t *c)
{
    hk_metrics_t *m = c->app->metrics;
    hk_buf_t b;
    hk_buf_init(&b, 4 << 20);
    hk_buf_puts(&b, "# HELP hark_http_requests_total HTTP requests answered, by route, method "
                    "and status.\n# TYPE hark_http_requests_total counter\n");
    for (size_t i = 0; i < m->nseries; i++)
        hk_buf_printf(&b,
                      "hark_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                      m->series[i].route, m->series[i].method, m->series[i].status,
                      (unsigned long long)m->series[i].count);
    hk_buf_puts(&b, "# HELP hark_http_request_duration_seconds Time from request line to response "
                    "written.\n# TYPE hark_http_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += m->hist[i];
        hk_buf_printf(&b, "hark_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[i],
                      (unsigned long long)cum);
    }
    cum += m->hist[NBUCKETS];
    hk_buf_printf(&b, "hark_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                  (unsigned long long)cum);
    hk_buf_printf(&b, "hark_http_request_duration_seconds_sum %.6f\n", m->hist_sum);
    hk_buf_printf(&b, "hark_http_request_duration_seconds_count %llu\n",
                  (unsigned long long)m->hist_count);
    hk_http_stats_t st = {0};
    if (c->app->http)
        hk_http_server_stats(c->app->http, &st);
    hk_buf_printf(&b,
                  "# HELP hark_http_open_connections Client connections open now.\n"
                  "# TYPE hark_http_open_connections gauge\nhark_http_open_connections %llu\n"
                  "# HELP hark_http_connections_total Connections accepted.\n"
                  "# TYPE hark_http_connections_total counter\nhark_http_connections_total %llu\n",
                  (unsigned long long)st.open_connections, (unsigned long long)st.accepted_total);
    hk_buf_printf(&b,
                  "# HELP hark_build_info Build information.\n# TYPE hark_build_info gauge\n"
                  "hark_build_info{version=\"%s\",revision=\"%s\"} 1\n"
                  "# HELP hark_start_time_seconds Process start time.\n"
                  "# TYPE hark_start_time_seconds gauge\nhark_start_time_seconds %lld\n",
                  HK_VERSION, HK_GIT_REV, (long long)(m->started_ms / 1000));
    live_metrics(c->app, &b);
    webhook_metrics(c->app, &b);
    if (!b.data) {
        hk_api_error(c, 500, "metrics too large");
        return;
    }
    size_t len;
    char *s = hk_buf_steal(&b, &len);
    hk_api_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8", s, len);
}

const hk_api_route_t hk_ops_routes[] = {
    {"GET", "/healthz", healthz, HK_ROUTE_INLINE, NULL},
    {"GET", "/readyz", readyz, HK_ROUTE_PUBLIC, NULL},
    {"GET", "/metrics", metrics, HK_ROUTE_INLINE, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
