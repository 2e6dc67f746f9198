#!/usr/bin/env node
// A replica stopped while the widget waits: the page still completes the login through the
// other replica, and the user sees nothing of it.
//
//   node tests/browser/failover.mjs BASE_URL CONTROL_URL (sse|longpoll) [--timeout MS]
//
// BASE_URL is a load balancer in front of two replicas on one Redis (tests/tests/failover.rs
// runs a loopback TCP proxy); `POST CONTROL_URL/stop` stops the replica it routes to now,
// the way SIGTERM does, and sends new connections to the other one. Prints one JSON line
// ({ scenario, ok, error?, consoleErrors, ... }) and exits 0 only when the scenario passed.

import { Phone, TEXT, injectOptionsScript, launch, openPage, readQr, sleep, waitForStatus } from './lib.mjs';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  args.splice(i, 2);
  return value;
};
const timeoutMs = Number(flag('--timeout') || 45000);
const [base, control, transport] = args;

const result = { scenario: `failover_${transport}`, base, ok: false, consoleErrors: [] };
let browser;
let log;

function finish(code) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
}

setTimeout(() => {
  result.error = `timed out after ${timeoutMs} ms`;
  result.consoleErrors = log ? log.consoleErrors : [];
  finish(3);
}, timeoutMs);

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Reports every text the widget's live region shows to `window.__qrauthStatus`. */
const RECORD_STATUS = `(() => {
  let last = '';
  new MutationObserver(() => {
    const text = document.querySelector('.qrauth-status')?.textContent || '';
    if (text && text !== last) { last = text; window.__qrauthStatus(text); }
  }).observe(document, { subtree: true, childList: true, characterData: true });
})();`;

/** A phone request that, like a phone app, tries once more when the connection breaks. */
async function phoneStep(phone, step) {
  try {
    return await step();
  } catch (e) {
    result.phoneRetries = (result.phoneRetries || 0) + 1;
    await sleep(100);
    return step();
  }
}

try {
  check(base && control && ['sse', 'longpoll'].includes(transport),
    'usage: failover.mjs BASE_URL CONTROL_URL (sse|longpoll) [--timeout MS]');
  browser = await launch();
  const initScripts = [RECORD_STATUS];
  if (transport === 'longpoll') initScripts.push(injectOptionsScript({ transport: 'longpoll' }));
  const opened = await openPage(browser, base, { initScripts });
  const { page } = opened;
  log = opened.log;
  const statusTexts = [];
  await page.exposeFunction('__qrauthStatus', (text) => { statusTexts.push(text); });
  const watchPart = transport === 'sse' ? '/qrcode/events' : '/qrcode/status?';
  const watches = () => log.requests.filter((r) => r.url.includes(watchPart));

  await page.goto(`${base}/`);
  const qr = await readQr(page);
  await waitForStatus(page, TEXT.scan);
  const phone = new Phone(base, 'alice');
  await phone.scan(qr);
  await waitForStatus(page, TEXT.scanned('Alice'));
  // The widget is waiting on replica A now; give its next wait a moment to be held there.
  await sleep(300);
  const before = watches().length;
  check(before >= 1, `the widget watches by ${transport}`);

  // Replica A goes away (a deploy): its held connections are let go at once.
  const stoppedAt = Date.now();
  const stop = await fetch(`${control}/stop`, { method: 'POST' });
  check(stop.ok, `control /stop: HTTP ${stop.status}`);
  Object.assign(result, await stop.json());
  check(result.heldOnA >= 1, `the widget's wait was held on A when it stopped: ${result.heldOnA}`);

  // The widget comes back through the load balancer, on B, by itself.
  const rewatch = () => watches().find((r) => r.at >= stoppedAt);
  for (let waited = 0; !rewatch(); waited += 20) {
    check(waited < 10000, `no new ${watchPart} request within 10 s of the stop`);
    await sleep(20);
  }
  result.rewatchMs = rewatch().at - stoppedAt;
  await sleep(200);
  check((await page.locator('.qrauth-status').textContent()).includes(TEXT.scanned('Alice')),
    'still shows the scanned state after the failover');

  // The phone confirms through the load balancer: B applies it, the page logs in.
  await phoneStep(phone, () => phone.confirm(qr.id));
  await page.waitForURL(`${base}/me`, { timeout: 10000 });
  result.welcome = await page.locator('#welcome').textContent();
  check(result.welcome.includes('Alice'), `/me says ${JSON.stringify(result.welcome)}`);

  result.statusTexts = statusTexts;
  result.refused = log.responses.filter((r) => r.status >= 400).map((r) => `${r.status} ${r.url}`);
  result.watches = watches().length;
  const problem = result.statusTexts.filter((t) => /problem|retry|failed/i.test(t));
  check(problem.length === 0, `the user saw ${JSON.stringify(problem)}`);
  result.consoleErrors = log.consoleErrors;
  check(log.foreign.length === 0, `requests to other hosts: ${log.foreign.join(', ')}`);
  check(log.consoleErrors.length === 0, `console errors: ${JSON.stringify(log.consoleErrors)}`);
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e);
  result.consoleErrors = log ? log.consoleErrors : [];
}
await browser?.close().catch(() => {});
finish(result.ok ? 0 : 1);
