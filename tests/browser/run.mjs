#!/usr/bin/env node
// One end-to-end scenario of the qrauth widget in the system Chromium, against a running demo.
//
//   node tests/browser/run.mjs BASE_URL SCENARIO [--screenshots DIR] [--timeout MS]
//
// Scenarios: login, exchange_retry, qr_rotation (needs a rotation of 10 s), cancel, expiry (needs a QR lifetime of a few seconds), sse_blocked,
// slow_down (needs the poll interval limit on), a11y. Prints one JSON line
// ({ scenario, ok, error?, consoleErrors, ... }) and exits 0 only when the scenario passed.
// tests/tests/browser.rs starts the demos and runs every scenario against each.

import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  NO_EVENT_SOURCE, Phone, TEXT, injectOptionsScript, launch, openPage, readQr, sleep,
  statusText, waitForStatus,
} from './lib.mjs';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  args.splice(i, 2);
  return value;
};
const screenshots = flag('--screenshots');
const timeoutMs = Number(flag('--timeout') || 45000);
const [base, scenario] = args;

const result = { scenario, base, ok: false, consoleErrors: [] };
const logs = []; // every page's log, for the result even when a scenario fails
let browser;

function finish(code) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
}

// A global deadline, whatever Chromium or the server does.
// (Not unref'd: it also keeps Node from leaving silently on a promise that never settles.)
setTimeout(() => {
  result.error = `timed out after ${timeoutMs} ms`;
  result.consoleErrors = logs.flatMap((l) => l.consoleErrors);
  finish(3);
}, timeoutMs);

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function open(...a) {
  const opened = await openPage(...a);
  logs.push(opened.log);
  return opened;
}

const qrRequests = (log, part) => log.requests.filter((r) => r.url.includes(part));

/** The widget box's size: it must not change between states (no layout shift). */
async function boxSize(page) {
  return page.locator('#qrauth .qrauth').evaluate((el) => {
    const r = el.getBoundingClientRect();
    return `${r.width}x${r.height}`;
  });
}

async function shoot(page, name) {
  if (!screenshots) return;
  await mkdir(screenshots, { recursive: true });
  // The demo's card with a margin for its shadow. The countdown shows whatever second it is at.
  const box = await page.locator('main').boundingBox();
  const m = 12;
  await page.screenshot({
    path: path.join(screenshots, `${name}.png`),
    animations: 'disabled',
    clip: { x: box.x - m, y: box.y - m, width: box.width + 2 * m, height: box.height + 2 * m },
  });
  (result.screenshots ||= []).push(`${name}.png`);
}

/** Waits for the redirect to /me and for the page to greet `name`. */
async function reachesMe(page, name) {
  await page.waitForURL(`${base}/me`, { timeout: 10000 });
  const welcome = await page.locator('#welcome').textContent();
  check(welcome.includes(name), `/me says ${JSON.stringify(welcome)}, not ${name}`);
  return welcome;
}

