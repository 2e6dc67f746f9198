// Shared by run.mjs (the scenarios tests/tests/browser.rs runs) and latency.mjs (run by hand):
// launching the system Chromium, watching a page, and playing the phone over HTTP.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

/** The texts the widget shows in English (qrauth-core/src/handler/widget.js). */
export const TEXT = {
  scan: 'Scan the QR code with the phone app',
  scanned: (name) => `Scanned by ${name}. Confirm on your phone.`,
  cancelled: 'Login cancelled on the phone.',
  expired: 'QR code expired — refresh',
};

/** Chromium's flags: no sandbox (root in CI), and no traffic to anything but the page's host. */
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** `QRAUTH_CHROMIUM`, else /usr/bin/chromium, else `chromium` on PATH. */
export function chromiumPath() {
  if (process.env.QRAUTH_CHROMIUM) return process.env.QRAUTH_CHROMIUM;
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium not found: apt-get install -y chromium');
  }
}

export function launch() {
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, timeout: 20000 });
}

/**
 * An init script that makes the demo page's `QrAuth.startScanning` call pass `extra` options,
 * and keeps the handle it returns in `window.__qrauthHandle`.
 */
export function injectOptionsScript(extra = {}) {
  return `(() => {
    const extra = ${JSON.stringify(extra)};
    let real;
    Object.defineProperty(window, 'QrAuth', {
      configurable: true,
      get() { return real; },
      set(value) {
        const start = value.startScanning;
        real = Object.assign({}, value, {
          startScanning: (mount, options) => {
            window.__qrauthHandle = start(mount, Object.assign({}, options, extra));
            return window.__qrauthHandle;
          },
        });
      },
    });
  })();`;
}

/** An init script that takes EventSource away, as a proxy that blocks streams would. */
export const NO_EVENT_SOURCE = 'delete window.EventSource;';

/**
 * A new context and page for `base`, recording console errors, page errors, every request and
 * every response, and any request to a host other than the base's.
 */
export async function openPage(browser, base, { initScripts = [] } = {}) {
  const context = await browser.newContext({
    locale: 'en-US',
    viewport: { width: 720, height: 640 },
    deviceScaleFactor: 1,
    serviceWorkers: 'block',
  });
  for (const script of initScripts) await context.addInitScript(script);
  const page = await context.newPage();
  const host = new URL(base).host;
  const log = { consoleErrors: [], requests: [], responses: [], failed: [], foreign: [], signedOutRenewals: 0 };
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chromium logs every 4xx of a fetch. `QrAuth.renew()` of a browser that is not signed in
    // (the demo's login page tries it first) is answered 400 invalid_grant or 401: expected.
    if (/^Failed to load resource: the server responded with a status of 40[01]/.test(m.text()) &&
      /\/qrcode\/refresh$/.test(m.location().url || '')) {
      log.signedOutRenewals += 1;
      return;
    }
    log.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => log.consoleErrors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    const url = r.url();
    log.requests.push({ url, method: r.method(), at: Date.now() });
    if (!url.startsWith('data:') && new URL(url).host !== host) log.foreign.push(url);
  });
  page.on('requestfailed', (r) => log.failed.push({
    url: r.url(), error: r.failure()?.errorText, at: Date.now(),
  }));
  page.on('response', (r) => log.responses.push({
    url: r.url(), status: r.status(), at: Date.now(), retryAfter: r.headers()['retry-after'],
  }));
  return { context, page, log };
}

const jsQrSource = readFileSync(createRequire(import.meta.url).resolve('jsqr/dist/jsQR.js'), 'utf8');

/**
 * The widget's QR, read as a phone reads it: the image on screen is drawn to a canvas and
 * decoded by jsQR, and must say what the widget's `data-qrcode-content` says. Returns that
 * phone URL and the qrcodeId in it. `root` is the element the widget is in (the demo's
 * `#qrauth`; `.qrauth-float` for the floating component).
 */
