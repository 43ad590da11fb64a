/**
 * The distributed backend's writes to global keys (the global feed): stats posts queued by
 * commits are gathered for a few milliseconds, then ride with the next command the process sends
 * (no round trip of their own), and the callers of that command see only their own replies; the ready-queue entries of the sessions
 * an intake made due are written once per event-loop turn, the earliest due time winning.
 */
import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { GlobalFeed } from '../../src/backends/distributed/global-feed.ts';
import type { PipelineOp } from '../../src/backends/distributed/scripts.ts';
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
      // b is due when its buffer window closes, by the store's clock (store-clock.ts: Redis's time
      // as this process estimates it, which may differ from Date.now() by a few ms: one CI run
      // found it 1 ms behind).
      const skew = 20;
      expect(dueB).toBeGreaterThanOrEqual(before + 1000 - skew);
      expect(dueB).toBeLessThan(Date.now() + 1000 + skew);
    } finally {
      redis.disconnect();
    }
  });

  it('a session the intake schedules is in the ready queue with the intake itself, not only through the follow-up (a process killed after its intake)', async () => {
    const { backend, prefix } = await makeBackend({ reaperIntervalMs: 0, bufferMs: 1000 });
    const feed = (backend as unknown as { globalFeed: GlobalFeed }).globalFeed;
    // The process dies right after its intake script: its ready-queue follow-up never leaves.
    feed.hint = () => undefined;
    feed.wake = () => undefined;
    const keys = new Keys(prefix);
    const a = newKey();
    const before = Date.now();
    await backend.ingest({ messages: [text(a, 'one')], statuses: [] });
    const redis = new Redis(REDIS_URL);
    try {
      const due = Number(await redis.zscore(keys.ready, keys.member(a)));
      // Stamped on Redis's clock (store-clock.ts), which this process's Date.now may lead by a
      // few milliseconds (a CI run: by 1).
      expect(due).toBeGreaterThanOrEqual(before + 1000 - 50);
      expect(due).toBeLessThanOrEqual(Date.now() + 1000 + 50);
    } finally {
      redis.disconnect();
    }
  });

  it('on a single node the follow-up of an intake that scheduled a session is the wake-up alone (the script queued it)', async () => {
    const { backend, prefix } = await makeBackend({ reaperIntervalMs: 0, bufferMs: 1000 });
    const feed = (backend as unknown as { globalFeed: GlobalFeed }).globalFeed;
    const keys = new Keys(prefix);
    const sent: PipelineOp[][] = [];
    const send = (feed as unknown as { send: (ops: readonly PipelineOp[]) => Promise<boolean> }).send;
    Object.defineProperty(feed, 'send', {
      value: (ops: readonly PipelineOp[]) => {
        sent.push([...ops]);
        return send(ops);
      },
    });
    await backend.ingest({ messages: [text(newKey(), 'one')], statuses: [] });
    await feed.settled();
    const ops = sent.flat();
    expect(ops.filter((op) => 'command' in op && op.command === 'ZADD')).toEqual([]);
    expect(ops).toContainEqual({ command: 'PUBLISH', args: [keys.wake, '1'] });
  });

  it('the leases held follow grants, renewals and releases, and a lease cleared by an agent leaves them', async () => {
    const { backend, prefix } = await makeBackend({ reaperIntervalMs: 0 });
    const feed = (backend as unknown as { globalFeed: GlobalFeed }).globalFeed;
    const keys = new Keys(prefix);
    const redis = new Redis(REDIS_URL);
    const score = async (token: string): Promise<number | null> => {
      await feed.settled();
      const s = await redis.zscore(keys.leases, token);
      return s === null ? null : Number(s);
    };
    try {
      const [a, b] = [newKey(), newKey()];
      const la = (await backend.acquireLease(a, 'w1', 2000))!;
      const lb = (await backend.acquireLease(b, 'w1', 2000))!;
      const granted = (await score(la.token))!;
      expect(granted).toBeGreaterThan(Date.now());
      expect((await backend.stats()).locksHeld).toBe(2);
      // A renewal moves the entry (already sent) to the new expiry.
      await new Promise((r) => setTimeout(r, 20));
      expect(await backend.renewLease(la, 60_000)).toBe(true);
      expect(await score(la.token)).toBeGreaterThan(granted + 50_000);
      // A release takes it out; so does an agent's clear of the other lease.
      await backend.releaseLease(la);
      expect(await score(la.token)).toBeNull();
      expect(await backend.clearLease(b)).toBe(true);
      expect(await score(lb.token)).toBeNull();
      expect((await backend.stats()).locksHeld).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});

/** A feed over a fake send whose first call fails ("Command timed out": a process paused after its intake, say). */
function failingOnce(): { feed: GlobalFeed; sent: PipelineOp[][]; keys: Keys } {
  const sent: PipelineOp[][] = [];
  let fail = true;
  const keys = new Keys('gf-unit');
  const feed = new GlobalFeed(
    keys,
    async (ops) => {
      sent.push([...ops]);
      const ok = !fail;
      fail = false;
      return ok;
    },
    () => 1_000,
    (schedules) => [{ command: 'ZADD', args: [keys.ready, ...schedules.flatMap(([m, d]) => [d, m])] }],
    () => ({ command: 'PUBLISH', args: [keys.wake, '1'] }),
  );
  return { feed, sent, keys };
}

describe('the global feed, when the command carrying its writes fails', () => {
  it('queues the sessions made due and their figures again, and sends them shortly', async () => {
    const { feed, sent, keys } = failingOnce();
    feed.hint('s1', 1_030);
    feed.post({ member: 's1', version: 3, count: 1, oldest: 1_000 });
    await feed.settled();
    expect(sent).toHaveLength(1);
    // A newer figure for the session meanwhile wins over the one given back.
    feed.post({ member: 's1', version: 4, count: 2, oldest: 1_000 });
    const posted = (): PipelineOp | undefined =>
      sent
        .slice(1)
        .flat()
        .find((op) => 'script' in op && op.script === 'stats-pending');
    await vi.waitFor(() => expect(posted()).toBeDefined(), { timeout: 3_000 });
    // The schedule given back goes at once, the figures once gathered (in the same send or after).
    expect(sent.slice(1).flat()).toContainEqual({ command: 'ZADD', args: [keys.ready, 1_030, 's1'] });
    const post = posted();
    expect(post && 'args' in post ? post.args.slice(2) : []).toEqual(['s1', 4, 2, 1_000]);
    // Sent: nothing more.
    const sends = sent.length;
    expect(sends).toBeLessThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 1_200));
    expect(sent).toHaveLength(sends);
  });

  it('sends a wake-up owed for sessions already queued again, so no scheduler sleeps past them', async () => {
    const { feed, sent, keys } = failingOnce();
    feed.wake();
    await feed.settled();
    await vi.waitFor(() => expect(sent).toHaveLength(2), { timeout: 3_000 });
    expect(sent).toEqual([
      [{ command: 'PUBLISH', args: [keys.wake, '1'] }],
      [{ command: 'PUBLISH', args: [keys.wake, '1'] }],
    ]);
    expect(feed.owesNow).toBe(false);
  });
});

