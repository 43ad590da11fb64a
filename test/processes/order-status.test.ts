/**
 * The order-status example (SPEC 5b) served as an operator serves it:
 * `BATON_FLOWS=examples/order-status ORDER_API_URL=... baton start`, in embedded and in
 * distributed mode, against a real local HTTP server playing the shop's API. A worker is
 * SIGKILLed while an effect runs: the next holder runs it again with the same Idempotency-Key,
 * the result is applied once, and no reply is sent twice.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signMetaBody } from '../../src/providers/index.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { PHONE_ID, text, webhook, type Msg } from '../support/payloads.ts';
import { freePort, spawnBaton, type BatonProcess } from '../support/procs.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const up = await distributedServicesUp('order-status example, distributed processes');
const T0 = 1_750_000_000;

let graph: FakeGraph;
let shop: FakeShop;
beforeAll(async () => {
  graph = await startFakeGraph();
  shop = await startFakeShop();
  shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
});
afterAll(async () => {
  await shop?.close();
  await graph?.close();
});

function baseEnv(port: number): Record<string, string> {
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    BATON_FLOWS: 'examples/order-status',
    ORDER_API_URL: shop.url,
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_API_BASE_URL: graph.url,
    ADMIN_TOKEN,
    BATON_BUFFER_MS: '30',
    BATON_LOCK_TTL_MS: '1500',
  };
}

/** `baseEnv` on the machine's Redis and PostgreSQL, under a key prefix and schema of its own. */
function distributedEnv(port: number): Record<string, string> & {
  BATON_REDIS_PREFIX: string;
  BATON_PG_SCHEMA: string;
} {
  return {
    ...baseEnv(port),
    REDIS_URL,
    DATABASE_URL,
    BATON_REDIS_PREFIX: uniqueName('os'),
    BATON_PG_SCHEMA: uniqueName('os'),
  };
}

