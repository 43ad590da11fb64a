/**
 * A burst is never split across separate ingress and worker processes (issue 10, points 1 and
 * 4): one `baton ingress` and one `baton worker`, 100 ms buffer window. Each webhook's body
 * follows its headers 100-300 ms later (a slow client or network), so the ingress stores it well
 * after it counts it as received; the ingress's Redis traffic also crawls through a proxy (30-60
 * ms per chunk), so its watermark publishes are slow too. The worker sees a burst's first message
 * while the rest is still on its way into the store; only the ingress's intake watermark (Redis)
 * tells it to wait. Every user's shuffled, duplicated burst of four must be one batch: one fencing
 * token and time for the four advances, every field right, the confirmation the only prompt.
 *
 * Why not only a slow Redis link: the ingress sends every store and the follow-up that schedules
 * the session on one connection, in order, so a delay in transit holds the schedule back behind
 * the burst's own stores and no burst is ever split by it (measured: 0 of 20 without the
 * watermark). Time spent before the store is sent (here the body) is what splits bursts.
 *
 * The scenario and its checks are in support/bursts.ts (shared with the Redis Cluster suite).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectBurstsWhole } from '../support/bursts.ts';
import { proxyOf, type TcpProxy } from '../support/tcp-proxy.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { freePort, spawnBaton, type BatonProcess } from '../support/procs.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';

const up = await distributedServicesUp('burst watermark process tests');
const WINDOW_MS = 100;

describe.skipIf(!up)('separate ingress and worker processes, intake slower than the window', () => {
  let graph: FakeGraph;
  let proxy: TcpProxy;
  const procs: BatonProcess[] = [];
  let env: Record<string, string>;
  let slowBase: string;
  let adminBase: string;

  beforeAll(async () => {
    graph = await startFakeGraph();
    let viaProxy: string;
    ({ proxy, url: viaProxy } = await proxyOf(REDIS_URL, { delayMs: { min: 30, max: 60 } }));
    env = {
      HOST: '127.0.0.1',
      REDIS_URL,
      DATABASE_URL,
      BATON_REDIS_PREFIX: uniqueName('bw'),
      BATON_PG_SCHEMA: uniqueName('bw'),
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: String(WINDOW_MS),
      BATON_LOCK_TTL_MS: '3000',
    };
    const slowPort = await freePort();
    const adminPort = await freePort();
    slowBase = `http://127.0.0.1:${slowPort}`;
    adminBase = `http://127.0.0.1:${adminPort}`;
    // The webhooks' ingress: every Redis command it sends waits 30-60 ms in the proxy.
    procs.push(await spawnBaton(['ingress'], { ...env, PORT: String(slowPort), REDIS_URL: viaProxy }));
    // A second ingress, on Redis directly, for the admin reads (it receives no webhooks).
    procs.push(await spawnBaton(['ingress'], { ...env, PORT: String(adminPort) }));
    procs.push(await spawnBaton(['worker', '--concurrency', '8'], env));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await proxy?.close();
    await graph?.close();
    if (env) await dropIsolation(env.BATON_REDIS_PREFIX!, env.BATON_PG_SCHEMA!);
  });

  it('20 users each send 4 shuffled messages with duplicates: every burst is one batch', async () => {
    const users = Array.from({ length: 20 }, (_, i) => `1666900${String(i).padStart(4, '0')}`);
    await expectBurstsWhole(
      { webhookBase: slowBase, adminBase, pgSchema: env.BATON_PG_SCHEMA!, graph, windowMs: WINDOW_MS },
      users,
    );
  }, 120_000);
});
