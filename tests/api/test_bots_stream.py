"""POST /bots with platform "stream", DELETE /bots, GET /bots/status, PUT /bots/.../config."""
import time
from urllib.parse import urlparse

import pytest

from helpers import (MEETING_DATA_KEYS, MEETING_KEYS, err, get_meeting, is_iso, jwt_parts,
                     ok_json, start_stream, stop_stream, uh, uniq)


# -- creating --------------------------------------------------------------------------------------

def test_create_stream_meeting_shape(server, user):
    u, token = user
    nid = uniq()
    m = ok_json(server.request("POST", "/bots", headers=uh(token),
                               json={"platform": "stream", "native_meeting_id": nid}), 201)
    assert MEETING_KEYS <= set(m), set(m)
    assert set(m) - MEETING_KEYS == {"meeting_token", "ingest_url"}
    assert isinstance(m["id"], int) and m["id"] > 0
    assert m["user_id"] == u["id"]
    assert m["platform"] == "stream"
    assert m["native_meeting_id"] == nid
    assert m["constructed_meeting_url"] is None
    assert m["status"] == "requested"
    assert m["start_time"] is None and m["end_time"] is None
    assert is_iso(m["created_at"]) and is_iso(m["updated_at"])
    d = m["data"]
    assert MEETING_DATA_KEYS <= set(d), set(d)
    assert d["name"] is None and d["notes"] is None
    assert d["participants"] in ([], None)
    assert isinstance(d["languages"], list)
    assert d["completion_reason"] is None and d["failure_stage"] is None
    assert isinstance(d["status_transition"], list)
    # GET returns the same meeting (without the one-time token fields)
    got = get_meeting(server, token, m["id"])
    assert {k: got[k] for k in MEETING_KEYS} == {k: m[k] for k in MEETING_KEYS}


def test_meeting_token_claims(server, user):
    u, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    header, claims = jwt_parts(m["meeting_token"])
    assert header.get("alg") == "HS256"
    assert claims["meeting_id"] == m["id"]
    assert claims["user_id"] == u["id"]
    assert claims["platform"] == "stream"
    assert claims["native_meeting_id"] == nid
    assert claims["scope"] == "transcribe:write"
    assert claims["iss"] == "hark"
    aud = claims["aud"]
    assert aud == "hark-ingest" or (isinstance(aud, list) and "hark-ingest" in aud)
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["exp"] > claims["iat"]
    assert abs(claims["iat"] - time.time()) < 300
    assert isinstance(claims["jti"], str) and claims["jti"]
    m2 = start_stream(server, token)
    _, claims2 = jwt_parts(m2["meeting_token"])
    assert claims2["jti"] != claims["jti"]
    assert claims2["meeting_id"] == m2["id"] != m["id"]


def test_ingest_url(server, user):
    _, token = user
    m = start_stream(server, token)
    assert m["ingest_url"].startswith("ws://"), m["ingest_url"]
    assert m["ingest_url"].endswith("/ws/audio"), m["ingest_url"]


def test_ingest_url_points_at_this_server(server, user):
    _, token = user
    u = urlparse(start_stream(server, token)["ingest_url"])
    assert u.port == server.port, "ingest_url %r does not name the bound port %d" % (
        u.geturl(), server.port)


def test_optional_fields_accepted_and_passcode_never_echoed(server, user):
    _, token = user
    nid = uniq()
    secret = "pin-" + uniq("secret")
    r = server.request("POST", "/bots", headers=uh(token), json={
        "platform": "stream", "native_meeting_id": nid, "language": "en", "task": "transcribe",
        "bot_name": "Hark Bot", "meeting_url": "http://127.0.0.1:1/x", "passcode": secret})
    m = ok_json(r, 201)
    assert secret not in r.text
    assert m["constructed_meeting_url"] is None
    texts = [
        server.request("GET", "/meetings/%d" % m["id"], headers=uh(token)).text,
        server.request("GET", "/meetings", headers=uh(token)).text,
        server.request("GET", "/bots/status", headers=uh(token)).text,
        server.request("PATCH", "/meetings/stream/%s" % nid, headers=uh(token),
                       json={"data": {"notes": "n"}}).text,
        server.request("DELETE", "/bots/stream/%s" % nid, headers=uh(token)).text,
        server.request("GET", "/meetings/%d" % m["id"], headers=uh(token)).text,
    ]
    for t in texts:
        assert secret not in t
    _, claims = jwt_parts(m["meeting_token"])
    assert secret not in str(claims)
    assert secret not in server.log(), "passcode written to the server log"


@pytest.mark.parametrize("platform", ["google_meet", "teams", "zoom", "sip", "upload"])
def test_platform_not_supported(server, user, platform):
    _, token = user
    r = server.request("POST", "/bots", headers=uh(token),
                       json={"platform": platform, "native_meeting_id": "abc-123"})
    err(r, 422, "not supported", "stream")
    assert ok_json(server.request("GET", "/meetings", headers=uh(token)))["meetings"] == []


