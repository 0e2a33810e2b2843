/* Fan-out load generator for bench/pipeline in C: a port of fanout.js (its specification), cheap
 * enough per received frame that the server, not the generator, is the limit.
 *
 * Publishers: one /ws/audio connection per meeting, sending external segments: a mutable update
 * of the meeting's current segment every interval_ms (same start, one more word each time) and,
 * every complete_every-th update, that segment completed; then the next segment starts. Each
 * update's text begins with "t=<epoch ms, µs resolution>", the moment it was handed to the socket.
 * Subscribers: subs_per_meeting /ws connections per meeting, each subscribed to one meeting; a
 * frame's latency = its arrival time − the t= in its segment's text (same process, same clock:
 * CLOCK_REALTIME). Frames are not JSON-parsed on arrival (only the t= is located).
 *
 * Sequence: connect publishers → RSS₀ of the server → open and subscribe every subscriber, let
 * them sit idle → RSS₁ (memory per idle subscriber = (RSS₁ − RSS₀) / N) → steps, each: warm-up,
 * a measured window, a drain. A step passes when its p99 ≤ p99_limit_ms and no frame is missing;
 * with stop_on_fail the remaining steps are skipped after the first failure.
 *
 * One thread, non-blocking sockets on epoll (level-triggered), a minimal WebSocket client (RFC
 * 6455: masked client frames, pings answered). Each connection reads into its own buffer, which
 * keeps a partial frame until the rest arrives; nothing is allocated per frame. Updates are sent
 * from a 1 ms tick (a one-shot timerfd re-armed 1 ms after each run, like Node's setInterval);
 * how late that tick ran replaces fanout.js's event-loop delay in the results.
 *
 * Usage: fanout CONFIG.json  → result JSON on stdout, progress on stderr.
 * CONFIG: {label, server_pid, ingest_url, ws_url, api_key, meetings:[{platform,native_id,token}],
 *          subs_per_meeting, complete_every, p99_limit_ms, stop_on_fail, retry_failed,
 *          idle_settle_ms, steps:[{name, interval_ms, warmup_s, duration_s}]}
 * Environment: FANOUT_DUMP=PATH writes "sent latency" (ms) of every measured frame there.
 * FANOUT_SPIN_US=N (default 0): after handling events, poll without sleeping for N µs before
 * blocking in epoll_wait. On loopback the kernel charges the wake-up of a sleeping receiver to the
 * sender, so a generator that sleeps between frames adds that cost to the server's CPU figure
 * (5-10 points of a core at 64,000 frames/s on a 2-core VM); polling removes most of it, at
 * the price of a generator CPU figure that includes the polling.
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#define READ_INITIAL (16 * 1024)
#define FRAME_MAX (64u * 1024 * 1024) /* a larger frame from the server is an error */
#define WRITE_MAX (64u * 1024 * 1024) /* unsent bytes queued on one connection */
#define HANDSHAKE_MAX (16 * 1024)
#define READY_TIMEOUT_MS 15000.0
#define MAX_EVENTS 256
#define SAMPLE_BYTES 200

static const char NEEDLE[] = "\"text\":\"t=";
static const char *const WORDS[] = {"we",     "should", "ship", "the",    "release", "on",
                                    "friday", "after",  "the",  "review", "is",      "done"};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])

/* ---- configuration ---- */
static struct {
    const char *label;
    long server_pid;
    const char *ingest_url, *ws_url, *api_key;
    json_t *meetings, *steps;
    size_t n_meetings;
    long subs_per_meeting, complete_every;
    double p99_limit_ms, idle_settle_ms;
    int stop_on_fail, retry_failed;
} cfg = {.label = "server"};

/* ---- small helpers ---- */
static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Epoch ms, µs resolution: the t= stamps and arrival times. */
static double real_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

/* Timers and the update schedule: not moved by clock adjustments. */
static double mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "  [%s] %s\n", cfg.label, buf);
}

/* x as JavaScript writes a number: the fewest digits that read back as x, no exponent between
 * 1e-6 and 1e21; NAN (and infinities) as null, as JSON.stringify does. */
