/* The webhook delivery engine: drains the store's outbox over HTTP with libcurl's multi interface
 * on the event loop (no thread per request), with retries, per-endpoint concurrency and per-meeting
 * order. See docs/internals/webhooks.md. */
#ifndef HK_WEBHOOK_DELIVERY_H
#define HK_WEBHOOK_DELIVERY_H

#include <stdint.h>
#include <uv.h>
#include "core/config.h"
#include "store/store.h"

typedef struct hk_webhook_s hk_webhook_t;

/*
 * Creates the engine on `loop`: puts deliveries a previous process left "sending" back to pending
 * (blocking store call: call at start-up, before serving), installs the store's outbox hook and
 * starts the first claim. `cfg` and `store` must outlive the engine. Main/loop thread. Returns 0
 * and *out (free with hk_webhook_free), or HK_ENOMEM / HK_EINVAL / HK_ESTORE.
 */
int hk_webhook_new(uv_loop_t *loop, hk_store_t *store, const hk_config_t *cfg, hk_webhook_t **out);

/*
 * Stops delivering: removes the outbox hook, aborts transfers in flight (they stay due and are sent
 * again by the next start: at-least-once) and closes the engine's handles, so the loop can end.
 * Call on the loop thread after request handlers have finished. Idempotent; NULL-safe.
 */
void hk_webhook_stop(hk_webhook_t *w);

typedef struct {
    uint64_t attempts;  /* HTTP attempts finished since start */
    uint64_t delivered; /* deliveries that got a 2xx */
    uint64_t retrying;  /* attempts that failed and were scheduled again */
    uint64_t failed;    /* deliveries given up (final error or retries exhausted) */
    size_t in_flight;   /* requests on the wire now */
    size_t queued;      /* claimed deliveries waiting for an endpoint slot */
} hk_webhook_stats_t;

/* Counters since start, for /metrics. Loop thread. NULL-safe (all zero). */
void hk_webhook_stats(const hk_webhook_t *w, hk_webhook_stats_t *out);

/*
 * After the loop has ended (hk_webhook_stop called before it did): writes the outcomes not yet
 * stored, returns claimed deliveries to pending and frees everything. Blocking store calls; the
 * thread that ran the loop. NULL-safe.
 */
void hk_webhook_free(hk_webhook_t *w);

#endif
