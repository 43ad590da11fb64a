/**
 * The intake watermark logic (backends/distributed/intake-watermark.ts) without Redis: a fake
 * `send` keeps the hash in memory and answers HSET, HGETALL and HDEL as Redis would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ACTIVE_PERIOD_MS,
  DEAD_AFTER_MS,
  decodeEntry,
  encodeEntry,
  IDLE_PERIOD_MS,
  hashEntries,
  IntakeWatermarks,
  lowWatermark,
  MIN_GAP_MS,
  PURGE_AFTER_MS,
  STALE_AFTER_MS,
} from '../../src/backends/distributed/intake-watermark.ts';
import type { PipelineOp } from '../../src/backends/distributed/scripts.ts';

const KEY = 'bt:intake';
const session = { channel: 'ch', user: 'u1' };

/** An in-memory Redis hash and pub/sub behind `send` and `subscribe`, and the ops it received. */
function fakeRedis(): {
  hash: Map<string, string>;
  ops: PipelineOp[];
  send: (ops: readonly PipelineOp[]) => Promise<unknown[]>;
  subscribe: (channel: string, onMessage: () => void) => () => void;
} {
  const hash = new Map<string, string>();
  const ops: PipelineOp[] = [];
  const subs = new Map<string, Set<() => void>>();
  return {
    hash,
    ops,
    send: async (batch) =>
      batch.map((op) => {
        ops.push(op);
        if ('command' in op && op.command === 'PUBLISH') {
          const listeners = [...(subs.get(String(op.args[0])) ?? [])];
          setImmediate(() => listeners.forEach((l) => l()));
          return listeners.length;
        }
        return apply(hash, op);
      }),
    subscribe: (channel, onMessage) => {
      const set = subs.get(channel) ?? new Set();
      subs.set(channel, set.add(onMessage));
      return () => set.delete(onMessage);
    },
  };
}

function apply(hash: Map<string, string>, op: PipelineOp): unknown {
  if (!('command' in op)) throw new Error('no scripts here');
  const [key, ...rest] = op.args.map(String);
  expect(key).toBe(KEY);
  if (op.command === 'HSET') return hash.set(rest[0]!, rest[1]!) && 1;
  if (op.command === 'HGETALL') return [...hash].flat();
  if (op.command === 'HDEL') return rest.filter((f) => hash.delete(f)).length;
  throw new Error(`unexpected ${op.command}`);
}

const open: IntakeWatermarks[] = [];
function watermarks(
  o: Partial<ConstructorParameters<typeof IntakeWatermarks>[0]> & {
    send: ConstructorParameters<typeof IntakeWatermarks>[0]['send'];
  },
): IntakeWatermarks {
  const w = new IntakeWatermarks({
    key: KEY,
    askChannel: 'bt:intake:ask',
    ingressId: 'me',
    cluster: false,
    lagMs: () => 0,
    ...o,
  });
  open.push(w);
  return w;
}
afterEach(() => {
  for (const w of open.splice(0)) w.close();
});

