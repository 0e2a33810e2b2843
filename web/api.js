// REST calls with the stored API key, and the one /ws connection shared by every page.
const KEY = "hark.apiKey";

export const getKey = () => localStorage.getItem(KEY) || "";
export const setKey = (k) => localStorage.setItem(KEY, k);
export const clearKey = () => localStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

// fetch() with X-API-Key; JSON in and out. Throws ApiError with the server's detail.
export async function api(method, path, body, { key = getKey(), raw = false } = {}) {
  const headers = { "X-API-Key": key };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached");
  }
  if (!res.ok) {
    let detail = "";
    try {
      detail = (await res.json()).detail;
    } catch { /* not JSON */ }
    throw new ApiError(res.status, detail || `${res.status} ${res.statusText}`);
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

export const mpath = (m) =>
  `${encodeURIComponent(m.platform)}/${encodeURIComponent(m.native_meeting_id ?? m.native_id)}`;

// The live connection: subscriptions survive reconnects; reconnecting backs off 1 s → 10 s and
// tells listeners ("reconnected") so that pages catch up from REST.
class Live extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.state = "offline";
    this.subs = new Map(); // "platform/native" → count
    this.delay = 1000;
    this.timer = 0;
    this.wanted = false;
    this.everOpen = false;
    addEventListener("online", () => this.wanted && this.reconnectNow());
    addEventListener("offline", () => this.setState("offline"));
  }
  setState(s) {
    if (s === this.state) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent("state", { detail: s }));
  }
  start() {
    this.wanted = true;
    if (!this.ws) this.connect();
  }
  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    this.subs.clear();
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.everOpen = false;
    this.setState("offline");
  }
  reconnectNow() {
    clearTimeout(this.timer);
    this.delay = 1000;
    if (!this.ws) this.connect();
    else if (this.ws.readyState === WebSocket.OPEN) this.setState("live");
  }
  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws?api_key=${encodeURIComponent(getKey())}`);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 1000;
      const again = this.everOpen;
      this.everOpen = true;
      this.setState("live");
      this.sendSubs("subscribe", [...this.subs.keys()]);
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ action: "ping" }), 25000);
      if (again) this.dispatchEvent(new Event("reconnected"));
    };
    ws.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      if (f.type === "error" && f.error === "unauthorized") this.dispatchEvent(new Event("unauthorized"));
      this.dispatchEvent(new CustomEvent("frame", { detail: f }));
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      if (!this.wanted || e.code === 4401) {
        this.setState("offline");
        return;
      }
      this.setState(navigator.onLine === false ? "offline" : "reconnecting");
      this.timer = setTimeout(() => this.wanted && this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }
  send(o) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(o));
  }
  sendSubs(action, keys) {
    if (!keys.length) return;
    const meetings = keys.map((k) => {
      const i = k.indexOf("/");
      return { platform: k.slice(0, i), native_id: k.slice(i + 1) };
    });
    for (let i = 0; i < meetings.length; i += 50)
      this.send({ action, meetings: meetings.slice(i, i + 50) });
  }
  // Subscribes to meetings ({platform, native_meeting_id}); returns the function that undoes it.
  subscribe(list) {
    const keys = list.map((m) => `${m.platform}/${m.native_meeting_id}`);
    const fresh = [];
    for (const k of keys) {
      const n = this.subs.get(k) || 0;
      this.subs.set(k, n + 1);
      if (!n) fresh.push(k);
    }
    this.sendSubs("subscribe", fresh);
    return () => {
      const gone = [];
      for (const k of keys) {
        const n = (this.subs.get(k) || 1) - 1;
        if (n) this.subs.set(k, n);
        else if (this.subs.delete(k)) gone.push(k);
      }
      this.sendSubs("unsubscribe", gone);
    };
  }
}

export const live = new Live();
