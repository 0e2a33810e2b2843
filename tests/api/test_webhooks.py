"""Webhooks: settings API, signed envelopes, retries, order per meeting, durability across
kill -9, SSRF refusal, delivery history and redelivery, against a real HTTP receiver (Python's
http.server on 127.0.0.1, ephemeral port, in a thread)."""
import hashlib
import hmac
import http.server
import json
import os
import threading
import time

import pytest

from helpers import (MEETING_KEYS, err, metric_value, ok_json, poll, start_stream, stop_stream,
                     uh, uniq)

SECRET = "whsec-" + "q" * 24
FAST = {"HARK_WEBHOOK_ALLOW_PRIVATE": "1", "HARK_WEBHOOK_RETRY_SCHEDULE": "1,1,1"}
ALL_TYPES = ["meeting.status_change", "meeting.completed", "transcript.ready"]


class Receiver:
    """Records every POST; `plan(event) -> (status, headers, delay_s)` decides each answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = []  # dicts: t, headers, raw, body
        self.plan = lambda ev, n: (200, {}, 0)
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                with rec.lock:
                    n = sum(1 for h in rec.hits if h["body"]["event_id"] == body["event_id"])
                    rec.hits.append({"t": time.time(), "headers": dict(self.headers),
                                     "raw": raw, "body": body, "path": self.path})
                    plan = rec.plan
                status, headers, delay = plan(body, n)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def events(self, meeting_id=None):
        with self.lock:
            hits = list(self.hits)
        return [h for h in hits
                if meeting_id is None or h["body"]["data"]["meeting"]["id"] == meeting_id]

    def wait(self, count, meeting_id=None, timeout=10):
        got = poll(lambda: len(self.events(meeting_id)) >= count, timeout=timeout, interval=0.05)
        assert got, "receiver got %d of %d posts: %s" % (
            len(self.events(meeting_id)), count,
            [h["body"]["event_type"] for h in self.events(meeting_id)])
        return self.events(meeting_id)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def wh_server(make_server):
    return make_server(env=FAST)


def put_webhook(server, token, expect=200, **body):
    r = server.request("PUT", "/user/webhook", headers=uh(token), json=body)
    if expect == 200:
        return ok_json(r)
    assert r.status_code == expect, r.text
    return r


def deliveries(server, token, **params):
    return ok_json(server.request("GET", "/user/webhook/deliveries", headers=uh(token),
                                  params=params))


def meeting_cycle(server, token):
    """Creates and stops a stream meeting: 4 events (created, completed status changes, then
    meeting.completed and transcript.ready). Returns the meeting id."""
    native = uniq()
    m = start_stream(server, token, native)
    stop_stream(server, token, native)
    return m["id"]


def verify_signature(hit, secret=SECRET):
    ts = hit["headers"]["X-Webhook-Timestamp"]
    want = hmac.new(secret.encode(), ts.encode() + b"." + hit["raw"], hashlib.sha256).hexdigest()
    assert hit["headers"]["X-Webhook-Signature"] == "sha256=" + want


# ---- settings ------------------------------------------------------------------------------

def test_put_get_delete_webhook_secret_never_shown(wh_server, receiver):
    _, token = wh_server.new_user()
    r = wh_server.request("GET", "/user/webhook", headers=uh(token))
    err(r, 404, "webhook")
    body = put_webhook(wh_server, token, webhook_url=receiver.url, webhook_secret=SECRET,
                       events=["meeting.completed", "meeting.completed"])
    assert body["webhook_url"] == receiver.url
    assert body["events"] == ["meeting.completed"]
    assert body["has_secret"] is True
    assert SECRET not in json.dumps(body)
    got = ok_json(wh_server.request("GET", "/user/webhook", headers=uh(token)))
    assert got["has_secret"] is True and got["webhook_url"] == receiver.url
    assert set(got) == {"webhook_url", "events", "has_secret", "created_at", "updated_at"}
    # Without webhook_secret the stored secret is kept; null removes it.
    got = put_webhook(wh_server, token, webhook_url=receiver.url)
    assert got["has_secret"] is True and got["events"] == ALL_TYPES
    meeting_cycle(wh_server, token)
    receiver.wait(4)
    for path in ("/user/webhook", "/user/webhook/deliveries"):
        r = wh_server.request("GET", path, headers=uh(token))
        assert SECRET not in r.text
    assert SECRET not in wh_server.log()
    got = put_webhook(wh_server, token, webhook_url=receiver.url, webhook_secret=None)
    assert got["has_secret"] is False
    r = wh_server.request("DELETE", "/user/webhook", headers=uh(token))
    assert r.status_code == 200, r.text
    err(wh_server.request("GET", "/user/webhook", headers=uh(token)), 404)
    err(wh_server.request("DELETE", "/user/webhook", headers=uh(token)), 404)


@pytest.mark.parametrize("body,field", [
    ({}, "webhook_url"),
    ({"webhook_url": 5}, "webhook_url"),
    ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
    ({"webhook_url": "file:///etc/passwd"}, "webhook_url"),
    ({"webhook_url": "not a url"}, "webhook_url"),
    ({"webhook_url": "http://"}, "webhook_url"),
    ({"webhook_url": "http://exa mple.com/"}, "webhook_url"),
    ({"webhook_url": "http://example.com/" + "a" * 2100}, "webhook_url"),
    ({"webhook_url": "http://127.0.0.1/x", "events": "meeting.completed"}, "events"),
    ({"webhook_url": "http://127.0.0.1/x", "events": []}, "events"),
    ({"webhook_url": "http://127.0.0.1/x", "events": ["meeting.exploded"]}, "events"),
    ({"webhook_url": "http://127.0.0.1/x", "events": [1]}, "events"),
    ({"webhook_url": "http://127.0.0.1/x", "webhook_secret": 7}, "webhook_secret"),
    ({"webhook_url": "http://127.0.0.1/x", "webhook_secret": ""}, "webhook_secret"),
    ({"webhook_url": "http://127.0.0.1/x", "webhook_secret": "s" * 300}, "webhook_secret"),
    ({"webhook_url": "http://127.0.0.1/x", "colour": "blue"}, "colour"),
])
def test_malformed_settings_get_422(wh_server, body, field):
    _, token = wh_server.new_user()
    r = wh_server.request("PUT", "/user/webhook", headers=uh(token), json=body)
    err(r, 422, field)
    err(wh_server.request("GET", "/user/webhook", headers=uh(token)), 404)


def test_private_urls_refused_without_override(make_server):
    server = make_server()  # no HARK_WEBHOOK_ALLOW_PRIVATE
    _, token = server.new_user()
    for url in ("http://127.0.0.1:9/hook", "http://localhost/x", "http://10.1.2.3/x",
                "http://172.16.0.1/x", "http://192.168.1.1/x", "http://169.254.169.254/latest",
                "http://100.64.0.1/x", "http://[::1]/x", "http://[fe80::1]/x",
                "http://[fd00::1]/x", "http://224.0.0.1/x", "http://0.0.0.0/x",
                "http://[::ffff:127.0.0.1]/x", "https://127.1/x"):
        r = server.request("PUT", "/user/webhook", headers=uh(token), json={"webhook_url": url})
        err(r, 422, "webhook_url")
    # A public address literal needs no DNS and is accepted.
    put_webhook(server, token, webhook_url="https://93.184.216.34/hook")


def test_auth_required(wh_server):
    for method, path in (("GET", "/user/webhook"), ("PUT", "/user/webhook"),
                         ("GET", "/user/webhook/deliveries"),
                         ("POST", "/user/webhook/deliveries/1/redeliver")):
        err(wh_server.request(method, path), 401)


# ---- delivery ------------------------------------------------------------------------------

def test_signed_envelopes_for_every_transition(wh_server, receiver):
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, webhook_secret=SECRET)
    mid = meeting_cycle(wh_server, token)
    hits = receiver.wait(4, mid)
    time.sleep(0.3)
    assert len(receiver.events(mid)) == 4  # exactly once each when the receiver says 200
    types = [h["body"]["event_type"] for h in hits]
    assert types == ["meeting.status_change", "meeting.status_change", "meeting.completed",
                     "transcript.ready"]
    for h in hits:
        b, hd = h["body"], h["headers"]
        verify_signature(h)
        assert hd["X-Webhook-Id"] == b["event_id"] and b["event_id"].startswith("evt_")
        assert abs(int(hd["X-Webhook-Timestamp"]) - time.time()) < 60
        assert hd["Content-Type"] == "application/json"
        assert hd["User-Agent"].startswith("hark/")
        assert h["path"] == "/hook"
        assert set(b) == {"event_id", "event_type", "api_version", "created_at", "data"}
        assert b["api_version"] == "1"
        assert set(b["data"]["meeting"]) == MEETING_KEYS
        assert set(b["data"]["status_change"]) == {"from", "to", "reason", "timestamp"}
    assert len({h["body"]["event_id"] for h in hits}) == 4
    created, done = hits[0]["body"]["data"], hits[1]["body"]["data"]
    assert created["status_change"]["from"] is None
    assert created["status_change"]["to"] == "requested"
    assert created["meeting"]["status"] == "requested"
    assert done["status_change"] == {"from": "requested", "to": "completed", "reason": "stopped",
                                     "timestamp": done["status_change"]["timestamp"]}
    assert done["meeting"]["status"] == "completed"
    # The meeting in the envelope is the API's rendering of the meeting as stored.
    api = ok_json(wh_server.request("GET", "/meetings/%d" % mid, headers=uh(token)))
    assert done["meeting"] == api
    completed = hits[2]["body"]["data"]
    assert completed["segment_count"] == 0
    assert completed["duration_seconds"] == 0
    assert hits[3]["body"]["data"]["transcript"] == {"segment_count": 0}
    listed = deliveries(wh_server, token)["deliveries"]
    assert len(listed) == 4
    for d in listed:
        assert d["state"] == "delivered" and d["attempts"] == 1 and d["last_status"] == 200
        assert d["last_error"] is None and d["next_attempt_at"] is None
        assert d["meeting_id"] == mid


def test_unsigned_without_secret_and_event_filter(wh_server, receiver):
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, events=["meeting.completed"])
    mid = meeting_cycle(wh_server, token)
    hits = receiver.wait(1, mid)
    time.sleep(0.5)
    assert [h["body"]["event_type"] for h in receiver.events(mid)] == ["meeting.completed"]
    assert "X-Webhook-Signature" not in hits[0]["headers"]
    assert [d["event_type"] for d in deliveries(wh_server, token)["deliveries"]] == [
        "meeting.completed"]


def test_no_webhook_no_deliveries_and_no_invented_events(wh_server, receiver):
    _, token = wh_server.new_user()
    meeting_cycle(wh_server, token)  # before any webhook: nothing to deliver
    put_webhook(wh_server, token, webhook_url=receiver.url)
    native = uniq()
    start_stream(wh_server, token, native)
    start_stream(wh_server, token, native, expect=409)  # refused create: no event
    stop_stream(wh_server, token, native)
    stop_stream(wh_server, token, native)  # already completed: no transition, no event
    receiver.wait(4)
    time.sleep(0.5)
    assert len(receiver.events()) == 4
    assert len(deliveries(wh_server, token)["deliveries"]) == 4


def test_order_per_meeting_with_retries(wh_server, receiver):
    """The first event of each meeting fails once; the meeting's later events wait for it."""
    receiver.plan = lambda ev, n: (500 if n == 0 and ev["data"]["status_change"]["from"] is None
                                   else 200, {}, 0)
    _, token = wh_server.new_user(max_concurrent_bots=20)
    put_webhook(wh_server, token, webhook_url=receiver.url, webhook_secret=SECRET)
    mids = [meeting_cycle(wh_server, token) for _ in range(5)]
    for mid in mids:
        hits = receiver.wait(5, mid)
        seq = [(h["body"]["event_type"], h["body"]["data"]["status_change"]["to"]) for h in hits]
        assert seq == [("meeting.status_change", "requested"),
                       ("meeting.status_change", "requested"),
                       ("meeting.status_change", "completed"),
                       ("meeting.completed", "completed"),
                       ("transcript.ready", "completed")], seq
        assert hits[0]["body"]["event_id"] == hits[1]["body"]["event_id"]
        assert hits[1]["t"] - hits[0]["t"] >= 0.5  # the retry waited for the schedule
        for h in hits:
            verify_signature(h)


