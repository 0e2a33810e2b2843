#!/usr/bin/env node
// Recognition load for bench/pipeline: streams WAV audio (16 kHz mono int16) through hark's
// /ws/audio and records what comes back; the analysis is done by bench/pipeline/run.
//
// mode "throughput": for each job (one clip = one session, one meeting) in turn: connect, send the
//   whole clip at once in 0.5 s frames (every clip is < 30 s, the server's per-session queue, so
//   nothing is dropped), END_OF_AUDIO, wait for the server to close the session after its final
//   results. With "parallel": true all jobs run at once instead. Records wall time per job, the
//   completed segments' text (from the session's WhisperLive-shaped replies) and the server's CPU.
// mode "realtime": every stream at once, each in real time: its audio (clips joined by gap_s of
//   low noise, repeated until loop_s, then tail_s of noise) is cut in chunk_ms chunks and chunk k
//   (audio [k·c, (k+1)·c)) is sent at T0 + (k+1)·c, as a live capture would. A /ws subscriber
//   (one connection per 100 meetings) records, per segment_id, when its first frame, first
//   non-empty text and completed frame arrived, with the final start/end. Audio time x of a stream
//   corresponds to wall time T0 + x. The server places a session's first sample on the meeting
//   timeline when its first chunk arrives, one chunk after T0 (the meeting's origin being the
//   session's start, ~T0), so timeline position p is wall time T0 - c + p: that (T0 - c) is
//   reported as the stream's T0. After the audio, END_OF_AUDIO; the time until the server
//   closes the session is the backlog drain.
//
// Usage: node recog.js CONFIG.json → JSON on stdout, progress on stderr.
'use strict';
const fs = require('fs');
const path = require('path');
const {performance} = require('perf_hooks');
const WebSocket = require(path.join(__dirname, 'node-ref', 'node_modules', 'ws'));

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const ORIGIN = performance.timeOrigin;
const nowMs = () => ORIGIN + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write('  [recog] ' + a.join(' ') + '\n');
const RATE = 16000;

function procCpuS(pid) {
    const s = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (parseInt(f[11], 10) + parseInt(f[12], 10)) / 100;
}
function procRssKb(pid) {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/' + pid + '/status', 'utf8'));
    return m ? parseInt(m[1], 10) : 0;
}

function machineBusyS() {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100;
}

// 16 kHz mono int16 PCM of a WAV file (as an Int16Array copy).
const wavCache = new Map();
function readWav(file) {
    if (wavCache.has(file)) return wavCache.get(file);
    const b = fs.readFileSync(file);
    if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE')
        throw new Error(file + ': not a WAV file');
    let off = 12, fmt = null, data = null;
    while (off + 8 <= b.length) {
        const id = b.toString('ascii', off, off + 4), len = b.readUInt32LE(off + 4);
        if (id === 'fmt ') fmt = {ch: b.readUInt16LE(off + 10), rate: b.readUInt32LE(off + 12),
                                  bits: b.readUInt16LE(off + 22)};
        if (id === 'data') data = b.subarray(off + 8, off + 8 + len);
        off += 8 + len + (len & 1);
    }
    if (!fmt || !data || fmt.ch !== 1 || fmt.rate !== RATE || fmt.bits !== 16)
        throw new Error(file + ': need 16 kHz mono 16-bit PCM');
    const pcm = new Int16Array(data.length >> 1);
    for (let i = 0; i < pcm.length; i++) pcm[i] = data.readInt16LE(i * 2);
    wavCache.set(file, pcm);
    return pcm;
}

// Deterministic low noise (uniform ±20, about -68 dBFS) between sentences: a quiet room. (±100
// made PocketSphinx hear words in the pauses.)
let seed = 12345;
function noise(n) {
    const a = new Int16Array(n);
    for (let i = 0; i < n; i++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        a[i] = (seed % 41) - 20;
    }
    return a;
}

function concat(parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Int16Array(n);
    let o = 0;
    for (const p of parts) {
        out.set(p, o);
        o += p.length;
    }
    return out;
}

