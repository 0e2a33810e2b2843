/* The bot runner: starts one `hark bot` child process per bot meeting (libuv uv_spawn), feeds it
 * its JSON config on stdin, copies its stdout/stderr into the server log with the meeting id,
 * stops it (leave command, then a kill after a grace period) and turns its exit into the meeting's
 * final status. State machine: docs/internals/bots.md. */
#ifndef HK_BOT_RUNNER_H
#define HK_BOT_RUNNER_H

#include <uv.h>
#include <jansson.h>
#include "core/config.h"
#include "store/store.h"

typedef struct hk_bot_runner_s hk_bot_runner_t;

/* Delivers a command frame (JSON text) to the bot of a meeting over its /ws/audio connection.
 * Returns the number of connections it was sent on (0: the bot is not connected). Loop thread. */
typedef size_t (*hk_bot_command_fn)(int64_t meeting_id, const char *json, size_t len, void *data);

/*
 * Creates the runner. `exe` is the path of the hark binary to run as `<exe> bot` (copied).
 * send_command delivers leave/reconfigure commands (see above). Returns 0 and *out (free with
 * hk_bot_runner_free after hk_bot_runner_shutdown), or HK_ENOMEM. Loop thread.
 */
int hk_bot_runner_new(uv_loop_t *loop, hk_store_t *store, const hk_config_t *cfg, const char *exe,
                      hk_bot_command_fn send_command, void *command_data, hk_bot_runner_t **out);

/*
 * Reserves a bot slot on this node (config max_bots). Returns 0 or HK_ELIMIT. A reservation is
 * consumed by hk_bot_runner_start or returned by hk_bot_runner_release. Any thread.
 */
int hk_bot_runner_reserve(hk_bot_runner_t *r);
void hk_bot_runner_release(hk_bot_runner_t *r);

/*
 * Starts the bot of meeting `meeting_id` with `config` (protocols.md section 3; borrowed, encoded
 * now). Consumes a reservation. The spawn happens on the loop thread; when it fails the meeting
 * becomes failed (bot_crashed). Returns 0 or HK_ENOMEM (the reservation is then released). Any
 * thread.
 */
int hk_bot_runner_start(hk_bot_runner_t *r, int64_t meeting_id, const json_t *config);

/*
 * Asks the bot of a meeting to leave: a leave command over its connection (SIGTERM when it is
 * not connected), then SIGKILL after bot_leave_grace_ms. No-op when the meeting has no bot here.
 * Any thread.
 */
void hk_bot_runner_stop(hk_bot_runner_t *r, int64_t meeting_id);

/* Sends a command frame (JSON text, copied) to the bot of a meeting. Any thread. */
void hk_bot_runner_command(hk_bot_runner_t *r, int64_t meeting_id, const char *json);

/*
 * The bot of a meeting reported a final status (completed|failed with reason) on its connection:
 * it is applied when the process exits, after its last audio was flushed. Loop thread.
 */
void hk_bot_runner_report_final(hk_bot_runner_t *r, int64_t meeting_id, const char *status,
                                const char *reason);

/* The pid of the meeting's bot: -1 when it has none here, 0 while it is being started. Any
 * thread. */
int hk_bot_runner_pid(hk_bot_runner_t *r, int64_t meeting_id);

/* Bots running now (metrics). Any thread. */
size_t hk_bot_runner_count(hk_bot_runner_t *r);

/*
 * At start-up (blocking store calls; loop thread before the loop runs): every janus meeting a
 * previous run left non-terminal becomes failed with reason "server_restarted" (its bot, if
 * still alive, finds its token refused and leaves). Returns the number reconciled.
 */
size_t hk_bot_runner_reconcile(hk_bot_runner_t *r);

/* Shutdown: SIGTERM to every bot (each leaves its meeting; the meetings stay as they are and
 * are reconciled at the next start), then closes the runner's handles. Loop thread. */
void hk_bot_runner_shutdown(hk_bot_runner_t *r);

/* Frees the runner once its handles are closed (after the loop ran). NULL is a no-op. */
void hk_bot_runner_free(hk_bot_runner_t *r);

#endif
