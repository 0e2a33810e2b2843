// Launches Debian's Chromium through playwright-core (no browser download).
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.HARK_CHROMIUM || "/usr/bin/chromium";

// extraArgs: more Chromium switches (the AudioBridge participant adds its fake microphone).
export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", ...extraArgs],
  });
}
