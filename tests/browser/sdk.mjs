#!/usr/bin/env node
// The browser SDK (qrauth-core/src/handler/widget.js and its ES module sdk/qrauth.mjs) in the
// system Chromium, against a running demo. Test pages are served at the demo's origin by
// Playwright (`route.fulfill`), so the demos stay as they are.
//
//   node tests/browser/sdk.mjs BASE_URL SCENARIO [--screenshots DIR] [--timeout MS]
//
// Scenarios:
//   samples    Authing's own code samples (geneQRCode, geneCode, checkCodeStatus,
//              pollingCodeStatus, exchangeUserInfoWithTicket, exchangeUserInfo) log a user in
//   floating   the ES module's startAppAuthScanning() without a mount: floating, scanned panel,
//              a way back, axe, Escape closes it
//   sessions   renew / keepSignedIn / logout against scripted /qrcode/refresh and /qrcode/logout
//              answers (fake clock): the schedule, overdue on focus, signed out, tabs in turn
//   reconnect  a stream that ends with `event: reconnect`, and a long-poll answered early with
//              nothing new: the widget comes back by itself, with nothing shown
// tests/tests/browser.rs runs each against both demos.

import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  NO_EVENT_SOURCE, Phone, TEXT, readQr, runScenarioCli, sleep, statusText, until, waitForStatus,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ESM = readFileSync(path.join(here, '..', '..', 'sdk', 'qrauth.mjs'), 'utf8');
const page = (name) => readFileSync(path.join(here, 'pages', name), 'utf8');

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Serves the test pages and the ES module at the demo's origin. */
async function serveTestFiles(context, base) {
  await context.route(`${base}/__sdk-samples.html`, (r) => r.fulfill({ contentType: 'text/html; charset=utf-8', body: page('authing-samples.html') }));
  await context.route(`${base}/__sdk-esm.html`, (r) => r.fulfill({ contentType: 'text/html; charset=utf-8', body: page('esm.html') }));
  await context.route(`${base}/__sdk/qrauth.mjs`, (r) => r.fulfill({ contentType: 'text/javascript; charset=utf-8', body: ESM }));
}

/** Every console.log of the page, with its arguments as JSON values. */
function recordConsole(pg) {
  const logs = [];
  pg.on('console', async (m) => {
    if (m.type() !== 'log') return;
    const entry = { text: m.text(), at: Date.now(), args: [] };
    for (const a of m.args()) entry.args.push(await a.jsonValue().catch(() => undefined));
    logs.push(entry); // once its arguments are in
  });
  return logs;
}

/** Chromium logs each 4xx/5xx of a fetch as a console error; drops those of `statuses`. */
function dropExpectedHttpErrors(log, statuses) {
  const expected = new RegExp(`^Failed to load resource: the server responded with a status of (${statuses.join('|')})`);
  const dropped = log.consoleErrors.filter((m) => expected.test(m)).length;
  log.consoleErrors = log.consoleErrors.filter((m) => !expected.test(m));
  return dropped;
}

async function shootViewport(pg, screenshots, result, name) {
  if (!screenshots) return;
  await mkdir(screenshots, { recursive: true });
  await pg.screenshot({ path: path.join(screenshots, `${name}.png`), animations: 'disabled' });
  (result.screenshots ||= []).push(`${name}.png`);
}

const isJwt = (s) => typeof s === 'string' && s.split('.').length === 3;

