"""Durability: users, tokens and meetings survive a graceful restart and a kill -9."""
from helpers import err, get_meeting, ok_json, start_stream, stop_stream, uh, uniq


def populate(server):
    """Creates a little of everything; returns what a client would remember."""
    u, token = server.new_user(name="Persist", max_concurrent_bots=5, data={"k": "v"})
    t_dead = ok_json(server.admin("POST", "/admin/users/%d/tokens" % u["id"]), 201)
    r = server.admin("DELETE", "/admin/tokens/%d" % t_dead["id"])
    assert r.status_code == 204
    done_nid, live_nid, del_nid = uniq("done"), uniq("live"), uniq("del")
    done = start_stream(server, token, done_nid)
    ok_json(server.request("PATCH", "/meetings/stream/%s" % done_nid, headers=uh(token),
                           json={"data": {"name": "Kept", "participants": ["Ann"],
                                          "notes": "n1", "languages": ["en"]}}))
    stop_stream(server, token, done_nid)
    live = start_stream(server, token, live_nid)
    gone = start_stream(server, token, del_nid)
    stop_stream(server, token, del_nid)
    ok_json(server.request("DELETE", "/meetings/stream/%s" % del_nid, headers=uh(token)))
    return {
        "user": ok_json(server.admin("GET", "/admin/users/%d" % u["id"])),
        "token": token,
        "dead_token": t_dead["token"],
        "done": get_meeting(server, token, done["id"]),
        "live": get_meeting(server, token, live["id"]),
        "gone": get_meeting(server, token, gone["id"]),
        "list": ok_json(server.request("GET", "/meetings", headers=uh(token))),
        "users": ok_json(server.admin("GET", "/admin/users")),
    }


def check(server, before):
    token = before["token"]
    uid = before["user"]["id"]
    after_user = ok_json(server.admin("GET", "/admin/users/%d" % uid))
    for k in ("id", "email", "name", "max_concurrent_bots", "data", "created_at"):
        assert after_user[k] == before["user"][k], k
    assert [t["id"] for t in after_user["api_tokens"]] == \
        [t["id"] for t in before["user"]["api_tokens"]]
    assert ok_json(server.admin("GET", "/admin/users")) == before["users"]
    # the token still works, the deleted one still does not
    err(server.request("GET", "/meetings", headers=uh(before["dead_token"])), 401)
    assert get_meeting(server, token, before["done"]["id"]) == before["done"]
    gone = get_meeting(server, token, before["gone"]["id"])
    assert gone["data"].get("deleted") is True and not gone["data"].get("name")
    live = get_meeting(server, token, before["live"]["id"])
    assert live["native_meeting_id"] == before["live"]["native_meeting_id"]
    ids = [m["id"] for m in ok_json(server.request("GET", "/meetings", headers=uh(token)))
           ["meetings"]]
    assert ids == [m["id"] for m in before["list"]["meetings"]]
    # new rows get fresh ids, never reused
    newm = start_stream(server, token)
    assert newm["id"] > max(ids)
    newu = ok_json(server.admin("POST", "/admin/users", json={"email": uniq() + "@x.example"}),
                   201)
    assert newu["id"] > max(u["id"] for u in before["users"])
    # the existing user is found, not duplicated
    again = server.admin("POST", "/admin/users", json={"email": before["user"]["email"]})
    assert ok_json(again, 200)["id"] == uid


def test_graceful_restart_keeps_everything(server):
    before = populate(server)
    server.restart()
    check(server, before)


def test_kill9_keeps_committed_writes(server):
    before = populate(server)
    server.kill()
    server.start()
    check(server, before)


def test_restart_twice(server):
    before = populate(server)
    server.restart()
    server.restart()
    check(server, before)


def test_stopped_after_restart_and_duplicate_rule_kept(server, user):
    _, token = user
    nid = uniq()
    m = start_stream(server, token, nid)
    server.restart()
    got = get_meeting(server, token, m["id"])
    if got["status"] not in ("completed", "failed"):
        # still non-terminal: the 409 rule and stop both still work
        err(server.request("POST", "/bots", headers=uh(token),
                           json={"platform": "stream", "native_meeting_id": nid}), 409)
        stop_stream(server, token, nid)
    m2 = start_stream(server, token, nid)
    assert m2["id"] > m["id"]


def test_write_then_kill_immediately(server):
    """Every 2xx write was committed: kill -9 right after the responses."""
    u, token = server.new_user()
    made = [start_stream(server, token)["id"] for _ in range(3)]
    server.kill()
    server.start()
    ids = [m["id"] for m in ok_json(server.request("GET", "/meetings", headers=uh(token)))
           ["meetings"]]
    assert sorted(ids) == sorted(made)
    assert ok_json(server.admin("GET", "/admin/users/%d" % u["id"]))["email"] == u["email"]
