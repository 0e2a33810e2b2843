/* A plain-RTP participant in a Janus AudioBridge room (protocols.md section 4): joins over
 * Janus' HTTP API, receives the room mix as Opus over one symmetric UDP socket, decodes it to
 * 16 kHz int16 and reports talking events; leaves on request or on its own (alone, room
 * destroyed, maximum duration). */
#ifndef HK_BOT_JANUS_H
#define HK_BOT_JANUS_H

#include <uv.h>
#include "core/common.h"

typedef struct hk_janus_s hk_janus_t;

typedef struct {
    /* Status to report: "active" once joined. Loop thread. */
    void (*status_cb)(void *data, const char *status, const char *reason);
    /* Room audio (16 kHz mono int16), in order, gaps concealed. Loop thread. */
    void (*audio_cb)(void *data, const int16_t *pcm, size_t n);
    /* A participant started/stopped talking (display name, Janus id as text). Loop thread. */
    void (*speaker_cb)(void *data, const char *name, const char *id, bool start);
    /* Left the room and destroyed the Janus session: the meeting's outcome ("completed" or
     * "failed") and reason. Called exactly once, after hk_janus_start succeeded. Loop thread. */
    void (*ended_cb)(void *data, const char *status, const char *reason);
} hk_janus_callbacks_t;

typedef struct {
    const char *url;     /* Janus HTTP API base, e.g. http://127.0.0.1:8088/janus */
    const char *room;    /* numeric room id */
    const char *pin;     /* room PIN or NULL */
    const char *display; /* our display name */
    int max_time_left_alone_s;
    int max_duration_s;
} hk_janus_config_t;

/* Starts joining (strings are copied). Returns 0 and *out, or a negative error (nothing is
 * called then). Loop thread. */
int hk_janus_start(uv_loop_t *loop, const hk_janus_config_t *cfg, const hk_janus_callbacks_t *cb,
                   void *data, hk_janus_t **out);

/* Leaves the room with this completion reason (e.g. "stopped"); ended_cb follows. Idempotent.
 * Loop thread. */
void hk_janus_leave(hk_janus_t *j, const char *reason);

/* Frees it (handles closed on the loop; run the loop once more). Normally called after
 * ended_cb; called earlier, it does not leave the room: a leave in progress still runs to its
 * end (ended_cb is then not called), otherwise the event thread is stopped first (this blocks
 * for up to about a second). NULL is a no-op. Loop thread. */
void hk_janus_free(hk_janus_t *j);

#endif