export async function readQr(page, { other, root = '#qrauth', timeout = 10000 } = {}) {
  const selector = `${root} img[data-qrcode-content]`;
  await page.waitForFunction(({ selector, other }) => {
    const img = document.querySelector(selector);
    return img && img.getAttribute('data-qrcode-content') !== other && img.complete;
  }, { selector, other: other ?? null }, { timeout });
  if (!(await page.evaluate(() => typeof window.jsQR === 'function'))) {
    await page.evaluate(jsQrSource);
  }
  const { content, decoded } = await page.evaluate(async (selector) => {
    const img = document.querySelector(selector);
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    const code = window.jsQR(pixels.data, canvas.width, canvas.height, { inversionAttempts: 'dontInvert' });
    return { content: img.getAttribute('data-qrcode-content'), decoded: code?.data ?? null };
  }, selector);
  if (decoded !== content) {
    throw new Error(`the QR image reads ${JSON.stringify(decoded)}, the widget says ${content}`);
  }
  const id = new URL(content).searchParams.get('qrcodeId');
  if (!id) throw new Error(`no qrcodeId in ${content}`);
  return { content, id };
}

/** Waits until the widget's live region says something that contains `text`. */
export async function waitForStatus(page, text, timeout = 10000) {
  await page.waitForFunction(
    (text) => (document.querySelector('.qrauth-status')?.textContent || '').includes(text),
    text, { timeout },
  );
}

export async function statusText(page) {
  return page.locator('.qrauth-status').textContent();
}

/** The demo phone app: `Bearer demo-<user>` and JSON, over plain HTTP from Node. */
export class Phone {
  constructor(base, user = 'alice') {
    this.base = base;
    this.user = user;
  }

  async post(path, body) {
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer demo-${this.user}` },
      body: JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    return { status: res.status, json, retryAfter: res.headers.get('retry-after') };
  }

  async expectOk(path, body) {
    const r = await this.post(path, body);
    if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }

  /**
   * Scans a QR: `qr` is what `readQr` returns, or the QR's text (the phone URL with `qrcodeId`
   * and the rotating QR's `scanToken`). Returns the scan's answer.
   */
  async scan(qr) {
    const url = new URL(typeof qr === 'string' ? qr : qr.content);
    const body = { qrcodeId: url.searchParams.get('qrcodeId'), scanToken: url.searchParams.get('scanToken') };
    const json = await this.expectOk('/qrcode/scan', body);
    if (!json.confirmToken) throw new Error('scan: no confirmToken');
    this.confirmToken = json.confirmToken;
    return json;
  }

  confirm(id) { return this.expectOk('/qrcode/confirm', { qrcodeId: id, confirmToken: this.confirmToken }); }

  cancel(id) { return this.expectOk('/qrcode/cancel', { qrcodeId: id, confirmToken: this.confirmToken }); }
}

export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

/** Polls `probe` (async) every 20 ms until it returns something truthy, or fails with `what`. */
export async function until(probe, what, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The command line of a scenario script (run.mjs, sdk.mjs):
 * `node SCRIPT BASE_URL SCENARIO [--screenshots DIR] [--timeout MS]`. Runs `scenarios[SCENARIO]`
 * with `{ base, browser, screenshots, result, open }` and prints one JSON result line; exits 0
 * only when it passed, with no console error and no request to another host.
 */
export async function runScenarioCli(scenarios) {
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
  const logs = [];
  let browser;
  const finish = (code) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(code);
  };
  setTimeout(() => {
    result.error = `timed out after ${timeoutMs} ms`;
    result.consoleErrors = logs.flatMap((l) => l.consoleErrors);
    finish(3);
  }, timeoutMs);
  const open = async (...a) => {
    const opened = await openPage(...a);
    logs.push(opened.log);
    return opened;
  };
  try {
    if (!base || !scenarios[scenario]) {
      throw new Error(`usage: BASE_URL (${Object.keys(scenarios).join('|')}) [--screenshots DIR] [--timeout MS]`);
    }
    browser = await launch();
    await scenarios[scenario]({ base, browser, screenshots, result, open });
    result.consoleErrors = logs.flatMap((l) => l.consoleErrors);
    result.requests = logs.reduce((n, l) => n + l.requests.length, 0);
    const foreign = logs.flatMap((l) => l.foreign);
    if (foreign.length) throw new Error(`requests to other hosts: ${foreign.join(', ')}`);
    if (result.consoleErrors.length) throw new Error(`console errors: ${JSON.stringify(result.consoleErrors)}`);
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e);
    result.consoleErrors = logs.flatMap((l) => l.consoleErrors);
  }
  await browser?.close().catch(() => {});
  finish(result.ok ? 0 : 1);
}
