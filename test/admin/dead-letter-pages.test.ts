/**
 * More dead letters than one page: the API pages through them (`next_cursor`), and the
 * overview links the older ones, each with its Replay button (an outside tester saw 125 counted
 * and only the newest 50 shown or replayable, with no way to the others).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetterView } from '../../src/admin/conversation.ts';
import type { DeadLetter } from '../../src/model/session.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { PHONE_ID } from '../support/payloads.ts';
import { bothStores } from '../support/stores.ts';

describe.each(bothStores())('dead letters beyond one page (%s)', (_mode, env) => {
  let h: Harness;
  // An hour ago: within the retention, which the distributed store applies as letters come.
  const T0 = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
  const letters: DeadLetter[] = Array.from({ length: 55 }, (_, i) => ({
    id: `dl-pages-${String(i).padStart(2, '0')}`,
    kind: 'inbound',
    channel: PHONE_ID,
    user: '15550838001',
    ref: `wamid.PAGES${i}`,
    reason: 'flow code threw',
    payload: { id: `wamid.PAGES${i}` },
    createdAt: T0 + i,
  }));

  beforeAll(async () => {
    h = await startHarness(env());
    for (const d of letters) await h.baton.backend.deadLetter(d);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('the API pages through every letter, newest first, once each', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r = await h.admin(`/dead-letters?limit=20${cursor !== null ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      const page = (await r.json()) as { dead_letters: DeadLetterView[]; next_cursor: string | null };
      seen.push(...page.dead_letters.map((d) => d.id));
      cursor = page.next_cursor;
    } while (cursor !== null && seen.length < 100);
    expect(seen).toEqual(letters.map((d) => d.id).reverse());
    expect((await h.admin('/dead-letters?cursor=garbage')).status).toBe(400);
    // A cursor of the right shape holding a time no Date holds, or a fraction: 400, not 500
    // (PostgreSQL was handed "0NaN-NaN…": outside test QA42-F3).
    for (const parts of [
      [1e20, 'x'],
      [-1e20, 'x'],
      [1.5, 'x'],
    ]) {
      const bad = Buffer.from(JSON.stringify(parts)).toString('base64url');
      expect((await h.admin(`/dead-letters?cursor=${bad}`)).status).toBe(400);
      const page = await fetch(`${h.url}/admin?dead_after=${bad}`, {
        headers: { cookie: await h.dashboardCookie() },
      });
      expect(page.status).toBe(200);
    }
  });

  it('names and dates a letter as the rest of the API does (outside test Q13)', async () => {
    const page = (await (await h.admin('/dead-letters?limit=1')).json()) as { dead_letters: unknown[] };
    expect(page.dead_letters).toEqual([
      {
        id: 'dl-pages-54',
        kind: 'inbound',
        channel: PHONE_ID,
        user: '15550838001',
        ref: 'wamid.PAGES54',
        reason: 'flow code threw',
        payload: { id: 'wamid.PAGES54' },
        created_at: new Date(T0 + 54).toISOString(),
      },
    ]);
  });

  it('the overview shows the newest 50 and links the older ones, with their Replay buttons', async () => {
    const cookie = await h.dashboardCookie();
    const get = async (path: string): Promise<string> =>
      (await fetch(`${h.url}${path}`, { headers: { cookie } })).text();
    const first = await get('/admin');
    expect(first).toContain('The newest 50 of 55.');
    const older = /<a class="older" href="([^"]+)">Older<\/a>/.exec(first)?.[1];
    expect(older).toBeDefined();
    const rest = await get(older!.replace(/&amp;/g, '&'));
    expect(rest).toContain('Older ones, 5 from where the page before ended.');
    for (const d of letters.slice(0, 5)) expect(rest).toContain(`/admin/api/dead-letters/${d.id}/replay`);
    expect(rest).not.toContain(`/admin/api/dead-letters/${letters[5]!.id}/replay`);
    expect(rest).toContain('<a class="newer" href="/admin#dead-letters">Newest</a>');
  });
});
