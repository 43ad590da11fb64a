/**
 * Processes on machines whose clocks disagree do not split bursts (SPEC 1.5, distributed): every
 * process reads Redis's clock (src/backends/distributed/store-clock.ts). Here the ingress that
 * receives the webhooks runs 2 s behind and the worker 2 s ahead, with a 1 s buffer window; each
 * alone would close a batch before the rest of its burst is stored if they stamped and compared
 * times by their own clocks (the ingress's messages look 2 s old to everyone; the worker finds
 * every window already over). Each user sends a name in two texts 200 ms apart: one batch, one
 * name, one product prompt.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliverHeldBack } from '../support/bursts.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { PHONE_ID, text } from '../support/payloads.ts';
import { freePort, spawnBaton, type BatonProcess } from '../support/procs.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';

const up = await distributedServicesUp('clock skew process tests');
const WINDOW_MS = 1000;
const T0 = 1_750_000_000;
const SKEWED = fileURLToPath(new URL('../support/skewed-clock.mjs', import.meta.url));

interface Transition {
  version: number;
  kind: string;
  message_ids: string[];
}

async function admin<T>(base: string, path: string): Promise<{ status: number; body: T }> {
  const r = await fetch(`${base}/admin/api${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return { status: r.status, body: (await r.json()) as T };
}

async function versionOf(base: string, u: string): Promise<number> {
  const r = await admin<{ metadata: { version: number } }>(base, `/sessions/${u}?channel=${PHONE_ID}`);
  return r.status === 200 ? r.body.metadata.version : 0;
}

describe.skipIf(!up)('ingress and worker processes whose clocks are 4 s apart', () => {
  let graph: FakeGraph;
  const procs: BatonProcess[] = [];
  let env: Record<string, string>;
  let webhookBase: string;
  let adminBase: string;

  beforeAll(async () => {
    graph = await startFakeGraph();
    env = {
      HOST: '127.0.0.1',
      REDIS_URL,
      DATABASE_URL,
      BATON_REDIS_PREFIX: uniqueName('skew'),
      BATON_PG_SCHEMA: uniqueName('skew'),
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: String(WINDOW_MS),
    };
    const skewed = (ms: number): Record<string, string> => ({
      NODE_OPTIONS: `--import=${SKEWED}`,
      BATON_TEST_CLOCK_SKEW_MS: String(ms),
    });
    const webhookPort = await freePort();
    const adminPort = await freePort();
    webhookBase = `http://127.0.0.1:${webhookPort}`;
    adminBase = `http://127.0.0.1:${adminPort}`;
    procs.push(await spawnBaton(['ingress'], { ...env, ...skewed(-2000), PORT: String(webhookPort) }));
    procs.push(await spawnBaton(['ingress'], { ...env, PORT: String(adminPort) }));
    procs.push(await spawnBaton(['worker', '--concurrency', '8'], { ...env, ...skewed(2000) }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await graph?.close();
    if (env) await dropIsolation(env.BATON_REDIS_PREFIX!, env.BATON_PG_SCHEMA!);
  });

  it('a name sent as two texts 200 ms apart is one batch: one name, one product prompt', async () => {
    const users = Array.from({ length: 10 }, (_, i) => `1666300${String(i).padStart(4, '0')}`);
    await Promise.all(users.map((u) => deliverHeldBack(webhookBase, text(u, 'hi', T0))));
    for (const u of users) await expect.poll(() => versionOf(adminBase, u), { timeout: 20_000 }).toBe(1);

    const bursts = new Map(
      users.map((u) => [u, [text(u, 'Ada', T0 + 10), text(u, `Lovelace ${u}`, T0 + 10)]]),
    );
    await Promise.all(
      users.map(async (u) => {
        const [first, second] = bursts.get(u)!;
        await deliverHeldBack(webhookBase, first!);
        await new Promise((r) => setTimeout(r, 200));
        await deliverHeldBack(webhookBase, second!);
      }),
    );

    for (const u of users) {
      await expect.poll(() => versionOf(adminBase, u), { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
      await graph.waitFor(
        (x) => x.body.to === `+${u}` && x.body.biz_opaque_callback_data === 'baton:order:choose_product:2',
      );
    }
    // Any second batch (a retry at choose_product) would have been applied by now.
    await new Promise((r) => setTimeout(r, WINDOW_MS + 500));
    for (const u of users) {
      const s = await admin<{
        current_step: string;
        data: Record<string, string>;
        metadata: { version: number };
      }>(adminBase, `/sessions/${u}?channel=${PHONE_ID}`);
      expect(s.body.data.customer_name, u).toBe(`Ada Lovelace ${u}`);
      expect(s.body.metadata.version, u).toBe(2);
      const t = await admin<{ transitions: Transition[] }>(
        adminBase,
        `/sessions/${u}/transitions?channel=${PHONE_ID}`,
      );
      const second = t.body.transitions.find((x) => x.version === 2)!;
      expect([...second.message_ids].sort(), u).toEqual(
        bursts
          .get(u)!
          .map((m) => m.id)
          .sort(),
      );
      const prompts = graph.sent
        .filter((x) => x.body.to === `+${u}`)
        .map((x) => x.body.biz_opaque_callback_data);
      expect(prompts, u).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
    }
  }, 120_000);
});
