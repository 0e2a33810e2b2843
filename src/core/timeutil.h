/* Wall-clock and monotonic time, and ISO 8601 formatting/parsing with milliseconds. */
#ifndef HK_TIMEUTIL_H
#define HK_TIMEUTIL_H

#include "core/common.h"

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). Any thread. */
int64_t hk_time_now_ms(void);

/* Monotonic nanoseconds (CLOCK_MONOTONIC), for measuring durations. Any thread. */
uint64_t hk_time_mono_ns(void);

/* Formats epoch ms as "2026-11-22T10:15:03.120Z" into out (needs 25 bytes). Returns out. */
char *hk_time_iso8601(int64_t ms, char *out, size_t outlen);

/* Parses the format above (also without millis, or with a +00:00 offset). 0 or HK_EINVAL. */
int hk_time_parse_iso8601(const char *s, int64_t *ms_out);

#endif
