/* hk_buf_t: capped dynamic buffer. */
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hk_buf_init(hk_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void hk_buf_dispose(hk_buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void hk_buf_reset(hk_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int grow(hk_buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) {
        hk_buf_dispose(b);
        return HK_ETOOBIG;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap *= 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    char *p = realloc(b->data, ncap);
    if (!p) {
        hk_buf_dispose(b);
        return HK_ENOMEM;
    }
    b->data = p;
    b->cap = ncap;
    return 0;
}

int hk_buf_append(hk_buf_t *b, const void *p, size_t n)
{
    int rc = grow(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int hk_buf_puts(hk_buf_t *b, const char *s)
{
    return hk_buf_append(b, s, strlen(s));
}

int hk_buf_vprintf(hk_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return HK_EINVAL;
    int rc = grow(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int hk_buf_printf(hk_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = hk_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *hk_buf_steal(hk_buf_t *b, size_t *len_out)
{
    char *p = b->data;
    if (len_out)
        *len_out = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
