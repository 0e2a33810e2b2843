"""Admin API: users, tokens, admin authentication."""
import uuid

import pytest

from helpers import USER_KEYS, err, is_iso, ok_json, poll, uh


def email():
    return "a-%s@example.com" % uuid.uuid4().hex[:10]


# -- POST /admin/users ---------------------------------------------------------------------------

def test_create_user_defaults(server):
    e = email()
    u = ok_json(server.admin("POST", "/admin/users", json={"email": e}), 201)
    assert set(u) == USER_KEYS
    assert isinstance(u["id"], int) and u["id"] > 0
    assert u["email"] == e
    assert u["name"] is None
    assert u["max_concurrent_bots"] == 3
    assert u["data"] == {}
    assert is_iso(u["created_at"]), u["created_at"]


def test_create_user_all_fields(server):
    e = email()
    body = {"email": e, "name": "Ada Lovelace", "max_concurrent_bots": 7,
            "data": {"team": "eng", "n": 2, "nested": {"x": [1, 2]}}}
    u = ok_json(server.admin("POST", "/admin/users", json=body), 201)
    assert u["email"] == e
    assert u["name"] == "Ada Lovelace"
    assert u["max_concurrent_bots"] == 7
    assert u["data"] == body["data"]


def test_create_user_unicode_name_roundtrip(server):
    u = ok_json(server.admin("POST", "/admin/users",
                             json={"email": email(), "name": "Zoë \u00e9\u4e2d\U0001F600"}), 201)
    assert u["name"] == "Zoë \u00e9\u4e2d\U0001F600"
    got = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))
    assert got["name"] == "Zoë \u00e9\u4e2d\U0001F600"


def test_create_existing_user_returns_200_unchanged(server):
    e = email()
    u1 = ok_json(server.admin("POST", "/admin/users",
                              json={"email": e, "name": "First", "max_concurrent_bots": 5}), 201)
    u2 = ok_json(server.admin("POST", "/admin/users",
                              json={"email": e, "name": "Second", "max_concurrent_bots": 9}), 200)
    assert u2 == u1


def test_create_user_email_case_insensitive(server):
    tag = uuid.uuid4().hex[:10]
    u1 = ok_json(server.admin("POST", "/admin/users", json={"email": "Mixed-%s@Example.COM" % tag}),
                 201)
    u2 = ok_json(server.admin("POST", "/admin/users", json={"email": "mixed-%s@example.com" % tag}),
                 200)
    assert u2["id"] == u1["id"]
    r = ok_json(server.admin("GET", "/admin/users?limit=1000"))
    assert len([x for x in r if x["id"] == u1["id"]]) == 1


