/**
 * The RabbitMQ intake in distributed mode with real processes: `baton ingress` queues webhooks,
 * `baton worker`s consume and store them in Redis and PostgreSQL. A worker SIGKILLed with
 * webhooks in its hand (its Redis silent, so it cannot store them yet) loses none of them: every
 * acknowledged message ends in its session's log exactly once and every user completes.
 */
import { afterAll, expect, it } from 'vitest';
import { startFakeGraph } from '../support/fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook, type Msg } from '../support/payloads.ts';
import { freePort, postSigned, spawnBaton, type BatonProcess } from '../support/procs.ts';
import { AMQP_URL, describeRabbit, dropQueues, intakeQueue, readyCount } from '../support/rabbitmq.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';

const up = await distributedServicesUp('RabbitMQ intake process tests');
const T0 = 1_750_000_000;

interface Transition {
  version: number;
  kind: string;
  message_ids: string[];
}

describeRabbit('RabbitMQ intake, distributed processes', () => {
  const queue = intakeQueue();
  const prefix = uniqueName('bt');
  const schema = uniqueName('bt');
  afterAll(async () => {
    await dropQueues(queue);
    if (up) await dropIsolation(prefix, schema);
  });

  it.skipIf(!up)('loses nothing when a worker is SIGKILLed with queued webhooks in hand', async () => {
    const graph = await startFakeGraph();
    const redisPort = Number(new URL(REDIS_URL).port || 6379);
    // The first worker reaches Redis through a link that goes silent: it holds webhooks it
    // cannot store when it dies.
    const cut = await startTcpProxy(redisPort);
    const port = await freePort();
    const env: Record<string, string> = {
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL,
      DATABASE_URL,
      AMQP_URL,
      BATON_AMQP_QUEUE: queue,
      BATON_REDIS_PREFIX: prefix,
      BATON_PG_SCHEMA: schema,
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: '30',
      BATON_LOCK_TTL_MS: '1500',
    };
    const base = `http://127.0.0.1:${port}`;
    const procs: BatonProcess[] = [];
    const admin = async <T>(path: string): Promise<T> =>
      (await (
        await fetch(`${base}/admin/api${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).json()) as T;
    try {
      procs.push(await spawnBaton(['ingress'], env));
      const cutUrl = new URL(REDIS_URL);
      cutUrl.port = String(cut.port);
      const doomed = await spawnBaton(['worker', '--concurrency', '8'], {
        ...env,
        REDIS_URL: cutUrl.toString(),
      });
      procs.push(doomed);
      cut.stall();
      const acked: string[] = [];
      const post = async (m: Msg): Promise<void> => {
        expect(await postSigned(base, webhook([m]), APP_SECRET, 120_000)).toBe(200);
        acked.push(m.id);
      };
      const users = Array.from({ length: 16 }, (_, i) => `1555032${String(i).padStart(4, '0')}`);
      await Promise.all(
        users.map(async (u) => {
          await post(text(u, 'hi', T0));
          for (const m of [
            text(u, 'Kim', T0 + 1),
            button(u, 'sku_550e', 'Trail Shoe', T0 + 2),
            text(u, '9 Elm Road', T0 + 3),
            button(u, 'confirm', 'Confirm', T0 + 4),
          ])
            await post(m);
        }),
      );
      expect(acked).toHaveLength(users.length * 5);
      // The doomed worker has taken up to its prefetch (64) of the 80 and stored none of them.
      await new Promise((r) => setTimeout(r, 300));
      expect(await readyCount(queue)).toBeLessThan(acked.length);
      await doomed.stop('SIGKILL');
      procs.push(await spawnBaton(['worker', '--concurrency', '8'], env));

      const deadline = Date.now() + 30_000;
      for (const u of users) {
        for (;;) {
          const s = await admin<{ current_step?: string }>(`/sessions/${u}?channel=${PHONE_ID}`);
          if (s.current_step === 'completed') break;
          if (Date.now() > deadline) throw new Error(`${u} did not complete: ${JSON.stringify(s)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      // Every acknowledged message is in exactly one transition record; versions have no gaps.
      const seen = new Map<string, number>();
      for (const u of users) {
        const { transitions } = await admin<{ transitions: Transition[] }>(
          `/sessions/${u}/transitions?channel=${PHONE_ID}`,
        );
        const versioned = transitions.filter(
          (t) => !['late', 'stale_input', 'held', 'ignored'].includes(t.kind),
        );
        expect(versioned.map((t) => t.version)).toEqual(versioned.map((_, i) => i + 1));
        for (const t of transitions) for (const id of t.message_ids) seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      for (const id of acked) expect(seen.get(id), id).toBe(1);
      expect(await readyCount(queue)).toBe(0);
      // The ingress stored nothing itself; its /stats counts what the workers stored.
      const perSecond = async (): Promise<number> =>
        (await admin<{ messages_per_s: number }>('/stats')).messages_per_s;
      for (let i = 0; i < 40 && (await perSecond()) < acked.length / 60 - 0.01; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await perSecond()).toBeCloseTo(acked.length / 60, 1);
    } finally {
      await Promise.all(procs.map((p) => p.stop('SIGKILL')));
      await cut.close();
      await graph.close();
    }
  });

  it.skipIf(!up)(
    'while Redis is away, the queue depth counts the webhooks waiting in RabbitMQ, marked stale (outside test QA126-F1)',
    async () => {
      const own = intakeQueue();
      const link = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379));
      const via = new URL(REDIS_URL);
      via.port = String(link.port);
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      // An ingress alone: what it queues waits in RabbitMQ (no worker takes it).
      const ingress = await spawnBaton(['ingress'], {
        PORT: String(port),
        HOST: '127.0.0.1',
        REDIS_URL: via.toString(),
        DATABASE_URL,
        AMQP_URL,
        BATON_AMQP_QUEUE: own,
        BATON_REDIS_PREFIX: prefix,
        BATON_PG_SCHEMA: schema,
        WHATSAPP_APP_SECRET: APP_SECRET,
        ADMIN_TOKEN,
      });
      const stats = async (): Promise<{
        status: number;
        body: { queue_depth?: number; stale?: string[] };
      }> => {
        const r = await fetch(`${base}/admin/api/stats`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        return { status: r.status, body: (await r.json()) as { queue_depth?: number; stale?: string[] } };
      };
      const gauge = async (name: string): Promise<number> => {
        const page = await (await fetch(`${base}/metrics`)).text();
        const line = page.split('\n').find((l) => l.startsWith(`${name} `));
        return line === undefined ? Number.NaN : Number(line.split(' ').pop());
      };
      const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
        const deadline = Date.now() + 15_000;
        while (!(await check())) {
          if (Date.now() > deadline) throw new Error(`not within 15 s: ${what}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      const post = async (n: number, from: number): Promise<void> => {
        for (let i = 0; i < n; i++)
          expect(
            await postSigned(
              base,
              webhook([text(`1555033${String(from + i).padStart(4, '0')}`, 'hi', T0)]),
              APP_SECRET,
            ),
          ).toBe(200);
      };
      try {
        await post(4, 0);
        await until('4 queued, fresh', async () => {
          const s = await stats();
          return s.status === 200 && s.body.queue_depth === 4 && s.body.stale === undefined;
        });
        // Redis refuses: webhooks still go into RabbitMQ, and the figures say so.
        link.block();
        await post(3, 10);
        await until('7 queued, Redis refusing', async () => {
          const s = await stats();
          return s.status === 200 && s.body.queue_depth === 7;
        });
        expect((await stats()).body.stale).toContain('queue_depth');
        expect(await gauge('baton_queue_depth')).toBe(7);
        expect(await gauge('baton_figures_up{figures="queue"}')).toBe(0);
        // Back, then silent (a Redis that hangs): the same.
        link.unblock();
        await until('fresh again', async () => (await stats()).body.stale === undefined);
        link.stall();
        await post(2, 20);
        await until('9 queued, Redis silent', async () => {
          const s = await stats();
          return s.status === 200 && s.body.queue_depth === 9;
        });
        expect((await stats()).body.stale).toContain('queue_depth');
        expect(await gauge('baton_queue_depth')).toBe(9);
      } finally {
        await ingress.stop('SIGKILL');
        await link.close();
        await dropQueues(own);
      }
    },
    60_000,
  );
});
