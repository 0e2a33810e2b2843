"""Janus bots end to end: a private Janus (AudioBridge room allowing plain-RTP participants),
hark with the recogniser, POST /bots platform janus, a plain-RTP participant speaking a
synthesised sentence, live transcript frames over /ws, statuses, DELETE, and no bot left."""
import asyncio
import json
import os
import subprocess
import time

import pytest

from helpers import get_meeting, pid_alive, uh, wait_for
from janus_env import Janus, RtpSpeaker, available, bot_body, sentence_packets
from wsclient import open_live, run

pytestmark = pytest.mark.skipif(not available(), reason="Debian's janus package is not installed")

SENTENCE = "the quick brown fox jumps over the lazy dog and then we should ship it on friday"


@pytest.fixture
def janus(tmp_path):
    j = Janus(tmp_path, rooms={1234: {}, 4321: {"pin": "s3cret"}, 5678: {"allow_rtp": False}})
    j.start()
    yield j
    j.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return sentence_packets(tmp_path_factory.mktemp("speech"), SENTENCE)


def test_janus_bot_transcribes_room_and_stops(make_server, janus, speech):
    server = make_server(env={"HARK_ASR": "pocketsphinx", "HARK_ASR_POOL_SIZE": "1"})
    _, token = server.new_user()

    async def scenario():
        r = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, 1234))
        assert r.status_code == 201, r.text
        live, sub = await open_live(server, token, [("janus", "1234")])
        assert sub.get("type") != "error", sub
        m = r.json()
        assert m["platform"] == "janus" and m["status"] == "requested"
        assert m["constructed_meeting_url"] == janus.url + "?room=1234"
        assert "meeting_token" not in m
        mid = m["id"]
        statuses, texts, speakers, held = [], [], set(), {}

        async def drain(until, timeout):
            deadline = time.time() + timeout
            while time.time() < deadline and not until():
                try:
                    msg = await asyncio.wait_for(live.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                o = json.loads(msg)
                if o.get("type") == "meeting.status":
                    statuses.append(o["payload"]["status"])
                elif o.get("type") == "transcript.mutable":
                    for s in o.get("payload", {}).get("segments", []):
                        held[s["segment_id"]] = s
                        texts.append(s.get("text", ""))
                        if s.get("speaker"):
                            speakers.add(s["speaker"])

        await drain(lambda: "active" in statuses, 20)
        # The subscription may come after "joining" was broadcast: the stored transitions below
        # show the whole sequence.
        assert statuses[-1:] == ["active"], (statuses, server.log()[-3000:])
        r = server.request("GET", "/bots/status", headers=uh(token))
        bots = [b for b in r.json()["running_bots"] if b["meeting_id"] == mid]
        assert bots and isinstance(bots[0]["pid"], int) and bots[0]["pid"] > 0, r.text
        pid = bots[0]["pid"]
        assert pid_alive(pid)

        sp = RtpSpeaker(janus.url, 1234, "Alice")
        try:
            sp.speak(speech, repeat=2, gap_s=1.0)
            await drain(lambda: any(t.strip() for t in texts) and not sp.thread.is_alive(), 60)
        finally:
            sp.close()
        assert any(t.strip() for t in texts), (statuses, server.log()[-3000:])

        r = server.request("DELETE", "/bots/janus/1234", headers=uh(token))
        assert r.status_code == 202, r.text
        await drain(lambda: "completed" in statuses or "failed" in statuses, 30)
        assert "stopping" in statuses and statuses[-1] == "completed", statuses
        await live.close()
        return mid, pid, speakers, held

    mid, pid, speakers, held = run(scenario())
    m = get_meeting(server, token, mid)
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "stopped", m
    sources = [(t["to"], t["source"]) for t in m["data"]["status_transition"]]
    assert ("joining", "bot") in sources and ("active", "bot") in sources, sources
    assert ("stopping", "user") in sources, sources
    tr = server.request("GET", "/transcripts/janus/1234", headers=uh(token)).json()
    words = " ".join(s["text"] for s in tr["segments"])
    assert words.strip(), tr
    # Live frames and the stored transcript put the same segment at the same wall-clock time
    # (both are the meeting's start_time + start; the bot connected before it became active).
    seen = [s for s in tr["segments"] if s["segment_id"] in held]
    assert seen, (tr, held)
    for s in seen:
        h = held[s["segment_id"]]
        assert (h["start"], h["absolute_start_time"], h["absolute_end_time"]) == \
            (s["start"], s["absolute_start_time"], s["absolute_end_time"]), (h, s)
    wait_for(lambda: not pid_alive(pid), 10, "the bot process to exit")
    r = server.request("GET", "/bots/status", headers=uh(token))
    assert not [b for b in r.json()["running_bots"] if b["meeting_id"] == mid]
    assert "op=exit" in server.log()


@pytest.mark.parametrize("room,body,words", [
    (999, {}, "does not exist"),
    (4321, {"passcode": "wrong"}, "wrong pin"),
    (5678, {}, "plain-rtp"),
])
def test_janus_bot_join_failures_are_readable(make_server, janus, room, body, words):
    server = make_server()
    _, token = server.new_user()
    r = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, room, **body))
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    m = wait_for(lambda: (lambda x: x if x["status"] in ("completed", "failed") else None)(
        get_meeting(server, token, mid)), 20, "the meeting to end")
    assert m["status"] == "failed", m
    reason = m["data"]["completion_reason"]
    assert reason.startswith("join_failure") and words in reason.lower(), m
    assert "bot_exit" not in m["data"]  # the bot said why; it did not crash


