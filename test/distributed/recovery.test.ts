/**
 * Recovery at the backend level: a session whose Redis keys are gone is reloaded from
 * PostgreSQL; a dead holder's session comes back after its lease; the reaper repairs a lost
 * ready-queue entry; write-behind commits reach PostgreSQL on their own; PostgreSQL outages
 * and an unreachable Redis fail the way callers expect.
 */
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { StorageUnavailableError } from '../../src/errors.ts';
import { startPrivateRedis } from '../support/redis-server.ts';
import { proxyOf } from '../support/tcp-proxy.ts';
import { eventually, newKey, nextBatch, outbound, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';
import { DATABASE_URL, REDIS_URL, describeServices, pgQuery } from '../support/services.ts';

async function deleteSessionKeys(prefix: string): Promise<number> {
  const r = new Redis(REDIS_URL);
  try {
    const keys = await r.keys(`${prefix}:{*`);
    if (keys.length > 0) await r.del(...keys);
    return keys.length;
  } finally {
    r.disconnect();
  }
}

describeServices('distributed backend: recovery', () => {
  useCleanup();

  it('reloads a session from PostgreSQL when Redis lost it, fences included', async () => {
    const { backend, prefix } = await makeBackend();
    const key = newKey();
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
    const reply = outbound(key, 1, 0);
    await backend.commit(g1, nextBatch(g1, 0, [m1.id], { outbound: [reply] }));
    await backend.releaseLease(g1);
    const before = await backend.load(key);

    expect(await deleteSessionKeys(prefix)).toBeGreaterThan(0);

    expect(await backend.load(key)).toEqual(before);
    expect(await backend.unsent(key)).toEqual([reply]);
    const g2 = (await backend.acquireLease(key, 'w2', 5000))!;
    expect(g2.fence).toBeGreaterThan(g1.fence);
    await backend.commit(g2, nextBatch(g2, 1));
    expect((await backend.load(key))!.version).toBe(2);
    expect((await backend.transitions(key)).map((r) => r.version)).toEqual([1, 2]);
  });

  it('keeps send claims in PostgreSQL: a session reloaded after Redis lost it has them', async () => {
    const { backend, prefix, schema } = await makeBackend();
    const key = newKey();
    const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
    const [r1, r2] = [outbound(key, 1, 0), outbound(key, 1, 1)];
    await backend.commit(g1, nextBatch(g1, 0, [], { outbound: [r1, r2] }));
    expect(await backend.claimOutbound(g1, [r1.id], 1)).toEqual([2]);
    expect(await backend.claimOutbound(g1, [r2.id], -1)).toEqual([0]);
    await backend.releaseLease(g1);
    await eventually(
      async () => {
        const rows = await pgQuery<{ id: string; claims: number }>(
          schema,
          'SELECT id, claims FROM outbound ORDER BY seq',
        );
        return rows.map((r) => r.claims).join() === '2,0' ? true : null;
      },
      10_000,
      'the claims to reach PostgreSQL',
    );
    expect(await deleteSessionKeys(prefix)).toBeGreaterThan(0);
    expect((await backend.unsent(key)).map((o) => [o.id, o.claims])).toEqual([
      [r1.id, 2],
      [r2.id, 0],
    ]);
    const g2 = (await backend.acquireLease(key, 'w2', 5000))!;
    expect(await backend.claimOutbound(g2, [r1.id], 1)).toEqual([3]);
  });

  it('reloads transparently inside commit when the engine did not load first', async () => {
    const { backend, prefix } = await makeBackend();
    const key = newKey();
    const g1 = (await backend.acquireLease(key, 'w1', 5000))!;
    await backend.commit(g1, nextBatch(g1, 0));
    await backend.releaseLease(g1);
    await deleteSessionKeys(prefix);
    const g2 = (await backend.acquireLease(key, 'w2', 5000))!;
    await expect(backend.commit(g2, nextBatch(g2, 0))).rejects.toMatchObject({
      code: 'BATON_ERR_VERSION_CONFLICT',
    });
    await backend.commit(g2, nextBatch(g2, 1));
    expect((await backend.load(key))!.version).toBe(2);
  });

  it("hands out a dead holder's session once its lease has expired", async () => {
    const { backend } = await makeBackend();
    const key = newKey();
    await backend.ingest({ messages: [text(key, 'hi')], statuses: [] });
    expect(await backend.nextReady(AbortSignal.timeout(5000))).toEqual(key);
    const dead = (await backend.acquireLease(key, 'dies', 300))!;
    // The holder dies: no renew, no release.
    const t0 = Date.now();
    expect(await backend.nextReady(AbortSignal.timeout(5000))).toEqual(key);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    const next = (await backend.acquireLease(key, 'rescuer', 5000))!;
    expect(next.fence).toBeGreaterThan(dead.fence);
    expect(await backend.pending(key, 10)).toHaveLength(1);
  });

  it('the reaper reschedules a session whose ready-queue entry was lost', async () => {
    // A Redis of the test's own: the start-up reap walks every key of the database, and on a
    // shared Redis holding a million keys that walk could still run (and find the session)
    // after the loss below.
    const redis = await startPrivateRedis({ persist: false });
    afterThisTest(() => redis.stop());
    const { backend, prefix } = await makeBackend({ redisUrl: redis.url, reaperIntervalMs: 0 });
    const key = newKey();
    // Start the scheduler (and its start-up reap) before the loss, so only the forced reap can find it.
    expect(await backend.nextReady(AbortSignal.timeout(200))).toBeNull();
    await backend.ingest({ messages: [text(key, 'hi')], statuses: [] });
    // Simulate a crash between the intake script and its follow-up ZADD.
    const keys = new Keys(prefix);
    const r = new Redis(redis.url);
    await r.zrem(keys.ready, keys.member(key));
    r.disconnect();
    expect(await backend.nextReady(AbortSignal.timeout(300))).toBeNull();
    expect(await backend.reapOnce(30_000, { force: true })).toMatchObject({ rescheduled: 1 });
    expect(await backend.nextReady(AbortSignal.timeout(5000))).toEqual(key);
  });

  it('write-behind: commits reach PostgreSQL through the flusher, without any read', async () => {
    const { backend, schema } = await makeBackend({ syncMode: 'write-behind' });
    const keys = Array.from({ length: 20 }, () => newKey());
    for (const key of keys) {
      const g = (await backend.acquireLease(key, 'w', 5000))!;
      await backend.commit(g, nextBatch(g, 0, [], { outbound: [outbound(key, 1, 0)] }));
      await backend.updateOutbound(outbound(key, 1, 0).id, {
        status: 'sent',
        attempts: 1,
        providerMessageId: `wamid.${key.user}`,
      });
      await backend.releaseLease(g);
    }
    await eventually(
      async () => {
        const rows = await pgQuery<{ n: number }>(
          schema,
          "SELECT count(*)::int AS n FROM outbound WHERE status = 'sent'",
        );
        return rows[0]!.n === keys.length ? true : null;
      },
      10_000,
      'the flusher to copy every commit',
    );
    const [t] = await pgQuery<{ n: number }>(schema, 'SELECT count(*)::int AS n FROM transitions');
    expect(t!.n).toBe(keys.length);
  });

  it('names the setting when Redis could lose acknowledged webhooks: the intake log covers it, or (off) a warning says it does not', async () => {
    const r = new Redis(REDIS_URL);
    const appendonly = (await r.config('GET', 'appendonly'))[1];
    const appendfsync = (await r.config('GET', 'appendfsync'))[1];
    r.disconnect();
    const setting = appendonly !== 'yes' ? /appendonly/ : /appendfsync/;
    const durable = appendonly === 'yes' && appendfsync === 'always';
    const auto = (await makeBackend()).logger.lines;
    const off = (await makeBackend({ intakeLog: 'off' })).logger.lines;
    const warnings = off.filter((l) => l.level === 'warn' && l.msg.includes('DURABILITY'));
    if (durable) {
      expect(warnings).toEqual([]);
      expect(auto.filter((l) => l.msg.includes('intake log on'))).toEqual([]);
    } else {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.msg).toMatch(setting);
      expect(warnings[0]!.msg).toMatch(/BATON_INTAKE_LOG=off/);
      expect(auto.filter((l) => l.level === 'warn' && l.msg.includes('DURABILITY'))).toEqual([]);
      expect(auto.filter((l) => l.msg.includes('intake log on'))).toHaveLength(1);
      const said = auto.find((l) => l.msg.includes('does not keep every write'))!.msg;
      expect(said).toMatch(setting);
      // Covered: it says what Redis alone would lose, not that webhooks are lost.
      expect(said).toMatch(/on its own, .* so the intake log keeps them/);
      expect(said).not.toMatch(/LOST/);
      expect(warnings[0]!.msg).toMatch(/LOST/);
    }
  });

  it('a Redis with a replica that can take over counts as losable, AOF or not: auto turns the intake log on', async () => {
    // An outside test: AOF always on every node of a cluster, a lagging replica promoted, and 22
    // of 60 acknowledged webhooks were gone, with the intake log off and nothing said.
    const master = await startPrivateRedis();
    afterThisTest(() => master.stop());
    const replica = await startPrivateRedis();
    afterThisTest(() => replica.stop());
    const r = new Redis(replica.url);
    const m = new Redis(master.url);
    try {
      await r.replicaof('127.0.0.1', master.port);
      await eventually(
        async () => (/^connected_slaves:1/m.test(await m.info('replication')) ? true : null),
        10_000,
        'the replica to connect',
      );
    } finally {
      r.disconnect();
      m.disconnect();
    }
    const auto = (await makeBackend({ redisUrl: master.url })).logger.lines;
    expect(auto.filter((l) => l.msg.includes('intake log on'))).toHaveLength(1);
    expect(auto.find((l) => l.msg.includes('does not keep every write'))!.msg).toMatch(
      /replicates to 1 replica, asynchronously.*failover/,
    );
    const off = (await makeBackend({ redisUrl: master.url, intakeLog: 'off' })).logger.lines;
    expect(off.filter((l) => l.level === 'warn' && /DURABILITY.*replica.*LOST/.test(l.msg))).toHaveLength(1);
  });

  it('rejects intake with StorageUnavailableError, quickly, when Redis is unreachable', async () => {
    const { proxy, url } = await proxyOf(REDIS_URL);
    afterThisTest(() => proxy.close());
    const { backend } = await makeBackend({ redisUrl: url });
    const key = newKey();
    expect((await backend.ingest({ messages: [text(key, 'before')], statuses: [] })).accepted).toBe(1);
    proxy.block();
    const t0 = Date.now();
    await expect(backend.ingest({ messages: [text(key, 'during')], statuses: [] })).rejects.toBeInstanceOf(
      StorageUnavailableError,
    );
    expect(Date.now() - t0).toBeLessThan(3500);
    expect(await backend.health()).toMatchObject({ redis: false, postgres: true });
    proxy.unblock();
    const m = text(key, 'after');
    await eventually(
      async () => {
        try {
          return (await backend.ingest({ messages: [m], statuses: [] })).accepted === 1 ? true : null;
        } catch {
          return null;
        }
      },
      10_000,
      'Redis to come back',
    );
    // The refused one may be there too, once: the intake log wrote it before Redis refused it,
    // and the log's recovery puts back what it holds and Redis lacks (a redelivery of it is then a
    // duplicate). Seen on a busy machine, where the recovery ran before the refusal's clean-up.
    const bodies = (await backend.pending(key, 10)).map((x) => (x.content as { body: string }).body);
    expect(bodies.filter((b) => b !== 'during')).toEqual(['before', 'after']);
    expect(bodies.filter((b) => b === 'during').length).toBeLessThanOrEqual(1);
  });

  it('write-through with PostgreSQL away: the commit takes effect and says it is not durable yet, nothing is lost, the journal catches up', async () => {
    const { proxy, url: viaProxy } = await proxyOf(DATABASE_URL);
    afterThisTest(() => proxy.close());
    // Redis taken as durable (no intake log): then intake needs no PostgreSQL.
    const { backend, schema } = await makeBackend({
      databaseUrl: viaProxy,
      pgRetryMs: 300,
      intakeLog: 'off',
    });
    const key = newKey();
    const m1 = text(key, 'one');
    await backend.ingest({ messages: [m1], statuses: [] });
    const g = (await backend.acquireLease(key, 'w', 10_000))!;
    expect(await backend.load(key)).toBeNull();

    proxy.block();
    // Intake does not need PostgreSQL.
    const m2 = text(key, 'two');
    expect((await backend.ingest({ messages: [m2], statuses: [] })).accepted).toBe(1);
    // It takes effect in Redis, and says its PostgreSQL copy is still pending.
    await expect(backend.commit(g, nextBatch(g, 0, [m1.id]))).resolves.toEqual({ durable: false });
    // The batch is committed in Redis (and journaled): the state moved on, m1 left the mailbox.
    expect((await backend.load(key))!.version).toBe(1);
    expect((await backend.pending(key, 10)).map((m) => m.id)).toEqual([m2.id]);
    await sleep(200);
    proxy.unblock();

    await eventually(
      async () => {
        const rows = await pgQuery<{ version: string }>(schema, 'SELECT version FROM sessions');
        return rows[0]?.version === '1' ? true : null;
      },
      15_000,
      'the flusher to copy the journal once PostgreSQL is back',
    );
    await backend.commit(g, nextBatch(g, 1, [m2.id]));
    expect((await backend.transitions(key)).map((r) => r.message_ids)).toEqual([[m1.id], [m2.id]]);
  });
});
