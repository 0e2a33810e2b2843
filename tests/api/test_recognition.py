"""End-to-end recognition through /ws/audio with the embedded PocketSphinx recogniser.

1. The five LibriVox clips of Debian's pocketsphinx-testdata, streamed as five parallel sessions
   on one server (decoder pool of 2): hark's word error rate against the reference transcripts
   must be within 2 points of `pocketsphinx_continuous -infile` on the same clips (both computed
   here), and what a /ws subscriber holds must equal the stored transcript.
2. A three-speaker meeting synthesised with flite voices (slt, rms, awb) from known sentences,
   streamed with speaker_activity events: at least 90% of recognised words carry the right
   speaker.

Nothing time-based is asserted: audio is sent faster than real time, paced only so that a
session never has more than MAX_AHEAD_S of audio queued (the server's cap is 30 s per session).
"""
import asyncio
import array
import json
import os
import random
import re
import shutil
import subprocess
import time
import wave

import websockets

from helpers import metric_value, uh, uniq
from wer import errors, normalise
from wsclient import LiveTranscript, open_ingest, open_live, run, start_meeting

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
RATE = 16000
CHUNK = RATE // 10          # 100 ms of int16 samples per binary frame
CHUNK_SLEEP_S = 0.01        # ≈10× real time
MAX_AHEAD_S = 20.0          # never more than this much audio ahead of the wall clock
ASR_ENV = {"HARK_ASR": "pocketsphinx"}
ASR_ARGS = ["--asr-pool-size", "2", "--stream-idle-timeout-ms", "500"]
WER_MARGIN = 2.0            # percentage points
SESSION_TIMEOUT_S = 90


# -- helpers ---------------------------------------------------------------------------------------

def read_pcm16(path):
    """The int16 little-endian samples of a 16 kHz mono 16-bit WAV file, as bytes."""
    with wave.open(path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE), \
            "%s: %r" % (path, w.getparams())
        return w.readframes(w.getnframes())


def transcript(server, token, native_id):
    r = server.request("GET", "/transcripts/stream/%s" % native_id, headers=uh(token))
    assert r.status_code == 200, r.text
    return r.json()


def stored_final(server, token, native_id, timeout=10):
    """The stored transcript once every segment in it is completed."""
    deadline = time.time() + timeout
    while True:
        t = transcript(server, token, native_id)
        if all(s["completed"] for s in t["segments"]) or time.time() > deadline:
            return t
        time.sleep(0.1)


async def read_until_closed(ws, into):
    """Collects the JSON frames the server sends on an ingest connection until it closes."""
    try:
        async for msg in ws:
            into.append(json.loads(msg) if isinstance(msg, str) else msg)
    except websockets.ConnectionClosed:
        pass


async def stream_pcm(ws, pcm, events=()):
    """Sends pcm (int16 LE bytes) in 100 ms binary frames, faster than real time but never more
    than MAX_AHEAD_S ahead of the wall clock. events: [(sample_index, json_frame)] sorted by
    sample index; each is sent just before the frame that holds its sample."""
    t0 = time.monotonic()
    events = list(events)
    k = 0
    nsamples = len(pcm) // 2
    for i in range(0, nsamples, CHUNK):
        while i / RATE - (time.monotonic() - t0) > MAX_AHEAD_S:
            await asyncio.sleep(0.05)
        end = min(i + CHUNK, nsamples)
        while k < len(events) and events[k][0] < end:
            await ws.send(json.dumps(events[k][1]))
            k += 1
        await ws.send(pcm[2 * i:2 * end])
        await asyncio.sleep(CHUNK_SLEEP_S)
    for _, ev in events[k:]:   # events at or after the last sample
        await ws.send(json.dumps(ev))


async def run_session(server, token, meeting, pcm, uid, events=()):
    """One meeting, one ingest session: a /ws subscriber is attached first; the audio is
    streamed, END_OF_AUDIO sent, the ingest close awaited, and the subscriber pumped until the
    meeting completes. Returns (LiveTranscript, ingest frames, ingest close code)."""
    live, sub = await open_live(server, token, [("stream", meeting["native_meeting_id"])])
    assert sub.get("type") == "subscribed", sub
    held = LiveTranscript()
    pump = asyncio.ensure_future(
        held.pump(live, lambda h: "completed" in h.statuses, timeout=SESSION_TIMEOUT_S))
    try:
        ws, ready = await open_ingest(meeting["ingest_url"], meeting["meeting_token"], uid=uid)
        assert ready.get("backend") == "pocketsphinx", ready
        frames = []
        reader = asyncio.ensure_future(read_until_closed(ws, frames))
        await stream_pcm(ws, pcm, events)
        await ws.send(b"END_OF_AUDIO")
        await asyncio.wait_for(reader, SESSION_TIMEOUT_S)
        await pump
    finally:
        if not pump.done():
            pump.cancel()
        await live.close()
    return held, frames, ws.close_code


