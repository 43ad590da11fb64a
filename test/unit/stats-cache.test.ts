/**
 * Polling readers share one stats read per second: a scraper cannot make the store answer
 * more often than that, however often it asks.
 */
import { describe, expect, it } from 'vitest';
import { cachedStats } from '../../src/backends/stats-cache.ts';
import type { BackendStats } from '../../src/backends/types.ts';

const figures = (queueDepth: number): BackendStats => ({
  queueDepth,
  oldestPendingMs: 0,
  locksHeld: 0,
  deadLetters: 0,
  workers: 1,
  messagesPerSecond: 0,
  unsent: 0,
  oldestUnsentMs: 0,
});

/** A cache of 1 s over reads that wait for `release()`; read n answers queue depth n; `t` is the clock. */
function heldReads() {
  const c = { t: 0, reads: 0, release: (): void => undefined };
  const stats = cachedStats(
    () => {
      c.reads += 1;
      const n = c.reads;
      return new Promise<BackendStats>((resolve) => (c.release = () => resolve(figures(n))));
    },
    1000,
    () => c.t,
  );
  return { c, stats };
}

describe('cachedStats', () => {
  it('reads the store once per max age, and concurrent callers share the read', async () => {
    const { c, stats } = heldReads();
    const first = Promise.all([stats(), stats(), stats()]);
    c.release();
    expect((await first).map((s) => s.queueDepth)).toEqual([1, 1, 1]);
    c.t = 749;
    expect((await stats()).queueDepth).toBe(1);
    expect(c.reads).toBe(1);
    c.t = 1000;
    const next = stats();
    c.release();
    expect((await next).queueDepth).toBe(2);
    expect(c.reads).toBe(2);
  });

  it("answers at once in the last quarter of an answer's age, and reads the next meanwhile (outside test QA114-F2)", async () => {
    const { c, stats } = heldReads();
    const first = stats();
    c.release();
    expect((await first).queueDepth).toBe(1);
    c.t = 800;
    expect((await stats()).queueDepth).toBe(1); // at once, while the next read runs
    expect(c.reads).toBe(2);
    expect((await stats()).queueDepth).toBe(1); // the read in flight is not started again
    expect(c.reads).toBe(2);
    c.release();
    await Promise.resolve();
    c.t = 1100; // past the first answer's age: the one read at 800 serves, no wait
    let waited = true;
    const next = stats().then((s) => {
      waited = false;
      return s;
    });
    await Promise.resolve();
    expect(waited).toBe(false);
    expect((await next).queueDepth).toBe(2);
    expect(c.reads).toBe(2);
  });

  it('keeps no failed read', async () => {
    let fail = true;
    const stats = cachedStats(
      async () => {
        if (fail) throw new Error('store down');
        return figures(7);
      },
      1000,
      () => 0,
    );
    await expect(stats()).rejects.toThrow('store down');
    fail = false;
    expect((await stats()).queueDepth).toBe(7);
  });
});
