/**
 * A session with a long history (an escalated user who keeps writing) is shown a window at a
 * time: the session page reads only the newest rows it shows (an outside tester's page read all
 * 5,006 records, all inbound and all outbound messages to show 300), and links to the older
 * and newer windows, so an agent can read how the conversation began.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { TransitionRecord } from '../../src/model/session.ts';
import { harnessOn } from '../support/harness-on.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)('a session page of a long history (%s)', (_name, available, setup) => {
  const h = harnessOn(available, setup);
  const ts = 1_750_000_000;
  const user = '15550828001';

  beforeAll(async () => {
    if (!available) return;
    // "hi" (version 1), then 400 records that change nothing, committed under the baton as a
    // worker would record ignored messages.
    expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
    await h.settled(user, 1);
    await ignored(0, 400, (i) => ts * 1000 + i);
  }, 60_000);

  /** Records `count` ignored messages (`wamid.IGNORED<from + i>`), committed as a worker would. */
  async function ignored(from: number, count: number, at: (i: number) => number): Promise<void> {
    const backend = h.baton.backend;
    const lease = (await backend.acquireLease({ channel: PHONE_ID, user }, 'test-writer', 5000))!;
    const snapshot = (await backend.load(lease))!;
    const records: TransitionRecord[] = Array.from({ length: count }, (_, i) => ({
      version: 1,
      from_step: snapshot.step,
      to_step: snapshot.step,
      kind: 'ignored',
      message_ids: [`wamid.IGNORED${from + i}`],
      at: new Date(at(i)).toISOString(),
      worker: 'test-writer',
      fencing_token: lease.fence,
    }));
    await backend.commit(lease, {
      expectedVersion: 1,
      snapshot,
      records,
      outbound: [],
      consumed: [],
      deadLetters: [],
    });
    await backend.releaseLease(lease);
  }
  const rows = (page: string): string[] =>
    [...page.matchAll(/<code>(wamid\.IGNORED\d+|wamid\.[^<]+)<\/code> <\/td>/g)].map((m) => m[1]!);
  const olderLink = (page: string): string | undefined =>
    /<p class="muted pager" id="timeline-pager">[\s\S]*?<a class="older" href="([^"]+)">/
      .exec(page)?.[1]
      ?.replace(/&amp;/g, '&');

  it.skipIf(!available)('shows the newest 300 records, then the older ones, reading only those', async () => {
    const backend = h.baton.backend;
    const transitions = backend.transitions.bind(backend);
    const asked: Array<number | undefined> = [];
    backend.transitions = (key, newest) => {
      asked.push(newest);
      return transitions(key, newest);
    };
    try {
      const cookie = await h.dashboardCookie();
      const get = async (path: string): Promise<string> => {
        const r = await fetch(`${h.url}${path}`, { headers: { cookie } });
        expect(r.status).toBe(200);
        return r.text();
      };

      const newest = await get(`/admin/session?wa_id=${user}&channel=${PHONE_ID}`);
      expect(newest).toContain('The newest 300.');
      const older =
        /<p class="muted pager" id="timeline-pager">[\s\S]*?<a class="older" href="([^"]+)">/.exec(newest);
      expect(older?.[1]).toMatch(
        new RegExp(
          `^/admin/session\\?wa_id=${user}&amp;channel=${PHONE_ID}&amp;older=300&amp;until=\\d{13}$`,
        ),
      );
      expect(rows(newest).at(-1)).toBe('wamid.IGNORED399');
      expect(rows(newest)[0]).toBe('wamid.IGNORED100');

      const before = await get(older![1]!.replace(/&amp;/g, '&'));
      expect(before).toMatch(/101 older, before the newest\s+300 as of <time>[^<]+<\/time>\./);
      expect(before).not.toMatch(/id="timeline-pager">[\s\S]*?class="older"/);
      // The first record of the conversation is there: "hi", then the first ignored ones.
      expect(rows(before).at(-1)).toBe('wamid.IGNORED99');
      expect(before).toMatch(/data-kind="advance"/);
      // Each page read the newest rows it needed, never the whole log.
      expect(asked).toEqual([301, 601]);
      // A time no Date holds is no time: the window counts from now ("This page failed": QA42-F3).
      expect(await get(`/admin/session?wa_id=${user}&channel=${PHONE_ID}&older=300&until=1e20`)).toMatch(
        /101 older, before the newest\s+300/,
      );
    } finally {
      backend.transitions = transitions;
    }
  });

  it.skipIf(!available)('the backend gives the newest records of a log, oldest first', async () => {
    const key = { channel: PHONE_ID, user };
    const all = await h.baton.backend.transitions(key);
    expect(all).toHaveLength(401);
    expect(await h.baton.backend.transitions(key, 2)).toEqual(all.slice(-2));
    expect(await h.baton.backend.transitions(key, 1000)).toEqual(all);
    const inbound = await h.baton.backend.inbound(key);
    expect(await h.baton.backend.inbound(key, 1)).toEqual(inbound.slice(-1));
    const outbound = await h.baton.backend.outbound(key);
    expect(outbound.length).toBeGreaterThan(0);
    expect(await h.baton.backend.outbound(key, 1)).toEqual(outbound.slice(-1));
  });

  it.skipIf(!available)(
    'the admin API pages the log with limit and cursor, oldest first, and all without',
    async () => {
      type Page = { transitions: TransitionRecord[]; next_cursor: string | null };
      const get = async (query: string): Promise<Page> => {
        const r = await h.admin(`/sessions/${user}/transitions?channel=${PHONE_ID}${query}`);
        expect(r.status).toBe(200);
        return (await r.json()) as Page;
      };
      const all = await get('');
      expect(all.transitions).toHaveLength(401);
      expect(all.next_cursor).toBeNull();
      // 401 records, 150 a page: 150, 150, 101, each page picking up where the last one stopped,
      // inside the 400 records of version 1.
      const pages: Page[] = [await get('&limit=150')];
      while (pages.at(-1)!.next_cursor !== null)
        pages.push(await get(`&limit=150&cursor=${pages.at(-1)!.next_cursor!}`));
      expect(pages.map((p) => p.transitions.length)).toEqual([150, 150, 101]);
      expect(pages.flatMap((p) => p.transitions)).toEqual(all.transitions);
      // A cursor without a limit: the rest of the log.
      expect((await get(`&cursor=${pages[0]!.next_cursor!}`)).transitions).toEqual(
        all.transitions.slice(150),
      );
      const bad = await h.admin(`/sessions/${user}/transitions?channel=${PHONE_ID}&limit=1001`);
      expect(bad.status).toBe(400);
    },
  );
  it.skipIf(!available)(
    'paging back holds its place while the user writes (outside test QA34-F1)',
    async () => {
      const cookie = await h.dashboardCookie();
      const get = async (path: string): Promise<string> => {
        const r = await fetch(`${h.url}${path}`, { headers: { cookie } });
        expect(r.status).toBe(200);
        return r.text();
      };
      const older = olderLink(await get(`/admin/session?wa_id=${user}&channel=${PHONE_ID}`))!;
      const shown = rows(await get(older));
      expect(shown.at(-1)).toBe('wamid.IGNORED99');
      // The user writes 50 more messages while the agent reads.
      await ignored(400, 50, () => Date.now() + 1000);
      // The same window again (a Live reload), then Newer: the rows the agent was reading, then
      // the 300 after them as they stood; nothing skipped.
      const again = await get(older);
      expect(rows(again)).toEqual(shown);
      expect(again).toMatch(/101 older, before the newest\s+300 as of/);
      const newer = /<a class="newer" href="([^"]+)">/.exec(again)![1]!.replace(/&amp;/g, '&');
      expect(newer).toBe(`/admin/session?wa_id=${user}&channel=${PHONE_ID}`);
      // The newest page is live: it shows what came since.
      expect(rows(await get(newer)).at(-1)).toBe('wamid.IGNORED449');
    },
  );
});
