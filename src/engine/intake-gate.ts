/**
 * Webhooks received and not yet stored. A burst's messages arrive within milliseconds, but on a
 * busy machine storing them can take longer than the buffer window; the engine asks its
 * {@link IntakeGate} before it closes a batch, so a burst still being stored is not split.
 *
 * Two sides, two interfaces: the ingress tells an {@link IntakeTracker} when each webhook starts
 * to count (its headers, for an address that recently delivered a stored webhook; else its
 * complete body: see ingress/known-senders.ts) and when it is stored (or refused); the engine
 * waits on an {@link IntakeGate}.
 * In one process (`baton start` on the embedded store) {@link LocalIntakeGate} is both. Across
 * processes the distributed backend provides both sides through Redis: each ingress publishes a
 * low watermark, the workers read it (`backends/distributed/intake-watermark.ts`).
 * @module
 */
import type { SessionKey } from '../model/message.ts';
import { LoopLag } from './loop-lag.ts';

/** The ingress's side: each webhook from the moment it counts until it is stored. */
export interface IntakeTracker {
  /**
   * A webhook request whose headers arrived at `receivedAt` counts; returns the token to `end` it
   * with. `queued`: a webhook a queue consumer took from RabbitMQ, which an ingress received at
   * `receivedAt`, however long ago (a backlog): it never goes stale, unlike a request whose body
   * trickles in. `readLateMs`: it may have reached the process that much earlier (see
   * {@link readLateMs}); it holds batches back from then.
   */
  begin(receivedAt?: number, queued?: boolean, readLateMs?: number): number;
  /** The request is stored, refused or gone. */
  end(token: number): void;
  /**
   * How late this process's event loop is now or ran lately, ms: a webhook read now may have
   * reached the process that much earlier (a stopped or starved process reads its sockets late,
   * over several turns after it runs again: LoopLag.readLateMs). Its
   * messages keep it (`StoredMessage.readLateMs`): the engine counts them as arrived that much
   * earlier when it closes a window, however late the batch runs.
   */
  readLateMs(): number;
}

/** The engine's side. */
export interface IntakeGate {
  /**
   * Resolves once every webhook received at or before `t` (and not stale) is stored, or after
   * `maxWaitMs`, or when `signal` aborts. `true` when the caller must read the session's mailbox
   * again: it had to wait, or it cannot tell that what the caller read was read after those
   * webhooks were stored. `session`: the session whose mailbox the caller has just read.
   */
  drained(t: number, maxWaitMs: number, signal?: AbortSignal, session?: SessionKey): Promise<boolean>;
  /**
   * How late, ms, the event loops of the processes that store webhooks for this gate ran lately,
   * as last known, beside the caller's own: a webhook is stamped as received up to that much
   * after it reached its process, so a batch's window stretches by it.
   */
  lagMs(): number;
  /**
   * How many webhooks this process has begun to read, when it reads them itself (one process):
   * after a stall the engine waits for turns in which none begins.
   */
  begun?(): number;
}

export interface IntakeGateOptions {
  readonly now?: () => number;
  /** In-flight requests older than this do not hold batches back (default 2 s). */
  readonly staleAfterMs?: number;
  /** How late the event loop is now or ran lately, ms (default: measured, see loop-lag.ts). For tests. */
  readonly readLateMs?: () => number;
}

/**
 * The webhooks a process is storing, by token, each with its arrival and whether a queue
 * consumer took it (never stale): the bookkeeping both trackers share.
 */
export class InFlightWebhooks {
  private readonly arrivals = new Map<
    number,
    { readonly at: number; readonly since: number; readonly queued: boolean }
  >();
  private nextToken = 0;

  /** `at`: when it was read; `lateMs`: it may have reached the process that much earlier. */
  begin(at: number, queued: boolean, lateMs = 0): number {
    this.nextToken += 1;
    this.arrivals.set(this.nextToken, { at, since: at - Math.max(0, lateMs), queued });
    return this.nextToken;
  }

  /** Whether `token` was still in flight. */
  end(token: number): boolean {
    return this.arrivals.delete(token);
  }

  get size(): number {
    return this.arrivals.size;
  }

  /**
   * The earliest arrival that still holds batches back at `now` (Infinity when none), each counted
   * from when it may have reached the process: a request read longer than `staleAfterMs` ago (a
   * body trickling in) no longer does; a queued one does.
   */
  oldest(now: number, staleAfterMs: number): number {
    const fresh = now - staleAfterMs;
    let oldest = Number.POSITIVE_INFINITY;
    for (const { at, since, queued } of this.arrivals.values()) {
      if ((queued || at >= fresh) && since < oldest) oldest = since;
    }
    return oldest;
  }
}

