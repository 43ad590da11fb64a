/**
 * The fast liveness backstop (maintenance.ts, `checkStalled`): a session whose messages wait with
 * neither a lease nor a ready-queue entry (a lost wake-up: a follow-up write lost to a crash or a
 * timed-out command) is served within seconds, not at the reaper's next walk of the key space;
 * sessions waiting their turn, or held, are left alone.
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import type { Context } from '../../src/backends/distributed/context.ts';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { checkStalled } from '../../src/backends/distributed/maintenance.ts';
import { REDIS_URL, describeServices } from '../support/services.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';
import { eventually, newKey, sleep, text } from './fixtures.ts';

const LOST = 'messages waited with neither a lease nor a ready-queue entry (a lost wake-up): rescheduled';

/** A backend whose stall check looks every 100 ms, the reaper off; its upkeep started. */
async function setup(stallAfterMs: number) {
  const made = await makeBackend({ reaperIntervalMs: 0, stallCheckIntervalMs: 100, stallAfterMs });
  const redis = new Redis(REDIS_URL);
  afterThisTest(() => redis.quit().then(() => undefined));
  // The first nextReady starts this process's upkeep.
  expect(await made.backend.nextReady(AbortSignal.timeout(100))).toBeNull();
  // Its start-up reaper pass ends first: on a busy machine it ran after the test's lost wake-up
  // and rescheduled the session itself, and the stall check had nothing to say.
  await (made.backend as unknown as { ctx: { reaping: Promise<void> | null } }).ctx.reaping;
  return { ...made, redis, keys: new Keys(made.prefix) };
}

describeServices('distributed backend: the stall check', () => {
  useCleanup();

  it('serves a session whose ready entry was lost within seconds, with the reaper off, and says so', async () => {
    const { backend, logger, redis, keys } = await setup(200);
    const lost = newKey();
    await backend.ingest({ messages: [text(lost, 'hi')], statuses: [] });
    // Its entry reaches the queue (a follow-up write may land after `ingest` returns: on a busy
    // machine it came after the removal below, and the session was never lost).
    for (let i = 0; i < 100 && (await redis.zscore(keys.ready, keys.member(lost))) === null; i += 1)
      await sleep(20);
    // The lost wake-up: the session is flagged as scheduled, but its entry never reached the queue.
    await redis.zrem(keys.ready, keys.member(lost));
    expect(await redis.exists(keys.session(lost).sched)).toBe(1);

    const started = Date.now();
    expect(await backend.nextReady(AbortSignal.timeout(5000))).toEqual(lost);
    expect(Date.now() - started).toBeLessThan(3000);
    // Said once the reschedule is through, which may be just after the session is served.
    const warned = await eventually(async () => {
      const lines = logger.lines.filter((l) => l.msg === LOST);
      return lines.length > 0 ? lines : null;
    }, 2000);
    expect(warned).toHaveLength(1);
    expect(warned[0]!.obj).toMatchObject({ count: 1 });
  });

  it('leaves alone a session that waits in the queue, and one whose lease is held', async () => {
    const { backend, logger, redis, keys } = await setup(100);
    // Held: its lease is taken, and its watchdog entry removed as a lost one would be.
    const held = newKey();
    await backend.ingest({ messages: [text(held, 'one')], statuses: [] });
    expect(await backend.acquireLease(held, 'test', 10_000)).not.toBeNull();
    await redis.zrem(keys.ready, keys.member(held));
    // Queued: its entry pushed to the future, as a claim by a slow worker leaves it.
    const queued = newKey();
    await backend.ingest({ messages: [text(queued, 'two')], statuses: [] });
    const later = Date.now() + 60_000;
    await redis.zadd(keys.ready, later, keys.member(queued));

    await sleep(1000);
    expect(logger.lines.filter((l) => l.msg === LOST)).toEqual([]);
    expect(await redis.zscore(keys.ready, keys.member(held))).toBeNull();
    expect(Number(await redis.zscore(keys.ready, keys.member(queued)))).toBe(later);
  });

  /** Removes every key of `key`'s session, as a cluster master that restarted empty loses them. */
  async function loseSession(redis: Redis, prefix: string, member: string): Promise<void> {
    const gone = await redis.keys(`${prefix}:{${member}}:*`);
    expect(gone.length).toBeGreaterThan(0);
    await redis.del(...gone);
    await redis.zrem(new Keys(prefix).ready, member);
  }

  it('drops from the queue depth the messages of a mailbox Redis lost (a cluster master restarted empty)', async () => {
    const { backend, redis, keys, prefix } = await setup(100);
    const lost = newKey();
    await backend.ingest({ messages: [text(lost, 'one'), text(lost, 'two')], statuses: [] });
    await eventually(async () => ((await backend.stats()).queueDepth === 2 ? true : null), 3000);
    // The session's slot lost everything; the global stats, in another slot, kept its figures.
    await loseSession(redis, prefix, keys.member(lost));

    const stats = await eventually(async () => {
      const s = await backend.stats();
      return s.queueDepth === 0 ? s : null;
    }, 5000);
    expect(stats.oldestPendingMs).toBe(0);
    // The version the repair seeded expires unless the mailbox changes.
    expect(await redis.pttl(keys.session(lost).pv)).toBeGreaterThan(0);

    // The user writes again: counted, once.
    await backend.ingest({ messages: [text(lost, 'three')], statuses: [] });
    await eventually(async () => ((await backend.stats()).queueDepth === 1 ? true : null), 3000);
    expect(await redis.pttl(keys.session(lost).pv)).toBe(-1);
  });

  it('counts a message that comes after its mailbox was lost at once, not behind the lost figures', async () => {
    // The stall check off: the intake's own post must win over what the stats kept.
    const made = await makeBackend({ reaperIntervalMs: 0, stallCheckIntervalMs: 0 });
    const redis = new Redis(REDIS_URL);
    afterThisTest(() => redis.quit().then(() => undefined));
    const keys = new Keys(made.prefix);
    const lost = newKey();
    await made.backend.ingest({
      messages: [text(lost, 'one'), text(lost, 'two'), text(lost, 'three')],
      statuses: [],
    });
    await eventually(async () => ((await made.backend.stats()).queueDepth === 3 ? true : null), 3000);
    await loseSession(redis, made.prefix, keys.member(lost));

    await made.backend.ingest({ messages: [text(lost, 'four')], statuses: [] });
    await eventually(async () => ((await made.backend.stats()).queueDepth === 1 ? true : null), 3000);
  });
});

