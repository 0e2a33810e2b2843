"""GET /meetings (pagination), GET /meetings/{id}, PATCH and DELETE /meetings/{platform}/{id}."""
import pytest

from helpers import (MEETING_KEYS, err, get_meeting, ok_json, start_stream, stop_stream, uh,
                     uniq)


def list_meetings(server, token, query=""):
    return ok_json(server.request("GET", "/meetings" + query, headers=uh(token)))


# -- listing ---------------------------------------------------------------------------------------

def test_list_empty(server, user):
    _, token = user
    assert list_meetings(server, token) == {"meetings": [], "next_cursor": None}


def test_list_newest_first(server):
    _, token = server.new_user(max_concurrent_bots=10)
    made = [start_stream(server, token) for _ in range(4)]
    body = list_meetings(server, token)
    assert body["next_cursor"] is None
    ids = [m["id"] for m in body["meetings"]]
    assert ids == [m["id"] for m in reversed(made)]
    for m in body["meetings"]:
        assert MEETING_KEYS <= set(m)
        assert "meeting_token" not in m


def test_list_pagination_visits_each_once(server):
    _, token = server.new_user(max_concurrent_bots=100)
    made = [start_stream(server, token)["id"] for _ in range(7)]
    for limit in (1, 2, 3, 7, 100):
        seen = []
        cursor = None
        pages = 0
        while True:
            q = "?limit=%d" % limit + ("&cursor=%s" % cursor if cursor else "")
            body = list_meetings(server, token, q)
            assert len(body["meetings"]) <= limit
            seen += [m["id"] for m in body["meetings"]]
            cursor = body["next_cursor"]
            pages += 1
            assert pages <= 20, "pagination does not end"
            if cursor is None:
                break
            assert isinstance(cursor, str) and cursor
        assert seen == sorted(made, reverse=True), (limit, seen)


def test_list_pagination_stable_under_inserts(server):
    _, token = server.new_user(max_concurrent_bots=100)
    made = [start_stream(server, token)["id"] for _ in range(4)]
    body = list_meetings(server, token, "?limit=2")
    first = [m["id"] for m in body["meetings"]]
    newer = start_stream(server, token)["id"]  # created between page fetches
    body2 = list_meetings(server, token, "?limit=2&cursor=%s" % body["next_cursor"])
    second = [m["id"] for m in body2["meetings"]]
    assert first + second == sorted(made, reverse=True)
    assert newer not in second


def test_list_default_limit_50(server):
    _, token = server.new_user(max_concurrent_bots=1000)
    for _ in range(53):
        start_stream(server, token)
    body = list_meetings(server, token)
    assert len(body["meetings"]) == 50
    assert body["next_cursor"]
    rest = list_meetings(server, token, "?cursor=%s" % body["next_cursor"])
    assert len(rest["meetings"]) == 3 and rest["next_cursor"] is None
    assert len(list_meetings(server, token, "?limit=100")["meetings"]) == 53


@pytest.mark.parametrize("query,name", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=-5", "limit"), ("limit=ten", "limit"),
    ("limit=2.0", "limit"), ("limit=99999999999999999999", "limit"), ("limit=%2B5", "limit"),
    ("limit=%205", "limit"), ("limit=", "limit"),
    ("cursor=not-a-cursor!!", "cursor"), ("cursor=%00%ff", "cursor"), ("cursor=" + "A" * 300,
                                                                        "cursor"),
])
def test_list_bad_query(server, user, query, name):
    _, token = user
    start_stream(server, token)
    err(server.request("GET", "/meetings?" + query, headers=uh(token)), 422, name)


# -- one meeting -----------------------------------------------------------------------------------

def test_get_meeting(server, user):
    _, token = user
    m = start_stream(server, token)
    got = get_meeting(server, token, m["id"])
    assert {k: got[k] for k in MEETING_KEYS} == {k: m[k] for k in MEETING_KEYS}


@pytest.mark.parametrize("mid", ["999999", "0", "-1", "abc", "1.0", "99999999999999999999999"])
def test_get_meeting_unknown(server, user, mid):
    _, token = user
    start_stream(server, token)
    err(server.request("GET", "/meetings/%s" % mid, headers=uh(token)), 404)


