"""Live pipeline over real WebSockets: /ws/audio sessions (external segments, speaker events,
status), /ws subscribers, and what GET /transcripts stores."""
import asyncio
import json
import os
import time

import pytest
import websockets

from helpers import uh, uniq, wait_for
from wsclient import (LiveTranscript, expect_error_and_close, open_ingest, open_live, recv_json,
                      run, start_meeting)

FAST = ["--stream-idle-timeout-ms", "500"]


def transcript(server, token, native_id, fmt=None):
    q = "?format=%s" % fmt if fmt else ""
    r = server.request("GET", "/transcripts/stream/%s%s" % (native_id, q), headers=uh(token))
    assert r.status_code == 200, r.text
    return r.json() if fmt is None else r.text


def stored_transcript(server, token, native_id):
    """Waits until the meeting's JSON transcript has a segment; returns it."""
    return wait_for(lambda: (lambda j: j if j["segments"] else None)(
        transcript(server, token, native_id)), what="a stored segment")


def meeting(server, token, mid):
    r = server.request("GET", "/meetings/%d" % mid, headers=uh(token))
    assert r.status_code == 200
    return r.json()


def test_external_segments_reach_subscribers_and_storage(make_server):
    server = make_server(args=FAST)
    _, token = server.new_user()
    native = uniq()
    m = start_meeting(server, token, native)

    async def scenario():
        live, sub = await open_live(server, token, [("stream", native)])
        assert sub["type"] == "subscribed", sub
        assert sub["meetings"][0]["id"] == m["id"]
        held = LiveTranscript()
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])
        await held.pump(live, lambda h: "active" in h.statuses)
        await ws.send(json.dumps({"type": "speaker_activity", "payload": {
            "event_type": "SPEAKER_START", "participant_name": "Alice", "participant_id": "1",
            "relative_client_timestamp_ms": 0}}))
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": 0.5, "end": 1.5, "text": "we should", "completed": False}]}))
        await held.pump(live, lambda h: len(h.segments) == 1)
        seg = next(iter(held.segments.values()))
        assert seg["text"] == "we should" and seg["completed"] is False
        assert seg["speaker"] == "Alice"
        assert seg["segment_id"].startswith("%d:" % m["id"])
        first_id = seg["segment_id"]
        # The same segment (same start) grows and completes: same id.
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": 0.5, "end": 2.5, "text": "we should ship Friday.", "completed": True},
            {"start": 3.0, "end": 4.0, "text": "and then", "completed": False,
             "speaker": "Bob"}]}))
        await held.pump(live, lambda h: len(h.segments) == 2 and h.segments[first_id]["completed"])
        assert held.segments[first_id]["text"] == "we should ship Friday."
        await ws.send(b"END_OF_AUDIO")
        await asyncio.wait_for(ws.wait_closed(), 10)
        await held.pump(live, lambda h: "completed" in h.statuses, timeout=15)
        await live.close()
        return held

    held = run(scenario())
    # Everything completed at the end of audio, and the stored transcript is what /ws showed.
    assert all(s["completed"] for s in held.segments.values())
    t = wait_for(lambda: (lambda j: j if len(j["segments"]) == 2 else None)(
        transcript(server, token, native)), what="2 stored segments")
    assert [s["segment_id"] for s in t["segments"]] == [s["segment_id"] for s in held.ordered()]
    for got, want in zip(t["segments"], held.ordered()):
        for k in ("text", "speaker", "start", "end", "completed", "segment_id"):
            assert got[k] == want[k], (k, got, want)
    mt = meeting(server, token, m["id"])
    assert mt["status"] == "completed"
    assert mt["data"]["completion_reason"] == "stream_ended"


def test_session_times_count_from_its_first_audio(make_server):
    """protocols.md section 2: a session's times count from its first audio sample. A client
    that connects and sends audio only a second later (a bot joining its meeting) must not get
    segments a second early: the session's origin is its first audio frame, not its SERVER_READY."""
    server = make_server(args=FAST)
    _, token = server.new_user()
    native = uniq()
    m = start_meeting(server, token, native)

    async def scenario():
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])  # the meeting's t0
        await asyncio.sleep(1.0)
        await ws.send(b"\0\0" * 1600)  # 100 ms of silence: the session's first sample, ~1 s in
        await asyncio.sleep(1.0)
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": 0.0, "end": 0.5, "text": "hello", "completed": True}]}))
        await ws.send(b"END_OF_AUDIO")
        await asyncio.wait_for(ws.wait_closed(), 10)

    run(scenario())
    t = stored_transcript(server, token, native)
    start = t["segments"][0]["start"]
    # ~1.0 (first audio); 0 would be the connection, ~2.0 the segments message
    assert 0.8 <= start < 1.8, t


