/**
 * How late this process's event loop runs, over the last two seconds or so: the longest delay of
 * a 10 ms timer (`monitorEventLoopDelay`), the loop blocked by work or the process not scheduled
 * on a busy machine. A webhook that reaches the machine while the loop is that late is read, and
 * stamped as received, up to that much later than it came: the engine stretches a batch's buffer
 * window by it (see Engine.runBatch), so a burst that the machine's load spread out stays one batch.
 *
 * {@link LoopLag.readLateMs} tells, for the webhook being read, how much earlier it may have come
 * (its heartbeat overdue now, or the delay of the last two seconds): each message keeps it
 * (`StoredMessage.readLateMs`), so a batch that runs after the two seconds are over still knows
 * (outside test QA137-F1, F3).
 * @module
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** How often the window of measurements moves on, ms; the last {@link KEPT} periods count. */
const PERIOD_MS = 500;
const KEPT = 4;
/** The heartbeat's period, ms: {@link LoopLag.overdueMs} is how long ago it was due and did not run. */
const HEARTBEAT_MS = 20;

export class LoopLag {
  private histogram: IntervalHistogram | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The longest delay of each recent period, ms, newest last. */
  private readonly maxima: number[] = [];
  /** The longest delay of this period seen otherwise (a late timer, {@link note}), ms. */
  private noted = 0;
  /** When the period began (`performance.now()`). */
  private periodStart = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  /** When the heartbeat last ran (`performance.now()`). */
  private beat = 0;

  start(): void {
    if (this.histogram) return;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    this.periodStart = performance.now();
    this.timer = setInterval(() => this.roll(), PERIOD_MS);
    this.timer.unref();
    this.beat = this.periodStart;
    this.heartbeat = setInterval(() => {
      const now = performance.now();
      this.note(now - this.beat - HEARTBEAT_MS);
      this.beat = now;
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /**
   * How late the event loop runs right now, ms: how long ago its heartbeat was due and has not
   * run (0 when not started). A process stopped in its wait for I/O reads the sockets that have
   * data before it runs any timer when it runs again: the histogram has not seen the stop yet.
   */
  overdueMs(): number {
    if (this.heartbeat === null) return 0;
    return Math.max(0, Math.round(performance.now() - this.beat - HEARTBEAT_MS));
  }

  /**
   * How much earlier than now a webhook read now may have reached this process, ms: how late
   * its loop is right now, or ran in the last two seconds or so. A process that was not
   * scheduled, or whose loop was blocked, reads what came meanwhile over its next few turns
   * (a new connection's request only in the turn after the one that accepts it, after the
   * timers have run on time again).
   */
  readLateMs(): number {
    return Math.max(this.overdueMs(), Math.round(this.recentMs()));
  }

  /** A delay seen otherwise (a timer that ran that late), ms: counted as the histogram's. */
  note(ms: number): void {
    if (this.histogram && ms > this.noted) this.noted = ms;
  }

  stop(): void {
    this.histogram?.disable();
    this.histogram = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.maxima.length = 0;
    this.noted = 0;
  }

  /** The longest delay seen in the last two seconds or so, ms (0 when not started). */
  recentMs(): number {
    const h = this.histogram;
    if (!h) return 0;
    // The histogram counts the delay beyond its 10 ms resolution; an empty one reports a huge min.
    const current = h.count > 0 ? h.max / 1e6 : 0;
    return Math.max(current, this.noted, ...this.maxima);
  }

  private roll(): void {
    const h = this.histogram;
    if (!h) return;
    // This timer's own lateness counts too: a process that was not scheduled runs it and the
    // histogram's timer in either order when it runs again, and a reset before the histogram's
    // timer loses the delay it was about to record (outside test QA95-F1: a 500 ms stop unseen).
    const now = performance.now();
    const late = Math.max(0, now - this.periodStart - PERIOD_MS);
    this.periodStart = now;
    this.maxima.push(Math.max(h.count > 0 ? h.max / 1e6 : 0, this.noted, late));
    if (this.maxima.length > KEPT) this.maxima.shift();
    this.noted = 0;
    h.reset();
  }
}