def test_later_deliveries_wait_for_the_retry_they_queue_behind(wh_server, receiver):
    """While a meeting's first delivery waits for its retry, the meeting's later deliveries show
    (and keep) that retry's time: they cannot go before it, and are not due until then."""
    receiver.plan = lambda ev, n: (503 if n == 0 and ev["data"]["status_change"]["from"] is None
                                   else 200, {}, 0)
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, webhook_secret=SECRET)
    mid = meeting_cycle(wh_server, token)

    def waiting():
        ds = [d for d in deliveries(wh_server, token)["deliveries"] if d["meeting_id"] == mid]
        head = min(ds, key=lambda d: d["id"])
        if head["attempts"] == 1 and head["state"] == "pending" and len(ds) == 4:
            return ds
        return None
    ds = poll(waiting, timeout=5, interval=0.05)
    assert ds, deliveries(wh_server, token)
    head = min(ds, key=lambda d: d["id"])
    later = [d for d in ds if d["id"] != head["id"]]
    assert all(d["attempts"] == 0 and d["state"] == "pending" for d in later), ds
    assert [d["next_attempt_at"] for d in later] == [head["next_attempt_at"]] * 3, ds
    # and the order still holds once the retry succeeds
    hits = receiver.wait(5, mid)
    assert [h["body"]["event_id"] for h in hits][:2] == [hits[0]["body"]["event_id"]] * 2