static const char *num(char *buf, size_t size, double x)
{
    if (!isfinite(x)) {
        snprintf(buf, size, "null");
        return buf;
    }
    if (x == 0) {
        snprintf(buf, size, "0");
        return buf;
    }
    int p = 1;
    for (; p < 17; p++) {
        snprintf(buf, size, "%.*g", p, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    if (p == 17)
        snprintf(buf, size, "%.17g", x);
    char *e = strchr(buf, 'e');
    if (e && fabs(x) >= 1e-6 && fabs(x) < 1e21) {
        int dec = p - 1 - (int)strtol(e + 1, NULL, 10);
        snprintf(buf, size, "%.*f", dec > 0 ? dec : 0, x);
    } else if (e && e[2] == '0') { /* 1e-07 → 1e-7 */
        memmove(e + 2, e + 3, strlen(e + 3) + 1);
    }
    return buf;
}

/* JavaScript's Math.round(x * 1000) / 1000; NAN stays NAN (null). */
static double r3(double x)
{
    return isnan(x) ? x : floor(x * 1000 + 0.5) / 1000;
}

/* x >= 0 with 3 decimals as JavaScript's toFixed(3) writes it: printf's %.3f, except that an
 * exact tie rounds up where printf rounds to even (t= values that are multiples of 1/16 ms). */
static int fixed3(char *buf, size_t size, double x)
{
    double fl = floor(x * 1000);
    if (x >= 0 && fma(x, 1000, -(fl + 0.5)) == 0)
        return snprintf(buf, size, "%.3f", (fl + 1) / 1000);
    return snprintf(buf, size, "%.3f", x);
}

static uint64_t rng_state;

/* xorshift64*: masking keys and handshake keys need not be secret, only varied. */
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ---- results ---- */
static json_t *error_samples; /* unexpected closes/errors, first 20 kept verbatim */
static long n_errors;

/* A JSON string from bytes that may not be UTF-8 (a server's reply cut at 200 bytes). */
static json_t *jstr(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *t = malloc(n + 1);
    if (!t)
        return json_string("?");
    for (size_t i = 0; i < n; i++)
        t[i] = (unsigned char)s[i] < 0x80 && s[i] ? s[i] : '?';
    j = json_stringn(t, n);
    free(t);
    return j;
}

/* A number as JSON.stringify writes it: integral values without a fraction, NAN as null. */
static json_t *jnum(double x)
{
    if (!isfinite(x))
        return json_null();
    if (x == floor(x) && fabs(x) < 9e15)
        return json_integer((json_int_t)x);
    return json_real(x);
}

/* Writes j compactly; reals as num() writes them (json_dumps has a fixed precision only, which
 * shows 0.123 as 0.12299999999999999 at the 17 digits needed elsewhere). */
static void dump_json(FILE *f, json_t *j)
{
    char buf[64];
    size_t i;
    const char *key;
    json_t *v;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        i = 0;
        fputc('{', f);
        json_object_foreach(j, key, v)
        {
            json_t *k = json_string(key);
            if (i++)
                fputc(',', f);
            dump_json(f, k);
            json_decref(k);
            fputc(':', f);
            dump_json(f, v);
        }
        fputc('}', f);
        break;
    case JSON_ARRAY:
        fputc('[', f);
        json_array_foreach(j, i, v)
        {
            if (i)
                fputc(',', f);
            dump_json(f, v);
        }
        fputc(']', f);
        break;
    case JSON_REAL:
        fputs(num(buf, sizeof buf, json_real_value(j)), f);
        break;
    default: {
        char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
        fputs(s ? s : "null", f);
        free(s);
    }
    }
}

static void print_json(json_t *out)
{
    dump_json(stdout, out);
    fputc('\n', stdout);
    fflush(stdout);
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fatal(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fanout: %s\n", buf);
    json_t *out = json_object();
    json_object_set_new(out, "label", jstr(cfg.label, strlen(cfg.label)));
    json_object_set_new(out, "generator", json_string("c"));
    json_object_set_new(out, "fatal", jstr(buf, strlen(buf)));
    json_object_set_new(out, "errors", json_integer(n_errors));
    json_object_set(out, "error_samples", error_samples ? error_samples : json_array());
    print_json(out);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        fatal("out of memory (%zu bytes)", n);
    return p;
}

static void note_error(const char *what)
{
    n_errors++;
    if (json_array_size(error_samples) < 20)
        json_array_append_new(error_samples, jstr(what, strlen(what)));
    if (n_errors <= 5)
        log_line("error: %s", what);
}

/* A growable array of doubles. */
typedef struct {
    double *v;
    size_t n, cap;
} dvec_t;

static void dvec_push(dvec_t *a, double x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1u << 20;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double k = ceil(q * (double)n) - 1;
    size_t i = k < 0 ? 0 : (size_t)k;
    return sorted[i < n - 1 ? i : n - 1];
}

/* Latencies of frames whose update was sent inside the measured window (epoch ms). */
static dvec_t lat;
static double win_start = INFINITY, win_end = -INFINITY;
static long frames_other; /* frames whose t= lies outside the window (warm-up, drain) */
static FILE *dump;        /* FANOUT_DUMP: debugging, raw (sent, latency) pairs */

static void record_latency(double sent_at, double now)
{
    if (sent_at < win_start || sent_at >= win_end) {
        frames_other++;
        return;
    }
    dvec_push(&lat, now - sent_at);
    if (dump)
        fprintf(dump, "%.3f %.3f\n", sent_at, now - sent_at);
}

/* ---- /proc sampling of the server and the machine ---- */
static long clk_tck = 100;

static size_t read_proc(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fatal("open('%s') failed: %s", path, strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = 0;
    return n;
}

/* utime + stime of a process, seconds. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    read_proc(path, buf, sizeof buf);
    char *p = strrchr(buf, ')');
    if (!p)
        fatal("%s: unexpected format", path);
    p += 2; /* field 3, the state */
    for (int i = 0; i < 11 && p; i++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p)
        fatal("%s: unexpected format", path);
    char *end;
    unsigned long long ut = strtoull(p, &end, 10);
    unsigned long long st = strtoull(end, NULL, 10);
    return (double)(ut + st) / (double)clk_tck;
}

static long proc_status_kb(long pid, const char *field)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    read_proc(path, buf, sizeof buf);
    char *p = strstr(buf, field);
    return p ? strtol(p + strlen(field), NULL, 10) : 0;
}

static long proc_rss_kb(long pid)
{
    return proc_status_kb(pid, "VmRSS:");
}

static long proc_hwm_kb(long pid)
{
    return proc_status_kb(pid, "VmHWM:");
}

/* Busy CPU of the whole machine, seconds (all cores): /proc/stat's first line less idle/iowait. */
static double machine_busy_s(void)
{
    char buf[1024];
    read_proc("/proc/stat", buf, sizeof buf);
    unsigned long long f[8] = {0};
    char *p = buf + strcspn(buf, " ");
    for (int i = 0; i < 8; i++)
        f[i] = strtoull(p, &p, 10);
    return (double)(f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / (double)clk_tck;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- URLs ---- */
typedef struct {
    char authority[300]; /* host[:port] for the Host header */
    char target[2048];   /* path and query */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} url_t;

static void url_parse(url_t *u, const char *url)
{
    if (strncmp(url, "ws://", 5) != 0)
        fatal("unsupported URL (ws:// only): %s", url);
    const char *a = url + 5;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || alen >= sizeof u->authority)
        fatal("bad URL: %s", url);
    memcpy(u->authority, a, alen);
    u->authority[alen] = 0;
    const char *rest = a + alen;
    size_t rlen = strcspn(rest, "#");
    if (rlen + 2 > sizeof u->target)
        fatal("URL too long: %s", url);
    if (*rest != '/')
        u->target[0] = '/', memcpy(u->target + 1, rest, rlen), u->target[rlen + 1] = 0;
    else
        memcpy(u->target, rest, rlen), u->target[rlen] = 0;

    char host[300], port[16] = "80";
    const char *hs = u->authority, *colon;
    size_t hlen;
    if (*hs == '[') { /* an IPv6 literal */
        const char *close = strchr(hs, ']');
        if (!close)
            fatal("bad URL: %s", url);
        hs++;
        hlen = (size_t)(close - hs);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(hs, ':');
        hlen = colon ? (size_t)(colon - hs) : strlen(hs);
    }
    memcpy(host, hs, hlen);
    host[hlen] = 0;
    if (colon)
        snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc)
        fatal("getaddrinfo(\"%s\") failed: %s", host, gai_strerror(rc));
    memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
    u->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

/* ---- connections ---- */
enum { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_READY, C_CLOSED };

typedef struct conn conn_t;
typedef void (*text_cb)(conn_t *c, const char *p, size_t n);

struct conn {
    int fd, state;
    uint32_t events; /* registered with epoll */
    char name[32];
    const url_t *url;
    const char *headers; /* extra request header lines, each ending in \r\n */
    char *first;         /* the text message sent once the upgrade is done; freed then */
    const char *expect;  /* what the first reply must contain */
    text_cb on_text;     /* every later text message (p points into rbuf) */
    double deadline;     /* mono ms: not ready by then is a failure */
    char *rbuf;          /* received bytes not yet consumed: a partial frame at most */
    size_t rlen, rcap;
    char *wbuf; /* bytes the kernel did not take yet */
    size_t woff, wlen, wcap;
    /* publishers: the update schedule */
    long seg, upd;
    double next; /* mono ms */
    char *words;
    size_t words_len, words_cap;
};

static int ep, tfd;
static int closing;
static double now_recv; /* epoch ms of the read being handled */
static conn_t **pubs, **subs;
static size_t n_pubs, n_subs;

static void set_events(conn_t *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == C_CLOSED)
        return;
    int was_ready = c->state == C_READY;
    c->state = C_CLOSED;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (!was_ready)
        fatal("%s: %s", c->name, why);
    if (!closing) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s %s", c->name, why);
        note_error(buf);
    }
}

