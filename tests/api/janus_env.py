"""A private Janus (Debian's janus package) for tests and benchmarks: writes a config directory
(HTTP transport on 127.0.0.1 and a free port, only the AudioBridge plugin, rooms that allow
plain-RTP participants and send talking events), starts `janus -F <dir>` and stops it. Also a
minimal plain-RTP AudioBridge participant that sends Opus from an Ogg/Opus file."""
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time

import requests

LIBDIR = "/usr/lib/x86_64-linux-gnu/janus"


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def available():
    return shutil.which("janus") is not None and os.path.exists(LIBDIR + "/plugins/libjanus_audiobridge.so")


class Janus:
    """One janus process with its own config dir. rooms: {room_id: {"pin": str|None,
    "allow_rtp": bool}}."""

    def __init__(self, workdir, rooms=None):
        self.dir = os.path.join(str(workdir), "janus")
        self.rooms = rooms or {1234: {}}
        self.port = None
        self.proc = None
        self.log_path = os.path.join(self.dir, "janus.log")

    @property
    def url(self):
        return "http://127.0.0.1:%d/janus" % self.port

    def write_config(self):
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        plugins = sorted(f for f in os.listdir(LIBDIR + "/plugins") if f.endswith(".so")
                         and f != "libjanus_audiobridge.so")
        transports = sorted(f for f in os.listdir(LIBDIR + "/transports") if f.endswith(".so")
                            and f != "libjanus_http.so")
        rtp_lo = random.randrange(20000, 60000, 200)
        with open(os.path.join(self.dir, "janus.jcfg"), "w") as f:
            f.write("""general: {
  configs_folder = "%(dir)s"
  plugins_folder = "%(lib)s/plugins"
  transports_folder = "%(lib)s/transports"
  events_folder = "%(lib)s/events"
  loggers_folder = "%(lib)s/loggers"
  debug_level = 4
  admin_secret = "janusoverlord"
  interface = "127.0.0.1"
  protected_folders = []
}
media: {
  rtp_port_range = "%(lo)d-%(hi)d"
}
nat: {
  ice_enforce_list = "127.0.0.1"
  nice_debug = false
}
plugins: {
  disable = "%(plugins)s"
}
transports: {
  disable = "%(transports)s"
}
events: {
  broadcast = false
}
loggers: {
  disable = "libjanus_jsonlog.so"
}
""" % {"dir": self.dir, "lib": LIBDIR, "plugins": ",".join(plugins),
       "transports": ",".join(transports), "lo": rtp_lo, "hi": rtp_lo + 99})
        with open(os.path.join(self.dir, "janus.transport.http.jcfg"), "w") as f:
            f.write("""general: {
  json = "plain"
  base_path = "/janus"
  http = true
  port = %d
  ip = "127.0.0.1"
  https = false
}
admin: {
  admin_http = false
}
cors: {
}
""" % self.port)
        rooms = ""
        for rid, opt in self.rooms.items():
            rooms += """room-%d: {
  description = "test room %d"
  sampling_rate = 48000
  record = false
  allow_rtp_participants = %s
  audiolevel_event = true
  audio_active_packets = 25
  audio_level_average = 55
%s}
""" % (rid, rid, "false" if opt.get("allow_rtp") is False else "true",
       ('  pin = "%s"\n' % opt["pin"]) if opt.get("pin") else "")
        with open(os.path.join(self.dir, "janus.plugin.audiobridge.jcfg"), "w") as f:
            f.write('general: {\n  local_ip = "127.0.0.1"\n  rtp_port_range = "%d-%d"\n}\n'
                    % (rtp_lo + 100, rtp_lo + 199) + rooms)

    def start(self, timeout=20):
        self.write_config()
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["janus", "-F", self.dir, "-C",
                                      os.path.join(self.dir, "janus.jcfg")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("janus exited:\n" + self.read_log())
            try:
                r = requests.get("http://127.0.0.1:%d/janus/info" % self.port, timeout=1)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("janus did not start:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


class JanusClient:
    """Janus HTTP API: session + one audiobridge handle, with a background long-poll thread."""

    def __init__(self, url):
        self.url = url
        self.events = []
        self.cond = threading.Condition()
        self.stopped = False
        r = self._post(self.url, {"janus": "create"})
        self.session = r["data"]["id"]
        r = self._post("%s/%d" % (self.url, self.session),
                       {"janus": "attach", "plugin": "janus.plugin.audiobridge"})
        self.handle = r["data"]["id"]
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _post(self, url, body):
        body = dict(body)
        body["transaction"] = "%08x" % random.getrandbits(32)
        r = requests.post(url, json=body, timeout=10)
        r.raise_for_status()
        o = r.json()
        if o.get("janus") == "error":
            raise RuntimeError("janus error: %r" % o)
        return o

    def _poll(self):
        while not self.stopped:
            try:
                r = requests.get("%s/%d?maxev=10" % (self.url, self.session), timeout=40)
                evs = r.json()
            except (requests.RequestException, ValueError):
                if self.stopped:
                    return
                time.sleep(0.2)
                continue
            if isinstance(evs, dict):
                evs = [evs]
            with self.cond:
                self.events.extend(evs)
                self.cond.notify_all()

    def message(self, body):
        return self._post("%s/%d/%d" % (self.url, self.session, self.handle),
                          {"janus": "message", "body": body})

    def wait_event(self, pred, timeout=10):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    data = e.get("plugindata", {}).get("data")
                    if data is not None and pred(data):
                        return data
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("no matching Janus event; got %r" % self.events[-10:])
                self.cond.wait(left)

    def keepalive(self):
        self._post("%s/%d" % (self.url, self.session), {"janus": "keepalive"})

    def close(self):
        self.stopped = True
        try:
            self.message({"request": "leave"})
        except Exception:
            pass
        try:
            self._post("%s/%d/%d" % (self.url, self.session, self.handle), {"janus": "detach"})
            self._post("%s/%d" % (self.url, self.session), {"janus": "destroy"})
        except Exception:
            pass


def ogg_opus_packets(path):
    """The Opus packets of an Ogg/Opus file (minimal Ogg reader: pages → segments → packets),
    without the two header packets."""
    with open(path, "rb") as f:
        data = f.read()
    pos, packets, cur = 0, [], b""
    while pos + 27 <= len(data):
        if data[pos:pos + 4] != b"OggS":
            raise ValueError("not an Ogg page at %d" % pos)
        nseg = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + nseg]
        body = pos + 27 + nseg
        for lv in lacing:
            cur += data[body:body + lv]
            body += lv
            if lv < 255:
                packets.append(cur)
                cur = b""
        pos = body
    return [p for p in packets if not p.startswith(b"OpusHead") and not p.startswith(b"OpusTags")]


def encode_ogg_opus(wav, out):
    """Encodes a WAV to 48 kHz mono Ogg/Opus with 20 ms frames (ffmpeg's libopus)."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", wav, "-ac", "1", "-ar", "48000",
                    "-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20",
                    "-application", "voip", out], check=True)


class RtpSpeaker:
    """A plain-RTP AudioBridge participant that speaks an Ogg/Opus file in real time (from the
    UDP port it declared: Janus wants symmetric RTP)."""

    def __init__(self, janus_url, room, display, pin=None, audiolevel_ext=1):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.client = JanusClient(janus_url)
        body = {"request": "join", "room": room, "display": display,
                "rtp": {"ip": "127.0.0.1", "port": self.sock.getsockname()[1],
                        "payload_type": 111}}
        if audiolevel_ext:
            # RFC 6464 levels make Janus send talking/stopped-talking events, as for browsers.
            body["rtp"]["audiolevel_ext"] = audiolevel_ext
        self.ext = audiolevel_ext
        if pin:
            body["pin"] = pin
        self.client.message(body)
        joined = self.client.wait_event(lambda d: d.get("audiobridge") == "joined" and "rtp" in d)
        self.id = joined["id"]
        self.dest = (joined["rtp"]["ip"], joined["rtp"]["port"])
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.ssrc = random.getrandbits(32)
        self.thread = None
        self.stop_flag = False

    def _send(self, payload, marker=False, level=127):
        hdr = struct.pack("!BBHII", 0x90 if self.ext else 0x80, (0x80 if marker else 0) | 111,
                          self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, self.ssrc)
        if self.ext:
            # One-byte header extension: audio level in -dBov (0 loudest, 127 silence).
            hdr += struct.pack("!HHBBH", 0xBEDE, 1, (self.ext << 4) | 0, level, 0)
        self.sock.sendto(hdr + payload, self.dest)
        self.seq += 1
        self.ts += 960

    def speak(self, packets, repeat=1, gap_s=1.0):
        """Sends the packets (20 ms each) in real time on a thread, `repeat` times with silence
        gaps; returns at once."""
        silence = b"\xf8\xff\xfe"  # an Opus 20 ms silence (CELT) frame

        def run():
            t0 = time.monotonic()
            n = 0
            for r in range(repeat):
                seq = [(p, 20) for p in packets] + [(silence, 127)] * int(gap_s / 0.02)
                for p, level in seq:
                    if self.stop_flag:
                        return
                    self._send(p, marker=(n == 0), level=level)
                    n += 1
                    delay = t0 + n * 0.02 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self, timeout=120):
        if self.thread:
            self.thread.join(timeout)

    def close(self):
        self.stop_flag = True
        self.wait(5)
        self.client.close()
        self.sock.close()


def sentence_packets(directory, sentence):
    """A sentence spoken by flite, as the 20 ms Opus packets an RtpSpeaker sends."""
    wav, opus = os.path.join(str(directory), "s.wav"), os.path.join(str(directory), "s.opus")
    subprocess.run(["flite", "-t", sentence, "-o", wav], check=True)
    encode_ogg_opus(wav, opus)
    return ogg_opus_packets(opus)


def bot_body(janus, room, bot_name="hark-notes", **kw):
    """POST /bots body for a hark bot in one of this Janus' rooms."""
    body = {"platform": "janus", "native_meeting_id": str(room), "meeting_url": janus.url,
            "bot_name": bot_name}
    body.update(kw)
    return body
