// Entry point: hash routes → pages, the header (navigation, connection state, sign-out).
import { getKey, clearKey, live } from "./api.js";
import { toast } from "./ui.js";
import { signIn, meetingsPage, meetingPage, newMeetingPage, analyticsPage } from "./pages.js";

const main = document.getElementById("main");
const top = document.getElementById("top");
const conn = document.getElementById("conn");
let cleanup = null;

const routes = [
  [/^#\/meetings$/, () => meetingsPage(main), "meetings"],
  [/^#\/m\/([^/]+)\/([^/]+)\/(\d+)$/, (p) => meetingPage(main, {
    platform: decodeURIComponent(p[1]), native: decodeURIComponent(p[2]), id: p[3] }), "meetings"],
  [/^#\/new$/, () => newMeetingPage(main), "new"],
  [/^#\/analytics$/, () => analyticsPage(main), "analytics"],
];

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash || "#/meetings";
  if (!getKey()) {
    top.hidden = true;
    live.stop();
    if (hash !== "#/signin") {
      location.replace("#/signin");
      return;
    }
    signIn(main);
    return;
  }
  if (hash === "#/signin") {
    location.replace("#/meetings");
    return;
  }
  top.hidden = false;
  live.start();
  for (const [re, page, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of top.querySelectorAll("[data-nav]"))
      a.toggleAttribute("aria-current", a.dataset.nav === nav) && a.setAttribute("aria-current", "page");
    const r = page(m);
    cleanup = typeof r === "function" ? r : null;
    return;
  }
  location.replace("#/meetings");
}

live.addEventListener("state", (e) => {
  conn.dataset.state = e.detail;
  conn.querySelector(".label").textContent = e.detail;
});
live.addEventListener("unauthorized", () => {
  toast("Your API key is no longer accepted: sign in again", "error");
  signOut();
});

function signOut() {
  clearKey();
  live.stop();
  toast("Signed out");
  location.hash = "#/signin";
}
document.getElementById("signout").addEventListener("click", signOut);
addEventListener("hashchange", route);
route();