def attempts_by_outcome(server):
    """hark_webhook_attempts_total by outcome, from /metrics (this server's counters)."""
    r = server.request("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert metric_value(r.text, "hark_webhook_in_flight") == 0
    return {o: int(metric_value(r.text, "hark_webhook_attempts_total", outcome=o))
            for o in ("delivered", "retrying", "failed")}


def test_500_is_retried_then_succeeds(wh_server, receiver):
    receiver.plan = lambda ev, n: (500 if n < 2 else 200, {}, 0)
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, events=["transcript.ready"])
    meeting_cycle(wh_server, token)
    hits = receiver.wait(3)
    assert len({h["body"]["event_id"] for h in hits}) == 1

    def delivered():
        d = deliveries(wh_server, token)["deliveries"][0]
        return d if d["state"] == "delivered" else None
    d = poll(delivered, timeout=5)
    assert d, deliveries(wh_server, token)
    assert d["attempts"] == 3 and d["last_status"] == 200 and d["last_error"] is None
    assert attempts_by_outcome(wh_server) == {"delivered": 1, "retrying": 2, "failed": 0}


def test_retries_exhausted_then_failed(wh_server, receiver):
    receiver.plan = lambda ev, n: (503, {}, 0)
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(wh_server, token)
    receiver.wait(4)  # first attempt + 3 retries ("1,1,1")

    def failed():
        d = deliveries(wh_server, token)["deliveries"][0]
        return d if d["state"] == "failed" else None
    d = poll(failed, timeout=5)
    assert d and d["attempts"] == 4 and d["last_status"] == 503 and "503" in d["last_error"]
    assert attempts_by_outcome(wh_server) == {"delivered": 0, "retrying": 3, "failed": 1}
    time.sleep(1.5)
    assert len(receiver.events()) == 4