// A stream's audio and where each clip's samples lie on its timeline.
function buildStream(st) {
    const parts = [], clips = [];
    let t = 0;
    const gap = Math.round((st.gap_s || 0) * RATE);
    do {
        for (const f of st.clips) {
            const pcm = readWav(f);
            clips.push({file: path.basename(f), start_s: t / RATE, end_s: (t + pcm.length) / RATE});
            parts.push(pcm);
            t += pcm.length;
            if (gap) {
                parts.push(noise(gap));
                t += gap;
            }
        }
    } while (t / RATE < (st.loop_s || 0));
    const tail = Math.round((st.tail_s || 0) * RATE);
    if (tail) parts.push(noise(tail));
    return {pcm: concat(parts), clips};
}

const toBuf = (pcm, a, b) => Buffer.from(pcm.buffer, pcm.byteOffset + a * 2, (b - a) * 2);

function openWs(url, headers) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, {headers, perMessageDeflate: false, maxPayload: 64 << 20});
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
    });
}

// Opens an ingest session; resolves {ws, ready, finals, closed (promise of {code, at})}.
async function openSession(job, uid) {
    const ws = await openWs(cfg.ingest_url);
    const s = {ws, finals: new Map(), status: null, error: null};
    s.closed = new Promise((resolve) => ws.on('close', (code, reason) =>
        resolve({code, reason: reason.toString(), at: nowMs()})));
    ws.on('error', (e) => {
        s.error = e.message;
    });
    const first = new Promise((resolve) => ws.once('message', (d) => resolve(JSON.parse(d.toString()))));
    ws.send(JSON.stringify({uid, token: job.token, language: 'en', task: 'transcribe',
                            audio_format: 'int16', sample_rate: RATE, use_vad: true}));
    const reply = await first;
    s.ready = reply.message === 'SERVER_READY';
    s.reply = reply;
    ws.on('message', (d) => {
        const o = JSON.parse(d.toString());
        if (o.status === 'ERROR' || o.status === 'WAIT') s.error = s.error || JSON.stringify(o);
        for (const seg of o.segments || [])
            if (seg.completed) s.finals.set(seg.start, seg.text);
    });
    return s;
}

async function throughputJob(job, i) {
    const pcm = readWav(job.clip);
    const t0 = nowMs();
    const s = await openSession(job, 'tput-' + i);
    if (!s.ready) return {clip: path.basename(job.clip), error: JSON.stringify(s.reply)};
    const step = RATE / 2;
    for (let a = 0; a < pcm.length; a += step) s.ws.send(toBuf(pcm, a, Math.min(pcm.length, a + step)));
    s.ws.send(Buffer.from('END_OF_AUDIO'));
    const c = await s.closed;
    const keys = [...s.finals.keys()].sort((x, y) => parseFloat(x) - parseFloat(y));
    return {clip: path.basename(job.clip), audio_s: pcm.length / RATE, wall_s: (c.at - t0) / 1000,
            close_code: c.code, error: s.error,
            text: keys.map((k) => s.finals.get(k)).filter((t) => t).join(' ')};
}

async function throughput() {
    const busy0 = machineBusyS();
    const me0 = process.cpuUsage();
    const cpu0 = procCpuS(cfg.server_pid);
    const t0 = nowMs();
    let results;
    if (cfg.parallel) {
        results = await Promise.all(cfg.jobs.map((j, i) => throughputJob(j, i)));
    } else {
        results = [];
        for (let i = 0; i < cfg.jobs.length; i++) results.push(await throughputJob(cfg.jobs[i], i));
    }
    const wall = (nowMs() - t0) / 1000;
    const cpu = procCpuS(cfg.server_pid) - cpu0;
    return {mode: 'throughput', parallel: !!cfg.parallel, wall_s: wall, server_cpu_s: cpu,
            other_cpu_s: machineBusyS() - busy0 - cpu -
                (process.cpuUsage(me0).user + process.cpuUsage(me0).system) / 1e6, jobs: results,
            server_rss_kb: procRssKb(cfg.server_pid)};
}

