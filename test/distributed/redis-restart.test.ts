/**
 * A Redis of the test's own (AOF, fsync always) is SIGKILLed and restarted while webhooks
 * pour in. Every acknowledged message must still be in its mailbox exactly once, scheduling
 * must resume, and fencing tokens must keep increasing across the restart.
 */
import { expect, it } from 'vitest';
import { StorageUnavailableError } from '../../src/errors.ts';
import type { InboundMessage, SessionKey } from '../../src/model/message.ts';
import type { LeaseGrant } from '../../src/backends/types.ts';
import type { DistributedBackend } from '../../src/backends/distributed/index.ts';
import type { PgStore } from '../../src/backends/distributed/pg-store.ts';
import type { Redis } from 'ioredis';
import { eventually, newKey, nextBatch, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';
import { startPrivateRedis } from '../support/redis-server.ts';
import { describeServices, pgQuery } from '../support/services.ts';

describeServices('distributed backend: Redis restart', () => {
  useCleanup();

  it('loses no acknowledged message when an AOF Redis is SIGKILLed and restarted mid-run', async () => {
    const redis = await startPrivateRedis();
    afterThisTest(() => redis.stop());
    const { backend, logger } = await makeBackend({
      redisUrl: redis.url,
      commandTimeoutMs: 1000,
    });
    expect(logger.lines.filter((l) => l.msg.includes('DURABILITY'))).toEqual([]);

    const users: SessionKey[] = Array.from({ length: 6 }, () => newKey());
    const fenceBefore = (await backend.acquireLease(users[0]!, 'w', 5000))!;
    await backend.releaseLease(fenceBefore);

    const acked = new Map<string, Set<string>>(users.map((u) => [u.user, new Set()]));
    let ackedCount = 0;
    let refused = 0;
    const deliver = async (webhook: InboundMessage[]): Promise<void> => {
      for (;;) {
        try {
          await backend.ingest({ messages: webhook, statuses: [] });
          for (const m of webhook) acked.get(m.user)!.add(m.id);
          ackedCount += webhook.length;
          return;
        } catch (err) {
          if (!(err instanceof StorageUnavailableError)) throw err;
          refused++;
          await sleep(25); // Meta retries a refused webhook later
        }
      }
    };
    const perUser = 60;
    const senders = users.map(async (u) => {
      for (let i = 0; i < perUser; i += 2) {
        await deliver([text(u, `${i}`), text(u, `${i + 1}`)]);
        await sleep(2);
      }
    });
    const chaos = (async () => {
      while (ackedCount < (users.length * perUser) / 3) await sleep(5);
      await redis.kill();
      await sleep(300);
      await redis.restart();
    })();
    await Promise.all([...senders, chaos]);

    expect(refused).toBeGreaterThan(0);
    for (const u of users) {
      const pending = await backend.pending(u, 1000);
      const ids = pending.map((m) => m.id);
      expect(new Set(ids).size, 'no duplicates').toBe(ids.length);
      expect(new Set(ids)).toEqual(acked.get(u.user));
      expect(ids.length).toBe(perUser);
      for (let i = 1; i < pending.length; i++) expect(pending[i]!.seq).toBeGreaterThan(pending[i - 1]!.seq);
    }

    // Scheduling survived: every user is handed out (once).
    const handed = new Set<string>();
    for (let i = 0; i < users.length; i++) {
      const k = await backend.nextReady(AbortSignal.timeout(5000));
      expect(k).not.toBeNull();
      handed.add(k!.user);
    }
    expect(handed).toEqual(new Set(users.map((u) => u.user)));

    // A restarted Redis (new run_id) takes a fresh fence block: tokens never go back.
    const fenceAfter = (await backend.acquireLease(users[0]!, 'w', 5000))!;
    expect(fenceAfter.fence).toBeGreaterThan(fenceBefore.fence);
  }, 60_000);

  // A Redis that restarted between a grant's "reserve a block" answer and the grant took the
  // block reserved for its earlier lifetime, while its own lifetime's first reservation had raised
  // the session's floor in PostgreSQL above it: every commit of the session was then refused by
  // PostgreSQL and kept by Redis, whose replies went out from states never made durable (outside
  // test QA91-F1). The grant now asks again for a block of the lifetime that grants it.
  it('grants no fence from a block reserved for a Redis lifetime that ended before the grant', async () => {
    const redis = await startPrivateRedis();
    afterThisTest(() => redis.stop());
    const { backend, schema } = await makeBackend({ redisUrl: redis.url, commandTimeoutMs: 1000 });
    const ctx = (backend as unknown as { ctx: { pg: PgStore; redis: Redis } }).ctx;
    const key = newKey();
    const m = text(key, 'hi');
    await backend.ingest({ messages: [m], statuses: [] });
    const reserve = ctx.pg.reserveFenceBlock.bind(ctx.pg);
    let raced = 0;
    ctx.pg.reserveFenceBlock = async (k, size, era) => {
      const got = await reserve(k, size, era);
      if (raced === 0 && k.user === key.user) {
        raced += 1;
        await redis.kill();
        await redis.restart(); // on its AOF: the mailbox kept, a new run_id
        await eventually(async () => ((await ctx.redis.ping().catch(() => null)) === 'PONG' ? true : null));
        // The new lifetime's first reservation of the session (another worker's grant, or the
        // intake log's restore) comes first.
        const info = await ctx.redis.info('server');
        await reserve(k, size, /run_id:(\w+)/.exec(info)![1]!);
      }
      return got;
    };
    const lease = await eventually(async () => {
      try {
        return await backend.acquireLease(key, 'w', 5000);
      } catch {
        return null; // Redis on its way back
      }
    });
    expect(raced).toBe(1);
    const [row] = await pgQuery(
      schema,
      'SELECT floor FROM fence_blocks WHERE channel = $1 AND user_id = $2',
      [key.channel, key.user],
    );
    expect(lease.fence).toBeGreaterThanOrEqual(Number(row!.floor));
    // PostgreSQL takes the session's commits.
    await backend.commit(lease, nextBatch(lease, 0, [m.id]));
    await eventually(async () =>
      (
        await pgQuery(schema, 'SELECT 1 FROM sessions WHERE channel = $1 AND user_id = $2', [
          key.channel,
          key.user,
        ])
      ).length === 1
        ? true
        : null,
    );
  }, 60_000);

  // An AOF Redis that restarted keeps its sessions under a new lifetime: the next grant of each
  // asks PostgreSQL for a fence block and whether Redis is behind it. A grant that read Redis's
  // version, then PostgreSQL's after another worker's grant had committed there, took Redis for
  // behind and started a new era: the floor rose above the live holder's fence, and PostgreSQL
  // refused its every commit while Redis took them (outside test QA106-F4: three acknowledged
  // messages in no log, replies sent from versions PostgreSQL never had). Redis is behind only if
  // it still is once PostgreSQL is read.
  it('a grant that finds PostgreSQL ahead because another holder committed meanwhile starts no new era', async () => {
    const { backend, schema, logger, prefix } = await makeBackend();
    const ctx = (backend as unknown as { ctx: { pg: PgStore; redis: Redis } }).ctx;
    const key = newKey();
    const [m1, m2, m3] = [text(key, 'hi'), text(key, 'Jane'), text(key, 'sku_550e')];
    await backend.ingest({ messages: [m1], statuses: [] });
    const first = (await backend.acquireLease(key, 'a', 5000))!;
    await backend.commit(first, nextBatch(first, 0, [m1.id]));
    await backend.releaseLease(first);
    // The Redis lifetime that granted the fences is over (a restart on its AOF): data kept.
    await ctx.redis.hset(
      `${prefix}:{${key.channel}:${key.user}}:fence`,
      'epoch',
      'an-earlier-redis-lifetime',
    );
    await pgQuery(schema, "UPDATE fence_blocks SET era = 'an-earlier-redis-lifetime'", []);
    await backend.ingest({ messages: [m2, m3], statuses: [] });
    const reserve = ctx.pg.reserveFenceBlock.bind(ctx.pg);
    let other: LeaseGrant | null = null;
    let calls = 0;
    ctx.pg.reserveFenceBlock = async (k, size, era) => {
      calls += 1;
      // The first grant has read Redis (version 1); another worker's grant and commit come
      // before its PostgreSQL read.
      if (calls === 1) {
        other = await backend.acquireLease(key, 'b', 5000);
        expect(other).not.toBeNull();
        await backend.commit(other!, nextBatch(other!, 1, [m2.id]));
      }
      return reserve(k, size, era);
    };
    expect(await backend.acquireLease(key, 'a', 5000)).toBeNull(); // b holds it
    // b's next commit reaches PostgreSQL: its fence is above the session's floor.
    await backend.commit(other!, nextBatch(other!, 2, [m3.id]));
    const [row] = await pgQuery(
      schema,
      'SELECT floor FROM fence_blocks WHERE channel = $1 AND user_id = $2',
      [key.channel, key.user],
    );
    expect(other!.fence).toBeGreaterThanOrEqual(Number(row!.floor));
    await eventually(async () => {
      const [s] = await pgQuery(schema, 'SELECT version FROM sessions WHERE channel = $1 AND user_id = $2', [
        key.channel,
        key.user,
      ]);
      return Number(s?.version) === 3 ? true : null;
    });
    expect(logger.lines.filter((l) => l.msg.includes('Redis still holds'))).toEqual([]);
    expect(logger.lines.filter((l) => l.msg.includes('older than PostgreSQL'))).toEqual([]);
  }, 60_000);

  // Should Redis and PostgreSQL disagree on a session's fences again, PostgreSQL's refusal of a
  // commit Redis accepted under a lease it still holds is said as the fault it is, not as a lapse.
  it('says so, as an error, when PostgreSQL refuses a commit of a lease Redis still holds', async () => {
    const { backend, schema, logger } = await makeBackend();
    const key = newKey();
    const m = text(key, 'hi');
    await backend.ingest({ messages: [m], statuses: [] });
    const lease = (await backend.acquireLease(key, 'w', 5000))!;
    await pgQuery(schema, 'UPDATE fence_blocks SET floor = ceiling + 1 WHERE channel = $1 AND user_id = $2', [
      key.channel,
      key.user,
    ]);
    await expect(backend.commit(lease, nextBatch(lease, 0, [m.id]))).rejects.toThrow(/fenc/i);
    const said = logger.lines.filter((l) => l.msg.includes('Redis still holds'));
    expect(said.map((l) => l.level)).toEqual(['error']);
    expect(logger.lines.filter((l) => l.msg.includes('this lease lapsed'))).toEqual([]);
  }, 30_000);

  // A supervisor restarting an AOF Redis with its default configuration brings it back empty:
  // what it held is gone, and nothing said so (outside test QA81-F2). Said once, as an error; a
  // restart on the AOF says nothing.
  it("says so when an AOF Redis comes back without Baton's keys", async () => {
    const redis = await startPrivateRedis();
    afterThisTest(() => redis.stop());
    const { backend, logger } = await makeBackend({ redisUrl: redis.url, commandTimeoutMs: 1000 });
    const lost = () => logger.lines.filter((l) => l.level === 'error' && l.msg.includes('back without'));
    const key = newKey();
    const storeAfterRestart = async (n: number): Promise<void> => {
      await eventually(async () => {
        try {
          await backend.ingest({ messages: [text(key, `after ${n}`)], statuses: [] });
          return true;
        } catch {
          return null;
        }
      });
    };
    await backend.ingest({ messages: [text(key, 'before')], statuses: [] });
    await redis.kill();
    await redis.restart(); // on its AOF: everything kept
    await storeAfterRestart(1);
    expect(lost()).toEqual([]);
    await redis.kill();
    await redis.restart({ persist: false }); // the AOF not read: empty
    await storeAfterRestart(2);
    expect(lost()).toHaveLength(1);
    expect(lost()[0]!.msg).toMatch(/LOST/);
  }, 60_000);

  // A signed-out cookie worked again once Redis came back empty (outside test QA87-F1).
  it('remembers a dashboard sign-out across a Redis restarted empty', async () => {
    const redis = await startPrivateRedis({ persist: false });
    afterThisTest(() => redis.stop());
    const { backend } = await makeBackend({ redisUrl: redis.url, commandTimeoutMs: 1000 });
    const [out, other, expired] = [`so-${Date.now()}-a`, `so-${Date.now()}-b`, `so-${Date.now()}-c`];
    await backend.revokeSignIn(out, Date.now() + 60_000);
    await backend.revokeSignIn(expired, Date.now() + 300);
    await redis.kill();
    await redis.restart();
    await sleep(400);
    const revoked = async (id: string): Promise<boolean | null> => {
      try {
        return await backend.signInRevoked(id);
      } catch {
        return null; // Redis not back yet
      }
    };
    await eventually(async () => ((await revoked(out)) === null ? null : true));
    expect(await backend.signInRevoked(out)).toBe(true);
    expect(await backend.signInRevoked(other)).toBe(false);
    expect(await backend.signInRevoked(expired)).toBe(false);
  }, 60_000);

  // An AOF Redis whose AOF was lost (its volume wiped), or a new Redis under a deployment that has
  // processed messages, forgot the messages it had seen: Meta redelivering one had it applied
  // again (outside test QA79-F4). For the dedupe window, every process keeps the intake log on,
  // whose insert finds the messages PostgreSQL consumed: redeliveries are duplicates (SPEC 1.2).
  it('recognises the redelivery of a message an emptied or new Redis forgot, in every process', async () => {
    const redis = await startPrivateRedis();
    afterThisTest(() => redis.stop());
    const opts = { redisUrl: redis.url, commandTimeoutMs: 1000 };
    const { backend, prefix, schema, logger } = await makeBackend(opts);
    const other = await makeBackend(opts, { prefix, schema });
    const key = newKey();
    const m1 = text(key, 'one');
    expect(await backend.ingest({ messages: [m1], statuses: [] })).toMatchObject({ accepted: 1 });
    const g = (await backend.acquireLease(key, 'w1', 5000))!;
    await backend.commit(g, nextBatch(g, 0, [m1.id]));
    await backend.releaseLease(g);
    await eventually(async () =>
      (await pgQuery(schema, 'SELECT 1 FROM inbound WHERE id = $1', [m1.id])).length === 1 ? true : null,
    );
    const redeliver = (b: DistributedBackend) =>
      eventually(async () => {
        try {
          return await b.ingest({ messages: [m1], statuses: [] });
        } catch {
          return null; // Redis on its way back: Meta retries
        }
      });
    // Still known to Redis: a duplicate, the log off (a Redis that fsyncs every write).
    expect(await redeliver(backend)).toMatchObject({ accepted: 0, duplicates: 1 });
    const forgot = () => logger.lines.filter((l) => l.msg.includes('Redis lost the record'));
    expect(forgot()).toEqual([]);

    await redis.kill();
    await redis.restart({ wipe: true }); // back empty, persisting again
    expect(await redeliver(backend)).toMatchObject({ accepted: 0, duplicates: 1 });
    expect(await redeliver(other.backend)).toMatchObject({ accepted: 0, duplicates: 1 });
    expect(forgot()).toHaveLength(1);
    // A process that starts later within the window keeps the log on too.
    const later = await makeBackend(opts, { prefix, schema });
    expect(await redeliver(later.backend)).toMatchObject({ accepted: 0, duplicates: 1 });
    expect(await backend.pending(key, 10)).toEqual([]);

    // The stack brought back up with a new Redis (one that kept no volume): said at start, and
    // redeliveries are duplicates there too.
    const fresh = await startPrivateRedis();
    afterThisTest(() => fresh.stop());
    const restarted = await makeBackend({ redisUrl: fresh.url, commandTimeoutMs: 1000 }, { prefix, schema });
    expect(
      restarted.logger.lines.filter((l) => l.level === 'error' && /holds none/.test(l.msg)),
    ).toHaveLength(1);
    expect(await redeliver(restarted.backend)).toMatchObject({ accepted: 0, duplicates: 1 });
    expect(await restarted.backend.pending(key, 10)).toEqual([]);

    // With the intake log off by choice nothing checks PostgreSQL: said as what it is (QA84-F2).
    const offRedis = await startPrivateRedis();
    afterThisTest(() => offRedis.stop());
    const off = await makeBackend(
      { redisUrl: offRedis.url, commandTimeoutMs: 1000, intakeLog: 'off' },
      { prefix, schema },
    );
    expect(off.logger.lines.filter((l) => l.level === 'error' && /applied AGAIN/.test(l.msg))).toHaveLength(
      1,
    );
  }, 60_000);

  // After a restart that kept everything (the AOF), the first grant of each session reserves a
  // fence block and offers PostgreSQL's copy to Redis, which keeps its own: no "reloaded" line,
  // which read as if Redis had lost every session (outside test QA17-F2). Redis lost it: said.
  it('says a session was reloaded from PostgreSQL only when Redis had lost it', async () => {
    const reloaded = (lines: readonly { msg: string }[]) =>
      lines.filter((l) => l.msg === 'session reloaded from PostgreSQL').length;
    for (const persist of [true, false]) {
      const redis = await startPrivateRedis({ persist });
      afterThisTest(() => redis.stop());
      const { backend, logger } = await makeBackend({ redisUrl: redis.url, commandTimeoutMs: 1000 });
      const key = newKey();
      const m1 = text(key, 'one');
      await backend.ingest({ messages: [m1], statuses: [] });
      const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
      await backend.commit(g1, nextBatch(g1, 0, [m1.id]));
      await backend.releaseLease(g1);
      await eventually(async () => ((await backend.transitions(key)).length === 1 ? true : null));
      await redis.kill();
      await redis.restart();
      const g2 = await eventually(async () => {
        try {
          return await backend.acquireLease(key, 'w2', 5000);
        } catch {
          return null;
        }
      });
      expect((await backend.load(key))!.version).toBe(1);
      expect(reloaded(logger.lines)).toBe(persist ? 0 : 1);
      await backend.releaseLease(g2);
    }
  }, 60_000);
});
