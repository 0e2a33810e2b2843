// DOM helpers, toasts and formatting shared by the pages.

// el("a.btn", {href: "#"}, "text", child…): tag with optional .classes, attributes, children.
export function el(spec, attrs, ...kids) {
  const [tag, ...cls] = spec.split(".");
  const n = document.createElement(tag);
  if (cls.length) n.className = cls.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    kids.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(n.dataset, v);
    else if (k in n && typeof v !== "string") n[k] = v;
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids.flat()) if (c !== null && c !== undefined && c !== false) n.append(c);
  return n;
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...kids) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  for (const c of kids) n.append(c);
  return n;
}

export function toast(message, kind = "ok") {
  const box = document.getElementById("toasts");
  const t = el("div.toast" + (kind === "error" ? ".error" : ""), { role: kind === "error" ? "alert" : "status" },
    el("span.msg", message),
    el("button", { type: "button", "aria-label": "Dismiss", onclick: () => t.remove() }, "×"));
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
  return t;
}

export const badge = (status) => el("span.badge", { dataset: { status } }, status.replace(/_/g, " "));

export function fmtClock(sec) {
  sec = Math.max(0, Math.floor(sec || 0));
  const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, s = sec % 60;
  const p = (x) => String(x).padStart(2, "0");
  return `${p(h)}:${p(m)}:${p(s)}`;
}

export function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export const meetingName = (m) => (m.data && m.data.name) || m.native_meeting_id;

export async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied`);
  } catch {
    toast(`Could not copy the ${what.toLowerCase()}: select it and copy by hand`, "error");
  }
}
