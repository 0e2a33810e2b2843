/* The dashboard: serves the embedded web/ files at /, /assets/… and /favicon.ico (loop thread). */
#include <stdlib.h>
#include <string.h>
#include "api/api.h"
#include "api/web.h"

/* Versioned URLs (/assets/<build hash>/name) never change content: browsers keep them for a year.
 * Everything else revalidates with its ETag (a 304 costs one small round trip). */
#define IMMUTABLE "public, max-age=31536000, immutable"
#define REVALIDATE "no-cache"

static const hk_web_asset_t *find(const char *name)
{
    for (size_t i = 0; i < hk_web_nassets; i++)
        if (strcmp(hk_web_assets[i].name, name) == 0)
            return &hk_web_assets[i];
    return NULL;
}

/* If-None-Match carries one or more quoted tags (maybe W/-prefixed) or "*". Our tags are quoted
 * hex digests, so finding one inside the header is an exact match. */
static bool not_modified(hk_ctx_t *c, const hk_web_asset_t *a)
{
    const char *inm = hk_http_req_header(c->req, "if-none-match");
    return inm && (strcmp(inm, "*") == 0 || strstr(inm, a->etag) != NULL);
}

static void send_asset(hk_ctx_t *c, const hk_web_asset_t *a, const char *cache, bool page)
{
    /* The page's policy: only our own scripts, styles and images; sockets to this server. */
    snprintf(c->extra_headers, sizeof(c->extra_headers),
             "Cache-Control: %s\r\nETag: %s\r\nX-Content-Type-Options: nosniff\r\n%s", cache,
             a->etag,
             page ? "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; "
                    "img-src 'self' data: blob:; frame-ancestors 'none'\r\n"
                  : "");
    if (not_modified(c, a)) {
        c->status = 304;
        return;
    }
    char *body = malloc(a->len ? a->len : 1);
    if (!body) {
        hk_api_error(c, 503, "out of memory");
        return;
    }
    memcpy(body, a->data, a->len);
    hk_api_raw(c, 200, a->content_type, body, a->len);
}

static void not_found(hk_ctx_t *c)
{
    hk_api_error(c, 404, "Not Found");
}

static void index_page(hk_ctx_t *c)
{
    const hk_web_asset_t *a = find("index.html");
    if (a)
        send_asset(c, a, REVALIDATE, true);
    else
        not_found(c);
}

static void favicon(hk_ctx_t *c)
{
    const hk_web_asset_t *a = find("favicon.svg");
    if (a)
        send_asset(c, a, REVALIDATE, false);
    else
        not_found(c);
}

static void asset(hk_ctx_t *c)
{
    const hk_web_asset_t *a = find(c->req->params[0]);
    if (a && strcmp(a->name, "index.html") != 0)
        send_asset(c, a, REVALIDATE, false);
    else
        not_found(c);
}

static void versioned_asset(hk_ctx_t *c)
{
    const hk_web_asset_t *a = find(c->req->params[1]);
    if (!a || strcmp(a->name, "index.html") == 0) {
        not_found(c);
        return;
    }
    /* An older page may still ask for its own version: answer with today's file, but not as
     * immutable, so that nothing caches it under the old name for long. */
    bool current = strcmp(c->req->params[0], hk_web_build_hash) == 0;
    send_asset(c, a, current ? IMMUTABLE : REVALIDATE, false);
}

const hk_api_route_t hk_web_routes[] = {
    {"GET", "/", index_page, HK_ROUTE_INLINE, NULL},
    {"GET", "/favicon.ico", favicon, HK_ROUTE_INLINE, NULL},
    {"GET", "/assets/{name}", asset, HK_ROUTE_INLINE, NULL},
    {"GET", "/assets/{version}/{name}", versioned_asset, HK_ROUTE_INLINE, NULL},
    {NULL, NULL, NULL, 0, NULL},
};
