#!/usr/bin/env node
// Confirm → redirect latency of the widget in the system Chromium, per transport. Not a test:
// run it by hand against a running demo, e.g.
//
//   cargo run --release -p axum-demo &            # http://127.0.0.1:3000
//   npm ci --prefix tests/browser
//   node tests/browser/latency.mjs http://127.0.0.1:3000 [--flows 50] [--modes sse,longpoll,interval]
//
// Each flow: load the login page, scan as a demo user over HTTP, wait until the page shows the
// scanned state, wait a random 0–2 s (so that interval polling is caught at a random phase),
// then confirm and measure until the browser starts navigating to /me (the new document's
// `performance.timeOrigin`, in the browser) and until /me has rendered (its DOMContentLoaded).
// Modes: `sse` (the widget's default), `longpoll` (EventSource deleted before the page loads),
// `interval` (`transport: 'interval'` injected into the page's `QrAuth.startScanning` call).
//
// The demo keeps its default abuse limits (20 QR codes per minute per IP), so 150 flows take
// about 8 minutes: on a 429 the script waits `Retry-After` and goes on. Progress goes to stderr,
// the table to stdout.

import {
  NO_EVENT_SOURCE, Phone, TEXT, injectOptionsScript, launch, openPage, readQr, sleep,
  waitForStatus,
} from './lib.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const [, value] = args.splice(i, 2);
  return value;
};
const flows = Number(option('--flows', 50));
const modes = option('--modes', 'sse,longpoll,interval').split(',');
const base = (args[0] || 'http://127.0.0.1:3000').replace(/\/$/, '');
const USERS = ['alice', 'bob', 'carol'];
const NICK = { alice: 'Alice', bob: 'Bob', carol: 'Carol' };

const INIT = {
  sse: [],
  longpoll: [NO_EVENT_SOURCE],
  interval: [injectOptionsScript({ transport: 'interval' })],
};

function log(message) { process.stderr.write(`${message}\n`); }

/** Loads the login page until the widget got a QR (waiting out `429 slow_down` on POST /qrcode). */
async function loadQr(page) {
  for (;;) {
    const generated = page.waitForResponse(
      (r) => r.url() === `${base}/qrcode` && r.request().method() === 'POST', { timeout: 15000 },
    );
    await page.goto(`${base}/`);
    const response = await generated;
    if (response.status() === 429) {
      const wait = Number(response.headers()['retry-after'] || 5);
      log(`  POST /qrcode: 429, waiting ${wait} s`);
      await sleep(wait * 1000 + 200);
      continue;
    }
    if (response.status() !== 201) throw new Error(`POST /qrcode: HTTP ${response.status()}`);
    return readQr(page);
  }
}

/** A phone request, retried after `Retry-After` when the phone's budget is spent. */
async function phoneCall(phone, action, id) {
  for (;;) {
    try {
      return await phone[action](id);
    } catch (e) {
      if (!String(e.message).includes('HTTP 429')) throw e;
      log(`  ${action}: 429, waiting`);
      await sleep(5000);
    }
  }
}

async function flow(page, n) {
  const qr = await loadQr(page);
  const user = USERS[n % USERS.length];
  const phone = new Phone(base, user);
  await phoneCall(phone, 'scan', qr.id);
  await waitForStatus(page, TEXT.scanned(NICK[user]), 15000);
  await sleep(Math.random() * 2000);
  const navigated = page.waitForURL(`${base}/me`, { waitUntil: 'domcontentloaded', timeout: 15000 });
  let seen = 0;
  const onRequest = (r) => { if (r.url() === `${base}/me` && !seen) seen = Date.now(); };
  page.on('request', onRequest);
  const t0 = Date.now();
  await phone.expectOk('/qrcode/confirm', { qrcodeId: qr.id, confirmToken: phone.confirmToken });
  await navigated;
  page.off('request', onRequest);
  const me = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return { origin: performance.timeOrigin, dcl: nav ? nav.domContentLoadedEventEnd : 0 };
  });
  return { redirect: me.origin - t0, rendered: me.origin + me.dcl - t0, seen: seen - t0 };
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const browser = await launch();
const rows = [];
try {
  for (const mode of modes) {
    if (!INIT[mode]) throw new Error(`unknown mode ${mode} (sse, longpoll, interval)`);
    const { context, page, log: pageLog } = await openPage(browser, base, { initScripts: INIT[mode] });
    const redirect = [];
    const rendered = [];
    for (let n = 0; n < flows; n += 1) {
      const r = await flow(page, n);
      redirect.push(r.redirect);
      rendered.push(r.rendered);
      log(`${mode} ${n + 1}/${flows}: redirect ${r.redirect.toFixed(1)} ms, /me rendered ${r.rendered.toFixed(1)} ms (GET /me seen by the driver after ${r.seen} ms)`);
    }
    const events = pageLog.requests.filter((q) => q.url.includes('/qrcode/events')).length;
    const longPolls = pageLog.requests.filter((q) => /\/qrcode\/status\?.*wait=/.test(q.url)).length;
    const polls = pageLog.requests.filter((q) => /\/qrcode\/status\?/.test(q.url) && !q.url.includes('wait=')).length;
    redirect.sort((a, b) => a - b);
    rendered.sort((a, b) => a - b);
    rows.push({ mode, n: redirect.length, redirect, rendered, events, longPolls, polls });
    await context.close();
  }
} finally {
  await browser.close();
}

const f = (x) => x.toFixed(1);
const table = [
  ['mode', 'flows', 'redirect p50', 'redirect p99', 'redirect max', '/me rendered p50', '/me rendered p99', 'events / long-polls / polls'],
  ...rows.map((r) => [
    r.mode, String(r.n), f(percentile(r.redirect, 50)), f(percentile(r.redirect, 99)),
    f(r.redirect[r.redirect.length - 1]), f(percentile(r.rendered, 50)), f(percentile(r.rendered, 99)),
    `${r.events} / ${r.longPolls} / ${r.polls}`,
  ]),
];
const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
const line = (row) => `| ${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
console.log(`confirm → redirect to /me in Chromium (ms), ${base}, ${flows} flows per mode`);
console.log(line(table[0]));
console.log(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`);
for (const row of table.slice(1)) console.log(line(row));
