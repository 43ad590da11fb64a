/**
 * A burst is not split by an ingress that the machine stopped scheduling mid-burst (outside test
 * QA93-F1: under a CPU hog a starved `baton ingress` read a 50 ms burst's webhooks 0.7-0.9 s
 * apart, stamped them as received that late, and the worker closed the batches on time).
 *
 * One `baton ingress` receives the webhooks, one `baton worker` runs the batches, window 400 ms.
 * Each user's first message of a burst is stored; then the ingress is stopped (SIGSTOP) while the
 * rest of the burst reaches its socket, for 500 ms, longer than the window. When it runs again it
 * stamps those webhooks half a second late; it also tells, with its intake watermark, how late
 * its event loop ran, and the worker stretches the windows it holds by that (at most doubling
 * them). Without that the worker closes each window on the first message alone: every burst
 * split, the address stored as the name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  burstVerdict,
  deliverHeldBack,
  expectOnePromptPerBurst,
  greet,
  orderBurst,
  settledAt,
  transitionsOf,
} from '../support/bursts.ts';
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

const up = await distributedServicesUp('stalled ingress process tests');
const WINDOW_MS = 400;
const STALL_MS = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!up)('an ingress stopped mid-burst, longer than the window', () => {
  let graph: FakeGraph;
  const procs: BatonProcess[] = [];
  let env: Record<string, string>;
  let ingress: BatonProcess;
  let webhookBase: string;
  let adminBase: string;

  beforeAll(async () => {
    graph = await startFakeGraph();
    env = {
      HOST: '127.0.0.1',
      REDIS_URL,
      DATABASE_URL,
      BATON_REDIS_PREFIX: uniqueName('si'),
      BATON_PG_SCHEMA: uniqueName('si'),
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: String(WINDOW_MS),
      BATON_LOCK_TTL_MS: '5000',
    };
    const webhookPort = await freePort();
    const adminPort = await freePort();
    webhookBase = `http://127.0.0.1:${webhookPort}`;
    adminBase = `http://127.0.0.1:${adminPort}`;
    ingress = await spawnBaton(['ingress'], { ...env, PORT: String(webhookPort) });
    procs.push(ingress);
    // A second ingress for the admin reads (it receives no webhooks).
    procs.push(await spawnBaton(['ingress'], { ...env, PORT: String(adminPort) }));
    procs.push(await spawnBaton(['worker', '--concurrency', '8'], env));
  }, 60_000);

  afterAll(async () => {
    ingress?.child.kill('SIGCONT');
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await graph?.close();
    if (env) await dropIsolation(env.BATON_REDIS_PREFIX!, env.BATON_PG_SCHEMA!);
  });

  it('8 users: the rest of each burst, stamped half a second late, joins its first message', async () => {
    const users = Array.from({ length: 8 }, (_, i) => `1666910${String(i).padStart(4, '0')}`);
    await Promise.all(users.map((u) => greet(webhookBase, u)));
    for (const u of users) await settledAt(adminBase, u, 1);
    const bursts = new Map(users.map((u) => [u, orderBurst(u)]));

    // Each burst's name is stored; 30 ms later the ingress stops, the rest of the burst (and a
    // duplicate of the name) reaches its socket, and it runs again after STALL_MS.
    await Promise.all(users.map((u) => deliverHeldBack(webhookBase, bursts.get(u)![0]!)));
    await sleep(30);
    ingress.child.kill('SIGSTOP');
    const rest = Promise.all(
      users.flatMap((u) => {
        const [name, ...others] = bursts.get(u)!;
        return [...others.reverse(), name!].map((m) => deliverHeldBack(webhookBase, m));
      }),
    );
    await sleep(STALL_MS);
    ingress.child.kill('SIGCONT');
    await rest;

    const deadline = Date.now() + 20_000;
    const split: string[] = [];
    for (const u of users) {
      const s = await settledAt(adminBase, u, 5, deadline).catch(() => null);
      const ids = new Set(bursts.get(u)!.map((m) => m.id));
      const wrong = burstVerdict(u, ids, s, await transitionsOf(adminBase, u));
      if (wrong !== null) split.push(wrong);
    }
    expect(split, `bursts split: ${split.length} of ${users.length}`).toEqual([]);
    await expectOnePromptPerBurst(graph, users);
  }, 90_000);
});
