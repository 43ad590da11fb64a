/**
 * The global pending figures keep a tombstone for each emptied mailbox for a minute (against late
 * posts); posts drop expired ones a few at a time, and the reaper's pass drops the rest, so they
 * do not outlive the traffic that made them (outside test QA12: 694 left for good after a run).
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { TOMBSTONE_MS } from '../../src/backends/distributed/global-feed.ts';
import { REDIS_URL, describeServices } from '../support/services.ts';
import { batch, eventually, newKey, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';

describeServices('distributed backend: pending-stats tombstones', () => {
  useCleanup();

  it('the reaper drops the tombstones of emptied mailboxes once they expire, with no traffic', async () => {
    let now = Date.now();
    const { backend: b, prefix } = await makeBackend({ now: () => now, reaperIntervalMs: 0 });
    const redis = new Redis(REDIS_URL);
    afterThisTest(() => redis.quit().then(() => undefined));
    const keys = new Keys(prefix);
    const users = Array.from({ length: 5 }, () => newKey());
    for (const key of users) {
      const m = text(key, 'hi');
      await b.ingest({ messages: [m], statuses: [] });
      const lease = (await b.acquireLease(key, 'w1', 5000))!;
      await b.commit(lease, batch(key, 0, 1, { consumed: [m.id] }));
      await b.releaseLease(lease);
    }
    // Each emptied mailbox left a tombstone (the posts go in the background).
    await eventually(async () => ((await redis.zcard(keys.pendingTombs)) === users.length ? true : null));
    expect(await redis.hlen(keys.pendingCounts)).toBe(users.length);
    // Not before they expire.
    await b.reapOnce(30_000, { force: true, sweep: false });
    expect(await redis.zcard(keys.pendingTombs)).toBe(users.length);
    now += TOMBSTONE_MS + 1000;
    await b.reapOnce(30_000, { force: true, sweep: false });
    expect(await redis.zcard(keys.pendingTombs)).toBe(0);
    expect(await redis.hlen(keys.pendingCounts)).toBe(0);
    expect((await b.stats()).queueDepth).toBe(0);
  });
});
