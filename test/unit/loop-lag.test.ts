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
});
