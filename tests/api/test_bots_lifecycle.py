"""Janus bots over their whole life (issue #4): the bot's /ws/audio connection drops and comes back
with backoff on the same meeting timeline; a server killed under a running bot; PUT config as a
`reconfigure` command; a bot that ignores `leave` is killed after the grace period; the room is
destroyed under the bot; the per-user bot limit. A private Janus and a plain-RTP speaker as in
test_bots_janus.py; the bot's connection to hark goes through a TCP proxy (`--public-url`) so a
test can cut it without touching the server."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import err, get_meeting, pid_alive, uh, wait_for
from janus_env import Janus, JanusClient, RtpSpeaker, available, bot_body, sentence_packets

pytestmark = pytest.mark.skipif(not available(), reason="Debian's janus package is not installed")

SENTENCE = "the quick brown fox jumps over the lazy dog and then we should ship it on friday"
ASR_ENV = {"HARK_ASR": "pocketsphinx", "HARK_ASR_POOL_SIZE": "1"}
BOT_NAME = "hark-notes"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the hark server (`target`, set once the server's port is
    known). drop() cuts every forwarded connection; while `refusing`, new connections are
    accepted and closed at once. `accepted` keeps (monotonic time, "refused" | "unreachable" |
    "forwarded") per connection."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.target = None
        self.refusing = False
        self.lock = threading.Lock()
        self.pairs = []
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            t = time.monotonic()
            with self.lock:
                refused = self.refusing or self.target is None
                if refused:
                    self.accepted.append((t, "refused"))
            if refused:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                u.settimeout(None)
            except OSError:  # the target is down: neither refused by us nor forwarded
                with self.lock:
                    self.accepted.append((t, "unreachable"))
                c.close()
                continue
            with self.lock:
                self.accepted.append((t, "forwarded"))
                self.pairs.append((c, u))
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def forwarded(self):
        """Accept times of the connections that reached the server."""
        with self.lock:
            return [t for t, what in self.accepted if what == "forwarded"]

    def refused(self):
        with self.lock:
            return [t for t, what in self.accepted if what == "refused"]

    def drop(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.lsock.close()
        self.drop()


@pytest.fixture
def janus(tmp_path):
    j = Janus(tmp_path, rooms={1234: {}, 4321: {}})
    j.start()
    yield j
    j.stop()


@pytest.fixture
def proxy():
    p = TcpProxy()
    yield p
    p.close()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return sentence_packets(tmp_path_factory.mktemp("speech"), SENTENCE)


def ended(server, token, mid):
    m = get_meeting(server, token, mid)
    return m if m["status"] in ("completed", "failed") else None


def start_bot(server, token, janus, room=1234, **kw):
    """POST /bots; waits for `active`; returns (meeting id, bot pid)."""
    r = server.request("POST", "/bots", headers=uh(token), json=bot_body(janus, room, **kw))
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    wait_for(lambda: get_meeting(server, token, mid)["status"] == "active", 20, "active")
    pid = wait_for(lambda: next((b["pid"] for b in server.request(
        "GET", "/bots/status", headers=uh(token)).json()["running_bots"]
        if b["meeting_id"] == mid and b["pid"]), None), 10, "the bot pid")
    return mid, pid


def segments(server, token, room=1234):
    r = server.request("GET", "/transcripts/janus/%d" % room, headers=uh(token))
    assert r.status_code == 200, r.text
    return [s for s in r.json()["segments"] if s["text"].strip()]


def room_displays(janus, room=1234):
    """Display names of the room's participants, asked of Janus directly."""
    c = JanusClient(janus.url)
    try:
        d = c.message({"request": "listparticipants", "room": room})["plugindata"]["data"]
        return [p.get("display") for p in d.get("participants", [])]
    finally:
        c.close()