def test_bad_ingest_input_gets_error_and_close_others_untouched(make_server):
    server = make_server(args=FAST + ["--max-ws-message-bytes", "4096"])
    _, token = server.new_user(max_concurrent_bots=10)
    good = start_meeting(server, token, uniq())
    other = start_meeting(server, token, uniq())

    async def scenario():
        keep, _ = await open_ingest(good["ingest_url"], good["meeting_token"], uid="keeper")
        url = good["ingest_url"]
        cases = [
            ({"uid": "a"}, "invalid token"),                                  # no token
            ({"uid": "a", "token": "not.a.jwt"}, "invalid token"),            # malformed
            ({"uid": "a", "token": other["meeting_token"][:-4] + "AAAA"}, "invalid token"),
            ({"uid": "a", "token": good["meeting_token"], "audio_format": "mp3"}, "audio_format"),
            ({"uid": "a", "token": good["meeting_token"], "sample_rate": 5}, "sample_rate"),
            ({"uid": "a", "token": good["meeting_token"], "language": "xx"}, "language"),
        ]
        for cfg, want in cases:
            ws = await websockets.connect(url)
            await ws.send(json.dumps(cfg))
            err = await expect_error_and_close(ws, want)
            assert err["uid"] == "a"
        # malformed config
        ws = await websockets.connect(url)
        await ws.send("{not json")
        await expect_error_and_close(ws)
        # audio before SERVER_READY
        ws = await websockets.connect(url)
        await ws.send(b"\x00\x00" * 100)
        await expect_error_and_close(ws, "SERVER_READY")
        # oversized frame: an ERROR naming the cap, then close 1009; also a message over the
        # cap only in its sum of fragments
        ws, _ = await open_ingest(other["ingest_url"], other["meeting_token"], uid="big")
        await ws.send(b"\x00" * 10000)
        err = await expect_error_and_close(ws, "max_ws_message_bytes")
        assert err["uid"] == "big" and "10000 bytes" in err["message"], err
        assert ws.close_code == 1009, ws.close_code
        ws, _ = await open_ingest(other["ingest_url"], other["meeting_token"], uid="frag")
        await ws.send([b"\x00" * 3000, b"\x00" * 3000])  # one binary message, two frames
        err = await expect_error_and_close(ws, "max_ws_message_bytes")
        assert "6000 bytes" in err["message"], err
        assert ws.close_code == 1009, ws.close_code
        # unknown message type
        ws, _ = await open_ingest(other["ingest_url"], other["meeting_token"], uid="unk")
        await ws.send(json.dumps({"type": "dance"}))
        await expect_error_and_close(ws, "unknown")
        # broken audio: odd byte count for int16
        ws, _ = await open_ingest(other["ingest_url"], other["meeting_token"], uid="odd")
        await ws.send(b"\x00\x01\x02")
        await expect_error_and_close(ws, "audio")
        # The first session still works.
        await keep.send(json.dumps({"type": "segments", "segments": [
            {"start": 0, "end": 1, "text": "still here", "completed": True}]}))
        await keep.send(b"END_OF_AUDIO")
        await asyncio.wait_for(keep.wait_closed(), 10)

    run(scenario())
    t = stored_transcript(server, token, good["native_meeting_id"])
    assert t["segments"][0]["text"] == "still here"


def test_token_of_finished_meeting_refused(make_server):
    server = make_server(args=FAST)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())
    r = server.request("DELETE", "/bots/stream/%s" % m["native_meeting_id"], headers=uh(token))
    assert r.status_code == 202

    async def scenario():
        ws, reply = await open_ingest(m["ingest_url"], m["meeting_token"], expect_ready=False)
        assert reply.get("status") == "ERROR", reply
        assert "completed" in reply["message"]
        await asyncio.wait_for(ws.wait_closed(), 10)

    run(scenario())


