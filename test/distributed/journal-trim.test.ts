/**
 * Journal trims after a copy to PostgreSQL, on the machine's Redis: a single node trims a whole
 * group copy's journals with one script call (journal-trim-n.lua), which must drop exactly the
 * entries copied, journal by journal, and nothing appended since.
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { ScriptSet } from '../../src/backends/distributed/scripts.ts';
import { describeServices, REDIS_URL, uniqueName } from '../support/services.ts';
import { eventually, newKey, nextBatch, text } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

const entry = (id: string): string => JSON.stringify({ id, t: 'c' });

describeServices('distributed backend: journal trims', () => {
  useCleanup();

  it('one call trims several journals, each only down to the first entry not copied', async () => {
    const r = new Redis(REDIS_URL);
    const base = uniqueName('trim');
    const [a, b, c] = ['a', 'b', 'c'].map((k) => `${base}:{${k}}:journal`);
    try {
      await r.rpush(a!, entry('a1'), entry('a2'), entry('a3'));
      await r.rpush(b!, entry('b1'), entry('b2'));
      await r.rpush(c!, entry('c1'));
      const scripts = ScriptSet.load();
      // a: a1 and a2 copied (a3 appended since); b: only b2 named, so its head b1 stays and b2
      // behind it too; c: c1 copied, and an id of another journal is no licence.
      const dropped = await scripts.run(
        r,
        'journal-trim',
        [a!, b!, c!],
        [2, 'a1', 'a2', 1, 'b2', 2, 'a3', 'c1'],
      );
      expect(dropped).toBe(3);
      expect(await r.lrange(a!, 0, -1)).toEqual([entry('a3')]);
      expect(await r.lrange(b!, 0, -1)).toEqual([entry('b1'), entry('b2')]);
      expect(await r.lrange(c!, 0, -1)).toEqual([]);
      // One journal alone, as a cluster calls it.
      expect(await scripts.run(r, 'journal-trim', [a!], [1, 'a3'])).toBe(1);
      expect(await r.exists(a!)).toBe(0);
    } finally {
      await r.del(a!, b!, c!);
      r.disconnect();
    }
  });

  it('commits of many sessions at once: every journal is copied and trimmed', async () => {
    const { backend, prefix } = await makeBackend({ syncMode: 'write-behind' });
    const keys = new Keys(prefix);
    const users = Array.from({ length: 12 }, () => newKey());
    await Promise.all(
      users.map(async (key) => {
        const m = text(key, 'hi');
        await backend.ingest({ messages: [m], statuses: [] });
        const g = (await backend.acquireLease(key, 'w1', 5000))!;
        await backend.commit(g, nextBatch(g, 0, [m.id]));
        await backend.releaseLease(g);
      }),
    );
    const r = new Redis(REDIS_URL);
    try {
      await eventually(async () => {
        const lengths = await Promise.all(users.map((k) => r.llen(keys.session(k).journal)));
        return lengths.every((n) => n === 0) ? true : null;
      }, 10_000);
    } finally {
      r.disconnect();
    }
    for (const key of users) expect((await backend.transitions(key)).map((t) => t.version)).toEqual([1]);
  });
});
