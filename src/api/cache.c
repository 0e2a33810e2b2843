/* Small fixed-size caches: direct-mapped / open-addressed tables, bounded memory, a mutex each. */
#include "api/cache.h"

#include <stdlib.h>
#include <string.h>
#include "core/crypto.h"

#define HK_AUTH_SLOTS 8192
#define HK_RESP_SLOTS 128
#define HK_RESP_MAX_BODY (256 * 1024)

struct hk_auth_slot_s {
    char hash[HK_SHA256_HEX_LEN + 1]; /* "" = empty */
    int64_t user_id, token_id;
};

struct hk_resp_slot_s {
    int64_t user_id, a, b;
    int kind;
    uint64_t version;
    char *body; /* NULL = empty */
    size_t len;
};

int hk_auth_cache_init(hk_auth_cache_t *c)
{
    c->slots = calloc(HK_AUTH_SLOTS, sizeof(*c->slots));
    c->used = 0;
    c->epoch = 0;
    if (!c->slots)
        return HK_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    return 0;
}

void hk_auth_cache_dispose(hk_auth_cache_t *c)
{
    if (!c->slots)
        return;
    free(c->slots);
    c->slots = NULL;
    pthread_mutex_destroy(&c->mu);
}

static size_t auth_index(const char *hash)
{
    /* The digest is uniformly random already: its first hex digits are a fine index. */
    size_t h = 0;
    for (int i = 0; i < 8; i++)
        h = h * 16 + (size_t)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    return h % HK_AUTH_SLOTS;
}

bool hk_auth_cache_get(hk_auth_cache_t *c, const char *hash_hex, int64_t *user_id,
                       int64_t *token_id)
{
    bool found = false;
    pthread_mutex_lock(&c->mu);
    for (size_t i = auth_index(hash_hex), n = 0; n < HK_AUTH_SLOTS && c->slots[i].hash[0];
         i = (i + 1) % HK_AUTH_SLOTS, n++) {
        if (memcmp(c->slots[i].hash, hash_hex, HK_SHA256_HEX_LEN) == 0) {
            *user_id = c->slots[i].user_id;
            *token_id = c->slots[i].token_id;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

uint64_t hk_auth_cache_epoch(hk_auth_cache_t *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t e = c->epoch;
    pthread_mutex_unlock(&c->mu);
    return e;
}

void hk_auth_cache_put(hk_auth_cache_t *c, uint64_t epoch, const char *hash_hex, int64_t user_id,
                       int64_t token_id)
{
    pthread_mutex_lock(&c->mu);
    if (epoch != c->epoch) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (c->used >= HK_AUTH_SLOTS / 2) {
        memset(c->slots, 0, HK_AUTH_SLOTS * sizeof(*c->slots));
        c->used = 0;
    }
    size_t i = auth_index(hash_hex);
    while (c->slots[i].hash[0] && memcmp(c->slots[i].hash, hash_hex, HK_SHA256_HEX_LEN) != 0)
        i = (i + 1) % HK_AUTH_SLOTS;
    if (!c->slots[i].hash[0])
        c->used++;
    memcpy(c->slots[i].hash, hash_hex, HK_SHA256_HEX_LEN + 1);
    c->slots[i].user_id = user_id;
    c->slots[i].token_id = token_id;
    pthread_mutex_unlock(&c->mu);
}

void hk_auth_cache_forget_token(hk_auth_cache_t *c, int64_t token_id)
{
    /* Deleting from an open-addressed table would break probe chains; token deletion is rare,
     * so forget everything instead. */
    pthread_mutex_lock(&c->mu);
    c->epoch++;
    for (size_t i = 0; i < HK_AUTH_SLOTS; i++) {
        if (c->slots[i].hash[0] && c->slots[i].token_id == token_id) {
            memset(c->slots, 0, HK_AUTH_SLOTS * sizeof(*c->slots));
            c->used = 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

int hk_resp_cache_init(hk_resp_cache_t *c)
{
    c->slots = calloc(HK_RESP_SLOTS, sizeof(*c->slots));
    if (!c->slots)
        return HK_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    return 0;
}

void hk_resp_cache_dispose(hk_resp_cache_t *c)
{
    if (!c->slots)
        return;
    for (size_t i = 0; i < HK_RESP_SLOTS; i++)
        free(c->slots[i].body);
    free(c->slots);
    c->slots = NULL;
    pthread_mutex_destroy(&c->mu);
}

static size_t resp_index(int64_t user_id, int kind, int64_t a, int64_t b)
{
    uint64_t h = (uint64_t)user_id * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)kind + (uint64_t)a * 31 + (uint64_t)b * 1009) * 0xC2B2AE3D27D4EB4Full;
    return (size_t)((h >> 32) % HK_RESP_SLOTS);
}

bool hk_resp_cache_respond(hk_resp_cache_t *c, int64_t user_id, int kind, int64_t a, int64_t b,
                           uint64_t version, hk_http_req_t *req, const char *content_type)
{
    bool hit = false;
    pthread_mutex_lock(&c->mu);
    struct hk_resp_slot_s *s = &c->slots[resp_index(user_id, kind, a, b)];
    if (s->body && s->user_id == user_id && s->kind == kind && s->a == a && s->b == b &&
        s->version == version) {
        /* hk_http_respond copies the bytes into its write buffer: no copy of our own. */
        hk_http_respond(req, 200, content_type, NULL, s->body, s->len);
        hit = true;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void hk_resp_cache_put(hk_resp_cache_t *c, int64_t user_id, int kind, int64_t a, int64_t b,
                       uint64_t version, const char *body, size_t len)
{
    if (len > HK_RESP_MAX_BODY)
        return;
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, body, len);
    copy[len] = '\0';
    pthread_mutex_lock(&c->mu);
    struct hk_resp_slot_s *s = &c->slots[resp_index(user_id, kind, a, b)];
    free(s->body);
    *s = (struct hk_resp_slot_s){user_id, a, b, kind, version, copy, len};
    pthread_mutex_unlock(&c->mu);
}
