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
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectStalledBurstsWhole, type StalledTarget } from '../support/bursts.ts';
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

describe.skipIf(!up)('an ingress stopped mid-burst, longer than the window', () => {
  let graph: FakeGraph;
  const procs: BatonProcess[] = [];
  let env: Record<string, string>;
  let ingress: BatonProcess;
  let worker: BatonProcess;
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
    worker = await spawnBaton(['worker', '--concurrency', '8'], env);
    procs.push(worker);
  }, 60_000);

  const target = (): StalledTarget => ({ webhookBase, adminBase, graph });

  afterAll(async () => {
    ingress?.child.kill('SIGCONT');
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await graph?.close();
    if (env) await dropIsolation(env.BATON_REDIS_PREFIX!, env.BATON_PG_SCHEMA!);
  });

  it('8 users: the rest of each burst, stamped half a second late, joins its first message', async () => {
    await expectStalledBurstsWhole(target(), ingress.child, '1666910', STALL_MS);
  }, 90_000);

  // Outside test QA137: longer than twice the window, beyond what the window stretches by. Each
  // webhook read late keeps how late with its messages, and counts from when it may have come.
  it('stopped 1.3 s at a 400 ms window: each burst is still one batch', async () => {
    await expectStalledBurstsWhole(target(), ingress.child, '1666911', 1_300);
  }, 90_000);

  // Outside test QA140-F2: longer than the window and the worker's wait for a silent ingress
  // (1 s then), so the first messages' batches closed before it ran again; it now waits as long
  // as an ingress may be silent before it counts as dead (2 s).
  it('stopped 1.8 s: each burst is still one batch', async () => {
    await expectStalledBurstsWhole(target(), ingress.child, '1666913', 1_800);
  }, 90_000);

  // Outside test QA137-F3: the worker is killed while the ingress is stopped and a new one starts
  // 3 s later, when the ingress's lag is long forgotten: the messages' own stamps still tell.
  it('the worker killed meanwhile, a new one 3 s later: each burst is still one batch', async () => {
    await expectStalledBurstsWhole(target(), ingress.child, '1666912', 1_300, async () => {
      await worker.stop('SIGKILL');
      setTimeout(() => {
        void spawnBaton(['worker', '--concurrency', '8'], env).then((w) => {
          worker = w;
          procs.push(w);
        });
      }, 3_000);
    });
  }, 90_000);
});
