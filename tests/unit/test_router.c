/* Unit tests for the request router: matching, precedence, 404/405 and parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net/router.h"

static int tag_a, tag_b, tag_c, tag_d;

static void fn_a(hk_http_req_t *req, void *ctx)
{
    (void)req;
    (void)ctx;
}

static void fn_b(hk_http_req_t *req, void *ctx)
{
    (void)req;
    (void)ctx;
}

static void req_init(hk_http_req_t *req, const char *method, const char *path)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->path = (char *)path;
}

static void req_clear(hk_http_req_t *req)
{
    for (size_t i = 0; i < req->nparams; i++)
        free(req->params[i]);
    req->nparams = 0;
}

static int setup(void **state)
{
    hk_router_t *r = hk_router_new();
    assert_non_null(r);
    assert_int_equal(hk_router_add(r, "GET", "/healthz", fn_a, &tag_a, 0), 0);
    assert_int_equal(hk_router_add(r, "GET", "/meetings", fn_a, &tag_a, 1), 0);
    assert_int_equal(hk_router_add(r, "POST", "/meetings", fn_b, &tag_b, 2), 0);
    assert_int_equal(hk_router_add(r, "GET", "/meetings/{id}", fn_a, &tag_c, 3), 0);
    assert_int_equal(hk_router_add(r, "PATCH", "/meetings/{id}", fn_b, &tag_c, 4), 0);
    assert_int_equal(hk_router_add(r, "GET", "/meetings/active", fn_b, &tag_d, 5), 0);
    assert_int_equal(hk_router_add(r, "GET", "/meetings/{id}/segments/{seg}", fn_a, &tag_a, 6), 0);
    assert_int_equal(hk_router_add(r, "DELETE", "/bots/{platform}/{native}", fn_b, &tag_b, 7), 0);
    assert_int_equal(hk_router_add(r, "GET", "/bots/zoom/{native}", fn_a, &tag_a, 8), 0);
    assert_int_equal(hk_router_add(r, "GET", "/", fn_a, &tag_a, 9), 0);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    hk_router_free(*state);
    return 0;
}

static void test_literal_match(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    req_init(&req, "GET", "/healthz");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_ptr_equal(m.fn, fn_a);
    assert_ptr_equal(m.ctx, &tag_a);
    assert_string_equal(m.pattern, "/healthz");
    assert_string_equal(req.route, "/healthz");
    assert_int_equal(req.nparams, 0);

    req_init(&req, "POST", "/meetings");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_ptr_equal(m.fn, fn_b);
    assert_int_equal(m.flags, 2);

    req_init(&req, "GET", "/");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 9);
}

static void test_params(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    req_init(&req, "GET", "/meetings/abc%20def/segments/42");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 6);
    assert_int_equal(req.nparams, 2);
    assert_string_equal(req.params[0], "abc def");
    assert_string_equal(req.params[1], "42");
    assert_string_equal(req.route, "/meetings/{id}/segments/{seg}");
    req_clear(&req);

    req_init(&req, "PATCH", "/meetings/m-1");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 4);
    assert_string_equal(req.params[0], "m-1");
    req_clear(&req);
}

static void test_literal_beats_param(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    /* registered after /meetings/{id}, still wins */
    req_init(&req, "GET", "/meetings/active");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_ptr_equal(m.ctx, &tag_d);
    assert_int_equal(req.nparams, 0);

    req_init(&req, "GET", "/bots/zoom/123");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 8);
    assert_int_equal(req.nparams, 1);
    assert_string_equal(req.params[0], "123");
    req_clear(&req);

    /* a method only the param route has still reaches it */
    req_init(&req, "PATCH", "/meetings/active");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 4);
    assert_string_equal(req.params[0], "active");
    req_clear(&req);

    req_init(&req, "DELETE", "/bots/zoom/123");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 7);
    assert_string_equal(req.params[0], "zoom");
    assert_string_equal(req.params[1], "123");
    req_clear(&req);
}

