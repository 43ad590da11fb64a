/**
 * A Redis connection that went silent is dropped, so that ioredis connects again.
 *
 * When the network path to Redis vanishes without a reset (a host gone, a NAT or load balancer
 * that forgot the connection, a firewall that drops instead of refusing), the socket stays open:
 * every command times out (`commandTimeout`), the client stays "ready", and Linux gives up on
 * the connection only after its retransmission limit, about 15 minutes. Intake answered 503
 * all that time while a new connection would have worked at once (outside test QA1-1).
 *
 * The watch: every `silentMs`, a connection that has had a command waiting at two checks in a
 * row without a byte from Redis in between is dead (replies come in order, so the command at
 * the head of the queue at the first check has waited at least `silentMs` for its answer). Its
 * socket is destroyed: ioredis fails the commands in flight (fail-fast clients have no retries,
 * and nothing is sent again on the new connection) and reconnects with its retry strategy.
 * The check looks after one poll phase, so that a reply already in the socket after this
 * process stalled (a busy machine, a pause) is read first and counts as heard.
 * Watched: the command client (a reply is due within its timeout) and the journal flusher's
 * blocking reader (its reads block for less than `silentMs`); not the subscriber, which waits
 * for messages with no command in flight.
 * @module
 */
import type { Socket } from 'node:net';
import type { Redis } from 'ioredis';

export interface SilenceWatch {
  /** A command waiting this long with nothing heard from Redis means the connection is dead, ms. */
  readonly silentMs: number;
  /** Called when a connection is dropped, before it is. */
  readonly onDead?: (address: string, silentMs: number) => void;
}

/** Watches `node`'s connections, this one and every reconnected one, until the client ends. */
export function dropWhenSilent(node: Redis, watch: SilenceWatch): void {
  let heard = 0;
  /** What was heard, and whether a command waited, at the last check. */
  let last: { heard: number; waiting: boolean } = { heard: 0, waiting: false };
  const onData = (): void => {
    heard += 1;
  };
  node.on('connect', () => {
    last = { heard, waiting: false };
    (node.stream as Socket | undefined)?.on('data', onData);
  });
  let looking = false;
  const look = (): void => {
    looking = false;
    const waiting = node.status === 'ready' && node.commandQueue.length > 0;
    const dead = waiting && last.waiting && heard === last.heard;
    // A dropped connection starts afresh: its next wait is counted from the next check.
    last = { heard, waiting: waiting && !dead };
    if (!dead) return;
    watch.onDead?.(`${node.options.host ?? '?'}:${node.options.port ?? '?'}`, watch.silentMs);
    (node.stream as Socket | undefined)?.destroy();
  };
  const timer = setInterval(() => {
    if (looking) return;
    looking = true;
    setImmediate(look);
  }, watch.silentMs);
  timer.unref();
  node.once('end', () => clearInterval(timer));
}
