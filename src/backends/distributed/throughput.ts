/**
 * Messages stored per second across every process (`messages_per_s`). Each process counts what
 * it stores in memory and adds its counts to Redis once a second (`INCRBY` on one key per
 * second, expiring after two minutes): no command per webhook. A reader sums the last minute's
 * keys (one `MGET`; the keys share the stats' hash tag, one slot on a Redis Cluster) and its own
 * counts not yet added.
 * @module
 */
import { perSecondOf, RATE_WINDOW_SEC } from '../throughput.ts';
import type { BackendLogger } from './options.ts';
import type { RedisClient } from './redis-client.ts';

const FLUSH_MS = 1000;
const KEEP_SEC = 2 * RATE_WINDOW_SEC;

export class SharedRate {
  /** Counts not yet in Redis, by second. */
  private readonly unsent = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private failing = false;

  constructor(
    private readonly redis: RedisClient,
    /** The key of one second's count: `<prefix>:stats:{<prefix>}:rate:<second>`. */
    private readonly keyOf: (second: number) => string,
    private readonly now: () => number,
    private readonly logger: BackendLogger,
  ) {}

  add(n: number): void {
    if (n <= 0) return;
    const s = Math.floor(this.now() / 1000);
    this.unsent.set(s, (this.unsent.get(s) ?? 0) + n);
    if (this.timer === null) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Adds this process's counts to Redis. A failure keeps them for the next try. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.unsent.size === 0) return;
    const counts = [...this.unsent];
    this.unsent.clear();
    const m = this.redis.multi();
    for (const [s, n] of counts) m.incrby(this.keyOf(s), n).expire(this.keyOf(s), KEEP_SEC);
    try {
      await m.exec();
      this.failing = false;
    } catch (err) {
      for (const [s, n] of counts) this.unsent.set(s, (this.unsent.get(s) ?? 0) + n);
      // Once per outage: Redis being away is reported louder elsewhere.
      if (!this.failing)
        this.logger.warn({ err }, 'throughput counts not added to Redis; kept for the next try');
      this.failing = true;
      if (this.timer === null) {
        this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
        this.timer.unref();
      }
    }
  }

  /** The last minute's count across every process, per second. */
  async perSecond(): Promise<number> {
    const s = Math.floor(this.now() / 1000);
    const keys = Array.from({ length: RATE_WINDOW_SEC }, (_, i) => this.keyOf(s - i));
    const values = await this.redis.mget(...keys);
    let sum = values.reduce((acc, v) => acc + (v === null ? 0 : Number(v) || 0), 0);
    for (const [sec, n] of this.unsent) if (s - sec < RATE_WINDOW_SEC) sum += n;
    return perSecondOf(sum);
  }

  close(): Promise<void> {
    return this.flush();
  }
}
