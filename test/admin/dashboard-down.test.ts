/**
 * Outside test D5: with Redis down, every console page was a raw JSON error, with no page or way
 * back. A page that cannot be built now says so as a page (503, what is down, nothing changed,
 * tries again by itself). The store's failure is the real error class the stores throw, raised
 * by the sign-in check every page makes first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StorageUnavailableError } from '../../src/errors.ts';
import { startHarness, type Harness } from '../support/harness.ts';

describe('console pages while the store is down', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it('answer a page that says what is down and that nothing changed, then work again', async () => {
    const cookie = await h.dashboardCookie();
    const { backend } = h.baton;
    const check = backend.signInRevoked.bind(backend);
    backend.signInRevoked = () =>
      Promise.reject(
        StorageUnavailableError.unreachable(
          'Redis',
          'REDIS_URL',
          'redis://127.0.0.1:7598',
          new Error('connect ECONNREFUSED'),
        ),
      );
    try {
      for (const path of ['/admin', '/admin/inbox', '/admin/session?wa_id=15550000001']) {
        const r = await fetch(`${h.url}${path}`, { headers: { cookie }, redirect: 'manual' });
        expect(r.status, path).toBe(503);
        expect(r.headers.get('content-type')).toMatch(/^text\/html/);
        expect(r.headers.get('content-security-policy')).toContain("default-src 'none'");
        const page = await r.text();
        expect(page).toContain('The store is not answering');
        expect(page).toContain('Redis is unreachable at 127.0.0.1:7598 (REDIS_URL)');
        expect(page).toContain('Nothing was changed');
        expect(page).toContain('<meta http-equiv="refresh" content="10" />');
        expect(page).not.toContain('"code"');
      }
      // The JSON API still answers JSON.
      const api = await h.admin('/sessions?limit=1');
      expect(api.headers.get('content-type')).toMatch(/json/);
    } finally {
      backend.signInRevoked = check;
    }
    expect((await fetch(`${h.url}/admin/inbox`, { headers: { cookie } })).status).toBe(200);
  });

  it("names the store that did not answer, not the operation's internal name (outside test QA123-F2)", async () => {
    const cookie = await h.dashboardCookie();
    const { backend } = h.baton;
    const check = backend.signInRevoked.bind(backend);
    // As the PostgreSQL store words a statement that timed out.
    backend.signInRevoked = () =>
      Promise.reject(new StorageUnavailableError('PostgreSQL is unavailable (signed-out-get)'));
    try {
      const r = await fetch(`${h.url}/admin/inbox`, { headers: { cookie } });
      expect(r.status).toBe(503);
      const page = await r.text();
      expect(page).toContain('PostgreSQL is unavailable. Baton&#39;s pages');
      expect(page).not.toContain('signed-out-get');
    } finally {
      backend.signInRevoked = check;
    }
  });
});
