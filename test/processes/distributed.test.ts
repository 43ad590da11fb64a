/**
 * Distributed mode with real processes: one `baton ingress` and several `baton worker`s on the
 * machine's Redis and PostgreSQL, under concurrency, SIGKILL, a Redis restart and a PostgreSQL
 * outage. Every acknowledged message must end in its session's log and every user correct.
 */
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keys } from '../../src/backends/distributed/keys.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook, type Msg } from '../support/payloads.ts';
import { freePort, postSigned, spawnBaton, type BatonProcess } from '../support/procs.ts';
import { startPrivateRedis } from '../support/redis-server.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  pgQuery,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';
import { proxyOf } from '../support/tcp-proxy.ts';

const up = await distributedServicesUp('distributed process tests');

/** A process's Unix nice value, from /proc (field 19 of stat; the name in field 2 may hold spaces). */
function niceOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}
const T0 = 1_750_000_000;

interface Cluster {
  base: string;
  procs: BatonProcess[];
  workers: BatonProcess[];
  env: Record<string, string>;
  post(m: Msg): Promise<number>;
  /** Posts like Meta does: retries a non-200 until it is accepted. */
  deliver(m: Msg): Promise<void>;
  admin<T>(path: string): Promise<{ status: number; body: T }>;
  addWorker(): Promise<BatonProcess>;
  stop(): Promise<void>;
}

