/* hark's command line and the wiring of the server: config → store → router → HTTP → loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/log.h"
#include "webhook/delivery.h"
#include "api/ingest.h"
#include "asr/engine.h"
#include "pipeline/formats.h"
#include "bot/bot.h"
#include "bot/runner.h"
#include "bus/bus.h"
#include "core/json.h"
#include "core/timeutil.h"
#include "pipeline/collector.h"
#include "pipeline/lifecycle.h"
#include "pipeline/transcribe.h"

static void usage(FILE *out)
{
    fprintf(out,
            "hark %s — self-hosted real-time meeting transcription\n\n"
            "usage: hark <command> [options]\n\n"
            "commands:\n"
            "  serve     run the API server (see `hark serve --help`)\n"
            "  bot       run one meeting bot (started by the server; JSON config on stdin)\n"
            "  config    print the effective configuration for the given options\n"
            "  transcribe  transcribe audio or video files (see `hark transcribe --help`)\n"
            "  version   print the version\n\n"
            "options: --help, --version\n",
            HK_VERSION);
}

/*
 * Reads <dir>/<name>, or creates it with a fresh random secret (mode 0600) when missing.
 * *created tells whether it was generated now. Returns a malloc'd string or NULL.
 */
static char *load_or_create_secret(const char *dir, const char *name, const char *prefix,
                                   bool *created)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    *created = false;
    FILE *f = fopen(path, "r");
    if (f) {
        char buf[256] = {0};
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            buf[--n] = '\0';
        if (n >= 16)
            return strdup(buf);
        hk_log_error("main",
                     "op=read file=%s err=\"secret too short; delete the file to "
                     "regenerate\"",
                     path);
        return NULL;
    }
    char secret[128];
    if (hk_random_token(prefix, 32, secret, sizeof(secret)))
        return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        hk_log_error("main", "op=create file=%s err=\"%s\"", path, strerror(errno));
        return NULL;
    }
    size_t len = strlen(secret);
    bool ok = write(fd, secret, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        return NULL;
    }
    *created = true;
    return strdup(secret);
}

typedef struct {
    hk_app_t app;
    uv_signal_t sigterm, sigint;
    uv_timer_t force_timer;
    bool stopping;
    hk_webhook_t *webhooks;
    uv_timer_t drain_timer; /* shutdown: waits for WebSocket sessions to wind down */
} server_t;

static void close_cb_noop(uv_handle_t *h)
{
    HK_UNUSED(h);
}

/* Final shutdown step, once HTTP and every WebSocket session are done: flush and stop. */
static void finish_shutdown(server_t *s)
{
    hk_api_stop(&s->app);
    hk_webhook_stop(s->webhooks);
    hk_collector_free(s->app.collector); /* writes pending completed segments */
    s->app.collector = NULL;
    hk_asr_engine_free(s->app.asr);
    s->app.asr = NULL;
    hk_bus_free(s->app.bus);
    s->app.bus = NULL;
    uv_close((uv_handle_t *)&s->sigterm, close_cb_noop);
    uv_close((uv_handle_t *)&s->sigint, close_cb_noop);
    uv_timer_stop(&s->force_timer);
    uv_close((uv_handle_t *)&s->force_timer, close_cb_noop);
    uv_close((uv_handle_t *)&s->drain_timer, close_cb_noop);
}

static void drain_cb(uv_timer_t *t)
{
    server_t *s = t->data;
    if (hk_ws_endpoints_active() > 0)
        return;
    uv_timer_stop(t);
    finish_shutdown(s);
}

static void on_http_closed(void *data)
{
    server_t *s = data;
    uv_timer_start(&s->drain_timer, drain_cb, 0, 20);
}

