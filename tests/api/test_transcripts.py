"""GET /transcripts/{platform}/{native_id}: JSON, txt, SRT and WebVTT renderings of a meeting.

No API writes segments yet, so these tests write them straight into the running server's SQLite
database (WAL mode lets a second connection commit while hark holds its own), then read them back
through the API. SRT and WebVTT documents are checked with FFmpeg's parsers, and WebVTT also with
Chromium's <track> parser when Chromium is installed.
"""
import html
import http.server
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from helpers import MEETING_KEYS, err, is_iso, ok_json, start_stream, stop_stream, uh, uniq

SEGMENT_KEYS = ["segment_id", "start", "end", "text", "speaker", "language", "completed",
                "absolute_start_time", "absolute_end_time", "updated_at"]
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
CHROMIUM = "/usr/bin/chromium"
needs_ffmpeg = pytest.mark.skipif(not (FFMPEG and FFPROBE),
                                  reason="ffmpeg/ffprobe not installed (scripts/setup installs it)")


# -- helpers ---------------------------------------------------------------------------------------

def ended_meeting(server, token, native_id=None):
    """A stream meeting, created and stopped (so it can also be purged); returns its JSON."""
    native_id = native_id or uniq("tr")
    m = start_stream(server, token, native_id)
    stop_stream(server, token, native_id)
    return m


def db(server):
    conn = sqlite3.connect(os.path.join(server.data_dir, "hark.db"), timeout=10)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def put_segments(server, meeting_id, segments):
    """Inserts segments (dicts with id, start, end, text and optional speaker, language) for a
    meeting, committed before returning."""
    now = int(time.time() * 1000)
    rows = [(s["id"], meeting_id, None, s["start"], s["end"], s["text"], s.get("speaker"),
             s.get("language", "en"), now, s.get("updated_at", now)) for s in segments]
    conn = db(server)
    try:
        with conn:
            conn.executemany(
                'INSERT INTO segments (segment_id, meeting_id, session_id, "start", "end", text,'
                " speaker, language, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    finally:
        conn.close()


def set_start_time(server, meeting_id, ms):
    conn = db(server)
    try:
        with conn:
            conn.execute("UPDATE meetings SET start_time = ? WHERE id = ?", (ms, meeting_id))
    finally:
        conn.close()


def transcript(server, token, native_id, query="", platform="stream"):
    return server.request("GET", "/transcripts/%s/%s%s" % (platform, native_id, query),
                          headers=uh(token))


def document(server, token, native_id, fmt, ctype, query=""):
    """GET one rendering; asserts 200 and its content type; returns the response."""
    sep = "&" if query else "?"
    r = transcript(server, token, native_id, query + sep + "format=" + fmt)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].replace(" ", "").lower() == ctype, r.headers
    return r


def ffprobe_cues(path):
    """Parses a subtitle file with FFmpeg; returns (codec, [(start, end)]) of its cues."""
    p = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-show_packets", "-of", "json",
                        path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), "ffprobe rejected %s: %s" % (path, p.stderr)
    info = json.loads(p.stdout)
    codec = info["streams"][0]["codec_name"]
    cues = [(float(k["pts_time"]), float(k["pts_time"]) + float(k["duration_time"]))
            for k in info.get("packets", [])]
    return codec, cues


def ffmpeg_decode(path):
    """Decodes every cue with FFmpeg (to ASS events, discarded, then to SRT); returns the SRT text
    FFmpeg wrote."""
    p = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", path, "-map", "0", "-c:s", "ass",
                        "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), "ffmpeg rejected %s: %s" % (path, p.stderr)
    p = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", path, "-f", "srt", "-"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), "ffmpeg rejected %s: %s" % (path, p.stderr)
    return p.stdout


def close_to(a, b):
    return abs(a - b) < 0.0015


# A transcript given out of order: equal starts sort by segment_id; one speaker is null; one
# segment has nothing to show; one starts after 100 hours.
SAMPLE = [
    {"id": "s:1:3", "start": 5.5, "end": 7.25, "text": "Ship it Friday.", "speaker": "Bob"},
    {"id": "s:1:1", "start": 1.0, "end": 2.5, "text": "Hello everyone.", "speaker": "Alice"},
    {"id": "s:1:2", "start": 5.5, "end": 5.5, "text": "Zero length.", "speaker": None},
    {"id": "s:1:9", "start": 360000.25, "end": 360002.0, "text": "Still here.", "speaker": "Al"},
    {"id": "s:1:5", "start": 9.0, "end": 9.5, "text": "   ", "speaker": "Bob"},
]
SAMPLE_ORDER = ["s:1:1", "s:1:2", "s:1:3", "s:1:5", "s:1:9"]


