// A real browser participant in a Janus AudioBridge room, for tests/api/test_bots_browser.py:
// `node audiobridge-participant.mjs <demo_page_url> <display_name> <wav>`.
// Opens Janus' AudioBridge demo page (janus-demos) in Debian's Chromium with a fake microphone
// that loops the WAV, clicks Start, registers under the display name and waits until Janus
// receives its audio. Prints one JSON line per event on stdout:
//   {"event":"joined","id":<janus participant id>,"ms":<time to join>}
//   {"event":"left","console_errors":[…],"leave_errors":[…]}   after a line "leave" (or EOF) on
//     stdin; leave_errors are those logged after clicking Stop (the page reloads itself then,
//     which aborts janus.js' pending long poll: "Probably a network error, is the server down?")
//   {"event":"error","error":"…","console_errors":[…],"log":[…]}   then exits 1
// Console errors the demo page always produces are left out of console_errors: the 404 of the
// bootstrap-slider assets Debian does not ship, and janus.js' "No iceServers defined" (it still
// connects over host candidates).
import readline from "node:readline";
import { launch } from "./browser.mjs";

const [pageUrl, display, wav] = process.argv.slice(2);
if (!pageUrl || !display || !wav) {
  console.error("usage: audiobridge-participant.mjs <demo_page_url> <display_name> <wav>");
  process.exit(2);
}

const harmless = [/No iceServers defined/];
const consoleErrors = [];
const log = []; // the page's last console lines, for the error report
let joinedId = null;
let receiving = false;
const waiters = [];

function emit(o) {
  process.stdout.write(JSON.stringify(o) + "\n");
}

function onLine(text) {
  log.push(text);
  if (log.length > 60) log.shift();
  const m = /Successfully joined room \d+ with ID (\d+)/.exec(text);
  if (m) joinedId = Number(m[1]);
  if (/Janus started receiving our audio/.test(text)) receiving = true;
  for (const w of waiters.splice(0)) w();
}

// Resolves when cond() holds (checked after every console line), rejects after ms.
function until(cond, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    const check = () => {
      if (cond()) {
        clearTimeout(timer);
        resolve();
      } else {
        waiters.push(check);
      }
    };
    check();
  });
}

// The first line on stdin (or its end) tells us to leave.
const leaveAsked = new Promise((resolve) => {
  const rl = readline.createInterface({ input: process.stdin });
  rl.once("line", resolve);
  rl.once("close", resolve);
});

const t0 = Date.now();
const browser = await launch([
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  `--use-file-for-fake-audio-capture=${wav}`,
  "--autoplay-policy=no-user-gesture-required",
]);
let code = 0;
let beforeLeave = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  page.on("console", (m) => {
    const text = m.text();
    onLine(text);
    if (m.type() !== "error" || harmless.some((re) => re.test(text))) return;
    const url = (m.location() && m.location().url) || "";
    if (/status of 404/.test(text) && /bootstrap-slider/.test(url)) return;
    consoleErrors.push(url ? `${text} (${url})` : text);
  });
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on("dialog", (d) => {
    consoleErrors.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });

  try {
    await page.goto(pageUrl);
    await page.click("#start");
    await page.locator("#username").waitFor({ state: "visible" });
    await page.fill("#username", display);
    await page.click("#register");
    await until(() => joinedId !== null && receiving, 30000, "Janus to receive our audio");
    emit({ event: "joined", id: joinedId, ms: Date.now() - t0 });

    await leaveAsked;
    beforeLeave = consoleErrors.splice(0);
    // The demo's Stop button destroys the Janus session (the participant leaves the room), then
    // the page reloads itself.
    const reloaded = page.waitForEvent("load", { timeout: 10000 });
    await page.click("#start");
    await reloaded;
    emit({ event: "left", console_errors: beforeLeave, leave_errors: consoleErrors });
  } catch (e) {
    emit({ event: "error", error: String((e && e.message) || e),
      console_errors: [...beforeLeave, ...consoleErrors], log });
    code = 1;
  }
} finally {
  await browser.close();
}
process.exit(code);
