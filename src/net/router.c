/* Request router: linear scan over split patterns; literal segments outrank {params}. */
#include "net/router.h"

#include <stdlib.h>
#include <string.h>

/*
 * Matching rules:
 *  - A path is split on '/' after its leading slash; "/" has no segments, "/a/" has two ("a" and
 *    ""), so a trailing slash never matches the pattern without it (404).
 *  - A {param} matches one non-empty segment; literals compare byte-for-byte with the raw
 *    (still percent-encoded) segment.
 *  - Among the routes whose pattern matches the path AND whose method is the request's, the most
 *    specific wins: at the first segment where two patterns differ, the literal beats the param.
 *  - A HEAD request falls back to the GET route (the server drops the body).
 *  - If patterns match the path but none for this method: 405, and `allow` lists the methods of
 *    all those patterns (plus HEAD where GET exists), sorted alphabetically.
 */

#define MAX_SEGS 32
#define MAX_METHOD 16

typedef struct {
    const char *text; /* literal text, or the parameter name */
    size_t len;
    bool param;
} seg_t;

typedef struct {
    char method[MAX_METHOD];
    char *pattern;
    char *segbuf; /* backing store for seg texts */
    seg_t segs[MAX_SEGS];
    size_t nsegs;
    size_t nparams;
    hk_route_fn fn;
    void *ctx;
    unsigned flags;
} route_t;

struct hk_router_s {
    route_t *routes;
    size_t n, cap;
};

typedef struct {
    const char *s;
    size_t len;
} span_t;

hk_router_t *hk_router_new(void)
{
    return calloc(1, sizeof(hk_router_t));
}

void hk_router_free(hk_router_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->routes[i].pattern);
        free(r->routes[i].segbuf);
    }
    free(r->routes);
    free(r);
}

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* Splits and validates pattern into rt (segbuf becomes owned by rt). */
static int parse_pattern(route_t *rt, const char *pattern)
{
    if (pattern[0] != '/')
        return HK_EINVAL;
    rt->segbuf = strdup(pattern);
    if (!rt->segbuf)
        return HK_ENOMEM;
    rt->nsegs = 0;
    rt->nparams = 0;
    if (pattern[1] == '\0')
        return 0;
    char *s = rt->segbuf + 1;
    for (;;) {
        char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || rt->nsegs == MAX_SEGS)
            return HK_EINVAL;
        seg_t *sg = &rt->segs[rt->nsegs++];
        if (s[0] == '{') {
            if (len < 3 || s[len - 1] != '}' || rt->nparams == HK_HTTP_MAX_PARAMS)
                return HK_EINVAL;
            for (size_t i = 1; i + 1 < len; i++)
                if (!name_char(s[i]))
                    return HK_EINVAL;
            sg->param = true;
            sg->text = s + 1;
            sg->len = len - 2;
            rt->nparams++;
        } else {
            for (size_t i = 0; i < len; i++)
                if (s[i] == '{' || s[i] == '}' || s[i] == '?' || s[i] == '#' ||
                    (unsigned char)s[i] <= ' ')
                    return HK_EINVAL;
            sg->param = false;
            sg->text = s;
            sg->len = len;
        }
        if (!e)
            return 0;
        s = e + 1;
    }
}

static bool same_shape(const route_t *a, const route_t *b)
{
    if (a->nsegs != b->nsegs)
        return false;
    for (size_t i = 0; i < a->nsegs; i++) {
        if (a->segs[i].param != b->segs[i].param)
            return false;
        if (!a->segs[i].param && (a->segs[i].len != b->segs[i].len ||
                                  memcmp(a->segs[i].text, b->segs[i].text, a->segs[i].len) != 0))
            return false;
    }
    return true;
}

int hk_router_add(hk_router_t *r, const char *method, const char *pattern, hk_route_fn fn,
                  void *ctx, unsigned flags)
{
    /* fn may be NULL: some callers dispatch on ctx (a route descriptor) instead */
    if (!r || !method || !pattern)
        return HK_EINVAL;
    size_t mlen = strlen(method);
    if (mlen == 0 || mlen >= MAX_METHOD)
        return HK_EINVAL;
    for (size_t i = 0; i < mlen; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return HK_EINVAL;
    route_t rt;
    memset(&rt, 0, sizeof(rt));
    memcpy(rt.method, method, mlen + 1);
    int rc = parse_pattern(&rt, pattern);
    if (rc) {
        free(rt.segbuf);
        return rc;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->routes[i].method, method) == 0 && same_shape(&r->routes[i], &rt)) {
            free(rt.segbuf);
            return HK_ECONFLICT;
        }
    }
    rt.pattern = strdup(pattern);
    if (!rt.pattern) {
        free(rt.segbuf);
        return HK_ENOMEM;
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        route_t *nr = realloc(r->routes, ncap * sizeof(*nr));
        if (!nr) {
            free(rt.segbuf);
            free(rt.pattern);
            return HK_ENOMEM;
        }
        r->routes = nr;
        r->cap = ncap;
    }
    rt.fn = fn;
    rt.ctx = ctx;
    rt.flags = flags;
    /* seg texts point into segbuf, a separate allocation, so copying the struct is fine */
    r->routes[r->n++] = rt;
    return 0;
}

