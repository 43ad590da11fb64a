/**
 * Worker heartbeats, on both backends: `stats().workers` counts workers heard from within
 * their TTL, and forgets one that says goodbye or goes silent; `flowServedUntil` says until when
 * a worker that runs a flow at a version or newer was alive; `holderAlive` knows a worker and a
 * process that beats as a baton holder only (an ingress's admin API), which is no worker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DistributedBackend } from '../../src/backends/distributed/index.ts';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { Backend } from '../../src/backends/types.ts';
import { DATABASE_URL, distributedServicesUp, REDIS_URL, uniqueName } from '../support/services.ts';

const up = await distributedServicesUp('worker heartbeats (distributed)');

async function check(b: Backend, clock: { t: number }): Promise<void> {
  await b.init();
  try {
    expect((await b.stats()).workers).toBe(0);
    await b.heartbeat('w1', 10_000);
    await b.heartbeat('w2', 10_000);
    await b.heartbeat('w2', 10_000);
    expect((await b.stats()).workers).toBe(2);
    await b.removeWorker('w1');
    expect((await b.stats()).workers).toBe(1);
    expect(await b.holderAlive('w2:agent')).toBe(true);
    clock.t += 10_001; // w2 went silent
    expect((await b.stats()).workers).toBe(0);
    expect(await b.holderAlive('w2:agent')).toBe(false);

    // A process that holds batons without being a worker: alive, not counted, gone at its word
    // or when it goes silent.
    await b.holderBeat('ingress1', 10_000);
    await b.holderBeat('ingress2', 10_000);
    expect(await b.holderAlive('ingress1:agent')).toBe(true);
    expect(await b.holderAlive('ingress1')).toBe(true);
    expect(await b.holderAlive('ingress')).toBe(false);
    expect((await b.stats()).workers).toBe(0);
    await b.holderBeat('ingress1', 10_000, true);
    expect(await b.holderAlive('ingress1:admin')).toBe(false);
    clock.t += 10_001;
    expect(await b.holderAlive('ingress2:agent')).toBe(false);

    // The flows workers run, and until when they were alive (a rolling deploy: is a worker of
    // version 3 there, and since when is none?).
    const alive = async (id: string, version: number): Promise<boolean> =>
      (await b.flowServedUntil(id, version)) > clock.t;
    expect(await b.flowServedUntil('signup', 1)).toBe(0);
    await b.heartbeat('w3', 10_000, [
      { id: 'signup', version: 3 },
      { id: 'billing', version: 1 },
    ]);
    await b.heartbeat('w4', 20_000, [{ id: 'signup', version: 2 }]);
    expect(await alive('signup', 3)).toBe(true);
    expect(await b.flowServedUntil('signup', 3)).toBe(clock.t + 10_000);
    expect(await b.flowServedUntil('signup', 2)).toBe(clock.t + 20_000); // a newer version serves it too
    expect(await alive('signup', 4)).toBe(false);
    expect(await alive('billing', 1)).toBe(true);
    expect(await b.flowServedUntil('orders', 1)).toBe(0);
    clock.t += 1000;
    await b.removeWorker('w3'); // served until its stop
    expect(await b.flowServedUntil('signup', 3)).toBe(clock.t);
    expect(await alive('billing', 1)).toBe(false);
    expect(await alive('signup', 2)).toBe(true);
    const silentFrom = clock.t + 20_000 - 1000;
    clock.t += 20_001; // w4 went silent: known alive until its heartbeat's expiry
    expect(await alive('signup', 2)).toBe(false);
    expect(await b.flowServedUntil('signup', 2)).toBe(silentFrom);
    clock.t += 600_001; // forgotten after 10 minutes
    await b.heartbeat('w5', 10_000, [{ id: 'other', version: 1 }]);
    expect(await b.flowServedUntil('signup', 2)).toBe(0);
  } finally {
    await b.close();
  }
}

describe('worker heartbeats', () => {
  it('embedded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-hb-'));
    const clock = { t: Date.now() };
    try {
      await check(
        new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60, now: () => clock.t }),
        clock,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!up)('distributed', async () => {
    const prefix = uniqueName('hb');
    const schema = uniqueName('hb');
    const clock = { t: Date.now() };
    try {
      await check(
        new DistributedBackend({
          redisUrl: REDIS_URL,
          databaseUrl: DATABASE_URL,
          bufferMs: 0,
          dedupeTtlSec: 60,
          syncMode: 'write-through',
          prefix,
          schema,
          now: () => clock.t,
        }),
        clock,
      );
    } finally {
      const r = new Redis(REDIS_URL);
      const keys = await r.keys(`${prefix}*`);
      if (keys.length > 0) await r.del(...keys);
      r.disconnect();
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    }
  });
});
