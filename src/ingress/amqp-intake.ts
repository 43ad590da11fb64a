/**
 * The optional RabbitMQ intake (`AMQP_URL`). An ingress publishes each webhook it accepts (the
 * raw body, after its signature and envelope are checked) to a durable quorum queue and answers
 * `200` once RabbitMQ confirms it; processes that run workers consume the queue and store the
 * webhooks in Baton's own store, acknowledging each one only after it is stored. So a webhook is
 * answered while Baton's store is slow or away (RabbitMQ holds it), and none is lost: a consumer
 * that dies before its acknowledgement leaves the webhook to be delivered again, and storing a
 * message twice has no second effect (its id is deduplicated, SPEC 1.2).
 *
 * A body the consumer cannot read (not from an ingress of this version, say) is rejected to the
 * `<queue>.rejected` queue, where it stays for an operator; it never blocks the ones after it.
 * While Baton's store refuses writes, deliveries are returned to the queue after a growing pause.
 * @module
 */
import { connect, type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { ConfigError, StorageUnavailableError } from '../errors.ts';
import type { ProviderName } from '../model/message.ts';

/** A webhook as the ingress queues it: the gateway's raw body and when it reached Baton. */
export interface QueuedWebhook {
  readonly provider: ProviderName;
  readonly body: Buffer;
  /** Epoch milliseconds when its request arrived: the buffer window counts from it. */
  readonly receivedAt: number;
}

/**
 * What the consumer makes of one webhook: `stored` (acknowledge it), `unreadable` (reject it to
 * the rejected queue). A throw means the store is unavailable: the webhook goes back to the
 * queue and is tried again.
 */
export type IntakeHandler = (webhook: QueuedWebhook) => Promise<'stored' | 'unreadable'>;

export interface AmqpIntakeOptions {
  readonly url: string;
  /** The queue's name; `<queue>.rejected` holds the bodies no consumer could read. */
  readonly queue: string;
  readonly logger: Logger;
  /** How long a publish may wait for RabbitMQ's confirm before the webhook is answered 503. */
  readonly publishTimeoutMs?: number;
}

const HEADER_PROVIDER = 'x-baton-provider';
const HEADER_RECEIVED_AT = 'x-baton-received-at';
const PROVIDERS: readonly ProviderName[] = ['cloud-api', 'wasender'];
const MAX_RETRY_PAUSE_MS = 10_000;

/** Declares the intake queue and its rejected queue (idempotent; the same on every process). */
async function declare(ch: Channel, queue: string): Promise<void> {
  const rejected = `${queue}.rejected`;
  // Quorum queues: replicated, and a confirm means the body is on disk on a majority of nodes.
  await ch.assertQueue(rejected, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.assertQueue(queue, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': rejected,
    },
  });
}

