/* WebSocket endpoints: /ws/audio (audio ingest, ingest.c) and /ws (live updates, live.c). */
#ifndef HK_API_INGEST_H
#define HK_API_INGEST_H

#include "api/api.h"

/* Loop thread: upgrades c->req to an audio-ingest WebSocket (or answers it with an error). */
void hk_ingest_accept(hk_ctx_t *c);

/* Loop thread: upgrades c->req to a live-updates WebSocket for user c->user_id (0 = the key was
 * missing or invalid: the client gets an "unauthorized" error frame and close code 4401). */
void hk_live_accept(hk_ctx_t *c);

/* Closes every live and ingest connection and refuses new ones (shutdown). Loop thread. */
void hk_ws_endpoints_shutdown(hk_app_t *app);

/* Connections (and their pending work) not yet released; shutdown waits for 0. Loop thread. */
size_t hk_ws_endpoints_active(void);

/* At start-up (loop thread, blocking store call): arms the idle completion of every active
 * stream meeting a previous run left behind. */
void hk_ingest_recover(hk_app_t *app);

/* Sends a command frame (JSON text) to every running ingest session of a meeting (the bot's
 * per-meeting command channel); returns how many got it. data is unused (hk_bot_command_fn's
 * shape). Loop thread. */
size_t hk_ingest_send_command(int64_t meeting_id, const char *json, size_t len, void *data);

/* WebSocket connections of both endpoints, open or closing (metrics). Loop thread. */
size_t hk_ws_endpoints_connections(void);

/* The ingest halves of the above (ingest.c). */
void hk_ingest_shutdown(void);
size_t hk_ingest_active(void);
size_t hk_ingest_connections(void);

#endif
