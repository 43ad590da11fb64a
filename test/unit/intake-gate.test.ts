/**
 * The intake gate of one process (src/engine/intake-gate.ts): a batch waits for the webhooks of
 * its window still being stored, each counted from when it may have reached the process.
 */
import { describe, expect, it } from 'vitest';
import { LocalIntakeGate } from '../../src/engine/intake-gate.ts';

describe('LocalIntakeGate', () => {
  it('holds a window back for a webhook being stored, counted from when it was read', async () => {
    let t = 10_000;
    const gate = new LocalIntakeGate({ now: () => t, readLateMs: () => 0 });
    const token = gate.begin(10_000);
    expect(gate.holds(9_999)).toBe(false);
    expect(gate.holds(10_000)).toBe(true);
    const drained = gate.drained(10_000, 5_000);
    gate.end(token);
    expect(await drained).toBe(true);
    expect(gate.holds(10_000)).toBe(false);
    t += 1;
    expect(gate.holds(10_000)).toBe(false);
  });

  // Outside test QA137-F1: the process was stopped 1.3 s mid-burst; the rest of the burst, read
  // when it ran again, was stamped after the first message's window and the batch closed without
  // it. Read 1.3 s late, it holds back every window it may belong to.
  it('counts a webhook read late from when it may have come; stale from when it was read', () => {
    let t = 21_300;
    const gate = new LocalIntakeGate({ now: () => t, readLateMs: () => 1_300, staleAfterMs: 2_000 });
    expect(gate.readLateMs()).toBe(1_300);
    const token = gate.begin(t, false, gate.readLateMs());
    expect(gate.holds(20_000)).toBe(true);
    expect(gate.holds(19_999)).toBe(false);
    t = 21_300 + 1_999;
    expect(gate.holds(20_000)).toBe(true);
    t = 21_300 + 2_001;
    expect(gate.holds(20_000)).toBe(false);
    gate.end(token);
  });

  it('measures how late its loop is from the first webhook on', () => {
    const gate = new LocalIntakeGate();
    try {
      expect(gate.readLateMs()).toBe(0);
      const until = Date.now() + 200;
      while (Date.now() < until) {
        // blocked
      }
      expect(gate.readLateMs()).toBeGreaterThanOrEqual(150);
    } finally {
      gate.close();
    }
  });
});
