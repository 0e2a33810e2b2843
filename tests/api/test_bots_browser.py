"""A Janus bot transcribing a real browser: Debian's Chromium opens Janus' AudioBridge demo page
(janus-demos) with a fake microphone looping a synthesised sentence, joins room 1234 over WebRTC
under a display name, and hark's bot (POST /bots, platform janus) transcribes the room. The live
segments over /ws and the stored transcript carry the browser's display name as the speaker (Janus
`talking`/`stopped-talking` events, mapped to names through the participant list) and words of
the sentence; DELETE stops the bot and no bot process is left. The page is driven by
tests/web/audiobridge-participant.mjs (playwright-core, as the dashboard test)."""
import asyncio
import functools
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import REPO
from helpers import pid_alive, uh
from janus_env import Janus, available, free_port
from wsclient import open_live, run

DEMOS = "/usr/share/janus/demos"
CHROMIUM = os.environ.get("HARK_CHROMIUM", "/usr/bin/chromium")
WEB = os.path.join(REPO, "tests", "web")
PARTICIPANT = os.path.join(WEB, "audiobridge-participant.mjs")

missing = [what for what, ok in [
    ("janus", available()),
    ("janus-demos", os.path.exists(os.path.join(DEMOS, "audiobridgetest.html"))),
    ("chromium", os.access(CHROMIUM, os.X_OK)),
    ("flite", shutil.which("flite")),
    ("ffmpeg", shutil.which("ffmpeg")),
    ("node", shutil.which("node")),
] if not ok]
pytestmark = pytest.mark.skipif(bool(missing), reason="not installed: " + ", ".join(missing))

ROOM = 1234
DISPLAY = "AliceBrowser"  # the demo page accepts letters and digits only
SENTENCE = "please send the quarterly report to the whole team before the meeting on friday morning"
CONTENT = set(SENTENCE.split()) - {"please", "the", "to", "on", "before", "whole"}


def bot_processes(server_pid):
    """Live `hark bot` children of the server."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read().split(")")[-1].split()
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == server_pid and stat[0] != "Z" and argv[1:2] == [b"bot"]:
            found.append(int(d))
    return found


def ensure_playwright():
    """playwright-core comes from npm (tests/web/package.json); installed once when missing."""
    if not os.path.isdir(os.path.join(WEB, "node_modules", "playwright-core")):
        assert shutil.which("npm"), "npm is needed for the browser tests"
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=WEB,
                       check=True, timeout=300)


def recognised(texts):
    """The sentence's content words found in the recognised texts."""
    return CONTENT & set(re.findall(r"[a-z']+", " ".join(texts).lower()))


@pytest.fixture
def janus(tmp_path):
    j = Janus(tmp_path, rooms={ROOM: {}})
    j.start()
    yield j
    j.stop()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def demo_page(tmp_path, janus):
    """Janus' demo pages served on 127.0.0.1, settings.js pointed at the private Janus
    (protocols.md section 4); yields the AudioBridge demo URL."""
    root = str(tmp_path / "demos")
    shutil.copytree(DEMOS, root, symlinks=False)  # javascript/ is a link to /usr/share/javascript
    with open(os.path.join(root, "settings.js"), "a") as f:
        f.write('\nserver = "%s";\nvar token = null;\nvar apisecret = null;\n' % janus.url)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                            functools.partial(QuietHandler, directory=root))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/audiobridgetest.html?room=%d" % (httpd.server_port, ROOM)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def speech(tmp_path):
    """The sentence as a 48 kHz mono 16-bit WAV with a pause after it: Chromium loops the file,
    so the browser says it again and again, and the pause ends each utterance."""
    raw, wav = str(tmp_path / "flite.wav"), str(tmp_path / "speech.wav")
    subprocess.run(["flite", "-voice", "slt", "-t", SENTENCE, "-o", raw], check=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", raw, "-af",
                    "adelay=300,apad=pad_dur=1.5", "-ar", "48000", "-ac", "1", "-c:a", "pcm_s16le",
                    wav], check=True)
    return wav