@pytest.mark.parametrize("platform", ["skype", "", "STREAM", 5, None, ["stream"], {"a": 1}])
def test_platform_invalid(server, user, platform):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": platform, "native_meeting_id": "abc"}), 422, "platform")


def test_platform_missing(server, user):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token), json={"native_meeting_id": "abc"}),
        422, "platform")


@pytest.mark.parametrize("nid", [None, "", "a" * 257, "has space", "a/b", "a?b", "a#b", "ümlaut",
                                 "a\nb", "a%2Fb", 123, ["x"], {"x": 1}, True])
def test_native_meeting_id_invalid(server, user, nid):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": nid}),
        422, "native_meeting_id")


def test_native_meeting_id_missing(server, user):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token), json={"platform": "stream"}),
        422, "native_meeting_id")


@pytest.mark.parametrize("nid", ["a" * 256, "Az09._:@-", "x", "room:42@host.example", "-", "_"])
def test_native_meeting_id_valid(server, user, nid):
    _, token = user
    m = start_stream(server, token, nid)
    assert m["native_meeting_id"] == nid
    got = get_meeting(server, token, m["id"])
    assert got["native_meeting_id"] == nid
    stop_stream(server, token, nid)


@pytest.mark.parametrize("lang", ["de", "EN", "", "english"])
def test_language_unsupported(server, user, lang):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq(), "language": lang}),
        422, "language", "en")


@pytest.mark.parametrize("lang", [5, ["en"], {"en": 1}])
def test_language_wrong_type(server, user, lang):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq(), "language": lang}),
        422, "language")


@pytest.mark.parametrize("task", ["translate", "", "TRANSCRIBE", 1, ["x"]])
def test_task_invalid(server, user, task):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq(), "task": task}),
        422, "task")


@pytest.mark.parametrize("field,value", [("bot_name", 5), ("meeting_url", 5), ("passcode", 5)])
def test_optional_string_fields_wrong_type(server, user, field, value):
    _, token = user
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq(), field: value}),
        422, field)


def test_duplicate_non_terminal_is_409(server, user):
    _, token = user
    nid = uniq()
    m1 = start_stream(server, token, nid)
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": nid}), 409)
    listed = ok_json(server.request("GET", "/meetings", headers=uh(token)))["meetings"]
    assert [m["id"] for m in listed] == [m1["id"]]
    stop_stream(server, token, nid)
    m2 = start_stream(server, token, nid)
    assert m2["id"] != m1["id"] and m2["id"] > m1["id"]
    assert m2["status"] == "requested"
    assert get_meeting(server, token, m1["id"])["status"] == "completed"


def test_concurrency_limit_403(server):
    _, token = server.new_user(max_concurrent_bots=2)
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    start_stream(server, token, a)
    start_stream(server, token, b)
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": c}), 403)
    assert len(ok_json(server.request("GET", "/meetings", headers=uh(token)))["meetings"]) == 2
    stop_stream(server, token, a)
    start_stream(server, token, c)
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq()}), 403)


def test_concurrency_limit_zero(server):
    _, token = server.new_user(max_concurrent_bots=0)
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq()}), 403)


def test_concurrency_limit_raised_by_patch(server):
    u, token = server.new_user(max_concurrent_bots=1)
    start_stream(server, token)
    err(server.request("POST", "/bots", headers=uh(token),
                       json={"platform": "stream", "native_meeting_id": uniq()}), 403)
    ok_json(server.admin("PATCH", "/admin/users/%d" % u["id"], json={"max_concurrent_bots": 2}))
    start_stream(server, token)


def test_concurrency_limit_is_per_user(server):
    _, ta = server.new_user(max_concurrent_bots=1)
    _, tb = server.new_user(max_concurrent_bots=1)
    start_stream(server, ta)
    start_stream(server, tb)


# -- stopping --------------------------------------------------------------------------------------

