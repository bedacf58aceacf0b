// Drives the live flame graph in headless Chromium: waits for two frame
// updates, pauses, clicks a frame to zoom, and saves a screenshot.
// usage: node feed.mjs URL SCREENSHOT.png
// Prints one JSON line: {"shown": N, "zoomed": bool, "frame": "..."}.
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node feed.mjs URL SCREENSHOT.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.shown) >= 2, null, { timeout: 20000 });
  const shown = Number(await page.evaluate(() => document.body.dataset.shown));
  await page.click("#pause");
  // Let a swap already under way finish before picking the visible frame.
  await page.waitForTimeout(500);
  const frame = await (await page.$("#stage iframe:not(.back)")).contentFrame();
  const target = frame.locator("g", { has: frame.locator("title", { hasText: /^alpha \(/ }) }).first();
  await target.click();
  const zoomed = await frame.$eval("#unzoom", (e) => !e.classList.contains("hide"));
  const label = await target.locator("title").textContent();
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ shown, zoomed, frame: label }));
} finally {
  await browser.close();
}
