/* logfmt logger: one fwrite per line so lines from different threads never interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include "core/timeutil.h"

static hk_log_level_t min_level = HK_LOG_INFO;
static FILE *log_out;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void hk_log_init(hk_log_level_t level, FILE *out)
{
    min_level = level;
    log_out = out;
}

int hk_log_level_parse(const char *s, hk_log_level_t *out)
{
    for (size_t i = 0; i < HK_ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (hk_log_level_t)i;
            return 0;
        }
    }
    return HK_EINVAL;
}

bool hk_log_enabled(hk_log_level_t level)
{
    return level >= min_level && min_level != HK_LOG_OFF;
}

void hk_log_write(hk_log_level_t level, const char *module, const char *fmt, ...)
{
    if (!hk_log_enabled(level))
        return;
    char line[2048];
    char ts[32];
    hk_time_iso8601(hk_time_now_ms(), ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "ts=%s level=%s mod=%s ", ts, level_names[level], module);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    FILE *out = log_out ? log_out : stderr;
    fwrite(line, 1, len, out);
    fflush(out);
}

const char *hk_log_quote(char *out, size_t outlen, const char *s)
{
    size_t o = 0;
    if (outlen < 8) {
        if (outlen)
            out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    /* Invariant: o + 4 <= outlen, so ".." + '"' + NUL always fit when the input must be cut. */
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        size_t k = (*p == '"' || *p == '\\') ? 2 : (*p < 0x20 || *p == 0x7f) ? 4 : 1;
        if (o + k + 4 > outlen) {
            out[o++] = '.';
            out[o++] = '.';
            break;
        }
        if (k == 2) {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (k == 4) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = "0123456789abcdef"[*p >> 4];
            out[o++] = "0123456789abcdef"[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
