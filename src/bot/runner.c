/* Bot runner: one `hark bot` child per bot meeting. Any thread may ask for a start, stop or
 * command (queued under a mutex, run on the loop thread via uv_async); everything about the child
 * processes happens on the loop thread. The meeting's final status is written once, when the
 * child has exited (see docs/internals/bots.md). */
#include "bot/runner.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/json.h"
#include "core/log.h"
#include "pipeline/lifecycle.h"

typedef enum { OP_START, OP_STOP, OP_COMMAND } op_kind_t;

typedef struct op_s {
    op_kind_t kind;
    int64_t meeting_id;
    char *payload; /* START: config JSON; COMMAND: the frame */
    size_t len;
    struct op_s *next;
} op_t;

enum { LINE_CAP = 1024 };

typedef struct bot_s bot_t;

typedef struct {
    bot_t *bot;
    uv_pipe_t pipe;
    const char *name; /* "stdout" / "stderr" */
    char line[LINE_CAP];
    size_t n;
    char buf[4096];
} out_t;

/* One bot. meeting_id and pid are read by other threads under the runner's mutex; the rest is
 * the loop thread's. Freed when its handles are closed and its exit work is done. */
struct bot_s {
    hk_bot_runner_t *r;
    int64_t meeting_id;
    int pid;
    bool spawned, exited, stop_requested, killed, working;
    int open_handles;
    uv_process_t proc;
    uv_pipe_t in;
    out_t out, err;
    uv_write_t wreq;
    char *config; /* JSON + "\n", written to stdin */
    size_t config_len;
    uv_timer_t kill_timer;
    int64_t exit_status;
    int term_signal;
    char final_status[16];
    char final_reason[256];
    uv_work_t work;
    bot_t *next;
};

struct hk_bot_runner_s {
    uv_loop_t *loop;
    hk_store_t *store;
    const hk_config_t *cfg;
    char *exe;
    hk_bot_command_fn send_command;
    void *command_data;
    uv_async_t async;
    pthread_mutex_t mu; /* guards ops, bots (list and meeting_id/pid), slots */
    op_t *ops, **ops_tail;
    bot_t *bots;
    int slots; /* reserved or running bots */
    bool shutting_down;
};

/* ---- small helpers ---- */

static bot_t *find_locked(hk_bot_runner_t *r, int64_t meeting_id)
{
    for (bot_t *b = r->bots; b; b = b->next)
        if (b->meeting_id == meeting_id && !b->exited)
            return b;
    return NULL;
}

static void push_op(hk_bot_runner_t *r, op_t *op)
{
    pthread_mutex_lock(&r->mu);
    op->next = NULL;
    *r->ops_tail = op;
    r->ops_tail = &op->next;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->async);
}

static op_t *new_op(op_kind_t kind, int64_t meeting_id, const char *payload, size_t len)
{
    op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->kind = kind;
    op->meeting_id = meeting_id;
    if (payload) {
        op->payload = malloc(len + 2);
        if (!op->payload) {
            free(op);
            return NULL;
        }
        memcpy(op->payload, payload, len);
        op->payload[len] = '\0';
        op->len = len;
    }
    return op;
}

static void bot_unlink_free(bot_t *b)
{
    hk_bot_runner_t *r = b->r;
    pthread_mutex_lock(&r->mu);
    for (bot_t **pp = &r->bots; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    r->slots--;
    pthread_mutex_unlock(&r->mu);
    free(b->config);
    free(b);
}

static void maybe_free(bot_t *b)
{
    if (b->open_handles == 0 && !b->working && (b->exited || !b->spawned || b->r->shutting_down))
        bot_unlink_free(b);
}

static void handle_closed_cb(uv_handle_t *h)
{
    bot_t *b = h->data;
    b->open_handles--;
    maybe_free(b);
}

static void close_handle(bot_t *b, uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h)) {
        h->data = b;
        uv_close(h, handle_closed_cb);
    }
}

static void close_all(bot_t *b)
{
    close_handle(b, (uv_handle_t *)&b->in);
    close_handle(b, (uv_handle_t *)&b->out.pipe);
    close_handle(b, (uv_handle_t *)&b->err.pipe);
    close_handle(b, (uv_handle_t *)&b->kill_timer);
    if (b->spawned)
        close_handle(b, (uv_handle_t *)&b->proc);
}