async function startCluster(
  graph: FakeGraph,
  opts: {
    workers: number;
    redisUrl?: string;
    databaseUrl?: string;
    env?: Record<string, string>;
    /** `baton worker --nice`: the workers yield the CPU to the ingress. */
    nice?: number;
  },
): Promise<Cluster> {
  const port = await freePort();
  const env: Record<string, string> = {
    PORT: String(port),
    HOST: '127.0.0.1',
    REDIS_URL: opts.redisUrl ?? REDIS_URL,
    DATABASE_URL: opts.databaseUrl ?? DATABASE_URL,
    BATON_REDIS_PREFIX: uniqueName('bt'),
    BATON_PG_SCHEMA: uniqueName('bt'),
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_API_BASE_URL: graph.url,
    ADMIN_TOKEN,
    BATON_BUFFER_MS: '30',
    BATON_LOCK_TTL_MS: '1500',
    ...opts.env,
  };
  const base = `http://127.0.0.1:${port}`;
  const ingress = await spawnBaton(['ingress'], env);
  const workers: BatonProcess[] = [];
  const c: Cluster = {
    base,
    env,
    procs: [ingress],
    workers,
    post: (m) => postSigned(base, webhook([m]), APP_SECRET, 120_000),
    async deliver(m) {
      for (let i = 0; ; i += 1) {
        const status = await c.post(m);
        if (status === 200) return;
        if (i > 400) throw new Error(`never accepted: last status ${status}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async admin<T>(path: string) {
      const r = await fetch(`${base}/admin/api${path}`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      return { status: r.status, body: (await r.json()) as T };
    },
    async addWorker() {
      const nice = opts.nice === undefined ? [] : ['--nice', String(opts.nice)];
      const w = await spawnBaton(['worker', '--concurrency', '8', ...nice], env);
      workers.push(w);
      c.procs.push(w);
      return w;
    },
    async stop() {
      await Promise.all(c.procs.map((p) => p.stop('SIGKILL')));
    },
  };
  for (let i = 0; i < opts.workers; i += 1) await c.addWorker();
  return c;
}

/** Drops the cluster's keys (through `env.REDIS_URL`) and its schema. */
function cleanup(env: Record<string, string>): Promise<void> {
  return dropIsolation(env.BATON_REDIS_PREFIX!, env.BATON_PG_SCHEMA!, env.REDIS_URL);
}

function orderScript(u: string, ts = T0): Msg[] {
  return [
    text(u, 'hi', ts),
    text(u, `Name ${u}`, ts + 1),
    button(u, 'sku_551a', 'Rain Jacket', ts + 2),
    text(u, `Street ${u}`, ts + 3),
    button(u, 'confirm', 'Confirm', ts + 4),
  ];
}

/** Waits until every user is completed with the data they sent, then checks their logs. */
async function expectAllCompleted(
  c: Cluster,
  users: string[],
  acked: Msg[],
  timeoutMs = 30_000,
  windowMs?: number,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  // With a buffer window: a burst this loaded machine stored over more than the window may be
  // split by the rules (SPEC 1.5, its late part recorded `late`); only the others must complete.
  const split: string[] = [];
  for (const u of users) {
    let completed = false;
    for (;;) {
      const r = await c.admin<{ current_step: string }>(`/sessions/${u}?channel=${PHONE_ID}`);
      if (r.status === 200 && r.body.current_step === 'completed') {
        completed = true;
        break;
      }
      if (Date.now() > deadline) {
        const burst = new Set(acked.filter((m) => m.from === u).map((m) => m.id));
        const times = (
          await pgQuery<{ message: { id: string; storedAt: number } }>(
            c.env.BATON_PG_SCHEMA!,
            'SELECT message FROM inbound WHERE channel = $1 AND user_id = $2',
            [PHONE_ID, u],
          )
        )
          .filter((row) => burst.has(row.message.id))
          .map((row) => row.message.storedAt)
          .sort((a, b) => a - b)
          .slice(1); // the first message came on its own
        const spread = times.length > 0 ? times.at(-1)! - times[0]! : 0;
        if (windowMs !== undefined && spread > windowMs) break;
        throw new Error(
          `${u} did not complete (burst stored over ${spread} ms): ${JSON.stringify(r.body)}\n${await diagnose(c, u)}`,
        );
      }
      await new Promise((res) => setTimeout(res, 50));
    }
    if (!completed) split.push(u);
    const s = await c.admin<{ data: unknown; metadata: { version: number } }>(
      `/sessions/${u}?channel=${PHONE_ID}`,
    );
    if (completed)
      expect(s.body.data).toEqual({
        customer_name: `Name ${u}`,
        product_id: 'sku_551a',
        shipping_address: `Street ${u}`,
      });
    const t = await c.admin<{
      transitions: Array<{ version: number; kind: string; message_ids: string[]; fencing_token: number }>;
    }>(`/sessions/${u}/transitions?channel=${PHONE_ID}`);
    const changes = t.body.transitions.filter(
      (x) => !['late', 'stale_input', 'held', 'ignored'].includes(x.kind),
    );
    expect(changes.map((x) => x.version)).toEqual(changes.map((_, i) => i + 1)); // no gaps, no forks
    const fences = t.body.transitions.map((x) => x.fencing_token);
    expect([...fences].sort((a, b) => a - b)).toEqual(fences);
    const logged = new Set(t.body.transitions.flatMap((x) => x.message_ids));
    for (const m of acked.filter((x) => x.from === u))
      expect(logged.has(m.id), `${m.id} of ${u} in the log`).toBe(true);
  }
  const stats = await c.admin<{ queue_depth: number }>('/stats');
  expect(stats.body.queue_depth).toBe(0);
  return split;
}

/**
 * What a stuck session looks like from outside, for a failure's message: its log, its keys in
 * Redis (lease, scheduled flag, ready-queue entry, mailbox) and the processes' last output.
 */
async function diagnose(c: Cluster, u: string): Promise<string> {
  const lines: string[] = [];
  const t = await c.admin<{ transitions: Array<{ version: number; kind: string; message_ids: string[] }> }>(
    `/sessions/${u}/transitions?channel=${PHONE_ID}`,
  );
  lines.push(
    `transitions: ${JSON.stringify(t.body.transitions.map((x) => [x.version, x.kind, x.message_ids]))}`,
  );
  const redis = new Redis(c.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const keys = new Keys(c.env.BATON_REDIS_PREFIX!);
    const sk = keys.session({ channel: PHONE_ID, user: u });
    const [lock, pttl, sched, score, mbox] = await Promise.all([
      redis.get(sk.lock),
      redis.pttl(sk.lock),
      redis.get(sk.sched),
      redis.zscore(keys.ready, sk.member),
      redis.zrange(sk.mbox, '0', '-1'),
    ]);
    const stored = mbox.length > 0 ? await redis.hmget(sk.msgs, ...mbox) : [];
    lines.push(
      `now ${Date.now()}; lock ${lock} (pttl ${pttl}); sched ${sched}; ready score ${score}`,
      `mailbox: ${JSON.stringify(stored.map((m) => (m === null ? null : (JSON.parse(m) as { id: string; storedAt: number }))).map((m) => m && [m.id, m.storedAt]))}`,
    );
  } catch (err) {
    lines.push(`Redis: ${String(err)}`);
  } finally {
    redis.disconnect();
  }
  for (const [i, p] of c.procs.entries()) lines.push(`--- process ${i}:`, p.output().slice(-4000));
  return lines.join('\n');
}

function callbacksTo(graph: FakeGraph, u: string): string[] {
  return graph.sent.filter((x) => x.body.to === `+${u}`).map((x) => x.body.biz_opaque_callback_data!);
}

describe.skipIf(!up)('distributed mode, real processes', () => {
  let graph: FakeGraph;
  beforeAll(async () => {
    graph = await startFakeGraph();
  });
  afterAll(async () => {
    await graph?.close();
  });

  it('serves bursts for one user from many connections across 2 workers: in order, once, nothing lost', async () => {
    // The default window: a burst must land within it to be re-ordered as one batch.
    // Workers at a lower CPU priority than the ingress, as the bench runs them.
    const c = await startCluster(graph, { workers: 2, env: { BATON_BUFFER_MS: '500' }, nice: 7 });
    try {
      for (const w of c.workers) expect(niceOf(w.child.pid!), 'worker nice value').toBe(7);
      expect(niceOf(c.procs[0]!.child.pid!), 'the ingress keeps its priority').toBe(0);
      const users = Array.from({ length: 12 }, (_, i) => `1666100${String(i).padStart(4, '0')}`);
      const scripts = new Map(users.map((u) => [u, orderScript(u)]));
      const acked = [...scripts.values()].flat();
      // The first message on its own; then the rest of the order at once, shuffled, some twice.
      await Promise.all(users.map(async (u) => c.deliver(scripts.get(u)![0]!)));
      await Promise.all(
        users.map(async (u) => {
          const rest = scripts.get(u)!.slice(1);
          const deliveries = [rest[3]!, rest[1]!, rest[0]!, rest[2]!, rest[1]!, rest[3]!];
          await Promise.all(deliveries.map((m) => c.deliver(m)));
        }),
      );
      const split = await expectAllCompleted(c, users, acked, 30_000, 500);
      expect(split.length, `bursts stored over more than the window: ${split.join(', ')}`).toBeLessThan(
        users.length / 2,
      );
      for (const u of users.filter((x) => !split.includes(x))) {
        await graph.waitFor(
          (x) => x.body.to === `+${u}` && x.body.biz_opaque_callback_data === 'baton:order:completed:5',
        );
        const cbs = callbacksTo(graph, u);
        expect(new Set(cbs).size, `no prompt twice for ${u}`).toBe(cbs.length);
      }
    } finally {
      await c.stop();
      await cleanup(c.env);
    }
  }, 90_000);

  it('survives SIGKILL of a worker holding leases: another worker finishes every user', async () => {
    const c = await startCluster(graph, { workers: 2 });
    try {
      const users = Array.from({ length: 16 }, (_, i) => `1666200${String(i).padStart(4, '0')}`);
      const acked: Msg[] = [];
      // Slow, refused sends keep both workers holding leases mid-batch.
      graph.failNext(40, { status: 503, delayMs: 150 });
      await Promise.all(
        users.map(async (u) => {
          for (const m of orderScript(u)) {
            await c.deliver(m);
            acked.push(m);
          }
        }),
      );
      await c.workers[0]!.stop('SIGKILL');
      await expectAllCompleted(c, users, acked, 45_000);
      for (const u of users) {
        await graph.waitFor(
          (x) => x.body.to === `+${u}` && x.body.biz_opaque_callback_data === 'baton:order:completed:5',
          15_000,
        );
        const cbs = callbacksTo(graph, u);
        // A crash between a send and its record may repeat that one send, never more.
        const counts = new Map<string, number>();
        for (const cb of cbs) counts.set(cb, (counts.get(cb) ?? 0) + 1);
        const repeated = [...counts].filter(([, n]) => n > 1);
        expect(repeated.length).toBeLessThanOrEqual(1);
        expect(Math.max(...counts.values())).toBeLessThanOrEqual(2);
        // Baton's record says it made that second attempt (what `baton load --crashes` reads).
        if (repeated.length === 0) continue;
        const { body } = await c.admin<{ outbound: Array<{ callback_data: string; claims: number }> }>(
          `/sessions/${u}/outbound`,
        );
        expect(body.outbound.find((o) => o.callback_data === repeated[0]![0])?.claims).toBe(2);
      }
    } finally {
      graph.reset();
      await c.stop();
      await cleanup(c.env);
    }
  }, 120_000);

  it("resumes a SIGKILLed worker's sessions when its lease expires, and stops counting it", async () => {
    const c = await startCluster(graph, { workers: 2 });
    try {
      const users = Array.from({ length: 8 }, (_, i) => `1666250${String(i).padStart(4, '0')}`);
      // Every first prompt's send hangs: each worker holds its sessions' leases mid-send.
      graph.failNext(users.length, { status: 503, delayMs: 60_000 });
      for (const u of users) await c.deliver(text(u, 'hi', T0));
      const killed = c.workers[0]!.child.pid!;
      const held: string[] = [];
      const deadline = Date.now() + 15_000;
      while (held.length === 0 && Date.now() < deadline) {
        for (const u of users) {
          const r = await c.admin<{ lease: { holder: string } | null }>(
            `/sessions/${u}/lease?channel=${PHONE_ID}`,
          );
          if (r.body.lease?.holder.includes(`:${killed}:`)) held.push(u);
        }
        if (held.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(held.length).toBeGreaterThan(0);
      graph.reset();
      const t0 = Date.now();
      await c.workers[0]!.stop('SIGKILL');
      // Its heartbeat lapses with its leases (lock TTL 1.5 s + 1 s), not 15 s later.
      for (;;) {
        const r = await c.admin<{ workers: number }>('/stats');
        if (r.body.workers === 1) break;
        expect(Date.now() - t0).toBeLessThan(8000);
        await new Promise((r) => setTimeout(r, 100));
      }
      const took = await Promise.all(
        held.map(async (u) => (await graph.waitFor((x) => x.body.to === `+${u}`, 20_000)).at - t0),
      );
      // The other worker sends the prompts the dead one claimed: it does not wait 3 s for their record.
      console.log(
        `resumed ${held.length} sessions ${Math.min(...took)}-${Math.max(...took)} ms after SIGKILL`,
      );
      expect(Math.max(...took)).toBeLessThan(10_000);
    } finally {
      graph.reset();
      await c.stop();
      await cleanup(c.env);
    }
  }, 60_000);

  it('keeps every acknowledged message when its own AOF Redis is SIGKILLed and restarted mid-run', async () => {
    const redis = await startPrivateRedis();
    const c = await startCluster(graph, { workers: 1, redisUrl: redis.url });
    try {
      const users = Array.from({ length: 10 }, (_, i) => `1666300${String(i).padStart(4, '0')}`);
      const scripts = new Map(users.map((u) => [u, orderScript(u)]));
      const acked: Msg[] = [];
      const sendAll = async (from: number, to: number) =>
        Promise.all(
          users.map(async (u) => {
            for (const m of scripts.get(u)!.slice(from, to)) {
              await c.deliver(m);
              acked.push(m);
            }
          }),
        );
      await sendAll(0, 2);
      await redis.kill();
      // While Redis is down, webhooks are refused (503), so Meta would retry them.
      expect(await c.post(text(users[0]!, 'refused?', T0 + 1))).toBe(503);
      await redis.restart();
      await sendAll(2, 5);
      await expectAllCompleted(c, users, acked, 45_000);
    } finally {
      await c.stop();
      await redis.stop();
      await cleanup({ ...c.env, REDIS_URL: REDIS_URL });
    }
  }, 120_000);

  it('loses nothing when PostgreSQL is unreachable for a few seconds (write-through)', async () => {
    const { proxy, url: viaProxy } = await proxyOf(DATABASE_URL);
    const c = await startCluster(graph, {
      workers: 2,
      databaseUrl: viaProxy,
      env: { BATON_SYNC_MODE: 'write-through' },
    });
    try {
      const users = Array.from({ length: 10 }, (_, i) => `1666400${String(i).padStart(4, '0')}`);
      const scripts = new Map(users.map((u) => [u, orderScript(u)]));
      const acked: Msg[] = [];
      await Promise.all(
        users.map(async (u) => {
          await c.deliver(scripts.get(u)![0]!);
          acked.push(scripts.get(u)![0]!);
        }),
      );
      proxy.block();
      const during = Promise.all(
        users.map(async (u) => {
          for (const m of scripts.get(u)!.slice(1)) {
            await c.deliver(m);
            acked.push(m);
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 3000));
      proxy.unblock();
      await during;
      await expectAllCompleted(c, users, acked, 60_000);
    } finally {
      await c.stop();
      await proxy.close();
      await cleanup(c.env);
    }
  }, 120_000);
});