def partials_before_finals(held):
    """Segment ids that had at least one completed:false frame before their completed frame."""
    seen_partial, ids = set(), set()
    for f in held.frames:
        if f.get("type") != "transcript.mutable":
            continue
        for s in f["payload"]["segments"]:
            if not s["completed"]:
                seen_partial.add(s["segment_id"])
            elif s["segment_id"] in seen_partial:
                ids.add(s["segment_id"])
    return ids


def check_live_equals_stored(held, stored, label):
    got = [(s["segment_id"], s["text"]) for s in stored["segments"]]
    want = [(s["segment_id"], s["text"]) for s in held.ordered()]
    assert got == want, "%s: stored transcript %r != /ws subscriber's %r" % (label, got, want)
    for s in stored["segments"]:
        assert s["completed"], "%s: stored segment not completed after the meeting ended: %r" % (
            label, s)
    for s in held.ordered():
        assert s["completed"], "%s: /ws subscriber holds an uncompleted segment: %r" % (label, s)


def check_ingest_frames(frames, stored, uid, label):
    """The WhisperLive-shaped frames on the ingest connection echo the uid, and their completed
    segments' texts, in order, are the stored transcript's."""
    segs = []
    for f in frames:
        assert isinstance(f, dict) and f.get("uid") == uid, "%s: ingest frame %r" % (label, f)
        segs.extend(f.get("segments") or [])
    assert segs, "%s: no segment frames on the ingest connection: %r" % (label, frames[-5:])
    done = [s["text"] for s in segs if s["completed"] and s["text"]]
    assert done == [s["text"] for s in stored["segments"]], \
        "%s: ingest completed texts %r != stored %r" % (label, done, stored["segments"])


# -- 1. LibriVox clips: hark vs pocketsphinx_continuous --------------------------------------------

