"""GET /analytics: per-user meeting counts per day, by platform and status, minutes transcribed."""
import datetime

from helpers import err, ok_json, start_stream, stop_stream, uh, uniq


def analytics(server, token, query=""):
    return ok_json(server.request("GET", "/analytics" + query, headers=uh(token)))


def test_empty_user_gets_zeros_and_30_days(server, user):
    _, token = user
    a = analytics(server, token)
    assert a["meetings_total"] == 0
    assert a["by_platform"] == {} and a["by_status"] == {}
    assert a["segments"] == 0 and a["minutes_transcribed"] == 0 and a["meeting_minutes"] == 0
    days = a["meetings_per_day"]
    assert len(days) == 30 and a["days"] == 30
    assert all(d["count"] == 0 for d in days)
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert days[-1]["date"] == a["to"] == today.isoformat()
    assert days[0]["date"] == a["from"] == (today - datetime.timedelta(days=29)).isoformat()


def test_counts_follow_created_and_stopped_meetings(server):
    _, token = server.new_user(max_concurrent_bots=10)
    ids = [uniq("an") for _ in range(3)]
    for n in ids:
        start_stream(server, token, n)
    stop_stream(server, token, ids[0])
    a = analytics(server, token)
    assert a["meetings_total"] == 3
    assert a["by_platform"] == {"stream": 3}
    assert a["by_status"] == {"requested": 2, "completed": 1}
    assert a["meetings_per_day"][-1]["count"] == 3
    assert sum(d["count"] for d in a["meetings_per_day"]) == 3
    # A restarted native id is a new meeting.
    stop_stream(server, token, ids[1])
    start_stream(server, token, ids[1])
    a = analytics(server, token)
    assert a["meetings_total"] == 4
    assert a["by_status"] == {"requested": 2, "completed": 2}


def test_users_are_isolated(server):
    _, ta = server.new_user()
    _, tb = server.new_user()
    start_stream(server, ta, uniq("a"))
    start_stream(server, ta, uniq("a"))
    start_stream(server, tb, uniq("b"))
    assert analytics(server, ta)["meetings_total"] == 2
    assert analytics(server, tb)["meetings_total"] == 1
    _, tc = server.new_user()
    assert analytics(server, tc)["meetings_total"] == 0


def test_days_and_time_zone(server, user):
    _, token = user
    start_stream(server, token, uniq())
    a = analytics(server, token, "?days=7&tz_offset_minutes=-600")
    assert a["days"] == 7 and len(a["meetings_per_day"]) == 7 and a["tz_offset_minutes"] == -600
    local = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=10)).date()
    assert a["to"] == local.isoformat()
    assert a["meetings_per_day"][-1]["count"] == 1
    assert len(analytics(server, token, "?days=1")["meetings_per_day"]) == 1


def test_bad_params_and_auth(server, user):
    _, token = user
    for q in ("?days=0", "?days=367", "?days=x", "?days=", "?tz_offset_minutes=900",
              "?tz_offset_minutes=1.5"):
        name = "days" if "days" in q else "tz_offset_minutes"
        err(server.request("GET", "/analytics" + q, headers=uh(token)), 422, name)
    err(server.request("GET", "/analytics"), 401)
    err(server.request("GET", "/analytics", headers=uh("hk_wrong")), 401)
    err(server.request("POST", "/analytics", headers=uh(token)), 405)


def test_minutes_transcribed_sum_stored_segments(make_server):
    import json
    import time

    from wsclient import open_ingest, run, start_meeting

    server = make_server(args=["--stream-idle-timeout-ms", "300"])
    _, token = server.new_user()
    _, other = server.new_user()
    native = uniq()
    m = start_meeting(server, token, native)

    async def scenario():
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": 0.0, "end": 30.0, "text": "first half minute", "completed": True},
            {"start": 30.0, "end": 120.0, "text": "then ninety seconds", "completed": True}]}))
        await ws.send(b"END_OF_AUDIO")
        await ws.wait_closed()

    run(scenario())
    deadline = time.time() + 10
    while True:
        a = analytics(server, token)
        if a["segments"] == 2 and a["by_status"].get("completed") == 1:
            break
        assert time.time() < deadline, a
        time.sleep(0.1)
    assert a["minutes_transcribed"] == 2.0
    assert a["meeting_minutes"] >= 0
    assert analytics(server, other)["segments"] == 0
