/**
 * Repeated log lines, limited: during an outage every request fails the same way, and one line
 * each (with a stack trace) buried what mattered (outside test QA45-F4: 1,072 error lines in 8 s
 * of a Redis restart).
 * @module
 */

/** Runs each kind of log line at most once per period; the next one says how many were skipped. */
export class LogLimiter {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly periodMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs `log` (given how many lines of this `kind` were skipped since the last) unless one ran within the period. */
  run(kind: string, log: (suppressed: number) => void): void {
    const now = this.now();
    const last = this.last.get(kind);
    if (last !== undefined && now - last.at < this.periodMs) {
      last.suppressed += 1;
      return;
    }
    this.last.set(kind, { at: now, suppressed: 0 });
    log(last?.suppressed ?? 0);
  }
}
