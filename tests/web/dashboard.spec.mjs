// The dashboard in a real browser: `node dashboard.spec.mjs <base_url> <api_key> <outdir>`.
// Signs in (a wrong key first), creates a stream meeting and writes outdir/stream.json with its
// token and ingest URL (the Python test streams a LibriVox clip into it), watches the transcript
// grow live, exports SRT, renames the meeting, stops it and sees the status change without a
// reload, and checks analytics. Every step saves a screenshot into outdir. Prints one JSON line
// ({"ok": …, "steps": […], "console_errors": […]}) and exits 0 only when every step passed.
import fs from "node:fs";
import path from "node:path";
import { launch } from "./browser.mjs";

const [base, key, outdir] = process.argv.slice(2);
if (!base || !key || !outdir) {
  console.error("usage: dashboard.spec.mjs <base_url> <api_key> <outdir>");
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });

const steps = [];
const consoleErrors = [];
// Responses the scenario provokes on purpose: the browser logs them as console errors.
const expected = [/status of 401/, /status of 422/];
let n = 0;

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, acceptDownloads: true });
const page = await context.newPage();
page.on("console", (m) => {
  if (m.type() === "error" && !expected.some((re) => re.test(m.text()))) consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
page.on("dialog", (d) => d.accept());
page.setDefaultTimeout(15000);

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    steps.push({ name, ok: true, ms: Date.now() - t0 });
  } catch (e) {
    steps.push({ name, ok: false, ms: Date.now() - t0, error: String(e && e.message || e) });
    throw e;
  } finally {
    n++;
    await page.screenshot({ path: path.join(outdir, `${String(n).padStart(2, "0")}-${name}.png`), fullPage: true })
      .catch(() => {});
  }
}