/* Node's wording: "error read ECONNRESET", "error connect ECONNREFUSED 127.0.0.1:8080". */
static void conn_fail_errno(conn_t *c, const char *op, int err)
{
    char why[400];
    const char *name = strerrorname_np(err);
    snprintf(why, sizeof why, "error %s %s%s%s", op, name ? name : strerror(err),
             strcmp(op, "connect") ? "" : " ", strcmp(op, "connect") ? "" : c->url->authority);
    conn_fail(c, why);
}

static void conn_flush(conn_t *c)
{
    while (c->woff < c->wlen) {
        ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_fail_errno(c, "write", errno);
            return;
        }
        c->woff += (size_t)w;
    }
    c->woff = c->wlen = 0;
    set_events(c, EPOLLIN);
}

/* Sends now, or queues what the kernel does not take (in order, behind anything queued). */
static void conn_write(conn_t *c, const char *p, size_t n)
{
    if (c->state == C_CLOSED)
        return;
    if (c->woff == c->wlen) {
        ssize_t w;
        do
            w = send(c->fd, p, n, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w == (ssize_t)n)
            return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_fail_errno(c, "write", errno);
                return;
            }
            w = 0;
        }
        p += w;
        n -= (size_t)w;
        c->woff = c->wlen = 0;
    }
    if (c->wlen - c->woff + n > WRITE_MAX) {
        conn_fail(c, "send queue over 64 MB");
        return;
    }
    if (c->woff > 0) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    if (c->wlen + n > c->wcap) {
        c->wcap = c->wlen + n > 2 * c->wcap ? c->wlen + n : 2 * c->wcap;
        c->wbuf = xrealloc(c->wbuf, c->wcap);
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
    set_events(c, EPOLLIN | EPOLLOUT);
}

/* One masked frame (RFC 6455 5.3), built in a buffer reused by every send. */
static void ws_send(conn_t *c, int opcode, const char *p, size_t n)
{
    static unsigned char *f;
    static size_t fcap;
    size_t hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
    if (hl + 4 + n > fcap) {
        fcap = hl + 4 + n + 1024;
        f = xrealloc(f, fcap);
    }
    f[0] = (unsigned char)(0x80 | opcode);
    if (hl == 2) {
        f[1] = (unsigned char)(0x80 | n);
    } else if (hl == 4) {
        f[1] = 0x80 | 126;
        f[2] = (unsigned char)(n >> 8);
        f[3] = (unsigned char)n;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
    uint32_t k = (uint32_t)(rng() >> 32);
    unsigned char key[4] = {(unsigned char)(k >> 24), (unsigned char)(k >> 16),
                            (unsigned char)(k >> 8), (unsigned char)k};
    memcpy(f + hl, key, 4);
    unsigned char *o = f + hl + 4;
    for (size_t i = 0; i < n; i++)
        o[i] = (unsigned char)p[i] ^ key[i & 3];
    conn_write(c, (const char *)f, hl + 4 + n);
}

static void send_upgrade(conn_t *c)
{
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng();
        memcpy(raw + i, &r, 8);
    }
    char key[32], req[4096];
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     c->url->target, c->url->authority, key, c->headers);
    if (n < 0 || (size_t)n >= sizeof req)
        fatal("%s: request too long", c->name);
    conn_write(c, req, (size_t)n);
}