@pytest.fixture
def sample(server, user):
    """(token, meeting, native_id) with SAMPLE stored."""
    _, token = user
    m = ended_meeting(server, token)
    put_segments(server, m["id"], SAMPLE)
    return token, m, m["native_meeting_id"]


# -- JSON ------------------------------------------------------------------------------------------

def test_json_shape_and_order(server, sample):
    token, m, native = sample
    r = transcript(server, token, native)
    body = ok_json(r)
    assert MEETING_KEYS <= set(body)
    assert body["id"] == m["id"] and body["native_meeting_id"] == native
    assert body["status"] == "completed"
    segs = body["segments"]
    assert [s["segment_id"] for s in segs] == SAMPLE_ORDER
    for s in segs:
        assert list(s) == SEGMENT_KEYS, list(s)
        assert s["completed"] is True
        assert s["absolute_start_time"] is None and s["absolute_end_time"] is None  # no audio yet
        assert is_iso(s["updated_at"])
        assert s["language"] == "en"
    by_id = {s["segment_id"]: s for s in segs}
    assert by_id["s:1:1"]["start"] == 1.0 and by_id["s:1:1"]["end"] == 2.5
    assert by_id["s:1:1"]["text"] == "Hello everyone." and by_id["s:1:1"]["speaker"] == "Alice"
    assert by_id["s:1:2"]["speaker"] is None
    assert by_id["s:1:5"]["text"] == "   "  # JSON keeps every segment as stored
    assert by_id["s:1:9"]["start"] == 360000.25
    # The default format is JSON, and format=json is the same document.
    assert ok_json(transcript(server, token, native, "?format=json"))["segments"] == segs


def test_json_times_print_short(server, user):
    """Times are written as the decimal they were stored as, not 12.339999999999999."""
    _, token = user
    m = ended_meeting(server, token)
    put_segments(server, m["id"], [{"id": "a", "start": 12.34, "end": 15.02, "text": "x"},
                                   {"id": "b", "start": 0.1, "end": 0.3, "text": "y"}])
    r = transcript(server, token, m["native_meeting_id"])
    assert '"start":12.34,"end":15.02' in r.text.replace(" ", ""), r.text
    assert '"start":0.1,"end":0.3' in r.text.replace(" ", ""), r.text


def test_json_absolute_times(server, user):
    _, token = user
    m = ended_meeting(server, token)
    put_segments(server, m["id"], [{"id": "a", "start": 12.34, "end": 15.02, "text": "x",
                                    "updated_at": 1795342508120}])
    set_start_time(server, m["id"], 1795342490780)  # 2026-11-22T10:14:50.780Z
    seg = ok_json(transcript(server, token, m["native_meeting_id"]))["segments"][0]
    assert seg["absolute_start_time"] == "2026-11-22T10:15:03.120Z"
    assert seg["absolute_end_time"] == "2026-11-22T10:15:05.800Z"
    assert seg["updated_at"] == "2026-11-22T10:15:08.120Z"


def test_json_survives_invalid_utf8(server, user):
    """Bytes that are not UTF-8 in the database are shown as U+FFFD, never a 500."""
    _, token = user
    m = ended_meeting(server, token)
    put_segments(server, m["id"], [{"id": "a", "start": 1.0, "end": 2.0,
                                    "text": b"caf\xe9 \xff", "speaker": b"Jos\xe9"}])
    native = m["native_meeting_id"]
    seg = ok_json(transcript(server, token, native))["segments"][0]
    assert seg["text"] == "caf\ufffd \ufffd" and seg["speaker"] == "Jos\ufffd"
    for fmt, ctype in (("txt", "text/plain;charset=utf-8"), ("vtt", "text/vtt;charset=utf-8")):
        r = document(server, token, native, fmt, ctype)
        assert "caf\ufffd \ufffd" in r.content.decode("utf-8")


def test_empty_transcript(server, user):
    _, token = user
    m = ended_meeting(server, token)
    native = m["native_meeting_id"]
    assert ok_json(transcript(server, token, native))["segments"] == []
    assert document(server, token, native, "txt", "text/plain;charset=utf-8").content == b""
    assert document(server, token, native, "srt",
                    "application/x-subrip;charset=utf-8").content == b""
    assert document(server, token, native, "vtt", "text/vtt;charset=utf-8").content == \
        b"WEBVTT\n\n"