def test_get_other_users_meeting(server):
    _, ta = server.new_user()
    _, tb = server.new_user()
    m = start_stream(server, ta)
    err(server.request("GET", "/meetings/%d" % m["id"], headers=uh(tb)), 404)


# -- PATCH -----------------------------------------------------------------------------------------

def patch(server, token, nid, body, query=""):
    return server.request("PATCH", "/meetings/stream/%s%s" % (nid, query), headers=uh(token),
                          json=body)


def test_patch_merges(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    p = ok_json(patch(server, token, nid, {"data": {"name": "Weekly sync",
                                                    "participants": ["Alice", "Bob"]}}))
    assert p["id"] == m["id"]
    assert p["data"]["name"] == "Weekly sync"
    assert p["data"]["participants"] == ["Alice", "Bob"]
    assert p["data"]["status_transition"] == m["data"]["status_transition"]
    p = ok_json(patch(server, token, nid, {"data": {"notes": "ship Friday",
                                                    "languages": ["en"]}}))
    assert p["data"]["name"] == "Weekly sync"
    assert p["data"]["participants"] == ["Alice", "Bob"]
    assert p["data"]["notes"] == "ship Friday"
    assert p["data"]["languages"] == ["en"]
    got = get_meeting(server, token, m["id"])
    assert got["data"] == p["data"]
    assert got["status"] == "requested"
    # null clears a string field
    p = ok_json(patch(server, token, nid, {"data": {"name": None}}))
    assert p["data"]["name"] is None and p["data"]["notes"] == "ship Friday"


def test_patch_unicode(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    name = "Réunion \u2014 \u4f1a\u8bae \U0001F4DE \"quoted\" \\ back"
    ok_json(patch(server, token, nid, {"data": {"name": name, "participants": ["Zoë"]}}))
    got = get_meeting(server, token, m["id"])
    assert got["data"]["name"] == name and got["data"]["participants"] == ["Zoë"]


def test_patch_completed_meeting(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    stop_stream(server, token, nid)
    p = ok_json(patch(server, token, nid, {"data": {"name": "after"}}))
    assert p["data"]["name"] == "after"
    assert p["data"]["completion_reason"] == "stopped"
    assert get_meeting(server, token, m["id"])["status"] == "completed"


@pytest.mark.parametrize("body", [{}, {"data": {}}, {"name": "x"}])
def test_patch_empty_is_400(server, user, body):
    _, token = user
    nid = uniq()
    start_stream(server, token, nid)
    err(patch(server, token, nid, body), 400)


@pytest.mark.parametrize("data,field", [
    ({"name": 5}, "data.name"), ({"name": ["x"]}, "data.name"),
    ({"notes": {"a": 1}}, "data.notes"), ({"notes": 1.5}, "data.notes"),
    ({"participants": "Alice"}, "data.participants"),
    ({"participants": ["Alice", 1]}, "data.participants"),
    ({"participants": [None]}, "data.participants"),
    ({"languages": "en"}, "data.languages"), ({"languages": [["en"]]}, "data.languages"),
    ({"status_transition": []}, "status_transition"),
    ({"completion_reason": "stopped"}, "completion_reason"),
    ({"bogus_key": 1}, "bogus_key"),
])
def test_patch_bad_types_422(server, user, data, field):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    err(patch(server, token, nid, {"data": data}), 422, field)
    assert get_meeting(server, token, m["id"])["data"] == m["data"]


@pytest.mark.parametrize("data", ["str", 5, ["name"], None])
def test_patch_data_not_object(server, user, data):
    _, token = user
    nid = uniq()
    start_stream(server, token, nid)
    r = patch(server, token, nid, {"data": data})
    assert r.status_code in (400, 422), r.text
    err(r, r.status_code, "data")


def test_patch_unknown(server, user):
    _, token = user
    err(patch(server, token, uniq(), {"data": {"name": "x"}}), 404)


def test_patch_meeting_id_selects(server, user):
    _, token = user
    nid = uniq()
    m1 = start_stream(server, token, nid)
    stop_stream(server, token, nid)
    m2 = start_stream(server, token, nid)
    p = ok_json(patch(server, token, nid, {"data": {"name": "latest"}}))
    assert p["id"] == m2["id"]
    p = ok_json(patch(server, token, nid, {"data": {"name": "older"}}, "?meeting_id=%d" % m1["id"]))
    assert p["id"] == m1["id"]
    assert get_meeting(server, token, m1["id"])["data"]["name"] == "older"
    assert get_meeting(server, token, m2["id"])["data"]["name"] == "latest"


def test_patch_meeting_id_mismatch(server, user):
    _, token = user
    a, b = uniq("a"), uniq("b")
    ma = start_stream(server, token, a)
    start_stream(server, token, b)
    # meeting_id of a meeting with a different native id does not match
    err(patch(server, token, b, {"data": {"name": "x"}}, "?meeting_id=%d" % ma["id"]), 404)
    err(patch(server, token, b, {"data": {"name": "x"}}, "?meeting_id=999999"), 404)
    assert get_meeting(server, token, ma["id"])["data"]["name"] is None


# -- DELETE ----------------------------------------------------------------------------------------

def test_delete_non_terminal_is_409(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    err(server.request("DELETE", "/meetings/stream/%s" % nid, headers=uh(token)), 409)
    assert get_meeting(server, token, m["id"])["status"] == "requested"


def test_delete_anonymises_and_is_idempotent(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    secret_name, secret_note, secret_person = uniq("Name"), uniq("Note"), uniq("Person")
    ok_json(patch(server, token, nid, {"data": {"name": secret_name, "notes": secret_note,
                                                "participants": [secret_person]}}))
    stop_stream(server, token, nid)
    body = ok_json(server.request("DELETE", "/meetings/stream/%s" % nid, headers=uh(token)))
    assert isinstance(body["detail"], str) and body["detail"]
    body = ok_json(server.request("DELETE", "/meetings/stream/%s" % nid, headers=uh(token)))
    assert isinstance(body["detail"], str)
    r = server.request("GET", "/meetings/%d" % m["id"], headers=uh(token))
    got = ok_json(r)
    assert got["id"] == m["id"] and got["status"] == "completed"
    assert got["data"].get("deleted") is True
    assert not got["data"].get("name")
    assert not got["data"].get("notes")
    assert not got["data"].get("participants")
    for s in (secret_name, secret_note, secret_person):
        assert s not in r.text
        assert s not in server.request("GET", "/meetings", headers=uh(token)).text
    # deleted stays deleted: a PATCH cannot put data back
    r = patch(server, token, nid, {"data": {"name": secret_name}})
    assert r.status_code == 409, r.text
    assert secret_name not in server.request("GET", "/meetings/%d" % m["id"], headers=uh(token)).text


def test_delete_selects_by_meeting_id(server, user):
    _, token = user
    nid = uniq()
    m1 = start_stream(server, token, nid)
    ok_json(patch(server, token, nid, {"data": {"name": "one"}}))
    stop_stream(server, token, nid)
    m2 = start_stream(server, token, nid)
    ok_json(patch(server, token, nid, {"data": {"name": "two"}}))
    # the latest is still running
    err(server.request("DELETE", "/meetings/stream/%s" % nid, headers=uh(token)), 409)
    ok_json(server.request("DELETE", "/meetings/stream/%s?meeting_id=%d" % (nid, m1["id"]),
                           headers=uh(token)))
    assert get_meeting(server, token, m1["id"])["data"].get("deleted") is True
    g2 = get_meeting(server, token, m2["id"])
    assert g2["data"]["name"] == "two" and not g2["data"].get("deleted")


def test_delete_unknown(server, user):
    _, token = user
    err(server.request("DELETE", "/meetings/stream/%s" % uniq(), headers=uh(token)), 404)


def test_delete_other_users(server):
    _, ta = server.new_user()
    _, tb = server.new_user()
    nid = uniq()
    m = start_stream(server, ta, nid)
    ok_json(patch(server, ta, nid, {"data": {"name": "mine"}}))
    stop_stream(server, ta, nid)
    err(server.request("DELETE", "/meetings/stream/%s" % nid, headers=uh(tb)), 404)
    got = get_meeting(server, ta, m["id"])
    assert got["data"]["name"] == "mine" and not got["data"].get("deleted")
