// Drives the live flame graph in headless Chromium: waits for two frame
// updates, pauses, clicks a bar to zoom, and saves a screenshot.
// usage: node feed.mjs URL SCREENSHOT.png
// Prints one JSON line: {"shown": N, "zoomed": bool, "frame": "...", "details": "..."}.
import { launch } from "./launch.mjs";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node feed.mjs URL SCREENSHOT.png");
  process.exit(2);
}
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.shown) >= 2, null, { timeout: 20000 });
  const shown = Number(await page.evaluate(() => document.body.dataset.shown));
  await page.click("#pause");
  // Let a load already under way finish before picking a bar.
  await page.waitForTimeout(500);
  const box = await (await page.$("#fg")).boundingBox();
  const alpha = await page.evaluate(() => window.rsProfile.bars().find((b) => b.name === "alpha"));
  await page.mouse.move(box.x + alpha.x + alpha.w / 2, box.y + alpha.y + alpha.h / 2);
  const details = await page.textContent("#details");
  await page.mouse.click(box.x + alpha.x + alpha.w / 2, box.y + alpha.y + alpha.h / 2);
  const zoomed = await page.evaluate(() => {
    const l = window.rsProfile.layout(), a = window.rsProfile.bars().find((b) => b.name === "alpha");
    return l.zoom !== 0 && a && a.w >= l.width - 21;
  });
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ shown, zoomed, frame: alpha.name, details }));
} finally {
  await browser.close();
}
