"""`hark transcribe`: a LibriVox clip (Debian's pocketsphinx-testdata) converted to MP3 and Ogg by
ffmpeg is transcribed in every format; the outputs parse (JSON, SRT/VTT in FFmpeg), the words
match the reference transcript reasonably, and bad inputs fail with a message naming the file."""
import json
import os
import re
import shutil
import subprocess
from collections import Counter

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARK_BIN = os.environ.get("HARK_BIN", os.path.join(REPO, "hark"))
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
CLIP = "sense_and_sensibility_01_austen_64kb-0870"
FFMPEG = shutil.which("ffmpeg")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

pytestmark = pytest.mark.skipif(
    not (FFMPEG and os.path.exists(os.path.join(LIBRIVOX, CLIP + ".wav"))
         and os.path.isdir("/usr/share/pocketsphinx/model/en-us")),
    reason="needs ffmpeg, pocketsphinx-testdata and pocketsphinx-en-us (scripts/setup)")


def reference():
    with open(os.path.join(LIBRIVOX, "transcription")) as f:
        for line in f:
            if "(%s)" % CLIP in line:
                return re.sub(r"</?s>|\(.*\)", " ", line).split()
    raise AssertionError("no reference for " + CLIP)


def overlap(hyp_text):
    """Fraction of the reference's words (with multiplicity) that the hypothesis has."""
    ref = Counter(reference())
    hyp = Counter(re.findall(r"[a-z']+", hyp_text.lower()))
    return sum((ref & hyp).values()) / sum(ref.values())


def run(*args, timeout=120):
    p = subprocess.run([HARK_BIN, "transcribe", *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    for m in SANITIZER_MARKERS:
        assert m not in p.stderr, p.stderr
    return p


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("transcribe")
    src = os.path.join(LIBRIVOX, CLIP + ".wav")
    out = {}
    # 44.1 kHz stereo MP3 and 22.05 kHz Ogg Vorbis: the resampler and down-mix are exercised.
    for ext, extra in (("mp3", ["-ar", "44100", "-ac", "2"]), ("ogg", ["-ar", "22050"])):
        path = str(d / ("clip." + ext))
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-i", src, *extra, path],
                       check=True, timeout=60)
        out[ext] = path
    (d / "text.wav").write_text("This is a text file, not audio.\n")
    (d / "empty.ogg").write_bytes(b"")
    out["text"], out["empty"] = str(d / "text.wav"), str(d / "empty.ogg")
    out["dir"] = d
    return out


def ffmpeg_parses(path):
    p = subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-i", path, "-map", "0", "-c:s", "ass",
                        "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), "ffmpeg rejected %s: %s" % (path, p.stderr)


def test_txt_to_stdout(media):
    p = run(media["mp3"], "--asr-pool-size", "1")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # not a terminal: no progress bar, nothing but errors
    lines = p.stdout.splitlines()
    assert lines and all(re.match(r"^\[\d\d:\d\d:\d\d\] \S", l) for l in lines), p.stdout
    text = " ".join(l.split("] ", 1)[1] for l in lines)
    assert overlap(text) >= 0.5, text


def test_json_several_files_to_dir(media, tmp_path):
    out = tmp_path / "out"  # created by the command
    p = run(media["mp3"], media["ogg"], "--format", "json", "-o", str(out), "--asr-pool-size", "1")
    assert p.returncode == 0, p.stderr
    # Both inputs are named clip.*: the second output gets a suffix instead of overwriting.
    assert sorted(os.listdir(out)) == ["clip-2.json", "clip.json"]
    for name, src in (("clip.json", media["mp3"]), ("clip-2.json", media["ogg"])):
        doc = json.loads((out / name).read_text())
        assert doc["file"] == src
        assert abs(doc["duration"] - 7.1) < 0.1
        segs = doc["segments"]
        assert segs, doc
        for s in segs:
            assert s["completed"] is True and s["text"].strip()
            assert 0 <= s["start"] < s["end"] <= 7.2
            assert s["absolute_start_time"] is None
        assert [s["start"] for s in segs] == sorted(s["start"] for s in segs)
        assert len({s["segment_id"] for s in segs}) == len(segs)
        assert overlap(" ".join(s["text"] for s in segs)) >= 0.5, segs


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse_in_ffmpeg(media, tmp_path, fmt):
    out = tmp_path / ("clip." + fmt)
    p = run(media["ogg"], "--format", fmt, "-o", str(out), "--asr-pool-size", "1")
    assert p.returncode == 0, p.stderr
    body = out.read_text()
    assert "-->" in body
    if fmt == "vtt":
        assert body.startswith("WEBVTT")
    else:
        assert body.startswith("1\n")
    ffmpeg_parses(str(out))
    cue_text = " ".join(l for l in body.splitlines()
                        if l and "-->" not in l and not l.isdigit() and l != "WEBVTT")
    assert overlap(cue_text) >= 0.5, body
    assert not os.path.exists(str(out) + ".part")


def test_bad_inputs_fail_naming_the_file(media, tmp_path):
    missing = str(media["dir"] / "missing.mp3")
    out = tmp_path / "out"
    p = run(media["text"], media["empty"], missing, media["mp3"], "-o", str(out),
            "--asr-pool-size", "1")
    assert p.returncode == 1
    err = p.stderr.splitlines()
    assert len(err) == 3, p.stderr
    assert err[0].startswith("hark transcribe: %s: not a media file" % media["text"]), err
    assert err[1].startswith("hark transcribe: %s: not a media file" % media["empty"]), err
    assert err[2] == "hark transcribe: %s: file not found" % missing, err
    # The good file is still transcribed; the bad ones leave nothing behind.
    assert sorted(os.listdir(out)) == ["clip.txt"]
    assert overlap((out / "clip.txt").read_text()) >= 0.5


@pytest.mark.parametrize("args, message", [
    ([], "no input file"),
    (["a.mp3", "--format", "xml"], "--format must be"),
    (["a.mp3", "--bogus"], "unknown option"),
    (["a.mp3", "b.mp3"], "several files need -o DIR"),
    (["a.mp3", "--asr-pool-size", "0"], "--asr-pool-size must be"),
    (["a.mp3", "-o"], "-o needs a value"),
])
def test_usage_errors_exit_2(args, message):
    p = run(*args)
    assert p.returncode == 2
    assert message in p.stderr
    assert p.stdout == ""