/* ---- the final status (worker thread) ---- */

/* How the process ended, for data.bot_exit (a crash, or a kill after the grace period). */
static json_t *exit_data(const bot_t *b)
{
    json_t *ex = json_object();
    json_object_set_new(ex, "exit_status", json_integer(b->exit_status));
    json_object_set_new(ex, "term_signal", json_integer(b->term_signal));
    if (b->killed)
        json_object_set_new(ex, "killed_after_grace_ms",
                            json_integer(b->r->cfg->bot_leave_grace_ms));
    json_t *set = json_object();
    json_object_set_new(set, "bot_exit", ex);
    return set;
}

static void exit_work_cb(uv_work_t *w)
{
    bot_t *b = w->data;
    hk_store_t *st = b->r->store;
    hk_meeting_t m;
    int rc;
    bool crashed = !b->final_status[0] && !b->stop_requested;
    /* The grace timer may fire in the loop iteration that also reaps a bot that had just exited
     * on its own: only a SIGKILL death is our kill. */
    if (b->killed && b->term_signal != SIGKILL)
        b->killed = false;
    /* Written by the final transition itself (never over a concurrent one, never once the
     * meeting is over). */
    hk_transition_opts_t o = {.data_set = b->killed || crashed ? exit_data(b) : NULL};
    if (b->final_status[0]) {
        rc = hk_lifecycle_transition_ex(st, b->meeting_id, b->final_status,
                                        b->final_reason[0] ? b->final_reason : NULL, HK_SOURCE_BOT,
                                        &o, &m);
    } else if (b->stop_requested) {
        /* Asked to leave; it did not say how it went (or had to be killed): the user's stop
         * still ends the meeting normally. */
        rc = hk_lifecycle_transition_ex(st, b->meeting_id, "completed", "stopped",
                                        HK_SOURCE_SYSTEM, &o, &m);
    } else {
        /* Died on its own (its exit status is kept beside the reason). */
        rc = hk_lifecycle_transition_ex(st, b->meeting_id, "failed", "bot_crashed",
                                        HK_SOURCE_SYSTEM, &o, &m);
    }
    json_decref(o.data_set);
    if (rc == 0 || rc == HK_ESTATE)
        hk_meeting_dispose(&m);
}

static void exit_after_cb(uv_work_t *w, int status)
{
    HK_UNUSED(status);
    bot_t *b = w->data;
    b->working = false;
    close_all(b);
    maybe_free(b);
}

static void exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
    bot_t *b = p->data;
    hk_bot_runner_t *r = b->r;
    pthread_mutex_lock(&r->mu);
    b->exited = true;
    pthread_mutex_unlock(&r->mu);
    b->exit_status = exit_status;
    b->term_signal = term_signal;
    uv_timer_stop(&b->kill_timer);
    hk_log_info("bot", "meeting_id=%lld pid=%d op=exit exit_status=%lld term_signal=%d final=%s",
                (long long)b->meeting_id, b->pid, (long long)exit_status, term_signal,
                b->final_status[0] ? b->final_status : "-");
    if (r->shutting_down) {
        close_all(b);
        return;
    }
    b->work.data = b;
    b->working = uv_queue_work(r->loop, &b->work, exit_work_cb, exit_after_cb) == 0;
    if (!b->working)
        close_all(b);
}

/* ---- output → log ---- */

static void log_line(out_t *o)
{
    char q[LINE_CAP + 64];
    o->line[o->n] = '\0';
    hk_log_info("bot", "meeting_id=%lld pid=%d stream=%s line=%s", (long long)o->bot->meeting_id,
                o->bot->pid, o->name, hk_log_quote(q, sizeof(q), o->line));
    o->n = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    HK_UNUSED(suggested);
    out_t *o = h->data;
    buf->base = o->buf;
    buf->len = sizeof(o->buf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    out_t *o = s->data;
    if (nread < 0) {
        if (o->n)
            log_line(o);
        uv_read_stop(s);
        return;
    }
    for (ssize_t i = 0; i < nread; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            log_line(o);
        } else if (o->n < LINE_CAP - 1) {
            o->line[o->n++] = ch;
        } else {
            log_line(o); /* a long line is cut into pieces, never dropped */
            o->line[o->n++] = ch;
        }
    }
}

