"""Server CPU per segment update with many speaker events in the meeting (assign_speaker cost).
usage: bench/pipeline/speakers.py HARK_BIN [distinct]  (a one-off measurement, not in make bench)
  default: 10,000 speaker turns of 20 people, then 200 updates of one segment at the end
  distinct: 3,000 people talking at once (distinct names, all intervals overlap the segment),
            then 20 updates of a segment they overlap"""
import asyncio, json, os, sys, subprocess, tempfile, time, re
sys.path.insert(0, "/work/main/tests/api")
import requests, websockets
hark = sys.argv[1]
DISTINCT = len(sys.argv) > 2 and sys.argv[2] == "distinct"
d = tempfile.mkdtemp()
p = subprocess.Popen([hark, "serve", "--port", "0", "--data-dir", d, "--admin-token", "adm-" + "x"*30,
                      "--asr", "none", "--access-log", "false"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
port = None
for line in p.stdout:
    m = re.search(r"msg=ready.*\bport=(\d+)", line)
    if m: port = int(m.group(1)); break
H = "http://127.0.0.1:%d" % port
A = {"X-Admin-API-Key": "adm-" + "x"*30}
u = requests.post(H + "/admin/users", headers=A, json={"email": "a@b.c"}).json()
tok = requests.post(H + "/admin/users/%d/tokens" % u["id"], headers=A).json()["token"]
m = requests.post(H + "/bots", headers={"X-API-Key": tok}, json={"platform": "stream", "native_meeting_id": "s1"}).json()
def cpu():
    f = open("/proc/%d/stat" % p.pid).read().split(")")[-1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
async def main():
    ws = await websockets.connect(m["ingest_url"], max_size=None)
    await ws.send(json.dumps({"uid": "u", "token": m["meeting_token"], "audio_format": "int16"}))
    await ws.recv()
    if DISTINCT:
        for i in range(3000):
            await ws.send(json.dumps({"type": "speaker_activity", "payload": {"event_type": "SPEAKER_START", "participant_name": "P%04d" % i, "relative_client_timestamp_ms": 4000 * 1000}}))
    names = ["Speaker%d" % i for i in range(20)]
    for i in range(0 if DISTINCT else 10000):   # 10,000 speaker turns, 20 people, 0.5 s each
        n = names[i % 20]
        await ws.send(json.dumps({"type": "speaker_activity", "payload": {"event_type": "SPEAKER_START", "participant_name": n, "relative_client_timestamp_ms": i * 500}}))
        await ws.send(json.dumps({"type": "speaker_activity", "payload": {"event_type": "SPEAKER_END", "participant_name": n, "relative_client_timestamp_ms": i * 500 + 450}}))
    await ws.send(json.dumps({"type": "segments", "segments": [{"start": 0, "end": 0.1, "text": "sync", "completed": False}]}))
    await asyncio.sleep(1.0)
    c0, t0 = cpu(), time.time()
    N = 20 if DISTINCT else 200
    for k in range(N):  # a mutable segment growing at the end of the meeting
        await ws.send(json.dumps({"type": "segments", "segments": [{"start": 4990.0, "end": 4990.5 + k * 0.01, "text": "w" * (k + 1), "completed": False}]}))
    await ws.send(json.dumps({"type": "segments", "segments": [{"start": 1.0, "end": 1.1, "text": "end", "completed": False}]}))
    await asyncio.sleep(2.0)
    c1 = cpu()
    what = "3,000 people talking at once" if DISTINCT else "10,000 speaker intervals"
    print("%s: %d segment updates with %s: server CPU %.2f ms per update" % (hark, N, what, 1000 * (c1 - c0 - 0.0) / N))
    await ws.close()
asyncio.run(main())
p.terminate(); p.wait()