static void force_exit_cb(uv_timer_t *t)
{
    HK_UNUSED(t);
    hk_log_warn("main", "msg=\"in-flight work did not finish in time; exiting\"");
    _exit(0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (s->stopping)
        return;
    s->stopping = true;
    hk_log_info("main", "msg=\"shutting down\" signal=%d", signum);
    if (s->app.bots)
        hk_bot_runner_shutdown(s->app.bots);
    uv_timer_start(&s->force_timer, force_exit_cb, (uint64_t)s->app.cfg->shutdown_timeout_ms, 0);
    hk_ws_endpoints_shutdown(&s->app);
    hk_http_server_shutdown(s->app.http, on_http_closed, s);
}

/* Lifecycle observer: every committed status change becomes a meeting.status bus message (for
 * /ws subscribers and the meeting's ingest sessions). Any thread. */
static void publish_status(const hk_meeting_t *before, const char *to, const char *reason,
                           void *data)
{
    hk_app_t *app = data;
    if (!app->bus)
        return;
    json_t *p = json_object();
    json_object_set_new(p, "status", json_string(to));
    hk_json_set_str_or_null(p, "reason", reason);
    json_object_set_new(p, "from", json_string(before->status));
    size_t len;
    char *s = hk_format_live_message("meeting.status", before->id, before->platform,
                                     before->native_meeting_id, p, &len);
    if (s)
        hk_bus_publish(app->bus, before->id, s, len);
    free(s);
}

static int live_segments(hk_app_t *app, int64_t meeting_id, hk_segment_t **out, bool **completed,
                         size_t *n)
{
    return hk_collector_snapshot(app->collector, meeting_id, out, completed, n);
}

/* Bus, collector and recogniser: the live pipeline. Loop thread, at start. */
static int start_pipeline(hk_app_t *app)
{
    const hk_config_t *cfg = app->cfg;
    app->bus = hk_bus_new(app->loop);
    hk_collector_config_t cc = {.flush_interval_ms = 250};
    app->collector = app->bus ? hk_collector_new(app->loop, app->store, app->bus, &cc) : NULL;
    if (!app->collector) {
        hk_log_error("main", "msg=\"cannot start the live pipeline: out of memory\"");
        return -1;
    }
    app->live_segments = live_segments;
    hk_lifecycle_set_observer(publish_status, app);
    if (strcmp(cfg->asr, "none") == 0)
        return 0;
    hk_asr_config_t ac = {
        .pool_size = (unsigned)cfg->asr_pool_size,
        .max_utterance_s = cfg->asr_max_utterance_s,
        .partial_interval_ms = (unsigned)cfg->asr_partial_interval_ms,
        .endpoint_ms = (unsigned)cfg->asr_endpoint_ms,
        .max_hmms_per_frame = (unsigned)cfg->asr_max_hmms,
        .max_sessions = (unsigned)cfg->asr_max_sessions,
    };
    uint64_t t = hk_time_mono_ns();
    int rc = hk_asr_engine_new(app->loop, &ac, &app->asr);
    if (rc) {
        hk_log_error("main",
                     "op=asr_start engine=pocketsphinx err=\"%s\" hint=\"install "
                     "pocketsphinx-en-us, or run with --asr none\"",
                     hk_strerror(rc));
        return -1;
    }
    hk_asr_stats_t st;
    hk_asr_engine_stats(app->asr, &st);
    hk_log_info("main", "op=asr_start engine=pocketsphinx decoders=%u load_ms=%.0f", st.decoders,
                (double)(hk_time_mono_ns() - t) / 1e6);
    return 0;
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    hk_log_error("main", "op=mkdir dir=%s err=\"%s\"", dir, strerror(errno));
    return -1;
}

static int cmd_serve(const hk_config_t *cfg)
{
    hk_log_level_t level = HK_LOG_INFO;
    hk_log_level_parse(cfg->log_level, &level);
    hk_log_init(level, stderr);
    signal(SIGPIPE, SIG_IGN);

    /* libuv sizes its thread pool from this variable at first use. */
    char nthreads[16];
    snprintf(nthreads, sizeof(nthreads), "%d", cfg->workers);
    setenv("UV_THREADPOOL_SIZE", nthreads, 1);

    if (ensure_dir(cfg->data_dir))
        return 1;
    server_t *s = calloc(1, sizeof(*s));
    hk_app_t *app = &s->app;
    int rc = 1;
    app->loop = uv_default_loop();
    app->cfg = cfg;
    pthread_mutex_init(&app->touch_mu, NULL);

    bool created = false;
    if (cfg->admin_token && cfg->admin_token[0]) {
        app->admin_token = strdup(cfg->admin_token);
    } else {
        app->admin_token = load_or_create_secret(cfg->data_dir, "admin_token", "hka_", &created);
        if (app->admin_token && created)
            hk_log_info("main",
                        "msg=\"generated the admin token; it is shown only this once\" "
                        "admin_token=%s file=%s/admin_token",
                        app->admin_token, cfg->data_dir);
    }
    if (cfg->token_secret && cfg->token_secret[0])
        app->token_secret = strdup(cfg->token_secret);
    else
        app->token_secret = load_or_create_secret(cfg->data_dir, "token_secret", "", &created);
    if (!app->admin_token || !app->token_secret) {
        hk_log_error("main", "msg=\"cannot set up secrets in the data directory\" dir=%s",
                     cfg->data_dir);
        goto out;
    }

    char err[256] = "";
    if (hk_store_open(cfg->data_dir, cfg->workers + 1, &app->store, err, sizeof(err))) {
        hk_log_error("main", "op=open_store dir=%s err=\"%s\"", cfg->data_dir, err);
        goto out;
    }
    if (hk_auth_cache_init(&app->auth_cache) || hk_resp_cache_init(&app->resp_cache)) {
        hk_log_error("main", "msg=\"out of memory\"");
        goto out;
    }
    app->metrics = hk_metrics_new();
    app->router = hk_router_new();
    if (!app->metrics || !app->router || hk_api_register(app, hk_ops_routes) ||
        hk_api_register(app, hk_admin_routes) || hk_api_register(app, hk_bots_routes) ||
        hk_api_register(app, hk_meetings_routes) || hk_api_register(app, hk_webhooks_routes) ||
        hk_api_register(app, hk_transcripts_routes) || hk_api_register(app, hk_ws_routes) ||
        hk_api_register(app, hk_analytics_routes) || hk_api_register(app, hk_web_routes)) {
        hk_log_error("main", "msg=\"cannot set up routes\"");
        goto out;
    }

    hk_http_config_t hc = {
        .bind = cfg->bind,
        .port = cfg->port,
        .backlog = 1024,
        .max_header_bytes = cfg->max_header_bytes,
        .max_body_bytes = cfg->max_body_bytes,
        .max_connections = cfg->max_connections,
        .idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms,
        .header_timeout_ms = (uint64_t)cfg->header_timeout_ms,
        .body_timeout_ms = (uint64_t)cfg->body_timeout_ms,
        .access_log = cfg->access_log,
        .on_request = hk_api_on_request,
        .on_response = hk_api_on_response,
        .data = app,
    };
    int urc = hk_http_server_new(app->loop, &hc, &app->http);
    if (urc) {
        hk_log_error("main", "op=listen addr=%s port=%d err=\"%s\"", cfg->bind, cfg->port,
                     uv_strerror(urc));
        goto out;
    }
    int port = hk_http_server_port(app->http);
    if (cfg->public_url[0]) {
        snprintf(app->public_url, sizeof(app->public_url), "%s", cfg->public_url);
    } else {
        bool v6 = strchr(cfg->bind, ':') != NULL;
        const char *host = strcmp(cfg->bind, "0.0.0.0") == 0 ? "127.0.0.1" : cfg->bind;
        snprintf(app->public_url, sizeof(app->public_url), v6 ? "http://[%s]:%d" : "http://%s:%d",
                 host, port);
    }
    size_t ul = strlen(app->public_url);
    while (ul > 0 && app->public_url[ul - 1] == '/')
        app->public_url[--ul] = '\0';
    bool tls = strncmp(app->public_url, "https://", 8) == 0;
    snprintf(app->ingest_url, sizeof(app->ingest_url), "%s%s/ws/audio", tls ? "wss://" : "ws://",
             app->public_url + (tls ? 8 : 7));

    if (start_pipeline(app))
        goto out;
    hk_ingest_recover(app);
    char exe[4096];
    size_t exe_len = sizeof(exe);
    if (uv_exepath(exe, &exe_len) != 0 ||
        hk_bot_runner_new(app->loop, app->store, cfg, exe, hk_ingest_send_command, app,
                          &app->bots) != 0) {
        hk_log_error("main", "msg=\"cannot set up the bot runner\"");
        goto out;
    }
    hk_bot_runner_reconcile(app->bots);

    int wrc = hk_webhook_new(app->loop, app->store, cfg, &s->webhooks);
    app->webhooks = s->webhooks;
    if (wrc) {
        hk_log_error("main", "op=webhook_start err=\"%s\"", hk_strerror(wrc));
        goto out;
    }

    uv_signal_init(app->loop, &s->sigterm);
    uv_signal_init(app->loop, &s->sigint);
    uv_timer_init(app->loop, &s->force_timer);
    uv_timer_init(app->loop, &s->drain_timer);
    s->drain_timer.data = s;
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    hk_api_start(app);

    hk_log_info("main", "msg=ready version=%s addr=%s port=%d url=%s workers=%d schema=%d",
                HK_VERSION, cfg->bind, port, app->public_url, cfg->workers,
                hk_store_schema_version(app->store));
    uv_run(app->loop, UV_RUN_DEFAULT);
    hk_log_info("main", "msg=stopped");
    rc = 0;
out:
    if (s->webhooks && !s->stopping)
        hk_webhook_stop(s->webhooks); /* start-up failed after the engine started */
    if (!s->stopping && app->bots)
        hk_bot_runner_shutdown(app->bots);
    if (!s->stopping && (app->collector || app->asr || app->bus || app->bots)) {
        hk_collector_free(app->collector);
        hk_asr_engine_free(app->asr);
        hk_bus_free(app->bus);
        uv_run(app->loop, UV_RUN_NOWAIT); /* their close callbacks */
    }
    if (app->loop)
        uv_loop_close(app->loop);
    hk_bot_runner_free(app->bots);
    app->webhooks = NULL;
    hk_webhook_free(s->webhooks);
    hk_http_server_free(app->http);
    hk_store_close(app->store);
    hk_router_free(app->router);
    hk_metrics_free(app->metrics);
    hk_auth_cache_dispose(&app->auth_cache);
    hk_resp_cache_dispose(&app->resp_cache);
    free(app->admin_token);
    free(app->token_secret);
    pthread_mutex_destroy(&app->touch_mu);
    free(s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("hark %s (%s)\n", HK_VERSION, HK_GIT_REV);
        return 0;
    }
    if (!strcmp(cmd, "transcribe"))
        return hk_transcribe_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "bot"))
        return hk_bot_main(argc - 2, argv + 2);
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "config") != 0) {
        fprintf(stderr, "hark: unknown command \"%s\"\n\n", cmd);
        usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: hark %s [options]\n\n%s\n\noptions (flag, environment variable, "
                   "default):\n",
                   cmd,
                   !strcmp(cmd, "serve") ? "Runs the API server until SIGTERM or SIGINT."
                                         : "Prints the effective settings as `name = value`.");
            hk_config_help(stdout);
            return 0;
        }
    }
    hk_config_t cfg;
    char err[256];
    if (hk_config_load(&cfg, argc - 2, argv + 2, err, sizeof(err))) {
        fprintf(stderr, "hark %s: %s\n", cmd, err);
        return 2;
    }
    int rc = 0;
    if (!strcmp(cmd, "config"))
        hk_config_print(&cfg, stdout);
    else
        rc = cmd_serve(&cfg);
    hk_config_dispose(&cfg);
    return rc;
}