def ready_sessions(server, mid):
    """(session_id, offset_s) of every /ws/audio session of the meeting that got SERVER_READY, in
    order; offset_s is its first audio sample's place on the meeting timeline, None while it has
    sent no audio (a bot in a silent room)."""
    ready, origin = [], {}
    for line in server.log().splitlines():
        if "ingest" not in line or "meeting_id=%d " % mid not in line:
            continue
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "op=ready" in line:
            ready.append(int(f["session_id"]))
        elif "op=origin" in line:
            origin[int(f["session_id"])] = float(f["offset_s"])
    return [(sid, origin.get(sid)) for sid in ready]


def speak(janus, packets, room=1234):
    sp = RtpSpeaker(janus.url, room, "Alice")
    sp.speak(packets, repeat=1, gap_s=1.0)
    return sp


# -- reconnect ---------------------------------------------------------------------------------

def test_bot_reconnects_with_backoff_and_keeps_the_timeline(make_server, janus, proxy, speech):
    server = make_server(args=["--public-url", proxy.url], env=ASR_ENV)
    proxy.target = server.port
    _, token = server.new_user()
    mid, pid = start_bot(server, token, janus)
    sp = speak(janus, speech)
    try:
        before = wait_for(lambda: [s for s in segments(server, token) if s["completed"]], 40,
                          "a transcribed segment before the drop")
        sp.wait()
    finally:
        sp.close()
    before = segments(server, token)
    assert len(proxy.forwarded()) == 1 and len(ready_sessions(server, mid)) == 1

    # Cut the bot's connection and refuse it for a while: it retries after 1 s, then 2 s, then
    # 4 s (doubling; reset once a session is ready again).
    proxy.refusing = True
    t_drop = time.monotonic()
    proxy.drop()
    wait_for(lambda: len(proxy.refused()) >= 2, 10, "two refused reconnects")
    proxy.refusing = False
    wait_for(lambda: len(ready_sessions(server, mid)) == 2, 15, "the bot's new session")
    refused, forwarded = proxy.refused(), proxy.forwarded()
    assert len(refused) == 2 and len(forwarded) == 2, (refused, forwarded)
    gaps = [refused[0] - t_drop, refused[1] - refused[0], forwarded[1] - refused[1]]
    assert 0.9 <= gaps[0] < 3 and 1.9 <= gaps[1] < 5 and 3.9 <= gaps[2] < 8, gaps
    assert pid_alive(pid)  # the same process, still in the room
    assert BOT_NAME in room_displays(janus)
    wait_for(lambda: "op=reconnect" in server.log(), 5, "the bot's reconnect log line")

    # Same meeting, still active, on one timeline: the new session starts where the wall clock
    # is, not at 0, and what is said now is transcribed after what was said before.
    (s1, off1), (s2, _) = ready_sessions(server, mid)
    last_end = max(s["end"] for s in before)
    assert s2 != s1 and off1 is not None and off1 < 1, (off1, before)
    m = get_meeting(server, token, mid)
    assert m["status"] == "active", m
    assert [t["to"] for t in m["data"]["status_transition"]][-1] == "active", m
    before_ids = {s["segment_id"] for s in before}
    sp = speak(janus, speech)
    try:
        off2 = wait_for(lambda: ready_sessions(server, mid)[1][1], 20,
                        "the new session's first audio")
        assert off2 > last_end, (off2, before)
        after = wait_for(lambda: [s for s in segments(server, token) if s["completed"] and
                                  s["text"].strip() and s["segment_id"] not in before_ids], 40,
                         "a transcribed segment after the reconnect")
    finally:
        sp.close()
    assert min(s["start"] for s in after) > last_end, (before, after)
    last_abs = max(s["absolute_end_time"] for s in before)  # ISO 8601 UTC: compares as text
    assert all(s["absolute_start_time"] > last_abs for s in after), (before, after)
    kept = {s["segment_id"]: s["text"] for s in segments(server, token)}
    assert all(kept.get(s["segment_id"]) == s["text"] for s in before if s["completed"])

    # Commands reach the bot over the new session.
    r = server.request("DELETE", "/bots/janus/1234", headers=uh(token))
    assert r.status_code == 202, r.text
    m = wait_for(lambda: ended(server, token, mid), 20, "the meeting to end")
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "stopped", m
    wait_for(lambda: "op=leave via=command" in server.log(), 5, "leave sent as a command")
    wait_for(lambda: not pid_alive(pid), 10, "the bot to exit")


