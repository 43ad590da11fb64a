/**
 * The RabbitMQ intake (`AMQP_URL`) on a real RabbitMQ, with Baton embedded: a webhook is
 * answered once RabbitMQ confirms it and stored by the consumer; RabbitMQ away answers 503; a
 * store that refuses writes, an unreadable body and a consumer killed with webhooks in hand lose
 * nothing and store nothing twice.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { Channel } from 'amqplib';
import pino from 'pino';
import { ConfigError, StorageUnavailableError } from '../../src/errors.ts';
import { AmqpIntake } from '../../src/ingress/amqp-intake.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';
import {
  AMQP_URL,
  describeRabbit,
  dropQueues,
  intakeQueue,
  readyCount,
  withChannel,
} from '../support/rabbitmq.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

const T0 = 1_750_000_000;

async function metric(h: Harness, name: string): Promise<number> {
  const body = await (await fetch(`${h.url}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describeRabbit('RabbitMQ intake, embedded', () => {
  const queues: string[] = [];
  afterAll(async () => {
    await Promise.all(queues.map(dropQueues));
  });
  /** An ingress alone (no consumer), reaching RabbitMQ through a proxy the test can cut or freeze. */
  const ingressViaProxy = async (): Promise<{ h: Harness; proxy: TcpProxy }> => {
    const queue = intakeQueue();
    queues.push(queue);
    const proxy = await startTcpProxy(Number(new URL(AMQP_URL).port || 5672));
    const via = new URL(AMQP_URL);
    via.port = String(proxy.port);
    const h = await startHarness(
      { AMQP_URL: via.toString(), BATON_AMQP_QUEUE: queue },
      { roles: { ingress: true, worker: false } },
    );
    return { h, proxy };
  };
  const start = async (env: Record<string, string> = {}): Promise<{ h: Harness; queue: string }> => {
    const queue = intakeQueue();
    queues.push(queue);
    return { h: await startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue, ...env }), queue };
  };

  it('answers once RabbitMQ has the webhook; the consumer stores it once, and the flow runs', async () => {
    const { h, queue } = await start();
    try {
      const u = '15550300001';
      const hi = text(u, 'hi', T0);
      const r = await h.post(webhook([hi]));
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ queued: 1 });
      await h.settled(u, 1);
      // Meta delivers it again: acknowledged, no second effect.
      expect((await h.post(webhook([hi]))).status).toBe(200);
      expect((await h.post(webhook([text(u, 'Jane', T0 + 1)]))).status).toBe(200);
      const s = await h.settled(u, 2);
      expect(s).toMatchObject({ current_step: 'choose_product', data: { customer_name: 'Jane' } });
      await h.until(async () => (await metric(h, 'baton_duplicates_total')) === 1);
      expect((await h.transitions(u)).map((t) => t.kind)).toEqual(['advance', 'advance']);
      expect(await metric(h, 'baton_amqp_intake_total{outcome="stored"}')).toBe(3);
      expect(await metric(h, 'baton_webhooks_total{provider="cloud-api",outcome="queued"}')).toBe(3);
      expect(await readyCount(queue)).toBe(0);
      expect(h.graph.sent.filter((c) => c.body.to === `+${u}`)).toHaveLength(2);
    } finally {
      await h.close();
    }
  });

  it('answers 503 while RabbitMQ is away (and /readyz says so), 200 again once it is back', async () => {
    const proxy = await startTcpProxy(Number(new URL(AMQP_URL).port || 5672));
    const via = new URL(AMQP_URL);
    via.port = String(proxy.port);
    const { h } = await start({ AMQP_URL: via.toString() });
    try {
      const u = '15550300002';
      proxy.block();
      await h.until(async () => (await fetch(`${h.url}/readyz`)).status === 503);
      const ready = (await (await fetch(`${h.url}/readyz`)).json()) as { checks: Record<string, boolean> };
      expect(ready.checks.rabbitmq).toBe(false);
      const refused = await h.post(webhook([text(u, 'hi', T0)]));
      expect(refused.status).toBe(503);
      // It names the queue, not "storage" (outside test QA84-F5).
      expect(await refused.json()).toMatchObject({
        code: 'BATON_ERR_STORAGE_UNAVAILABLE',
        error: expect.stringContaining('RabbitMQ'),
      });
      proxy.unblock();
      await h.until(async () => (await fetch(`${h.url}/readyz`)).status === 200, 15_000);
      // Meta retries the refused webhook: now it goes in, once.
      expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await h.settled(u, 1);
      expect(await h.transitions(u)).toHaveLength(1);
    } finally {
      await h.close();
      await proxy.close();
    }
  });

  it('puts webhooks back in the queue while the store refuses writes, and stores them once it takes them', async () => {
    const { h, queue } = await start();
    try {
      const backend = h.baton.backend;
      const ingest = backend.ingest.bind(backend);
      let refusals = 3;
      backend.ingest = async (batch) => {
        if (refusals > 0) {
          refusals -= 1;
          throw new StorageUnavailableError('disk full (test)');
        }
        return ingest(batch);
      };
      const u = '15550300003';
      expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      const s = await h.settled(u, 1);
      expect(s.current_step).toBe('ask_name');
      expect(refusals).toBe(0);
      expect(await metric(h, 'baton_amqp_intake_total{outcome="retry"}')).toBe(3);
      expect(await readyCount(queue)).toBe(0);
    } finally {
      await h.close();
    }
  });

  it('moves a body no consumer can read to the rejected queue and goes on with the next', async () => {
    const { h, queue } = await start();
    try {
      await withChannel(async (ch) => {
        ch.sendToQueue(queue, Buffer.from('{"not": "a webhook"'), {
          headers: { 'x-baton-provider': 'cloud-api', 'x-baton-received-at': Date.now() },
        });
        ch.sendToQueue(queue, Buffer.from('{}'), { headers: {} });
        await new Promise((r) => setTimeout(r, 50));
      });
      const u = '15550300004';
      expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await h.settled(u, 1);
      await h.until(async () => (await readyCount(`${queue}.rejected`)) === 2);
      expect(await readyCount(queue)).toBe(0);
      expect(await metric(h, 'baton_amqp_intake_total{outcome="rejected"}')).toBe(2);
    } finally {
      await h.close();
    }
  });

  it('refuses to start when RabbitMQ cannot be reached, naming AMQP_URL and never its password', async () => {
    const intake = new AmqpIntake({
      url: 'amqp://baton:s3cret@127.0.0.1:1',
      queue: intakeQueue(),
      logger: pino({ level: 'silent' }),
    });
    try {
      const err = await intake.ready(700).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe('AMQP_URL');
      expect((err as Error).message).toMatch(/^AMQP_URL: cannot reach RabbitMQ at 127\.0\.0\.1:1/);
      expect((err as Error).message).not.toContain('s3cret');
    } finally {
      await intake.close();
    }
  });

  it('loses nothing when a consumer is killed with webhooks in hand: they are delivered again', async () => {
    const queue = intakeQueue();
    queues.push(queue);
    // A second consumer on the queue that takes webhooks and never stores them, then dies.
    const holder = spawn(
      process.execPath,
      ['--import', 'tsx', resolve(import.meta.dirname, '../support/amqp-hold-consumer.ts'), AMQP_URL, queue],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    holder.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => holder.once('exit', r));
    // The holder subscribes first, so it is the queue's active consumer; Baton's stands by.
    const deadline = Date.now() + 30_000;
    while (!out.includes('consuming')) {
      if (Date.now() > deadline) throw new Error('the holding consumer never started');
      await new Promise((r) => setTimeout(r, 50));
    }
    const h = await startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue });
    try {
      const users = Array.from({ length: 10 }, (_, i) => `1555031${String(i).padStart(4, '0')}`);
      for (const u of users) expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      // The holder has them in hand.
      await h.until(() => out.includes('holding'));
      const held = out.split('\n').filter((l) => l === 'holding').length;
      holder.kill('SIGKILL');
      await exited;
      for (const u of users) {
        await h.settled(u, 1);
        expect(await h.transitions(u)).toHaveLength(1);
      }
      expect(held).toBeGreaterThan(0);
      expect(h.graph.sent).toHaveLength(users.length);
    } finally {
      if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
      await h.close();
    }
  });

  it('a consumer whose store fails hands its webhooks back at once and takes no more until the store answers', async () => {
    const queue = intakeQueue();
    queues.push(queue);
    // The sick one subscribes first: the queue's active consumer, the healthy one standing by.
    const sick = await startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue });
    const healthy = await startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue });
    try {
      const store = sick.baton.backend;
      let down = true;
      const ingest = store.ingest.bind(store);
      const health = store.health.bind(store);
      store.ingest = async (b) => {
        if (down) throw new StorageUnavailableError('Redis unreachable (test)');
        return ingest(b);
      };
      store.health = async () => (down ? { store: false } : health());
      const users = Array.from({ length: 12 }, (_, i) => `1555033${String(i).padStart(4, '0')}`);
      for (const u of users.slice(0, 6))
        expect((await sick.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      for (const u of users.slice(0, 6)) await healthy.settled(u, 1);
      const handedBack = await metric(sick, 'baton_amqp_intake_total{outcome="retry"}');
      expect(handedBack).toBeGreaterThan(0);
      // Paused (it cancelled its subscription): the healthy consumer is the active one now, and
      // the next webhooks all go to it, none to the sick one.
      for (const u of users.slice(6))
        expect((await sick.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      for (const u of users.slice(6)) await healthy.settled(u, 1);
      expect(await metric(sick, 'baton_amqp_intake_total{outcome="retry"}')).toBe(handedBack);
      // Its store back, it consumes again.
      down = false;
      await healthy.baton.stop();
      const u = '15550339999';
      expect((await sick.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await sick.settled(u, 1);
    } finally {
      await sick.close();
      await healthy.close();
    }
  });

  it('a consumer that pauses hands back a webhook whose store still hangs, so the next consumer stores it first (outside test QA46-F1)', async () => {
    const queue = intakeQueue();
    queues.push(queue);
    const sick = await startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue });
    const healthy = await startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue });
    let release = (): void => undefined;
    const hung = new Promise<void>((r) => (release = r));
    try {
      const store = sick.baton.backend;
      const ingest = store.ingest.bind(store);
      const [slow, failing] = ['15550343001', '15550343002'];
      // A frozen link: the first webhook's store hangs; the next one's fails, and the consumer pauses.
      store.ingest = async (b) => {
        const to = b.messages[0]?.user;
        if (to === slow) await hung;
        if (to === failing) throw new StorageUnavailableError('PostgreSQL did not answer (test)');
        return ingest(b);
      };
      store.health = async () => ({ store: false });
      expect((await sick.post(webhook([text(slow, 'hi', T0)]))).status).toBe(200);
      await new Promise((r) => setTimeout(r, 200));
      expect((await sick.post(webhook([text(failing, 'hi', T0)]))).status).toBe(200);
      // Both are stored by the consumer that took over, while the first one's store still hangs.
      await healthy.settled(failing, 1);
      await healthy.settled(slow, 1);
    } finally {
      release();
      await sick.close();
      await healthy.close();
    }
  });

  it('answers 503, not 200, while its queue is deleted, declares it again and goes on', async () => {
    const { h, queue } = await start();
    try {
      await h.until(async () => (await withChannel((ch) => ch.checkQueue(queue))).consumerCount === 1);
      await withChannel((ch) => ch.deleteQueue(queue));
      const u = '15550300005';
      const lost = await h.post(webhook([text(u, 'hi', T0)]));
      expect(lost.status).toBe(503);
      // Meta retries: the queue is back, and so is the consumer.
      await h.until(async () => (await h.post(webhook([text(u, 'hi', T0)]))).status === 200);
      await h.settled(u, 1);
      // The rejected queue deleted too: an unreadable body still ends there.
      await withChannel((ch) => ch.deleteQueue(`${queue}.rejected`));
      await withChannel(async (ch) => {
        ch.sendToQueue(queue, Buffer.from('{}'), { headers: {} });
        await new Promise((r) => setTimeout(r, 50));
      });
      await h.until(async () => (await readyCount(`${queue}.rejected`)) === 1, 15_000);
    } finally {
      await h.close();
    }
  });

  it('counts webhooks waiting in RabbitMQ in the queue depth, and stays ready while the store is away', async () => {
    const queue = intakeQueue();
    queues.push(queue);
    const h = await startHarness(
      { AMQP_URL, BATON_AMQP_QUEUE: queue },
      { roles: { ingress: true, worker: false } },
    );
    try {
      for (let i = 0; i < 3; i++) {
        expect((await h.post(webhook([text(`155503400${i}`, 'hi', T0)]))).status).toBe(200);
      }
      await h.until(async () => {
        const s = (await (await h.admin('/stats')).json()) as { queue_depth: number };
        return s.queue_depth === 3;
      });
      expect(await metric(h, 'baton_queue_depth')).toBe(3);
      h.baton.backend.health = async () => ({ store: false });
      const r = await fetch(`${h.url}/readyz`);
      expect(r.status).toBe(200);
      expect(await r.json()).toMatchObject({ ok: true, checks: { store: false, rabbitmq: true } });
    } finally {
      await h.close();
    }
  });

  it('a burst behind a backlog is one batch: a batch waits for what the queue still holds of its window (outside test QA44-F1)', async () => {
    const { h, queue } = await start({ BATON_BUFFER_MS: '500' });
    try {
      const u = '15550300081';
      expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
      await h.settled(u, 1);
      // Queued 20 s ago by an ingress while no worker ran (a backlog): "Jane", other users'
      // webhooks, "Smith" 400 ms after "Jane", then more. The consumer takes "Jane" long after
      // its window closed; "Smith" is still in the queue behind the others.
      const r0 = Date.now() - 20_000;
      const publish = (ch: Channel, body: unknown, receivedAt: number): void => {
        ch.sendToQueue(queue, Buffer.from(JSON.stringify(body)), {
          headers: { 'x-baton-provider': 'cloud-api', 'x-baton-received-at': receivedAt },
        });
      };
      await withChannel(async (ch) => {
        publish(ch, webhook([text(u, 'Jane', T0 + 1)]), r0);
        for (let i = 0; i < 150; i++) {
          const other = `155503009${String(i).padStart(2, '0')}`;
          publish(ch, webhook([text(other, 'hi', T0)]), r0 + 1 + Math.floor(i * 2.5));
        }
        publish(ch, webhook([text(u, 'Smith', T0 + 1)]), r0 + 400);
        for (let i = 0; i < 20; i++) publish(ch, webhook([text(`155503008${i}`, 'hi', T0)]), r0 + 600 + i);
        await new Promise((r) => setTimeout(r, 50));
      });
      const s = await h.settled(u, 2);
      expect(s).toMatchObject({ current_step: 'choose_product', data: { customer_name: 'Jane Smith' } });
      expect((await h.transitions(u)).map((t) => t.kind)).toEqual(['advance', 'advance']);
    } finally {
      await h.close();
    }
  });

  it('keeps counting the backlog while RabbitMQ cannot be asked (it said 0, and the queue alert resolved: QA44-F2)', async () => {
    const { h, proxy } = await ingressViaProxy();
    const depth = async (): Promise<number> =>
      ((await (await h.admin('/stats')).json()) as { queue_depth: number }).queue_depth;
    try {
      for (let i = 0; i < 3; i++) {
        expect((await h.post(webhook([text(`155503410${i}`, 'hi', T0)]))).status).toBe(200);
      }
      await h.until(async () => (await depth()) === 3);
      proxy.block();
      await h.until(async () => (await fetch(`${h.url}/readyz`)).status === 503);
      // Past the stats cache's second: asked again, RabbitMQ away, the last count stands.
      await new Promise((r) => setTimeout(r, 1200));
      expect(await depth()).toBe(3);
      expect(await metric(h, 'baton_queue_depth')).toBe(3);
    } finally {
      await h.close();
      await proxy.close();
    }
  });

  it('a silent link to RabbitMQ holds the stats a second at most: its last count stands (outside test QA127-F3)', async () => {
    const { h, proxy } = await ingressViaProxy();
    try {
      for (let i = 0; i < 2; i++) {
        expect((await h.post(webhook([text(`155503420${i}`, 'hi', T0)]))).status).toBe(200);
      }
      const depth = async (): Promise<number> =>
        ((await (await h.admin('/stats')).json()) as { queue_depth: number }).queue_depth;
      await h.until(async () => (await depth()) === 2);
      proxy.stall();
      // Past the stats cache's second, each read asks RabbitMQ again, which says nothing.
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 1100));
        const started = Date.now();
        expect(await depth()).toBe(2);
        // (It waited for the link's heartbeat to give up: 10-12 s.)
        expect(Date.now() - started).toBeLessThan(3000);
      }
    } finally {
      await h.close();
      await proxy.close();
    }
  });

  it('a frozen link to RabbitMQ makes the ingress not ready, naming RabbitMQ, not the store (outside test QA44-F3, F4)', async () => {
    const { h, proxy } = await ingressViaProxy();
    try {
      expect((await h.post(webhook([text('15550342001', 'hi', T0)]))).status).toBe(200);
      proxy.stall(); // the connection stays open; nothing gets through
      const refused = await h.post(webhook([text('15550342002', 'hi', T0)]));
      expect(refused.status).toBe(503);
      const ready = await fetch(`${h.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ok: false, checks: { rabbitmq: false, writes: true } });
    } finally {
      await proxy.close(); // the link goes: nothing waits for the frozen one's close
      await h.close();
    }
  }, 30_000);

  it('does not believe an arrival time from another era', async () => {
    const { h, queue } = await start();
    try {
      const u = '15550300006';
      await withChannel(async (ch) => {
        ch.sendToQueue(queue, Buffer.from(JSON.stringify(webhook([text(u, 'hi', T0)]))), {
          headers: { 'x-baton-provider': 'cloud-api', 'x-baton-received-at': 1 },
        });
        await new Promise((r) => setTimeout(r, 50));
      });
      const s = await h.settled(u, 1);
      expect(s.metadata.last_interaction).toBe(new Date(T0 * 1000).toISOString().replace('.000', ''));
    } finally {
      await h.close();
    }
  });

  it('one consumer at a time: one that stalls holds the webhooks after it too, so a user\u2019s are stored in order', async () => {
    // An outside test: a worker paused for seconds held a user's first webhooks while another
    // worker stored the later ones; the first were then recorded late, the name became the address.
    const queue = intakeQueue();
    queues.push(queue);
    const logger = pino({ level: 'silent' });
    const stalled = new AmqpIntake({ url: AMQP_URL, queue, logger });
    const other = new AmqpIntake({ url: AMQP_URL, queue, logger });
    let release!: () => void;
    const stall = new Promise<void>((r) => (release = r));
    const stored: string[] = [];
    const handler =
      (who: string) =>
      async (w: { body: Buffer }): Promise<'stored'> => {
        if (who === 'stalled') await stall;
        stored.push(`${who}:${w.body.toString()}`);
        return 'stored';
      };
    try {
      await stalled.ready();
      stalled.consume(handler('stalled'), { healthy: async () => true });
      await new Promise((r) => setTimeout(r, 300)); // subscribed first: the active consumer
      await other.ready();
      other.consume(handler('other'), { healthy: async () => true });
      await new Promise((r) => setTimeout(r, 300));
      for (const n of [1, 2, 3, 4])
        await stalled.publish({ provider: 'cloud-api', body: Buffer.from(`m${n}`), receivedAt: Date.now() });
      await new Promise((r) => setTimeout(r, 1000));
      expect(stored).toEqual([]); // the standby took none of them
      release();
      const deadline = Date.now() + 10_000;
      while (stored.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(stored).toEqual(['stalled:m1', 'stalled:m2', 'stalled:m3', 'stalled:m4']);
    } finally {
      release();
      await stalled.close();
      await other.close();
    }
  });

  /** What a start on `queue` threw (null: it started, and is closed again). */
  const startRefused = (queue: string): Promise<unknown> =>
    startHarness({ AMQP_URL, BATON_AMQP_QUEUE: queue }).then(
      async (h) => {
        await h.close();
        return null;
      },
      (e: unknown) => e,
    );

  it('refuses to start on a queue of the same name with other arguments, naming BATON_AMQP_QUEUE', async () => {
    const queue = intakeQueue();
    queues.push(queue);
    await withChannel((ch) => ch.assertQueue(queue, { durable: true }));
    const started = Date.now();
    const err = await startRefused(queue);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe('BATON_AMQP_QUEUE');
    expect((err as ConfigError).message).toContain(`"${queue}" exists in RabbitMQ`);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('names the queue of unreadable webhooks when it is the one with other arguments', async () => {
    const queue = intakeQueue();
    queues.push(queue);
    await withChannel((ch) => ch.assertQueue(`${queue}.rejected`, { durable: true }));
    const err = await startRefused(queue);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(`"${queue}.rejected" exists in RabbitMQ`);
    expect((err as ConfigError).message).toContain('unreadable webhooks');
  });
});