# -- txt -------------------------------------------------------------------------------------------

def test_txt(server, sample):
    token, m, native = sample
    r = document(server, token, native, "txt", "text/plain;charset=utf-8")
    assert r.content.decode("utf-8") == (
        "[00:00:01] Alice: Hello everyone.\n"
        "[00:00:05] Zero length.\n"
        "[00:00:05] Bob: Ship it Friday.\n"
        "[100:00:00] Al: Still here.\n")
    assert r.headers["Content-Disposition"] == \
        'inline; filename="stream-%s-%d.txt"' % (native, m["id"])


def test_filename_is_sanitised(server, user):
    _, token = user
    native = "room:7@" + uniq("x")
    m = ended_meeting(server, token, native)
    r = document(server, token, native, "srt", "application/x-subrip;charset=utf-8")
    expect = "stream-%s-%d.srt" % (native.replace(":", "_").replace("@", "_"), m["id"])
    assert r.headers["Content-Disposition"] == 'inline; filename="%s"' % expect


# -- SRT -------------------------------------------------------------------------------------------

def test_srt_exact(server, sample):
    token, m, native = sample
    r = document(server, token, native, "srt", "application/x-subrip;charset=utf-8")
    assert r.content.decode("utf-8") == (
        "1\n00:00:01,000 --> 00:00:02,500\nAlice: Hello everyone.\n\n"
        "2\n00:00:05,500 --> 00:00:05,501\nZero length.\n\n"
        "3\n00:00:05,500 --> 00:00:07,250\nBob: Ship it Friday.\n\n"
        "4\n100:00:00,250 --> 100:00:02,000\nAl: Still here.\n\n")
    assert r.headers["Content-Disposition"] == \
        'inline; filename="stream-%s-%d.srt"' % (native, m["id"])


@needs_ffmpeg
def test_srt_parses_in_ffmpeg(server, sample, tmp_path):
    token, _, native = sample
    path = tmp_path / "t.srt"
    path.write_bytes(document(server, token, native, "srt",
                              "application/x-subrip;charset=utf-8").content)
    codec, cues = ffprobe_cues(str(path))
    assert codec == "subrip"
    expect = [(1.0, 2.5), (5.5, 5.501), (5.5, 7.25), (360000.25, 360002.0)]
    assert len(cues) == len(expect), cues
    for got, want in zip(cues, expect):
        assert close_to(got[0], want[0]) and close_to(got[1], want[1]), (got, want)
    out = ffmpeg_decode(str(path))
    for text in ("Alice: Hello everyone.", "Zero length.", "Bob: Ship it Friday.",
                 "Al: Still here."):
        assert text in out, out


# -- WebVTT ----------------------------------------------------------------------------------------

def test_vtt_exact(server, sample):
    token, m, native = sample
    r = document(server, token, native, "vtt", "text/vtt;charset=utf-8")
    assert r.content.decode("utf-8") == (
        "WEBVTT\n\n"
        "00:00:01.000 --> 00:00:02.500\n<v Alice>Hello everyone.\n\n"
        "00:00:05.500 --> 00:00:05.501\nZero length.\n\n"
        "00:00:05.500 --> 00:00:07.250\n<v Bob>Ship it Friday.\n\n"
        "100:00:00.250 --> 100:00:02.000\n<v Al>Still here.\n\n")
    assert r.headers["Content-Disposition"] == \
        'inline; filename="stream-%s-%d.vtt"' % (native, m["id"])


@needs_ffmpeg
def test_vtt_parses_in_ffmpeg(server, sample, tmp_path):
    token, _, native = sample
    path = tmp_path / "t.vtt"
    path.write_bytes(document(server, token, native, "vtt", "text/vtt;charset=utf-8").content)
    codec, cues = ffprobe_cues(str(path))
    assert codec == "webvtt"
    expect = [(1.0, 2.5), (5.5, 5.501), (5.5, 7.25), (360000.25, 360002.0)]
    assert len(cues) == len(expect), cues
    for got, want in zip(cues, expect):
        assert close_to(got[0], want[0]) and close_to(got[1], want[1]), (got, want)
    out = ffmpeg_decode(str(path))
    for text in ("Hello everyone.", "Zero length.", "Ship it Friday.", "Still here."):
        assert text in out, out


