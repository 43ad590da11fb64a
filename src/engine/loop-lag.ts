/**
 * How late this process's event loop runs, over the last two seconds or so: the longest delay of
 * a 10 ms timer (`monitorEventLoopDelay`), the loop blocked by work or the process not scheduled
 * on a busy machine. A webhook that reaches the machine while the loop is that late is read, and
 * stamped as received, up to that much later than it came: the engine stretches a batch's buffer
 * window by it (see Engine.runBatch), so a burst that the machine's load spread out stays one batch.
 * @module
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** How often the window of measurements moves on, ms; the last {@link KEPT} periods count. */
const PERIOD_MS = 500;
const KEPT = 4;

export class LoopLag {
  private histogram: IntervalHistogram | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The longest delay of each recent period, ms, newest last. */
  private readonly maxima: number[] = [];

  start(): void {
    if (this.histogram) return;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    this.timer = setInterval(() => this.roll(), PERIOD_MS);
    this.timer.unref();
  }

  stop(): void {
    this.histogram?.disable();
    this.histogram = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.maxima.length = 0;
  }

  /** The longest delay seen in the last two seconds or so, ms (0 when not started). */
  recentMs(): number {
    const h = this.histogram;
    if (!h) return 0;
    // The histogram counts the delay beyond its 10 ms resolution; an empty one reports a huge min.
    const current = h.count > 0 ? h.max / 1e6 : 0;
    return Math.max(current, ...this.maxima);
  }

  private roll(): void {
    const h = this.histogram;
    if (!h) return;
    this.maxima.push(h.count > 0 ? h.max / 1e6 : 0);
    if (this.maxima.length > KEPT) this.maxima.shift();
    h.reset();
  }
}
