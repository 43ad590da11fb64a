/**
 * The reaper's walk over the key space costs Redis little whatever else it holds (issue 10,
 * point 5: cost does not grow with stored data). SCAN visits every key of the database, other
 * applications' too, so the reaper walks it once per pass for all three kinds of keys it looks
 * for, and rests a hundred times as long as the walk took before the next one (at least its
 * interval); the intake log's recovery still runs every pass. Counted with INFO commandstats on
 * a Redis of the test's own, holding 30,000 keys of another application.
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { SWEEP_REST_FACTOR } from '../../src/backends/distributed/maintenance.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';
import { newKey, text } from './fixtures.ts';
import { startPrivateRedis } from '../support/redis-server.ts';
import { describeServices } from '../support/services.ts';

const FOREIGN_KEYS = 30_000;

/** SCAN calls Redis has served since its stats were reset. */
async function scans(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  return Number(/cmdstat_scan:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describeServices('distributed backend: the reaper walks the key space sparingly', () => {
  useCleanup();

  it('one walk a pass finds lost schedules and journals; the next walk waits for its rest, however often the reaper runs', async () => {
    const server = await startPrivateRedis({ persist: false });
    afterThisTest(() => server.stop());
    const redis = new Redis(server.url);
    afterThisTest(() => redis.quit().then(() => undefined));
    for (let i = 0; i < FOREIGN_KEYS; i += 1000) {
      const batch = redis.pipeline();
      for (let j = i; j < i + 1000; j++) batch.set(`other-app:item:${j}`, 'x');
      await batch.exec();
    }
    const { backend, prefix } = await makeBackend({ redisUrl: server.url, reaperIntervalMs: 0 });
    const keys = new Keys(prefix);
    // A session whose ready entry was lost (a crash between the intake script and its follow-up),
    // and a journal owing PostgreSQL entries with nobody told.
    const lost = newKey();
    expect(await backend.nextReady(AbortSignal.timeout(200))).toBeNull();
    await backend.ingest({ messages: [text(lost, 'hi')], statuses: [] });
    await redis.zrem(keys.ready, keys.member(lost));
    const owing = newKey();
    await redis.rpush(keys.session(owing).journal, '{}');

    await redis.config('RESETSTAT');
    const dbsize = await redis.dbsize();
    expect(await backend.reapOnce(30_000, { force: true })).toEqual({ rescheduled: 1, journals: 1 });
    // One walk: a SCAN call per thousand keys (COUNT 1000), not one walk per kind of key.
    const walk = await scans(redis);
    expect(walk).toBeGreaterThanOrEqual(Math.floor(dbsize / 1000));
    expect(walk).toBeLessThan(1.5 * (dbsize / 1000) + 2);
    expect(await backend.nextReady(AbortSignal.timeout(5000))).toEqual(lost);

    // The walk rests: the reaper's next passes (another process's turn, or this one's) do not walk.
    const rest = await redis.pttl(keys.sweep);
    expect(rest).toBeGreaterThan(25_000);
    expect(rest).toBeLessThanOrEqual(Math.max(30_000, SWEEP_REST_FACTOR * 60_000));
    await redis.del(keys.reaper);
    expect(await backend.reapOnce(30_000)).toEqual({ rescheduled: 0, journals: 0 });
    expect(await backend.reapOnce(30_000, { force: true, sweep: false })).toEqual({
      rescheduled: 0,
      journals: 0,
    });
    expect(await scans(redis)).toBe(walk);

    // Rested, the next pass walks again.
    await redis.del(keys.sweep, keys.reaper);
    await backend.reapOnce(30_000);
    expect(await scans(redis)).toBeGreaterThan(walk);
  });
});