static conn_t *conn_start(const char *name, const url_t *url, const char *headers, char *first,
                          const char *expect, text_cb on_text)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        fatal("out of memory");
    snprintf(c->name, sizeof c->name, "%s", name);
    c->url = url;
    c->headers = headers;
    c->first = first;
    c->expect = expect;
    c->on_text = on_text;
    c->deadline = mono_ms() + READY_TIMEOUT_MS;
    c->rcap = READ_INITIAL;
    c->rbuf = xrealloc(NULL, c->rcap);
    c->state = C_CONNECTING;
    c->fd = socket(url->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        const char *e = strerrorname_np(errno);
        fatal("%s: error socket %s", name, e ? e : strerror(errno));
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)&url->addr, url->addrlen) < 0 &&
        errno != EINPROGRESS) {
        const char *e = strerrorname_np(errno);
        fatal("%s: error connect %s %s", name, e ? e : strerror(errno), url->authority);
    }
    c->events = EPOLLIN | EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
        fatal("epoll_ctl() failed: %s", strerror(errno));
    return c;
}

/* Handles the complete frames at the start of rbuf; keeps a partial one. */
static void parse_frames(conn_t *c)
{
    unsigned char *b = (unsigned char *)c->rbuf;
    size_t off = 0, end = c->rlen, need = 0;
    while (c->state != C_CLOSED) {
        size_t avail = end - off;
        if (avail < 2)
            break;
        int op = b[off] & 0x0f, masked = b[off + 1] & 0x80;
        uint64_t len = b[off + 1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)b[off + 2] << 8 | b[off + 3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[off + 2 + i];
            hl = 10;
        }
        if (masked) /* servers do not mask, but accept it */
            hl += 4;
        if (len > FRAME_MAX) {
            conn_fail(c, "frame over 64 MB");
            return;
        }
        if (avail < hl + len) {
            need = hl + (size_t)len;
            break;
        }
        char *p = (char *)b + off + hl;
        size_t n = (size_t)len;
        if (masked) {
            const unsigned char *k = b + off + hl - 4;
            for (size_t i = 0; i < n; i++)
                p[i] = (char)((unsigned char)p[i] ^ k[i & 3]);
        }
        if (op == 1 || op == 0) {
            if (c->state == C_READY) {
                c->on_text(c, p, n);
            } else if (memmem(p, n, c->expect, strlen(c->expect))) {
                c->state = C_READY;
            } else {
                char why[SAMPLE_BYTES + 16];
                snprintf(why, sizeof why, "refused: %.*s",
                         (int)(n < SAMPLE_BYTES ? n : SAMPLE_BYTES), p);
                conn_fail(c, why);
                return;
            }
        } else if (op == 8) {
            char why[SAMPLE_BYTES + 64];
            int code = n >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 1005;
            size_t rn = n >= 2 ? n - 2 : 0;
            snprintf(why, sizeof why, "closed by the server: %d %.*s", code,
                     (int)(rn < SAMPLE_BYTES ? rn : SAMPLE_BYTES), n >= 2 ? p + 2 : p);
            conn_fail(c, why);
            return;
        } else if (op == 9) {
            ws_send(c, 10, p, n);
        }
        off += hl + (size_t)len;
    }
    if (c->state == C_CLOSED)
        return;
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, end - off);
        c->rlen = end - off;
    }
    if (need > c->rcap) {
        c->rcap = need;
        c->rbuf = xrealloc(c->rbuf, c->rcap);
    }
}

static void on_readable(conn_t *c)
{
    if (c->rlen == c->rcap) { /* only in the handshake: parse_frames makes room for a frame */
        conn_fail(c, "upgrade response over 16 KB");
        return;
    }
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n == 0) {
        conn_fail(c, "connection closed");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_fail_errno(c, "read", errno);
        return;
    }
    now_recv = real_ms();
    c->rlen += (size_t)n;
    if (c->state == C_HANDSHAKE) {
        char *h = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        if (!h) {
            if (c->rlen >= HANDSHAKE_MAX)
                conn_fail(c, "upgrade response over 16 KB");
            return;
        }
        size_t hend = (size_t)(h - c->rbuf);
        if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0) {
            char why[SAMPLE_BYTES + 32];
            snprintf(why, sizeof why, "upgrade refused: %.*s",
                     (int)(hend < SAMPLE_BYTES ? hend : SAMPLE_BYTES), c->rbuf);
            conn_fail(c, why);
            return;
        }
        c->state = C_OPEN;
        ws_send(c, 1, c->first, strlen(c->first));
        free(c->first);
        c->first = NULL;
        c->rlen -= hend + 4;
        memmove(c->rbuf, h + 4, c->rlen);
    }
    parse_frames(c);
}

