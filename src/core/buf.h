/* Growable byte buffer with a hard cap (curl's dynbuf): it frees itself when a cap or
 * allocation fails, so a caller never holds a half-built buffer. */
#ifndef HK_BUF_H
#define HK_BUF_H

#include <stdarg.h>
#include "core/common.h"

typedef struct {
    char *data; /* always NUL-terminated when non-NULL; owned by the buffer */
    size_t len;
    size_t cap;
    size_t max; /* hard cap on len, set at init */
} hk_buf_t;

/* Initialises an empty buffer that may grow to max bytes. Allocates nothing. */
void hk_buf_init(hk_buf_t *b, size_t max);

/* Frees the data; the buffer is empty and reusable afterwards. NULL-safe. */
void hk_buf_dispose(hk_buf_t *b);

/* Drops the content, keeps the allocation. */
void hk_buf_reset(hk_buf_t *b);

/* Appends n bytes. On HK_ETOOBIG or HK_ENOMEM the buffer is disposed (emptied and freed). */
int hk_buf_append(hk_buf_t *b, const void *p, size_t n);

/* Appends a NUL-terminated string. Same failure rules as hk_buf_append. */
int hk_buf_puts(hk_buf_t *b, const char *s);

/* Appends formatted text. Same failure rules as hk_buf_append. */
int hk_buf_printf(hk_buf_t *b, const char *fmt, ...) HK_PRINTF(2, 3);
int hk_buf_vprintf(hk_buf_t *b, const char *fmt, va_list ap);

/* Hands the data to the caller (free() it) and leaves the buffer empty. May return NULL when empty.
 */
char *hk_buf_steal(hk_buf_t *b, size_t *len_out);

#endif
