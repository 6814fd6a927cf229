// The serve example's page in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Opens the page, loads the fixture photo, paints a mask with the mouse (and
// undoes a stroke), tries an empty prompt, runs the tiny model, waits for the previews and the
// result, checks the download link, cancels a long run, runs again and takes a screenshot.
//
//   node tools/browser/serve_page.mjs target/debug/examples/serve screenshot.png
//
// CHROMIUM names the browser (default /usr/bin/chromium).
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [serveBinary, screenshot] = process.argv.slice(2);
if (!serveBinary || !screenshot) {
  console.error("usage: node serve_page.mjs SERVE_BINARY SCREENSHOT.png");
  process.exit(2);
}
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const fixture = (p) => path.join(repo, "fixtures", p);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// Starts the server on a free port; resolves with it and its URL.
async function startServer() {
  // From the repository root, so that the page's title shows the fixture's relative path.
  const server = spawn(
    path.resolve(serveBinary),
    ["--model", "fixtures/models/pipeline_hd_painter", "--port", "0", "--preview-every", "1"],
    { cwd: repo, stdio: ["ignore", "pipe", "inherit"] },
  );
  let text = "";
  const timer = setTimeout(() => server.kill(), 60_000);
  for await (const chunk of server.stdout) {
    text += chunk;
    const match = text.match(/listening on (http:\/\/\S+)/);
    if (match) {
      clearTimeout(timer);
      return { server, url: match[1] };
    }
  }
  throw new Error(`the server exited before listening: ${text}`);
}

// How many of the mask canvas's pixels are painted.
const painted = (page) =>
  page.evaluate(() => {
    const c = document.getElementById("mask");
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) n += px[i] > 0 ? 1 : 0;
    return n;
  });

async function stroke(page, from, to) {
  const box = await page.locator("#mask").boundingBox();
  const at = (p) => [box.x + p[0] * box.width, box.y + p[1] * box.height];
  await page.mouse.move(...at(from));
  await page.mouse.down();
  await page.mouse.move(...at(to), { steps: 12 });
  await page.mouse.up();
}

async function main() {
  const { server, url } = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 820 } });
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("method").options.length > 0);

    await page.setInputFiles("#image-file", fixture("core/rgb.png"));
    await page.waitForFunction(() => !document.getElementById("stage").classList.contains("empty"));
    const size = await page.evaluate(() => [photo.width, photo.height]);
    check(size[0] === 44 && size[1] === 30, `the canvas takes the photo's size, found ${size}`);

    await page.fill("#brush", "60");
    await stroke(page, [0.3, 0.35], [0.7, 0.6]);
    const first = await painted(page);
    check(first > 0, "the stroke paints the mask");
    await stroke(page, [0.05, 0.9], [0.2, 0.9]);
    check((await painted(page)) > first, "a second stroke paints more");
    await page.click("#undo");
    check((await painted(page)) === first, "undo takes the second stroke back");

    // An empty prompt: the server's message is shown, nothing runs (the browser logs the 400).
    check(problems.length === 0, problems.join("\n"));
    await page.click("#run");
    await page.waitForFunction(() => document.getElementById("error").textContent.includes("prompt is empty"));
    problems.length = 0;

    await page.fill("#prompt", "a red sofa");
    await page.fill("#seed", "1");
    await page.fill("#steps", "6");
    await page.click("#run");
    await page.waitForSelector("#results img", { timeout: 120_000 });
    await page.waitForFunction(() => document.querySelector("#results img").naturalWidth > 0);
    check(!(await page.locator("#preview-box").isHidden()), "previews were shown during the run");
    const status = await page.textContent("#status");
    check(status.startsWith("done in"), `the status says done, found ${status}`);
    check((await page.evaluate(() => document.getElementById("progress").value)) === 1, "progress at 100%");
    const link = page.locator("#results a");
    check((await link.getAttribute("download")) === "hd-painter-seed-1.png", "the download is named by its seed");
    const href = await link.getAttribute("href");
    const served = await page.evaluate(async (u) => (await fetch(u)).status, href);
    check(served === 200, `the download link serves the image, found ${served}`);
    check(problems.length === 0, problems.join("\n"));

    // A long run, cancelled from the page after it has started, then a last run for the picture.
    await page.fill("#steps", "900");
    await page.click("#run");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("step"));
    await page.click("#cancel");
    await page.waitForFunction(() => document.getElementById("status").textContent === "cancelled");
    check(await page.isEnabled("#run"), "the run button is back after a cancel");
    await page.fill("#steps", "6");
    await page.click("#run");
    await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("done in"));
    check(problems.length === 0, problems.join("\n"));

    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`browser test passed; screenshot: ${screenshot}`);
  } finally {
    await browser.close();
    server.kill();
    await once(server, "exit");
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