def test_stop_stream_meeting(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    r = server.request("DELETE", "/bots/stream/%s" % nid, headers=uh(token))
    body = ok_json(r, 202)
    assert isinstance(body["detail"], str) and body["detail"]
    mm = body["meeting"]
    assert mm["id"] == m["id"]
    assert mm["status"] == "completed"
    got = get_meeting(server, token, m["id"])
    assert got["status"] == "completed"
    assert is_iso(got["end_time"])
    assert got["data"]["completion_reason"] == "stopped"
    assert got["data"]["failure_stage"] is None
    tr = [t for t in got["data"]["status_transition"] if t.get("to") == "completed"]
    assert len(tr) == 1, got["data"]["status_transition"]
    t = tr[0]
    assert t["from"] == "requested" and t["reason"] == "stopped" and t["source"] == "user"
    assert is_iso(t["timestamp"])
    assert got["updated_at"] >= m["updated_at"]
    # the 202 body's meeting is the stored one
    assert {k: mm[k] for k in MEETING_KEYS} == {k: got[k] for k in MEETING_KEYS}


def test_stop_again_is_idempotent(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    stop_stream(server, token, nid)
    before = get_meeting(server, token, m["id"])
    body = stop_stream(server, token, nid)
    assert "already" in body["detail"].lower()
    after = get_meeting(server, token, m["id"])
    assert after["status"] == "completed"
    assert after["data"]["status_transition"] == before["data"]["status_transition"]
    assert after["end_time"] == before["end_time"]


def test_stop_unknown(server, user):
    _, token = user
    err(server.request("DELETE", "/bots/stream/%s" % uniq("none"), headers=uh(token)), 404)


def test_stop_other_users_meeting(server):
    _, ta = server.new_user()
    _, tb = server.new_user()
    nid = uniq()
    m = start_stream(server, ta, nid)
    err(server.request("DELETE", "/bots/stream/%s" % nid, headers=uh(tb)), 404)
    assert get_meeting(server, ta, m["id"])["status"] == "requested"


def test_stop_frees_concurrency_slot(server):
    _, token = server.new_user(max_concurrent_bots=1)
    for _ in range(3):
        nid = uniq()
        start_stream(server, token, nid)
        stop_stream(server, token, nid)


# -- status ----------------------------------------------------------------------------------------

def test_bots_status(server):
    _, ta = server.new_user()
    _, tb = server.new_user()
    a1, a2 = start_stream(server, ta), start_stream(server, ta)
    start_stream(server, tb)
    body = ok_json(server.request("GET", "/bots/status", headers=uh(ta)))
    bots = body["running_bots"]
    assert sorted(b["meeting_id"] for b in bots) == sorted([a1["id"], a2["id"]])
    for b in bots:
        assert b["platform"] == "stream"
        assert b["status"] == "requested"
        src = a1 if b["meeting_id"] == a1["id"] else a2
        assert b["native_meeting_id"] == src["native_meeting_id"]
    stop_stream(server, ta, a1["native_meeting_id"])
    bots = ok_json(server.request("GET", "/bots/status", headers=uh(ta)))["running_bots"]
    assert [b["meeting_id"] for b in bots] == [a2["id"]]


# -- reconfigure -----------------------------------------------------------------------------------

def test_config_requested_meeting_is_409(server, user):
    _, token = user
    nid = uniq()
    start_stream(server, token, nid)
    err(server.request("PUT", "/bots/stream/%s/config" % nid, headers=uh(token),
                       json={"language": "en", "task": "transcribe"}), 409)


def test_config_unknown_is_404(server, user):
    _, token = user
    err(server.request("PUT", "/bots/stream/%s/config" % uniq(), headers=uh(token),
                       json={"language": "en"}), 404)


@pytest.mark.parametrize("body,field", [({"language": "xx"}, "language"),
                                        ({"language": 5}, "language"),
                                        ({"task": "translate"}, "task"),
                                        ({"task": 1}, "task")])
def test_config_bad_values_422(server, user, body, field):
    _, token = user
    nid = uniq()
    start_stream(server, token, nid)
    err(server.request("PUT", "/bots/stream/%s/config" % nid, headers=uh(token), json=body),
        422, field)


# -- races -----------------------------------------------------------------------------------------

def parallel(n, fn):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=n) as ex:
        return list(ex.map(fn, range(n)))


def test_parallel_same_native_id_only_one_wins(server):
    _, token = server.new_user(max_concurrent_bots=100)
    nid = uniq("race")
    codes = parallel(16, lambda _: server.request(
        "POST", "/bots", headers=uh(token),
        json={"platform": "stream", "native_meeting_id": nid}).status_code)
    assert sorted(codes) == [201] + [409] * 15, codes
    listed = ok_json(server.request("GET", "/meetings", headers=uh(token)))["meetings"]
    assert len(listed) == 1


def test_parallel_concurrency_limit_holds(server):
    _, token = server.new_user(max_concurrent_bots=3)
    codes = parallel(12, lambda i: server.request(
        "POST", "/bots", headers=uh(token),
        json={"platform": "stream", "native_meeting_id": uniq("p%d" % i)}).status_code)
    assert codes.count(201) == 3 and codes.count(403) == 9, codes
    bots = ok_json(server.request("GET", "/bots/status", headers=uh(token)))["running_bots"]
    assert len(bots) == 3


def test_parallel_stop_is_recorded_once(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    codes = parallel(8, lambda _: server.request("DELETE", "/bots/stream/%s" % nid,
                                                 headers=uh(token)).status_code)
    assert codes == [202] * 8, codes
    got = get_meeting(server, token, m["id"])
    assert got["status"] == "completed"
    assert len([t for t in got["data"]["status_transition"] if t["to"] == "completed"]) == 1