static void test_not_found(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    char allow[64] = "junk";
    req_init(&req, "GET", "/nope");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
    assert_string_equal(allow, "");
    req_init(&req, "GET", "/meetings/");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
    req_init(&req, "GET", "/healthz/");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
    req_init(&req, "GET", "/meetings/x/segments");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
    req_init(&req, "GET", "meetings");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
    req_init(&req, "GET", "//");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
    req_init(&req, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/a/b/c/d/e/f/g/h");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ENOTFOUND);
}

static void test_method_not_allowed(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    char allow[64];
    req_init(&req, "DELETE", "/meetings");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ESTATE);
    assert_string_equal(allow, "GET, HEAD, POST");

    req_init(&req, "POST", "/meetings/abc");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ESTATE);
    assert_string_equal(allow, "GET, HEAD, PATCH");
    assert_int_equal(req.nparams, 0);

    /* both the literal and the param pattern match the path: union of their methods */
    req_init(&req, "PUT", "/meetings/active");
    assert_int_equal(hk_router_match(r, &req, &m, allow, sizeof(allow)), HK_ESTATE);
    assert_string_equal(allow, "GET, HEAD, PATCH");

    /* truncation never overflows, keeps whole names */
    char tiny[9];
    req_init(&req, "DELETE", "/meetings");
    assert_int_equal(hk_router_match(r, &req, &m, tiny, sizeof(tiny)), HK_ESTATE);
    assert_string_equal(tiny, "GET");
}

static void test_head_falls_back_to_get(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    req_init(&req, "HEAD", "/healthz");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_ptr_equal(m.fn, fn_a);
    req_init(&req, "HEAD", "/meetings/x");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 3);
    req_clear(&req);
}

static void test_bad_escape(void **state)
{
    hk_router_t *r = *state;
    hk_http_req_t req;
    hk_route_match_t m;
    req_init(&req, "GET", "/meetings/ab%zz");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), HK_EINVAL);
    assert_int_equal(req.nparams, 0);
    req_init(&req, "GET", "/meetings/ab%00c");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), HK_EINVAL);
    req_init(&req, "GET", "/meetings/x/segments/%4");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), HK_EINVAL);
    assert_int_equal(req.nparams, 0);
    /* escapes decode into the parameter, not across segments */
    req_init(&req, "GET", "/meetings/a%2Fb");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_string_equal(req.params[0], "a/b");
    req_clear(&req);
}

static void test_add_errors(void **state)
{
    (void)state;
    hk_router_t *r = hk_router_new();
    assert_non_null(r);
    assert_int_equal(hk_router_add(r, "GET", "/a/{id}", fn_a, NULL, 0), 0);
    assert_int_equal(hk_router_add(r, "GET", "/a/{other}", fn_a, NULL, 0), HK_ECONFLICT);
    assert_int_equal(hk_router_add(r, "POST", "/a/{other}", fn_a, NULL, 0), 0);
    assert_int_equal(hk_router_add(r, "GET", "/a/b", fn_a, NULL, 0), 0);
    assert_int_equal(hk_router_add(r, "GET", "/a/b", fn_a, NULL, 0), HK_ECONFLICT);
    assert_int_equal(hk_router_add(r, "GET", "a", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/a//b", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/a/", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/a/{}", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/a/{id", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/a/x{id}", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/a/{i-d}", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "get", "/x", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "", "/x", fn_a, NULL, 0), HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/x", NULL, &tag_b, 0), 0); /* ctx-only route */
    assert_int_equal(hk_router_add(r, "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", fn_a, NULL, 0),
                     HK_EINVAL);
    assert_int_equal(hk_router_add(r, "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", fn_a, NULL, 0), 0);
    /* many routes: the table grows */
    char pat[32];
    for (int i = 0; i < 100; i++) {
        snprintf(pat, sizeof(pat), "/r%d", i);
        assert_int_equal(hk_router_add(r, "GET", pat, fn_b, NULL, (unsigned)i), 0);
    }
    hk_http_req_t req;
    hk_route_match_t m;
    req_init(&req, "GET", "/x");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_null(m.fn);
    assert_ptr_equal(m.ctx, &tag_b);
    req_init(&req, "GET", "/r77");
    assert_int_equal(hk_router_match(r, &req, &m, NULL, 0), 0);
    assert_int_equal(m.flags, 77);
    hk_router_free(r);
    hk_router_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_literal_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literal_beats_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_falls_back_to_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_escape, setup, teardown),
        cmocka_unit_test(test_add_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