static void write_cb(uv_write_t *w, int status)
{
    bot_t *b = w->data;
    if (status)
        hk_log_warn("bot", "meeting_id=%lld op=write_config err=\"%s\"", (long long)b->meeting_id,
                    uv_strerror(status));
    close_handle(b, (uv_handle_t *)&b->in); /* EOF tells the bot its config is complete */
}

/* ---- loop-thread operations ---- */

static void spawn_failed_work_cb(uv_work_t *w)
{
    bot_t *b = w->data;
    hk_meeting_t m;
    int rc = hk_lifecycle_transition(b->r->store, b->meeting_id, "failed", "bot_crashed",
                                     HK_SOURCE_SYSTEM, &m);
    if (rc == 0 || rc == HK_ESTATE)
        hk_meeting_dispose(&m);
}

static void do_start(hk_bot_runner_t *r, bot_t *b)
{
    uv_pipe_init(r->loop, &b->in, 0);
    uv_pipe_init(r->loop, &b->out.pipe, 0);
    uv_pipe_init(r->loop, &b->err.pipe, 0);
    uv_timer_init(r->loop, &b->kill_timer);
    b->open_handles = 4;
    b->in.data = b;
    b->out.pipe.data = &b->out;
    b->err.pipe.data = &b->err;
    b->kill_timer.data = b;
    b->out.bot = b->err.bot = b;
    b->out.name = "stdout";
    b->err.name = "stderr";
    char ppid[24];
    snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
    char *args[] = {r->exe, "bot", "--parent-pid", ppid, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&b->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&b->out.pipe},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&b->err.pipe},
    };
    uv_process_options_t po = {
        .exit_cb = exit_cb,
        .file = r->exe,
        .args = args,
        .stdio_count = 3,
        .stdio = stdio,
    };
    b->proc.data = b;
    int rc = r->shutting_down ? UV_ECANCELED : uv_spawn(r->loop, &b->proc, &po);
    if (rc) {
        hk_log_error("bot", "meeting_id=%lld op=spawn exe=%s err=\"%s\"", (long long)b->meeting_id,
                     r->exe, uv_strerror(rc));
        pthread_mutex_lock(&r->mu);
        b->exited = true;
        pthread_mutex_unlock(&r->mu);
        /* libuv wants a failed process handle closed too. */
        if (rc != UV_ECANCELED) {
            b->spawned = true;
            b->open_handles++;
        }
        b->work.data = b;
        b->working = !r->shutting_down &&
                     uv_queue_work(r->loop, &b->work, spawn_failed_work_cb, exit_after_cb) == 0;
        if (!b->working)
            close_all(b);
        return;
    }
    b->spawned = true;
    b->open_handles++;
    pthread_mutex_lock(&r->mu);
    b->pid = b->proc.pid;
    pthread_mutex_unlock(&r->mu);
    hk_log_info("bot", "meeting_id=%lld pid=%d op=spawn exe=%s", (long long)b->meeting_id, b->pid,
                r->exe);
    uv_read_start((uv_stream_t *)&b->out.pipe, alloc_cb, read_cb);
    uv_read_start((uv_stream_t *)&b->err.pipe, alloc_cb, read_cb);
    uv_buf_t buf = uv_buf_init(b->config, (unsigned)b->config_len);
    b->wreq.data = b;
    if (uv_write(&b->wreq, (uv_stream_t *)&b->in, &buf, 1, write_cb) != 0)
        close_handle(b, (uv_handle_t *)&b->in);
}

static void kill_timer_cb(uv_timer_t *t)
{
    bot_t *b = t->data;
    if (b->exited)
        return;
    hk_log_warn("bot", "meeting_id=%lld pid=%d op=kill msg=\"bot ignored leave for %d ms\"",
                (long long)b->meeting_id, b->pid, b->r->cfg->bot_leave_grace_ms);
    b->killed = true;
    uv_process_kill(&b->proc, SIGKILL);
}

