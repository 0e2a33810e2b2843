/* The configuration table and its loader (defaults → environment → flags). */
#include "core/config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum { T_INT, T_SIZE, T_STR, T_BOOL } opt_type_t;

typedef struct {
    const char *name; /* flag is --name with '_' → '-'; variable is HARK_NAME upper-cased */
    opt_type_t type;
    size_t offset;
    const char *def;
    long long min, max; /* numeric bounds (inclusive) */
    bool secret;
    const char *help;
} opt_t;

#define OFF(f) offsetof(hk_config_t, f)

static const opt_t opts[] = {
    {"port", T_INT, OFF(port), "8056", 0, 65535, false,
     "TCP port to listen on (0 = any free port)"},
    {"bind", T_STR, OFF(bind), "127.0.0.1", 0, 0, false, "address to listen on"},
    {"data_dir", T_STR, OFF(data_dir), "./data", 0, 0, false,
     "directory for the database and generated secrets"},
    {"admin_token", T_STR, OFF(admin_token), "", 0, 0, true,
     "admin API token (empty: generated at first start into <data_dir>/admin_token)"},
    {"workers", T_INT, OFF(workers), "0", 0, 256, false,
     "worker threads for blocking and CPU-heavy work (0 = number of cores)"},
    {"log_level", T_STR, OFF(log_level), "info", 0, 0, false, "debug, info, warn, error or off"},
    {"access_log", T_BOOL, OFF(access_log), "true", 0, 1, false, "one log line per HTTP request"},
    {"max_header_bytes", T_SIZE, OFF(max_header_bytes), "16384", 1024, 1 << 20, false,
     "cap on a request's line and headers"},
    {"max_body_bytes", T_SIZE, OFF(max_body_bytes), "1048576", 64, 64 << 20, false,
     "cap on a request body"},
    {"max_connections", T_INT, OFF(max_connections), "10000", 1, 1000000, false,
     "open client connections at most"},
    {"idle_timeout_ms", T_INT, OFF(idle_timeout_ms), "60000", 100, 3600000, false,
     "close a keep-alive connection idle this long"},
    {"header_timeout_ms", T_INT, OFF(header_timeout_ms), "10000", 100, 600000, false,
     "time allowed to send a request's headers"},
    {"body_timeout_ms", T_INT, OFF(body_timeout_ms), "30000", 100, 600000, false,
     "time allowed to send a request's body"},
    {"shutdown_timeout_ms", T_INT, OFF(shutdown_timeout_ms), "4000", 100, 60000, false,
     "on SIGTERM, wait this long for in-flight requests"},
    {"public_url", T_STR, OFF(public_url), "", 0, 0, false,
     "base URL clients use to reach this server (empty: http://<bind>:<port>)"},
    {"default_max_concurrent_bots", T_INT, OFF(default_max_concurrent_bots), "3", 0, 1000, false,
     "max_concurrent_bots of users created without one"},
    {"max_meeting_duration_s", T_INT, OFF(max_meeting_duration_s), "14400", 60, 604800, false,
     "longest meeting; meeting tokens expire after it plus a margin"},
    {"token_secret", T_STR, OFF(token_secret), "", 0, 0, true,
     "meeting-token signing secret (empty: generated into <data_dir>/token_secret)"},
    {"asr", T_STR, OFF(asr), "pocketsphinx", 0, 0, false,
     "speech recogniser: pocketsphinx, or none (only external segments are accepted)"},
    {"asr_pool_size", T_INT, OFF(asr_pool_size), "0", 0, 64, false,
     "recogniser decoders, each ~90 MB (0 = number of cores)"},
    {"asr_max_sessions", T_INT, OFF(asr_max_sessions), "0", 0, 100000, false,
     "audio sessions recognised at once; beyond it clients get WAIT (0 = 8 per decoder)"},
    {"asr_partial_interval_ms", T_INT, OFF(asr_partial_interval_ms), "250", 50, 5000, false,
     "partial results at most this often"},
    {"asr_endpoint_ms", T_INT, OFF(asr_endpoint_ms), "300", 100, 3000, false,
     "silence after speech that ends an utterance (its segment completes then)"},
    {"asr_max_hmms", T_INT, OFF(asr_max_hmms), "5000", 100, 100000, false,
     "recogniser search width: HMMs evaluated per 10 ms frame (more: slower, rarely better)"},
    {"asr_max_utterance_s", T_INT, OFF(asr_max_utterance_s), "20", 2, 120, false,
     "an utterance is cut after this long even without a pause"},
    {"stream_idle_timeout_ms", T_INT, OFF(stream_idle_timeout_ms), "60000", 0, 86400000, false,
     "a stream meeting completes (stream_ended) this long after its last audio session ends"},
    {"max_ws_message_bytes", T_SIZE, OFF(max_ws_message_bytes), "1048576", 1024, 64 << 20, false,
     "largest WebSocket message accepted (audio frames included); over it: close 1009"},
    {"max_ws_queue_bytes", T_SIZE, OFF(max_ws_queue_bytes), "1048576", 4096, 256 << 20, false,
     "outgoing bytes queued per WebSocket; a client behind by more is closed with 1008"},
    {"max_sessions_per_meeting", T_INT, OFF(max_sessions_per_meeting), "16", 1, 10000, false,
     "/ws/audio sessions one meeting may have open (or starting) at once"},
    {"max_session_segments", T_INT, OFF(max_session_segments), "100000", 1, 10000000, false,
     "distinct external segments one /ws/audio session may send; beyond it the session ends"},
    {"ws_ping_interval_ms", T_INT, OFF(ws_ping_interval_ms), "30000", 0, 3600000, false,
     "ping WebSocket clients silent this long (0 = never)"},
    {"max_bots", T_INT, OFF(max_bots), "16", 0, 10000, false,
     "meeting bots (child processes) running on this node at most; beyond it POST /bots gets 503"},
    {"bot_leave_grace_ms", T_INT, OFF(bot_leave_grace_ms), "15000", 100, 600000, false,
     "a bot told to leave (DELETE /bots) that is still running after this long is killed"},
    {"webhook_allow_private", T_BOOL, OFF(webhook_allow_private), "false", 0, 1, false,
     "allow webhook URLs that resolve to loopback, private, link-local or CGNAT addresses"},
    {"webhook_retry_schedule", T_STR, OFF(webhook_retry_schedule),
     "5,300,1800,7200,18000,36000,36000", 0, 0, false,
     "seconds before each webhook retry (comma list, up to 32; jittered +-20%), then failed"},
    {"webhook_connect_timeout_ms", T_INT, OFF(webhook_connect_timeout_ms), "5000", 100, 120000,
     false, "webhook delivery: time allowed to connect"},
    {"webhook_timeout_ms", T_INT, OFF(webhook_timeout_ms), "10000", 100, 300000, false,
     "webhook delivery: time allowed for a whole attempt"},
    {"webhook_retention_days", T_INT, OFF(webhook_retention_days), "30", 0, 3650, false,
     "finished webhook deliveries (and their events) older than this are deleted (0 = keep)"},
    {"webhook_max_concurrency", T_INT, OFF(webhook_max_concurrency), "8", 1, 256, false,
     "webhook deliveries in flight per endpoint"},
    {"webhook_max_response_bytes", T_SIZE, OFF(webhook_max_response_bytes), "65536", 0, 1 << 24,
     false, "webhook delivery: response body bytes read (and discarded) at most"},
};

