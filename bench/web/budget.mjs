// Measures the dashboard's first load: `node budget.mjs <base_url> <api_key> <runs>`; prints JSON.
import { launch } from "../../tests/web/browser.mjs";

const [base, key, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const browser = await launch();

async function load(context, page, reload = false) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  let bytes = 0, requests = 0;
  cdp.on("Network.loadingFinished", (e) => { bytes += e.encodedDataLength; requests++; });
  cdp.on("Network.webSocketCreated", () => { requests++; });
  const t0 = Date.now();
  if (reload) await page.reload({ waitUntil: "domcontentloaded" });
  else await page.goto(`${base}/#/meetings`, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => performance.getEntriesByName("hark-ready").length > 0, null, { timeout: 10000 });
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return { dcl: nav.domContentLoadedEventEnd, ready: performance.getEntriesByName("hark-ready")[0].startTime,
      rows: document.querySelectorAll("#meetings li").length };
  });
  await page.waitForTimeout(200); // let the last loadingFinished events arrive
  return { bytes, requests, wall: Date.now() - t0, ...timing };
}

const samples = [];
let warm = 0;
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext();
  await context.addInitScript((k) => localStorage.setItem("hark.apiKey", k), key);
  const page = await context.newPage();
  const s = await load(context, page);
  if (s.rows < 50) throw new Error(`only ${s.rows} meetings rendered`);
  samples.push(s);
  if (i === 0) warm = (await load(context, page, true)).bytes;
  await context.close();
}
await browser.close();
const med = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(JSON.stringify({
  runs, samples,
  max_bytes: Math.max(...samples.map((s) => s.bytes)),
  requests: samples[0].requests,
  median_dcl_ms: med(samples.map((s) => s.dcl)),
  median_interactive_ms: med(samples.map((s) => s.ready)),
  max_interactive_ms: Math.max(...samples.map((s) => s.ready)),
  warm_bytes: warm,
}));