static void do_stop(hk_bot_runner_t *r, bot_t *b)
{
    if (b->stop_requested || !b->spawned || b->exited)
        return;
    b->stop_requested = true;
    static const char leave[] = "{\"type\":\"command\",\"action\":\"leave\"}";
    size_t n = r->send_command
                   ? r->send_command(b->meeting_id, leave, sizeof(leave) - 1, r->command_data)
                   : 0;
    if (n == 0) /* not connected to us (yet): SIGTERM is the bot's other way to hear "leave" */
        uv_process_kill(&b->proc, SIGTERM);
    hk_log_info("bot", "meeting_id=%lld pid=%d op=leave via=%s grace_ms=%d",
                (long long)b->meeting_id, b->pid, n ? "command" : "sigterm",
                r->cfg->bot_leave_grace_ms);
    uv_timer_start(&b->kill_timer, kill_timer_cb, (uint64_t)r->cfg->bot_leave_grace_ms, 0);
}

/* The queued operations, in order; the queue is left empty. */
static op_t *take_ops(hk_bot_runner_t *r)
{
    pthread_mutex_lock(&r->mu);
    op_t *ops = r->ops;
    r->ops = NULL;
    r->ops_tail = &r->ops;
    pthread_mutex_unlock(&r->mu);
    return ops;
}

static void async_cb(uv_async_t *a)
{
    hk_bot_runner_t *r = a->data;
    op_t *ops = take_ops(r);
    while (ops) {
        op_t *op = ops;
        ops = op->next;
        pthread_mutex_lock(&r->mu);
        bot_t *b = find_locked(r, op->meeting_id);
        pthread_mutex_unlock(&r->mu);
        if (op->kind == OP_START && b && !b->spawned)
            do_start(r, b);
        else if (op->kind == OP_STOP && b)
            do_stop(r, b);
        else if (op->kind == OP_COMMAND && b && r->send_command)
            r->send_command(op->meeting_id, op->payload, op->len, r->command_data);
        free(op->payload);
        free(op);
    }
}

/* ---- public ---- */

int hk_bot_runner_new(uv_loop_t *loop, hk_store_t *store, const hk_config_t *cfg, const char *exe,
                      hk_bot_command_fn send_command, void *command_data, hk_bot_runner_t **out)
{
    hk_bot_runner_t *r = calloc(1, sizeof(*r));
    if (!r || !(r->exe = strdup(exe))) {
        free(r);
        return HK_ENOMEM;
    }
    r->loop = loop;
    r->store = store;
    r->cfg = cfg;
    r->send_command = send_command;
    r->command_data = command_data;
    r->ops_tail = &r->ops;
    pthread_mutex_init(&r->mu, NULL);
    uv_async_init(loop, &r->async, async_cb);
    r->async.data = r;
    *out = r;
    return 0;
}

int hk_bot_runner_reserve(hk_bot_runner_t *r)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (r->shutting_down || r->slots >= r->cfg->max_bots)
        rc = HK_ELIMIT;
    else
        r->slots++;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void hk_bot_runner_release(hk_bot_runner_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->slots--;
    pthread_mutex_unlock(&r->mu);
}

int hk_bot_runner_start(hk_bot_runner_t *r, int64_t meeting_id, const json_t *config)
{
    bot_t *b = calloc(1, sizeof(*b));
    size_t len = 0;
    char *s = hk_json_encode(config, &len);
    op_t *op = new_op(OP_START, meeting_id, NULL, 0);
    char *cfgline = s ? malloc(len + 1) : NULL;
    if (!b || !op || !cfgline) {
        free(b);
        free(op);
        free(s);
        free(cfgline);
        hk_bot_runner_release(r);
        return HK_ENOMEM;
    }
    memcpy(cfgline, s, len);
    cfgline[len] = '\n';
    free(s);
    b->r = r;
    b->meeting_id = meeting_id;
    b->config = cfgline;
    b->config_len = len + 1;
    pthread_mutex_lock(&r->mu);
    b->next = r->bots;
    r->bots = b;
    pthread_mutex_unlock(&r->mu);
    push_op(r, op);
    return 0;
}