const scenarios = {
  /** The whole login by SSE: pending → scanned (nickname shown) → confirmed → /me. */
  async login() {
    const { page, log } = await open(browser, base);
    await page.goto(`${base}/`);
    const qr = await readQr(page);
    check(new RegExp(`^${base}/phone\\?qrcodeId=${qr.id}&scanToken=[\\w-]{22}$`).test(qr.content), `QR content ${qr.content}`);
    await waitForStatus(page, TEXT.scan);
    const alt = await page.locator('#qrauth img[data-qrcode-content]').getAttribute('alt');
    check(alt && alt.length > 10, `QR alt text ${JSON.stringify(alt)}`);
    const pendingSize = await boxSize(page);
    await shoot(page, 'pending');
    const phone = new Phone(base, 'alice');
    await phone.scan(qr);
    await waitForStatus(page, TEXT.scanned('Alice'));
    result.scannedStatus = await statusText(page);
    const nickname = await page.locator('#qrauth .qrauth-user').textContent();
    check(nickname.includes('Alice'), `nickname shown: ${JSON.stringify(nickname)}`);
    const scannedSize = await boxSize(page);
    check(scannedSize === pendingSize, `layout shift: ${pendingSize} → ${scannedSize}`);
    // The scanned state: the QR dimmed under the scanner's avatar, with a way back.
    result.scannedPanel = await page.locator('#qrauth').evaluate((root) => {
      const qr = root.querySelector('img[data-qrcode-content]');
      const avatar = [...root.querySelectorAll('.qrauth-avatar')].find((a) => getComputedStyle(a).display !== 'none');
      return {
        qrOpacity: Number(qr.style.opacity || 1), // the target of its .2 s transition
        avatar: avatar ? (avatar.tagName === 'IMG' ? 'photo' : avatar.textContent) : null,
        hint: root.querySelector('.qrauth-scanned').textContent,
      };
    });
    check(result.scannedPanel.qrOpacity < 0.5, `QR dimmed when scanned: ${JSON.stringify(result.scannedPanel)}`);
    check(result.scannedPanel.avatar === 'A', `Alice's avatar (her initial: no photo): ${JSON.stringify(result.scannedPanel)}`);
    check(result.scannedPanel.hint.includes('Confirm on your phone'), `hint: ${result.scannedPanel.hint}`);
    check(await page.getByRole('button', { name: 'Back: show a new QR code' }).isVisible(), 'a way back');
    await shoot(page, 'scanned');
    await phone.confirm(qr.id);
    result.welcome = await reachesMe(page, 'Alice');
    result.sse = qrRequests(log, '/qrcode/events').length;
    check(result.sse >= 1, 'the widget followed the status by SSE');
    return log;
  },

  /**
   * The first exchange fails on the server's side (503, as when its store is briefly away):
   * the widget presents the same ticket again and the login completes.
   */
  async exchange_retry() {
    const { context, page, log } = await open(browser, base);
    const exchanges = [];
    await context.route(`${base}/qrcode/exchange`, async (route) => {
      exchanges.push(Date.now());
      if (exchanges.length === 1) {
        await route.fulfill({
          status: 503, contentType: 'application/json',
          body: '{"error":"store_unavailable","error_description":"the session store is unavailable"}',
        });
      } else {
        await route.continue();
      }
    });
    await page.goto(`${base}/`);
    const qr = await readQr(page);
    const phone = new Phone(base, 'alice');
    await phone.scan(qr);
    await phone.confirm(qr.id);
    result.welcome = await reachesMe(page, 'Alice');
    result.exchanges = exchanges.length;
    result.retryDelayMs = exchanges[1] - exchanges[0];
    // Chromium logs the 503 it was served; that one is expected, nothing else is.
    const expected = /^Failed to load resource: the server responded with a status of 503/;
    result.expected503Logs = log.consoleErrors.filter((m) => expected.test(m)).length;
    log.consoleErrors = log.consoleErrors.filter((m) => !expected.test(m));
    return log;
  },

  /**
   * The QR rotates (every 10 s on this server): the widget shows the new QR from its event
   * stream, without a reload, a new session or a fallback to polling; the phone scans the new
   * one and the same browser logs in.
   */
  async qr_rotation() {
    const { page, log } = await open(browser, base);
    await page.goto(`${base}/`);
    const first = await readQr(page);
    const second = await readQr(page, { other: first.content, timeout: 15000 });
    check(second.id === first.id, `the same session: ${first.id} → ${second.id}`);
    check(second.content !== first.content, 'a new QR');
    result.first = first.content;
    result.second = second.content;
    check(!log.requests.some((r) => r.url.includes('/qrcode/status')), 'followed by the event stream');
    check(log.requests.filter((r) => r.url.endsWith('/qrcode') || r.url.includes('/qrcode?')).length <= 1, 'no second POST /qrcode');
    await waitForStatus(page, TEXT.scan);
    const phone = new Phone(base, 'alice');
    await phone.scan(second);
    await phone.confirm(second.id);
    result.welcome = await reachesMe(page, 'Alice');
    return log;
  },

  /**
   * The demo phone page on another network than the browser (both behind the server's trusted
   * proxy): it shows the risk and asks for the browser's code, confirm without it is refused,
   * with it the browser logs in. "Cancel" is at least as large as "Confirm".
   */
  async risk_on_the_phone_page() {
    const { context, page, log } = await open(browser, base);
    await context.setExtraHTTPHeaders({ 'x-forwarded-for': '198.51.100.7' });
    await page.goto(`${base}/`);
    const qr = await readQr(page);
    const phoneSide = await open(browser, base);
    await phoneSide.context.setExtraHTTPHeaders({ 'x-forwarded-for': '203.0.113.9' });
    const phone = phoneSide.page;
    await phone.goto(qr.content);
    await phone.locator('#scan').click();
    await phone.locator('#context').waitFor({ state: 'visible', timeout: 10000 });
    result.riskText = (await phone.locator('#risk').textContent()).trim();
    check(await phone.locator('#risk').isVisible(), 'the risk is shown');
    check(result.riskText.includes('elevated') && result.riskText.includes('network mismatch'), `risk text: ${result.riskText}`);
    result.codeLabel = await phone.locator('#code-label').textContent();
    check(result.codeLabel.includes('required'), `code label: ${result.codeLabel}`);
    const [cancel, confirm] = [await phone.locator('#cancel').boundingBox(), await phone.locator('#confirm').boundingBox()];
    check(cancel.width >= confirm.width - 1 && cancel.height >= confirm.height - 1, `cancel ${JSON.stringify(cancel)} vs confirm ${JSON.stringify(confirm)}`);

    await page.waitForFunction(() => /\b\d{2}\b/.test(document.querySelector('.qrauth-status')?.textContent || ''), null, { timeout: 10000 });
    const code = (await statusText(page)).match(/\b(\d{2})\b/)[1];
    // Confirm without the code: refused (the page says so, the browser stays on the QR).
    await phone.locator('#confirm').click();
    await phone.waitForFunction(() => /forbidden|code|denied/i.test(document.querySelector('#result')?.textContent || ''), null, { timeout: 10000 });
    result.withoutCode = await phone.locator('#result').textContent();
    await phone.locator('#code').fill(code);
    await phone.locator('#confirm').click();
    result.welcome = await reachesMe(page, 'Alice');
    // Chromium logs the refused confirm (403) on the phone page: expected, nothing else is.
    const expected = /^Failed to load resource: the server responded with a status of 403/;
    result.expected403Logs = phoneSide.log.consoleErrors.filter((m) => expected.test(m)).length;
    phoneSide.log.consoleErrors = phoneSide.log.consoleErrors.filter((m) => !expected.test(m));
    check(log.consoleErrors.length === 0, `browser page console errors: ${JSON.stringify(log.consoleErrors)}`);
    return phoneSide.log;
  },

  /** Cancel on the phone → cancelled text and a refresh button (screenshot) → a new QR that works. */
  async cancel() {
    const { page, log } = await open(browser, base);
    await page.goto(`${base}/`);
    const first = await readQr(page);
    const phone = new Phone(base, 'alice');
    await phone.scan(first);
    await waitForStatus(page, TEXT.scanned('Alice'));
    await phone.cancel(first.id);
    await waitForStatus(page, TEXT.cancelled);
    const button = page.getByRole('button', { name: /Login cancelled on the phone\. — Refresh/ });
    await button.waitFor({ state: 'visible', timeout: 5000 });
    result.cancelledStatus = await statusText(page);
    await shoot(page, 'cancelled');
    await button.click();
    const second = await readQr(page, { other: first.content });
    check(second.id !== first.id, 'refresh made a new qrcodeId');
    await waitForStatus(page, TEXT.scan);
    check(await page.locator('.qrauth-refresh').isHidden(), 'refresh button hidden again');
    result.newQr = true;
    // The new QR logs in.
    const phone2 = new Phone(base, 'bob');
    await phone2.scan(second);
    await waitForStatus(page, TEXT.scanned('Bob'));
    await phone2.confirm(second.id);
    result.welcome = await reachesMe(page, 'Bob');
    return log;
  },

  /** A short-lived QR expires → "QR code expired — refresh" → Enter on it makes a new QR. */
  async expiry() {
    const { page, log } = await open(browser, base);
    await page.goto(`${base}/`);
    const first = await readQr(page);
    await page.waitForFunction(
      () => /Expires in \d+ s/.test(document.querySelector('.qrauth-countdown')?.textContent || ''),
      null, { timeout: 5000 },
    );
    const pendingSize = await boxSize(page);
    await waitForStatus(page, TEXT.expired, 15000);
    const button = page.getByRole('button', { name: TEXT.expired });
    await button.waitFor({ state: 'visible', timeout: 5000 });
    check(await boxSize(page) === pendingSize, 'layout shift on expiry');
    await shoot(page, 'expired');
    // Keyboard only: Tab to the refresh button, then Enter.
    let focused = false;
    for (let i = 0; i < 5 && !focused; i += 1) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.classList.contains('qrauth-refresh'));
    }
    check(focused, 'the refresh button is reachable with Tab');
    await page.keyboard.press('Enter');
    const second = await readQr(page, { other: first.content });
    check(second.id !== first.id, 'Enter made a new qrcodeId');
    await waitForStatus(page, TEXT.scan);
    result.newQr = true;
    return log;
  },

  /**
   * No EventSource: the widget long-polls (`wait=`), never asks for /qrcode/events. A
   * `refresh()` in the middle ends the pending long-poll at once instead of leaving it open.
   */
  async sse_blocked() {
    const { page, log } = await open(browser, base, {
      initScripts: [NO_EVENT_SOURCE, injectOptionsScript()],
    });
    const isLongPoll = (url) => /\/qrcode\/status\?.*[?&]wait=/.test(url);
    await page.goto(`${base}/`);
    check(await page.evaluate(() => typeof window.EventSource) === 'undefined', 'EventSource removed');
    const first = await readQr(page);
    const stale = (entry) => isLongPoll(entry.url) && entry.url.includes(first.id);
    let deadline = Date.now() + 5000;
    while (!log.requests.some(stale)) {
      check(Date.now() < deadline, 'no long-poll for the first QR');
      await sleep(20);
    }
    await page.evaluate(() => window.__qrauthHandle.refresh());
    const qr = await readQr(page, { other: first.content });
    deadline = Date.now() + 2000;
    while (!log.failed.some(stale) && !log.responses.some(stale) && Date.now() < deadline) await sleep(50);
    const ended = log.failed.find(stale);
    check(ended, 'refresh() ended the pending long-poll of the old QR');
    result.staleLongPoll = ended.error;
    const phone = new Phone(base, 'alice');
    await phone.scan(qr);
    await waitForStatus(page, TEXT.scanned('Alice'));
    await phone.confirm(qr.id);
    result.welcome = await reachesMe(page, 'Alice');
    result.longPolls = log.requests.filter((r) => isLongPoll(r.url)).length;
    result.sse = qrRequests(log, '/qrcode/events').length;
    check(result.longPolls >= 1, 'a long-poll (/qrcode/status?…wait=) was made');
    check(result.sse === 0, `no /qrcode/events request (saw ${result.sse})`);
    return log;
  },

  /**
   * Interval polling against the server's poll limit: another client with this browser's
   * binding cookie polls the same id until one of the widget's polls gets the server's
   * `429 slow_down`; the widget waits at least `Retry-After`, polls again and finishes the login.
   */
  async slow_down() {
    const { context, page, log } = await open(browser, base, {
      initScripts: [injectOptionsScript({ transport: 'interval' })],
    });
    await page.goto(`${base}/`);
    const qr = await readQr(page);
    const cookies = await context.cookies(base);
    const cookie = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    check(cookies.some((c) => c.name.endsWith('qrauth_bind')), 'binding cookie set');
    const isWidgetPoll = (url) => url.includes('/qrcode/status?') && !url.includes('probe=');
    const throttled = () => log.responses.find((r) => isWidgetPoll(r.url) && r.status === 429);
    let probes = 0;
    const deadline = Date.now() + 20000;
    while (!throttled()) {
      check(Date.now() < deadline, 'no widget poll was throttled within 20 s');
      await fetch(`${base}/qrcode/status?qrcodeId=${encodeURIComponent(qr.id)}&probe=1`, {
        headers: { Cookie: cookie },
      });
      probes += 1;
      await sleep(80);
    }
    const refused = throttled();
    check(Number(refused.retryAfter) > 0, `Retry-After on the 429: ${refused.retryAfter}`);
    result.probes = probes;
    result.retryAfter = Number(refused.retryAfter);
    // The phone scans meanwhile; the widget's next poll, after Retry-After, sees it.
    const phone = new Phone(base, 'alice');
    await phone.scan(qr);
    await waitForStatus(page, TEXT.scanned('Alice'), 20000);
    const next = log.requests.find((r) => isWidgetPoll(r.url) && r.at > refused.at);
    result.waitedMs = next.at - refused.at;
    check(result.waitedMs >= result.retryAfter * 1000, `next poll after ${result.waitedMs} ms < Retry-After`);
    await phone.confirm(qr.id);
    result.welcome = await reachesMe(page, 'Alice');
    check(qrRequests(log, '/qrcode/events').length === 0, 'interval transport: no SSE');
    // Chromium logs every 4xx response of a fetch as a console error; the widget's own 429s are
    // the point of this scenario, anything else is not.
    const expected = /^Failed to load resource: the server responded with a status of 429/;
    result.expected429Logs = log.consoleErrors.filter((m) => expected.test(m)).length;
    log.consoleErrors = log.consoleErrors.filter((m) => !expected.test(m));
    return log;
  },

  /** axe-core on the login page: pending, scanned and cancelled (refresh button) states. */
  async a11y() {
    const { page, log } = await open(browser, base);
    const require = createRequire(import.meta.url);
    const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
    await page.goto(`${base}/`);
    const qr = await readQr(page);
    await waitForStatus(page, TEXT.scan);
    const live = await page.locator('#qrauth [aria-live]').count();
    check(live >= 1, 'an aria-live region');
    await page.evaluate(axeSource);
    const audit = async (state) => {
      const r = await page.evaluate(() => window.axe.run(document));
      const brief = (v) => ({
        state, id: v.id, impact: v.impact, help: v.help,
        targets: v.nodes.map((n) => n.target.join(' ')),
      });
      // "Incomplete" is what axe could not decide (needs a human), e.g. contrast over an image.
      (result.incomplete ||= []).push(...r.incomplete.map(brief));
      return r.violations.map(brief);
    };
    const violations = await audit('pending');
    const phone = new Phone(base, 'alice');
    await phone.scan(qr);
    await waitForStatus(page, TEXT.scanned('Alice'));
    violations.push(...await audit('scanned'));
    await phone.cancel(qr.id);
    await waitForStatus(page, TEXT.cancelled);
    violations.push(...await audit('cancelled'));
    result.axeVersion = await page.evaluate(() => window.axe.version);
    result.violations = violations;
    const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    check(serious.length === 0, `axe: ${serious.length} serious/critical violations: ${JSON.stringify(serious)}`);
    return log;
  },
};

try {
  if (!base || !scenarios[scenario]) {
    throw new Error(`usage: run.mjs BASE_URL (${Object.keys(scenarios).join('|')}) [--screenshots DIR] [--timeout MS]`);
  }
  browser = await launch();
  const log = await scenarios[scenario]();
  result.consoleErrors = log.consoleErrors;
  result.requests = log.requests.length;
  check(log.foreign.length === 0, `requests to other hosts: ${log.foreign.join(', ')}`);
  check(log.consoleErrors.length === 0, `console errors: ${JSON.stringify(log.consoleErrors)}`);
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e);
  result.consoleErrors = logs.flatMap((l) => l.consoleErrors);
}
await browser?.close().catch(() => {});
finish(result.ok ? 0 : 1);
