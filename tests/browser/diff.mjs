// The differential view: a baseline taken while the `switch` workload runs
// alpha, compared with an interval while it runs beta: beta red (grew),
// alpha blue (shrank), with a legend; the URL keeps the baseline.
// usage: node diff.mjs URL [OUTDIR (for a screenshot)]
import { launch } from "./launch.mjs";

const [url, outdir] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.goto(url);
  // The baseline is an interval of alpha alone (most of the graph), and the
  // view compared with it one of beta alone: waiting on what the graph shows
  // rather than on the clock keeps a slow start or browser from comparing an
  // interval that straddles the switch.
  await page.waitForFunction((share) => {
    const bars = window.rsProfile.bars();
    const root = bars.find((b) => b.depth === 0);
    return root && bars.some((b) => b.name === "alpha" && b.w >= share * root.w);
  }, 0.8, { timeout: 20000, polling: 200 });
  await page.click("#pause");
  await page.waitForTimeout(300);
  await page.keyboard.press("c");
  await page.waitForFunction(() => window.rsProfile.baseline() !== null, null, { timeout: 5000 });
  const base = await page.evaluate(() => window.rsProfile.baseline());
  // Into the beta phase (the second half of the workload's run).
  await page.click("#live");
  await page.waitForFunction((share) => {
    const bars = window.rsProfile.bars();
    const root = bars.find((b) => b.depth === 0);
    return root && bars.some((b) => b.name === "beta" && b.delta !== null && b.w >= share * root.w);
  }, 0.8, { timeout: 20000, polling: 200 });
  const out = await page.evaluate(() => {
    const pick = (n) => window.rsProfile.bars().filter((b) => b.name === n)
      .sort((a, b) => b.w - a.w)[0] || null;
    const rgb = (c) => (c.match(/\d+/g) || []).map(Number);
    const a = pick("alpha"), b = pick("beta");
    return { alpha: a && { delta: a.delta, rgb: rgb(a.color) }, beta: b && { delta: b.delta, rgb: rgb(b.color) },
             legend: document.getElementById("legend").textContent, hash: location.hash };
  });
  if (outdir) await page.screenshot({ path: outdir + "/diff.png" });
  console.log(JSON.stringify({ base, ...out }));
} finally {
  await browser.close();
}
