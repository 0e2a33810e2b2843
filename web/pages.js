// The dashboard's pages. Each takes the <main> element and route params, renders, and returns a
// cleanup function that the router calls when leaving the page.
import { api, ApiError, getKey, setKey, live, mpath } from "./api.js";
import { el, svg, toast, badge, fmtClock, fmtDate, meetingName, copyText } from "./ui.js";

const PLATFORMS = ["stream", "google_meet", "teams", "zoom", "janus", "sip"];

// ---- sign in ----

export function signIn(main) {
  const input = el("input", { id: "key", type: "password", autocomplete: "current-password", required: true,
    placeholder: "hk_…", spellcheck: "false" });
  const msg = el("p.error", { id: "signin-error", role: "alert" });
  const btn = el("button.btn", { type: "submit" }, "Sign in");
  const form = el("form.card.signin", { onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    msg.textContent = "";
    if (!key) return;
    btn.disabled = true;
    try {
      await api("GET", "/meetings?limit=1", undefined, { key });
      setKey(key);
      toast("Signed in");
      location.hash = "#/meetings";
    } catch (err) {
      const text = err.status === 401 ? "This API key was refused by the server." : err.message;
      msg.textContent = text;
      toast(`Sign-in failed: ${text}`, "error");
      input.focus();
      input.select();
    } finally {
      btn.disabled = false;
    }
  } },
  el("h1", "Sign in to hark"),
  el("p.muted", "Paste a user API key. It is kept in this browser only."),
  el("label", { for: "key" }, "API key"), input, msg,
  el("div.row", btn));
  main.replaceChildren(form);
  input.focus();
}

// ---- meetings list ----

export function meetingsPage(main) {
  const byId = new Map(); // id → {m, li}
  const order = [];
  let cursor = null, loading = false, done = false, unsub = () => {};
  const search = el("input", { id: "search", type: "search", placeholder: "Search by name", "aria-label": "Search meetings by name",
    autocomplete: "off", oninput: () => applyFilter(true) });
  const list = el("ul.list", { id: "meetings", "aria-label": "Meetings" });
  const empty = el("p.muted", { hidden: true });
  const more = el("button.btn.ghost", { type: "button", id: "more", onclick: () => loadMore() }, "Load more");
  main.replaceChildren(
    el("div.row", el("h1.grow", "Meetings"), el("a.btn", { href: "#/new" }, "New meeting")),
    el("div.card", search, list, empty, el("div.row.mt", more)));

  function row(m) {
    const a = el("a", { href: `#/m/${mpath(m)}/${m.id}` },
      el("span.name", meetingName(m)), badge(m.status),
      el("span.meta", `${m.platform} · ${m.native_meeting_id} · ${fmtDate(m.created_at)}`));
    return el("li", { dataset: { id: m.id } }, a);
  }
  const matches = (m, q) => !q || meetingName(m).toLowerCase().includes(q) || m.native_meeting_id.toLowerCase().includes(q);

  // Search-as-you-type over the loaded pages; while too few match, more pages are fetched.
  function applyFilter(fromTyping) {
    const q = search.value.trim().toLowerCase();
    let shown = 0;
    for (const id of order) {
      const { m, li } = byId.get(id);
      li.hidden = !matches(m, q);
      if (!li.hidden) shown++;
    }
    empty.hidden = shown > 0;
    empty.textContent = q ? `No meeting name contains “${search.value.trim()}”${done ? "" : " yet"}.` :
      "No meetings yet: start one from “New meeting”.";
    more.hidden = done;
    if (fromTyping && q && shown < 20 && !done) loadMore();
  }

  async function loadMore() {
    if (loading || done) return;
    loading = true;
    more.disabled = true;
    try {
      const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const page = await api("GET", `/meetings?limit=50${q}`);
      for (const m of page.meetings) {
        if (byId.has(m.id)) continue;
        const li = row(m);
        byId.set(m.id, { m, li });
        order.push(m.id);
        list.append(li);
      }
      cursor = page.next_cursor;
      done = !cursor;
      const prev = unsub;
      unsub = live.subscribe(order.map((id) => byId.get(id).m));
      prev();
    } catch (err) {
      toast(`Could not load meetings: ${err.message}`, "error");
    } finally {
      loading = false;
      more.disabled = false;
    }
    applyFilter(true);
  }

  // Reload from the top (after reconnects, or a status for a meeting not listed yet).
  async function refresh() {
    byId.clear();
    order.length = 0;
    list.replaceChildren();
    cursor = null;
    done = false;
    await loadMore();
  }

  const onFrame = (e) => {
    const f = e.detail;
    if (f.type !== "meeting.status") return;
    const hit = byId.get(f.meeting.id);
    if (!hit) {
      refresh();
      return;
    }
    hit.m.status = f.payload.status;
    const li = row(hit.m);
    li.hidden = hit.li.hidden;
    hit.li.replaceWith(li);
    hit.li = li;
  };
  live.addEventListener("frame", onFrame);
  live.addEventListener("reconnected", refresh);
  loadMore().then(() => performance.mark("hark-ready"));
  return () => {
    live.removeEventListener("frame", onFrame);
    live.removeEventListener("reconnected", refresh);
    unsub();
  };
}

