"""Small asyncio helpers for hark's WebSocket endpoints (/ws/audio and /ws), on Debian's
python3-websockets (10.x)."""
import asyncio
import json
import time

import websockets

from helpers import uh


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def start_meeting(server, token, native_id, **fields):
    body = {"platform": "stream", "native_meeting_id": native_id}
    body.update(fields)
    r = server.request("POST", "/bots", headers=uh(token), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def recv_json(ws, timeout=10):
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, str), "expected a text frame, got %r" % (msg[:40],)
    return json.loads(msg)


async def open_ingest(ingest_url, meeting_token, uid="test-uid", audio_format="int16",
                      sample_rate=16000, expect_ready=True, **extra):
    """Connects to /ws/audio and sends the config frame; returns (ws, first reply)."""
    ws = await websockets.connect(ingest_url, max_size=None)
    cfg = {"uid": uid, "token": meeting_token, "language": "en", "task": "transcribe",
           "audio_format": audio_format, "sample_rate": sample_rate, "use_vad": True}
    cfg.update(extra)
    await ws.send(json.dumps(cfg))
    reply = await recv_json(ws)
    if expect_ready:
        assert reply.get("message") == "SERVER_READY", reply
        assert reply.get("uid") == uid
    return ws, reply


async def expect_error_and_close(ws, contains=None, timeout=10):
    """Reads until an ERROR status frame arrives, then waits for the close; returns the frame."""
    deadline = time.time() + timeout
    err = None
    while time.time() < deadline:
        try:
            msg = await asyncio.wait_for(ws.recv(), deadline - time.time())
        except websockets.ConnectionClosed:
            break
        if isinstance(msg, str):
            o = json.loads(msg)
            if o.get("status") == "ERROR":
                err = o
    assert err is not None, "no ERROR frame before close"
    if contains:
        assert contains in err["message"], err
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return err


async def open_live(server, token, meetings):
    """Connects to /ws, subscribes to [(platform, native_id)], returns (ws, subscribed frame)."""
    url = "ws://127.0.0.1:%d/ws" % server.port
    ws = await websockets.connect(url, extra_headers={"X-API-Key": token}, max_size=None)
    await ws.send(json.dumps({"action": "subscribe",
                              "meetings": [{"platform": p, "native_id": n} for p, n in meetings]}))
    reply = await recv_json(ws)
    return ws, reply


class LiveTranscript:
    """What a /ws client holds when it upserts transcript.mutable segments by segment_id."""

    def __init__(self):
        self.segments = {}
        self.statuses = []
        self.frames = []

    def apply(self, frame):
        self.frames.append(frame)
        if frame.get("type") == "transcript.mutable":
            for s in frame["payload"]["segments"]:
                self.segments[s["segment_id"]] = s
        elif frame.get("type") == "meeting.status":
            self.statuses.append(frame["payload"]["status"])

    def ordered(self):
        return sorted(self.segments.values(), key=lambda s: (s["start"], s["segment_id"]))

    async def pump(self, ws, until, timeout=30):
        """Applies frames until until(self) is true."""
        deadline = time.time() + timeout
        while not until(self):
            left = deadline - time.time()
            assert left > 0, "timed out; frames so far: %r" % self.frames[-5:]
            self.apply(await recv_json(ws, left))