static void on_conn_event(conn_t *c, uint32_t ev)
{
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            conn_fail_errno(c, "connect", err);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        c->state = C_HANDSHAKE;
        set_events(c, EPOLLIN);
        send_upgrade(c);
        return;
    }
    if (ev & EPOLLOUT)
        conn_flush(c);
    if (c->state != C_CLOSED && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        on_readable(c);
}

/* ---- publishers and subscribers ---- */
static void publisher_text(conn_t *c, const char *p, size_t n)
{
    if (memmem(p, n, "\"ERROR\"", 7)) {
        char buf[SAMPLE_BYTES + 64];
        snprintf(buf, sizeof buf, "%s got %.*s", c->name,
                 (int)(n < SAMPLE_BYTES ? n : SAMPLE_BYTES), p);
        note_error(buf);
    }
}

/* The decimal number at p (digits and one '.'), as fanout.js's parseNum computes it. */
static double parse_num(const char *p, const char *end)
{
    double v = 0, scale = 0;
    for (; p < end; p++) {
        char ch = *p;
        if (ch == '.') {
            scale = 1;
        } else if (ch >= '0' && ch <= '9') {
            v = v * 10 + (ch - '0');
            if (scale)
                scale *= 10;
        } else {
            break;
        }
    }
    return scale ? v / scale : v;
}

static void subscriber_text(conn_t *c, const char *p, size_t n)
{
    (void)c;
    const char *end = p + n, *q;
    while ((q = memmem(p, (size_t)(end - p), NEEDLE, sizeof NEEDLE - 1))) {
        p = q + sizeof NEEDLE - 1;
        record_latency(parse_num(p, end), now_recv);
    }
}

static char *dumps_compact(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s)
        fatal("out of memory");
    json_decref(j);
    return s;
}

static const char *meeting_str(size_t i, const char *key)
{
    const char *s = json_string_value(json_object_get(json_array_get(cfg.meetings, i), key));
    if (!s)
        fatal("config: meetings[%zu].%s: expected a string", i, key);
    return s;
}

static url_t ingest_url, ws_url;
static char *sub_headers;

static conn_t *start_publisher(size_t i)
{
    char name[32], uid[32];
    snprintf(name, sizeof name, "publisher %zu", i);
    snprintf(uid, sizeof uid, "bench-%zu", i);
    json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:b}", "uid", uid, "token",
                          meeting_str(i, "token"), "language", "en", "task", "transcribe",
                          "audio_format", "int16", "sample_rate", 16000, "use_vad", 1);
    if (!m)
        fatal("out of memory");
    return conn_start(name, &ingest_url, "", dumps_compact(m), "\"SERVER_READY\"", publisher_text);
}

static conn_t *start_subscriber(size_t i)
{
    char name[32];
    size_t spec = i % cfg.n_meetings; /* subscriber k*M + m follows meeting m */
    snprintf(name, sizeof name, "subscriber %zu", i);
    json_t *m =
        json_pack("{s:s, s:[{s:s, s:s}]}", "action", "subscribe", "meetings", "platform",
                  meeting_str(spec, "platform"), "native_id", meeting_str(spec, "native_id"));
    if (!m)
        fatal("out of memory");
    return conn_start(name, &ws_url, sub_headers, dumps_compact(m), "\"type\":\"subscribed\"",
                      subscriber_text);
}

/* ---- the update schedule ---- */
static int running;
static double interval_ms = 250;
static long sent_in_win, skipped;
static double sched_lag_max;
static double tick_due; /* mono ms */
static int tick_stats;  /* recording tick lateness (the measured window) */
static dvec_t tick_late;

static void send_update(conn_t *p)
{
    long every = cfg.complete_every, u = p->upd;
    double seg_len = ((double)every * interval_ms) / 1000;
    double start = (double)p->seg * 3.0; /* a fresh start per segment: its identity */
    const char *w = WORDS[u == 0 ? 0 : u % (long)N_WORDS];
    size_t wl = strlen(w);
    if (p->words_len + wl + 2 > p->words_cap) {
        p->words_cap = 2 * (p->words_len + wl + 2) + 64;
        p->words = xrealloc(p->words, p->words_cap);
    }
    if (u == 0) {
        p->words_len = 0;
    } else {
        p->words[p->words_len++] = ' ';
    }
    memcpy(p->words + p->words_len, w, wl);
    p->words_len += wl;
    int completed = u == every - 1;
    double t = real_ms();
    char endb[64], tb[64];
    fixed3(endb, sizeof endb, start + ((double)(u + 1) * seg_len) / (double)every);
    fixed3(tb, sizeof tb, t);
    static char *msg;
    static size_t mcap;
    size_t need = p->words_len + 256;
    if (need > mcap) {
        mcap = 2 * need;
        msg = xrealloc(msg, mcap);
    }
    int n =
        snprintf(msg, mcap,
                 "{\"type\":\"segments\",\"segments\":[{\"start\":%ld,\"end\":%s,\"text\":\"t=%s "
                 "%.*s\",\"completed\":%s}]}",
                 p->seg * 3, endb, tb, (int)p->words_len, p->words, completed ? "true" : "false");
    ws_send(p, 1, msg, (size_t)n);
    if (t >= win_start && t < win_end)
        sent_in_win++;
    if (completed) {
        p->seg++;
        p->upd = 0;
    } else {
        p->upd++;
    }
}

static void arm_tick(double due)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (due > 0) {
        double s = floor(due / 1000);
        its.it_value.tv_sec = (time_t)s;
        its.it_value.tv_nsec = (long)((due - s * 1000) * 1e6);
        if (its.it_value.tv_nsec >= 1000000000L)
            its.it_value.tv_nsec = 999999999L;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1; /* zero would disarm */
    }
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        fatal("timerfd_settime() failed: %s", strerror(errno));
}