int hk_config_int_list(const char *s, long long min, long long max, int *out, size_t maxn,
                       size_t *n)
{
    size_t count = 0;
    const char *p = s;
    if (s == NULL || *s == '\0')
        return HK_EINVAL;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9')
            return HK_EINVAL; /* empty item, sign or junk */
        errno = 0;
        char *end = NULL;
        long long v = strtoll(p, &end, 10);
        if (errno || v < min || v > max || count >= maxn)
            return HK_EINVAL;
        out[count++] = (int)v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',')
            return HK_EINVAL;
        p++;
    }
    *n = count;
    return 0;
}

static void flag_name(const opt_t *o, char *out, size_t outlen)
{
    snprintf(out, outlen, "--%s", o->name);
    for (char *p = out + 2; *p; p++)
        if (*p == '_')
            *p = '-';
}

static void env_name(const opt_t *o, char *out, size_t outlen)
{
    snprintf(out, outlen, "HARK_%s", o->name);
    for (char *p = out; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
}

static int set_value(hk_config_t *cfg, const opt_t *o, const char *val, const char *from, char *err,
                     size_t errlen)
{
    char *base = (char *)cfg + o->offset;
    switch (o->type) {
    case T_INT:
    case T_SIZE: {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end != '\0' || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: %s must be an integer from %lld to %lld (got \"%s\")", from,
                     o->name, o->min, o->max, val);
            return HK_EINVAL;
        }
        if (o->type == T_INT)
            *(int *)base = (int)v;
        else
            *(size_t *)base = (size_t)v;
        return 0;
    }
    case T_BOOL:
        if (!strcasecmp(val, "1") || !strcasecmp(val, "true") || !strcasecmp(val, "yes") ||
            !strcasecmp(val, "on"))
            *(bool *)base = true;
        else if (!strcasecmp(val, "0") || !strcasecmp(val, "false") || !strcasecmp(val, "no") ||
                 !strcasecmp(val, "off"))
            *(bool *)base = false;
        else {
            snprintf(err, errlen, "%s: %s must be true or false (got \"%s\")", from, o->name, val);
            return HK_EINVAL;
        }
        return 0;
    case T_STR: {
        char *copy = strdup(val);
        if (!copy) {
            snprintf(err, errlen, "out of memory");
            return HK_ENOMEM;
        }
        free(*(char **)base);
        *(char **)base = copy;
        return 0;
    }
    }
    return HK_EINVAL;
}