const scenarios = {
  /** Authing's samples, unchanged but for the SDK initialisation, log Alice in. */
  async samples({ base, browser, result, open }) {
    const { context, page: pg, log } = await open(browser, base);
    await serveTestFiles(context, base);
    const logs = recordConsole(pg);
    await pg.goto(`${base}/__sdk-samples.html`);
    await pg.waitForFunction(() => window.samples && window.Authing);

    // 生成二维码: both names, Authing's envelope and data.
    const first = await pg.evaluate(() => window.samples.geneQRCode());
    check(first.code === 200 && first.data.qrcodeId && first.message, `geneQRCode: ${JSON.stringify(first)}`);
    const gene = await pg.evaluate(() => window.samples.geneCode());
    check(gene.code === 200, `geneCode code: ${JSON.stringify(gene)}`);
    check(typeof gene.data.qrcodeId === 'string' && gene.data.qrcodeId !== first.data.qrcodeId, 'a new qrcodeId');
    check(gene.data.qrcodeUrl.startsWith('data:image/svg+xml'), `qrcodeUrl ${gene.data.qrcodeUrl.slice(0, 40)}`);
    check(gene.message === 'QR code generated', `message ${gene.message}`);
    const id = gene.data.qrcodeId;
    await pg.waitForFunction(() => document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0);
    result.geneCode = { code: gene.code, message: gene.message, keys: Object.keys(gene.data).sort() };

    // 查询二维码状态: pending, Authing's flags and numeric status.
    const st = await pg.evaluate(() => window.samples.checkCodeStatus());
    check(st.code === 200 && st.message === 'QR code status read', `checkCodeStatus: ${JSON.stringify(st)}`);
    const d = st.data;
    check(d.qrcodeId === id && d.status === 0 && d.scanned === false && d.expired === false &&
      d.success === false && d.canceled === false && typeof d.description === 'string' &&
      JSON.stringify(d.userInfo) === '{}' && !('ticket' in d), `pending data: ${JSON.stringify(d)}`);
    result.checkCodeStatus = d;

    // The sample's "xxxxx": not this browser's QR → Authing's error shape.
    await pg.evaluate(() => window.samples.checkUnknownCodeStatus());
    const unknown = await until(() => logs.find((l) => l.args[0] && l.args[0].code === 403), 'the logged 403');
    check(unknown.args[0].data === null && unknown.args[0].error === 'not_bound' && unknown.args[0].message,
      `unknown id: ${JSON.stringify(unknown.args[0])}`);
    result.unknownId = unknown.args[0];

    // 轮询二维码状态 → the phone scans and confirms → exchangeUserInfoWithTicket.
    await pg.evaluate(() => window.samples.pollingCodeStatus());
    const started = await until(() => logs.find((l) => l.text.startsWith('Start polling')), 'onPollingStart');
    check(Number.isInteger(started.args[1]), `intervalNum ${started.args[1]}`);
    await until(() => logs.find((l) => l.text.startsWith('Got qrcode latest result')), 'the first onResult');
    const phone = new Phone(base, 'alice');
    await phone.scan(gene.data.qrcodeContent);
    const scanned = await until(() => logs.find((l) => l.text.startsWith('User scanned qrcode')), 'onScanned');
    check(scanned.args[1].nickname === 'Alice', `onScanned userInfo ${JSON.stringify(scanned.args[1])}`);
    await phone.confirm(id);
    const success = await until(() => logs.find((l) => l.text.startsWith('Exchange userInfo')), 'the exchange', 15000);
    check(success.text.startsWith('Exchange userInfo success'), `exchange: ${success.text}`);
    const ex = success.args[1];
    check(ex.code === 200 && ex.data.nickname === 'Alice' && isJwt(ex.data.token) && ex.data.id &&
      typeof ex.data.tokenExpiredAt === 'string' && ex.data.tokenSet.token_type === 'Bearer',
    `exchange result: ${JSON.stringify(ex)}`);
    const confirmed = logs.find((l) => l.text.startsWith('User confirmed authorization: ticket = '));
    check(confirmed && confirmed.args[1].nickname === 'Alice', 'onSuccess with userInfo');
    const results = logs.filter((l) => l.text.startsWith('Got qrcode latest result')).map((l) => l.args[1]);
    result.statuses = results.map((r) => r.data.status);
    check(results.every((r) => r.code === 200 && [0, 1, -1].includes(r.data.status)), 'onResult envelopes');
    check(result.statuses.includes(1) && result.statuses[0] === 0, `statuses ${result.statuses}`);
    check(results.at(-1).data.success === true && typeof results.at(-1).data.ticket === 'string', 'the ticket in the last result');
    const errors = logs.filter((l) => l.text.startsWith('Chcek qrcode status failed'));
    check(errors.length === 0, `onError: ${JSON.stringify(errors.map((e) => e.args[1]))}`);
    check(!logs.some((l) => /canceled authorization|has expired/.test(l.text)), 'neither cancelled nor expired');
    result.sse = log.requests.filter((r) => r.url.includes('/qrcode/events')).length;
    check(result.sse >= 1, 'pollingCodeStatus followed by SSE');
    check(!log.requests.some((r) => r.url.includes('/qrcode/status') && r.url.includes(id) && r.at > started.at), 'no polls');

    // ticket 换用户信息接口: the ticket was redeemed already → Authing's failure branch.
    await pg.evaluate(() => window.samples.exchangeUserInfo());
    const again = await until(() => logs.find((l) => l.text.startsWith('Exchange userInfo failed')), 'the second exchange');
    check(again.args[1] === null, `failed data: ${JSON.stringify(again.args[1])}`);
    // (The exchange cleared the binding cookie: without it the ticket is not even looked at.)
    const second = await pg.evaluate(() => authing.qrlogin.exchangeUserInfo(window.ticket));
    check(second.code === 403 && second.error === 'not_bound' && second.data === null, `reused ticket: ${JSON.stringify(second)}`);
    result.reusedTicket = second;

    // The exchange set the session cookie: /me greets Alice.
    await pg.goto(`${base}/me`);
    result.welcome = await pg.locator('#welcome').textContent();
    check(result.welcome.includes('Alice'), `/me says ${result.welcome}`);
    result.expectedHttpErrors = dropExpectedHttpErrors(log, [403]);
  },

  /** startAppAuthScanning() from the ES module, no mount: it floats; scan, back, log in. */
  async floating({ base, browser, screenshots, result, open }) {
    const { context, page: pg, log } = await open(browser, base);
    await serveTestFiles(context, base);
    const require = createRequire(import.meta.url);
    const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
    await pg.goto(`${base}/__sdk-esm.html`);
    await pg.waitForFunction(() => window.sdk);
    await pg.evaluate(() => {
      window.handle = window.sdk.startAppAuthScanning({
        onScanned: (u) => window.events.push(['scanned', u]),
        onSuccess: (d) => window.events.push(['success', d]),
        onQRCodeShow: (q) => window.events.push(['show', q.qrcodeId, q.qrcodeUrl.slice(0, 18)]),
      });
    });
    const root = '.qrauth-float';
    const first = await readQr(pg, { root });
    await waitForStatus(pg, TEXT.scan);
    const geometry = await pg.locator(root).evaluate((el) => {
      const r = el.getBoundingClientRect();
      return {
        position: getComputedStyle(el).position, role: el.getAttribute('role'), label: el.getAttribute('aria-label'),
        dx: Math.abs(r.left + r.width / 2 - innerWidth / 2), dy: Math.abs(r.top + r.height / 2 - innerHeight / 2),
        size: `${r.width}x${r.height}`,
      };
    });
    result.geometry = geometry;
    check(geometry.position === 'fixed' && geometry.dx <= 1 && geometry.dy <= 1, `floating in the middle: ${JSON.stringify(geometry)}`);
    check(geometry.role === 'dialog' && geometry.label, 'a named dialog');
    const shown = await pg.evaluate(() => window.events.find((e) => e[0] === 'show'));
    check(shown && shown[1] === first.id && shown[2] === 'data:image/svg+xml', `onQRCodeShow ${JSON.stringify(shown)}`);
    await pg.evaluate(axeSource);
    const audit = async (state) => {
      const r = await pg.evaluate(() => window.axe.run(document));
      return r.violations.map((v) => ({ state, id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')) }));
    };
    const violations = await audit('pending');
    await shootViewport(pg, screenshots, result, 'floating');

    // Scanned: the panel over the dimmed QR, the size unchanged; Back gives a new QR.
    const alice = new Phone(base, 'alice');
    await alice.scan(first);
    await waitForStatus(pg, TEXT.scanned('Alice'));
    const panel = await pg.locator(`${root} .qrauth-scanned`).evaluate((el) => ({
      visible: getComputedStyle(el).display !== 'none', text: el.textContent,
      opacity: Number(el.parentNode.querySelector('img[data-qrcode-content]').style.opacity),
      size: (() => { const r = el.closest('.qrauth-float').getBoundingClientRect(); return `${r.width}x${r.height}`; })(),
    }));
    check(panel.visible && panel.text.includes('Alice') && panel.opacity < 0.5, `scanned panel ${JSON.stringify(panel)}`);
    check(panel.size === geometry.size, `layout shift: ${geometry.size} → ${panel.size}`);
    violations.push(...await audit('scanned'));
    const scannedEvent = await pg.evaluate(() => window.events.find((e) => e[0] === 'scanned'));
    check(scannedEvent && scannedEvent[1].nickname === 'Alice', 'onScanned(userInfo)');
    await pg.getByRole('button', { name: 'Back: show a new QR code' }).click();
    const second = await readQr(pg, { root, other: first.content });
    check(second.id !== first.id, 'Back made a new QR');
    await waitForStatus(pg, TEXT.scan);
    check(await pg.locator(`${root} .qrauth-scanned`).isHidden(), 'the panel is gone');

    // The new QR logs Bob in; the component redeemed the ticket (the session cookie works).
    const bob = new Phone(base, 'bob');
    await bob.scan(second);
    await waitForStatus(pg, TEXT.scanned('Bob'));
    await bob.confirm(second.id);
    await waitForStatus(pg, 'Signed in.');
    const success = await pg.evaluate(() => window.events.find((e) => e[0] === 'success'));
    check(success && success[1].userInfo.nickname === 'Bob' && !('ticket' in success[1]), `onSuccess ${JSON.stringify(success)}`);
    const me = await pg.evaluate(() => fetch('/api/me').then((r) => r.text()));
    check(me.includes('Bob'), `/api/me: ${me}`);

    // Escape closes a floating component (stop() removes it).
    await pg.evaluate(() => { window.second = window.sdk.startAppAuthScanning({}); });
    await pg.locator(`${root} img[data-qrcode-content]`).last().waitFor();
    await pg.locator(`${root} .qrauth-close`).last().focus();
    await pg.keyboard.press('Escape');
    await until(() => pg.evaluate(() => document.querySelectorAll('.qrauth-float').length === 1), 'Escape closed it');
    result.violations = violations;
    const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    check(serious.length === 0, `axe: ${JSON.stringify(serious)}`);
    result.axeVersion = await pg.evaluate(() => window.axe.version);
    check(log.requests.filter((r) => r.url.includes('/qrcode/events')).length >= 2, 'followed by SSE');
  },

  /** renew / keepSignedIn / logout, the server's answers scripted by the test. */
  async sessions({ base, browser, result, open }) {
    const { context, page: pg, log } = await open(browser, base);
    await serveTestFiles(context, base);
    // The refresh route as DESIGN.md has it: a rotating cookie; a cookie presented twice is a
    // reuse. `mode` is what it answers next.
    const server = { mode: 'ok', expiresIn: 100, rotation: 0, calls: [], inFlight: 0, maxInFlight: 0, reuse: 0, delayMs: 0 };
    const seen = new Set();
    await context.route(`${base}/qrcode/refresh`, async (route) => {
      const req = route.request();
      const cookie = (await req.allHeaders()).cookie || '';
      const presented = (cookie.match(/qrauth_refresh=(\d+)/) || [])[1] || 'none';
      server.calls.push({ method: req.method(), presented, body: req.postData() || '' });
      if (seen.has(presented)) server.reuse += 1;
      seen.add(presented);
      server.inFlight += 1;
      server.maxInFlight = Math.max(server.maxInFlight, server.inFlight);
      if (server.delayMs) await sleep(server.delayMs);
      server.inFlight -= 1;
      if (server.mode === 'signed-out') {
        await route.fulfill({ status: 400, contentType: 'application/json', body: '{"error":"invalid_grant","error_description":"refresh credential reused"}' });
      } else if (server.mode === '401') {
        await route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"invalid_token"}' });
      } else {
        server.rotation += 1;
        await route.fulfill({
          status: 200, contentType: 'application/json',
          headers: { 'Set-Cookie': `qrauth_refresh=${server.rotation}; Path=/; HttpOnly; SameSite=Strict` },
          body: JSON.stringify({ access_token: `a${server.rotation}`, id_token: `i${server.rotation}`, token_type: 'Bearer', expires_in: server.expiresIn }),
        });
      }
    });
    const logouts = [];
    await context.route(`${base}/qrcode/logout`, async (route) => {
      const req = route.request();
      logouts.push({ method: req.method(), type: (await req.allHeaders())['content-type'], body: req.postData() });
      await route.fulfill({ status: 204 });
    });

    await pg.clock.install({ time: new Date('2030-01-01T00:00:00Z') });
    await pg.goto(`${base}/__sdk-esm.html`);
    await pg.waitForFunction(() => window.sdk);
    const events = () => pg.evaluate(() => window.events.map((e) => e[0]));
    const calls = () => server.calls.length;
    // n refresh calls made, and n renewals seen by the page (so its next timer is set).
    const settle = async (n) => until(async () => calls() === n && (await events()).filter((e) => e === 'renewed').length === n, `${n} renewals`);

    // 80 % of 100 s: nothing at 79 s, a renewal at 81 s; then 80 % of the new expires_in.
    await pg.evaluate(() => {
      window.keeper = window.sdk.keepSignedIn({
        expiresIn: 100,
        onRenewed: (t) => window.events.push(['renewed', t.expires_in, t.id_token]),
        onSignedOut: () => window.events.push(['signed-out']),
        onError: (e) => window.events.push(['error', e.code]),
      });
    });
    await pg.clock.runFor(79000);
    await sleep(100);
    check(calls() === 0, `renewed before 80 %: ${calls()}`);
    await pg.clock.runFor(2000);
    await settle(1);
    await until(async () => (await events()).includes('renewed'), 'onRenewed');
    check(server.calls[0].method === 'POST' && server.calls[0].body === '', `the refresh request: ${JSON.stringify(server.calls[0])}`);
    server.expiresIn = 2;       // → next in max(5 s, 1.6 s) = 5 s
    await pg.clock.runFor(79000);
    await settle(2);
    await pg.clock.runFor(4500);
    await sleep(100);
    check(calls() === 2, 'the 5 s minimum');
    await pg.clock.runFor(1000);
    await settle(3);
    check(server.calls[2].presented === '2', `the rotated cookie presented: ${JSON.stringify(server.calls)}`);
    result.schedule = 'ok';

    // Overdue when the tab comes back (its timers were throttled): renew at once on focus.
    await pg.evaluate(() => window.keeper.stop());
    server.expiresIn = 100;
    await pg.evaluate(() => {
      window.keeper = window.sdk.keepSignedIn({
        expiresAt: Math.floor(Date.now() / 1000) + 100,
        onRenewed: (t) => window.events.push(['renewed', t.expires_in, t.id_token]),
        onSignedOut: () => window.events.push(['signed-out']),
      });
    });
    await pg.clock.setSystemTime(new Date(Date.parse('2030-01-01T00:00:00Z') + 400000)); // timers do not fire
    await sleep(100);
    check(calls() === 3, 'no renewal without a timer or an event');
    await pg.evaluate(() => window.dispatchEvent(new Event('focus')));
    await settle(4);
    await pg.clock.setSystemTime(new Date(Date.parse('2030-01-01T00:00:00Z') + 600000));
    await pg.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await settle(5);
    result.overdue = 'ok';

    // Signed out (400 invalid_grant): onSignedOut once, no renewal after; 401 is signed out too.
    server.mode = 'signed-out';
    await pg.clock.runFor(81000);
    await until(async () => calls() === 6 && (await events()).includes('signed-out'), 'onSignedOut');
    await pg.clock.runFor(1000000);
    await sleep(100);
    check(calls() === 6, `renewed after signed out: ${calls()}`);
    check((await events()).filter((e) => e === 'signed-out').length === 1, 'onSignedOut once');
    server.mode = '401';
    check(await pg.evaluate(() => window.sdk.renew()) === null, 'renew() after 401 → null');
    server.mode = 'ok';

    // Two tabs renewing at once take turns (navigator.locks): never the same cookie twice.
    const second = await context.newPage();
    await second.goto(`${base}/__sdk-esm.html`);
    await second.waitForFunction(() => window.sdk);
    server.delayMs = 300;
    server.maxInFlight = 0;
    server.reuse = 0;
    seen.clear();  // 400 and 401 do not rotate: the cookie before them is presented again
    const [a, b] = await Promise.all([
      pg.evaluate(() => window.sdk.renew()), second.evaluate(() => window.sdk.renew()),
    ]);
    check(a && b && a.id_token !== b.id_token, `both tabs renewed: ${JSON.stringify([a, b])}`);
    check(server.maxInFlight === 1 && server.reuse === 0, `tabs in turn: maxInFlight ${server.maxInFlight}, reuse ${server.reuse}`);
    // One tab asking twice at once sends one request.
    const before = calls();
    await pg.evaluate(() => Promise.all([window.sdk.renew(), window.sdk.renew()]));
    check(calls() === before + 1, 'concurrent renew() calls of one tab share a request');
    // The check above can fail: tabs without navigator.locks overlap and present one cookie twice.
    const unlocked = await browser.newContext();
    await unlocked.addInitScript(() => Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }));
    await serveTestFiles(unlocked, base);
    const seenUnlocked = new Set();
    let unlockedReuse = 0;
    let unlockedRotation = 100;
    await unlocked.route(`${base}/qrcode/refresh`, async (route) => {
      const cookie = (await route.request().allHeaders()).cookie || '';
      const presented = (cookie.match(/qrauth_refresh=(\d+)/) || [])[1] || 'none';
      if (seenUnlocked.has(presented)) unlockedReuse += 1;
      seenUnlocked.add(presented);
      await sleep(300);
      unlockedRotation += 1;
      await route.fulfill({
        status: 200, contentType: 'application/json',
        headers: { 'Set-Cookie': `qrauth_refresh=${unlockedRotation}; Path=/; HttpOnly; SameSite=Strict` },
        body: JSON.stringify({ access_token: 'x', id_token: 'y', token_type: 'Bearer', expires_in: 100 }),
      });
    });
    const [u1, u2] = [await unlocked.newPage(), await unlocked.newPage()];
    for (const p of [u1, u2]) { await p.goto(`${base}/__sdk-esm.html`); await p.waitForFunction(() => window.sdk); }
    await Promise.all([u1.evaluate(() => window.sdk.renew()), u2.evaluate(() => window.sdk.renew())]);
    result.reuseWithoutLocks = unlockedReuse;
    check(unlockedReuse === 1, `control: without locks the two tabs presented one cookie (${unlockedReuse})`);
    await unlocked.close();

    // logout(): POST, JSON {}; it stops keepSignedIn.
    server.delayMs = 0;
    await pg.evaluate(() => { window.keeper = window.sdk.keepSignedIn({ expiresIn: 100 }); });
    const beforeLogout = calls();
    await pg.evaluate(() => window.sdk.logout());
    check(logouts.length === 1 && logouts[0].method === 'POST' && /^application\/json/.test(logouts[0].type) &&
      logouts[0].body === '{}', `logout request: ${JSON.stringify(logouts)}`);
    await pg.clock.runFor(200000);
    await sleep(100);
    check(calls() === beforeLogout, 'no renewal after logout()');
    result.logout = logouts[0];
    result.refreshCalls = calls();
    result.expectedHttpErrors = dropExpectedHttpErrors(log, [400, 401]);
  },

  /** The server asks the stream to reconnect, and a long-poll comes back early: nothing shows. */
  async reconnect({ base, browser, result, open }) {
    const statusLog = `(() => {
      window.__texts = [];
      new MutationObserver(() => {
        const s = document.querySelector('.qrauth-status');
        if (s) window.__texts.push(s.textContent);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    })();`;
    // 1. SSE: the first stream answers only `event: reconnect` and ends.
    {
      const { context, page: pg, log } = await open(browser, base, { initScripts: [statusLog] });
      let streams = 0;
      const opened = [];
      await context.route(`${base}/qrcode/events?*`, async (route) => {
        streams += 1;
        opened.push(Date.now());
        if (streams === 1) {
          await route.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' }, body: 'event: reconnect\ndata: {}\n\n' });
        } else {
          await route.continue();
        }
      });
      await pg.goto(`${base}/`);
      const qr = await readQr(pg);
      await until(() => streams >= 2, 'the stream reopened');
      result.sseReopenMs = opened[1] - opened[0];
      check(result.sseReopenMs >= 150 && result.sseReopenMs <= 2000, `reopened after ${result.sseReopenMs} ms`);
      await sleep(300);
      const phone = new Phone(base, 'alice');
      await phone.scan(qr);
      await waitForStatus(pg, TEXT.scanned('Alice'));
      const shown = await pg.evaluate(() => window.__texts);
      check(!shown.some((t) => t.includes('Connection problem')) && shown.at(-1).includes('Alice'), `shown: ${JSON.stringify(shown)}`);
      await phone.confirm(qr.id);
      await pg.waitForURL(`${base}/me`, { timeout: 10000 });
      check(!log.requests.some((r) => /\/qrcode\/status\?.*wait=/.test(r.url)), 'no fallback to long-poll');
      check(streams === 2, `streams: ${streams}`);
    }
    // 2. Long-poll: the first held one (`since` = the current version; the very first, `since=0`,
    //    is answered at once anyway) comes back at once with the unchanged status.
    {
      const { context, page: pg, log } = await open(browser, base, { initScripts: [NO_EVENT_SOURCE, statusLog] });
      let polls = 0;
      const times = [];
      await context.route(/\/qrcode\/status\?.*wait=/, async (route) => {
        polls += 1;
        times.push(Date.now());
        if (polls === 2) {
          const response = await route.fetch({ url: route.request().url().replace(/wait=\d+/, 'wait=0') });
          await route.fulfill({ response });
        } else {
          await route.continue();
        }
      });
      await pg.goto(`${base}/`);
      const qr = await readQr(pg);
      await until(() => polls >= 3, 'the long-poll after the early answer');
      check(/since=[1-9]/.test(log.requests.filter((r) => /wait=/.test(r.url))[1].url), 'the second long-poll waits for a change');
      result.longPollAgainMs = times[2] - times[1];
      check(result.longPollAgainMs >= 150 && result.longPollAgainMs <= 2000, `re-polled after ${result.longPollAgainMs} ms`);
      const shown = await pg.evaluate(() => window.__texts);
      check(!shown.some((t) => t.includes('Connection problem')), `shown: ${JSON.stringify(shown)}`);
      check(await statusText(pg) === TEXT.scan, 'still the pending text');
      const phone = new Phone(base, 'alice');
      await phone.scan(qr);
      await waitForStatus(pg, TEXT.scanned('Alice'));
      await phone.confirm(qr.id);
      await pg.waitForURL(`${base}/me`, { timeout: 10000 });
      check(!log.requests.some((r) => r.url.includes('/qrcode/events')), 'no SSE');
      result.longPolls = polls;
    }
    result.welcome = 'Alice';
  },
};

await runScenarioCli(scenarios);
