/**
 * The distributed backend's writes to global keys (the global feed): stats posts queued by
 * commits ride with the next command the process sends (no round trip of their own), and the
 * callers of that command see only their own replies; the ready-queue entries of the sessions
 * an intake made due are written once per event-loop turn, the earliest due time winning.
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import type { GlobalFeed } from '../../src/backends/distributed/global-feed.ts';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { REDIS_URL, describeServices } from '../support/services.ts';
import { newKey, nextBatch, text } from './fixtures.ts';
import { makeBackend, useCleanup } from './harness.ts';

describeServices('distributed backend: stats posts ride with the next command', () => {
  useCleanup();

  it('a queued post goes with the next script or pipeline, whose caller sees only its replies', async () => {
    const { backend } = await makeBackend({ reaperIntervalMs: 0 });
    await backend.init();
    const feed = (backend as unknown as { globalFeed: GlobalFeed }).globalFeed;
    const key = newKey();
    const [m1, m2] = [text(key, 'one'), text(key, 'two')];

    // A pipeline (intake) with a post queued for another session: counts as usual.
    feed.post({ member: 'elsewhere:1', version: 1, count: 4, oldest: Date.now() - 1000 });
    expect(await backend.ingest({ messages: [m1, m2, m1], statuses: [] })).toMatchObject({
      accepted: 2,
      duplicates: 1,
    });
    // A single script (pending) with a post queued: its own answer only.
    feed.post({ member: 'elsewhere:2', version: 1, count: 1, oldest: Date.now() });
    expect((await backend.pending(key, 10)).map((m) => m.id)).toEqual([m1.id, m2.id]);
    // Both posts arrived without waiting for the background send.
    expect((await backend.stats()).queueDepth).toBe(2 + 4 + 1);

    // A commit's post, then the next command at once (as the engine's outbox read follows it).
    const lease = (await backend.acquireLease(key, 'w1', 5000))!;
    await backend.commit(lease, nextBatch(lease, 0, [m1.id, m2.id]));
    expect(await backend.unsent(key)).toEqual([]);
    await backend.releaseLease(lease);
    expect((await backend.stats()).queueDepth).toBe(4 + 1);
    // An older post for a session cannot undo a newer one.
    feed.post({ member: 'elsewhere:1', version: 2, count: 0, oldest: 0 });
    await feed.settled();
    feed.post({ member: 'elsewhere:1', version: 1, count: 4, oldest: Date.now() });
    expect((await backend.stats()).queueDepth).toBe(1);
  });

  it('the sessions made due by the webhooks of one turn enter the ready queue together, at their earliest due time', async () => {
    const { backend, prefix } = await makeBackend({ reaperIntervalMs: 0, bufferMs: 1000 });
    const feed = (backend as unknown as { globalFeed: GlobalFeed }).globalFeed;
    const keys = new Keys(prefix);
    const [a, b] = [newKey(), newKey()];
    const before = Date.now();
    // Two webhooks stored in the same turn, and an earlier due time queued for one session.
    await Promise.all([
      backend.ingest({ messages: [text(a, 'one')], statuses: [] }),
      backend.ingest({ messages: [text(b, 'two')], statuses: [] }),
    ]);
    feed.hint(keys.member(a), before - 5000);
    await feed.settled();
    const redis = new Redis(REDIS_URL);
    try {
      const dueA = Number(await redis.zscore(keys.ready, keys.member(a)));
      const dueB = Number(await redis.zscore(keys.ready, keys.member(b)));
      expect(dueA).toBe(before - 5000);
      // b is due when its buffer window closes.
      expect(dueB).toBeGreaterThanOrEqual(before + 1000);
      expect(dueB).toBeLessThan(Date.now() + 1000 + 1);
    } finally {
      redis.disconnect();
    }
  });
});