# Text that would break a naive writer: a blank line and a fake cue inside the text, a timing
# arrow, markup characters and a speaker name that tries to close the voice tag.
HOSTILE = [
    {"id": "h:1", "start": 1.0, "end": 2.0, "speaker": "Bob <bob@example.com>",
     "text": "first\n\n2\n00:00:09,000 --> 00:00:10,000\nfake cue"},
    {"id": "h:2", "start": 3.0, "end": 4.0, "speaker": "Eve>",
     "text": "a < b & c --> d\r\n\r\nend"},
    {"id": "h:3", "start": 5.0, "end": 6.0, "speaker": None, "text": "WEBVTT\n\nNOTE x"},
]


@needs_ffmpeg
def test_hostile_text_stays_inside_its_cue(server, user, tmp_path):
    _, token = user
    m = ended_meeting(server, token)
    put_segments(server, m["id"], HOSTILE)
    native = m["native_meeting_id"]
    srt = document(server, token, native, "srt", "application/x-subrip;charset=utf-8").content
    vtt = document(server, token, native, "vtt", "text/vtt;charset=utf-8").content
    text = srt.decode("utf-8")
    assert text.count("-->") == 3, text  # only the three timing lines
    assert len(text.rstrip("\n").split("\n\n")) == 3, text  # no blank line inside a cue
    vtext = vtt.decode("utf-8")
    assert vtext.count("-->") == 3, vtext
    assert len(vtext.rstrip("\n").split("\n\n")) == 4, vtext  # the header and three cues
    assert "<v Bob &lt;bob@example.com&gt;>first" in vtext
    assert "<v Eve&gt;>a &lt; b &amp; c --&gt; d\nend" in vtext
    for name, data, codec in (("h.srt", srt, "subrip"), ("h.vtt", vtt, "webvtt")):
        path = tmp_path / name
        path.write_bytes(data)
        got_codec, cues = ffprobe_cues(str(path))
        assert got_codec == codec
        assert [(round(a, 3), round(b, 3)) for a, b in cues] == [(1.0, 2.0), (3.0, 4.0),
                                                                  (5.0, 6.0)], (name, cues)
        out = ffmpeg_decode(str(path))
        assert "fake cue" in out and "NOTE x" in out, out


def _serve_dir(directory):
    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = dict(http.server.SimpleHTTPRequestHandler.extensions_map,
                              **{".vtt": "text/vtt", ".html": "text/html"})

        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


TRACK_PAGE = """<!doctype html><meta charset="utf-8">
<video id="v" muted></video><pre id="out">pending</pre>
<script>
const v = document.getElementById('v');
const t = document.createElement('track');
t.kind = 'subtitles'; t.src = 't.vtt'; t.default = true;
v.appendChild(t);
t.track.mode = 'hidden';
const out = document.getElementById('out');
t.addEventListener('error', () => { out.textContent = 'ERROR'; });
t.addEventListener('load', () => {
  const cues = Array.from(t.track.cues).map(c => {
    const div = document.createElement('div');
    div.appendChild(c.getCueAsHTML());
    const span = div.querySelector('span[title]');
    return {start: c.startTime, end: c.endTime, voice: span ? span.title : null,
            text: div.textContent};
  });
  out.textContent = 'CUES' + JSON.stringify(cues);
});
</script>
"""


def test_vtt_parses_in_browser_track(server, user, tmp_path):
    _, token = user
    m = ended_meeting(server, token)
    put_segments(server, m["id"], SAMPLE + HOSTILE)
    vtt = document(server, token, m["native_meeting_id"], "vtt", "text/vtt;charset=utf-8").content
    site = tmp_path / "site"
    site.mkdir()
    (site / "t.vtt").write_bytes(vtt)
    (site / "index.html").write_text(TRACK_PAGE, encoding="utf-8")
    httpd = _serve_dir(site)
    try:
        p = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=%s" % (tmp_path / "profile"), "--virtual-time-budget=10000",
             "--dump-dom", "http://127.0.0.1:%d/index.html" % httpd.server_address[1]],
            capture_output=True, text=True, timeout=120)
    finally:
        httpd.shutdown()
    m2 = re.search(r'<pre id="out">CUES(.*?)</pre>', p.stdout, re.S)
    assert m2, "no cues parsed by Chromium; DOM:\n%s\nstderr:\n%s" % (p.stdout, p.stderr[-3000:])
    cues = json.loads(html.unescape(m2.group(1)))
    # A TextTrackCueList orders equal start times by end time, descending: compare sorted.
    got = sorted((round(c["start"], 3), round(c["end"], 3), c["voice"], c["text"]) for c in cues)
    assert got == [
        (1.0, 2.0, "Bob <bob@example.com>", "first\n2\n00:00:09,000 --> 00:00:10,000\nfake cue"),
        (1.0, 2.5, "Alice", "Hello everyone."),
        (3.0, 4.0, "Eve>", "a < b & c --> d\nend"),
        (5.0, 6.0, None, "WEBVTT\nNOTE x"),
        (5.5, 5.501, None, "Zero length."),
        (5.5, 7.25, "Bob", "Ship it Friday."),
        (360000.25, 360002.0, "Al", "Still here."),
    ], got