static void tick(void)
{
    uint64_t expirations;
    if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        fatal("read(timerfd) failed: %s", strerror(errno));
    if (!running)
        return;
    double now = mono_ms();
    if (now < tick_due) { /* woken early by rounding: wait for the due time */
        arm_tick(tick_due);
        return;
    }
    if (tick_stats)
        dvec_push(&tick_late, now - tick_due);
    tick_due = now + 1; /* like setInterval: the next run 1 ms after this one started */
    arm_tick(tick_due);
    for (size_t i = 0; i < n_pubs; i++) {
        conn_t *p = pubs[i];
        if (p->next > now)
            continue;
        double lag = now - p->next;
        if (lag > 4 * interval_ms + 50) {
            /* the generator fell far behind: skip instead of bursting */
            skipped += (long)floor(lag / interval_ms);
            p->next = now;
        } else if (lag > sched_lag_max) {
            sched_lag_max = lag;
        }
        send_update(p);
        p->next += interval_ms;
    }
}

static void start_updates(double ms)
{
    interval_ms = ms;
    double now = mono_ms();
    /* phases spread evenly over one interval, so updates arrive smoothly, not in bursts */
    for (size_t i = 0; i < n_pubs; i++)
        pubs[i]->next = now + ((double)i * ms) / (double)n_pubs;
    running = 1;
    tick_due = now + 1;
    arm_tick(tick_due);
}

static void stop_updates(void)
{
    running = 0;
    arm_tick(0);
}

/* ---- the loop ---- */

static double spin_ms;    /* FANOUT_SPIN_US: keep polling this long after the last event */
static double spin_until; /* mono ms */

/* Waits up to timeout_ms for events and handles them, the tick first. */
static void loop_once(double timeout_ms)
{
    static struct epoll_event evs[MAX_EVENTS];
    int to = timeout_ms <= 0 || (spin_ms > 0 && mono_ms() < spin_until) ? 0 : (int)ceil(timeout_ms);
    int n = epoll_wait(ep, evs, MAX_EVENTS, to);
    if (n < 0) {
        if (errno == EINTR)
            return;
        fatal("epoll_wait() failed: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++)
        if (evs[i].data.ptr == NULL)
            tick();
    for (int i = 0; i < n; i++)
        if (evs[i].data.ptr)
            on_conn_event(evs[i].data.ptr, evs[i].events);
    if (n > 0 && spin_ms > 0)
        spin_until = mono_ms() + spin_ms;
}

static void loop_for(double ms)
{
    double end = mono_ms() + ms;
    for (double now = mono_ms(); now < end; now = mono_ms())
        loop_once(end - now);
}

/* Opens total connections, width at a time; any that fails or is not ready in 15 s is fatal. */
static void connect_pool(conn_t **out, size_t total, size_t width, conn_t *(*start)(size_t))
{
    conn_t *inflight[64];
    size_t next = 0, nin = 0, done = 0;
    if (width > 64)
        width = 64;
    while (done < total) {
        while (nin < width && next < total) {
            out[next] = start(next);
            inflight[nin++] = out[next++];
        }
        double now = mono_ms(), wake = now + 100;
        for (size_t i = 0; i < nin; i++)
            if (inflight[i]->deadline < wake)
                wake = inflight[i]->deadline;
        loop_once(wake - now);
        now = mono_ms();
        for (size_t i = 0; i < nin;) {
            conn_t *c = inflight[i];
            if (c->state == C_READY) {
                inflight[i] = inflight[--nin];
                done++;
                continue;
            }
            if (now >= c->deadline)
                conn_fail(c, "not ready within 15 s");
            i++;
        }
    }
}

/* ---- steps ---- */
static double num_field(json_t *o, const char *key, const char *where, double def, int required)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            fatal("config: %s%s: missing", where, key);
        return def;
    }
    if (!json_is_number(v))
        fatal("config: %s%s: expected a number", where, key);
    return json_number_value(v);
}

