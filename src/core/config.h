/* The configuration table: every setting with its type, default, bounds, flag, HARK_* variable
 * and help text, in one place. Values are validated once at start. */
#ifndef HK_CONFIG_H
#define HK_CONFIG_H

#include <stdio.h>
#include "core/common.h"

typedef struct {
    int port;
    char *bind;
    char *data_dir;
    char *admin_token; /* NULL/"" = generate one in data_dir at first start */
    int workers;       /* 0 = number of cores (resolved by hk_config_load) */
    char *log_level;
    bool access_log;
    size_t max_header_bytes;
    size_t max_body_bytes;
    int max_connections;
    int idle_timeout_ms;
    int header_timeout_ms;
    int body_timeout_ms;
    int shutdown_timeout_ms;
    char *public_url; /* base URL clients use to reach this server; "" = derived from bind/port */
    int default_max_concurrent_bots;
    int max_meeting_duration_s;
    char *token_secret; /* meeting-token signing secret; "" = generated in data_dir */
    /* live pipeline */
    char *asr;            /* "pocketsphinx" or "none" */
    int asr_pool_size;    /* decoders; 0 = number of cores */
    int asr_max_sessions; /* open recognition sessions; 0 = 8 per decoder */
    int asr_partial_interval_ms;
    int asr_endpoint_ms;
    int asr_max_hmms;
    int asr_max_utterance_s;
    int max_sessions_per_meeting; /* /ws/audio sessions open or starting per meeting */
    int stream_idle_timeout_ms; /* a stream meeting completes this long after its last session */
    size_t max_ws_message_bytes;
    size_t max_ws_queue_bytes;
    int ws_ping_interval_ms;
    int max_session_segments; /* distinct external segments one audio session may send */
    /* bots */
    int max_bots;           /* bot processes on this node at most */
    int bot_leave_grace_ms; /* a bot told to leave is killed after this long */
    /* webhooks */
    bool webhook_allow_private;   /* deliver to loopback/private/link-local addresses (tests) */
    char *webhook_retry_schedule; /* comma list of seconds between attempts */
    int webhook_connect_timeout_ms;
    int webhook_timeout_ms;
    int webhook_max_concurrency; /* in-flight deliveries per endpoint */
    int webhook_retention_days;  /* finished deliveries kept this long; 0 = forever */
    size_t webhook_max_response_bytes;
} hk_config_t;

/*
 * Fills cfg from defaults, then HARK_* environment variables, then argv flags ("--name value" or
 * "--name=value"), and validates every value. argv holds only the flags (no program or command
 * name). On failure returns HK_EINVAL with a one-line reason in err. Strings in cfg are heap
 * copies: release with hk_config_dispose(). `--help` is not handled here.
 */
int hk_config_load(hk_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/*
 * Parses a comma-separated list of integers in [min,max] ("5,300,1800") into out[maxn]; *n gets
 * the count (at least 1). Returns 0 or HK_EINVAL (empty item, junk, out of range, too many).
 * Pure function, any thread.
 */
int hk_config_int_list(const char *s, long long min, long long max, int *out, size_t maxn,
                       size_t *n);

/* Frees the strings. */
void hk_config_dispose(hk_config_t *cfg);

/* Prints `name = value` lines (secrets shown as "(set)"/"(unset)"). */
void hk_config_print(const hk_config_t *cfg, FILE *out);

/* Prints the table: flag, variable, default, bounds and help for each setting. */
void hk_config_help(FILE *out);

#endif