def test_expired_token_refused(make_server):
    import base64, hashlib, hmac
    server = make_server(args=FAST)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())
    secret = open(os.path.join(server.data_dir, "token_secret")).read().strip().encode()

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"meeting_id": m["id"], "user_id": m["user_id"], "platform": "stream",
              "native_meeting_id": m["native_meeting_id"], "scope": "transcribe:write",
              "iss": "hark", "aud": "hark-ingest", "iat": now - 7200, "exp": now - 3600, "jti": "x"}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest())

    async def scenario():
        ws, reply = await open_ingest(m["ingest_url"], "%s.%s.%s" % (head, body, sig),
                                      expect_ready=False)
        assert reply.get("status") == "ERROR" and "expired" in reply["message"], reply
        await asyncio.wait_for(ws.wait_closed(), 10)

    run(scenario())


def test_ws_auth_and_isolation(make_server):
    server = make_server(args=FAST)
    _, ta = server.new_user()
    _, tb = server.new_user()
    m = start_meeting(server, ta, uniq())

    async def scenario():
        url = "ws://127.0.0.1:%d/ws" % server.port
        ws = await websockets.connect(url)  # no key
        frame = await recv_json(ws)
        assert frame == {"type": "error", "error": "unauthorized",
                         "detail": "missing or invalid API key"}
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 4401
        ws = await websockets.connect(url + "?api_key=wrong")
        assert (await recv_json(ws))["error"] == "unauthorized"
        await asyncio.wait_for(ws.wait_closed(), 10)
        # B cannot subscribe to A's meeting: not_found, exactly as for a meeting that does not exist
        ws, reply = await open_live(server, tb, [("stream", m["native_meeting_id"])])
        assert reply["type"] == "error" and reply["error"] == "not_found"
        for bad, err in [("{oops", "invalid_json"), (json.dumps({"action": "jump"}),
                                                      "unknown_action"),
                         (json.dumps({"action": "subscribe", "meetings": "x"}), "invalid_payload")]:
            await ws.send(bad)
            assert (await recv_json(ws))["error"] == err
        await ws.send(json.dumps({"action": "ping"}))
        assert (await recv_json(ws)) == {"type": "pong"}
        await ws.send("x" * 70000)  # over the 64 KiB cap on client messages
        reply = await recv_json(ws)
        assert reply["type"] == "error" and reply["error"] == "message_too_big", reply
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1009
        # A can, and unsubscribes
        ws, reply = await open_live(server, ta, [("stream", m["native_meeting_id"])])
        assert reply["type"] == "subscribed"
        await ws.send(json.dumps({"action": "unsubscribe", "meetings": [
            {"platform": "stream", "native_id": m["native_meeting_id"]}]}))
        reply = await recv_json(ws)
        assert reply["type"] == "unsubscribed" and reply["meetings"][0]["id"] == m["id"]
        await ws.close()

    run(scenario())


def test_kill9_keeps_completed_segments(make_server):
    server = make_server(args=FAST)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())
    n = 20

    async def scenario():
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": i, "end": i + 0.9, "text": "sentence %d" % i, "completed": True}
            for i in range(n)]}))
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": n, "end": n + 0.5, "text": "still talking", "completed": False}]}))
        # Completed segments are written within 1 s; wait a bit more, then kill -9.
        await asyncio.sleep(1.5)
        server.kill()

    run(scenario())
    server.start()
    t = transcript(server, token, m["native_meeting_id"])
    texts = [s["text"] for s in t["segments"] if s["completed"]]
    assert texts == ["sentence %d" % i for i in range(n)]


def test_stop_ends_streaming_sessions(make_server):
    server = make_server(args=FAST)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())

    async def scenario():
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])
        r = await asyncio.get_running_loop().run_in_executor(None, lambda: server.request(
            "DELETE", "/bots/stream/%s" % m["native_meeting_id"], headers=uh(token)))
        assert r.status_code == 202
        err = await expect_error_and_close(ws, "ended")
        assert err["uid"] == "test-uid"

    run(scenario())
    assert meeting(server, token, m["id"])["data"]["completion_reason"] == "stopped"