static json_t *run_step(json_t *step)
{
    const char *name = json_string_value(json_object_get(step, "name"));
    double interval = num_field(step, "interval_ms", "steps[].", 0, 1);
    double warmup_s = num_field(step, "warmup_s", "steps[].", 0, 0);
    double duration_s = num_field(step, "duration_s", "steps[].", 0, 1);
    if (!name)
        name = "";
    if (!(interval > 0) || !(duration_s > 0))
        fatal("config: steps[]: interval_ms and duration_s must be > 0");

    lat.n = 0;
    frames_other = 0;
    sent_in_win = 0;
    sched_lag_max = 0;
    skipped = 0;
    long err_before = n_errors;
    start_updates(interval);
    loop_for(warmup_s * 1000);
    double cpu0 = proc_cpu_s(cfg.server_pid);
    double me0 = self_cpu_s();
    double busy0 = machine_busy_s();
    win_start = real_ms();
    win_end = win_start + duration_s * 1000;
    tick_late.n = 0;
    tick_stats = 1;
    loop_for(duration_s * 1000);
    double wall = (real_ms() - win_start) / 1000;
    double cpu1 = proc_cpu_s(cfg.server_pid);
    double me = self_cpu_s() - me0;
    double busy1 = machine_busy_s();
    long rss = proc_rss_kb(cfg.server_pid);
    tick_stats = 0;
    qsort(tick_late.v, tick_late.n, sizeof *tick_late.v, cmp_double);
    double late_p99 = pct(tick_late.v, tick_late.n, 0.99);
    double late_max = tick_late.n ? tick_late.v[tick_late.n - 1] : NAN;
    stop_updates();
    /* drain: wait for every expected frame (or give up after 3 s: they count as missing) */
    long expected = sent_in_win * cfg.subs_per_meeting;
    double t0 = mono_ms();
    for (double now = t0; (long)lat.n < expected && now - t0 < 3000; now = mono_ms())
        loop_once(t0 + 3000 - now);
    size_t n = lat.n;
    qsort(lat.v, n, sizeof *lat.v, cmp_double);

    double p50 = r3(pct(lat.v, n, 0.5)), p90 = r3(pct(lat.v, n, 0.9));
    double p99 = r3(pct(lat.v, n, 0.99)), max = r3(n ? lat.v[n - 1] : NAN);
    double upd_s = r3((double)sent_in_win / duration_s), frames_s = r3((double)n / duration_s);
    double srv_cpu = r3((100 * (cpu1 - cpu0)) / wall), cli_cpu = r3(100 * me / wall);
    double other_cpu = r3((100 * (busy1 - busy0 - (cpu1 - cpu0) - me)) / wall);
    long missing = expected - (long)n, errors = n_errors - err_before;
    int pass =
        !isnan(p99) && p99 <= cfg.p99_limit_ms && missing == 0 && errors == 0 && skipped == 0;

    json_t *res = json_object();
    json_object_set(res, "name", json_object_get(step, "name"));
    json_object_set_new(res, "interval_ms", jnum(interval));
    json_object_set_new(res, "updates_per_s", jnum(upd_s));
    json_object_set_new(res, "frames_per_s", jnum(frames_s));
    json_object_set_new(res, "updates_sent", json_integer(sent_in_win));
    json_object_set_new(res, "frames_expected", json_integer(expected));
    json_object_set_new(res, "frames_received", json_integer((json_int_t)n));
    json_object_set_new(res, "frames_missing", json_integer(missing));
    json_object_set_new(res, "p50_ms", jnum(p50));
    json_object_set_new(res, "p90_ms", jnum(p90));
    json_object_set_new(res, "p99_ms", jnum(p99));
    json_object_set_new(res, "max_ms", jnum(max));
    json_object_set_new(res, "server_cpu_pct", jnum(srv_cpu));
    json_object_set_new(res, "server_rss_kb", json_integer(rss));
    json_object_set_new(res, "client_cpu_pct", jnum(cli_cpu));
    /* everything else on the machine (other processes, softirq not charged to either): a high
     * figure means the step was disturbed */
    json_object_set_new(res, "other_cpu_pct", jnum(other_cpu));
    json_object_set_new(res, "generator_lag_max_ms", jnum(r3(sched_lag_max)));
    json_object_set_new(res, "generator_skipped", json_integer(skipped));
    json_object_set_new(res, "generator_tick_late_p99_ms", jnum(r3(late_p99)));
    json_object_set_new(res, "generator_tick_late_max_ms", jnum(r3(late_max)));
    json_object_set_new(res, "errors", json_integer(errors));
    json_object_set_new(res, "pass", json_boolean(pass));

    char b[10][32];
    log_line("%s: %s upd/s → %s frames/s, p50 %s p99 %s max %s ms, missing %ld, server cpu %s%%, "
             "client cpu %s%%, other %s%% (tick late p99 %s max %s ms), rss %.1f MB%s",
             name, num(b[0], 32, upd_s), num(b[1], 32, frames_s), num(b[2], 32, p50),
             num(b[3], 32, p99), num(b[4], 32, max), missing, num(b[5], 32, srv_cpu),
             num(b[6], 32, cli_cpu), num(b[7], 32, other_cpu), num(b[8], 32, r3(late_p99)),
             num(b[9], 32, r3(late_max)), (double)rss / 1024, pass ? "" : "  [over limit]");
    loop_for(300); /* let stragglers (sent during the drain) land outside the next window */
    return res;
}

/* ---- main ---- */
static void load_config(const char *path)
{
    json_error_t err;
    json_t *c = json_load_file(path, 0, &err);
    if (!c)
        fatal("%s:%d: %s", path, err.line, err.text);
    const char *label = json_string_value(json_object_get(c, "label"));
    if (label && *label)
        cfg.label = label;
    cfg.server_pid = (long)num_field(c, "server_pid", "", 0, 1);
    cfg.ingest_url = json_string_value(json_object_get(c, "ingest_url"));
    cfg.ws_url = json_string_value(json_object_get(c, "ws_url"));
    cfg.api_key = json_string_value(json_object_get(c, "api_key"));
    if (!cfg.ingest_url || !cfg.ws_url || !cfg.api_key)
        fatal("config: ingest_url, ws_url and api_key are required strings");
    cfg.meetings = json_object_get(c, "meetings");
    cfg.steps = json_object_get(c, "steps");
    if (!json_is_array(cfg.meetings) || !json_array_size(cfg.meetings) || !json_is_array(cfg.steps))
        fatal("config: meetings (non-empty) and steps must be arrays");
    cfg.n_meetings = json_array_size(cfg.meetings);
    cfg.subs_per_meeting = (long)num_field(c, "subs_per_meeting", "", 0, 1);
    cfg.complete_every = (long)num_field(c, "complete_every", "", 0, 1);
    if (cfg.subs_per_meeting < 0 || cfg.complete_every < 1)
        fatal("config: subs_per_meeting must be >= 0 and complete_every >= 1");
    cfg.p99_limit_ms = num_field(c, "p99_limit_ms", "", 0, 1);
    cfg.idle_settle_ms = num_field(c, "idle_settle_ms", "", 0, 0);
    cfg.stop_on_fail = json_is_true(json_object_get(c, "stop_on_fail"));
    cfg.retry_failed = json_is_true(json_object_get(c, "retry_failed"));
    /* c stays referenced: cfg points into it until exit */
}

