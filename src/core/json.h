/* JSON helpers on jansson: body parsing with precise errors, typed field validation, encoding. */
#ifndef HK_JSON_H
#define HK_JSON_H

#include <jansson.h>
#include "core/buf.h"

/*
 * Parses a request body that must be a JSON object. Returns 0 and *out (caller decrefs),
 * HK_EINVAL for malformed JSON (detail: "invalid JSON at line L, column C: reason" → 400), or
 * HK_ESTATE when it parsed but is not an object (detail names "body" → 422).
 */
int hk_json_parse_object(const char *body, size_t len, json_t **out, char *detail, size_t dlen);

/*
 * Typed optional fields of an object. Each returns 0 when the key is absent (out untouched) or
 * valid (out set), or HK_EINVAL with detail "<field>: must be ..." (422). `field` is the name used
 * in the message, which may be a path like "data.name".
 */
int hk_json_opt_string(const json_t *obj, const char *key, const char *field, size_t maxlen,
                       bool nullable, const char **out, bool *present, char *detail, size_t dlen);
int hk_json_opt_int(const json_t *obj, const char *key, const char *field, long long min,
                    long long max, long long *out, bool *present, char *detail, size_t dlen);
int hk_json_opt_object(const json_t *obj, const char *key, const char *field, json_t **out,
                       char *detail, size_t dlen);
/* Array of strings (each at most maxlen bytes, at most maxitems). */
int hk_json_opt_string_array(const json_t *obj, const char *key, const char *field, size_t maxitems,
                             size_t maxlen, bool nullable, json_t **out, bool *present,
                             char *detail, size_t dlen);

/* Encodes compactly into a malloc'd string (caller frees); NULL on failure. */
char *hk_json_encode(const json_t *v, size_t *len_out);

/* Sets key to a string, or to null when s is NULL. Returns 0 or HK_ENOMEM. */
int hk_json_set_str_or_null(json_t *obj, const char *key, const char *s);

/* Length of the longest prefix of the NUL-terminated s that is at most max bytes and does not end
 * inside a UTF-8 sequence (JSON strings must stay valid UTF-8 when cut to a size). */
size_t hk_utf8_prefix(const char *s, size_t max);

/* Sets key to an ISO 8601 ms time string, or to null when ms is 0. */
int hk_json_set_time_or_null(json_t *obj, const char *key, int64_t ms);

#endif