def test_janus_bot_leaves_when_alone_and_pin_room_works(make_server, janus):
    server = make_server()
    _, token = server.new_user()
    r = server.request("POST", "/bots", headers=uh(token),
                       json=bot_body(janus, 4321, passcode="s3cret",
                                     automatic_leave={"max_time_left_alone_s": 2}))
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    m = wait_for(lambda: (lambda x: x if x["status"] in ("completed", "failed") else None)(
        get_meeting(server, token, mid)), 30, "the bot to leave")
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "left_alone", m


def test_janus_bot_leaves_at_max_duration(make_server, janus):
    """A participant stays in the room (so left_alone cannot fire); the bot leaves at
    max_duration_s, from its own timer, and nothing is left behind."""
    server = make_server()
    _, token = server.new_user()
    companion = RtpSpeaker(janus.url, 1234, "Carol")
    try:
        t0 = time.time()
        r = server.request("POST", "/bots", headers=uh(token),
                           json=bot_body(janus, 1234, automatic_leave={
                               "max_duration_s": 3, "max_time_left_alone_s": 600}))
        assert r.status_code == 201, r.text
        mid = r.json()["id"]
        m = wait_for(lambda: (lambda x: x if x["status"] in ("completed", "failed") else None)(
            get_meeting(server, token, mid)), 30, "the bot to leave")
        took = time.time() - t0
    finally:
        companion.close()
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "max_duration", m
    assert took >= 3.0, took
    assert ("active", "bot") in [(t["to"], t["source"]) for t in m["data"]["status_transition"]]
    wait_for(lambda: "op=leave reason=max_duration" in server.log(), 10, "the bot's leave line")
    r = server.request("GET", "/bots/status", headers=uh(token))
    assert not [b for b in r.json()["running_bots"] if b["meeting_id"] == mid], r.text


def test_janus_bot_validation(make_server, janus):
    server = make_server(args=["--max-bots", "1"])
    _, token = server.new_user()
    for body, field in [
        (bot_body(janus, "room-a"), "native_meeting_id"),
        # Janus carries room ids as signed 64-bit JSON integers: 2^63 would be sent negative
        (bot_body(janus, "9223372036854775808"), "native_meeting_id"),
        (bot_body(janus, 1234, meeting_url="ftp://x/janus"), "meeting_url"),
        ({"platform": "janus", "native_meeting_id": "1234"}, "meeting_url"),
    ]:
        r = server.request("POST", "/bots", headers=uh(token), json=body)
        assert r.status_code == 422 and field in r.json()["detail"], r.text
    r = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, 1234))
    assert r.status_code == 201, r.text
    r2 = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, 4321,
                                                                            passcode="s3cret"))
    assert r2.status_code == 503 and "max_bots" in r2.json()["detail"], r2.text
    r = server.request("DELETE", "/bots/janus/1234", headers=uh(token))
    assert r.status_code == 202, r.text


def test_bot_crash_marks_meeting_failed(make_server, janus):
    server = make_server()
    _, token = server.new_user()
    r = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, 1234))
    mid = r.json()["id"]
    pid = wait_for(lambda: next((b["pid"] for b in server.request(
        "GET", "/bots/status", headers=uh(token)).json()["running_bots"]
        if b["meeting_id"] == mid and b["pid"]), None), 10, "the bot pid")
    wait_for(lambda: get_meeting(server, token, mid)["status"] == "active", 20, "active")
    os.kill(pid, 9)
    m = wait_for(lambda: (lambda x: x if x["status"] == "failed" else None)(
        get_meeting(server, token, mid)), 10, "failed")
    assert m["data"]["completion_reason"] == "bot_crashed"
    assert m["data"]["bot_exit"]["term_signal"] == 9, m["data"]


def test_restart_reconciles_janus_meetings(make_server, janus):
    server = make_server()
    _, token = server.new_user()
    r = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, 1234))
    mid = r.json()["id"]
    wait_for(lambda: get_meeting(server, token, mid)["status"] == "active", 20, "active")
    server.kill()
    server.start()
    m = get_meeting(server, token, mid)
    assert m["status"] == "failed" and m["data"]["completion_reason"] == "server_restarted", m


def test_bot_whose_server_is_already_gone_exits(janus):
    """A bot started by a server that died before the bot armed its parent-death signal would
    never be told to leave: with --parent-pid naming a process that is not its parent, it exits
    at once, before joining anything."""
    from conftest import HARK_BIN
    cfg = {"meeting_id": 1, "platform": "janus", "native_meeting_id": "1234",
           "meeting_url": janus.url, "bot_name": "orphan", "token": "x",
           "ingest_url": "ws://127.0.0.1:9/ws/audio"}
    p = subprocess.run([HARK_BIN, "bot", "--parent-pid", "1"], input=json.dumps(cfg).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert b"the server (pid 1) is gone" in p.stderr, p.stderr
    assert b"op=start" not in p.stderr, p.stderr
