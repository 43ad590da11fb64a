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
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signMetaBody } from '../../src/providers/index.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook, type Msg } from '../support/payloads.ts';
import { freePort, spawnBaton, type BatonProcess } from '../support/procs.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  pgQuery,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';

const up = await distributedServicesUp('burst watermark process tests');
const T0 = 1_750_000_000;
const WINDOW_MS = 100;

interface Transition {
  version: number;
  kind: string;
  message_ids: string[];
  fencing_token: number;
  at: string;
}

describe.skipIf(!up)('separate ingress and worker processes, intake slower than the window', () => {
  let graph: FakeGraph;
  let proxy: TcpProxy;
  const procs: BatonProcess[] = [];
  let env: Record<string, string>;
  let slowBase: string;
  let adminBase: string;

  beforeAll(async () => {
    graph = await startFakeGraph();
    proxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379), { delayMs: { min: 30, max: 60 } });
    const viaProxy = new URL(REDIS_URL);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
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
    procs.push(
      await spawnBaton(['ingress'], { ...env, PORT: String(slowPort), REDIS_URL: viaProxy.toString() }),
    );
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

  /**
   * Posts a webhook whose body follows its headers after `bodyDelayMs` (a slow client or
   * network): the ingress counts it as received when the headers arrive, stores it after the
   * body. Retries until it is accepted, as Meta does.
   */
  async function deliver(m: Msg, bodyDelayMs = 0): Promise<void> {
    const raw = Buffer.from(JSON.stringify(webhook([m])));
    const once = (): Promise<number> =>
      new Promise((resolve) => {
        const req = request(
          `${slowBase}/webhooks/whatsapp`,
          {
            method: 'POST',
            agent: false,
            headers: {
              'content-type': 'application/json',
              'content-length': raw.length,
              'x-hub-signature-256': signMetaBody(raw, APP_SECRET),
            },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', () => resolve(0));
        req.flushHeaders();
        setTimeout(() => req.end(raw), bodyDelayMs);
      });
    for (let i = 0; ; i += 1) {
      const status = await once();
      if (status === 200) return;
      if (i > 50) throw new Error(`never accepted: ${status}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  async function admin<T>(path: string): Promise<{ status: number; body: T }> {
    const r = await fetch(`${adminBase}/admin/api${path}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    return { status: r.status, body: (await r.json()) as T };
  }

  async function settledAt(
    u: string,
    version: number,
    deadline = Date.now() + 30_000,
  ): Promise<{ data: unknown; version: number }> {
    for (;;) {
      const r = await admin<{ data: unknown; metadata: { version: number } }>(
        `/sessions/${u}?channel=${PHONE_ID}`,
      );
      if (r.status === 200 && r.body.metadata.version >= version)
        return { data: r.body.data, version: r.body.metadata.version };
      if (Date.now() > deadline)
        throw new Error(`${u} never reached version ${version}: ${JSON.stringify(r.body)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  it('20 users each send 4 shuffled messages with duplicates: every burst is one batch', async () => {
    const users = Array.from({ length: 20 }, (_, i) => `1666900${String(i).padStart(4, '0')}`);
    await Promise.all(users.map((u) => deliver(text(u, 'hi', T0))));
    for (const u of users) await settledAt(u, 1);

    const bursts = new Map(
      users.map((u) => [
        u,
        [
          text(u, `Name ${u}`, T0 + 10),
          button(u, 'sku_777b', 'Day Pack', T0 + 11),
          text(u, `Street ${u}`, T0 + 12),
          button(u, 'confirm', 'Confirm', T0 + 13),
        ],
      ]),
    );
    // The bursts start 100 ms apart: 120 requests at once from this process (which also runs the
    // proxy) would spread each burst over more than the window on a loaded machine.
    await Promise.all(
      users.map(async (u, i) => {
        await new Promise((r) => setTimeout(r, i * 100));
        const b = bursts.get(u)!;
        const deliveries = [b[2]!, b[0]!, b[3]!, b[1]!, b[0]!, b[3]!];
        // Each delivery after a random pause of up to 40 ms, as a user's burst; its body follows
        // its headers 100-300 ms later.
        await Promise.all(
          deliveries.map(async (m) => {
            await new Promise((r) => setTimeout(r, Math.random() * 40));
            await deliver(m, 100 + Math.random() * 200);
          }),
        );
      }),
    );

    // A split burst may never reach version 5: one deadline for all users.
    const deadline = Date.now() + 20_000;
    const split: string[] = [];
    const judged: string[] = [];
    for (const u of users) {
      const s = await settledAt(u, 5, deadline).catch(() => null);
      const t = await admin<{ transitions: Transition[] }>(`/sessions/${u}/transitions?channel=${PHONE_ID}`);
      // The window counts from arrival at the ingress: a burst this machine delivered over more
      // than the window may be split by the rules, so only bursts that arrived within it count.
      const stored = await pgQuery<{ message: { id: string; storedAt: number } }>(
        env.BATON_PG_SCHEMA!,
        'SELECT message FROM inbound WHERE channel = $1 AND user_id = $2',
        [PHONE_ID, u],
      );
      const ids = new Set(bursts.get(u)!.map((m) => m.id));
      const times = stored.filter((r) => ids.has(r.message.id)).map((r) => r.message.storedAt);
      if (times.length === 4 && Math.max(...times) - Math.min(...times) > WINDOW_MS) continue;
      judged.push(u);
      const after = t.body.transitions.filter((x) => x.version > 1 || x.kind !== 'advance');
      const batches = new Set(after.map((x) => `${x.fencing_token}@${x.at}`));
      const applied = new Set(after.filter((x) => x.kind === 'advance').flatMap((x) => x.message_ids));
      const oneBatch =
        s !== null &&
        s.version === 5 &&
        batches.size === 1 &&
        [...ids].every((id) => applied.has(id)) &&
        JSON.stringify(s.data) ===
          JSON.stringify({
            customer_name: `Name ${u}`,
            product_id: 'sku_777b',
            shipping_address: `Street ${u}`,
          });
      if (!oneBatch) {
        const shape = after.map((x) => `${x.kind}@${x.fencing_token}/${x.at.slice(17)}`).join(' ');
        split.push(`${u}: version ${s?.version ?? '?'}, ${shape}`);
      }
    }
    // Most bursts arrive within the window (else this test proves nothing).
    expect(judged.length, 'bursts that arrived within the window').toBeGreaterThanOrEqual(users.length / 2);
    expect(split, `bursts split: ${split.length} of ${judged.length}`).toEqual([]);

    for (const u of judged) {
      await graph.waitFor(
        (x) => x.body.to === u && x.body.biz_opaque_callback_data === 'baton:order:completed:5',
      );
      const prompts = graph.sent.filter((x) => x.body.to === u).map((x) => x.body.biz_opaque_callback_data);
      expect(prompts, u).toEqual(['baton:order:ask_name:1', 'baton:order:completed:5']);
    }
  }, 120_000);
});
