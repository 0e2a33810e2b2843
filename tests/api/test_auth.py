"""User authentication (X-API-Key) on every user route, token lifecycle, tenant isolation."""
import pytest

from helpers import err, ok_json, start_stream, stop_stream, uh, uniq

USER_ROUTES = [
    ("GET", "/bots/status", None),
    ("POST", "/bots", {"platform": "stream", "native_meeting_id": "auth-x"}),
    ("DELETE", "/bots/stream/auth-x", None),
    ("PUT", "/bots/stream/auth-x/config", {"language": "en"}),
    ("GET", "/meetings", None),
    ("GET", "/meetings/1", None),
    ("PATCH", "/meetings/stream/auth-x", {"data": {"name": "n"}}),
    ("DELETE", "/meetings/stream/auth-x", None),
]


@pytest.mark.parametrize("method,path,body", USER_ROUTES)
def test_user_routes_need_api_key(server, method, path, body):
    _, token = server.new_user()
    kw = {"json": body} if body is not None else {}
    err(server.request(method, path, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": ""}, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": "hk_not-a-real-token"}, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": token + "x"}, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": token[:-1]}, **kw), 401)
    err(server.request(method, path, headers={"X-API-Key": "x" * 5000}, **kw), 401)
    # the admin token is not a user token, in either header
    err(server.request(method, path, headers={"X-API-Key": server.admin_token}, **kw), 401)
    err(server.request(method, path, headers=server.admin_headers(), **kw), 401)
    # nothing was created by the rejected requests
    assert ok_json(server.request("GET", "/meetings", headers=uh(token)))["meetings"] == []


def test_auth_checked_before_validation(server):
    # an invalid body without a key is 401, not 422: nothing about the API leaks to anonymous users
    err(server.request("POST", "/bots", json={"platform": "nope"}), 401)
    err(server.request("GET", "/meetings?limit=0"), 401)


def test_valid_key_accepted(server):
    _, token = server.new_user()
    body = ok_json(server.request("GET", "/meetings", headers=uh(token)))
    assert body == {"meetings": [], "next_cursor": None}
    assert ok_json(server.request("GET", "/bots/status", headers=uh(token))) == {"running_bots": []}


def test_header_name_case_insensitive(server):
    _, token = server.new_user()
    ok_json(server.request("GET", "/meetings", headers={"x-api-key": token}))
    ok_json(server.request("GET", "/admin/users", headers={"x-admin-api-key": server.admin_token}))


def test_deleted_token_rejected_at_once_other_token_still_works(server):
    u, t1 = server.new_user()
    t2 = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)["token"]
    m = start_stream(server, t1)
    ok_json(server.request("GET", "/meetings/%d" % m["id"], headers=uh(t2)))
    toks = ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["api_tokens"]
    first = min(toks, key=lambda t: t["id"])
    # keep-alive connection: make sure no cached auth survives the deletion
    import requests
    with requests.Session() as s:
        s.headers.update(uh(t1))
        assert s.get(server.url + "/meetings", timeout=10).status_code == 200
        r = server.admin("DELETE", "/admin/tokens/%d" % first["id"])
        assert r.status_code == 204, r.text
        err(s.get(server.url + "/meetings", timeout=10), 401)
        err(s.get(server.url + "/meetings/%d" % m["id"], timeout=10), 401)
    # the user's other token still works and sees the same meeting
    ok_json(server.request("GET", "/meetings/%d" % m["id"], headers=uh(t2)))


def test_tokens_of_same_user_share_data(server):
    u, t1 = server.new_user()
    t2 = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)["token"]
    nid = uniq()
    start_stream(server, t1, nid)
    listed = ok_json(server.request("GET", "/meetings", headers=uh(t2)))["meetings"]
    assert [m["native_meeting_id"] for m in listed] == [nid]
    stop_stream(server, t2, nid)


def test_tenant_isolation(server):
    ua, ta = server.new_user()
    ub, tb = server.new_user()
    nid = uniq("shared")
    ma = start_stream(server, ta, nid)
    assert ma["user_id"] == ua["id"]
    # B sees nothing of A
    err(server.request("GET", "/meetings/%d" % ma["id"], headers=uh(tb)), 404)
    assert ok_json(server.request("GET", "/meetings", headers=uh(tb)))["meetings"] == []
    assert ok_json(server.request("GET", "/bots/status", headers=uh(tb)))["running_bots"] == []
    err(server.request("PATCH", "/meetings/stream/%s" % nid, headers=uh(tb),
                       json={"data": {"name": "hijack"}}), 404)
    err(server.request("PATCH", "/meetings/stream/%s?meeting_id=%d" % (nid, ma["id"]),
                       headers=uh(tb), json={"data": {"name": "hijack"}}), 404)
    err(server.request("DELETE", "/bots/stream/%s" % nid, headers=uh(tb)), 404)
    err(server.request("DELETE", "/meetings/stream/%s" % nid, headers=uh(tb)), 404)
    err(server.request("PUT", "/bots/stream/%s/config" % nid, headers=uh(tb),
                       json={"language": "en"}), 404)
    # A's meeting is untouched
    got = ok_json(server.request("GET", "/meetings/%d" % ma["id"], headers=uh(ta)))
    assert got["status"] == "requested"
    assert got["data"]["name"] != "hijack"
    # B may use the same native id for its own meeting; the two do not interfere
    mb = start_stream(server, tb, nid)
    assert mb["id"] != ma["id"] and mb["user_id"] == ub["id"]
    stop_stream(server, tb, nid)
    assert ok_json(server.request("GET", "/meetings/%d" % ma["id"],
                                  headers=uh(ta)))["status"] == "requested"
    # after A's meeting ended, B still cannot delete it
    stop_stream(server, ta, nid)
    err(server.request("DELETE", "/meetings/stream/%s?meeting_id=%d" % (nid, ma["id"]),
                       headers=uh(tb)), 404)
    got = ok_json(server.request("GET", "/meetings/%d" % ma["id"], headers=uh(ta)))
    assert not got["data"].get("deleted")