def test_server_killed_under_a_bot(make_server, janus, proxy):
    """kill -9 of the server: the bot hears it (parent-death signal), leaves the room and exits;
    the restarted server marks the meeting failed/server_restarted, and the bot's reconnect with
    its old token is refused (two bots in one room would double the transcript)."""
    server = make_server(args=["--public-url", proxy.url])
    proxy.target = server.port
    _, token = server.new_user()
    mid, pid = start_bot(server, token, janus)
    assert BOT_NAME in room_displays(janus)
    server.kill()
    n = len(proxy.forwarded())
    server.start()
    proxy.target = server.port
    m = get_meeting(server, token, mid)
    assert m["status"] == "failed" and m["data"]["completion_reason"] == "server_restarted", m
    wait_for(lambda: not pid_alive(pid), 15, "the orphaned bot to exit")
    assert BOT_NAME not in room_displays(janus)
    # It did come back through the proxy and was turned away; nothing changed the meeting.
    assert len(proxy.forwarded()) > n
    wait_for(lambda: "invalid token: meeting is failed" in server.log(), 5, "the refusal")
    m = get_meeting(server, token, mid)
    assert m["data"]["status_transition"][-1]["reason"] == "server_restarted", m
    r = server.request("GET", "/bots/status", headers=uh(token))
    assert not [b for b in r.json()["running_bots"] if b["meeting_id"] == mid]


# -- reconfigure -------------------------------------------------------------------------------

def test_reconfigure_reaches_the_bot(make_server, janus):
    server = make_server(env=ASR_ENV)
    _, token = server.new_user()
    mid, pid = start_bot(server, token, janus)
    path = "/bots/janus/1234/config"
    err(server.request("PUT", path, headers=uh(token), json={"language": "de"}), 422,
        "language", "supported: en")
    err(server.request("PUT", path, headers=uh(token), json={"task": "translate"}), 422,
        "task", "supported: transcribe")
    err(server.request("PUT", path, headers=uh(token), json={}), 400)
    err(server.request("PUT", path, headers=uh(token), json={"language": None}), 400, "nothing")
    err(server.request("PUT", path, headers=uh(token), json={"junk": 1}), 422, "junk")
    err(server.request("PUT", "/bots/janus/999/config", headers=uh(token),
                       json={"language": "en"}), 404)
    assert "action=reconfigure" not in server.log()
    assert len(ready_sessions(server, mid)) == 1

    r = server.request("PUT", path, headers=uh(token),
                       json={"language": "en", "task": "transcribe"})
    assert r.status_code == 202, r.text
    # The bot gets the command, ends its session and opens a new one at once, on the same
    # timeline; the meeting stays active with the same process.
    wait_for(lambda: "op=command action=reconfigure" in server.log(), 10, "the command")
    wait_for(lambda: len(ready_sessions(server, mid)) == 2, 10, "the new session")
    (s1, _), (s2, _) = ready_sessions(server, mid)
    assert s2 != s1
    m = get_meeting(server, token, mid)
    assert m["status"] == "active" and m["data"]["languages"] == ["en"], m
    assert pid_alive(pid)

    r = server.request("DELETE", "/bots/janus/1234", headers=uh(token))
    assert r.status_code == 202, r.text
    wait_for(lambda: ended(server, token, mid), 20, "the meeting to end")
    err(server.request("PUT", path, headers=uh(token), json={"language": "en"}), 409, "active")


# -- leave ignored -----------------------------------------------------------------------------

