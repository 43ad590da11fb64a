/**
 * The dashboard over real HTTP (the browser suite drives it in Chromium): sign-in sets an
 * HttpOnly, SameSite=Strict cookie; the cookie alone cannot change anything without the page's
 * CSRF token; Bearer keeps working for the JSON API; every page escapes what users sent.
 */
import { request, type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startHarness, type Harness } from '../support/harness.ts';
import { webhookBody } from '../../loadgen/payloads.ts';
import { DISPLAY_PHONE, PHONE_ID, text, webhook } from '../support/payloads.ts';

let h: Harness;
const HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>';
const USER = '15550501001';

beforeAll(async () => {
  h = await startHarness();
  expect((await h.post(webhook([text(USER, 'hi', 1_750_000_000)]))).status).toBe(200);
  await h.settled(USER, 1);
  expect((await h.post(webhook([text(USER, HOSTILE, 1_750_000_001)]))).status).toBe(200);
  await h.settled(USER, 2);
});
afterAll(async () => {
  await h.close();
});

async function signIn(token = ADMIN_TOKEN): Promise<Response> {
  return fetch(`${h.url}/admin/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
    redirect: 'manual',
  });
}

async function cookie(): Promise<string> {
  const r = await signIn();
  return r.headers.get('set-cookie')!.split(';')[0]!;
}

async function csrfOf(c: string, path = '/admin'): Promise<string> {
  const page = await (await fetch(`${h.url}${path}`, { headers: { cookie: c } })).text();
  return /<meta name="baton-csrf" content="([^"]+)"/.exec(page)![1]!;
}

describe('dashboard sign-in and CSRF', () => {
  it('shows the sign-in form when not signed in, and redirects other pages to it', async () => {
    const r = await fetch(`${h.url}/admin`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await r.text()).toContain('<form method="post" action="/admin/login"');
    const other = await fetch(`${h.url}/admin/inbox`, { redirect: 'manual' });
    expect(other.status).toBe(303);
    expect(other.headers.get('location')).toBe('/admin?next=%2Fadmin%2Finbox');
  });

  it('goes back to the page the agent was on once signed in, never off the dashboard (outside test QA87-F6)', async () => {
    const page = `/admin/session?wa_id=15550001234`;
    const away = await fetch(`${h.url}${page}`, { redirect: 'manual' });
    expect(away.headers.get('location')).toBe(`/admin?next=${encodeURIComponent(page)}`);
    const form = await (await fetch(`${h.url}${away.headers.get('location')!}`)).text();
    expect(form).toContain(`<input type="hidden" name="next" value="/admin/session?wa_id=15550001234" />`);
    const post = (next: string) =>
      fetch(`${h.url}/admin/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: ADMIN_TOKEN, next }).toString(),
        redirect: 'manual',
      });
    expect((await post(page)).headers.get('location')).toBe(page);
    for (const elsewhere of [
      'https://evil.example/admin',
      '//evil.example/admin',
      '/adminx',
      '/api/x',
      '/admin\\x',
    ])
      expect((await post(elsewhere)).headers.get('location')).toBe('/admin');
  });

  it('answers a mistyped dashboard address with a page, the API with JSON (outside test QA77-F3)', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/nonexistent?x=<b>`, { headers: { cookie: c } });
    expect(r.status).toBe(404);
    expect(r.headers.get('content-type')).toMatch(/^text\/html/);
    const body = await r.text();
    expect(body).toContain('There is no page <code>/admin/nonexistent</code>');
    expect(body).toContain('href="/admin"');
    // Not signed in: the JSON any unknown route answers.
    const anon = await fetch(`${h.url}/admin/nonexistent`, { redirect: 'manual' });
    expect(anon.status).toBe(404);
    expect(await anon.json()).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    // The API, and what is no page, stay JSON.
    const api = await fetch(`${h.url}/admin/api/nonexistent`, { headers: { cookie: c } });
    expect(api.status).toBe(404);
    expect(await api.json()).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    const post = await fetch(`${h.url}/admin/nonexistent`, { method: 'POST', headers: { cookie: c } });
    expect(post.status).toBe(404);
    expect(await post.json()).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
  });

  it('refuses a wrong token with 401 and no cookie', async () => {
    const r = await signIn('nope');
    expect(r.status).toBe(401);
    // Only the new form's nonce (see "sign-in posted from another site"), no sign-in.
    expect(r.headers.get('set-cookie')).toMatch(
      /^baton_login=[^;]+; Max-Age=86400; Path=\/admin; HttpOnly; SameSite=Strict$/,
    );
  });

  it("refuses a sign-in form over 8 KiB saying so, not the webhooks' 4 MiB (outside test QA42-F7)", async () => {
    const r = await signIn('x'.repeat(10_000));
    expect(r.status).toBe(413);
    expect(await r.json()).toMatchObject({
      code: 'BATON_ERR_BODY_TOO_LARGE',
      error: 'Body is larger than 8 KiB',
    });
  });

  it('signs in with the token in the body (never the URL): HttpOnly, SameSite=Strict cookie', async () => {
    const r = await signIn();
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('/admin');
    const set = r.headers.get('set-cookie')!;
    expect(set).toMatch(/^baton_admin=\d+\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43};/);
    expect(set).toContain('HttpOnly');
    expect(set).toContain('SameSite=Strict');
    expect(set).toContain('Path=/admin');
    expect(set).not.toContain(ADMIN_TOKEN);
    const page = await fetch(`${h.url}/admin`, { headers: { cookie: set.split(';')[0]! } });
    const body = await page.text();
    expect(body).toContain('id="stat-queue-depth"');
    expect(body).not.toContain(ADMIN_TOKEN);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
  });

  it('lets the cookie read the API but not change anything without the CSRF token', async () => {
    const c = await cookie();
    expect((await fetch(`${h.url}/admin/api/stats`, { headers: { cookie: c } })).status).toBe(200);
    const path = `${h.url}/admin/api/sessions/${USER}/lock?channel=${PHONE_ID}`;
    const bare = await fetch(path, { method: 'DELETE', headers: { cookie: c } });
    expect(bare.status).toBe(403);
    expect(await bare.json()).toMatchObject({ code: 'BATON_ERR_CSRF' });
    const wrong = await fetch(path, { method: 'DELETE', headers: { cookie: c, 'x-baton-csrf': 'forged' } });
    expect(wrong.status).toBe(403);
    // Another sign-in's token does not fit this cookie.
    const otherCsrf = await csrfOf(await cookie());
    const good = await fetch(path, {
      method: 'DELETE',
      headers: { cookie: c, 'x-baton-csrf': await csrfOf(c) },
    });
    expect(good.status).toBe(200);
    expect(otherCsrf).toEqual(expect.any(String));
  });

  it('refuses a forged or expired-looking cookie', async () => {
    for (const c of ['baton_admin=1.abc', `baton_admin=9999999999999.${'A'.repeat(43)}`, 'baton_admin=']) {
      expect((await fetch(`${h.url}/admin/api/stats`, { headers: { cookie: c } })).status).toBe(401);
      const r = await fetch(`${h.url}/admin/inbox`, { headers: { cookie: c }, redirect: 'manual' });
      expect(r.status).toBe(303);
    }
  });

  it('a junk cookie of the same name sent before the real one does not sign the agent out (outside test Q17)', async () => {
    const real = await cookie();
    const both = `baton_admin=junk; other=1; ${real}`;
    expect((await fetch(`${h.url}/admin/api/stats`, { headers: { cookie: both } })).status).toBe(200);
    const page = await fetch(`${h.url}/admin/inbox`, { headers: { cookie: both }, redirect: 'manual' });
    expect(page.status).toBe(200);
    // The CSRF token is the valid cookie's.
    expect(await csrfOf(both)).toBe(await csrfOf(real));
  });

  it('a signed-out cookie sent before a valid one does not stand for it (outside test QA10-F4)', async () => {
    const gone = await cookie();
    const out = await fetch(`${h.url}/admin/logout`, {
      method: 'POST',
      headers: { cookie: gone, 'x-baton-csrf': await csrfOf(gone) },
    });
    expect(out.status).toBe(200);
    const real = await cookie();
    const both = `${gone}; ${real}`;
    expect((await fetch(`${h.url}/admin/api/stats`, { headers: { cookie: both } })).status).toBe(200);
    const page = await fetch(`${h.url}/admin/inbox`, { headers: { cookie: both }, redirect: 'manual' });
    expect(page.status).toBe(200);
    // Changes carry the valid cookie's CSRF token, on the API and on sign-out.
    const csrf = await csrfOf(both);
    expect(csrf).toBe(await csrfOf(real));
    const change = await fetch(`${h.url}/admin/api/sessions/${USER}/lock?channel=${PHONE_ID}`, {
      method: 'DELETE',
      headers: { cookie: both, 'x-baton-csrf': csrf },
    });
    expect(change.status).toBe(200);
    const logout = await fetch(`${h.url}/admin/logout`, {
      method: 'POST',
      headers: { cookie: both, 'x-baton-csrf': csrf },
    });
    expect(logout.status).toBe(200);
    expect((await fetch(`${h.url}/admin/api/stats`, { headers: { cookie: real } })).status).toBe(401);
  });

  it('keeps Bearer working for the JSON API (no CSRF needed)', async () => {
    const r = await h.admin(`/sessions/${USER}/lock?channel=${PHONE_ID}`, { method: 'DELETE' });
    expect(r.status).toBe(200);
  });

  it('signs out', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/logout`, {
      method: 'POST',
      headers: { cookie: c, 'x-baton-csrf': await csrfOf(c) },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('set-cookie')).toMatch(/^baton_admin=; Max-Age=0/);
  });

  it('a sign-out posted without the sign-in (a form on another site) clears no cookie', async () => {
    const r = await fetch(`${h.url}/admin/logout`, {
      method: 'POST',
      headers: { origin: 'http://elsewhere.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('set-cookie')).toBeNull();
  });

  it('a signed-out cookie no longer lets anyone in (a copy kept by someone else included)', async () => {
    const [c, other] = [await cookie(), await cookie()];
    const stats = (k: string): Promise<Response> =>
      fetch(`${h.url}/admin/api/stats`, { headers: { cookie: k } });
    expect((await stats(c)).status).toBe(200);
    const csrf = await csrfOf(c);
    const r = await fetch(`${h.url}/admin/logout`, {
      method: 'POST',
      headers: { cookie: c, 'x-baton-csrf': csrf },
    });
    expect(r.status).toBe(200);
    expect((await stats(c)).status).toBe(401);
    const page = await fetch(`${h.url}/admin`, { headers: { cookie: c } });
    expect(await page.text()).toContain('name="token"');
    // Another sign-in stays signed in; signing out again is harmless.
    expect((await stats(other)).status).toBe(200);
    const again = await fetch(`${h.url}/admin/logout`, {
      method: 'POST',
      headers: { cookie: c, 'x-baton-csrf': csrf },
    });
    expect(again.status).toBe(200);
  });
});

describe('dashboard pages escape what users sent', () => {
  it('renders the session page with the hostile name as text', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/session?wa_id=${USER}`, { headers: { cookie: c } });
    expect(r.status).toBe(200);
    const body = await r.text();
    expect(body).toContain('id="state-step"');
    expect(body).toContain(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;',
    );
    expect(body).not.toContain('<script>alert');
    expect(body).not.toContain('<img src=x');
    // The only script is the dashboard's own file.
    expect(body.match(/<script/g)).toHaveLength(1);
  });

  it("keeps a user's right-to-left override inside their name: in the data view and in the bot's prompt (outside test QA50-F2)", async () => {
    const user = '15550501002';
    const name = 'Ann \u202Etxt.exe';
    expect((await h.post(webhook([text(user, 'hi', 1_750_000_000)]))).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.post(webhook([text(user, name, 1_750_000_001)]))).status).toBe(200);
    await h.settled(user, 2);
    const c = await cookie();
    const page = await (
      await fetch(`${h.url}/admin/session?wa_id=${user}`, { headers: { cookie: c } })
    ).text();
    const data = /<pre id="state-data">([^<]*)<\/pre>/.exec(page)![1]!;
    // The same JSON value, with the override written as an escape: it cannot turn the line around.
    expect(data).toContain('&quot;customer_name&quot;: &quot;Ann \\u202etxt.exe&quot;');
    expect(data).not.toContain('\u202E');
    // The product prompt quotes the name in an isolate, without the override.
    const prompt = h.graph.requests
      .map((r) => JSON.stringify(r.body))
      .find((b) => b.includes(user) && b.includes('Which product'));
    expect(prompt).toContain(JSON.stringify('Thanks, \u2068Ann txt.exe\u2069. Which product').slice(1, -1));
    expect(prompt).not.toContain('\u202E');
  });

  it('finds a session by a number written the way people write it', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/session?wa_id=${encodeURIComponent(' +1 555-050-1001 ')}`, {
      headers: { cookie: c },
    });
    expect(r.status).toBe(200);
    expect(await r.text()).toContain(`<code id="session-user">${USER}</code>`);
  });

  it('finds one dialled with the international prefix 00 (outside test QA102-F2)', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/session?wa_id=${encodeURIComponent('001 555 050 1001')}`, {
      headers: { cookie: c },
    });
    expect(r.status).toBe(200);
    expect(await r.text()).toContain(`<code id="session-user">${USER}</code>`);
  });

  it("shows the user's WhatsApp name, from their newest message, as text (outside test QA102-F2)", async () => {
    const user = '15550501009';
    const named = (name: string, body: string, ts: number) =>
      webhookBody(
        { phoneNumberId: PHONE_ID, displayPhone: DISPLAY_PHONE },
        [text(user, body, 1_750_000_000 + ts)],
        name,
      );
    expect((await h.post(named('Jo', 'hi', 10))).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.post(named('Jo <b>Smith</b> \u202Eevil', 'Jo', 11))).status).toBe(200);
    await h.settled(user, 2);
    const c = await cookie();
    const page = await (
      await fetch(`${h.url}/admin/session?wa_id=${user}`, { headers: { cookie: c } })
    ).text();
    // In an isolate, so a right-to-left override in it cannot turn the line around.
    expect(page).toContain('<bdi id="profile-name">Jo &lt;b&gt;Smith&lt;/b&gt; \u202Eevil</bdi> in WhatsApp');
  });

  it('says which parameter is given twice, or is no id, in a search (outside test Q7)', async () => {
    const c = await cookie();
    const twice = await fetch(`${h.url}/admin/session?wa_id=15550000002&wa_id=15550000001`, {
      headers: { cookie: c },
    });
    expect(twice.status).toBe(400);
    expect(await twice.text()).toContain('wa_id is given more than once: name one session.');
    const channel = await fetch(`${h.url}/admin/session?wa_id=15550000002&channel=a%20b`, {
      headers: { cookie: c },
    });
    expect(channel.status).toBe(400);
    expect(await channel.text()).toContain('&quot;a b&quot; is not a business number or gateway session id.');
  });

  it('answers a hostile search with a 400 page that shows it as text', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/session?wa_id=${encodeURIComponent('"> <script>x</script>')}`, {
      headers: { cookie: c },
    });
    expect(r.status).toBe(400);
    const body = await r.text();
    expect(body).toContain('&quot;&gt; &lt;script&gt;x&lt;/script&gt;');
    expect(body.match(/<script/g)).toHaveLength(1);
  });

  it('serves the inbox, the flow map and the assets', async () => {
    const c = await cookie();
    for (const path of ['/admin/inbox', '/admin/flows/order', '/admin/flows/order?step=choose_product']) {
      const r = await fetch(`${h.url}${path}`, { headers: { cookie: c } });
      expect(r.status).toBe(200);
    }
    const map = await (
      await fetch(`${h.url}/admin/flows/order?step=choose_product`, { headers: { cookie: c } })
    ).text();
    expect(map).toContain('data-step="choose_product"');
    expect(map).toContain(`>${USER}</a>`);
    const js = await fetch(`${h.url}/admin/assets/dashboard.js`);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect(await js.text()).toContain('x-baton-csrf');
    expect((await fetch(`${h.url}/admin/assets/dashboard.css`)).status).toBe(200);
  });
});