def test_metrics_show_pipeline_and_recogniser(make_server):
    server = make_server(args=FAST + ["--asr-pool-size", "1"], env={"HARK_ASR": "pocketsphinx"})
    text = server.request("GET", "/metrics").text
    for line in ("hark_asr_decoders 1", "hark_asr_queue_depth_sessions 0", "hark_ws_connections 0",
                 "hark_live_meetings 0"):
        assert line in text, line
    assert "hark_asr_queue_wait_max_seconds" in text
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())

    async def scenario():
        ws, ready = await open_ingest(m["ingest_url"], m["meeting_token"])
        assert ready["backend"] == "pocketsphinx"
        body = await asyncio.get_running_loop().run_in_executor(
            None, lambda: server.request("GET", "/metrics").text)
        assert "hark_asr_sessions 1" in body and "hark_ws_connections 1" in body
        await ws.send(b"\x00\x00" * 16000)  # a second of silence
        await ws.send(b"END_OF_AUDIO")
        await asyncio.wait_for(ws.wait_closed(), 20)

    run(scenario())


def test_active_stream_meeting_completes_after_restart(make_server):
    server = make_server(args=FAST)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())

    async def scenario():
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])
        server.kill()  # the session dies with the process; the meeting is left active

    run(scenario())
    server.start()
    done = wait_for(lambda: (lambda j: j if j["status"] == "completed" else None)(
        meeting(server, token, m["id"])), what="completion after restart")
    assert done["data"]["completion_reason"] == "stream_ended"


def test_wait_when_recogniser_is_full(make_server):
    server = make_server(args=FAST + ["--asr-pool-size", "1", "--asr-max-sessions", "1"],
                         env={"HARK_ASR": "pocketsphinx"})
    _, token = server.new_user()
    a = start_meeting(server, token, uniq())
    b = start_meeting(server, token, uniq())

    async def scenario():
        first, _ = await open_ingest(a["ingest_url"], a["meeting_token"], uid="first")
        second, reply = await open_ingest(b["ingest_url"], b["meeting_token"], uid="second",
                                          expect_ready=False)
        assert reply["status"] == "WAIT" and reply["uid"] == "second", reply
        assert isinstance(reply["message"], (int, float)) and reply["message"] >= 0
        await asyncio.wait_for(second.wait_closed(), 10)
        # Told to wait, not started: the meeting is untouched (no session, not active, so no
        # idle completion will end it while the client waits as told).
        mb = meeting(server, token, b["id"])
        assert mb["status"] == "requested", mb
        # The first session is unaffected and a slot frees when it ends.
        await first.send(b"END_OF_AUDIO")
        await asyncio.wait_for(first.wait_closed(), 20)
        third, reply = await open_ingest(b["ingest_url"], b["meeting_token"], uid="third")
        await third.send(b"END_OF_AUDIO")
        await asyncio.wait_for(third.wait_closed(), 20)

    run(scenario())


def test_sessions_per_meeting_are_capped(make_server):
    server = make_server(args=FAST + ["--max-sessions-per-meeting", "2"])
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())
    other = start_meeting(server, token, uniq())

    async def scenario():
        a, _ = await open_ingest(m["ingest_url"], m["meeting_token"], uid="a")
        b, _ = await open_ingest(m["ingest_url"], m["meeting_token"], uid="b")
        c, reply = await open_ingest(m["ingest_url"], m["meeting_token"], uid="c",
                                     expect_ready=False)
        assert reply["status"] == "ERROR" and "max_sessions_per_meeting" in reply["message"], reply
        await asyncio.wait_for(c.wait_closed(), 10)
        assert c.close_code == 1008
        # another meeting is not affected; a freed place is taken again
        o, _ = await open_ingest(other["ingest_url"], other["meeting_token"], uid="o")
        await a.send(b"END_OF_AUDIO")
        await asyncio.wait_for(a.wait_closed(), 10)
        d, _ = await open_ingest(m["ingest_url"], m["meeting_token"], uid="d")
        for ws in (b, d, o):
            await ws.send(b"END_OF_AUDIO")
            await asyncio.wait_for(ws.wait_closed(), 10)

    run(scenario())