def test_429_honours_retry_after(wh_server, receiver):
    receiver.plan = lambda ev, n: (429, {"Retry-After": "3"}, 0) if n == 0 else (200, {}, 0)
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(wh_server, token)
    hits = receiver.wait(2, timeout=10)
    assert hits[1]["t"] - hits[0]["t"] >= 2.9  # not the 1 s of the schedule


def test_400_is_final_visible_and_redeliver_works(wh_server, receiver):
    receiver.plan = lambda ev, n: (400 if n == 0 else 200, {}, 0)
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, webhook_secret=SECRET,
                events=["meeting.completed"])
    mid = meeting_cycle(wh_server, token)
    receiver.wait(1)

    def failed():
        d = deliveries(wh_server, token)["deliveries"][0]
        return d if d["state"] == "failed" else None
    d = poll(failed, timeout=5)
    assert d, deliveries(wh_server, token)
    assert d["attempts"] == 1 and d["last_status"] == 400 and "400" in d["last_error"]
    assert d["next_attempt_at"] is None and d["meeting_id"] == mid
    time.sleep(1.5)
    assert len(receiver.events()) == 1  # never retried

    r = wh_server.request("POST", "/user/webhook/deliveries/%d/redeliver" % d["id"],
                          headers=uh(token))
    new = ok_json(r, 202)
    assert new["id"] != d["id"] and new["event_id"] == d["event_id"]
    assert new["state"] == "pending" and new["attempts"] == 0
    hits = receiver.wait(2)
    assert hits[1]["body"]["event_id"] == d["event_id"]
    assert hits[1]["raw"] == hits[0]["raw"]  # the same envelope, signed again
    verify_signature(hits[1])
    assert poll(lambda: deliveries(wh_server, token)["deliveries"][0]["state"] == "delivered")
    listed = deliveries(wh_server, token)["deliveries"]
    assert [x["state"] for x in listed] == ["delivered", "failed"]


