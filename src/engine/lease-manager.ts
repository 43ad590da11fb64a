/**
 * One lease manager per engine (BullMQ's lock manager is the model): a single timer renews every
 * baton this process holds, never two renewals of one lease at once, and a renewal that fails
 * with an error is tried again on the next tick for as long as the lease may still be valid.
 * When a lease is refused by the store, or cannot be renewed before it would expire, it is lost:
 * its holder's signal aborts with `LeaseLostError` (`BATON_ERR_LEASE_LOST`) and a `lost` event
 * is emitted, so the batch in hand is abandoned before it writes anything.
 * @module
 */
import { EventEmitter } from 'node:events';
import type { Backend, LeaseGrant } from '../backends/types.ts';
import { BatonError } from '../errors.ts';
import { logSessionId } from '../model/message.ts';

/** A baton that could not be kept. Carries the session and fencing token as fields. */
export class LeaseLostError extends BatonError {
  readonly session: string;
  readonly fence: number;
  constructor(lease: LeaseGrant, reason: string, cause?: unknown) {
    // Masked like every log line's session: this error is logged.
    super('BATON_ERR_LEASE_LOST', `lease on ${logSessionId(lease)} (fence ${lease.fence}) lost: ${reason}`, {
      cause,
    });
    this.name = 'LeaseLostError';
    this.session = logSessionId(lease);
    this.fence = lease.fence;
  }
}

/** A lease in hand. */
export interface HeldLease {
  /** Aborts (with `LeaseLostError`) when the lease is lost. */
  readonly signal: AbortSignal;
  /** Stops renewing it (call before releasing the lease). */
  stop(): void;
  /**
   * Whether the lease is surely still held, by this process's clock: renewed within its TTL,
   * with a margin for the act that follows (a send reaching the user). Call it right before an
   * act the store cannot fence. A process paused past the lease's expiry (SIGSTOP, a VM stall, a
   * long GC) learns it here, before its timer runs: the lease is lost then, and its signal aborts.
   */
  fresh(): boolean;
  /**
   * Asks the store now whether the lease is still held (a renewal out of turn, or the one in
   * flight): false when it is lost (then the signal has aborted too). Call it before an act the
   * store cannot fence and that another holder may be making already (an effect's attempt after an
   * agent cleared the lease): the timer learns of a clear only up to a third of the TTL later. A
   * renewal that fails with an error counts as held, as on the timer.
   */
  confirm(): Promise<boolean>;
  /** Milliseconds since the last successful grant or renewal was requested. */
  renewedAgo(): number;
  /**
   * Starts no renewal until {@link HeldLease.resume} (or `stop`), once the one in flight is over:
   * call it before a step that may release the lease in the store (a release-or-take), so that
   * no renewal reaches the store after the release and is refused, which read as a lost lease
   * (outside test QA62-F2: 43 warnings in a healthy run).
   */
  pause(): Promise<void>;
  /** Renews it again after {@link HeldLease.pause} (the lease was kept). */
  resume(): void;
}

interface Entry {
  readonly lease: LeaseGrant;
  readonly lost: AbortController;
  /** When the last successful grant or renewal was *requested* (a conservative start). */
  renewedAt: number;
  /** The renewal in flight: true when it kept the lease (or failed with an error). */
  inFlight: Promise<boolean> | null;
  /** No renewal is started (see HeldLease.pause). */
  paused: boolean;
}

export interface LeaseManagerOptions {
  readonly backend: Pick<Backend, 'renewLease'>;
  readonly ttlMs: number;
  readonly now: () => number;
  /** Called (rate-limiting is the caller's) when a renewal fails but the lease is kept. */
  readonly onRenewError?: (err: unknown, lease: LeaseGrant) => void;
}

export interface LeaseManagerEvents {
  lost: [LeaseLostError];
}

export class LeaseManager extends EventEmitter<LeaseManagerEvents> {
  private readonly held = new Map<string, Entry>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: LeaseManagerOptions) {
    super();
  }

  /** Renew a lease every third of its TTL; a failed renewal is retried every tick. */
  private get renewEveryMs(): number {
    return Math.max(30, Math.floor(this.o.ttlMs / 3));
  }

  private get tickMs(): number {
    return Math.max(10, Math.floor(this.o.ttlMs / 10));
  }

  /** Starts keeping `lease` (just granted). */
  hold(lease: LeaseGrant): HeldLease {
    const entry: Entry = {
      lease,
      lost: new AbortController(),
      renewedAt: this.o.now(),
      inFlight: null,
      paused: false,
    };
    this.held.set(lease.token, entry);
    if (this.timer === null) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    return {
      signal: entry.lost.signal,
      stop: () => this.drop(lease.token),
      fresh: () => {
        if (entry.lost.signal.aborted) return false;
        if (this.o.now() - entry.renewedAt < this.o.ttlMs - this.marginMs) return true;
        this.lose(entry, 'not renewed within its TTL (the process was paused or starved?)');
        return false;
      },
      renewedAgo: () => this.o.now() - entry.renewedAt,
      confirm: async () => {
        if (entry.lost.signal.aborted || !this.held.has(lease.token)) return false;
        const kept = await (entry.inFlight ?? this.renew(entry, this.o.now()));
        return kept && !entry.lost.signal.aborted;
      },
      pause: async () => {
        entry.paused = true;
        if (entry.inFlight !== null) await entry.inFlight;
      },
      resume: () => {
        entry.paused = false;
      },
    };
  }

  /** How much of its TTL a lease must have left for `fresh`: a tenth, at least 50 ms, at most 1 s. */
  private get marginMs(): number {
    return Math.min(1000, Math.max(50, Math.floor(this.o.ttlMs / 10)));
  }

  /** Leases currently kept. */
  get size(): number {
    return this.held.size;
  }

  /** Stops the timer (every holder should have stopped already). */
  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.held.clear();
  }

  private drop(token: string): void {
    this.held.delete(token);
    if (this.held.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private tick(): void {
    const now = this.o.now();
    for (const e of this.held.values()) {
      if (e.paused || e.inFlight !== null || now - e.renewedAt < this.renewEveryMs) continue;
      if (now - e.renewedAt >= this.o.ttlMs) {
        this.lose(e, 'not renewed within its TTL');
        continue;
      }
      void this.renew(e, now);
    }
  }

  private renew(e: Entry, requestedAt: number): Promise<boolean> {
    const renewal = this.o.backend.renewLease(e.lease, this.o.ttlMs).then(
      (ok) => {
        e.inFlight = null;
        if (ok) e.renewedAt = Math.max(e.renewedAt, requestedAt);
        else this.lose(e, 'the store refused the renewal (expired, cleared or taken over)');
        return ok;
      },
      (err: unknown) => {
        e.inFlight = null;
        // Transient (the store hiccuped): try again next tick while the lease may still hold.
        if (this.o.now() - e.renewedAt >= this.o.ttlMs) {
          this.lose(e, 'renewals failed for a whole TTL', err);
          return false;
        }
        this.o.onRenewError?.(err, e.lease);
        return true;
      },
    );
    e.inFlight = renewal;
    return renewal;
  }

  private lose(e: Entry, reason: string, cause?: unknown): void {
    if (!this.held.has(e.lease.token)) return;
    this.drop(e.lease.token);
    const err = new LeaseLostError(e.lease, reason, cause);
    e.lost.abort(err);
    this.emit('lost', err);
  }
}