describe('lowWatermark', () => {
  const now = 1_000_000;
  it('is the lowest live entry; none live means nothing in flight', () => {
    const entries = new Map([
      ['a', encodeEntry({ watermark: now - 300, publishedAt: now - 10 })],
      ['b', encodeEntry({ watermark: now - 50, publishedAt: now - 5 })],
    ]);
    expect(lowWatermark(entries, now).watermark).toBe(now - 300);
    expect(lowWatermark(new Map(), now).watermark).toBe(Number.POSITIVE_INFINITY);
  });

  it('ignores a dead ingress, purges long-dead and malformed entries, skips its own', () => {
    const entries = new Map([
      ['dead', encodeEntry({ watermark: now - 9000, publishedAt: now - DEAD_AFTER_MS - 1 })],
      ['gone', encodeEntry({ watermark: 1, publishedAt: now - PURGE_AFTER_MS - 1 })],
      ['junk', 'nonsense'],
      ['me', encodeEntry({ watermark: now - 700, publishedAt: now })],
      ['live', encodeEntry({ watermark: now - 20, publishedAt: now - DEAD_AFTER_MS })],
    ]);
    const r = lowWatermark(entries, now, 'me');
    expect(r.watermark).toBe(now - 20);
    expect(r.purge.sort()).toEqual(['gone', 'junk']);
    expect(lowWatermark(entries, now).watermark).toBe(now - 700);
  });

  it("is also the largest loop lag among the live entries; an older version's entry has none", () => {
    const entries = new Map([
      ['busy', encodeEntry({ watermark: now - 30, publishedAt: now - 10, lagMs: 420 })],
      ['calm', encodeEntry({ watermark: now - 10, publishedAt: now - 5, lagMs: 12 })],
      ['old', `${now - 5}:${now - 5}`],
      ['dead', encodeEntry({ watermark: now - 9000, publishedAt: now - DEAD_AFTER_MS - 1, lagMs: 5000 })],
    ]);
    expect(lowWatermark(entries, now)).toMatchObject({ watermark: now - 30, lagMs: 420 });
    expect(lowWatermark(entries, now, 'busy').lagMs).toBe(12);
    expect(decodeEntry(`${now}:${now}`)).toEqual({ watermark: now, publishedAt: now, lagMs: 0 });
    expect(encodeEntry({ watermark: 1, publishedAt: 2, lagMs: 3.6 })).toBe('1:2:4');
  });

  it('reads HGETALL replies in every shape', () => {
    const expected = new Map([['a', '1:2']]);
    expect(hashEntries(['a', '1:2'])).toEqual(expected);
    expect(hashEntries({ a: '1:2' })).toEqual(expected);
    expect(hashEntries(new Map([[Buffer.from('a'), Buffer.from('1:2')]]))).toEqual(expected);
    expect(hashEntries(null)).toEqual(new Map());
  });
});

describe('the ingress side', () => {
  it('publishes the arrival of its oldest webhook in flight, else the time it publishes', async () => {
    let t = 10_000;
    const redis = fakeRedis();
    const w = watermarks({ send: redis.send, now: () => t });
    w.tracker(); // publishes at once
    await Promise.resolve();
    expect(redis.hash.get('me')).toBe(encodeEntry({ watermark: 10_000, publishedAt: 10_000 }));

    const a = w.begin(10_010);
    const b = w.begin(10_020);
    t = 10_030;
    expect(w.localWatermark()).toBe(10_010);
    w.end(a);
    expect(w.localWatermark()).toBe(10_020);
    w.end(b);
    expect(w.localWatermark()).toBe(10_030);
    // A body trickling in for longer than STALE_AFTER_MS holds nothing back.
    w.begin(10_030);
    t = 10_030 + STALE_AFTER_MS + 1;
    expect(w.localWatermark()).toBe(t);
    // A webhook a queue consumer took, which an ingress received long ago (a backlog in
    // RabbitMQ), holds batches back until it is stored (outside test QA44-F1).
    const queued = w.begin(t - 20_000, true);
    expect(w.localWatermark()).toBe(t - 20_000);
    w.end(queued);
    expect(w.localWatermark()).toBe(t);
    // A webhook read 1.3 s late (the process was stopped) holds batches back from when it may
    // have come; it goes stale counted from when it was read (outside test QA137-F1).
    const late = w.begin(t, false, 1_300);
    expect(w.localWatermark()).toBe(t - 1_300);
    t += STALE_AFTER_MS - 1;
    expect(w.localWatermark()).toBe(t - STALE_AFTER_MS + 1 - 1_300);
    w.end(late);
    expect(w.localWatermark()).toBe(t);
  });

  it('rides on pipelines at most every MIN_GAP_MS, and its entry goes when it closes', () => {
    let t = 50_000;
    const redis = fakeRedis();
    const w = watermarks({ send: redis.send, now: () => t });
    expect(w.take()).toBeNull(); // not an ingress (yet)
    w.tracker();
    t += MIN_GAP_MS;
    const token = w.begin(t);
    const op = w.take();
    expect(op).toEqual({ command: 'HSET', args: [KEY, 'me', encodeEntry({ watermark: t, publishedAt: t })] });
    expect(w.take()).toBeNull();
    t += MIN_GAP_MS;
    w.end(token);
    expect(w.take()).toEqual({
      command: 'HSET',
      args: [KEY, 'me', encodeEntry({ watermark: t, publishedAt: t })],
    });
    expect(w.close()).toEqual({ command: 'HDEL', args: [KEY, 'me'] });
    expect(w.take()).toBeNull();
  });

  it('publishes its loop lag; a publish that runs late keeps the watermark where the loop last read', async () => {
    let t = 20_000;
    let lag = 35;
    const redis = fakeRedis();
    const w = watermarks({ send: redis.send, now: () => t, lagMs: () => lag });
    w.tracker();
    await Promise.resolve();
    expect(decodeEntry(redis.hash.get('me')!)).toEqual({ watermark: 20_000, publishedAt: 20_000, lagMs: 35 });
    // A webhook: the timer publishes every ACTIVE_PERIOD_MS from now, due at 20_000 + 20.
    const token = w.begin(t);
    w.end(token);
    // The process is not scheduled for 700 ms (a CPU hog, SIGSTOP): its timer runs that late,
    // before it reads the webhooks that reached its sockets meanwhile.
    t += ACTIVE_PERIOD_MS + 700;
    lag = 0; // its loop-delay histogram has not caught up yet
    await new Promise((r) => setTimeout(r, ACTIVE_PERIOD_MS + 30));
    const e = decodeEntry(redis.hash.get('me')!)!;
    expect(e.publishedAt).toBe(t);
    expect(e.watermark).toBe(20_000 + ACTIVE_PERIOD_MS);
    expect(e.lagMs).toBe(700);
  });

  it('a publish riding on a pipeline while its timer is overdue says the stall too (outside test QA95-F1)', () => {
    let t = 30_000;
    const redis = fakeRedis();
    const w = watermarks({ send: redis.send, now: () => t, lagMs: () => 0 });
    w.tracker();
    // A webhook: the timer is due ACTIVE_PERIOD_MS later. The process stops in its wait for I/O
    // and, 750 ms later, reads the next webhook before it runs its timers.
    w.end(w.begin(t));
    const due = t + ACTIVE_PERIOD_MS;
    t = due + 750;
    const token = w.begin(t);
    const op = w.take()!;
    w.end(token);
    expect(op).toEqual({
      command: 'HSET',
      args: [KEY, 'me', encodeEntry({ watermark: due, publishedAt: t, lagMs: 750 })],
    });
  });

  it('keeps publishing on its timer while webhooks are in flight', async () => {
    const redis = fakeRedis();
    const w = watermarks({ send: redis.send });
    w.tracker();
    const token = w.begin(Date.now());
    const before = redis.ops.length;
    await new Promise((r) => setTimeout(r, 120));
    expect(redis.ops.length - before).toBeGreaterThanOrEqual(3); // every 20 ms
    w.end(token);
  });
});

