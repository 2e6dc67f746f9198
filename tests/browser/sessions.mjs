#!/usr/bin/env node
// Signed-in sessions in the system Chromium, against a running demo:
//
//   node tests/browser/sessions.mjs BASE_URL SCENARIO [--timeout MS]
//
// Scenarios: signout (the /me page's sign-out button), revoke (the demo phone page signs the
// browser out), expiry (a page left open across several id_token lifetimes stays signed in;
// needs an id_token lifetime of a few seconds). tests/tests/browser_sessions.rs runs them.

import { Phone, readQr, runScenarioCli, sleep, until } from './lib.mjs';

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Logs Alice in through the login page's widget and waits for /me. */
async function logIn(page, base) {
  await page.goto(`${base}/`);
  const qr = await readQr(page);
  const phone = new Phone(base, 'alice');
  await phone.scan(qr);
  await phone.confirm(qr.id);
  await page.waitForURL(`${base}/me`, { timeout: 10000 });
  const welcome = await page.locator('#welcome').textContent();
  check(welcome.includes('Alice'), `/me says ${JSON.stringify(welcome)}`);
}

/** Opens /me and says where the browser ended up: 'me' or 'login' (the QR is shown). */
async function openMe(page, base) {
  await page.goto(`${base}/me`);
  return until(async () => {
    if (page.url() === `${base}/me` && await page.locator('#welcome').count()) return 'me';
    if (await page.locator('#qrauth img[data-qrcode-content]').count()) return 'login';
    return null;
  }, 'the /me page or the login QR', 10000);
}

const refreshes = (log) => log.requests.filter((r) => r.url.includes('/qrcode/refresh')).length;

await runScenarioCli({
  /** Sign out from the page → the protected page sends the browser to the login QR. */
  async signout({ base, browser, result, open }) {
    const { page } = await open(browser, base);
    await logIn(page, base);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${base}/`, { timeout: 10000 });
    await readQr(page);
    result.afterSignOut = await openMe(page, base);
    check(result.afterSignOut === 'login', `after sign-out /me shows ${result.afterSignOut}`);
  },

  /** The demo phone page lists the browser and signs it out → its next request is refused. */
  async revoke({ base, browser, result, open }) {
    const { page } = await open(browser, base);
    await logIn(page, base);
    const { page: phonePage } = await open(browser, base);
    await phonePage.goto(`${base}/phone`);
    const entry = phonePage.locator('#devices li');
    await until(async () => (await entry.count()) === 1, 'one signed-in browser on the phone page');
    result.listed = await entry.first().textContent();
    check(result.listed.includes('Chrome') && result.listed.includes('127.0.0.1'), `listed: ${result.listed}`);
    await entry.first().getByRole('button', { name: 'Sign out' }).click();
    await until(async () => (await phonePage.locator('#devices').textContent()).includes('No signed-in browsers'),
      'the list to empty');
    // With the browser's cookies, from outside the page (a 401 in the page is a console error).
    const status = (await page.context().request.get(`${base}/api/me`)).status();
    check(status === 401, `the revoked browser's next API request: HTTP ${status}`);
    result.afterRevoke = await openMe(page, base);
    check(result.afterRevoke === 'login', `after revocation /me shows ${result.afterRevoke}`);
  },

  /** A page left open across 2.5 id_token lifetimes renews in the background. */
  async expiry({ base, browser, result, open }) {
    const { page, log } = await open(browser, base);
    await logIn(page, base);
    const lifetime = await page.evaluate(async () => {
      const r = await fetch('/api/me');
      const claims = await r.json();
      return claims.exp - claims.iat;
    });
    check(lifetime > 0 && lifetime <= 10, `a short id_token lifetime for this test, got ${lifetime} s`);
    await sleep(lifetime * 2.5 * 1000);
    result.refreshes = refreshes(log);
    check(result.refreshes >= 2, `renewed in the background (${result.refreshes} renewals)`);
    const status = await page.evaluate(async () => (await fetch('/api/me')).status);
    check(status === 200, `an API call after ${2.5 * lifetime} s: HTTP ${status}`);
    result.afterExpiry = await openMe(page, base);
    check(result.afterExpiry === 'me', `after ${2.5 * lifetime} s /me shows ${result.afterExpiry}`);
  },
});
