/* Loopback plumbing shared by the network unit tests: a libuv loop on a thread of its own, a test
 * HTTP server configuration, and raw blocking TCP clients whose every read is bounded by poll. */
#ifndef HK_TESTNET_H
#define HK_TESTNET_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "net/http.h"

/* ---- the loop thread ---------------------------------------------------------------------- */

/* A loop run to completion on its own thread while the test thread plays the clients. */
typedef struct {
    uv_loop_t loop; /* initialised and given its handles by the test before tn_loop_start() */
    pthread_t thread;
    int close_rc; /* uv_loop_close()'s result: written by the loop thread, read after join */
} tn_loop_t;

/* Starts a thread that runs l->loop until no active handle is left, then closes the loop into
 * l->close_rc. Test thread only; fails the test when the thread cannot be created. */
void tn_loop_start(tn_loop_t *l);

/* Waits up to 10 s for the loop thread to finish. A thread that does not (the shutdown hangs)
 * cannot be recovered, so this aborts the process then. Test thread only. */
void tn_loop_join(tn_loop_t *l);

/* Polls *v every 5 ms for up to ms milliseconds; returns whether it reached n. */
bool tn_wait_atomic(atomic_int *v, int n, int ms);

/* Fills *cfg for a test server: 127.0.0.1, an ephemeral port, backlog 64, headers and bodies
 * capped at 4096 bytes, 100 connections, 10 s timeouts; callbacks and data left NULL. */
void tn_http_config(hk_http_config_t *cfg);

/* ---- clients (test thread) ---------------------------------------------------------------- */

typedef struct {
    int fd;
    size_t len; /* bytes received into buf and not consumed yet */
    char buf[1 << 20];
} tn_client_t;

/* 127.0.0.1:port. */
struct sockaddr_in tn_loopback(int port);

/* Connects to 127.0.0.1:port; a non-zero rcvbuf sets SO_RCVBUF first, so that the receive window
 * stays small and the server's writes back up. Fails the test when the connection does not open.
 * The caller frees the client with tn_close(). */
tn_client_t *tn_connect(int port, int rcvbuf);

/* Closes the socket and frees c. */
void tn_close(tn_client_t *c);

/* Sends all n bytes (blocking); fails the test when the connection refuses them. */
void tn_send(tn_client_t *c, const void *p, size_t n);

/* tn_send() of a NUL-terminated string, without the NUL. */
void tn_send_str(tn_client_t *c, const char *s);

/* Waits up to timeout_ms for more bytes and appends them to c->buf. Returns 1 when some came,
 * 0 on timeout, -1 at EOF, -2 on an error (a reset) or when c->buf is full. */
int tn_more(tn_client_t *c, int timeout_ms);

/* Drops the first n received bytes (n <= c->len). */
void tn_consume(tn_client_t *c, size_t n);

/* Reads until c->buf holds an HTTP head (up to and including its blank line) and returns the
 * head's length, or 0 when the connection ends or timeout_ms passes without more bytes first. */
size_t tn_head_len(tn_client_t *c, int timeout_ms);

#endif
