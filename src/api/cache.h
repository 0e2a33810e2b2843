/* In-memory caches of the REST layer, shared by the loop thread and the workers (mutex each):
 * API-key digests → user (so a request can be authenticated without the store), and encoded
 * responses tagged with the store's meetings version (so an unchanged listing is not rebuilt). */
#ifndef HK_API_CACHE_H
#define HK_API_CACHE_H

#include <pthread.h>
#include "core/common.h"
#include "net/http.h"

typedef struct {
    pthread_mutex_t mu;
    struct hk_auth_slot_s *slots; /* HK_AUTH_SLOTS entries */
    size_t used;
    uint64_t epoch; /* moved by every forget: a put from a lookup that began before is dropped */
} hk_auth_cache_t;

typedef struct {
    pthread_mutex_t mu;
    struct hk_resp_slot_s *slots; /* HK_RESP_SLOTS entries */
} hk_resp_cache_t;

/* Both return 0 or HK_ENOMEM; dispose frees everything. */
int hk_auth_cache_init(hk_auth_cache_t *c);
void hk_auth_cache_dispose(hk_auth_cache_t *c);
/* Looks up a SHA-256 hex digest: true and ids when known. */
bool hk_auth_cache_get(hk_auth_cache_t *c, const char *hash_hex, int64_t *user_id,
                       int64_t *token_id);
/* Read before a store lookup whose result may be put: see hk_auth_cache_put. */
uint64_t hk_auth_cache_epoch(hk_auth_cache_t *c);
/* Remembers a digest the store resolved, unless a token was forgotten since `epoch` was read (the
 * lookup may have seen that token before its deletion committed: caching it would keep a deleted
 * token working). When the table is half full it is emptied first. */
void hk_auth_cache_put(hk_auth_cache_t *c, uint64_t epoch, const char *hash_hex, int64_t user_id,
                       int64_t token_id);
/* Forgets every digest of a token (call after the deletion committed, before answering). */
void hk_auth_cache_forget_token(hk_auth_cache_t *c, int64_t token_id);

/* Response cache keyed by (user, kind, a, b): `kind` names the resource, a/b its parameters. */
int hk_resp_cache_init(hk_resp_cache_t *c);
void hk_resp_cache_dispose(hk_resp_cache_t *c);
/* On a hit with the same version, answers req with the cached body (200, content_type) and
 * returns true; req is then released. Loop thread (it responds). */
bool hk_resp_cache_respond(hk_resp_cache_t *c, int64_t user_id, int kind, int64_t a, int64_t b,
                           uint64_t version, hk_http_req_t *req, const char *content_type);

/* Stores a copy of body (bodies over 256 KB are not cached). */
void hk_resp_cache_put(hk_resp_cache_t *c, int64_t user_id, int kind, int64_t a, int64_t b,
                       uint64_t version, const char *body, size_t len);

#endif
