/** The event-loop delay the engine stretches buffer windows by (src/engine/loop-lag.ts), measured for real. */
import { describe, expect, it } from 'vitest';
import { LoopLag } from '../../src/engine/loop-lag.ts';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('LoopLag', () => {
  it('reports a loop blocked for 150 ms; nothing once stopped', async () => {
    const lag = new LoopLag();
    expect(lag.recentMs()).toBe(0);
    lag.start();
    await tick(50);
    const until = Date.now() + 150;
    while (Date.now() < until) {
      // the loop is blocked, as by a long batch or a process the machine does not schedule
    }
    await tick(30);
    expect(lag.recentMs()).toBeGreaterThanOrEqual(100);
    lag.stop();
    expect(lag.recentMs()).toBe(0);
  });

  // A delay noted from outside (a publishing timer that ran late) counts as the histogram's own,
  // for the periods it keeps: a process stopped for 500 ms could run the histogram's reset before
  // its timer, and the stop was never seen (outside test QA95-F1).
  it('counts a noted delay for about two seconds, then forgets it; notes nothing while stopped', async () => {
    const lag = new LoopLag();
    lag.note(500);
    expect(lag.recentMs()).toBe(0);
    lag.start();
    try {
      lag.note(420);
      expect(lag.recentMs()).toBeGreaterThanOrEqual(420);
      await tick(1100);
      expect(lag.recentMs()).toBeGreaterThanOrEqual(420);
      await tick(1700);
      expect(lag.recentMs()).toBeLessThan(420);
    } finally {
      lag.stop();
    }
  });

  // A process stopped in its wait for I/O reads its sockets before it runs any timer when it runs
  // again: the histogram has not seen the stop yet, the heartbeat being overdue says it
  // (outside test QA137-F1).
  it('says how late the loop is right now: a blocked loop, not yet back to its timers', async () => {
    const lag = new LoopLag();
    expect(lag.overdueMs()).toBe(0);
    lag.start();
    try {
      await tick(60);
      expect(lag.overdueMs()).toBeLessThan(100);
      const until = Date.now() + 300;
      while (Date.now() < until) {
        // blocked, as a process the machine does not schedule
      }
      expect(lag.overdueMs()).toBeGreaterThanOrEqual(250);
      await tick(60);
      expect(lag.overdueMs()).toBeLessThan(250);
    } finally {
      lag.stop();
    }
    expect(lag.overdueMs()).toBe(0);
  });
});
