// The live page follows a profiler restarted on the same port: it shows the
// first run, says when it ended, and then (on its own, no reload from here)
// shows the next run's graphs.
// usage: node reconnect.mjs URL
// Prints "ended" once the page says the first run ended, then waits (the
// caller starts the second run) and prints one JSON line:
// {"first": RUN, "second": RUN, "shown": N}.
import { launch } from "./launch.mjs";

const [url] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.goto(url + "?theme=dark&chrome=0");
  await page.waitForFunction(() => Number(document.body.dataset.shown) >= 1, null, { timeout: 20000 });
  const first = await page.evaluate(() => document.body.dataset.run);
  await page.waitForFunction(() => document.body.dataset.ended === "1", null, { timeout: 30000 });
  console.log("ended");
  await page.waitForFunction((old) => document.body.dataset.run && document.body.dataset.run !== old &&
    Number(document.body.dataset.shown) >= 1 && document.body.dataset.ended === "0",
    first, { timeout: 30000, polling: 250 });
  const second = await page.evaluate(() => document.body.dataset.run);
  const shown = Number(await page.evaluate(() => document.body.dataset.shown));
  console.log(JSON.stringify({ first, second, shown }));
} finally {
  await browser.close();
}