def librivox_clips():
    """[(clip id, wav path, reference text)] from the test data's transcription file."""
    clips = []
    with open(os.path.join(LIBRIVOX, "transcription")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            m = re.match(r"^(.*)\(([^()\s]+)\)$", line)
            assert m, "unexpected transcription line %r" % line
            text, cid = m.group(1).strip(), m.group(2)
            path = os.path.join(LIBRIVOX, cid + ".wav")
            assert os.path.exists(path), path
            clips.append((cid, path, text))
    return clips


def test_librivox_wer_within_2_points_of_pocketsphinx_continuous(make_server):
    assert os.path.isdir(LIBRIVOX) and shutil.which("pocketsphinx_continuous"), \
        "needs Debian's pocketsphinx and pocketsphinx-testdata (scripts/setup installs them)"
    clips = librivox_clips()
    assert len(clips) == 5, clips
    # The reference decoder runs beside the server (all five at once; no timing is measured).
    procs = {cid: subprocess.Popen(["pocketsphinx_continuous", "-infile", path],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for cid, path, _ in clips}
    try:
        librivox_vs_reference(make_server, clips, procs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def librivox_vs_reference(make_server, clips, procs):
    server = make_server(env=ASR_ENV, args=ASR_ARGS)
    _, token = server.new_user(max_concurrent_bots=10)
    meetings = {cid: start_meeting(server, token, uniq("librivox")) for cid, _, _ in clips}
    pcms = {cid: read_pcm16(path) for cid, path, _ in clips}

    async def all_sessions():
        return await asyncio.gather(*[
            run_session(server, token, meetings[cid], pcms[cid], uid="clip-%s" % cid[-4:])
            for cid, _, _ in clips])

    t0 = time.monotonic()
    results = dict(zip([c[0] for c in clips], run(all_sessions(), timeout=SESSION_TIMEOUT_S + 30)))
    t_hark = time.monotonic() - t0

    # pocketsphinx_continuous on this version prints one plain hypothesis line per utterance.
    psc_hyp = {}
    for cid, p in procs.items():
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, "pocketsphinx_continuous %s exited %d" % (cid, p.returncode)
        psc_hyp[cid] = " ".join(line.strip() for line in out.splitlines() if line.strip())

    tot = {"hark": [0, 0], "psc": [0, 0]}
    partial_clips = []
    print()
    print("%-44s %7s %7s  words" % ("clip", "hark", "psc"))
    for cid, _, ref in clips:
        held, frames, close_code = results[cid]
        native = meetings[cid]["native_meeting_id"]
        stored = stored_final(server, token, native)
        assert close_code == 1000, "%s: ingest closed with %r after END_OF_AUDIO" % (
            cid, close_code)
        check_live_equals_stored(held, stored, cid)
        check_ingest_frames(frames, stored, "clip-%s" % cid[-4:], cid)
        if partials_before_finals(held):
            partial_clips.append(cid)

        hark_hyp = " ".join(s["text"] for s in stored["segments"] if s["completed"])
        he, n = errors(ref, hark_hyp)
        pe, n2 = errors(ref, psc_hyp[cid])
        assert n == n2
        tot["hark"][0] += he
        tot["psc"][0] += pe
        tot["hark"][1] += n
        tot["psc"][1] += n
        print("%-44s %6.1f%% %6.1f%%  %d" % (cid, 100.0 * he / n, 100.0 * pe / n, n))
        print("    ref : %s" % " ".join(normalise(ref)))
        print("    hark: %s" % " ".join(normalise(hark_hyp)))
        print("    psc : %s" % " ".join(normalise(psc_hyp[cid])))

    hark_wer = 100.0 * tot["hark"][0] / tot["hark"][1]
    psc_wer = 100.0 * tot["psc"][0] / tot["psc"][1]
    print("%-44s %6.1f%% %6.1f%%  %d" % ("TOTAL", hark_wer, psc_wer, tot["hark"][1]))
    mt = server.request("GET", "/metrics").text
    print("(informational) hark: %.1f s wall for the five sessions beside the reference "
          "decoders; decoder CPU %s s for %s s of audio" % (
              t_hark, metric_value(mt, "hark_asr_cpu_seconds_total"),
              metric_value(mt, "hark_asr_decoded_seconds_total")))
    print("clips with partials before finals on /ws: %d of %d" % (len(partial_clips), len(clips)))
    assert hark_wer <= psc_wer + WER_MARGIN, \
        "hark WER %.1f%% is more than %.0f points above pocketsphinx_continuous's %.1f%%" % (
            hark_wer, WER_MARGIN, psc_wer)
    assert partial_clips, "no clip showed a completed:false frame before its completed frame"


# -- 2. Three synthesised speakers with speaker_activity -------------------------------------------

# Distinct vocabulary per speaker, so that recognised words can be traced to who said them.
SPEAKERS = [
    ("Alice", "slt", ["The weather today is sunny and warm.",
                      "Please open the window in the kitchen.",
                      "My garden has many yellow flowers.",
                      "We bought fresh bread at the market."]),
    ("Bob", "rms", ["Our football team won the game last night.",
                    "The engine of the truck needs new oil.",
                    "He drove the car across the bridge.",
                    "The computer screen is broken again."]),
    ("Carol", "awb", ["I love reading books about history.",
                      "The children played music in the school hall.",
                      "She wrote a long letter to her mother.",
                      "The doctor visited the hospital on Monday."]),
]
GAP_S = 0.6
LEAD_S = 0.5
TAIL_S = 1.0


def synthesise(voice, text, path):
    """flite → 16 kHz mono int16 samples (bytes), with leading/trailing silence trimmed."""
    raw = path + ".raw.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", raw], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with wave.open(raw, "rb") as w:
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
    if params != (1, 2, RATE):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", raw,
                        "-ac", "1", "-ar", str(RATE), "-sample_fmt", "s16", path], check=True)
    else:
        os.replace(raw, path)
    samples = array.array("h", read_pcm16(path))
    loud = [i for i, v in enumerate(samples) if abs(v) > 200]
    assert loud, "flite produced silence for %r" % text
    return samples[max(0, loud[0] - 160):loud[-1] + 160]