void hk_bot_runner_stop(hk_bot_runner_t *r, int64_t meeting_id)
{
    op_t *op = new_op(OP_STOP, meeting_id, NULL, 0);
    if (op)
        push_op(r, op);
}

void hk_bot_runner_command(hk_bot_runner_t *r, int64_t meeting_id, const char *json)
{
    op_t *op = new_op(OP_COMMAND, meeting_id, json, strlen(json));
    if (op)
        push_op(r, op);
}

void hk_bot_runner_report_final(hk_bot_runner_t *r, int64_t meeting_id, const char *status,
                                const char *reason)
{
    pthread_mutex_lock(&r->mu);
    bot_t *b = find_locked(r, meeting_id);
    pthread_mutex_unlock(&r->mu);
    if (!b || b->final_status[0])
        return;
    snprintf(b->final_status, sizeof(b->final_status), "%s", status);
    snprintf(b->final_reason, sizeof(b->final_reason), "%s", reason ? reason : "");
    /* The bot is finishing on its own: do not mistake the rest of its exit for a crash, and give
     * it the grace period to flush and go. */
    if (b->spawned && !b->exited && !uv_is_active((uv_handle_t *)&b->kill_timer))
        uv_timer_start(&b->kill_timer, kill_timer_cb, (uint64_t)r->cfg->bot_leave_grace_ms, 0);
}

int hk_bot_runner_pid(hk_bot_runner_t *r, int64_t meeting_id)
{
    pthread_mutex_lock(&r->mu);
    bot_t *b = find_locked(r, meeting_id);
    int pid = b ? b->pid : -1;
    pthread_mutex_unlock(&r->mu);
    return pid;
}

size_t hk_bot_runner_count(hk_bot_runner_t *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = 0;
    for (bot_t *b = r->bots; b; b = b->next)
        n += !b->exited;
    pthread_mutex_unlock(&r->mu);
    return n;
}

size_t hk_bot_runner_reconcile(hk_bot_runner_t *r)
{
    hk_meeting_t *v = NULL;
    size_t n = 0, done = 0;
    if (hk_store_meeting_list_active(r->store, -1, &v, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].platform, "janus") != 0)
            continue;
        /* Its bot belonged to the previous run and is gone or leaving (its token is refused
         * from now on): relaunching could put two bots in one room, so the meeting ends. */
        hk_meeting_t m;
        int rc = hk_lifecycle_transition(r->store, v[i].id, "failed", "server_restarted",
                                         HK_SOURCE_SYSTEM, &m);
        if (rc == 0 || rc == HK_ESTATE)
            hk_meeting_dispose(&m);
        done += rc == 0;
    }
    hk_store_free_meetings(v, n);
    if (done)
        hk_log_info("bot", "op=reconcile failed_meetings=%zu reason=server_restarted", done);
    return done;
}

static void async_closed_cb(uv_handle_t *h)
{
    HK_UNUSED(h);
}

void hk_bot_runner_shutdown(hk_bot_runner_t *r)
{
    if (r->shutting_down)
        return;
    pthread_mutex_lock(&r->mu);
    r->shutting_down = true; /* under the lock: workers read it there */
    pthread_mutex_unlock(&r->mu);
    op_t *ops = take_ops(r);
    while (ops) {
        op_t *op = ops;
        ops = op->next;
        free(op->payload);
        free(op);
    }
    for (bot_t *b = r->bots, *next; b; b = next) {
        next = b->next;
        if (b->spawned && !b->exited) {
            hk_log_info("bot", "meeting_id=%lld pid=%d op=shutdown signal=SIGTERM",
                        (long long)b->meeting_id, b->pid);
            uv_process_kill(&b->proc, SIGTERM);
        }
        if (!b->spawned && !b->working) { /* queued, never started */
            bot_unlink_free(b);
            continue;
        }
        if (!b->working)
            close_all(b);
    }
    uv_close((uv_handle_t *)&r->async, async_closed_cb);
}

void hk_bot_runner_free(hk_bot_runner_t *r)
{
    if (!r)
        return;
    while (r->bots) /* only reachable when the loop did not run the close callbacks */
        bot_unlink_free(r->bots);
    pthread_mutex_destroy(&r->mu);
    free(r->exe);
    free(r);
}
