/* Request router: method + path pattern with {name} parameters → handler. */
#ifndef HK_ROUTER_H
#define HK_ROUTER_H

#include "net/http.h"

typedef void (*hk_route_fn)(hk_http_req_t *req, void *ctx);

typedef struct hk_router_s hk_router_t;

typedef struct {
    hk_route_fn fn;
    void *ctx;
    unsigned flags;      /* the route's flags, as registered */
    const char *pattern; /* owned by the router */
} hk_route_match_t;

/* Creates an empty router. Returns NULL on allocation failure. Free with hk_router_free(). */
hk_router_t *hk_router_new(void);
void hk_router_free(hk_router_t *r);

/* Registers METHOD PATTERN. Pattern segments are literals or {name} (one whole segment).
 * Returns 0, HK_EINVAL for a malformed pattern, HK_ECONFLICT for a duplicate. Not thread-safe:
 * register everything before serving. */
int hk_router_add(hk_router_t *r, const char *method, const char *pattern, hk_route_fn fn,
                  void *ctx, unsigned flags);

/*
 * Matches req->method and req->path. On 0, fills *m and sets req->route, req->params (percent-
 * decoded, in pattern order) and req->nparams. A literal segment wins over a parameter.
 * Returns HK_ENOTFOUND (404) when no pattern matches the path, HK_ESTATE (405) when patterns match
 * the path but not the method: then `allow` receives "GET, POST" style text. HK_EINVAL when a
 * parameter has a bad percent-escape (400). Thread-safe after registration.
 */
int hk_router_match(const hk_router_t *r, hk_http_req_t *req, hk_route_match_t *m, char *allow,
                    size_t allowlen);

#endif