def test_bot_ignoring_leave_is_killed_after_grace(make_server, janus):
    grace_ms = 1500
    server = make_server(args=["--bot-leave-grace-ms", str(grace_ms)])
    _, token = server.new_user()
    mid, pid = start_bot(server, token, janus)
    os.kill(pid, signal.SIGSTOP)  # it can no longer hear `leave` (nor SIGTERM)
    try:
        t0 = time.monotonic()
        r = server.request("DELETE", "/bots/janus/1234", headers=uh(token))
        assert r.status_code == 202 and r.json()["meeting"]["status"] == "stopping", r.text
        wait_for(lambda: not pid_alive(pid), grace_ms / 1000 + 10, "the bot to be killed")
        took = time.monotonic() - t0
        assert took >= grace_ms / 1000 - 0.1, took
        m = wait_for(lambda: ended(server, token, mid), 10, "the meeting to end")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    # The user asked it to stop: a normal end, with the kill recorded beside it.
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "stopped", m
    assert m["data"]["bot_exit"] == {"exit_status": 0, "term_signal": 9,
                                     "killed_after_grace_ms": grace_ms}, m["data"]
    tr = [(t["to"], t["source"]) for t in m["data"]["status_transition"]]
    assert tr[-2:] == [("stopping", "user"), ("completed", "system")], tr
    wait_for(lambda: "op=kill" in server.log(), 5, "the kill log line")
    r = server.request("GET", "/bots/status", headers=uh(token))
    assert not [b for b in r.json()["running_bots"] if b["meeting_id"] == mid]


# -- room destroyed ----------------------------------------------------------------------------

def test_room_destroyed_under_the_bot(make_server, janus):
    server = make_server()
    _, token = server.new_user()
    mid, pid = start_bot(server, token, janus)
    c = JanusClient(janus.url)
    try:
        r = c.message({"request": "destroy", "room": 1234, "permanent": False})
        assert r["plugindata"]["data"].get("audiobridge") == "destroyed", r
    finally:
        c.close()
    m = wait_for(lambda: ended(server, token, mid), 20, "the meeting to end")
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "room_closed", m
    assert m["data"]["status_transition"][-1]["source"] == "bot", m
    assert "bot_exit" not in m["data"]
    wait_for(lambda: not pid_alive(pid), 10, "the bot to exit")
    r = server.request("GET", "/bots/status", headers=uh(token))
    assert not [b for b in r.json()["running_bots"] if b["meeting_id"] == mid]
    wait_for(lambda: "op=exit code=0" in server.log(), 5, "the bot's clean exit")


# -- per-user limit ----------------------------------------------------------------------------

def test_per_user_bot_limit(make_server, janus):
    server = make_server(args=["--max-bots", "2"])
    _, ta = server.new_user(max_concurrent_bots=1)
    _, tb = server.new_user(max_concurrent_bots=1)
    mid, pid = start_bot(server, ta, janus, 1234)
    spawned = server.log().count("op=spawn")
    for _ in range(3):  # refused requests must not hold the node's bot slots
        err(server.request("POST", "/bots", headers=uh(ta), json=bot_body(janus, 4321)), 403,
            "max_concurrent_bots")
    assert server.log().count("op=spawn") == spawned  # no process for a refused request
    r = server.request("GET", "/bots/status", headers=uh(ta))
    assert [b["meeting_id"] for b in r.json()["running_bots"]] == [mid], r.text
    midb, _ = start_bot(server, tb, janus, 4321)  # the second node slot is free
    # Once the first bot has gone, its user may start another.
    assert server.request("DELETE", "/bots/janus/1234", headers=uh(ta)).status_code == 202
    wait_for(lambda: ended(server, ta, mid), 20, "the first meeting to end")
    wait_for(lambda: not pid_alive(pid), 10, "the first bot to exit")
    wait_for(lambda: server.request("POST", "/bots", headers=uh(ta),
                                    json=bot_body(janus, 1234)).status_code == 201, 5,
             "a new bot for the first user")
    for t, room in ((ta, 1234), (tb, 4321)):
        assert server.request("DELETE", "/bots/janus/%d" % room, headers=uh(t)).status_code == 202