def build_meeting(tmp_path):
    """One timeline, speakers alternating with GAP_S of silence. Returns (pcm bytes,
    [(speaker, start_s, end_s, sentence)], [(sample index, speaker_activity frame)])."""
    utts = {name: [synthesise(voice, s, str(tmp_path / ("%s-%d.wav" % (voice, i))))
                   for i, s in enumerate(sentences)]
            for name, voice, sentences in SPEAKERS}
    rng = random.Random(1234)          # faint deterministic noise instead of digital silence

    def silence(seconds):
        return array.array("h", (rng.randint(-6, 6) for _ in range(int(seconds * RATE))))

    timeline = silence(LEAD_S)
    intervals, events = [], []
    pid = {name: str(i + 1) for i, (name, _, _) in enumerate(SPEAKERS)}
    rounds = max(len(s[2]) for s in SPEAKERS)
    for r in range(rounds):
        for name, _, sentences in SPEAKERS:
            if r >= len(sentences):
                continue
            if len(timeline) > LEAD_S * RATE:
                timeline.extend(silence(GAP_S))
            start = len(timeline)
            timeline.extend(utts[name][r])
            end = len(timeline)
            intervals.append((name, start / RATE, end / RATE, sentences[r]))
            for idx, ev in ((start, "SPEAKER_START"), (end, "SPEAKER_END")):
                events.append((idx, {"type": "speaker_activity", "payload": {
                    "event_type": ev, "participant_name": name, "participant_id": pid[name],
                    "relative_client_timestamp_ms": int(round(idx * 1000 / RATE))}}))
    timeline.extend(silence(TAIL_S))
    if array.array("h", [1]).tobytes() != b"\x01\x00":
        timeline.byteswap()
    return timeline.tobytes(), intervals, events


def distinctive_words():
    """word → speaker, for words only one speaker's sentences contain."""
    owners = {}
    for name, _, sentences in SPEAKERS:
        for w in set(normalise(" ".join(sentences))):
            owners.setdefault(w, set()).add(name)
    return {w: next(iter(o)) for w, o in owners.items() if len(o) == 1}


def overlap_owner(intervals, start, end):
    """The speaker whose utterances overlap [start, end] most (nearest one when none does)."""
    best, best_ov = None, 0.0
    for name, s, e, _ in intervals:
        ov = min(end, e) - max(start, s)
        if ov > best_ov:
            best, best_ov = name, ov
    if best is None:
        mid = (start + end) / 2
        best = min(intervals, key=lambda iv: min(abs(mid - iv[1]), abs(mid - iv[2])))[0]
    return best


def test_three_speaker_meeting_words_carry_right_speaker(make_server, tmp_path):
    assert shutil.which("flite"), "needs flite (scripts/setup installs it)"
    pcm, intervals, events = build_meeting(tmp_path)
    server = make_server(env=ASR_ENV, args=ASR_ARGS)
    _, token = server.new_user()
    m = start_meeting(server, token, uniq("speakers"))
    held, frames, close_code = run(run_session(server, token, m, pcm, "speakers", events),
                                   timeout=SESSION_TIMEOUT_S + 30)
    stored = stored_final(server, token, m["native_meeting_id"])
    assert close_code == 1000, "ingest closed with %r after END_OF_AUDIO" % close_code
    check_live_equals_stored(held, stored, "meeting")
    check_ingest_frames(frames, stored, "speakers", "meeting")

    owner_of = distinctive_words()
    # The session is the meeting's first: its first sample is at meeting time 0.
    right = total = by_text = 0
    spoken = sum(len(normalise(iv[3])) for iv in intervals)
    print()
    for seg in stored["segments"]:
        words = normalise(seg["text"])
        by_time = overlap_owner(intervals, seg["start"], seg["end"])
        ok = 0
        for w in words:
            truth = owner_of.get(w, by_time)
            by_text += w in owner_of
            ok += seg["speaker"] == truth
        right += ok
        total += len(words)
        print("  [%6.2f-%6.2f] %-6s (by time %-6s) %d/%d  %s" % (
            seg["start"], seg["end"], seg["speaker"], by_time, ok, len(words), seg["text"]))
    assert total, "nothing recognised: %r" % stored["segments"]
    acc = 100.0 * right / total
    print("speaker accuracy: %d of %d recognised words (%.1f%%); %d of them attributed by "
          "distinctive vocabulary; %d words spoken" % (right, total, acc, by_text, spoken))
    assert total >= spoken // 2, "only %d of %d spoken words recognised" % (total, spoken)
    assert {s["speaker"] for s in stored["segments"]} == {n for n, _, _ in SPEAKERS}
    assert acc >= 90.0, "only %.1f%% of recognised words carry the right speaker" % acc