/**
 * Both sides in one process. Requests are counted by the time their headers arrived; one
 * received longer than `staleAfterMs` ago (a body trickling in) no longer holds anything up.
 */
export class LocalIntakeGate implements IntakeTracker, IntakeGate {
  private readonly inFlight = new InFlightWebhooks();
  private readonly waiters = new Set<() => void>();
  private readonly now: () => number;
  private readonly staleAfterMs: number;
  private readonly lateMs: (() => number) | undefined;
  private loopLag: LoopLag | null = null;
  private begins = 0;

  constructor(o: IntakeGateOptions = {}) {
    this.now = o.now ?? Date.now;
    this.staleAfterMs = o.staleAfterMs ?? 2000;
    this.lateMs = o.readLateMs;
  }

  begin(receivedAt: number = this.now(), queued = false, readLateMs = 0): number {
    this.begins += 1;
    return this.inFlight.begin(receivedAt, queued, readLateMs);
  }

  begun(): number {
    return this.begins;
  }

  readLateMs(): number {
    if (this.lateMs) return this.lateMs();
    // Measured from the first webhook on (a process that receives none needs no heartbeat).
    if (this.loopLag === null) {
      this.loopLag = new LoopLag();
      this.loopLag.start();
    }
    return this.loopLag.readLateMs();
  }

  /** Stops measuring the loop (its timers are unref'd: a process may also just exit). */
  close(): void {
    this.loopLag?.stop();
    this.loopLag = null;
  }

  end(token: number): void {
    if (!this.inFlight.end(token)) return;
    for (const wake of this.waiters) wake();
  }

  /** Whether a request received at or before `t` (and not stale) is still being stored. */
  holds(t: number): boolean {
    return this.inFlight.oldest(this.now(), this.staleAfterMs) <= t;
  }

  async drained(t: number, maxWaitMs: number, signal?: AbortSignal): Promise<boolean> {
    if (!this.holds(t)) return false;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const check = (): void => {
        if (!this.holds(t)) done();
      };
      const timer = setTimeout(done, maxWaitMs);
      this.waiters.add(check);
      signal?.addEventListener('abort', done, { once: true });
    });
    return true;
  }

  /** The ingress is this process: its lag is the engine's own. */
  lagMs(): number {
    return 0;
  }

  /** Requests in flight now. */
  get size(): number {
    return this.inFlight.size;
  }
}

/** How long a queue consumer with nothing in hand still holds its last position (see {@link QueuePosition}). */
export const QUEUE_GRACE_MS = 50;

/**
 * A RabbitMQ consumer's place in its queue, told to an {@link IntakeTracker}: a burst whose
 * first message the consumer stored while the rest still waited in the queue behind a backlog
 * was split (its window, counted from the ingress's arrival, had closed long before; outside
 * test QA44-F1). The queue is first in, first out, so what it still holds came after what the
 * consumer took: each delivery in hand counts from its ingress arrival, never stale, and when
 * none is in hand the arrival of the one taken last still counts for {@link QUEUE_GRACE_MS} (the
 * broker's next delivery may be on its way: with a backlog, one follows each acknowledgement).
 */
export class QueuePosition {
  private inHand = 0;
  /** The arrival of the delivery taken last: the queue's head was there. */
  private last = Number.NEGATIVE_INFINITY;
  private parked: { token: number; timer: NodeJS.Timeout } | null = null;

  constructor(
    private readonly tracker: IntakeTracker,
    private readonly graceMs = QUEUE_GRACE_MS,
  ) {}

  /**
   * A delivery taken, which an ingress received at `receivedAt` (`readLateMs` late); call the
   * returned function once it is stored (or refused).
   */
  take(receivedAt: number, readLateMs = 0): () => void {
    // Counted before the parked position goes, so that nothing in between looks drained.
    const token = this.tracker.begin(receivedAt, true, readLateMs);
    this.unpark();
    this.inHand += 1;
    this.last = receivedAt - readLateMs;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.inHand -= 1;
      if (this.inHand === 0 && this.graceMs > 0) {
        const parked = this.tracker.begin(this.last, true);
        const timer = setTimeout(() => this.unpark(), this.graceMs);
        timer.unref();
        this.parked = { token: parked, timer };
      }
      this.tracker.end(token);
    };
  }

  /** Stops holding (closing). */
  close(): void {
    this.unpark();
  }

  private unpark(): void {
    if (this.parked === null) return;
    clearTimeout(this.parked.timer);
    this.tracker.end(this.parked.token);
    this.parked = null;
  }
}