static bool path_matches(const route_t *rt, const span_t *ps, size_t np)
{
    if (rt->nsegs != np)
        return false;
    for (size_t i = 0; i < np; i++) {
        const seg_t *sg = &rt->segs[i];
        if (sg->param) {
            if (ps[i].len == 0)
                return false;
        } else if (sg->len != ps[i].len || memcmp(sg->text, ps[i].s, sg->len) != 0) {
            return false;
        }
    }
    return true;
}

/* True when a is more specific than b (both match the same path). */
static bool more_specific(const route_t *a, const route_t *b)
{
    for (size_t i = 0; i < a->nsegs && i < b->nsegs; i++)
        if (a->segs[i].param != b->segs[i].param)
            return !a->segs[i].param;
    return false;
}

static void add_method(const char **set, size_t *n, const char *m)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(set[i], m) == 0)
            return;
    if (*n < MAX_SEGS)
        set[(*n)++] = m;
}

static void build_allow(const char **set, size_t n, char *allow, size_t allowlen)
{
    if (!allow || allowlen == 0)
        return;
    /* insertion sort: a handful of methods */
    for (size_t i = 1; i < n; i++) {
        const char *m = set[i];
        size_t j = i;
        while (j > 0 && strcmp(set[j - 1], m) > 0) {
            set[j] = set[j - 1];
            j--;
        }
        set[j] = m;
    }
    size_t o = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t ml = strlen(set[i]);
        size_t need = ml + (i ? 2 : 0);
        if (o + need + 1 > allowlen)
            break;
        if (i) {
            allow[o++] = ',';
            allow[o++] = ' ';
        }
        memcpy(allow + o, set[i], ml);
        o += ml;
        allow[o] = '\0';
    }
}

static void free_params(hk_http_req_t *req)
{
    size_t n = req->nparams < HK_HTTP_MAX_PARAMS ? req->nparams : HK_HTTP_MAX_PARAMS;
    for (size_t i = 0; i < n; i++) {
        free(req->params[i]);
        req->params[i] = NULL;
    }
    req->nparams = 0;
}

int hk_router_match(const hk_router_t *r, hk_http_req_t *req, hk_route_match_t *m, char *allow,
                    size_t allowlen)
{
    if (allow && allowlen)
        allow[0] = '\0';
    if (!r || !req)
        return HK_EINVAL;
    free_params(req);
    const char *path = req->path;
    const char *method = req->method ? req->method : "";
    if (!path || path[0] != '/')
        return HK_ENOTFOUND;

    span_t ps[MAX_SEGS];
    size_t np = 0;
    if (path[1] != '\0') {
        const char *s = path + 1;
        for (;;) {
            if (np == MAX_SEGS)
                return HK_ENOTFOUND; /* deeper than any pattern can be */
            const char *e = strchr(s, '/');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            ps[np].s = s;
            ps[np].len = len;
            np++;
            if (!e)
                break;
            s = e + 1;
        }
    }

    bool is_head = strcmp(method, "HEAD") == 0;
    const route_t *best = NULL, *best_get = NULL;
    const char *methods[MAX_SEGS];
    size_t nmethods = 0;
    bool any = false;
    for (size_t i = 0; i < r->n; i++) {
        const route_t *rt = &r->routes[i];
        if (!path_matches(rt, ps, np))
            continue;
        any = true;
        add_method(methods, &nmethods, rt->method);
        if (strcmp(rt->method, "GET") == 0)
            add_method(methods, &nmethods, "HEAD");
        if (strcmp(rt->method, method) == 0) {
            if (!best || more_specific(rt, best))
                best = rt;
        } else if (is_head && strcmp(rt->method, "GET") == 0) {
            if (!best_get || more_specific(rt, best_get))
                best_get = rt;
        }
    }
    if (!best)
        best = best_get;
    if (!best) {
        if (!any)
            return HK_ENOTFOUND;
        build_allow(methods, nmethods, allow, allowlen);
        return HK_ESTATE;
    }

    size_t k = 0;
    for (size_t i = 0; i < best->nsegs; i++) {
        if (!best->segs[i].param)
            continue;
        char *v = malloc(ps[i].len + 1);
        int rc = v ? hk_http_pct_decode(ps[i].s, ps[i].len, v, ps[i].len + 1, false) : HK_ENOMEM;
        if (rc < 0) {
            free(v);
            req->nparams = k;
            free_params(req);
            return rc == HK_ENOMEM ? HK_ENOMEM : HK_EINVAL;
        }
        req->params[k++] = v;
    }
    req->nparams = k;
    req->route = best->pattern;
    if (m) {
        m->fn = best->fn;
        m->ctx = best->ctx;
        m->flags = best->flags;
        m->pattern = best->pattern;
    }
    return 0;
}
