/**
 * Idle sessions leave Redis: once a session has nothing waiting, nothing unsent, its journal
 * copied and no lease, every one of its keys gets the idle TTL (BATON_SESSION_TTL), the arrival
 * counter too; a session at work has none, and a message stored in an idle session's mailbox
 * takes the counter's TTL away. An expired session reloads from PostgreSQL, fences above the old ones.
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
      // The stats version outlives the session by at least two minutes (see session-idle-12.lua
      // and stats-pending-4.lua).
      (k) => !k.includes(':seen:') && !k.endsWith(':pv'),
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

  it('a session taken up again before its keys expire keeps them while at work', async () => {
    // A short idle TTL (it is at most BATON_MESSAGE_RETENTION, which may be seconds): the
    // session goes idle, then a message comes before its keys expire. Its holder commits a
    // record to send (or an effect to run) and takes longer than the TTL (a worker killed
    // mid-effect): before, the outbox's hashes kept their TTL and expired under it, while its
    // unsent index (no TTL) still named the record, so the next holder found nothing to send
    // or run and the session waited for good.
    const { backend, prefix } = await makeBackend({ idleTtlSec: 2 });
    const key = newKey();
    const member = new Keys(prefix).member(key);
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
    const first = outbound(key, 1, 0);
    await backend.commit(g1, nextBatch(g1, 0, [m1.id], { outbound: [first] }));
    await backend.updateOutbound(first.id, { status: 'sent', providerMessageId: 'wamid.I1' });
    await backend.releaseLease(g1);
    await eventually(async () => {
      const keys = await sessionKeys(prefix, member);
      return keys.size > 0 && [...keys.values()].every((t) => t > 1000) ? true : null;
    });

    const m2 = text(key, 'two');
    await backend.ingest({ messages: [m2], statuses: [] });
    const g2 = (await backend.acquireLease(key, 'w2', 5000))!;
    const second = outbound(key, 2, 0);
    await backend.commit(g2, nextBatch(g2, 1, [m2.id], { outbound: [second] }));
    for (const [k, ttl] of await sessionKeys(prefix, member))
      if (k !== 'lock') expect([-1, -2], k).toContain(ttl);
    await new Promise((r) => setTimeout(r, 2500)); // past the idle TTL; the holder is gone
    expect((await backend.unsent(g2)).map((o) => o.id)).toEqual([second.id]);
    expect((await backend.load(key))?.version).toBe(2);
  });

  it('a message stored in an idle session takes its arrival counter off expiry, and numbering goes on', async () => {
    const { backend, prefix } = await makeBackend({ idleTtlSec: 60 });
    const key = newKey();
    const seqKey = `${new Keys(prefix).session(key).seq}`;
    const r = new Redis(REDIS_URL);
    try {
      const m1 = text(key, 'one');
      await backend.ingest({ messages: [m1], statuses: [] });
      const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
      await backend.commit(g1, nextBatch(g1, 0, [m1.id]));
      await backend.releaseLease(g1);
      await eventually(async () => ((await r.pttl(seqKey)) > 0 ? true : null)); // idle: it expires
      const m2 = text(key, 'two');
      const m3 = text(key, 'three');
      await backend.ingest({ messages: [m2], statuses: [] });
      await backend.ingest({ messages: [m3], statuses: [] });
      expect(await r.pttl(seqKey)).toBe(-1); // a message waits: it must not expire under it
      const g2 = (await backend.acquireLease(key, 'w2', 5000))!;
      expect((await backend.pending(g2, 10)).map((m) => [m.id, m.seq])).toEqual([
        [m2.id, 2],
        [m3.id, 3],
      ]);
      await backend.releaseLease(g2);
    } finally {
      r.disconnect();
    }
  });
});