describeServices('distributed backend: the stall check and a release under way', () => {
  useCleanup();

  it('does not report a session met between a release and its reschedule (outside test QA109-F4)', async () => {
    // A release takes the lease and its watchdog entry away in one round trip, and schedules the
    // session in the next. A stall check that looks in between finds neither; by the time it
    // would reschedule the session, the release's entry is there: nothing was lost.
    const { backend, logger, prefix } = await makeBackend({
      reaperIntervalMs: 0,
      stallCheckIntervalMs: 60_000,
      stallAfterMs: 100,
    });
    const redis = new Redis(REDIS_URL);
    afterThisTest(() => redis.quit().then(() => undefined));
    const keys = new Keys(prefix);
    const key = newKey();
    const member = keys.member(key);
    await backend.ingest({ messages: [text(key, 'hi')], statuses: [] });
    for (let i = 0; i < 100 && (await redis.zscore(keys.ready, member)) === null; i += 1) await sleep(20);
    await redis.zrem(keys.ready, member); // between the release's two round trips
    await sleep(300); // its message has waited past the window and the stall threshold

    const ctx = (backend as unknown as { ctx: Context }).ctx;
    const pipeline = ctx.scripts.pipeline.bind(ctx.scripts);
    const due = Date.now() + 200;
    ctx.scripts.pipeline = async (...args: Parameters<typeof pipeline>) => {
      // The release's follow-up lands while the stall check asks whether the session is leased.
      if (args[1].some((op) => 'script' in op && op.script === 'reap'))
        await redis.zadd(keys.ready, due, member);
      return pipeline(...args);
    };
    try {
      await redis.del(keys.stallCheck); // this check's turn
      expect(await checkStalled(ctx, 100)).toEqual([]);
    } finally {
      ctx.scripts.pipeline = pipeline;
    }
    expect(logger.lines.filter((l) => l.msg === LOST)).toEqual([]);
    expect(Number(await redis.zscore(keys.ready, member))).toBe(due); // the release's entry stands
  });
});
