/**
 * Idle sessions leave Redis: once a session has nothing waiting, nothing unsent, its journal
 * copied and no lease, every one of its keys but the arrival counter (a few bytes) gets the
 * idle TTL (BATON_SESSION_TTL); a session at work has none. An expired session reloads from PostgreSQL, fences above the old ones.
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { describeServices, REDIS_URL } from '../support/services.ts';
import { eventually, newKey, nextBatch, outbound, text } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

/** Every key of the session and its TTL in ms (-1: none). */
async function sessionKeys(prefix: string, member: string): Promise<Map<string, number>> {
  const r = new Redis(REDIS_URL);
  try {
    const keys = (await r.keys(`${prefix}:{${member}}:*`)).filter(
      // The arrival counter outlives the session on purpose, the stats version by at least two
      // minutes (see session-idle-11.lua and stats-pending-4.lua).
      (k) => !k.includes(':seen:') && !k.endsWith(':seq') && !k.endsWith(':pv'),
    );
    const ttls = await Promise.all(keys.map((k) => r.pttl(k)));
    return new Map(keys.map((k, i) => [k.slice(k.lastIndexOf(':') + 1), ttls[i]!]));
  } finally {
    r.disconnect();
  }
}

describeServices('distributed backend: idle sessions expire from Redis', () => {
  useCleanup();

  it.each([['write-through' as const], ['write-behind' as const]])(
    '%s: keys get the idle TTL once idle, none while at work; the session reloads from PostgreSQL',
    async (syncMode) => {
      const { backend, prefix } = await makeBackend({ idleTtlSec: 1, syncMode });
      const key = newKey();
      const member = new Keys(prefix).member(key);
      const m1 = text(key, 'one');
      await backend.ingest({ messages: [m1], statuses: [] });
      const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
      const reply = outbound(key, 1, 0);
      await backend.commit(g1, nextBatch(g1, 0, [m1.id], { outbound: [reply] }));
      // At work (leased, a reply unsent): nothing may expire.
      for (const [k, ttl] of await sessionKeys(prefix, member))
        if (k !== 'lock') expect([-1, -2], k).toContain(ttl); // none (-2: a journal copied meanwhile)
      await backend.updateOutbound(reply.id, { status: 'sent', providerMessageId: 'wamid.X1' });
      await backend.releaseLease(g1);
      const before = await backend.load(key);

      // Idle: every key has a TTL of at most a second, then they are gone.
      await eventually(async () => {
        const keys = await sessionKeys(prefix, member);
        return keys.size > 0 && [...keys.values()].every((t) => t > 0 && t <= 1000) ? true : null;
      });
      await eventually(async () => ((await sessionKeys(prefix, member)).size === 0 ? true : null), 5000);

      expect(await backend.load(key)).toEqual(before);
      const g2 = (await backend.acquireLease(key, 'w2', 5000))!;
      expect(g2.fence).toBeGreaterThan(g1.fence);
      await backend.commit(g2, nextBatch(g2, 1));
      for (const [k, ttl] of await sessionKeys(prefix, member))
        if (k !== 'lock') expect([-1, -2], k).toContain(ttl); // none (-2: a journal copied meanwhile)
      await backend.releaseLease(g2);
      expect((await backend.transitions(key)).map((r) => r.version)).toEqual([1, 2]);
    },
  );
});
