"""The dashboard in a real browser (tests/web/dashboard.spec.mjs, Playwright on Debian's Chromium)
while this test streams a LibriVox clip into the meeting the browser created."""
import asyncio
import glob
import json
import os
import shutil
import subprocess
import threading
import time
import wave

import websockets

from conftest import REPO
from wsclient import open_ingest

WEB = os.path.join(REPO, "tests", "web")
CLIP = sorted(glob.glob("/usr/share/pocketsphinx/test/data/librivox/*.wav"))[0]


def ensure_playwright():
    """playwright-core comes from npm (tests/web/package.json); installed once when missing."""
    if not os.path.isdir(os.path.join(WEB, "node_modules", "playwright-core")):
        assert shutil.which("npm"), "npm is needed for the browser tests"
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=WEB,
                       check=True, timeout=300)


def stream_when_ready(outdir, stop, result):
    """Waits for the browser's stream.json, then sends the clip (int16, 16 kHz, about 2x real
    time) and keeps the session open until the meeting is stopped."""
    spec = os.path.join(outdir, "stream.json")
    while not os.path.exists(spec):
        if stop.is_set():
            return
        time.sleep(0.1)
    time.sleep(0.2)  # the file is written in one call; let the browser open the meeting page
    with open(spec) as f:
        info = json.load(f)
    with wave.open(CLIP) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        pcm = w.readframes(w.getnframes())

    async def send():
        ws, _ = await open_ingest(info["ingest"], info["token"], uid="dashboard-test")
        chunk = 3200  # 100 ms
        for i in range(0, len(pcm), chunk):
            await ws.send(pcm[i:i + chunk])
            result["sent"] = i + chunk
            await asyncio.sleep(0.05)
        await ws.send(b"\0\0" * 16000)  # a second of silence ends the utterance
        try:
            while not stop.is_set():
                await asyncio.wait_for(ws.recv(), 0.5)
        except asyncio.TimeoutError:
            pass
        except websockets.ConnectionClosed:
            result["closed_by_server"] = True
            return
        await ws.close()

    async def loop():
        try:
            await send()
        except websockets.ConnectionClosed:
            result["closed_by_server"] = True  # the browser stopped the meeting mid-clip

    try:
        asyncio.run(loop())
    except Exception as e:  # reported by the test, not lost in the thread
        result["error"] = repr(e)


def test_dashboard_in_chromium(make_server, tmp_path):
    ensure_playwright()
    server = make_server(env={"HARK_ASR": "pocketsphinx"},
                         args=["--asr-pool-size", "1", "--stream-idle-timeout-ms", "500"])
    _, token = server.new_user()
    outdir = str(tmp_path / "web")
    os.makedirs(outdir)
    stop, result = threading.Event(), {}
    t = threading.Thread(target=stream_when_ready, args=(outdir, stop, result), daemon=True)
    t.start()
    try:
        proc = subprocess.run(["node", os.path.join(WEB, "dashboard.spec.mjs"), server.url, token,
                               outdir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300)
    finally:
        stop.set()
        t.join(15)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, "no JSON from the browser test:\n" + proc.stdout[-4000:]
    report = json.loads(lines[-1])
    failed = [s for s in report["steps"] if not s["ok"]]
    assert proc.returncode == 0 and report["ok"], "browser steps failed: %s\nconsole: %s\n%s" % (
        failed, report["console_errors"], proc.stdout[-3000:])
    assert "error" not in result, result
    assert result.get("sent"), "the clip was never streamed"
    assert not report["console_errors"], report["console_errors"]
    names = [s["name"] for s in report["steps"]]
    for want in ("wrong-key-refused", "transcript-live", "export-srt", "name-edited",
                 "stopped-live", "analytics"):
        assert want in names
    shots = sorted(os.listdir(outdir))
    assert len([s for s in shots if s.endswith(".png")]) == len(names), shots
    srt = open(os.path.join(outdir, "transcript.srt")).read()
    assert "-->" in srt