const native = `dash-${Date.now().toString(36)}`;
let meetingId = 0;
let ok = false;
try {
  await step("signin-page", async () => {
    await page.goto(base + "/");
    await page.locator("#key").waitFor();
    assert(page.url().endsWith("#/signin"), `not on the sign-in page: ${page.url()}`);
  });

  await step("wrong-key-refused", async () => {
    await page.fill("#key", "hk_this_is_not_a_key");
    await page.click("form button[type=submit]");
    await page.locator("#signin-error").filter({ hasText: "refused" }).waitFor();
    assert(await page.evaluate(() => !localStorage.getItem("hark.apiKey")), "a wrong key was stored");
  });

  await step("signed-in", async () => {
    await page.fill("#key", key);
    await page.click("form button[type=submit]");
    await page.waitForURL(/#\/meetings$/);
    await page.locator("#search").waitFor();
    await page.locator("#conn[data-state=live]").waitFor();
  });

  await step("bot-refused-with-server-message", async () => {
    await page.click("a[data-nav=new]");
    await page.selectOption("#platform", "zoom");
    await page.fill("#native", "8812345678");
    await page.click("form button[type=submit]");
    await page.locator(".toast.error").filter({ hasText: /not supported/i }).first().waitFor();
    // A Janus bot needs the server's URL: the server's 422 names the field.
    await page.selectOption("#platform", "janus");
    await page.fill("#native", "1234");
    await page.click("form button[type=submit]");
    await page.locator(".toast.error").filter({ hasText: /meeting_url/ }).first().waitFor();
  });

  await step("stream-meeting-created", async () => {
    await page.selectOption("#platform", "stream");
    await page.fill("#native", native);
    await page.click("form button[type=submit]");
    await page.locator("#token").waitFor();
    const token = await page.inputValue("#token");
    const ingest = await page.inputValue("#ingest");
    assert(token.split(".").length === 3, "meeting_token is not a JWT");
    assert(/^ws:\/\/.*\/ws\/audio$/.test(ingest), `ingest_url ${ingest}`);
    const href = await page.getAttribute("#open", "href");
    meetingId = Number(href.split("/").pop());
    fs.writeFileSync(path.join(outdir, "stream.json"), JSON.stringify({ native, token, ingest, id: meetingId }));
  });

  await step("transcript-live", async () => {
    await page.click("#open");
    await page.locator("#title").filter({ hasText: native }).waitFor();
    await page.evaluate(() => { window.__noReload = 1; });
    // Words appear while the clip streams (mutable first, then completed).
    await page.waitForFunction(() => {
      const t = [...document.querySelectorAll("#transcript .seg")].map((s) => s.textContent.trim()).join(" ");
      return t.split(/\s+/).filter(Boolean).length >= 3;
    }, null, { timeout: 90000 });
    await page.locator("#status .badge[data-status=active]").waitFor();
  });

  await step("export-srt", async () => {
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("button[data-format=srt]")]);
    const file = path.join(outdir, "transcript.srt");
    await dl.saveAs(file);
    const srt = fs.readFileSync(file, "utf8");
    assert(/^1\r?\n\d{2,}:\d{2}:\d{2},\d{3} --> \d{2,}:\d{2}:\d{2},\d{3}\r?\n\S/.test(srt), `bad SRT: ${srt.slice(0, 200)}`);
    assert(dl.suggestedFilename().endsWith(".srt"), dl.suggestedFilename());
  });

  await step("name-edited", async () => {
    await page.fill("#name", "Dashboard test meeting");
    await page.fill("#notes", "written by the browser test");
    await page.click("#edit button[type=submit]");
    await page.locator(".toast").filter({ hasText: "Saved" }).first().waitFor();
    await page.locator("#title").filter({ hasText: "Dashboard test meeting" }).waitFor();
    const r = await page.request.get(`${base}/meetings/${meetingId}`, { headers: { "X-API-Key": key } });
    const m = await r.json();
    assert(m.data.name === "Dashboard test meeting" && m.data.notes === "written by the browser test",
      `PATCH not stored: ${JSON.stringify(m.data)}`);
  });

  await step("stopped-live", async () => {
    await page.click("#stop");
    await page.locator("#status .badge[data-status=completed]").waitFor();
    assert(await page.evaluate(() => window.__noReload === 1), "the page reloaded");
  });

  await step("meetings-search", async () => {
    await page.click("a[data-nav=meetings]");
    await page.locator(`#meetings li[data-id="${meetingId}"] .badge[data-status=completed]`).waitFor();
    await page.fill("#search", "dashboard TEST");
    await page.locator(`#meetings li[data-id="${meetingId}"]:not([hidden])`).waitFor();
    await page.fill("#search", "no-such-meeting-name");
    await page.locator(`#meetings li[data-id="${meetingId}"]`).waitFor({ state: "hidden" });
    await page.fill("#search", "");
  });

  await step("analytics", async () => {
    await page.click("a[data-nav=analytics]");
    await page.locator("#t-meetings .v").waitFor();
    const total = Number(await page.textContent("#t-meetings .v"));
    assert(total >= 1, `analytics shows ${total} meetings`);
    await page.locator('#by-status li[data-key=completed]').waitFor();
    await page.locator('#by-platform li[data-key=stream]').waitFor();
    await page.locator(`#per-day rect.bar:not([height="0"])`).first().waitFor();
  });

  await step("narrow-360", async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.click("a[data-nav=meetings]");
    await page.locator("#meetings li").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert(overflow <= 0, `page is ${overflow}px wider than a 360px screen`);
  });

  await step("offline-indicator", async () => {
    await context.setOffline(true);
    await page.locator("#conn[data-state=offline]").waitFor();
    await context.setOffline(false);
    await page.locator("#conn[data-state=live]").waitFor({ timeout: 20000 });
  });

  await step("sign-out", async () => {
    await page.click("#signout");
    await page.locator("#key").waitFor();
    assert(await page.evaluate(() => !localStorage.getItem("hark.apiKey")), "key kept after sign-out");
  });
  ok = consoleErrors.length === 0;
} catch {
  ok = false;
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok, steps, console_errors: consoleErrors }));
process.exit(ok ? 0 : 1);
