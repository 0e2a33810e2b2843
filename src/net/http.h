/* HTTP/1.1 server on one libuv loop, parsing with http-parser: keep-alive, pipelining (answered in
 * order), chunked request bodies, Expect: 100-continue, caps on header/body size, idle/header/body
 * timeouts, one access-log line per request, and a hijack hook for WebSocket upgrades.
 *
 * Threading: every function here runs on the loop thread, except where a comment says otherwise.
 * Request handlers that do blocking work hand the request to a worker thread and call
 * hk_http_respond() back on the loop thread (see api/api.h). */
#ifndef HK_HTTP_H
#define HK_HTTP_H

#include <uv.h>
#include "core/common.h"
#include "core/buf.h"

typedef struct hk_http_server_s hk_http_server_t;
typedef struct hk_http_conn_s hk_http_conn_t;

typedef struct {
    char *name; /* lower-cased */
    char *value;
} hk_http_header_t;

#define HK_HTTP_MAX_PARAMS 8

/*
 * One parsed request. Owned by the server; valid from the request callback until the
 * hk_http_respond() call for it returns (even if the client disconnects meanwhile: the server then
 * discards the response). Fields are read-only for handlers except `route`, `params` and `user`.
 */
typedef struct hk_http_req_s {
    hk_http_conn_t *conn;
    const char *method;    /* "GET", "POST", ... */
    int method_id;         /* http-parser's enum http_method */
    char *path;            /* raw (not percent-decoded) path, without the query; NUL-terminated */
    char *query;           /* raw query string without '?', or NULL */
    hk_http_header_t *headers;
    size_t nheaders;
    char *body; /* de-chunked body, NUL-terminated (never NULL; "" when empty) */
    size_t body_len;
    char request_id[20]; /* from X-Request-Id when sane, else generated; echoed in the response */
    uint64_t start_ns;   /* hk_time_mono_ns() when the request line arrived */
    char remote_addr[48];
    /* Filled by the router / application: */
    const char *route; /* route pattern for metrics and logs ("/meetings/{id}"), or NULL */
    size_t nparams;
    char *params[HK_HTTP_MAX_PARAMS]; /* percent-decoded path parameters, owned by the request */
    void *user;                       /* application slot, never touched by the server */
} hk_http_req_t;

/* Called on the loop thread once a request's headers and body are complete. The callee must call
 * hk_http_respond() (or hk_http_hijack()) exactly once for it, now or later, on the loop thread.
 * The next pipelined request on the same connection is not dispatched before that. */
typedef void (*hk_http_request_cb)(hk_http_req_t *req, void *data);

/* Called on the loop thread for every response the server writes (handler responses and the
 * server's own 400/408/413/...), before the request is freed: for metrics. */
typedef void (*hk_http_response_cb)(const hk_http_req_t *req, int status, size_t bytes,
                                    uint64_t latency_ns, void *data);

typedef struct {
    const char *bind; /* IPv4/IPv6 literal */
    int port;         /* 0 = ephemeral; see hk_http_server_port() */
    int backlog;
    size_t max_header_bytes; /* request line + headers; over it: 431, connection closed */
    size_t max_body_bytes;   /* over it: 413 without reading the rest, connection closed */
    int max_connections;     /* further accepts are closed at once */
    uint64_t idle_timeout_ms;   /* keep-alive connection with no request in progress */
    uint64_t header_timeout_ms; /* from first byte of a request to end of headers: 408 */
    uint64_t body_timeout_ms;   /* from end of headers to end of body: 408 */
    bool access_log;            /* one logfmt line per request */
    hk_http_request_cb on_request;
    hk_http_response_cb on_response; /* may be NULL */
    void *data;
} hk_http_config_t;

/* Binds and listens. Returns 0 and *out, or a negative UV_E* code (nothing left allocated).
 * The server keeps a copy of cfg (strings copied). Free with hk_http_server_free() after the
 * shutdown callback has run (or right away if it never started accepting). */
int hk_http_server_new(uv_loop_t *loop, const hk_http_config_t *cfg, hk_http_server_t **out);

/* The port actually bound (useful with port 0). */
int hk_http_server_port(const hk_http_server_t *srv);

/* Graceful stop: stops accepting, closes idle connections, lets in-flight requests finish
 * (their responses are sent with Connection: close), then closes everything and calls done_cb
 * once on the loop thread. */
void hk_http_server_shutdown(hk_http_server_t *srv, void (*done_cb)(void *data), void *data);

/* Frees a server whose shutdown completed. NULL-safe. */
void hk_http_server_free(hk_http_server_t *srv);

typedef struct {
    uint64_t open_connections;
    uint64_t accepted_total;
    uint64_t requests_total;
} hk_http_stats_t;
void hk_http_server_stats(const hk_http_server_t *srv, hk_http_stats_t *out);

/* Value of a header by lower-case name, or NULL. */
const char *hk_http_req_header(const hk_http_req_t *req, const char *lname);

/* Percent-decodes query parameter `key` into out (NUL-terminated). Returns 0, HK_ENOTFOUND, or
 * HK_ETOOBIG when it does not fit. */
int hk_http_query_get(const hk_http_req_t *req, const char *key, char *out, size_t outlen);

/* Percent-decodes src[0..len) into out (NUL-terminated); '+' stays '+' unless plus_is_space.
 * Returns decoded length, or HK_EINVAL for bad escapes / embedded NUL, HK_ETOOBIG if too long. */
int hk_http_pct_decode(const char *src, size_t len, char *out, size_t outlen, bool plus_is_space);

/*
 * Sends the response for req and releases req. `extra_headers` is NULL or preformatted lines
 * ("Name: value\r\n..."). The body is copied. The server adds Date, Content-Length, Content-Type
 * (when given), X-Request-Id and Connection. Loop thread only.
 */
void hk_http_respond(hk_http_req_t *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t body_len);

/*
 * Takes the connection away from the HTTP server (for a WebSocket upgrade). On success the caller
 * owns *tcp_out (a uv_tcp_t allocated with malloc: uv_close it and free it in the close callback),
 * reading is stopped, and *surplus receives bytes already read past this request (caller disposes).
 * req is released. On failure (pipelined requests pending etc.) nothing changes; respond instead.
 */
int hk_http_hijack(hk_http_req_t *req, uv_tcp_t **tcp_out, hk_buf_t *surplus);

/* Reason phrase for a status code ("Not Found"). */
const char *hk_http_reason(int status);

#endif
