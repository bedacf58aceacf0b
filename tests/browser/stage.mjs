// The live page as a speaker uses it, in headless Chromium (Debian's, via
// playwright-core). Run while a feed of the `mix` workload (alpha, beta) is
// live for ~25 s at 0.5 s intervals.
// usage: node stage.mjs URL OUTDIR
// Prints one JSON line with what each check found; the Rust test asserts.
import { launch } from "./launch.mjs";

const [url, outdir] = process.argv.slice(2);
if (!url || !outdir) {
  console.error("usage: node stage.mjs URL OUTDIR");
  process.exit(2);
}
const browser = await launch();
const out = {};
const shown = (page) => page.evaluate(() => Number(document.body.dataset.shown));
const waitShown = (page, n, timeout = 20000) =>
  page.waitForFunction((n) => Number(document.body.dataset.shown) >= n, n, { timeout });
const bars = (page) => page.evaluate(() => window.rsProfile.bars());
async function clickBar(page, name) {
  const box = await (await page.$("#fg")).boundingBox();
  const b = (await bars(page)).find((b) => b.name === name);
  await page.mouse.click(box.x + b.x + b.w / 2, box.y + b.y + b.h / 2);
}

try {
  // --- stage mode first, while the run is young: ?chrome=0&theme=dark ---
  const stage = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await stage.goto(url + (url.includes("?") ? "&" : "?") + "chrome=0&theme=dark");
  await waitShown(stage, 1);
  out.stage_controls_visible = await stage.evaluate(() =>
    ["header", "#timeline", "#legend", "#pause", "#search"].some((s) => {
      const e = document.querySelector(s);
      return e && e.offsetParent !== null;
    }));
  out.stage_label_px = await stage.evaluate(() => window.rsProfile.layout().font);
  await stage.screenshot({ path: outdir + "/stage.png" });
  await stage.close();

  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await page.goto(url);
  await waitShown(page, 2);

  // --- zoom while live survives three updates ---
  await clickBar(page, "alpha");
  out.zoom_path = await page.evaluate(() => document.body.dataset.zoom);
  const before = await shown(page);
  await waitShown(page, before + 3);
  out.zoom_after_updates = await page.evaluate(() => {
    const l = window.rsProfile.layout();
    const a = window.rsProfile.bars().find((b) => b.name === "alpha");
    return { unzoom_shown: l.zoom !== 0, alpha_width_pct: a ? 100 * a.w / (l.width - 20) : 0 };
  });

  // --- search survives updates ---
  await page.keyboard.press("Escape");
  await page.keyboard.press("/");
  await page.keyboard.type("beta");
  await page.keyboard.press("Escape");
  const before2 = await shown(page);
  await waitShown(page, before2 + 2);
  out.search_after_updates = await page.evaluate(() =>
    window.rsProfile.bars().filter((b) => b.name === "beta" && b.color === "#e600e6").length);

  // --- keyboard: space pauses; left steps back; header matches ---
  await page.keyboard.press(" ");
  out.paused_status = await page.textContent("#status");
  const live_index = await page.evaluate(() => document.body.dataset.index);
  await page.keyboard.press("ArrowLeft");
  await page.waitForFunction((i) => document.body.dataset.index !== i, live_index, { timeout: 10000 });
  await page.keyboard.press("ArrowLeft");
  await page.waitForFunction((i) => Number(document.body.dataset.index) <= Number(i) - 2, live_index,
                             { timeout: 10000 });
  out.step = await page.evaluate(async () => {
    const i = Number(document.body.dataset.index);
    const hist = await (await fetch("history.json")).json();
    const s = hist.find((h) => h.index === i);
    return {
      index: i,
      header_idx: document.getElementById("idx").textContent,
      header_time: document.getElementById("time").textContent,
      want_time: s ? s.start.toFixed(2) + "s - " + s.end.toFixed(2) + "s" : null,
    };
  });

  // --- drag on the timeline merges a range ---
  const box = await (await page.$("#timeline")).boundingBox();
  const n = await page.evaluate(() => Math.max(60, 1));
  await page.mouse.move(box.x + 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.04, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => (document.body.dataset.index || "").includes("-"), null,
                             { timeout: 10000 });
  out.range = await page.evaluate(() => ({
    index: document.body.dataset.index,
    header_idx: document.getElementById("idx").textContent,
  }));

  // --- the run ends: the last graph stays, with a badge ---
  await page.click("#live");
  await page.waitForFunction(() => document.body.dataset.ended === "1", null, { timeout: 60000 });
  await page.waitForTimeout(1000);
  out.after_end = {
    bars: (await bars(page)).length,
    badge: await page.evaluate(() => getComputedStyle(document.getElementById("badge")).display),
    status: await page.textContent("#status"),
  };
  await page.screenshot({ path: outdir + "/ended.png" });
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ...out, error: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
