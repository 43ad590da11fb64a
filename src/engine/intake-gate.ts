/**
 * Webhooks received and not yet stored. A burst's messages arrive within milliseconds, but on a
 * busy machine storing them can take longer than the buffer window; the engine asks its
 * {@link IntakeGate} before it closes a batch, so a burst still being stored is not split.
 *
 * Two sides, two interfaces: the ingress tells an {@link IntakeTracker} when each webhook's
 * headers arrive and when it is stored (or refused); the engine waits on an {@link IntakeGate}.
 * In one process (`baton start` on the embedded store) {@link LocalIntakeGate} is both. Across
 * processes the distributed backend provides both sides through Redis: each ingress publishes a
 * low watermark, the workers read it (`backends/distributed/intake-watermark.ts`).
 * @module
 */
import type { SessionKey } from '../model/message.ts';

/** The ingress's side: each webhook from the moment its headers arrive until it is stored. */
export interface IntakeTracker {
  /** A webhook request arrived at `receivedAt`; returns the token to `end` it with. */
  begin(receivedAt?: number): number;
  /** Its body arrived and its signature checks out: it now holds batches back until stored. */
  verified(token: number): void;
  /** The request is stored, refused or gone. */
  end(token: number): void;
}

/**
 * How long a request whose body has not arrived (or not checked out) yet holds batches back. A
 * webhook's body follows its headers within milliseconds, or a few hundred on a slow link; a
 * client that trickles bodies in without a valid signature must not hold every batch back.
 */
export const UNVERIFIED_HOLD_MS = 500;

/**
 * The requests in flight, by arrival time: counted from their headers; one not yet verified
 * holds batches back for {@link UNVERIFIED_HOLD_MS} at most, a verified one until stored (or
 * `staleAfterMs`).
 */
export class InFlightWebhooks {
  private readonly unverified = new Map<number, number>();
  private readonly checked = new Map<number, number>();
  private nextToken = 0;

  begin(receivedAt: number): number {
    this.nextToken += 1;
    this.unverified.set(this.nextToken, receivedAt);
    return this.nextToken;
  }

  verified(token: number): void {
    const at = this.unverified.get(token);
    if (at === undefined) return;
    this.unverified.delete(token);
    this.checked.set(token, at);
  }

  /** False when `token` was not in flight. */
  end(token: number): boolean {
    return this.unverified.delete(token) || this.checked.delete(token);
  }

  get size(): number {
    return this.unverified.size + this.checked.size;
  }

  /** The earliest arrival that still holds batches back at `now` (`Infinity`: none). */
  oldest(now: number, staleAfterMs: number): number {
    let w = Number.POSITIVE_INFINITY;
    const since = now - staleAfterMs;
    for (const at of this.checked.values()) if (at >= since && at < w) w = at;
    const unverifiedSince = now - Math.min(staleAfterMs, UNVERIFIED_HOLD_MS);
    for (const at of this.unverified.values()) if (at >= unverifiedSince && at < w) w = at;
    return w;
  }
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
}

export interface IntakeGateOptions {
  readonly now?: () => number;
  /** In-flight requests older than this do not hold batches back (default 2 s). */
  readonly staleAfterMs?: number;
}

/**
 * Both sides in one process. Requests are counted from the moment their headers arrive; one
 * that has been in flight for longer than `staleAfterMs` (a body trickling in) no longer holds
 * anything up.
 */
export class LocalIntakeGate implements IntakeTracker, IntakeGate {
  private readonly inFlight = new InFlightWebhooks();
  private readonly waiters = new Set<() => void>();
  private readonly now: () => number;
  private readonly staleAfterMs: number;

  constructor(o: IntakeGateOptions = {}) {
    this.now = o.now ?? Date.now;
    this.staleAfterMs = o.staleAfterMs ?? 2000;
  }

  begin(receivedAt: number = this.now()): number {
    return this.inFlight.begin(receivedAt);
  }

  verified(token: number): void {
    this.inFlight.verified(token);
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

  /** Requests in flight now. */
  get size(): number {
    return this.inFlight.size;
  }
}
