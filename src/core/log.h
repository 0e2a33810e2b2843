/* One-line, machine-parseable (logfmt) logging with levels. */
#ifndef HK_LOG_H
#define HK_LOG_H

#include <stdio.h>
#include "core/common.h"

typedef enum {
    HK_LOG_DEBUG = 0,
    HK_LOG_INFO,
    HK_LOG_WARN,
    HK_LOG_ERROR,
    HK_LOG_OFF
} hk_log_level_t;

/* Sets the minimum level and the stream (stderr when NULL). Call once at start, before threads. */
void hk_log_init(hk_log_level_t level, FILE *out);

/* Parses "debug|info|warn|error|off"; returns 0 and sets *out, or HK_EINVAL. */
int hk_log_level_parse(const char *s, hk_log_level_t *out);

/* True when a message of this level would be written. */
bool hk_log_enabled(hk_log_level_t level);

/*
 * Writes one line: `ts=<iso8601> level=<lvl> mod=<module> <formatted text>`. The text should itself
 * be logfmt pairs (`op=connect err="..."`); use hk_log_quote() for values that may hold spaces or
 * quotes. Thread-safe: each line is written with a single fwrite on an unbuffered-per-line stream.
 */
void hk_log_write(hk_log_level_t level, const char *module, const char *fmt, ...) HK_PRINTF(3, 4);

/*
 * Writes `s` as a logfmt quoted value (with the quotes) into out[outlen], escaping quotes,
 * backslashes and control characters and truncating long values. Returns out.
 */
const char *hk_log_quote(char *out, size_t outlen, const char *s);

#define hk_log_debug(mod, ...)                                                                     \
    do {                                                                                           \
        if (hk_log_enabled(HK_LOG_DEBUG))                                                          \
            hk_log_write(HK_LOG_DEBUG, mod, __VA_ARGS__);                                          \
    } while (0)
#define hk_log_info(mod, ...) hk_log_write(HK_LOG_INFO, mod, __VA_ARGS__)
#define hk_log_warn(mod, ...) hk_log_write(HK_LOG_WARN, mod, __VA_ARGS__)
#define hk_log_error(mod, ...) hk_log_write(HK_LOG_ERROR, mod, __VA_ARGS__)

#endif
