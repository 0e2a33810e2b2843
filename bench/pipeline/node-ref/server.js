#!/usr/bin/env node
// Reference fan-out server for bench/pipeline: the same live fan-out as hark's /ws/audio → /ws,
// done the minimal way on Node.js and the npm `ws` package.
//
//   GET /ws/audio  a publisher: first text frame {"uid", "token", ...} where token names the
//                  meeting ("<platform>/<native_id>", no JWT), answered with SERVER_READY; then
//                  {"type":"segments","segments":[{start,end,text,completed,speaker?,language?}]}.
//                  Each message updates the meeting's live segments (identity: session + start,
//                  as in hark) and is framed ONCE as hark's transcript.mutable JSON frame (same
//                  fields), and that one buffer is sent to every subscriber of the meeting.
//   GET /ws        a subscriber: X-API-Key header or ?api_key= must equal --api-key;
//                  {"action":"subscribe","meetings":[{platform,native_id}]} → {"type":"subscribed"},
//                  then the meeting's frames.
//
// No persistence, no speakers, no token crypto: strictly less work than hark does per update.
// Usage: node server.js --port 0 --api-key KEY   (prints "msg=ready port=N" on stdout)
'use strict';
const http = require('http');
const path = require('path');
const WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));

const args = process.argv.slice(2);
function arg(name, dflt) {
    const i = args.indexOf('--' + name);
    return i >= 0 ? args[i + 1] : dflt;
}
const API_KEY = arg('api-key', 'bench');
const PORT = parseInt(arg('port', '0'), 10);

const meetings = new Map(); // "platform/native_id" → {id, platform, native_id, subs:Set, meta}
let nextMeetingId = 1;
let nextSessionId = 1;
const t0 = Date.now();

function meeting(platform, nativeId) {
    const key = platform + '/' + nativeId;
    let m = meetings.get(key);
    if (!m) {
        m = {id: nextMeetingId++, platform, native_id: nativeId, subs: new Set()};
        m.meta = {id: m.id, platform, native_id: nativeId};
        meetings.set(key, m);
    }
    return m;
}

function iso(ms) {
    return new Date(ms).toISOString();
}

function onPublisher(ws) {
    let m = null;
    let sessionId = 0;
    let uid = '';
    const seqByStart = new Map();
    ws.on('message', (data, isBinary) => {
        if (isBinary) {
            if (m && data.length === 12 && data.toString() === 'END_OF_AUDIO') ws.close(1000);
            return; // audio is not recognised here
        }
        let o;
        try {
            o = JSON.parse(data.toString());
        } catch (e) {
            ws.send(JSON.stringify({uid, status: 'ERROR', message: 'invalid JSON message'}));
            ws.close(1008);
            return;
        }
        if (!m) {
            uid = String(o.uid || '');
            const tok = String(o.token || '');
            const slash = tok.indexOf('/');
            if (slash <= 0) {
                ws.send(JSON.stringify({uid, status: 'ERROR', message: 'invalid token'}));
                ws.close(1008);
                return;
            }
            m = meeting(tok.slice(0, slash), tok.slice(slash + 1));
            sessionId = nextSessionId++;
            ws.send(JSON.stringify({uid, message: 'SERVER_READY', backend: 'external',
                                    session_id: sessionId, meeting_id: m.id}));
            return;
        }
        if (o.type !== 'segments' || !Array.isArray(o.segments)) return;
        const now = Date.now();
        const segs = [];
        for (const s of o.segments) {
            if (typeof s.start !== 'number' || typeof s.end !== 'number' ||
                typeof s.text !== 'string' || s.end < s.start) {
                ws.send(JSON.stringify({uid, status: 'ERROR', message: 'invalid segment'}));
                ws.close(1008);
                return;
            }
            let seq = seqByStart.get(s.start);
            if (seq === undefined) {
                seq = seqByStart.size;
                seqByStart.set(s.start, seq);
            }
            segs.push({
                segment_id: m.id + ':' + sessionId + ':' + seq,
                start: s.start,
                end: s.end,
                text: s.text,
                speaker: typeof s.speaker === 'string' ? s.speaker : null,
                language: typeof s.language === 'string' ? s.language : 'en',
                completed: s.completed === true,
                absolute_start_time: iso(t0 + s.start * 1000),
                absolute_end_time: iso(t0 + s.end * 1000),
                updated_at: iso(now),
            });
            if (s.completed === true) seqByStart.delete(s.start); // done: forget, like hark's store
        }
        if (m.subs.size === 0) return;
        // Encoded once; the same bytes go to every subscriber.
        const frame = Buffer.from(JSON.stringify({type: 'transcript.mutable', meeting: m.meta,
                                                  payload: {segments: segs}, ts: iso(now)}));
        for (const sub of m.subs)
            if (sub.readyState === WebSocket.OPEN) sub.send(frame, {binary: false});
    });
}

function onSubscriber(ws) {
    const mine = new Set();
    ws.on('message', (data) => {
        let o;
        try {
            o = JSON.parse(data.toString());
        } catch (e) {
            ws.send(JSON.stringify({type: 'error', error: 'invalid_json'}));
            return;
        }
        if (o.action === 'ping') {
            ws.send('{"type":"pong"}');
            return;
        }
        if ((o.action !== 'subscribe' && o.action !== 'unsubscribe') || !Array.isArray(o.meetings)) {
            ws.send(JSON.stringify({type: 'error', error: 'invalid_payload'}));
            return;
        }
        const out = [];
        for (const w of o.meetings) {
            const m = meeting(String(w.platform), String(w.native_id));
            if (o.action === 'subscribe') {
                m.subs.add(ws);
                mine.add(m);
            } else {
                m.subs.delete(ws);
                mine.delete(m);
            }
            out.push(m.meta);
        }
        ws.send(JSON.stringify({type: o.action === 'subscribe' ? 'subscribed' : 'unsubscribed',
                                meetings: out}));
    });
    ws.on('close', () => {
        for (const m of mine) m.subs.delete(ws);
    });
}

const wss = new WebSocket.WebSocketServer({noServer: true, perMessageDeflate: false,
                                           clientTracking: false});
const server = http.createServer((req, res) => {
    res.writeHead(404, {'Content-Type': 'application/json'});
    res.end('{"detail":"not found"}');
});
server.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/ws/audio') {
        wss.handleUpgrade(req, socket, head, onPublisher);
    } else if (u.pathname === '/ws') {
        const key = req.headers['x-api-key'] || u.searchParams.get('api_key');
        wss.handleUpgrade(req, socket, head, (ws) => {
            if (key !== API_KEY) {
                ws.send('{"type":"error","error":"unauthorized"}');
                ws.close(4401);
                return;
            }
            onSubscriber(ws);
        });
    } else {
        socket.destroy();
    }
});
server.listen(PORT, '127.0.0.1', () => {
    process.stdout.write('msg=ready port=' + server.address().port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
