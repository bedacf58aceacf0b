// The heat map (FlameScope's view): with 0.2 s intervals, five rows a
// second; a drag from one cell to a cell in a later second selects every
// interval between them, and the graph shown holds exactly their samples.
// usage: node heat.mjs URL OUTDIR
import { launch } from "./launch.mjs";

const [url, outdir] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.shown) >= 1, null, { timeout: 20000 });
  await page.keyboard.press("h");
  // Three seconds of intervals on the map.
  await page.waitForFunction(() => window.rsProfile.heat().cells.length >= 15, null,
                             { timeout: 20000, polling: 250 });
  await page.click("#pause");
  // Paused, the map holds still; once its gaps are filled, take a drag.
  await page.waitForFunction(() => {
    const c = window.rsProfile.heat().cells;
    return c.every((x, i) => i === 0 || x.index === c[i - 1].index + 1);
  }, null, { timeout: 10000, polling: 250 });
  await page.waitForTimeout(300);
  const heat = await page.evaluate(() => window.rsProfile.heat());
  const cells = heat.cells;
  const a = cells[1], b = cells[Math.min(cells.length - 1, 8)];
  const box = await (await page.$("#tl")).boundingBox();
  await page.mouse.move(box.x + a.x + a.w / 2, box.y + a.y + a.h / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + b.x + b.w / 2, box.y + b.y + b.h / 2, { steps: 6 });
  await page.mouse.up();
  await page.waitForFunction(() => (document.body.dataset.index || "").includes("-"), null, { timeout: 10000 });
  await page.waitForTimeout(300);
  const hist = await page.evaluate(async () => (await (await fetch("history.json")).json()));
  const [lo, hi] = (await page.evaluate(() => document.body.dataset.index)).split("-").map(Number);
  const want = hist.filter((h) => h.index >= lo && h.index <= hi).reduce((t, h) => t + h.interval_samples, 0);
  const total = await page.evaluate(() => window.rsProfile.layout().total);
  await page.screenshot({ path: outdir + "/heat.png" });
  console.log(JSON.stringify({ cells: cells.map((c) => [c.index, Math.round(c.x), Math.round(c.y)]), rows: heat.grid.rows, cols: heat.grid.cols, a: a.index, b: b.index,
    range: [lo, hi], cells_x: [a.x, b.x], total, want, hash: await page.evaluate(() => location.hash) }));
} finally {
  await browser.close();
}
