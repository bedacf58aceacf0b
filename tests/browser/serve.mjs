// `profile serve rec.rsprof`: the page of a recording. Waits for the page's
// first graph, then drags the timeline from its first interval to its last
// and reads the merged graph.
// usage: node serve.mjs URL
// Prints one JSON line: {"intervals": N, "samples": S, "range": KEY, "range_total": T, "status": "..."}.
import { launch } from "./launch.mjs";

const [url] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.shown) >= 1, null, { timeout: 20000 });
  const hist = await page.evaluate(async () => (await (await fetch("history.json")).json()));
  const box = await (await page.$("#timeline")).boundingBox();
  const slot = box.width / Math.max(hist.length, 60);
  await page.mouse.move(box.x + slot / 2, box.y + 20);
  await page.mouse.down();
  await page.mouse.move(box.x + slot * (hist.length - 0.5), box.y + 20, { steps: 8 });
  await page.mouse.up();
  await page.waitForFunction(() => (document.body.dataset.index || "").includes("-"), null, { timeout: 10000 });
  await page.waitForTimeout(300);
  const r = await page.evaluate(() => ({ range: document.body.dataset.index,
    range_total: window.rsProfile.layout().total, status: document.getElementById("status").textContent }));
  console.log(JSON.stringify({ intervals: hist.length,
    samples: hist.reduce((t, h) => t + h.interval_samples, 0), ...r }));
} finally {
  await browser.close();
}