async function realtime() {
    const streams = cfg.streams.map((st) => Object.assign({}, st, buildStream(st)));
    const byMeeting = new Map(); // meeting key → stream
    for (const st of streams) {
        st.segs = new Map();
        byMeeting.set(st.platform + '/' + st.native_id, st);
    }
    // subscribers first, so no frame is missed
    const subs = [];
    for (let i = 0; i < streams.length; i += 100) {
        const ws = await openWs(cfg.ws_url, {'X-API-Key': cfg.api_key});
        const part = streams.slice(i, i + 100);
        const ok = new Promise((resolve) => ws.once('message', (d) => resolve(JSON.parse(d.toString()))));
        ws.send(JSON.stringify({action: 'subscribe',
                                meetings: part.map((s) => ({platform: s.platform, native_id: s.native_id}))}));
        const r = await ok;
        if (r.type !== 'subscribed') throw new Error('subscribe failed: ' + JSON.stringify(r));
        ws.on('message', (d) => {
            const at = nowMs();
            const o = JSON.parse(d.toString());
            if (o.type !== 'transcript.mutable') return;
            const st = byMeeting.get(o.meeting.platform + '/' + o.meeting.native_id);
            if (!st) return;
            for (const seg of o.payload.segments) {
                let e = st.segs.get(seg.segment_id);
                if (!e) {
                    e = {id: seg.segment_id, first_at: at, first_text_at: null, completed_at: null,
                         start: seg.start, end: seg.end, text: '', frames: 0};
                    st.segs.set(seg.segment_id, e);
                }
                e.frames++;
                if (seg.text && e.first_text_at === null) e.first_text_at = at;
                if (seg.completed && e.completed_at === null) e.completed_at = at;
                e.start = seg.start;
                e.end = seg.end;
                e.text = seg.text;
            }
        });
        subs.push(ws);
    }
    const chunk = Math.round((cfg.chunk_ms * RATE) / 1000);
    const cpu0 = procCpuS(cfg.server_pid);
    const busy0 = machineBusyS();
    const me0 = process.cpuUsage();
    const tStart = nowMs();
    await Promise.all(streams.map(async (st, i) => {
        await sleep((i * 1000) / Math.max(1, streams.length)); // staggered starts within 1 s
        const s = await openSession(st, 'rt-' + i);
        st.ready = s.ready;
        st.reply = s.reply;
        if (!s.ready) return;
        const T0 = nowMs();
        st.T0 = T0;
        let lateMax = 0;
        for (let k = 0; k * chunk < st.pcm.length; k++) {
            const due = T0 + ((k + 1) * chunk * 1000) / RATE;
            const wait = due - nowMs();
            if (wait > 0) await sleep(wait);
            else lateMax = Math.max(lateMax, -wait);
            s.ws.send(toBuf(st.pcm, k * chunk, Math.min(st.pcm.length, (k + 1) * chunk)));
        }
        st.send_late_max_ms = lateMax;
        const tEnd = nowMs();
        s.ws.send(Buffer.from('END_OF_AUDIO'));
        const c = await s.closed;
        st.drain_s = (c.at - tEnd) / 1000;
        st.close_code = c.code;
        st.error = s.error;
    }));
    const wall = (nowMs() - tStart) / 1000;
    const cpu = procCpuS(cfg.server_pid) - cpu0;
    const me = process.cpuUsage(me0);
    const other = machineBusyS() - busy0 - cpu - (me.user + me.system) / 1e6;
    await sleep(cfg.settle_ms || 500);
    for (const ws of subs) ws.terminate();
    return {
        mode: 'realtime', wall_s: wall, server_cpu_s: cpu, other_cpu_s: other,
        client_cpu_s: (me.user + me.system) / 1e6, server_rss_kb: procRssKb(cfg.server_pid),
        streams: streams.map((st) => ({
            native_id: st.native_id, ready: st.ready, reply: st.ready ? undefined : st.reply,
            T0: st.T0 - cfg.chunk_ms, audio_s: st.pcm.length / RATE, clips: st.clips, drain_s: st.drain_s,
            close_code: st.close_code, error: st.error, send_late_max_ms: st.send_late_max_ms,
            segments: [...st.segs.values()],
        })),
    };
}

(cfg.mode === 'throughput' ? throughput() : realtime()).then((r) => {
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
}, (e) => {
    process.stderr.write('recog: ' + (e.stack || e) + '\n');
    process.exit(1);
});
