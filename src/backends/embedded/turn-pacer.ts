/**
 * Intake first, in one event loop. Webhooks and the engine share the embedded process's only
 * thread, and a webhook is answered once its group commit is durable: whatever the loop runs
 * before the socket is read delays the answer. Left alone the engine starts every due session
 * at once (32 at the default concurrency), so at a backlog one event-loop turn ran 32 turns of
 * flow code, SQL and sends before the sockets were read again.
 *
 * The pacer hands out the engine's claims on new sessions in small doses: at most `claims`
 * claims and `budgetMs` milliseconds per dose, and the next dose only from a `setImmediate`
 * callback, which Node runs in the check phase: after the webhooks read in this turn's poll
 * phase were handled and their group commit (queued earlier with `setImmediate` too) flushed,
 * and, for a dose that started in the check phase, after the next poll. A webhook thus waits
 * behind one dose of engine work at most, whatever the backlog; the backlog waits in SQLite.
 * Sessions already claimed run on unpaced (their sends, their next batch).
 * @module
 */
import { performance } from 'node:perf_hooks';

export interface TurnPacerOptions {
  /** Claims per dose (default 4). */
  readonly claims?: number;
  /** A dose also ends once this long has passed since it began, milliseconds (default 4). */
  readonly budgetMs?: number;
  /** Monotonic clock, milliseconds. */
  readonly clock?: () => number;
}

export class TurnPacer {
  private readonly claims: number;
  private readonly budgetMs: number;
  private readonly clock: () => number;
  /** When the current dose began, or null when none is open. */
  private doseStart: number | null = null;
  private granted = 0;
  private readonly waiting: Array<() => void> = [];
  /** Doses ended so far (tests read it). */
  doses = 0;

  constructor(o: TurnPacerOptions = {}) {
    this.claims = Math.max(1, o.claims ?? 4);
    this.budgetMs = o.budgetMs ?? 4;
    this.clock = o.clock ?? (() => performance.now());
  }

  /** Claims waiting for the next dose. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Resolves when the engine may start one more session: at once while the current dose lasts,
   * else in the next dose. Resolves at once too when `signal` aborts.
   */
  slot(signal?: AbortSignal): Promise<void> {
    if (this.waiting.length === 0 && this.grant()) return Promise.resolve();
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(done);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(done);
    });
  }

  /** Counts one claim against the current dose, opening one if none is; false when it is spent. */
  private grant(): boolean {
    if (this.doseStart === null) {
      this.doseStart = this.clock();
      this.granted = 0;
      setImmediate(this.endDose);
    } else if (this.granted >= this.claims || this.clock() - this.doseStart >= this.budgetMs) {
      return false;
    }
    this.granted += 1;
    return true;
  }

  /** The dose's check-phase callback: the next dose goes to the claims that waited. */
  private readonly endDose = (): void => {
    this.doseStart = null;
    this.doses += 1;
    while (this.waiting.length > 0 && this.grant()) this.waiting.shift()!();
  };
}