describe('the global feed, gathering', () => {
  /** A feed over a fake send that records every call. */
  function recording(): { feed: GlobalFeed; sent: PipelineOp[][]; keys: Keys } {
    const sent: PipelineOp[][] = [];
    const keys = new Keys('gf-gather');
    const feed = new GlobalFeed(
      keys,
      async (ops) => {
        sent.push([...ops]);
        return true;
      },
      () => 1_000,
      (schedules) => [{ command: 'ZADD', args: [keys.ready, ...schedules.flatMap(([m, d]) => [d, m])] }],
      () => ({ command: 'PUBLISH', args: [keys.wake, '1'] }),
    );
    return { feed, sent, keys };
  }
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  const scripts = (sent: PipelineOp[][]): number =>
    sent.flat().filter((op) => 'script' in op && op.script === 'stats-pending').length;

  it('posts the figures of several event-loop turns in one script call', async () => {
    const { feed, sent, keys } = recording();
    for (let i = 0; i < 4; i += 1) {
      feed.post({ member: `s${i}`, version: 1, count: 1, oldest: 1_000 });
      feed.leaseHeld(`t${i}`, '5000');
      await turn();
    }
    // Nothing yet: none of it is owed at once (turns take microseconds, the gathering milliseconds).
    expect(sent).toEqual([]);
    await vi.waitFor(() => expect(sent).toHaveLength(1), { timeout: 1_000 });
    const [post, held] = sent[0]!;
    expect(post && 'args' in post ? post.args.slice(2) : []).toEqual(
      ['s0', 's1', 's2', 's3'].flatMap((s) => [s, 1, 1, 1_000]),
    );
    expect(held).toEqual({
      command: 'ZADD',
      args: [keys.leases, ...['t0', 't1', 't2', 't3'].flatMap((token) => ['5000', token])],
    });
    expect(scripts(sent)).toBe(1);
    expect(feed.owesNow).toBe(false);
  });

  it('sends a session made due at the end of its turn, without waiting for figures gathering', async () => {
    const { feed, sent, keys } = recording();
    feed.post({ member: 's1', version: 1, count: 1, oldest: 1_000 });
    feed.hint('s2', 1_010);
    await turn();
    await turn();
    expect(sent).toEqual([[{ command: 'ZADD', args: [keys.ready, 1_010, 's2'] }]]);
    // The figures follow once gathered, and a reader waiting for them has them at once.
    feed.post({ member: 's3', version: 1, count: 1, oldest: 1_000 });
    await feed.settled();
    expect(scripts(sent)).toBe(1);
    expect(sent).toHaveLength(2);
  });

  it('a command going after the gathering takes the figures along; one going before leaves them', () => {
    // The clock is the test's: a CI run on a busy machine paused over 5 ms between the post and
    // the first look, and the figures were due already.
    let now = 10_000;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      const { feed } = recording();
      feed.post({ member: 's1', version: 1, count: 1, oldest: 1_000 });
      expect(feed.owesNow).toBe(false);
      expect(feed.takeWrites().ops).toEqual([]);
      now += 6; // a busy turn longer than the gathering
      expect(feed.owesNow).toBe(true);
      const taken = feed.takeWrites();
      expect(taken.figures).toEqual([{ member: 's1', version: 1, count: 1, oldest: 1_000 }]);
      expect(taken.ops).toHaveLength(1);
    } finally {
      clock.mockRestore();
    }
  });

  it('a repair post of a version posted already is skipped, unless the feed forgot its posts (a failover took the figures back: outside test QA116-F3)', () => {
    let now = 10_000;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      const { feed } = recording();
      const figures = { member: 's1', version: 7, count: 0, oldest: 0 };
      feed.post(figures);
      now += 6;
      expect(feed.takeWrites().figures).toEqual([figures]);
      feed.post(figures, true);
      now += 6;
      expect(feed.takeWrites().figures).toEqual([]);
      feed.forgetPosted();
      feed.post(figures, true);
      now += 6;
      expect(feed.takeWrites().figures).toEqual([figures]);
    } finally {
      clock.mockRestore();
    }
  });
});