describe('sign-in throttling', () => {
  it('after 10 different wrong tokens from one address, the form and the API answer 429 for the rest of the minute', async () => {
    const h2 = await startHarness();
    try {
      const attempt = (token: string): Promise<Response> =>
        fetch(`${h2.url}/admin/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token }).toString(),
          redirect: 'manual',
        });
      for (let i = 0; i < 10; i++) expect((await attempt(`guess-${i}`)).status).toBe(401);
      const refused = await attempt('guess-10');
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      // Even the right token waits: a guesser cannot tell it found it.
      expect((await attempt(ADMIN_TOKEN)).status).toBe(429);
      // The bearer API checks the same secret: it waits too (else guessing would move there).
      expect((await h2.admin('/stats')).status).toBe(429);
    } finally {
      await h2.close();
    }
  });
});

describe('sign-in posted from another site', () => {
  const form = (fields: Record<string, string>, headers: Record<string, string>, url: string) =>
    fetch(`${url}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(fields).toString(),
      redirect: 'manual',
    });

  /** The sign-in page as a browser gets it: the form's nonce and its cookie. */
  async function signInForm(url: string): Promise<{ nonce: string; cookie: string }> {
    const page = await fetch(`${url}/admin`);
    const nonce = /<input type="hidden" name="nonce" value="([^"]+)"/.exec(await page.text())![1]!;
    const cookie = page.headers.get('set-cookie')!.split(';')[0]!;
    expect(cookie).toBe(`baton_login=${nonce}`);
    expect(page.headers.get('set-cookie')).toMatch(/HttpOnly; SameSite=Strict/);
    return { nonce, cookie };
  }

  /** A form post with any headers, `Host` included (fetch may not set it). */
  function rawPost(
    url: string,
    headers: Record<string, string>,
    fields: Record<string, string>,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
    const body = new URLSearchParams(fields).toString();
    return new Promise((resolve, reject) => {
      const req = request(
        `${url}/admin/login`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  it('is refused with 403 before it counts, so a hostile page cannot lock the agents out (outside test QA50-F1)', async () => {
    const h2 = await startHarness();
    try {
      for (let i = 0; i < 12; i++) {
        const site = i % 2 === 0 ? 'cross-site' : 'same-site';
        const r = await form(
          { token: `guess-${i}` },
          { 'sec-fetch-site': site, origin: 'http://evil.example' },
          h2.url,
        );
        expect(r.status).toBe(403);
        expect(r.headers.get('set-cookie')).not.toMatch(/baton_admin=/);
      }
      // Even the right token: a page elsewhere cannot sign the agent in (login CSRF).
      const right = await form({ token: ADMIN_TOKEN }, { 'sec-fetch-site': 'cross-site' }, h2.url);
      expect(right.status).toBe(403);
      // Nothing counted: the agent's own form and the API still work.
      const { nonce, cookie } = await signInForm(h2.url);
      const own = await form(
        { token: ADMIN_TOKEN, nonce },
        { 'sec-fetch-site': 'same-origin', origin: h2.url, cookie },
        h2.url,
      );
      expect(own.status).toBe(303);
      expect(own.headers.get('set-cookie')).toMatch(/^baton_admin=/);
      expect((await h2.admin('/stats')).status).toBe(200);
    } finally {
      await h2.close();
    }
  });

  it('without Sec-Fetch-Site (plain HTTP under a host name), a browser post needs its form nonce (outside test QA51-F2)', async () => {
    const h2 = await startHarness();
    try {
      const { nonce, cookie } = await signInForm(h2.url);
      const hostile = { origin: 'http://evil.test:48700' };
      for (let i = 0; i < 12; i++) {
        // No nonce; a nonce without its cookie; a cookie with another nonce.
        const fields: Record<string, string> =
          i % 3 === 0 ? {} : { nonce: i % 3 === 1 ? nonce : 'x'.repeat(24) };
        const headers = i % 3 === 2 ? { ...hostile, cookie } : hostile;
        const r = await form({ token: `guess-${i}`, ...fields }, headers, h2.url);
        expect(r.status).toBe(403);
        expect(await r.text()).toContain('did not come from this page');
      }
      const own = await form({ token: ADMIN_TOKEN, nonce }, { origin: h2.url, cookie }, h2.url);
      expect(own.status).toBe(303);
      // A script posting the token (no Origin) needs no form, as before.
      expect((await form({ token: ADMIN_TOKEN }, {}, h2.url)).status).toBe(303);
    } finally {
      await h2.close();
    }
  });

  it('without Sec-Fetch-Site, a post whose Origin is another address is refused before it counts, its nonce planted or not (outside test QA64-F1)', async () => {
    const h2 = await startHarness();
    try {
      const { port } = new URL(h2.url);
      // The cookie a page on the same IP at another port, or on the parent domain, can set here
      // (cookies ignore ports and may name a parent domain), and the same value in the field.
      const planted = { cookie: 'baton_login=tossed123' };
      const attacks: { origin: string; host?: string }[] = [
        { origin: `http://127.0.0.1:${Number(port) + 1}` },
        { origin: 'http://evil.corp.test', host: `baton.corp.test:${port}` },
        { origin: `http://evil.corp.test:${port}`, host: `baton.corp.test:${port}` },
        { origin: `https://127.0.0.1:${port}` },
        { origin: 'null' },
      ];
      for (let i = 0; i < 11; i++) {
        const { origin, host } = attacks[i % attacks.length]!;
        const r = await rawPost(
          h2.url,
          { origin, ...planted, ...(host ? { host } : {}) },
          { token: `guess-${i}`, nonce: 'tossed123' },
        );
        expect(r.status, origin).toBe(403);
        expect(r.body).toContain('a page on another origin');
        expect(r.body).toContain('pass the Host header through');
      }
      const { nonce, cookie } = await signInForm(h2.url);
      // The form's page lets its post name its origin (under `no-referrer` it would be `null`).
      expect((await fetch(`${h2.url}/admin`)).headers.get('referrer-policy')).toBe('same-origin');
      // From this origin, a post still needs the form's own nonce.
      const sameOrigin = { origin: `http://baton.corp.test:${port}`, host: `baton.corp.test:${port}` };
      const formless = await rawPost(h2.url, sameOrigin, { token: 'guess-formless' });
      expect(formless.status).toBe(403);
      expect(formless.body).toContain('another site, or a page a day old');
      // Nothing counted: the agent's own form under the parent domain's name, and the API.
      const own = await rawPost(h2.url, { ...sameOrigin, cookie }, { token: ADMIN_TOKEN, nonce });
      expect(own.status).toBe(303);
      expect(own.headers['set-cookie']?.[0]).toMatch(/^baton_admin=/);
      expect((await h2.admin('/stats')).status).toBe(200);
    } finally {
      await h2.close();
    }
  });

  it('behind a proxy, the origin is the one it passes on (Host, or X-Forwarded-Host when trusted)', async () => {
    const direct = await startHarness();
    const trusting = await startHarness({ BATON_TRUST_PROXY: 'true' });
    try {
      const forwarded = { 'x-forwarded-host': 'baton.example', 'x-forwarded-proto': 'https' };
      const fromPage = { origin: 'https://baton.example' };
      const signInThrough = async (url: string, headers: Record<string, string>) => {
        const { nonce, cookie } = await signInForm(url);
        return rawPost(url, { ...headers, cookie }, { token: ADMIN_TOKEN, nonce });
      };
      expect((await signInThrough(trusting.url, { ...fromPage, ...forwarded })).status).toBe(303);
      // The proxy passed Host through (a TLS one not trusted: the scheme is not known).
      const passedHost = { ...fromPage, host: 'baton.example', 'x-forwarded-for': '203.0.113.9' };
      expect((await signInThrough(direct.url, passedHost)).status).toBe(303);
      // An X-Forwarded-Host from a peer not trusted is anyone's to write: Host counts.
      const refused = await signInThrough(direct.url, { ...fromPage, ...forwarded });
      expect(refused.status).toBe(403);
      expect(refused.body).toContain('Baton was reached at 127.0.0.1:');
      // A trusted proxy saying https: a page over plain HTTP on the same name is another origin.
      const plain = { origin: 'http://baton.example', ...forwarded };
      expect((await signInThrough(trusting.url, plain)).status).toBe(403);
    } finally {
      await direct.close();
      await trusting.close();
    }
  });
});

describe('behind a TLS-terminating proxy', () => {
  const signInVia = (url: string): Promise<Response> =>
    fetch(`${url}/admin/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-proto': 'https' },
      body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
      redirect: 'manual',
    });

  it('marks the cookie Secure when BATON_TRUST_PROXY=true, and believes no header otherwise', async () => {
    const trusting = await startHarness({ BATON_TRUST_PROXY: 'true' });
    try {
      expect((await signInVia(trusting.url)).headers.get('set-cookie')).toMatch(/; Secure/);
    } finally {
      await trusting.close();
    }
    expect((await signInVia(h.url)).headers.get('set-cookie')).not.toMatch(/Secure/);
  });
});

describe('odd ids a webhook may carry', () => {
  it('the session page takes any id the API takes; a broken URL is a coded 400', async () => {
    const c = await cookie();
    const r = await fetch(`${h.url}/admin/session?wa_id=${encodeURIComponent('<wa_id>')}`, {
      headers: { cookie: c },
    });
    expect(r.status).not.toBe(400);
    const bad = await fetch(`${h.url}/admin/api/sessions/%ED%A0%BD`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({
      code: 'BATON_ERR_BAD_REQUEST',
      error: 'The URL is not valid: a broken percent-encoding',
    });
  });
});