def test_other_users_delivery_is_404(wh_server, receiver):
    _, alice = wh_server.new_user()
    _, bob = wh_server.new_user()
    put_webhook(wh_server, alice, webhook_url=receiver.url)
    put_webhook(wh_server, bob, webhook_url=receiver.url)
    meeting_cycle(wh_server, alice)
    receiver.wait(4)
    ids = [d["id"] for d in deliveries(wh_server, alice)["deliveries"]]
    assert deliveries(wh_server, bob)["deliveries"] == []
    for i in ids + [999999]:
        r = wh_server.request("POST", "/user/webhook/deliveries/%d/redeliver" % i,
                              headers=uh(bob))
        err(r, 404, "delivery")
    err(wh_server.request("POST", "/user/webhook/deliveries/abc/redeliver", headers=uh(bob)), 404)


def test_redeliver_without_webhook_is_409(wh_server, receiver):
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(wh_server, token)
    receiver.wait(1)
    d = deliveries(wh_server, token)["deliveries"][0]
    assert wh_server.request("DELETE", "/user/webhook", headers=uh(token)).status_code == 200
    r = wh_server.request("POST", "/user/webhook/deliveries/%d/redeliver" % d["id"],
                          headers=uh(token))
    err(r, 409, "webhook")


def test_deliveries_pagination(wh_server, receiver):
    _, token = wh_server.new_user()
    put_webhook(wh_server, token, webhook_url=receiver.url)
    meeting_cycle(wh_server, token)
    meeting_cycle(wh_server, token)
    receiver.wait(8)
    seen, cursor = [], None
    while True:
        params = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = deliveries(wh_server, token, **params)
        assert len(page["deliveries"]) <= 3
        seen += [d["id"] for d in page["deliveries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8 and seen == sorted(seen, reverse=True)
    err(wh_server.request("GET", "/user/webhook/deliveries?limit=0", headers=uh(token)), 422,
        "limit")
    err(wh_server.request("GET", "/user/webhook/deliveries?cursor=x", headers=uh(token)), 422,
        "cursor")


def test_delete_webhook_fails_pending_deliveries(make_server, receiver):
    server = make_server(env={"HARK_WEBHOOK_ALLOW_PRIVATE": "1",
                              "HARK_WEBHOOK_RETRY_SCHEDULE": "60"})
    receiver.plan = lambda ev, n: (500, {}, 0)
    _, token = server.new_user()
    put_webhook(server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(server, token)
    receiver.wait(1)
    assert poll(lambda: deliveries(server, token)["deliveries"][0]["next_attempt_at"])
    assert server.request("DELETE", "/user/webhook", headers=uh(token)).status_code == 200
    d = deliveries(server, token)["deliveries"][0]
    assert d["state"] == "failed" and d["last_error"] == "webhook removed"


def test_timeout_is_retried(make_server, receiver):
    server = make_server(env=FAST, args=["--webhook-timeout-ms", "300"])
    receiver.plan = lambda ev, n: (200, {}, 1.0 if n == 0 else 0)
    _, token = server.new_user()
    put_webhook(server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(server, token)
    receiver.wait(2)
    d = poll(lambda: (lambda x: x if x["state"] == "delivered" else None)(
        deliveries(server, token)["deliveries"][0]), timeout=5)
    assert d and d["attempts"] == 2


def test_connection_refused_then_fixed_url_is_retried_at_once(make_server, receiver):
    server = make_server(env={"HARK_WEBHOOK_ALLOW_PRIVATE": "1",
                              "HARK_WEBHOOK_RETRY_SCHEDULE": "3600"})
    _, token = server.new_user()
    dead = "http://127.0.0.1:1/hook"  # nothing listens on port 1
    put_webhook(server, token, webhook_url=dead, events=["meeting.completed"])
    meeting_cycle(server, token)

    def retrying():
        d = deliveries(server, token)["deliveries"][0]
        return d if d["attempts"] == 1 and d["state"] == "pending" else None
    d = poll(retrying, timeout=5)
    assert d and d["last_status"] is None and d["last_error"]
    put_webhook(server, token, webhook_url=receiver.url)  # a fixed endpoint is retried now
    receiver.wait(1, timeout=5)


# ---- durability ----------------------------------------------------------------------------

def test_restart_mid_retry_delivers(make_server, receiver):
    server = make_server(env={"HARK_WEBHOOK_ALLOW_PRIVATE": "1",
                              "HARK_WEBHOOK_RETRY_SCHEDULE": "2,2"})
    receiver.plan = lambda ev, n: (500 if n == 0 else 200, {}, 0)
    _, token = server.new_user()
    put_webhook(server, token, webhook_url=receiver.url, webhook_secret=SECRET,
                events=["meeting.completed"])
    meeting_cycle(server, token)
    receiver.wait(1)
    assert poll(lambda: deliveries(server, token)["deliveries"][0]["attempts"] == 1)
    server.kill()  # kill -9 while the delivery waits for its retry
    time.sleep(0.5)
    server.start()
    hits = receiver.wait(2, timeout=10)
    assert hits[0]["body"]["event_id"] == hits[1]["body"]["event_id"]
    verify_signature(hits[1])
    assert poll(lambda: deliveries(server, token)["deliveries"][0]["state"] == "delivered")


def test_kill_during_delivery_redelivers_after_restart(make_server, receiver):
    server = make_server(env={"HARK_WEBHOOK_ALLOW_PRIVATE": "1",
                              "HARK_WEBHOOK_RETRY_SCHEDULE": "1"})
    gate = threading.Event()
    receiver.plan = lambda ev, n: (gate.wait(5) and (200, {}, 0)) if n == 0 else (200, {}, 0)
    _, token = server.new_user()
    put_webhook(server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(server, token)
    receiver.wait(1)  # the POST is in flight, held by the receiver
    server.kill()
    gate.set()
    server.start()
    hits = receiver.wait(2, timeout=10)
    assert hits[0]["body"]["event_id"] == hits[1]["body"]["event_id"]
    assert poll(lambda: deliveries(server, token)["deliveries"][0]["state"] == "delivered")


def test_sigterm_with_delivery_in_flight_exits_cleanly(make_server, receiver):
    server = make_server(env=FAST)
    receiver.plan = lambda ev, n: (200, {}, 3)
    _, token = server.new_user()
    put_webhook(server, token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(server, token)
    receiver.wait(1)
    server.check_clean_exit()


def test_retention_deletes_old_finished_deliveries_only(make_server, receiver):
    """--webhook-retention-days: at start (and hourly) finished deliveries older than the
    retention, and events no delivery refers to any more, are deleted; an open (pending)
    delivery and its event stay whatever their age. Rows are aged in the database directly."""
    import sqlite3
    server = make_server(env={"HARK_WEBHOOK_ALLOW_PRIVATE": "1",
                              "HARK_WEBHOOK_RETRY_SCHEDULE": "3600"})
    receiver.plan = lambda ev, n: (200, {}, 0)
    _, ok_token = server.new_user()
    put_webhook(server, ok_token, webhook_url=receiver.url, events=["meeting.completed"])
    meeting_cycle(server, ok_token)
    assert poll(lambda: deliveries(server, ok_token)["deliveries"][0]["state"] == "delivered")
    _, late_token = server.new_user()
    put_webhook(server, late_token, webhook_url="http://127.0.0.1:1/hook",
                events=["meeting.completed"])
    meeting_cycle(server, late_token)
    assert poll(lambda: deliveries(server, late_token)["deliveries"][0]["attempts"] == 1)
    server.stop()

    db = sqlite3.connect(os.path.join(server.data_dir, "hark.db"))
    day_ms = 86400 * 1000
    with db:
        db.execute("UPDATE webhook_deliveries SET updated_at = updated_at - 40 * ?, "
                   "created_at = created_at - 40 * ?", (day_ms, day_ms))
        db.execute("UPDATE webhook_events SET created_at = created_at - 40 * ?", (day_ms,))
    n_events = db.execute("SELECT count(*) FROM webhook_events").fetchone()[0]
    db.close()
    assert n_events >= 2

    server.args += ["--webhook-retention-days", "30"]
    server.start()
    assert deliveries(server, ok_token)["deliveries"] == []
    left = deliveries(server, late_token)["deliveries"]
    assert len(left) == 1 and left[0]["state"] == "pending", left
    assert "op=prune retention_days=30 deliveries=1" in server.log()
    db = sqlite3.connect(os.path.join(server.data_dir, "hark.db"))
    kinds = db.execute("SELECT count(*) FROM webhook_events e JOIN webhook_deliveries d "
                       "ON d.event_row = e.id").fetchone()[0]
    orphans = db.execute("SELECT count(*) FROM webhook_events WHERE id NOT IN "
                         "(SELECT event_row FROM webhook_deliveries)").fetchone()[0]
    db.close()
    assert kinds == 1 and orphans == 0
