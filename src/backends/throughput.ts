/**
 * Messages stored per second over the last minute (the admin's `messages_per_s`), counted where
 * webhooks are stored: by an ingress, or by a RabbitMQ intake consumer. Embedded mode has one
 * process and counts in memory ({@link StoredRate}); the distributed backend adds up every
 * process's counts in Redis (`distributed/throughput.ts`).
 * @module
 */

/** Seconds the rate is averaged over. */
export const RATE_WINDOW_SEC = 60;

/** Counts in one-second buckets over the last {@link RATE_WINDOW_SEC} seconds. */
export class StoredRate {
  private readonly buckets = new Array<number>(RATE_WINDOW_SEC).fill(0);
  private readonly seconds = new Array<number>(RATE_WINDOW_SEC).fill(0);

  add(nowMs: number, n: number): void {
    const s = Math.floor(nowMs / 1000);
    const i = s % RATE_WINDOW_SEC;
    if (this.seconds[i] !== s) {
      this.seconds[i] = s;
      this.buckets[i] = 0;
    }
    this.buckets[i]! += n;
  }

  /** The count of the last minute, per second, to two decimals. */
  perSecond(nowMs: number): number {
    const s = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < RATE_WINDOW_SEC; i++) {
      if (s - this.seconds[i]! < RATE_WINDOW_SEC) sum += this.buckets[i]!;
    }
    return perSecondOf(sum);
  }
}

/** A minute's count as a rate per second, to two decimals. */
export function perSecondOf(countInWindow: number): number {
  return Math.round((countInWindow / RATE_WINDOW_SEC) * 100) / 100;
}