def test_create_users_distinct_ids(server):
    ids = {ok_json(server.admin("POST", "/admin/users", json={"email": email()}), 201)["id"]
           for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("body", [{}, {"name": "x"}, {"email": None}])
def test_create_user_missing_email(server, body):
    err(server.admin("POST", "/admin/users", json=body), 422, "email")


@pytest.mark.parametrize("value", ["no-at-sign", "", 123, ["a@b.c"], {"a": "b"}, True,
                                   "x" * 250 + "@b.co"])
def test_create_user_bad_email(server, value):
    err(server.admin("POST", "/admin/users", json={"email": value}), 422, "email")


def test_create_user_email_254_chars_ok(server):
    e = "x" * (254 - len("@example.com")) + "@example.com"
    assert len(e) == 254
    u = ok_json(server.admin("POST", "/admin/users", json={"email": e}), 201)
    assert u["email"] == e
    err(server.admin("POST", "/admin/users", json={"email": "y" + e}), 422, "email")


@pytest.mark.parametrize("field,value", [
    ("name", 5), ("name", ["x"]), ("name", {"a": 1}), ("name", True),
    ("max_concurrent_bots", "3"), ("max_concurrent_bots", -1), ("max_concurrent_bots", 1001),
    ("max_concurrent_bots", 2.5), ("max_concurrent_bots", True),
    ("max_concurrent_bots", 10 ** 20),
    ("data", "str"), ("data", [1, 2]), ("data", 5), ("data", True),
])
def test_create_user_wrong_types(server, field, value):
    err(server.admin("POST", "/admin/users", json={"email": email(), field: value}), 422, field)


@pytest.mark.parametrize("value", [0, 1000])
def test_create_user_max_concurrent_bounds_ok(server, value):
    u = ok_json(server.admin("POST", "/admin/users",
                             json={"email": email(), "max_concurrent_bots": value}), 201)
    assert u["max_concurrent_bots"] == value


def test_create_user_name_null_ok(server):
    u = ok_json(server.admin("POST", "/admin/users", json={"email": email(), "name": None}), 201)
    assert u["name"] is None


def test_rejected_user_is_not_created(server):
    e = email()
    err(server.admin("POST", "/admin/users", json={"email": e, "max_concurrent_bots": -5}), 422,
        "max_concurrent_bots")
    err(server.admin("GET", "/admin/users/email/%s" % e), 404)


# -- GET /admin/users ----------------------------------------------------------------------------

def test_list_users_ascending_and_paginated(server):
    created = [ok_json(server.admin("POST", "/admin/users", json={"email": email()}), 201)
               for _ in range(6)]
    allu = ok_json(server.admin("GET", "/admin/users"))
    assert isinstance(allu, list)
    ids = [u["id"] for u in allu]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for c in created:
        assert c in allu
    for u in allu:
        assert set(u) == USER_KEYS
    page1 = ok_json(server.admin("GET", "/admin/users?limit=2&offset=0"))
    page2 = ok_json(server.admin("GET", "/admin/users?limit=2&offset=2"))
    assert [u["id"] for u in page1] == ids[0:2]
    assert [u["id"] for u in page2] == ids[2:4]
    beyond = ok_json(server.admin("GET", "/admin/users?offset=%d" % (len(ids) + 10)))
    assert beyond == []


def test_list_users_default_limit_100(server):
    for _ in range(103):
        ok_json(server.admin("POST", "/admin/users", json={"email": email()}), 201)
    assert len(ok_json(server.admin("GET", "/admin/users"))) == 100
    assert len(ok_json(server.admin("GET", "/admin/users?limit=1000"))) == 103
    assert len(ok_json(server.admin("GET", "/admin/users?offset=100"))) == 3


@pytest.mark.parametrize("query,name", [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=-1", "limit"), ("limit=abc", "limit"),
    ("limit=1.5", "limit"), ("limit=99999999999999999999", "limit"),
    ("offset=-1", "offset"), ("offset=x", "offset"), ("offset=1e3", "offset"),
])
def test_list_users_bad_query(server, query, name):
    err(server.admin("GET", "/admin/users?" + query), 422, name)


# -- GET /admin/users/{id}, /admin/users/email/{email} -------------------------------------------

def test_get_user_with_tokens(server):
    u = ok_json(server.admin("POST", "/admin/users", json={"email": email(), "name": "T"}), 201)
    got = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))
    assert {k: got[k] for k in USER_KEYS} == u
    assert got["api_tokens"] == []
    t1 = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)
    t2 = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)
    r = server.admin("GET", "/admin/users/%d" % u["id"])
    got = ok_json(r)
    assert sorted(t["id"] for t in got["api_tokens"]) == sorted([t1["id"], t2["id"]])
    for t in got["api_tokens"]:
        assert set(t) == {"id", "created_at", "last_used_at"}
        assert is_iso(t["created_at"])
        assert t["last_used_at"] is None
    assert t1["token"] not in r.text and t2["token"] not in r.text


@pytest.mark.parametrize("path", ["/admin/users/999999", "/admin/users/0", "/admin/users/-1",
                                  "/admin/users/abc", "/admin/users/1.5",
                                  "/admin/users/99999999999999999999999999"])
def test_get_user_unknown(server, path):
    err(server.admin("GET", path), 404)


def test_get_user_by_email(server):
    e = email()
    u = ok_json(server.admin("POST", "/admin/users", json={"email": e}), 201)
    assert ok_json(server.admin("GET", "/admin/users/email/%s" % e))["id"] == u["id"]
    # percent-encoded '@' is decoded
    enc = e.replace("@", "%40")
    assert ok_json(server.admin("GET", "/admin/users/email/%s" % enc))["id"] == u["id"]


def test_get_user_by_email_unknown(server):
    err(server.admin("GET", "/admin/users/email/nobody-%s@example.com" % uuid.uuid4().hex), 404)


# -- PATCH /admin/users/{id} ---------------------------------------------------------------------

def test_patch_user(server):
    u = ok_json(server.admin("POST", "/admin/users", json={"email": email(), "name": "Old"}), 201)
    p = ok_json(server.admin("PATCH", "/admin/users/%d" % u["id"],
                             json={"name": "New", "max_concurrent_bots": 11,
                                   "data": {"plan": "pro"}}))
    assert p["id"] == u["id"] and p["email"] == u["email"]
    assert p["name"] == "New"
    assert p["max_concurrent_bots"] == 11
    assert p["data"].get("plan") == "pro"
    got = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))
    assert got["name"] == "New" and got["max_concurrent_bots"] == 11
    assert got["data"].get("plan") == "pro"


def test_patch_user_single_field_keeps_others(server):
    u = ok_json(server.admin("POST", "/admin/users",
                             json={"email": email(), "name": "Keep", "max_concurrent_bots": 4}),
                201)
    p = ok_json(server.admin("PATCH", "/admin/users/%d" % u["id"], json={"max_concurrent_bots": 1}))
    assert p["name"] == "Keep" and p["max_concurrent_bots"] == 1
    p = ok_json(server.admin("PATCH", "/admin/users/%d" % u["id"], json={"name": None}))
    assert p["name"] is None and p["max_concurrent_bots"] == 1


