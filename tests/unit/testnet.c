/* Loopback plumbing shared by the network unit tests (see testnet.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testnet.h"

static void *loop_main(void *arg)
{
    tn_loop_t *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
    l->close_rc = uv_loop_close(&l->loop);
    return NULL;
}

void tn_loop_start(tn_loop_t *l)
{
    assert_int_equal(pthread_create(&l->thread, NULL, loop_main, l), 0);
}

void tn_loop_join(tn_loop_t *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_timedjoin_np(l->thread, NULL, &ts) != 0) {
        fprintf(stderr, "loop thread did not finish: shutdown hangs\n");
        abort();
    }
}

bool tn_wait_atomic(atomic_int *v, int n, int ms)
{
    for (int i = 0; i < ms / 5 && atomic_load(v) < n; i++)
        usleep(5000);
    return atomic_load(v) >= n;
}

void tn_http_config(hk_http_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->bind = "127.0.0.1";
    cfg->port = 0;
    cfg->backlog = 64;
    cfg->max_header_bytes = 4096;
    cfg->max_body_bytes = 4096;
    cfg->max_connections = 100;
    cfg->idle_timeout_ms = 10000;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 10000;
}

struct sockaddr_in tn_loopback(int port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

tn_client_t *tn_connect(int port, int rcvbuf)
{
    tn_client_t *c = malloc(sizeof(*c));
    assert_non_null(c);
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf)
        assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in sin = tn_loopback(port);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return c;
}

void tn_close(tn_client_t *c)
{
    close(c->fd);
    free(c);
}

void tn_send(tn_client_t *c, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

void tn_send_str(tn_client_t *c, const char *s)
{
    tn_send(c, s, strlen(s));
}

int tn_more(tn_client_t *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    if (c->len == sizeof(c->buf))
        return -2;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n == 0)
        return -1;
    if (n < 0)
        return -2;
    c->len += (size_t)n;
    return 1;
}

void tn_consume(tn_client_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

size_t tn_head_len(tn_client_t *c, int timeout_ms)
{
    for (;;) {
        for (size_t i = 0; i + 3 < c->len; i++)
            if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0)
                return i + 4;
        if (tn_more(c, timeout_ms) <= 0)
            return 0;
    }
}
