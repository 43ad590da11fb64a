/**
 * Webhooks this process has received and not yet stored. A burst's messages arrive within
 * milliseconds, but on a busy machine storing them can take longer than the buffer window; the
 * engine asks the gate before it closes a batch, so a burst still being stored is not split.
 * Requests are counted from the moment their headers arrive; one that has been in flight for
 * longer than `staleAfterMs` (a body trickling in) no longer holds anything up.
 * @module
 */

export interface IntakeGateOptions {
  readonly now?: () => number;
  /** In-flight requests older than this do not hold batches back (default 2 s). */
  readonly staleAfterMs?: number;
}

export class IntakeGate {
  private readonly inFlight = new Map<number, number>();
  private readonly waiters = new Set<() => void>();
  private nextToken = 0;
  private readonly now: () => number;
  private readonly staleAfterMs: number;

  constructor(o: IntakeGateOptions = {}) {
    this.now = o.now ?? Date.now;
    this.staleAfterMs = o.staleAfterMs ?? 2000;
  }

  /** A webhook request arrived at `receivedAt`; returns the token to `end` it with. */
  begin(receivedAt: number = this.now()): number {
    this.nextToken += 1;
    this.inFlight.set(this.nextToken, receivedAt);
    return this.nextToken;
  }

  /** The request is stored, refused or gone. */
  end(token: number): void {
    if (!this.inFlight.delete(token)) return;
    for (const wake of this.waiters) wake();
  }

  /** Whether a request received at or before `t` (and not stale) is still being stored. */
  holds(t: number): boolean {
    const since = this.now() - this.staleAfterMs;
    for (const receivedAt of this.inFlight.values()) {
      if (receivedAt <= t && receivedAt >= since) return true;
    }
    return false;
  }

  /**
   * Resolves once no request received at or before `t` is still being stored, or after
   * `maxWaitMs`, or when `signal` aborts. `true` when it had to wait.
   */
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