// ---- one meeting ----

export function meetingPage(main, { platform, native, id }) {
  const segs = new Map();
  let meeting = null, unsub = () => {}, stick = true, raf = 0, closed = false;
  const title = el("h1", { id: "title", tabindex: "-1" }, native);
  const status = el("span", { id: "status" });
  const box = el("div.transcript", { id: "transcript", tabindex: "0", "aria-label": "Transcript", "aria-live": "off" });
  const jump = el("button.btn.jump", { type: "button", hidden: true, onclick: () => {
    stick = true;
    box.scrollTop = box.scrollHeight;
    jump.hidden = true;
  } }, "Jump to latest ↓");
  const nameIn = el("input", { id: "name", maxlength: 200, autocomplete: "off" });
  const notesIn = el("textarea", { id: "notes" });
  const stopBtn = el("button.btn.danger", { type: "button", id: "stop", onclick: stop }, "Stop");
  const q = `?meeting_id=${id}`;
  const path = `${encodeURIComponent(platform)}/${encodeURIComponent(native)}`;
  const info = el("dl.kv");

  main.replaceChildren(
    el("p", el("a", { href: "#/meetings" }, "← Meetings")),
    el("div.row", el("div.grow", title), status, stopBtn),
    info,
    el("h2", "Transcript"),
    el("div.card", box, jump),
    el("div.row.mt", { role: "group", "aria-label": "Export transcript" },
      el("span.muted", "Export:"),
      ...["txt", "srt", "vtt", "json"].map((f) =>
        el("button.btn.ghost", { type: "button", dataset: { format: f }, onclick: () => exportAs(f) }, f.toUpperCase()))),
    el("h2", "Details"),
    el("form.card", { id: "edit", onsubmit: save },
      el("label", { for: "name" }, "Name"), nameIn,
      el("label", { for: "notes" }, "Notes"), notesIn,
      el("div.row.mt", el("button.btn", { type: "submit" }, "Save"))));

  box.addEventListener("scroll", () => {
    stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    if (stick) jump.hidden = true;
  });

  function showMeeting(m) {
    meeting = m;
    title.textContent = meetingName(m);
    status.replaceChildren(badge(m.status));
    stopBtn.disabled = m.status === "completed" || m.status === "failed";
    info.replaceChildren(
      el("dt", "Platform"), el("dd", m.platform),
      el("dt", "Meeting id"), el("dd", m.native_meeting_id),
      el("dt", "Created"), el("dd", fmtDate(m.created_at)),
      el("dt", "Started"), el("dd", fmtDate(m.start_time)),
      el("dt", "Ended"), el("dd", fmtDate(m.end_time)));
    if (document.activeElement !== nameIn) nameIn.value = (m.data && m.data.name) || "";
    if (document.activeElement !== notesIn) notesIn.value = (m.data && m.data.notes) || "";
  }

  function upsert(list) {
    for (const s of list) segs.set(s.segment_id, s);
    if (!raf) raf = requestAnimationFrame(render);
  }

  // Consecutive segments of one speaker form a turn, headed by the speaker and the start time.
  function render() {
    raf = 0;
    const sorted = [...segs.values()].sort((a, b) => a.start - b.start || (a.segment_id < b.segment_id ? -1 : 1));
    const turns = [];
    for (const s of sorted) {
      const who = s.speaker || "Unknown speaker";
      const last = turns[turns.length - 1];
      if (last && last.who === who) last.segs.push(s);
      else turns.push({ who, segs: [s] });
    }
    box.replaceChildren(...(turns.length ? turns.map((t) => el("div.turn",
      el("div", el("span.who", t.who), el("span.when", fmtClock(t.segs[0].start))),
      el("p", ...t.segs.map((s) => el("span.seg" + (s.completed ? "" : ".mutable"),
        { dataset: { id: s.segment_id }, title: `${fmtClock(s.start)}–${fmtClock(s.end)}` }, s.text + " "))))) :
      [el("p.muted", "No transcript yet. It appears here as people speak.")]));
    if (stick) box.scrollTop = box.scrollHeight;
    else if (turns.length) jump.hidden = false;
  }

  async function catchUp() {
    try {
      const t = await api("GET", `/transcripts/${path}${q}`);
      if (closed) return;
      const { segments, ...m } = t;
      showMeeting(m);
      upsert(segments);
      if (!raf) raf = requestAnimationFrame(render);
    } catch (err) {
      toast(`Could not load the transcript: ${err.message}`, "error");
    }
  }

  const onFrame = (e) => {
    const f = e.detail;
    if (!f.meeting || f.meeting.id !== Number(id)) return;
    if (f.type === "transcript.mutable") upsert(f.payload.segments);
    else if (f.type === "meeting.status" && meeting) {
      const m = { ...meeting, status: f.payload.status };
      showMeeting(m);
      toast(`Meeting is now ${f.payload.status.replace(/_/g, " ")}`);
      if (f.payload.status === "completed" || f.payload.status === "failed") catchUp();
    }
  };

  async function save(e) {
    e.preventDefault();
    const data = { name: nameIn.value.trim() || null, notes: notesIn.value.trim() || null };
    try {
      const m = await api("PATCH", `/meetings/${path}${q}`, { data });
      nameIn.blur();
      notesIn.blur();
      showMeeting(m);
      toast("Saved");
    } catch (err) {
      toast(`Could not save: ${err.message}`, "error");
    }
  }

  async function stop() {
    if (!confirm(`Stop “${title.textContent}”? Transcription ends now.`)) return;
    stopBtn.disabled = true;
    try {
      const r = await api("DELETE", `/bots/${path}`);
      toast(r.detail || "Meeting stopped");
      if (r.meeting && r.meeting.id === Number(id)) showMeeting(r.meeting);
    } catch (err) {
      stopBtn.disabled = false;
      toast(`Could not stop: ${err.message}`, "error");
    }
  }

  async function exportAs(fmt) {
    try {
      const res = await api("GET", `/transcripts/${path}${q}&format=${fmt}`, undefined, { raw: true });
      const blob = await res.blob();
      const name = `${platform}-${native}-${id}.${fmt}`.replace(/[^A-Za-z0-9._-]/g, "_");
      const a = el("a", { href: URL.createObjectURL(blob), download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      toast(`Exported ${name}`);
    } catch (err) {
      toast(`Export failed: ${err.message}`, "error");
    }
  }

  live.addEventListener("frame", onFrame);
  live.addEventListener("reconnected", catchUp);
  unsub = live.subscribe([{ platform, native_meeting_id: native }]);
  render();
  catchUp();
  return () => {
    closed = true;
    live.removeEventListener("frame", onFrame);
    live.removeEventListener("reconnected", catchUp);
    unsub();
    cancelAnimationFrame(raf);
  };
}

// ---- new meeting ----

export function newMeetingPage(main) {
  const platform = el("select", { id: "platform" }, ...PLATFORMS.map((p) => el("option", { value: p }, p)));
  const ident = el("input", { id: "native", autocomplete: "off", placeholder: "standup-2026-01-05 or 1234" });
  const urlIn = el("input", { id: "url", type: "url", autocomplete: "off", placeholder: "https://…" });
  const urlRow = el("div", el("label", { for: "url" }, "Meeting URL"), urlIn);
  const pin = el("input", { id: "pin", autocomplete: "off", inputmode: "numeric" });
  const lang = el("select", { id: "language" }, el("option", { value: "en" }, "English (en)"));
  const botName = el("input", { id: "botname", autocomplete: "off", placeholder: "hark" });
  const pinRow = el("div", el("label", { for: "pin" }, "PIN / passcode"), pin);
  const botRow = el("div", el("label", { for: "botname" }, "Bot name"), botName);
  const result = el("div", { id: "result" });
  const hint = el("p.muted");
  const btn = el("button.btn", { type: "submit" }, "Start");
  const sync = () => {
    const stream = platform.value === "stream";
    pinRow.hidden = botRow.hidden = urlRow.hidden = stream;
    hint.textContent = stream ? "A stream meeting: you send the audio to its ingest URL with its token." :
      platform.value === "janus" ? "A bot joins the AudioBridge room (its number) on the Janus server at the URL." :
      "A bot joins the meeting by its id or URL.";
  };
  platform.addEventListener("change", sync);
  sync();

  async function submit(e) {
    e.preventDefault();
    let raw = ident.value.trim();
    const body = { platform: platform.value, language: lang.value };
    let url = platform.value === "stream" ? "" : urlIn.value.trim();
    if (/^https?:\/\//i.test(raw)) [url, raw] = [raw, ""];
    if (url) body.meeting_url = url;
    if (!raw && url) {
      try {
        raw = (new URL(url).pathname.split("/").filter(Boolean).pop() || "").replace(/[^A-Za-z0-9._:@-]/g, "-").slice(0, 256);
      } catch { /* the server names the bad field */ }
    }
    if (!raw) {
      toast("Give the meeting an id (or a URL to take it from)", "error");
      ident.focus();
      return;
    }
    body.native_meeting_id = raw;
    if (body.platform !== "stream") {
      if (pin.value.trim()) body.passcode = pin.value.trim();
      if (botName.value.trim()) body.bot_name = botName.value.trim();
    }
    btn.disabled = true;
    try {
      const m = await api("POST", "/bots", body);
      toast(`Started ${m.platform} meeting ${m.native_meeting_id}`);
      result.replaceChildren(el("div.card.mt",
        el("h2", "Meeting started"),
        m.meeting_token ? [
          el("p.muted", "Copy these now: the token is shown only once."),
          copyRow("token", "Meeting token", m.meeting_token),
          copyRow("ingest", "Ingest URL", m.ingest_url)] : [],
        el("p", el("a.btn", { href: `#/m/${mpath(m)}/${m.id}`, id: "open" }, "Open the meeting"))));
    } catch (err) {
      toast(err.status ? `The server refused: ${err.message}` : err.message, "error");
    } finally {
      btn.disabled = false;
    }
  }

  main.replaceChildren(el("h1", "New meeting"),
    el("form.card", { onsubmit: submit },
      el("label", { for: "platform" }, "Platform"), platform, hint,
      el("label", { for: "native" }, "Meeting id"), ident,
      urlRow, pinRow, botRow,
      el("label", { for: "language" }, "Language"), lang,
      el("div.row.mt", btn)),
    result);
  platform.focus();
}

function copyRow(id, label, value) {
  const input = el("input", { id, readonly: true, value });
  return el("div", el("label", { for: id }, label),
    el("div.copy", input, el("button.btn.ghost", { type: "button", "aria-label": `Copy ${label.toLowerCase()}`,
      onclick: () => copyText(value, label) }, "Copy")));
}

// ---- analytics ----

export async function analyticsPage(main) {
  main.replaceChildren(el("h1", "Analytics"), el("p.muted", "Loading…"));
  let a;
  try {
    a = await api("GET", `/analytics?days=30&tz_offset_minutes=${-new Date().getTimezoneOffset()}`);
  } catch (err) {
    toast(`Could not load analytics: ${err.message}`, "error");
    main.replaceChildren(el("h1", "Analytics"), el("p.error", err.message));
    return;
  }
  const tile = (id, v, k) => el("div.card.tile", { id }, el("div.v", String(v)), el("div.k", k));
  main.replaceChildren(
    el("h1", "Analytics"),
    el("div.tiles",
      tile("t-meetings", a.meetings_total, "meetings"),
      tile("t-month", a.meetings_per_day.reduce((s, d) => s + d.count, 0), "in the last 30 days"),
      tile("t-minutes", a.minutes_transcribed, "minutes transcribed (speech)"),
      tile("t-segments", a.segments, "transcript segments")),
    el("h2", `Meetings per day (${a.from} – ${a.to})`),
    el("div.card", dayChart(a.meetings_per_day)),
    el("div.tiles.mt",
      el("div.card", el("h2.mt0", "By platform"), hbars("by-platform", a.by_platform)),
      el("div.card", el("h2.mt0", "By status"), hbars("by-status", a.by_status))));
}

function dayChart(days) {
  const W = 600, H = 160, pad = 22, max = Math.max(1, ...days.map((d) => d.count));
  const bw = (W - pad) / days.length;
  const g = svg("svg", { viewBox: `0 0 ${W} ${H + 18}`, class: "chart", role: "img", id: "per-day",
    "aria-label": `Meetings per day: ${days.filter((d) => d.count).map((d) => `${d.date}: ${d.count}`).join(", ") || "none"}` });
  g.append(svg("line", { x1: pad, y1: H, x2: W, y2: H, class: "axis" }));
  g.append(svg("text", { x: 0, y: 10 }, document.createTextNode(String(max))));
  days.forEach((d, i) => {
    const h = (d.count / max) * (H - 12);
    const r = svg("rect", { x: pad + i * bw + 1, y: H - h, width: Math.max(1, bw - 2), height: h, class: "bar" });
    r.append(svg("title", {}, document.createTextNode(`${d.date}: ${d.count}`)));
    g.append(r);
    if (i % 7 === 0 || i === days.length - 1)
      g.append(svg("text", { x: pad + i * bw, y: H + 14 }, document.createTextNode(d.date.slice(5))));
  });
  return g;
}

function hbars(id, counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return el("p.muted", { id }, "No meetings yet.");
  const max = Math.max(...entries.map((e) => e[1]));
  return el("ul.hbars", { id }, ...entries.map(([k, n]) => {
    const s = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true" },
      svg("rect", { x: 0, y: 0, height: 10, width: Math.max(1, (n / max) * 100) }));
    return el("li", { dataset: { key: k } }, el("span", k.replace(/_/g, " ")), s, el("span.n", String(n)));
  }));
}

export { ApiError, getKey };