int main(int argc, char **argv)
{
    error_samples = json_array();
    if (argc != 2) {
        fprintf(stderr, "usage: fanout CONFIG.json\n");
        return 2;
    }
    load_config(argv[1]);
    long tck = sysconf(_SC_CLK_TCK);
    if (tck > 0)
        clk_tck = tck;
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || rng_state == 0)
        rng_state = (uint64_t)real_ms() * 2654435761u | 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *spin = getenv("FANOUT_SPIN_US");
    if (spin && *spin) {
        char *end;
        spin_ms = strtod(spin, &end) / 1000;
        if (*end || !(spin_ms >= 0 && spin_ms <= 1000))
            fatal("FANOUT_SPIN_US: expected microseconds (0 to 1000000), got \"%s\"", spin);
    }
    const char *dump_path = getenv("FANOUT_DUMP");
    if (dump_path && *dump_path && !(dump = fopen(dump_path, "w")))
        fatal("fopen(\"%s\") failed: %s", dump_path, strerror(errno));
    url_parse(&ingest_url, cfg.ingest_url);
    url_parse(&ws_url, cfg.ws_url);
    size_t hl = strlen(cfg.api_key) + 16;
    sub_headers = xrealloc(NULL, hl);
    snprintf(sub_headers, hl, "X-API-Key: %s\r\n", cfg.api_key);

    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0)
        fatal("epoll_create1()/timerfd_create() failed: %s", strerror(errno));
    struct epoll_event te = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &te) < 0)
        fatal("epoll_ctl() failed: %s", strerror(errno));

    json_t *out = json_object();
    json_object_set_new(out, "label", jstr(cfg.label, strlen(cfg.label)));
    json_object_set_new(out, "generator", json_string("c"));
    json_object_set_new(out, "meetings", json_integer((json_int_t)cfg.n_meetings));
    json_object_set_new(out, "subs_per_meeting", json_integer(cfg.subs_per_meeting));

    n_pubs = cfg.n_meetings;
    pubs = xrealloc(NULL, n_pubs * sizeof *pubs);
    double t0 = real_ms();
    connect_pool(pubs, n_pubs, 32, start_publisher);
    json_object_set_new(out, "publishers_connect_s", jnum(r3((real_ms() - t0) / 1000)));
    loop_for(cfg.idle_settle_ms);
    long rss0 = proc_rss_kb(cfg.server_pid);
    n_subs = (size_t)cfg.subs_per_meeting * cfg.n_meetings;
    subs = xrealloc(NULL, (n_subs ? n_subs : 1) * sizeof *subs);
    double t1 = real_ms();
    connect_pool(subs, n_subs, 64, start_subscriber);
    json_object_set_new(out, "subscribers_connect_s", jnum(r3((real_ms() - t1) / 1000)));
    loop_for(cfg.idle_settle_ms);
    long rss1 = proc_rss_kb(cfg.server_pid);
    long idle_each = n_subs ? (long)floor((double)(rss1 - rss0) * 1024 / (double)n_subs + 0.5) : 0;
    json_object_set_new(out, "subscribers", json_integer((json_int_t)n_subs));
    json_object_set_new(out, "connections", json_integer((json_int_t)(n_subs + n_pubs)));
    json_object_set_new(out, "rss_kb_before_subscribers", json_integer(rss0));
    json_object_set_new(out, "rss_kb_idle_subscribers", json_integer(rss1));
    json_object_set_new(out, "idle_bytes_per_subscriber", json_integer(idle_each));
    log_line("%zu connections open; server RSS %.1f → %.1f MB with %zu idle subscribers (%ld B "
             "each)",
             n_subs + n_pubs, (double)rss0 / 1024, (double)rss1 / 1024, n_subs, idle_each);

    json_t *steps = json_array();
    json_object_set_new(out, "steps", steps);
    size_t i;
    json_t *step;
    json_array_foreach(cfg.steps, i, step)
    {
        json_t *r = run_step(step);
        json_object_set_new(r, "attempts", json_integer(1));
        if (!json_is_true(json_object_get(r, "pass")) && cfg.retry_failed) {
            /* once more: on a shared machine one disturbed window should not end the sweep */
            json_t *again = run_step(step);
            json_object_set_new(again, "attempts", json_integer(2));
            json_t *first = json_object();
            const char *keep[] = {"p99_ms", "max_ms", "frames_missing", "other_cpu_pct"};
            for (size_t k = 0; k < 4; k++)
                json_object_set(first, keep[k], json_object_get(r, keep[k]));
            json_object_set_new(again, "first_attempt", first);
            json_decref(r);
            r = again;
        }
        json_array_append_new(steps, r);
        if (!json_is_true(json_object_get(r, "pass")) && cfg.stop_on_fail)
            break;
    }
    json_object_set_new(out, "server_rss_hwm_kb", json_integer(proc_hwm_kb(cfg.server_pid)));
    json_object_set_new(out, "errors", json_integer(n_errors));
    json_object_set(out, "error_samples", error_samples);
    if (dump)
        fclose(dump);
    closing = 1;
    for (size_t k = 0; k < n_subs; k++)
        if (subs[k]->state != C_CLOSED)
            close(subs[k]->fd);
    for (size_t k = 0; k < n_pubs; k++)
        if (pubs[k]->state != C_CLOSED)
            close(pubs[k]->fd);
    print_json(out);
    return 0;
}
