/**
 * The flow map's live counts and the inbox count every session, however many there are (an
 * outside tester saw both stop at 5,000 with 5,202 sessions at one step, as if exact), and the
 * inbox pages through all that wait, ordered without reading their transition logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedSessions } from '../../scripts/seed-sessions.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';

describe('counts and pages beyond a scan', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ BATON_MAX_RETRIES: '0' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('the flow map counts 5,100 sessions at one step as 5,100', async () => {
    await seedSessions(h.baton.backend, { count: 5100, concurrency: 32 });
    const map = (await (await h.admin('/flows/order/map')).json()) as {
      steps: Array<{ id: string; sessions: number; oldest_ms: number | null }>;
    };
    const askName = map.steps.find((s) => s.id === 'ask_name')!;
    expect(askName.sessions).toBe(5100);
    expect(askName.oldest_ms).toBeGreaterThanOrEqual(0);
    expect(map.steps.find((s) => s.id === 'completed')).toMatchObject({ sessions: 0, oldest_ms: null });
    // The flow page lists them 200 a page, each once, with a link to the next (outside test Q5:
    // 5,000 in one page was 883 KB of HTML).
    const cookie = await h.dashboardCookie();
    const seen = new Set<string>();
    let next: string | null = '/admin/flows/order?step=ask_name';
    let pages = 0;
    while (next !== null) {
      const page = await (await fetch(`${h.url}${next}`, { headers: { cookie } })).text();
      pages += 1;
      if (pages === 1) expect(page).toContain('5100 at this step; 200 a page.');
      const users = [...page.matchAll(/<li>\s*<a href="\/admin\/session\?wa_id=(\d+)/g)].map((m) => m[1]!);
      expect(users.length).toBeLessThanOrEqual(200);
      for (const u of users) seen.add(u);
      const link = /<a\s+href="([^"]+)"\s+id="step-sessions-next"/.exec(page);
      next = link ? link[1]!.replaceAll('&amp;', '&').replace(/#sessions$/, '') : null;
      expect(pages).toBeLessThan(40);
    }
    expect(pages).toBe(26);
    expect(seen.size).toBe(5100);
  }, 120_000);

  it('the inbox pages through every waiting session, longest waiting first, once each', async () => {
    const ts = 1_750_000_000;
    const users = ['15550601001', '15550601002', '15550601003'];
    for (const [i, u] of users.entries()) {
      expect((await h.post(webhook([text(u, 'hi', ts + i)]))).status).toBe(200);
      await h.settled(u, 1);
      expect((await h.post(webhook([text(u, 'Jo', ts + i)]))).status).toBe(200);
      await h.settled(u, 2);
      expect((await h.post(webhook([text(u, 'which?', ts + i)]))).status).toBe(200);
      await h.settled(u, 3);
    }
    // The order comes from the sessions themselves: no transition log is read (an outside
    // tester's inbox of 1,775 waiting sessions took 1-4 s reading every one's whole log).
    const backend = h.baton.backend;
    const transitions = backend.transitions.bind(backend);
    let logsRead = 0;
    backend.transitions = (key) => {
      logsRead += 1;
      return transitions(key);
    };
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = (await (
        await h.admin(`/inbox?limit=2${cursor !== null ? `&cursor=${cursor}` : ''}`)
      ).json()) as { sessions: Array<{ wa_id: string }>; total: number; next_cursor: string | null };
      expect(page.total).toBe(3);
      expect(page.sessions.length).toBeLessThanOrEqual(2);
      seen.push(...page.sessions.map((s) => s.wa_id));
      cursor = page.next_cursor;
    } while (cursor !== null && seen.length < 10);
    expect(seen).toEqual(users);
    expect(logsRead).toBe(0);
    backend.transitions = transitions;
    expect((await h.admin('/inbox?cursor=garbage')).status).toBe(400);
  });

  it('the next page starts after the last row shown, though sessions before it left the inbox (outside test D1)', async () => {
    type Page = { sessions: Array<{ wa_id: string }>; from: number; next_cursor: string | null };
    const first = (await (await h.admin('/inbox?limit=2')).json()) as Page;
    expect(first.sessions.map((s) => s.wa_id)).toEqual(['15550601001', '15550601002']);
    // An agent takes the first and hands it back: one fewer waiting ahead of the next page.
    const json = (method: string, body: unknown): RequestInit => ({
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect((await h.admin('/sessions/15550601001/agent', json('POST', { agent: 'ana' }))).status).toBe(200);
    expect((await h.admin('/sessions/15550601001/agent', json('DELETE', { step: 'ask_name' }))).status).toBe(
      200,
    );
    const next = (await (await h.admin(`/inbox?limit=2&cursor=${first.next_cursor!}`)).json()) as Page;
    expect(next.sessions.map((s) => s.wa_id)).toEqual(['15550601003']);
    expect(next.from).toBe(1);
    expect(next.next_cursor).toBeNull();
  });
});

describe('the flow map and sessions idle past the session TTL', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ BATON_SESSION_TTL: '1h' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('counts only sessions whose user wrote within the TTL: the others start over with their next message', async () => {
    const now = Math.floor(Date.now() / 1000);
    // One user last wrote two hours ago, one a minute ago; both stand at ask_name.
    for (const [u, at] of [
      ['15550602001', now - 7200],
      ['15550602002', now - 60],
    ] as const) {
      expect((await h.post(webhook([text(u, 'hi', at)]))).status).toBe(200);
      await h.settled(u, 1);
    }
    const map = async (): Promise<
      Array<{ id: string; sessions: number; oldest_ms: number | null; idle: number }>
    > =>
      ((await (await h.admin('/flows/order/map')).json()) as { steps: Awaited<ReturnType<typeof map>> })
        .steps;
    const askName = (await map()).find((s) => s.id === 'ask_name')!;
    expect(askName).toMatchObject({ sessions: 1, idle: 1 });
    expect(askName.oldest_ms).toBeLessThan(3_600_000);
    const cookie = await h.dashboardCookie();
    const page = await (await fetch(`${h.url}/admin/flows/order`, { headers: { cookie } })).text();
    expect(page).toContain('Sessions idle longer than the session TTL (1h 0m) are counted apart');
    // The list under the table agrees with it, and says which session is idle (outside test QA87-F2).
    const list = await (
      await fetch(`${h.url}/admin/flows/order?step=ask_name`, { headers: { cookie } })
    ).text();
    expect(list).toContain('1 at this step, and 1 idle past the session TTL; 200 a page.');
    expect(list.match(/, idle past the session TTL/g)).toHaveLength(1);
  });

  it('counts sessions at steps another version of the flow has, apart, and lists them (outside test QA113-F1)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const u = '15550602004';
    expect((await h.post(webhook([text(u, 'hi', now - 30)]))).status).toBe(200);
    await h.settled(u, 1);
    // A newer version's worker moved the session to a step this version lacks, and handed it
    // over (a rollback, say).
    const backend = h.baton.backend;
    const key = { channel: PHONE_ID, user: u };
    const lease = (await backend.acquireLease(key, 'v2-worker', 5000))!;
    const s = (await backend.load(key))!;
    await backend.commit(lease, {
      expectedVersion: s.version,
      snapshot: { ...s, version: s.version + 1, flowVersion: 2, step: 'gift_note', needsAgent: true },
      records: [],
      outbound: [],
      consumed: [],
      deadLetters: [],
    });
    await backend.releaseLease(lease);
    const map = (await (await h.admin('/flows/order/map')).json()) as {
      steps: Array<{ id: string }>;
      other_steps: Array<{ id: string; sessions: number; idle: number }>;
    };
    expect(map.steps.map((x) => x.id)).not.toContain('gift_note');
    expect(map.other_steps).toEqual([expect.objectContaining({ id: 'gift_note', sessions: 1, idle: 0 })]);
    const cookie = await h.dashboardCookie();
    const page = await (await fetch(`${h.url}/admin/flows/order`, { headers: { cookie } })).text();
    const row = page.slice(page.indexOf('data-step="gift_note"'));
    expect(row).toMatch(/^data-step="gift_note" class="other-step"/);
    expect(row.replace(/\s+/g, ' ')).toContain('(not a step of order v1, which this process runs');
    const list = await (
      await fetch(`${h.url}/admin/flows/order?step=gift_note`, { headers: { cookie } })
    ).text();
    expect(list).toContain(`/admin/session?wa_id=${u}`);
  });

  it('counts a session waiting for an agent however long it waits: its next message is held, not a new start', async () => {
    const now = Math.floor(Date.now() / 1000);
    const u = '15550602003';
    // Escalated two hours ago (the order flow hands off after repeated invalid input).
    const sends = ['hi', 'Jo', 'which?', 'no idea', 'still no', 'nope'];
    for (const [i, body] of sends.entries()) {
      expect((await h.post(webhook([text(u, body, now - 7200 + i)]))).status).toBe(200);
      await h.settled(u, i + 1);
    }
    const s = (await (await h.admin(`/sessions/${u}`)).json()) as {
      current_step: string;
      metadata: { needs_agent: boolean };
    };
    expect(s.metadata.needs_agent).toBe(true);
    const map = (await (await h.admin('/flows/order/map')).json()) as {
      steps: Array<{ id: string; sessions: number; idle: number }>;
    };
    expect(map.steps.find((x) => x.id === s.current_step)).toMatchObject({ sessions: 1, idle: 0 });
  });
});
