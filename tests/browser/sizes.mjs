// The live page on any stage: at 1280x720, 1920x1080 and 3840x2160, light
// and dark, with and without controls, the whole graph fits the window
// (root bar on screen, inside the viewport), labels are at least 14 px and
// cut on the right; the table's totals are the graph's; the search shows
// its share; a view (interval, zoom, search, table) survives a reload from
// its URL. Run while a feed of a deep-stack program is live.
// usage: node sizes.mjs URL OUTDIR
// Prints one JSON line; the Rust test asserts.
import { launch } from "./launch.mjs";

const [url, outdir] = process.argv.slice(2);
const browser = await launch();
const out = { sizes: [] };
const sep = url.includes("?") ? "&" : "?";
const waitShown = (page, n) =>
  page.waitForFunction((n) => Number(document.body.dataset.shown) >= n, n, { timeout: 20000 });
try {
  for (const [w, h] of [[1280, 720], [1920, 1080], [3840, 2160]]) {
    for (const q of ["chrome=0&theme=dark", "theme=light"]) {
      const page = await browser.newPage({ viewport: { width: w, height: h } });
      await page.goto(url + sep + q);
      await waitShown(page, 2);
      const r = await page.evaluate(() => {
        const l = window.rsProfile.layout(), bars = window.rsProfile.bars();
        const c = document.getElementById("fg").getBoundingClientRect();
        const labels = bars.filter((b) => b.label);
        return {
          layout: l,
          canvas: [c.left, c.top, c.width, c.height],
          viewport: [innerWidth, innerHeight],
          labels: labels.length,
          dotted: labels.filter((b) => b.label.startsWith("..")).length,
          // A cut label is its name's start and an ellipsis.
          badcut: labels.filter((b) => b.label !== b.name &&
            !(b.label.endsWith("\u2026") && b.name.startsWith(b.label.slice(0, -1)))).length,
          deepest: Math.max(...bars.map((b) => b.depth)),
          graph_depth: window.rsProfile.depth(),
        };
      });
      r.size = w + "x" + h + " " + q;
      const name = outdir + "/" + w + "x" + h + "-" + (q.includes("dark") ? "dark" : "light") + ".png";
      await page.screenshot({ path: name });
      out.sizes.push(r);
      await page.close();
    }
  }

  // Table, search share and the URL, at 1280x720 with controls.
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.goto(url);
  await waitShown(page, 2);
  await page.click("#pause");
  await page.waitForTimeout(400);
  await page.keyboard.press("t");
  await page.waitForFunction(() => document.querySelectorAll("#table tr").length > 3, null, { timeout: 5000 });
  out.table = await page.evaluate(() => {
    const rows = window.rsProfile.table();
    return { self_sum: rows.reduce((t, r) => t + r.self, 0), total: window.rsProfile.layout().total,
             shown_rows: document.querySelectorAll("#table tr").length - 1 };
  });
  await page.keyboard.press("/");
  await page.keyboard.type("level_5[0-9]$");
  await page.keyboard.press("Escape");
  out.search = await page.evaluate(() => ({
    text: document.getElementById("matched").textContent,
    share: window.rsProfile.layout().matched / window.rsProfile.layout().total,
  }));
  // Zoom on a bar, then reload from the URL.
  const box = await (await page.$("#fg")).boundingBox();
  const b = await page.evaluate(() => window.rsProfile.bars().find((b) => b.name === "level_50"));
  await page.mouse.click(box.x + b.x + b.w / 2, box.y + b.y + b.h / 2);
  await page.waitForTimeout(200);
  const before = await page.evaluate(() => ({
    hash: location.hash, index: document.body.dataset.index, zoom: window.rsProfile.layout().zoom,
    search: document.getElementById("search").value, view: document.body.dataset.view }));
  const again = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await again.goto(url + before.hash);
  await waitShown(again, 1);
  await again.waitForTimeout(500);
  const after = await again.evaluate(() => ({
    index: document.body.dataset.index, zoom: window.rsProfile.layout().zoom,
    search: document.getElementById("search").value, view: document.body.dataset.view,
    status: document.getElementById("status").textContent }));
  out.url = { before, after };
  await again.screenshot({ path: outdir + "/restored.png" });
  // The sandwich of a function, from its row in the table.
  await again.fill("#search", "");
  await again.dispatchEvent("#search", "input");
  await again.click("#table td.name[title='level_50']");
  await again.waitForTimeout(300);
  out.sandwich = await again.evaluate(() => {
    const l = window.rsProfile.layout(), bars = window.rsProfile.bars();
    const mid = bars.find((b) => b.name === "level_50" && b.depth === 0);
    const row = window.rsProfile.table().find((r) => r.name === "level_50");
    return { sandwich: l.sandwich, function_total: l.function_total, table_total: row ? row.total : null,
             callers: bars.filter((b) => b.y < mid.y).map((b) => b.name),
             callees: bars.filter((b) => b.y > mid.y + 1).map((b) => b.name), hash: location.hash };
  });
  await again.screenshot({ path: outdir + "/sandwich.png" });
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ...out, error: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