# -- selection, errors, purge ----------------------------------------------------------------------

def test_meeting_id_selects_an_older_meeting(server, user):
    _, token = user
    native = uniq("again")
    first = ended_meeting(server, token, native)
    second = ended_meeting(server, token, native)
    put_segments(server, first["id"], [{"id": "f:1", "start": 1.0, "end": 2.0, "text": "old"}])
    put_segments(server, second["id"], [{"id": "s:1", "start": 1.0, "end": 2.0, "text": "new"}])
    latest = ok_json(transcript(server, token, native))
    assert latest["id"] == second["id"]
    assert [s["text"] for s in latest["segments"]] == ["new"]
    older = ok_json(transcript(server, token, native, "?meeting_id=%d" % first["id"]))
    assert older["id"] == first["id"]
    assert [s["text"] for s in older["segments"]] == ["old"]
    r = document(server, token, native, "txt", "text/plain;charset=utf-8",
                 "?meeting_id=%d" % first["id"])
    assert r.text == "[00:00:01] old\n"
    # A meeting id with another native id is not found; a malformed one is 422.
    other = ended_meeting(server, token)
    err(transcript(server, token, native, "?meeting_id=%d" % other["id"]), 404)
    err(transcript(server, token, native, "?meeting_id=abc"), 422, "meeting_id")


def test_other_users_meeting_is_404(server, sample):
    token, m, native = sample
    _, other = server.new_user()
    for q in ("", "?format=srt", "?meeting_id=%d" % m["id"]):
        err(transcript(server, other, native, q), 404)
    err(transcript(server, token, uniq("nope")), 404)
    err(transcript(server, token, native, platform="janus"), 404)


def test_unknown_format_is_422(server, sample):
    token, _, native = sample
    for f in ("pdf", "", "srt2", "x" * 100):
        err(transcript(server, token, native, "?format=" + f), 422, "format")


def test_needs_api_key(server, sample):
    _, _, native = sample
    r = server.request("GET", "/transcripts/stream/%s" % native)
    err(r, 401)
    r = server.request("GET", "/transcripts/stream/%s" % native, headers=uh("wrong-key"))
    err(r, 401)


def test_delete_meeting_purges_transcript(server, sample):
    token, m, native = sample
    assert len(ok_json(transcript(server, token, native))["segments"]) == len(SAMPLE)
    r = server.request("DELETE", "/meetings/stream/%s" % native, headers=uh(token))
    assert r.status_code == 200, r.text
    body = ok_json(transcript(server, token, native))
    assert body["id"] == m["id"] and body["segments"] == []
    assert document(server, token, native, "txt", "text/plain;charset=utf-8").content == b""
    assert document(server, token, native, "vtt", "text/vtt;charset=utf-8").content == \
        b"WEBVTT\n\n"


def test_many_segments(server, user):
    """A transcript of a few thousand segments comes back whole and in order."""
    _, token = user
    m = ended_meeting(server, token)
    n = 3000
    put_segments(server, m["id"], [{"id": "m:%05d" % i, "start": (n - i) * 1.5,
                                    "end": (n - i) * 1.5 + 1.0, "text": "segment %d" % i,
                                    "speaker": "S%d" % (i % 3)} for i in range(n)])
    native = m["native_meeting_id"]
    segs = ok_json(transcript(server, token, native))["segments"]
    assert len(segs) == n
    starts = [s["start"] for s in segs]
    assert starts == sorted(starts)
    srt = document(server, token, native, "srt", "application/x-subrip;charset=utf-8").text
    assert srt.count(" --> ") == n and srt.startswith("1\n00:00:01,500 --> 00:00:02,500\n")
