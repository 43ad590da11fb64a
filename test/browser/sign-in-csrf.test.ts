/**
 * A hostile page cannot lock agents out of the dashboard, in a real browser (outside tests
 * QA50-F1, QA51-F2). Chromium opens the dashboard and a page of another site, both over plain
 * HTTP under host names (`baton.test`, `evil.test`, mapped to the loopback address): there a
 * browser sends no `Sec-Fetch-Site`, only `Origin`. The hostile page posts the sign-in form a dozen
 * times with wrong tokens (more than the ten a minute that lock an address out), as forms and as
 * `fetch`; then the agent signs in with the right token on the dashboard's own form. A page on the
 * same host name at another port, which can set the dashboard's cookies, is refused too.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveChromium, launchChromium } from '../support/chromium.ts';
import { ADMIN_TOKEN, startHarness, type Harness } from '../support/harness.ts';

/** The hostile site's page: posts wrong tokens to the dashboard's sign-in, as forms and as fetch. */
function hostilePage(target: string): string {
  return `<!doctype html><meta charset="utf-8"><title>win a prize</title>
<script>
  async function attack() {
    for (let i = 0; i < 6; i++) {
      await fetch(${JSON.stringify(target)}, {
        method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'token=guess-fetch-' + i,
      }).catch(() => undefined);
    }
    for (let i = 0; i < 6; i++) {
      const frame = document.createElement('iframe');
      frame.name = 'f' + i;
      document.body.appendChild(frame);
      const form = document.createElement('form');
      form.method = 'post';
      form.action = ${JSON.stringify(target)};
      form.target = frame.name;
      const input = document.createElement('input');
      input.name = 'token';
      input.value = 'guess-form-' + i;
      form.appendChild(input);
      document.body.appendChild(form);
      await new Promise((done) => { frame.onload = done; form.submit(); });
    }
    document.title = 'done';
  }
  attack();
</script>`;
}

/**
 * A page on the dashboard's host name at another port (cookies ignore ports): plants a sign-in
 * nonce cookie of its own and posts wrong tokens carrying the same nonce (outside test QA64-F1).
 */
function plantingPage(target: string): string {
  return `<!doctype html><meta charset="utf-8"><title>win a prize</title>
<script>
  async function attack() {
    document.cookie = 'baton_login=tossed123; path=/admin/login';
    for (let i = 0; i < 11; i++) {
      await fetch(${JSON.stringify(target)}, {
        method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'token=guess-planted-' + i + '&nonce=tossed123',
      }).catch(() => undefined);
    }
    document.title = 'done';
  }
  attack();
</script>`;
}

describe.skipIf(!haveChromium)('dashboard sign-in against a hostile page, in Chromium', () => {
  let h: Harness;
  let evil: Server;
  let browser: Browser;

  beforeAll(async () => {
    h = await startHarness();
    const batonPort = new URL(h.url).port;
    evil = createServer((req, res) => {
      const target = `http://baton.test:${batonPort}/admin/login`;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(req.url === '/plant' ? plantingPage(target) : hostilePage(target));
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    browser = await launchChromium([
      '--host-resolver-rules=MAP baton.test 127.0.0.1, MAP evil.test 127.0.0.1',
    ]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => evil?.close(r));
    await h?.close();
  });

  it('refuses every post of the other site without counting it; the agent then signs in', async () => {
    const batonPort = new URL(h.url).port;
    const evilPort = (evil.address() as AddressInfo).port;
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    // The agent opened the dashboard earlier in this browser (its sign-in form's cookie is set).
    await page.goto(`http://baton.test:${batonPort}/admin`);
    await page.waitForSelector('#signin');
    // What the sign-in route answered each post, in order.
    const answers: number[] = [];
    context.on('response', (r) => {
      if (r.url().endsWith('/admin/login')) answers.push(r.status());
    });
    const other = await context.newPage();
    await other.goto(`http://evil.test:${evilPort}/`);
    await other.waitForFunction(() => document.title === 'done');
    await other.close();
    // Refused, and not counted toward the lockout (that would be 401, then 429).
    expect(answers).toEqual(Array.from({ length: 12 }, () => 403));
    expect((await h.admin('/stats')).status).toBe(200);
    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#signin button[type="submit"]');
    await page.waitForSelector('#stats');
    expect(answers.slice(12)).toEqual([303]);
    await context.close();
  });

  it('refuses the posts of a page at another port that planted its own form nonce; the agent then signs in', async () => {
    const batonPort = new URL(h.url).port;
    const evilPort = (evil.address() as AddressInfo).port;
    const context = await browser.newContext();
    const answers: number[] = [];
    context.on('response', (r) => {
      if (r.url().endsWith('/admin/login')) answers.push(r.status());
    });
    const other = await context.newPage();
    await other.goto(`http://baton.test:${evilPort}/plant`);
    await other.waitForFunction(() => document.title === 'done');
    await other.close();
    // Its cookie reached the dashboard: only the origin tells the posts apart.
    const planted = await context.cookies(`http://baton.test:${batonPort}/admin/login`);
    expect(planted.map((c) => c.value)).toContain('tossed123');
    expect(answers).toEqual(Array.from({ length: 11 }, () => 403));
    expect((await h.admin('/stats')).status).toBe(200);
    // The agent comes to sign in (a form opened before is stale: each refusal's page set a new
    // nonce cookie, the page at the other port's posts too).
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(`http://baton.test:${batonPort}/admin`);
    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#signin button[type="submit"]');
    await page.waitForSelector('#stats');
    expect(answers.slice(11)).toEqual([303]);
    await context.close();
  });
});
