/**
 * The optional RabbitMQ intake (`AMQP_URL`). An ingress publishes each webhook it accepts (the
 * raw body, after its signature and envelope are checked) to a durable quorum queue and answers
 * `200` once RabbitMQ confirms it; processes that run workers consume the queue and store the
 * webhooks in Baton's own store, acknowledging each one only after it is stored. So a webhook is
 * answered while Baton's store is slow or away (RabbitMQ holds it), and none is lost: a consumer
 * that dies before its acknowledgement leaves the webhook to be delivered again, and storing a
 * message twice has no second effect (its id is deduplicated, SPEC 1.2).
 *
 * - A publish is `mandatory`: if the queue is gone (deleted by hand), RabbitMQ returns the body
 *   instead of confirming a message it dropped; the webhook is answered 503 and the queue is
 *   declared again. A consumer whose queue is deleted declares it again and goes on.
 * - A consumer whose store refuses a write returns the webhook to the queue at once and stops
 *   consuming until its store answers again (probed every second), so a worker cut off from
 *   Redis or PostgreSQL never holds webhooks that healthy workers could store.
 * - One consumer takes webhooks at a time (a single-active-consumer queue): webhooks are stored
 *   in the order they were queued, a user's too; the other processes' consumers stand by and
 *   one takes over when the active one goes (its webhooks in hand are delivered again).
 * - A body the consumer cannot read (not from an ingress of this version, say) is published to
 *   `<queue>.rejected` (confirmed) and only then acknowledged: it stays there for an operator and
 *   never blocks the ones after it.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { connect, type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { ConfigError, StorageUnavailableError } from '../errors.ts';
import { serviceAddress } from '../config/address.ts';
import type { ProviderName } from '../model/message.ts';
import { within } from '../sleep.ts';

/** A webhook as the ingress queues it: the gateway's raw body and when it reached Baton. */
export interface QueuedWebhook {
  readonly provider: ProviderName;
  readonly body: Buffer;
  /** Epoch milliseconds when its request arrived: the buffer window counts from it. */
  readonly receivedAt: number;
  /** It may have reached the ingress this much earlier (IntakeTracker.readLateMs). */
  readonly readLateMs?: number;
}

/**
 * What the consumer makes of one webhook: `stored` (acknowledge it), `unreadable` (move it to
 * the rejected queue). A throw means the store is unavailable: the webhook goes back to the queue.
 */
export type IntakeHandler = (webhook: QueuedWebhook) => Promise<'stored' | 'unreadable'>;

/** What became of one delivery, for `baton_amqp_intake_total{outcome}`. */
export type IntakeOutcome = 'stored' | 'retry' | 'rejected';

export interface AmqpIntakeOptions {
  readonly url: string;
  /** The queue's name; `<queue>.rejected` holds the bodies no consumer could read. */
  readonly queue: string;
  readonly logger: Logger;
  /** How long a publish may wait for RabbitMQ's confirm before the webhook is answered 503. */
  readonly publishTimeoutMs?: number;
  /** Counts each delivery's outcome. */
  readonly count?: (outcome: IntakeOutcome) => void;
  readonly now?: () => number;
}

export interface ConsumeOptions {
  /** Webhooks in hand at most. */
  readonly prefetch?: number;
  /** Whether the store takes writes again, after it refused one (consuming resumes then). */
  readonly healthy: () => Promise<boolean>;
}

const HEADER_PROVIDER = 'x-baton-provider';
const HEADER_RECEIVED_AT = 'x-baton-received-at';
const HEADER_READ_LATE = 'x-baton-read-late-ms';
const PROVIDERS: readonly ProviderName[] = ['cloud-api', 'wasender'];
/** How often a paused consumer asks whether its store is back; a cancelled one redeclares. */
const RETRY_MS = 1000;
/** An arrival time further back than this is not believed: the delivery time stands in. */
const MAX_QUEUED_MS = 24 * 60 * 60 * 1000;
/** How long a stopping consumer waits for the webhooks in its hand. */
const STOP_WAIT_MS = 5000;