def test_session_starting_when_idle_timeout_passes_keeps_meeting(make_server):
    """A reconnect whose token check is still running when the last session's idle timeout passes
    is admitted, and the meeting stays active (it was completed under it before: the check read
    `active`, then the completion ran, and the session's segments were stored after the end)."""
    import sqlite3
    server = make_server(args=["--stream-idle-timeout-ms", "800", "--workers", "1"])
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())

    async def scenario():
        a, _ = await open_ingest(m["ingest_url"], m["meeting_token"], uid="a")
        await a.send(b"END_OF_AUDIO")
        await asyncio.wait_for(a.wait_closed(), 10)
        await asyncio.sleep(0.2)  # a's end is stored; the idle timer runs (0.8 s)
        db = sqlite3.connect(os.path.join(server.data_dir, "hark.db"), timeout=5)
        db.execute("BEGIN IMMEDIATE")  # the next session's start waits for this writer
        try:
            ws = await websockets.connect(m["ingest_url"], max_size=None)
            await ws.send(json.dumps({"uid": "b", "token": m["meeting_token"],
                                      "audio_format": "int16"}))
            await asyncio.sleep(1.2)  # the idle timeout passes while b's check waits
        finally:
            db.rollback()
            db.close()
        reply = await recv_json(ws)
        assert reply.get("message") == "SERVER_READY", reply
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": 0, "end": 1, "text": "still here", "completed": True}]}))
        await asyncio.sleep(1.0)
        assert meeting(server, token, m["id"])["status"] == "active"
        await ws.send(b"END_OF_AUDIO")
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1000

    run(scenario())
    assert wait_for(lambda: meeting(server, token, m["id"])["status"] == "completed", 5)
    texts = [s["text"] for s in transcript(server, token, m["native_meeting_id"])["segments"]]
    assert texts == ["still here"], texts


@pytest.mark.parametrize("frame,want", [
    ({"type": "speaker_activity", "payload": {"event_type": "SPEAKER_START"}}, "speaker_activity"),
    ({"type": "speaker_activity", "payload": {"event_type": "WAVE", "participant_name": "A",
                                              "relative_client_timestamp_ms": 1}},
     "speaker_activity"),
    ({"type": "segments", "segments": "nope"}, "segments"),
    ({"type": "segments", "segments": [{"start": 2, "end": 1, "text": "x"}]}, "segment"),
    ({"type": "segments", "segments": [{"start": 0, "end": 1}]}, "segment"),
    ({"type": "segments", "segments": [{"start": 0, "end": 1, "text": "x", "speaker": 5}]},
     "segment"),
    ({"type": "session_control", "payload": {"event": "DANCE"}}, "session_control"),
    ({"type": "speaker_activity", "payload": {"event_type": "SPEAKER_START",
                                              "participant_name": "n" * 257,
                                              "relative_client_timestamp_ms": 1}},
     "participant_name over 256 bytes"),
    ({"type": "segments", "segments": [{"start": 0, "end": 1, "text": "x", "speaker": "s" * 257}]},
     "speaker over 256 bytes"),
    ({"type": "segments", "segments": [{"start": 0, "end": 1, "text": "x",
                                        "language": "l" * 17}]}, "language over 16 bytes"),
    ({"type": "segments", "segments": [{"start": 0, "end": 1, "text": "t" * 10001}]}, "segment"),
    ({"type": "segments", "segments": [{"start": 0, "end": 1e306, "text": "far"}]},
     "end <= 10000000 s"),
])
def test_malformed_session_messages_end_only_that_session(make_server, frame, want):
    server = make_server(args=FAST)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())

    async def scenario():
        keep, _ = await open_ingest(m["ingest_url"], m["meeting_token"], uid="keeper")
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"], uid="bad")
        await ws.send(json.dumps(frame))
        err = await expect_error_and_close(ws, want)
        assert err["uid"] == "bad"
        await keep.send(json.dumps({"type": "segments", "segments": [
            {"start": 0, "end": 1, "text": "fine", "completed": True}]}))
        await keep.send(b"END_OF_AUDIO")
        await asyncio.wait_for(keep.wait_closed(), 10)

    run(scenario())
    t = stored_transcript(server, token, m["native_meeting_id"])
    assert [s["text"] for s in t["segments"]] == ["fine"]


def test_external_segment_table_is_capped(make_server):
    server = make_server(args=FAST + ["--max-session-segments", "5"])
    _, token = server.new_user()
    m = start_meeting(server, token, uniq())

    async def scenario():
        ws, _ = await open_ingest(m["ingest_url"], m["meeting_token"])
        # Updating the same five segments (same starts) again is fine...
        for _ in range(2):
            await ws.send(json.dumps({"type": "segments", "segments": [
                {"start": i, "end": i + 0.5, "text": "s%d" % i} for i in range(5)]}))
        # ...a sixth distinct one ends the session.
        await ws.send(json.dumps({"type": "segments", "segments": [
            {"start": 9, "end": 9.5, "text": "one too many"}]}))
        await expect_error_and_close(ws, "too many segments")

    run(scenario())