def test_patch_user_empty_body(server):
    u = ok_json(server.admin("POST", "/admin/users", json={"email": email()}), 201)
    err(server.admin("PATCH", "/admin/users/%d" % u["id"], json={}), 400)


@pytest.mark.parametrize("field,value", [("name", 1), ("max_concurrent_bots", "x"),
                                         ("max_concurrent_bots", 1001),
                                         ("max_concurrent_bots", -1), ("data", [])])
def test_patch_user_bad_types(server, field, value):
    u = ok_json(server.admin("POST", "/admin/users", json={"email": email(), "name": "N"}), 201)
    err(server.admin("PATCH", "/admin/users/%d" % u["id"], json={field: value}), 422, field)
    assert ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["name"] == "N"


def test_patch_user_unknown(server):
    err(server.admin("PATCH", "/admin/users/999999", json={"name": "x"}), 404)


# -- tokens --------------------------------------------------------------------------------------

def test_create_token(server):
    u = ok_json(server.admin("POST", "/admin/users", json={"email": email()}), 201)
    t = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)
    assert set(t) == {"id", "user_id", "token", "created_at"}
    assert t["user_id"] == u["id"]
    assert isinstance(t["token"], str) and t["token"].startswith("hk_")
    assert len(t["token"]) >= 20
    assert is_iso(t["created_at"])
    t2 = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)
    assert t2["token"] != t["token"] and t2["id"] != t["id"]
    # the token works
    ok_json(server.request("GET", "/meetings", headers=uh(t["token"])))


def test_create_token_unknown_user(server):
    err(server.admin("POST", "/admin/users/999999/tokens"), 404)
    err(server.admin("POST", "/admin/users/abc/tokens"), 404)


def test_delete_token(server):
    u, token = server.new_user()
    ok_json(server.request("GET", "/meetings", headers=uh(token)))
    tid = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["api_tokens"][0]["id"]
    r = server.admin("DELETE", "/admin/tokens/%d" % tid)
    assert r.status_code == 204, r.text
    assert r.content == b""
    err(server.request("GET", "/meetings", headers=uh(token)), 401)
    assert ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["api_tokens"] == []
    err(server.admin("DELETE", "/admin/tokens/%d" % tid), 404)


def test_delete_token_unknown(server):
    err(server.admin("DELETE", "/admin/tokens/999999"), 404)
    err(server.admin("DELETE", "/admin/tokens/abc"), 404)


def test_token_last_used_at(server):
    u, token = server.new_user()
    tok = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["api_tokens"][0]
    assert tok["last_used_at"] is None
    ok_json(server.request("GET", "/meetings", headers=uh(token)))

    def used():
        t = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["api_tokens"][0]
        return t["last_used_at"]
    v = poll(used, timeout=5)
    assert v is not None, "last_used_at still null 5 s after the token was used"
    assert is_iso(v)


# -- admin auth ----------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("POST", "/admin/users", {"email": "x@example.com"}),
    ("GET", "/admin/users", None),
    ("GET", "/admin/users/1", None),
    ("GET", "/admin/users/email/x@example.com", None),
    ("PATCH", "/admin/users/1", {"name": "x"}),
    ("POST", "/admin/users/1/tokens", None),
    ("DELETE", "/admin/tokens/1", None),
]


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES)
def test_admin_routes_need_admin_key(server, method, path, body):
    u, token = server.new_user(email="x@example.com")
    kw = {"json": body} if body is not None else {}
    err(server.request(method, path, **kw), 401)
    err(server.request(method, path, headers={"X-Admin-API-Key": "wrong"}, **kw), 401)
    err(server.request(method, path, headers={"X-Admin-API-Key": ""}, **kw), 401)
    err(server.request(method, path, headers={"X-Admin-API-Key": server.admin_token + "x"}, **kw),
        401)
    err(server.request(method, path, headers={"X-Admin-API-Key": server.admin_token[:-1]}, **kw),
        401)
    err(server.request(method, path, headers={"X-Admin-API-Key": token}, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": token}, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": server.admin_token}, **kw), 401)
    # nothing changed: the user still has its token, and no new user was created
    got = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))
    assert len(got["api_tokens"]) == 1 and got["name"] is None
    assert len(ok_json(server.admin("GET", "/admin/users"))) == 1


def test_parallel_create_same_email(server):
    from concurrent.futures import ThreadPoolExecutor
    e = email()
    with ThreadPoolExecutor(max_workers=12) as ex:
        rs = list(ex.map(lambda _: server.admin("POST", "/admin/users", json={"email": e}),
                         range(12)))
    codes = sorted(r.status_code for r in rs)
    assert codes == [200] * 11 + [201], codes
    assert len({r.json()["id"] for r in rs}) == 1