/** `amqp://user:pass@host:5672/vhost` shown as `host:5672`: never the credentials. */
export function amqpAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === 'amqps:' ? '5671' : '5672')}`;
  } catch {
    return 'an unreadable URL';
  }
}

export class AmqpIntake {
  private readonly manager: AmqpConnectionManager;
  private readonly publisher: ChannelWrapper;
  private consumer: ChannelWrapper | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private failures = 0;
  private closing = false;
  private lastError = '';

  constructor(private readonly o: AmqpIntakeOptions) {
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
    });
    this.publisher = this.manager.createChannel({
      name: 'baton-intake-publish',
      confirm: true,
      publishTimeout: o.publishTimeoutMs ?? 5000,
      setup: (ch: Channel) => declare(ch, o.queue),
    });
    this.publisher.on('error', (err: Error) =>
      o.logger.error({ err: err.message, queue: o.queue }, 'RabbitMQ intake queue cannot be declared'),
    );
  }

  /** Waits for the first connection; a broker not there within `timeoutMs` is a start-up error. */
  async ready(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ConfigError(
              'AMQP_URL',
              `cannot reach RabbitMQ at ${amqpAddress(this.o.url)}${this.lastError ? ` (${this.lastError})` : ''}`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.publisher.waitForConnect(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether webhooks can be queued now (`/readyz`). */
  get connected(): boolean {
    return this.manager.isConnected();
  }

  /**
   * Queues one webhook; resolves once RabbitMQ has it on disk.
   * @throws StorageUnavailableError when RabbitMQ is away or does not confirm.
   */
  async publish(w: QueuedWebhook): Promise<void> {
    // While disconnected the channel would hold the body in memory until it reconnects: answer
    // 503 now instead, so the gateway keeps it and retries.
    if (!this.manager.isConnected()) {
      throw new StorageUnavailableError('RabbitMQ is unreachable: webhook not queued');
    }
    try {
      await this.publisher.sendToQueue(this.o.queue, w.body, {
        persistent: true,
        contentType: 'application/json',
        timestamp: Math.floor(w.receivedAt / 1000),
        headers: { [HEADER_PROVIDER]: w.provider, [HEADER_RECEIVED_AT]: w.receivedAt },
      });
    } catch (err) {
      throw new StorageUnavailableError(
        `RabbitMQ did not confirm the webhook: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
    }
  }

  /** Starts consuming, at most `prefetch` webhooks in hand at once. */
  consume(handler: IntakeHandler, prefetch = 64): void {
    if (this.consumer) return;
    this.consumer = this.manager.createChannel({
      name: 'baton-intake-consume',
      confirm: false,
      setup: async (ch: Channel) => {
        await declare(ch, this.o.queue);
        await ch.prefetch(prefetch);
        await ch.consume(this.o.queue, (msg) => {
          if (msg === null) return; // cancelled by the broker: the setup runs again on reconnect
          const p = this.deliver(ch, msg, handler).finally(() => this.inFlight.delete(p));
          this.inFlight.add(p);
        });
      },
    });
    this.consumer.on('error', (err: Error) =>
      this.o.logger.error({ err: err.message, queue: this.o.queue }, 'RabbitMQ intake consumer cannot start'),
    );
  }

  private async deliver(ch: Channel, msg: ConsumeMessage, handler: IntakeHandler): Promise<void> {
    const webhook = decode(msg);
    let outcome: 'stored' | 'unreadable' = 'unreadable';
    if (webhook !== null) {
      try {
        outcome = await handler(webhook);
        this.failures = 0;
      } catch (err) {
        // The store refused it: back to the queue after a pause that grows while this lasts.
        this.failures += 1;
        const pause = Math.min(MAX_RETRY_PAUSE_MS, 250 * 2 ** Math.min(this.failures - 1, 6));
        this.o.logger.error(
          { err: err instanceof Error ? err.message : String(err), retryInMs: pause },
          'queued webhook could not be stored; it goes back to the queue',
        );
        await delay(this.closing ? 0 : pause);
        settle(() => ch.nack(msg, false, true));
        return;
      }
    }
    if (outcome === 'stored') {
      settle(() => ch.ack(msg));
      return;
    }
    this.o.logger.error(
      { queue: `${this.o.queue}.rejected`, messageId: msg.properties.messageId as unknown },
      'queued webhook cannot be read; moved to the rejected queue',
    );
    settle(() => ch.nack(msg, false, false));
  }

  /** Stops consuming, lets the webhooks in hand finish, closes the connection. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.consumer) {
      await Promise.race([Promise.allSettled([...this.inFlight]), delay(5000)]);
      await this.consumer.close().catch(() => undefined);
    }
    await this.publisher.close().catch(() => undefined);
    await this.manager.close().catch(() => undefined);
  }
}

/** The webhook a delivery carries, or null when it is not one an ingress queued. */
function decode(msg: ConsumeMessage): QueuedWebhook | null {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const provider = headers[HEADER_PROVIDER];
  const receivedAt = Number(headers[HEADER_RECEIVED_AT]);
  if (typeof provider !== 'string' || !PROVIDERS.includes(provider as ProviderName)) return null;
  if (!Number.isFinite(receivedAt) || receivedAt <= 0) return null;
  return { provider: provider as ProviderName, body: msg.content, receivedAt };
}

/** An ack or nack on a channel that has closed meanwhile: the broker delivers the webhook again. */
function settle(op: () => void): void {
  try {
    op();
  } catch {
    // IllegalOperationError: channel closed. Redelivered, and stored at most once (dedupe).
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