/** Declares the intake queue and its rejected queue (idempotent; the same on every process). */
async function declare(ch: Channel, queue: string): Promise<void> {
  const rejected = rejectedQueue(queue);
  // Quorum queues: replicated, and a confirm means the body is on disk on a majority of nodes.
  await ch.assertQueue(rejected, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.assertQueue(queue, { durable: true, arguments: queueArguments(queue) });
}

const rejectedQueue = (queue: string): string => `${queue}.rejected`;

/** How long the queue's count is waited for before the last one RabbitMQ gave stands, ms. */
const WAITING_ANSWER_MS = 1000;

/** `amqp://user:pass@host:5672/vhost` shown as `host:5672`: never the credentials. */
export function amqpAddress(url: string): string {
  return serviceAddress(url, url.trim().startsWith('amqps:') ? '5671' : '5672');
}

export class AmqpIntake {
  private readonly manager: AmqpConnectionManager;
  private readonly publisher: ChannelWrapper;
  /** The publisher's channel as of its last setup (to declare the queue again). */
  private publishChannel: Channel | null = null;
  /** Message ids RabbitMQ returned as unroutable (the queue is gone). */
  private readonly returned = new Set<string>();
  private consumer: ChannelWrapper | null = null;
  private consumeChannel: Channel | null = null;
  private consumerTag: string | null = null;
  /** What `consume` was given, to consume again after a cancel. */
  private consuming: { handler: IntakeHandler; o: ConsumeOptions } | null = null;
  /** The queue's count as RabbitMQ last gave it (see {@link waiting}). */
  private lastWaiting: number | null = null;
  private paused = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Deliveries in hand and not settled, with their channel. */
  private readonly held = new Map<ConsumeMessage, Channel>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closing = false;
  private lastError = '';
  /** A problem no reconnect solves (the queue's arguments, the credentials): start fails at once. */
  private fatal: ConfigError | null = null;
  private readonly now: () => number;

  constructor(private readonly o: AmqpIntakeOptions) {
    this.now = o.now ?? Date.now;
    this.manager = connect([o.url], { heartbeatIntervalInSeconds: 5, reconnectTimeInSeconds: 1 });
    const address = amqpAddress(o.url);
    this.manager.on('connect', () => o.logger.info({ rabbitmq: address }, 'RabbitMQ intake connected'));
    this.manager.on('disconnect', ({ err }) => {
      if (!this.closing)
        o.logger.warn({ rabbitmq: address, err: err?.message }, 'RabbitMQ intake disconnected');
    });
    this.manager.on('connectFailed', ({ err }) => {
      // Once per distinct reason: a broker that stays away is not logged every second.
      const reason = err?.message ?? 'unknown';
      if (reason !== this.lastError)
        o.logger.warn({ rabbitmq: address, err: reason }, 'RabbitMQ unreachable');
      this.lastError = reason;
      if (/ACCESS_REFUSED|403/.test(reason)) {
        this.fatal = new ConfigError(
          'AMQP_URL',
          `RabbitMQ at ${address} refused the credentials (${reason})`,
        );
      }
    });
    this.publisher = this.manager.createChannel({
      name: 'baton-intake-publish',
      confirm: true,
      publishTimeout: o.publishTimeoutMs ?? 5000,
      setup: async (ch: Channel) => {
        this.publishChannel = ch;
        // Sent before the confirm of the same message: read when its confirm arrives.
        ch.on('return', (msg: ConsumeMessage) => {
          const id = msg.properties.messageId as unknown;
          if (typeof id === 'string') this.returned.add(id);
        });
        await declare(ch, o.queue);
      },
    });
    this.publisher.on('error', (err: Error) => {
      if (/PRECONDITION_FAILED/.test(err.message)) {
        // The broker names the queue it refused: the intake queue, or its rejected-webhooks queue.
        const named = /for queue '([^']+)'/.exec(err.message)?.[1] ?? o.queue;
        const advice =
          named === rejectedQueue(o.queue)
            ? `the intake queue's queue of unreadable webhooks (a quorum queue): look at what it holds, then delete it`
            : 'its intake queue (a quorum queue with a single active consumer, since 2026-12-01): let the workers empty it and delete it';
        this.fatal = new ConfigError(
          'BATON_AMQP_QUEUE',
          `"${named}" exists in RabbitMQ with other arguments than Baton declares for ${advice}; or choose another name (${err.message})`,
        );
        return; // said once, as the start-up error
      }
      o.logger.error({ err: err.message, queue: o.queue }, 'RabbitMQ intake queue cannot be declared');
    });
  }

  /** Waits for the first connection; a broker not there within `timeoutMs` is a start-up error. */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = this.now() + timeoutMs;
    const connected = this.publisher.waitForConnect().then(() => true);
    for (;;) {
      if (this.fatal) throw this.fatal;
      const done = await Promise.race([connected, this.sleep(100).then(() => false)]);
      if (done) return;
      if (this.now() >= deadline) {
        throw new ConfigError(
          'AMQP_URL',
          `cannot reach RabbitMQ at ${amqpAddress(this.o.url)}${this.lastError ? ` (${this.lastError})` : ''}`,
        );
      }
    }
  }

  /** Whether webhooks can be queued now (`/readyz`). */
  get connected(): boolean {
    return this.manager.isConnected();
  }

  /**
   * Queues one webhook; resolves once RabbitMQ has it on disk.
   * @throws StorageUnavailableError when RabbitMQ is away, does not confirm, or has no queue.
   */
  async publish(w: QueuedWebhook): Promise<void> {
    await this.send(this.o.queue, w.body, {
      [HEADER_PROVIDER]: w.provider,
      [HEADER_RECEIVED_AT]: w.receivedAt,
      ...(w.readLateMs ? { [HEADER_READ_LATE]: w.readLateMs } : {}),
    });
  }

  /** Publishes `body` to `queue` and waits for the confirm, refusing a returned (unroutable) one. */
  private async send(queue: string, body: Buffer, headers: Record<string, unknown>): Promise<void> {
    // While disconnected the channel would hold the body in memory until it reconnects: answer
    // 503 now instead, so the gateway keeps it and retries.
    if (!this.manager.isConnected()) {
      throw new StorageUnavailableError('RabbitMQ is unreachable: webhook not queued');
    }
    const messageId = randomUUID();
    try {
      await this.publisher.sendToQueue(queue, body, {
        persistent: true,
        mandatory: true,
        messageId,
        contentType: 'application/json',
        headers,
      });
    } catch (err) {
      throw new StorageUnavailableError(
        `RabbitMQ did not confirm the webhook: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
    }
    if (this.returned.delete(messageId)) {
      this.o.logger.error({ queue }, 'RabbitMQ has no intake queue (deleted?): declaring it again');
      const ch = this.publishChannel;
      if (ch) await declare(ch, this.o.queue).catch(() => undefined);
      // This process's consumer may still hang on the deleted queue (its cancel can lose the race
      // with the declare): it subscribes again.
      this.resubscribe();
      throw new StorageUnavailableError(`RabbitMQ has no queue "${queue}": webhook not queued`);
    }
  }

  /**
   * How many webhooks wait in the queue (not yet taken by a consumer): while RabbitMQ cannot be
   * asked, the last count it gave (null before any). Leaving the backlog out instead made
   * `queue_depth` drop to 0 when the link was cut, and the queue alert resolve falsely (outside
   * test QA44-F2).
   */
  async waiting(): Promise<number | null> {
    const ch = this.publishChannel;
    if (!ch || !this.manager.isConnected()) return this.lastWaiting;
    // Declaring it as it is answers its count (and brings back a queue deleted by hand).
    const asked = ch
      .assertQueue(this.o.queue, { durable: true, arguments: queueArguments(this.o.queue) })
      .then(({ messageCount }) => (this.lastWaiting = messageCount));
    // A link that went silent answers nothing until its heartbeat gives up (10-12 s, while the
    // stats waited with it: outside test QA127-F3): the last count stands after a second.
    return within(WAITING_ANSWER_MS, asked, this.lastWaiting).catch(() => this.lastWaiting);
  }

  /** Starts consuming. */
  consume(handler: IntakeHandler, o: ConsumeOptions): void {
    if (this.consumer) return;
    this.consuming = { handler, o };
    this.consumer = this.manager.createChannel({
      name: 'baton-intake-consume',
      confirm: false,
      setup: async (ch: Channel) => {
        this.consumeChannel = ch;
        this.consumerTag = null;
        await declare(ch, this.o.queue);
        await ch.prefetch(o.prefetch ?? 64);
        if (!this.paused) await this.startConsuming(ch);
      },
    });
    this.consumer.on('error', (err: Error) =>
      this.o.logger.error({ err: err.message, queue: this.o.queue }, 'RabbitMQ intake consumer cannot start'),
    );
  }

  private async startConsuming(ch: Channel): Promise<void> {
    const { consumerTag } = await ch.consume(this.o.queue, (msg) => {
      if (msg === null) {
        // The broker cancelled us: the queue was deleted. Declare it again and go on.
        this.o.logger.error({ queue: this.o.queue }, 'RabbitMQ intake queue deleted: declaring it again');
        this.resubscribe();
        return;
      }
      const p = this.deliver(ch, msg).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    });
    this.consumerTag = consumerTag;
  }

  /** Consumes afresh (after its queue was deleted): declare, cancel the old subscription, consume. */
  private resubscribe(): void {
    const ch = this.consumeChannel;
    if (!ch || !this.consuming) return;
    const tag = this.consumerTag;
    this.consumerTag = null;
    this.later(tag === null ? RETRY_MS : 0, async () => {
      if (this.consumeChannel !== ch) return; // a new channel subscribed in its setup
      if (tag !== null) await ch.cancel(tag).catch(() => undefined);
      await declare(ch, this.o.queue);
      if (!this.paused && this.consumerTag === null) await this.startConsuming(ch);
    });
  }

  private async deliver(ch: Channel, msg: ConsumeMessage): Promise<void> {
    this.held.set(msg, ch);
    try {
      await this.handle(ch, msg);
    } finally {
      this.held.delete(msg);
    }
  }

  /** Settles `msg` with `op` unless a pause handed it back already (settling it twice closes the channel). */
  private settleHeld(msg: ConsumeMessage, op: () => void): void {
    if (!this.held.delete(msg)) return;
    settle(op);
  }

  private async handle(ch: Channel, msg: ConsumeMessage): Promise<void> {
    const { handler } = this.consuming!;
    const webhook = decode(msg, this.now());
    let outcome: 'stored' | 'unreadable' = 'unreadable';
    if (webhook !== null) {
      try {
        outcome = await handler(webhook);
      } catch (err) {
        // The store refused it: back to the queue now, for a healthy consumer, and this one
        // stops taking webhooks until its store answers again.
        this.o.count?.('retry');
        this.settleHeld(msg, () => ch.nack(msg, false, true));
        this.pause(ch, err);
        return;
      }
    }
    if (outcome === 'stored') {
      this.o.count?.('stored');
      this.settleHeld(msg, () => ch.ack(msg));
      return;
    }
    try {
      await this.send(rejectedQueue(this.o.queue), msg.content, {
        ...((msg.properties.headers ?? {}) as Record<string, unknown>),
        'x-baton-rejected-at': this.now(),
      });
    } catch (err) {
      // Not moved: it stays in the intake queue, tried again shortly.
      this.o.logger.error({ err: (err as Error).message }, 'unreadable queued webhook could not be moved');
      await this.sleep(RETRY_MS);
      this.settleHeld(msg, () => ch.nack(msg, false, true));
      return;
    }
    this.o.count?.('rejected');
    this.o.logger.error(
      { queue: rejectedQueue(this.o.queue) },
      'queued webhook cannot be read; moved to the rejected queue',
    );
    this.settleHeld(msg, () => ch.ack(msg));
  }

  /** Stops consuming until `o.healthy()` says the store is back. */
  private pause(ch: Channel, err: unknown): void {
    const { o } = this.consuming!;
    if (this.paused) return;
    this.paused = true;
    this.o.logger.error(
      { err: err instanceof Error ? err.message : String(err) },
      'queued webhook could not be stored: it goes back to the queue, and this process takes no more until its store answers',
    );
    const tag = this.consumerTag;
    this.consumerTag = null;
    if (tag !== null) void ch.cancel(tag).catch(() => undefined);
    // The other webhooks in hand go back too, at once: one whose store hangs (a frozen link) was
    // stored 20 s later, after the consumer that took over had stored what came after it, and was
    // recorded late (outside test QA46-F1). Should its store still land, the redelivery is a
    // duplicate.
    for (const [held, on] of [...this.held]) this.settleHeld(held, () => on.nack(held, false, true));
    const probe = async (): Promise<void> => {
      if (this.closing) return;
      if (!(await o.healthy().catch(() => false))) return this.later(RETRY_MS, probe);
      this.paused = false;
      this.o.logger.info('store answers again: taking queued webhooks');
      const current = this.consumeChannel;
      if (current && this.consumerTag === null) await this.startConsuming(current);
    };
    this.later(RETRY_MS, probe);
  }

  /** Stops consuming, lets the webhooks in hand finish, closes the connection. */
  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.consumer) {
      const ch = this.consumeChannel;
      const tag = this.consumerTag;
      if (ch && tag !== null) await ch.cancel(tag).catch(() => undefined);
      if (this.inFlight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...this.inFlight]),
          new Promise((r) => (timer = setTimeout(r, STOP_WAIT_MS))),
        ]);
        clearTimeout(timer);
      }
      await closedWithin(STOP_WAIT_MS, this.consumer.close());
    }
    // A frozen link never answers a close: each waits a bounded time (it hung the process's stop).
    await closedWithin(STOP_WAIT_MS, this.publisher.close());
    await closedWithin(STOP_WAIT_MS, this.manager.close());
  }

  /** Runs `fn` after `ms` unless closing; errors are logged. */
  private later(ms: number, fn: () => Promise<void>): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.closing) return;
      fn().catch((err: unknown) =>
        this.o.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'RabbitMQ intake'),
      );
    }, ms);
    this.timers.add(t);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }
}

/** The intake queue's arguments. */
function queueArguments(queue: string): Record<string, string | boolean> {
  return {
    'x-queue-type': 'quorum',
    // One consumer at a time takes webhooks, in queue order; the others stand by and take over
    // when it goes. With several consumers sharing deliveries, one that stalled (paused, its
    // store link frozen) held a user's first webhooks while another stored their later ones:
    // an outside test saw them applied out of order, the first recorded `late`.
    'x-single-active-consumer': true,
    // A safety net only (Baton moves unreadable bodies itself): where a broker's delivery limit
    // (RabbitMQ 4 sets one on quorum queues) would otherwise drop a webhook.
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': rejectedQueue(queue),
  };
}

/**
 * The webhook a delivery carries, or null when it is not one an ingress queued. An arrival time
 * in the future or more than a day back (a skewed clock, a hand-made message) is not believed:
 * the delivery time stands in for it.
 */
function decode(msg: ConsumeMessage, now: number): QueuedWebhook | null {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const provider = headers[HEADER_PROVIDER];
  const at = Number(headers[HEADER_RECEIVED_AT]);
  if (typeof provider !== 'string' || !PROVIDERS.includes(provider as ProviderName)) return null;
  if (!Number.isFinite(at) || at <= 0) return null;
  const receivedAt = at > now || at < now - MAX_QUEUED_MS ? now : at;
  const late = Number(headers[HEADER_READ_LATE]);
  const readLateMs = Number.isFinite(late) && late > 0 ? Math.min(late, MAX_QUEUED_MS) : 0;
  return { provider: provider as ProviderName, body: msg.content, receivedAt, readLateMs };
}

/** An ack or nack on a channel that has closed meanwhile: the broker delivers the webhook again. */
function settle(op: () => void): void {
  try {
    op();
  } catch {
    // IllegalOperationError: channel closed. Redelivered, and stored at most once (dedupe).
  }
}

/** Waits for `p` (its failure ignored), at most `ms`. */
async function closedWithin(ms: number, p: Promise<unknown>): Promise<void> {
  await within(
    ms,
    p.catch(() => undefined),
    undefined,
  );
}