static const opt_t *find_flag(const char *arg, size_t len)
{
    char flag[64];
    for (size_t i = 0; i < HK_ARRAY_SIZE(opts); i++) {
        flag_name(&opts[i], flag, sizeof(flag));
        if (strlen(flag) == len && memcmp(flag, arg, len) == 0)
            return &opts[i];
    }
    return NULL;
}

int hk_config_load(hk_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    for (size_t i = 0; i < HK_ARRAY_SIZE(opts); i++)
        if ((rc = set_value(cfg, &opts[i], opts[i].def, "default", err, errlen)) != 0)
            goto fail;
    for (size_t i = 0; i < HK_ARRAY_SIZE(opts); i++) {
        char env[64];
        env_name(&opts[i], env, sizeof(env));
        const char *v = getenv(env);
        if (v && (rc = set_value(cfg, &opts[i], v, env, err, errlen)) != 0)
            goto fail;
    }
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        const opt_t *o = strncmp(arg, "--", 2) == 0 ? find_flag(arg, nlen) : NULL;
        if (!o) {
            snprintf(err, errlen, "unknown option \"%.*s\" (see --help)", (int)nlen, arg);
            rc = HK_EINVAL;
            goto fail;
        }
        const char *val;
        if (eq)
            val = eq + 1;
        else if (o->type == T_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
            val = "true";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            snprintf(err, errlen, "option %s needs a value", arg);
            rc = HK_EINVAL;
            goto fail;
        }
        if ((rc = set_value(cfg, o, val, "flag", err, errlen)) != 0)
            goto fail;
    }
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)(n > 256 ? 256 : n) : 2;
    }
    static const char *levels[] = {"debug", "info", "warn", "error", "off"};
    bool level_ok = false;
    for (size_t i = 0; i < HK_ARRAY_SIZE(levels); i++)
        level_ok = level_ok || strcasecmp(cfg->log_level, levels[i]) == 0;
    if (!level_ok) {
        snprintf(err, errlen, "log_level must be debug, info, warn, error or off");
        rc = HK_EINVAL;
        goto fail;
    }
    if (strcmp(cfg->asr, "pocketsphinx") != 0 && strcmp(cfg->asr, "none") != 0) {
        snprintf(err, errlen, "asr must be pocketsphinx or none (got \"%s\")", cfg->asr);
        rc = HK_EINVAL;
        goto fail;
    }
    if (cfg->data_dir[0] == '\0' || cfg->bind[0] == '\0') {
        snprintf(err, errlen, "%s must not be empty", cfg->bind[0] ? "data_dir" : "bind");
        rc = HK_EINVAL;
        goto fail;
    }
    int sched[32];
    size_t nsched = 0;
    if (hk_config_int_list(cfg->webhook_retry_schedule, 0, 604800, sched, HK_ARRAY_SIZE(sched),
                           &nsched)) {
        snprintf(err, errlen,
                 "webhook_retry_schedule must be 1 to 32 comma-separated seconds from 0 to "
                 "604800 (got \"%s\")",
                 cfg->webhook_retry_schedule);
        rc = HK_EINVAL;
        goto fail;
    }
    if (cfg->public_url[0] && strncmp(cfg->public_url, "http://", 7) != 0 &&
        strncmp(cfg->public_url, "https://", 8) != 0) {
        snprintf(err, errlen, "public_url must start with http:// or https://");
        rc = HK_EINVAL;
        goto fail;
    }
    return 0;
fail:
    hk_config_dispose(cfg);
    return rc;
}

void hk_config_dispose(hk_config_t *cfg)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(opts); i++) {
        if (opts[i].type == T_STR) {
            char **p = (char **)((char *)cfg + opts[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

void hk_config_print(const hk_config_t *cfg, FILE *out)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(opts); i++) {
        const opt_t *o = &opts[i];
        const char *base = (const char *)cfg + o->offset;
        switch (o->type) {
        case T_INT:
            fprintf(out, "%s = %d\n", o->name, *(const int *)base);
            break;
        case T_SIZE:
            fprintf(out, "%s = %zu\n", o->name, *(const size_t *)base);
            break;
        case T_BOOL:
            fprintf(out, "%s = %s\n", o->name, *(const bool *)base ? "true" : "false");
            break;
        case T_STR: {
            const char *s = *(char *const *)base;
            if (o->secret)
                fprintf(out, "%s = %s\n", o->name, s && s[0] ? "(set)" : "(unset)");
            else
                fprintf(out, "%s = %s\n", o->name, s ? s : "");
            break;
        }
        }
    }
}

void hk_config_help(FILE *out)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(opts); i++) {
        const opt_t *o = &opts[i];
        char flag[64], env[64];
        flag_name(o, flag, sizeof(flag));
        env_name(o, env, sizeof(env));
        fprintf(out, "  %-32s %s\n  %-32s default: %s", flag, o->help, env,
                o->def[0] ? o->def : "(empty)");
        if (o->type == T_INT || o->type == T_SIZE)
            fprintf(out, " (%lld..%lld)", o->min, o->max);
        fprintf(out, "\n");
    }
}