class Participant:
    """The browser, driven by tests/web/audiobridge-participant.mjs; its JSON lines are queued."""

    def __init__(self, page_url, display, wav):
        self.proc = subprocess.Popen(["node", PARTICIPANT, page_url, display, wav],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self.events = queue.Queue()
        self.output = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put({"event": "exit"})

    def expect(self, name, timeout):
        try:
            ev = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("browser: no %r within %ss:\n%s" % (name, timeout,
                                                                    "".join(self.output)[-4000:]))
        assert ev["event"] == name, "browser: expected %r, got %r\n%s" % (
            name, ev, "".join(self.output)[-4000:])
        return ev

    def leave(self, timeout=30):
        self.proc.stdin.write("leave\n")
        self.proc.stdin.flush()
        ev = self.expect("left", timeout)
        self.proc.wait(timeout)
        return ev

    def close(self):
        """Ends the script if it still runs: EOF makes it leave and close Chromium."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def test_janus_bot_transcribes_a_browser_participant(make_server, janus, demo_page, speech):
    ensure_playwright()
    server = make_server(env={"HARK_ASR": "pocketsphinx", "HARK_ASR_POOL_SIZE": "1"})
    _, token = server.new_user()
    body = {"platform": "janus", "native_meeting_id": str(ROOM), "meeting_url": janus.url,
            "bot_name": "hark-notes"}
    r = server.request("POST", "/bots", headers=uh(token), json=body)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    browser = None

    async def scenario():
        nonlocal browser
        live, sub = await open_live(server, token, [("janus", str(ROOM))])
        assert sub.get("type") == "subscribed", sub
        statuses, segments = [], {}

        async def drain(until, timeout, what):
            deadline = time.time() + timeout
            while not until():
                if time.time() > deadline:
                    raise AssertionError("timed out waiting for %s; statuses %r, segments %r\n%s"
                                         % (what, statuses, list(segments.values())[-6:],
                                            server.log()[-3000:]))
                try:
                    o = json.loads(await asyncio.wait_for(live.recv(), 0.5))
                except asyncio.TimeoutError:
                    continue
                if o.get("type") == "meeting.status":
                    statuses.append(o["payload"]["status"])
                elif o.get("type") == "transcript.mutable":
                    for s in o["payload"]["segments"]:
                        segments[s["segment_id"]] = s

        def spoken():  # what the recogniser has finished saying the browser said
            return [s["text"] for s in segments.values()
                    if s.get("speaker") == DISPLAY and s.get("completed")]

        await drain(lambda: "active" in statuses, 30, "the bot to be active")
        browser = Participant(demo_page, DISPLAY, speech)
        loop = asyncio.get_running_loop()
        joined = await loop.run_in_executor(None, browser.expect, "joined", 60)
        await drain(lambda: len(recognised(spoken())) >= 3, 60,
                    "segments spoken by %s with words of the sentence" % DISPLAY)
        assert {s.get("speaker") for s in segments.values() if s["text"].strip()} <= {DISPLAY, None}

        # The browser leaves (the demo's Stop button): the bot sees that participant go.
        left = await loop.run_in_executor(None, browser.leave)
        gone = "op=participant_left id=%d" % joined["id"]
        await drain(lambda: gone in server.log(), 20, "the bot to see the browser leave")

        r = server.request("DELETE", "/bots/janus/%d" % ROOM, headers=uh(token))
        assert r.status_code == 202, r.text
        await drain(lambda: statuses[-1] in ("completed", "failed"), 30, "the bot to stop")
        await live.close()
        return statuses, segments, left

    try:
        statuses, segments, left = run(scenario(), timeout=180)
    finally:
        if browser:
            browser.close()
    # Subscribing after POST /bots may miss "requested"/"joining"; the stored transitions below
    # have the whole sequence.
    order = ["requested", "joining", "active", "stopping", "completed"]
    assert statuses == sorted(statuses, key=order.index), statuses
    assert statuses[-3:] == ["active", "stopping", "completed"], statuses
    assert left["console_errors"] == [], left["console_errors"]
    # Stop reloads the page, which aborts janus.js' pending long poll (or, when Janus has already
    # dropped the session, answers it 404 "API call failed"): nothing else is expected.
    # (two lines then: the browser's "Failed to load resource: ... 404 ... /janus/<session>" and
    # janus.js' own "... failed: {message: API call failed, ...}")
    def long_poll_teardown(e):
        return ("Probably a network error" in e or "API call failed" in e or
                ("/janus/" in e and "404" in e))
    assert all(long_poll_teardown(e) for e in left["leave_errors"]), left["leave_errors"]

    m = server.request("GET", "/meetings/%d" % mid, headers=uh(token)).json()
    assert m["status"] == "completed" and m["data"]["completion_reason"] == "stopped", m
    sources = [(t["to"], t["source"]) for t in m["data"]["status_transition"]]
    assert ("joining", "bot") in sources and ("active", "bot") in sources, sources

    tr = server.request("GET", "/transcripts/janus/%d" % ROOM, headers=uh(token)).json()
    stored = [s for s in tr["segments"] if s.get("speaker") == DISPLAY]
    assert len(recognised([s["text"] for s in stored])) >= 3, tr
    live_done = {sid for sid, s in segments.items() if s.get("speaker") == DISPLAY
                 and s.get("completed")}
    assert live_done <= {s["segment_id"] for s in stored}, (live_done, tr)

    assert bot_processes(server.proc.pid) == [], "a hark bot process is left"
    assert "op=exit" in server.log()
