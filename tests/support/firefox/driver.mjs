// Drives Debian's firefox-esr over WebDriver BiDi with puppeteer-core, for
// tests/support/engines.py. One browser per process; commands arrive as JSON lines on
// stdin ({id, op, ...}) and each gets one JSON line on stdout ({id, ok} or {id, error}).
// Pages are numbered; every op except `open` names its page.
import puppeteer from 'puppeteer-core';
import readline from 'node:readline';

const executablePath = process.argv[2] || '/usr/bin/firefox-esr';
const browser = await puppeteer.launch({
  browser: 'firefox',
  protocol: 'webDriverBiDi',
  executablePath,
  headless: true,
  // A fresh profile with no first-run pages, updates or telemetry (none can reach out here).
  extraPrefsFirefox: {
    'browser.shell.checkDefaultBrowser': false,
    'app.update.enabled': false,
    'datareporting.policy.dataSubmissionEnabled': false,
    'toolkit.telemetry.enabled': false,
  },
});
const pages = new Map();
let nextPage = 1;

// Input waits for animation frames, which a background tab does not get: the page acted on
// comes to the front first (a visitor and a viewer can share this browser).
async function front(page) {
  const p = pages.get(page).page;
  await p.bringToFront();
  return p;
}

const ops = {
  async open({url, width, height}) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({width, height});
    await page.goto(url, {waitUntil: 'load'});
    const id = nextPage++;
    pages.set(id, {context, page});
    return id;
  },
  async goto({page, url}) {
    await pages.get(page).page.goto(url, {waitUntil: 'load'});
    return null;
  },
  async evaluate({page, expr}) {
    // A string is evaluated as an expression; a promise is awaited.
    return await pages.get(page).page.evaluate(expr);
  },
  async type({page, selector, text}) {
    const p = await front(page);
    await p.click(selector, {count: 3});
    await p.keyboard.press('Backspace');
    await p.type(selector, text, {delay: 5});
    return null;
  },
  async click({page, selector}) {
    await (await front(page)).click(selector);
    return null;
  },
  async hover({page, selector}) {
    await (await front(page)).hover(selector);
    return null;
  },
  async mouse({page, x, y}) {
    await (await front(page)).mouse.move(x, y);
    return null;
  },
  async press({page, key}) {
    await (await front(page)).keyboard.press(key);
    return null;
  },
  async screenshot({page}) {
    return await pages.get(page).page.screenshot({encoding: 'base64'});
  },
  async close({page}) {
    const entry = pages.get(page);
    pages.delete(page);
    if (entry) await entry.context.close();
    return null;
  },
};

const lines = readline.createInterface({input: process.stdin});
process.stdout.write(JSON.stringify({ready: true, version: await browser.version()}) + '\n');
for await (const line of lines) {
  const msg = JSON.parse(line);
  let reply;
  try {
    const value = await ops[msg.op](msg);
    reply = {id: msg.id, ok: value === undefined ? null : value};
  } catch (e) {
    reply = {id: msg.id, error: String(e && e.stack || e)};
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
await browser.close();