async function post(base: string, m: Msg): Promise<number> {
  const raw = Buffer.from(JSON.stringify(webhook([m])));
  const r = await fetch(`${base}/webhooks/whatsapp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': signMetaBody(raw, APP_SECRET) },
    body: new Uint8Array(raw),
  });
  return r.status;
}

async function sessionAt(base: string, user: string, step: string, timeoutMs = 20_000): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fetch(`${base}/admin/api/sessions/${user}?channel=${PHONE_ID}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    }).catch(() => null);
    if (r?.status === 200) {
      const s = (await r.json()) as { current_step: string };
      if (s.current_step === step) return s;
    }
    if (Date.now() > deadline) throw new Error(`${user} never reached ${step}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

function callbacksTo(u: string): string[] {
  return graph.sent.filter((x) => x.body.to === `+${u}`).map((x) => x.body.biz_opaque_callback_data!);
}

/** Sends an order number while the shop holds the lookup, kills `victims`, then lets it go. */
async function killDuringLookup(
  base: string,
  user: string,
  victims: () => BatonProcess[],
  restart: () => Promise<void>,
): Promise<void> {
  const route = 'GET /orders/ORD-12345';
  const before = shop.callsTo(route).length;
  const release = shop.hold(route);
  expect(await post(base, text(user, 'ORD-12345', T0))).toBe(200);
  await shop.waitForCalls(route, before + 1, 20_000);
  await Promise.all(victims().map((p) => p.stop('SIGKILL')));
  release();
  await restart();
  await sessionAt(base, user, 'show_status');
  const calls = shop.callsTo(route).slice(before);
  expect(calls.length).toBeGreaterThanOrEqual(2);
  expect(new Set(calls.map((c) => c.key)).size, 'one Idempotency-Key for the effect').toBe(1);
  await graph.waitFor((x) => x.body.to === `+${user}` && x.body.type === 'interactive', 10_000);
  const cbs = callbacksTo(user);
  expect(new Set(cbs).size, `no reply twice: ${cbs.join(', ')}`).toBe(cbs.length);
  expect(cbs.filter((c) => c.startsWith('baton:order_status:show_status:'))).toHaveLength(2);
}

describe('order-status example, served by baton start', () => {
  it('embedded: a SIGKILL during a lookup; the restarted process runs it again with the same key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-os-'));
    const port = await freePort();
    const env = { ...baseEnv(port), BATON_DATA_DIR: dir };
    let proc = await spawnBaton(['start'], env);
    try {
      await killDuringLookup(
        `http://127.0.0.1:${port}`,
        '16660000001',
        () => [proc],
        async () => {
          proc = await spawnBaton(['start'], env);
        },
      );
    } finally {
      await proc.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!up)(
    'distributed: a worker SIGKILLed during a lookup; another runs it with the same key',
    async () => {
      const port = await freePort();
      const env = distributedEnv(port);
      const ingress = await spawnBaton(['ingress'], env);
      let workers = [await spawnBaton(['worker'], env)];
      // It says which flow versions it runs (outside test QA109-F3: old workers could not be
      // told from new ones during a rolling deploy).
      expect(workers[0]!.output()).toMatch(/ worker \(distributed\) \S+ started; flows: order_status v\d+/);
      try {
        await killDuringLookup(
          `http://127.0.0.1:${port}`,
          '16660000002',
          () => workers,
          async () => {
            workers = [await spawnBaton(['worker'], env)];
          },
        );
      } finally {
        await Promise.all([ingress, ...workers].map((p) => p.stop('SIGKILL')));
        await dropIsolation(env.BATON_REDIS_PREFIX, env.BATON_PG_SCHEMA);
      }
    },
  );

  // A worker started with another BATON_FLOWS beside the deployment's started a third of new
  // users in its own first flow, without a word (outside test QA130-F1); so did one with the same
  // flows in another order (QA132-F1).
  it.skipIf(!up)(
    'distributed: a worker whose new sessions start in another flow than the live workers’ says so as it starts',
    async () => {
      const env = distributedEnv(await freePort());
      const env2 = distributedEnv(await freePort());
      const dir = mkdtempSync(join(tmpdir(), 'baton-flows-'));
      const module = (name: string, flows: string): string => {
        const file = join(dir, `${name}.mts`);
        writeFileSync(
          file,
          [
            `import { orderFlow } from ${JSON.stringify(join(ROOT, 'src/bots/order.ts'))};`,
            `import { orderStatusFlow } from ${JSON.stringify(join(ROOT, 'examples/order-status/flow.ts'))};`,
            `const status = orderStatusFlow({ apiUrl: process.env.ORDER_API_URL! });`,
            `export default [${flows}];`,
          ].join('\n'),
        );
        return file;
      };
      const idOf = (p: BatonProcess): string => / worker \(distributed\) (\S+) started/.exec(p.output())![1]!;
      const warned = async (p: BatonProcess): Promise<string> => {
        const deadline = Date.now() + 10_000;
        while (!/live workers run other flows/.test(p.output()) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
        return /live workers run other flows[^"]*/.exec(p.output())?.[0] ?? '';
      };
      const procs: BatonProcess[] = [];
      try {
        const a = await spawnBaton(['worker'], { ...env, BATON_FLOWS: module('ab', 'orderFlow, status') });
        procs.push(a);
        // The same flows, the other first: its new users start elsewhere.
        const b = await spawnBaton(['worker'], { ...env, BATON_FLOWS: module('ba', 'status, orderFlow') });
        procs.push(b);
        expect(await warned(b)).toBe(
          `live workers run other flows than this one (order, order_status, new sessions in order_status): ${idOf(a)} runs order, order_status, new sessions in order. A new user's session starts in the first flow of whichever worker takes it, so new users meet different bots; give every worker the same BATON_FLOWS, in the same order`,
        );
        // Another like b names a only; one that runs fewer flows, first the same, says what that does.
        const b2 = await spawnBaton(['worker'], { ...env, BATON_FLOWS: module('ba2', 'status, orderFlow') });
        procs.push(b2);
        expect(await warned(b2)).not.toContain(idOf(b));
        await Promise.all(procs.splice(0).map((p) => p.stop('SIGKILL')));
        // On a deployment of their own: the killed workers' heartbeats would be live a while yet
        // (a CI run named them in d's warning).
        const c = await spawnBaton(['worker'], { ...env2, BATON_FLOWS: module('ab2', 'orderFlow, status') });
        procs.push(c);
        const d = await spawnBaton(['worker'], { ...env2, BATON_FLOWS: module('a', 'orderFlow') });
        procs.push(d);
        expect(await warned(d)).toContain(
          'A session of a flow a worker does not run waits for a worker that runs it',
        );
      } finally {
        await Promise.all(procs.map((p) => p.stop('SIGKILL')));
        rmSync(dir, { recursive: true, force: true });
        await dropIsolation(env.BATON_REDIS_PREFIX, env.BATON_PG_SCHEMA);
        await dropIsolation(env2.BATON_REDIS_PREFIX, env2.BATON_PG_SCHEMA);
      }
    },
  );

  it.skipIf(!up)(
    'distributed: a worker paused (SIGSTOP) past its lease between two attempts makes no attempt when it wakes: the effect is tried as often as it allows, in all',
    async () => {
      const port = await freePort();
      const env = distributedEnv(port);
      const base = `http://127.0.0.1:${port}`;
      const user = '16660000004';
      const route = 'GET /orders/ORD-12345';
      const ingress = await spawnBaton(['ingress'], env);
      const paused = await spawnBaton(['worker'], env);
      const workers = [paused];
      try {
        expect(await post(base, text(user, 'hola', T0))).toBe(200);
        await sessionAt(base, user, 'ask_order');
        // Every attempt fails (the lookup allows 3, 500 ms apart and then 1 s).
        const before = shop.callsTo(route).length;
        shop.script(route, { status: 503 }, { status: 503 }, { status: 503 });
        expect(await post(base, text(user, 'ORD-12345', T0 + 1))).toBe(200);
        const [first] = (await shop.waitForCalls(route, before + 1, 20_000)).slice(before);
        // Its first attempt answered, the worker waits out its backoff (500 ms) and stops in it
        // (a stalled VM); another takes the session once the lease has expired (1.5 s) and makes
        // the other two attempts.
        while (first!.status === 0) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, 150));
        paused.child.kill('SIGSTOP');
        workers.push(await spawnBaton(['worker'], env));
        await sessionAt(base, user, 'lookup_failed');
        expect(shop.callsTo(route).length - before).toBe(3);
        // The paused worker wakes up with its backoff long over: it must not try again (it would
        // be a 4th attempt, after those of the holder that took over).
        paused.child.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, 3_000));
        const calls = shop.callsTo(route).slice(before);
        expect(calls.map((c) => c.status)).toEqual([503, 503, 503]);
        expect(new Set(calls.map((c) => c.key)).size, 'one Idempotency-Key for the effect').toBe(1);
      } finally {
        paused.child.kill('SIGCONT');
        await Promise.all([ingress, ...workers].map((p) => p.stop('SIGKILL')));
        await dropIsolation(env.BATON_REDIS_PREFIX, env.BATON_PG_SCHEMA);
      }
    },
    60_000,
  );

  it.skipIf(!up)('distributed: one `baton start` process serves the flow end to end', async () => {
    const port = await freePort();
    const env = distributedEnv(port);
    const proc = await spawnBaton(['start'], env);
    const base = `http://127.0.0.1:${port}`;
    const user = '16660000003';
    try {
      expect(await post(base, text(user, 'hola', T0))).toBe(200);
      await sessionAt(base, user, 'ask_order');
      expect(await post(base, text(user, 'ORD-12345', T0 + 1))).toBe(200);
      await sessionAt(base, user, 'show_status');
      await graph.waitFor((x) => x.body.to === `+${user}` && x.body.type === 'interactive', 10_000);
      const texts = graph.sent
        .filter((x) => x.body.to === `+${user}` && x.body.type === 'text')
        .map((x) => (typeof x.body.text === 'string' ? x.body.text : x.body.text?.body));
      expect(texts.some((t) => t?.startsWith('Buscando ORD-12345'))).toBe(true);
    } finally {
      await proc.stop('SIGKILL');
      await dropIsolation(env.BATON_REDIS_PREFIX, env.BATON_PG_SCHEMA);
    }
  });
});
