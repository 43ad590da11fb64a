/**
 * Replies that went out and whose record the store refused (Redis away for a few seconds, a
 * connection cut): this process keeps recording each one in the background until the store takes
 * it, and never sends one of them again meanwhile. SPEC 1.6 allows a repeated send only after a
 * crash between a send and its record; a store that blinks is not a crash, and before this the
 * next holder of the baton sent such a reply again (an outside test: 15 of 600 users prompted
 * twice after a 5 s Redis outage).
 *
 * A holder in another process cannot see this map: it waits a little for the record of a reply a
 * live worker claimed (see Outbox.recordedByLiveClaimer), which this retrying makes short.
 */
import type { Logger } from 'pino';
import type { OutboundUpdate } from '../backends/types.ts';

/** First wait before a refused record is tried again (doubling). */
const FIRST_RETRY_MS = 100;
/**
 * Longest wait between tries: a holder in another process waits {@link RECORD_GRACE_MS} for the
 * record, so the store's return is noticed well within it.
 */
const MAX_RETRY_MS = 500;
/** How long a holder elsewhere waits for a live claimer's record of a reply (see the module). */
export const RECORD_GRACE_MS = 3000;
/** How long a stopping engine keeps trying its kept records (see `stop`). */
const STOP_WITHIN_MS = 10_000;
/**
 * How long a record is tried: by then the session's next holder has waited its grace and sent the
 * reply again (the one repeat SPEC allows), or the store has been away far beyond a blink.
 */
const KEEP_MS = 10 * 60 * 1000;

interface Kept {
  readonly update: OutboundUpdate;
  readonly since: number;
  tries: number;
  timer?: NodeJS.Timeout;
  /** A record in flight (the timer's, or `settle`'s). */
  writing?: Promise<void>;
}

export interface UnrecordedSendsOptions {
  /** Writes one record (unfenced: a send that happened is a fact whoever holds the baton). */
  readonly record: (update: OutboundUpdate) => Promise<void>;
  readonly logger: Logger;
  readonly now: () => number;
}

export class UnrecordedSends {
  private readonly kept = new Map<string, Kept>();
  private stopped = false;

  constructor(private readonly o: UnrecordedSendsOptions) {}

  get size(): number {
    return this.kept.size;
  }

  /** Whether `id` was sent by this process and is not recorded yet. */
  has(id: string): boolean {
    return this.kept.has(id);
  }

  /** `update` (a send that happened) could not be recorded: keep trying in the background. */
  keep(update: OutboundUpdate, err: unknown): void {
    if (this.kept.has(update.id) || this.stopped) return;
    this.o.logger.warn(
      { err, outbound: update.id },
      'a sent reply could not be recorded; recording it in the background (it will not be sent again)',
    );
    const k: Kept = { update, since: this.o.now(), tries: 0 };
    this.kept.set(update.id, k);
    this.schedule(k);
  }

  /**
   * A turn of this process is about to send `id`: when it is one of the kept records, records it
   * now instead. True when it was kept and is now recorded (nothing to send); false when it is not
   * kept here. Throws the store's error when it still refuses: the turn stops, and the reply stays
   * unsent and kept.
   */
  async settle(id: string): Promise<boolean> {
    const k = this.kept.get(id);
    if (k === undefined) return false;
    await this.attempt(k);
    return true;
  }

  /**
   * The engine is stopping (a deploy's SIGTERM): the kept records are tried until the store takes
   * them or `withinMs` passes. A stop during a store outage used to try each once and give up at
   * once, and the next holder sent those replies again (an outside test: 22 of 400 users).
   */
  async stop(withinMs = STOP_WITHIN_MS): Promise<void> {
    this.stopped = true;
    for (const k of this.kept.values()) clearTimeout(k.timer);
    const until = this.o.now() + withinMs;
    for (let tries = 0; this.kept.size > 0; tries += 1) {
      await Promise.allSettled([...this.kept.values()].map((k) => this.attempt(k)));
      const left = until - this.o.now();
      if (this.kept.size === 0 || left <= 0) break;
      await new Promise((r) => setTimeout(r, Math.min(left, MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** tries)));
    }
    for (const k of this.kept.values()) {
      this.o.logger.error(
        { outbound: k.update.id },
        'stopping with a sent reply not recorded: the next holder may send it again',
      );
    }
    this.kept.clear();
  }

  private schedule(k: Kept): void {
    const wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** k.tries);
    k.timer = setTimeout(() => {
      k.timer = undefined;
      this.attempt(k).catch(() => {
        if (this.stopped || this.kept.get(k.update.id) !== k) return;
        if (this.o.now() - k.since < KEEP_MS) return this.schedule(k);
        this.kept.delete(k.update.id);
        this.o.logger.error(
          { outbound: k.update.id },
          'a sent reply could not be recorded for 10 minutes; given up (the next holder may send it again)',
        );
      });
    }, wait);
    k.timer.unref();
  }

  /** Tries the record once, or joins the try in flight; rejects with the store's error. */
  private attempt(k: Kept): Promise<void> {
    k.writing ??= this.o
      .record(k.update)
      .then(() => {
        if (this.kept.get(k.update.id) === k) this.kept.delete(k.update.id);
        clearTimeout(k.timer);
        this.o.logger.info({ outbound: k.update.id, tries: k.tries + 1 }, 'a sent reply recorded late');
      })
      .finally(() => {
        k.tries += 1;
        k.writing = undefined;
      });
    return k.writing;
  }
}