describe('the worker side', () => {
  it('does not wait when the watermark read before the mailbox is past the window', async () => {
    const now = Date.now();
    const redis = fakeRedis();
    redis.hash.set('ingress-1', encodeEntry({ watermark: now - 10, publishedAt: now }));
    const w = watermarks({ send: redis.send });
    expect(w.beforeRead()).toBeNull(); // not a worker: its reads carry nothing
    w.gate();
    const read = w.beforeRead()!;
    w.afterRead(session, read, (await redis.send([read.op]))[0]);
    expect(await w.drained(now - 11, 1000, undefined, session)).toBe(false);
    // Used once: the next batch of the session reads again.
    const started = Date.now();
    expect(await w.drained(now - 11, 1000, undefined, session)).toBe(true);
    expect(Date.now() - started).toBeLessThan(500); // one poll shows it
  });

  it('waits until every live ingress is past the window, then says to read the mailbox again', async () => {
    const now = Date.now();
    const redis = fakeRedis();
    redis.hash.set('ingress-1', encodeEntry({ watermark: now - 200, publishedAt: now }));
    redis.hash.set('ingress-2', encodeEntry({ watermark: now, publishedAt: now }));
    const w = watermarks({ send: redis.send });
    w.gate();
    const read = w.beforeRead()!;
    w.afterRead(session, read, (await redis.send([read.op]))[0]);
    const windowEnd = now - 100;
    let settled = false;
    const waiting = w.drained(windowEnd, 2000, undefined, session).then((r) => {
      settled = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 60));
    expect(settled).toBe(false);
    // ingress-1 stores its webhooks and publishes.
    redis.hash.set('ingress-1', encodeEntry({ watermark: Date.now(), publishedAt: Date.now() }));
    const released = Date.now();
    expect(await waiting).toBe(true);
    expect(Date.now() - released).toBeLessThan(200);
    expect(w.polls).toBeGreaterThan(1);
  });

  it('tells the engine the largest loop lag of the live ingresses, from every read', async () => {
    const now = Date.now();
    const redis = fakeRedis();
    redis.hash.set('ingress-1', encodeEntry({ watermark: now, publishedAt: now, lagMs: 15 }));
    const w = watermarks({ send: redis.send });
    w.gate();
    expect(w.lagMs()).toBe(0); // nothing read yet
    const read = w.beforeRead()!;
    w.afterRead(session, read, (await redis.send([read.op]))[0]);
    expect(w.lagMs()).toBe(15);
    // A stalled ingress runs again and tells how late it is; the waiting batch's poll reads it.
    redis.hash.set('ingress-1', encodeEntry({ watermark: now - 500, publishedAt: Date.now(), lagMs: 600 }));
    const waiting = w.drained(now - 100, 2000);
    await new Promise((r) => setTimeout(r, 30));
    expect(w.lagMs()).toBe(600);
    redis.hash.set('ingress-1', encodeEntry({ watermark: Date.now(), publishedAt: Date.now(), lagMs: 600 }));
    expect(await waiting).toBe(true);
  });

  it('ignores a dead ingress and gives up after maxWaitMs', async () => {
    const now = Date.now();
    const redis = fakeRedis();
    redis.hash.set('dead', encodeEntry({ watermark: now - 5000, publishedAt: now - DEAD_AFTER_MS - 100 }));
    const w = watermarks({ send: redis.send });
    w.gate();
    expect(await w.drained(now - 100, 1000)).toBe(true);
    expect(w.polls).toBe(1);

    redis.hash.set('stuck', encodeEntry({ watermark: now - 5000, publishedAt: Date.now() }));
    const started = Date.now();
    expect(await w.drained(now - 100, 150)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('with both roles in one process, its own webhooks count from memory and wake it at once', async () => {
    const redis = fakeRedis();
    const w = watermarks({ send: redis.send });
    w.tracker();
    w.gate();
    const now = Date.now();
    const token = w.begin(now - 50);
    // Its own entry in Redis is old news: only memory counts for it.
    redis.hash.set('me', encodeEntry({ watermark: now, publishedAt: now }));
    const read = w.beforeRead()!;
    w.afterRead(session, read, (await redis.send([read.op]))[0]);
    let settled = false;
    const waiting = w.drained(now - 40, 2000, undefined, session).then((r) => {
      settled = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 40));
    expect(settled).toBe(false);
    w.end(token);
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(true);
    expect(await waiting).toBe(true);
  });

  it('an idle ingress answers a waiting worker at once, not at its next idle tick', async () => {
    const redis = fakeRedis();
    const ingress = watermarks({ send: redis.send, subscribe: redis.subscribe, ingressId: 'idle' });
    ingress.tracker(); // publishes now, then every IDLE_PERIOD_MS
    await new Promise((r) => setTimeout(r, 20));
    const worker = watermarks({ send: redis.send, ingressId: 'worker' });
    worker.gate();
    const windowEnd = Date.now(); // after the idle ingress's publish
    const before = ingress.published; // 1, or 2 if a stalled machine let its idle tick come too
    const started = Date.now();
    expect(await worker.drained(windowEnd, 2000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(IDLE_PERIOD_MS / 2);
    expect(ingress.published).toBeGreaterThan(before);
  });

  it('stops waiting when its lease is lost', async () => {
    const now = Date.now();
    const redis = fakeRedis();
    redis.hash.set('ingress-1', encodeEntry({ watermark: now - 500, publishedAt: now }));
    const w = watermarks({ send: redis.send });
    w.gate();
    const lost = new AbortController();
    const waiting = w.drained(now - 100, 5000, lost.signal);
    setTimeout(() => lost.abort(), 30);
    const started = Date.now();
    expect(await waiting).toBe(true);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('deletes entries dead for long', async () => {
    const now = Date.now();
    const redis = fakeRedis();
    redis.hash.set('gone', encodeEntry({ watermark: 1, publishedAt: now - PURGE_AFTER_MS - 1 }));
    const w = watermarks({ send: redis.send });
    w.gate();
    expect(await w.drained(now - 100, 500)).toBe(true);
    await Promise.resolve();
    expect(redis.hash.has('gone')).toBe(false);
  });
});
