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

describe('cachedStats', () => {
  it('reads the store once per max age, and concurrent callers share the read', async () => {
    let t = 0;
    let reads = 0;
    let release: () => void = () => undefined;
    const stats = cachedStats(
      () => {
        reads += 1;
        const n = reads;
        return new Promise((resolve) => (release = () => resolve(figures(n))));
      },
      1000,
      () => t,
    );
    const first = Promise.all([stats(), stats(), stats()]);
    release();
    expect((await first).map((s) => s.queueDepth)).toEqual([1, 1, 1]);
    t = 749;
    expect((await stats()).queueDepth).toBe(1);
    expect(reads).toBe(1);
    t = 1000;
    const next = stats();
    release();
    expect((await next).queueDepth).toBe(2);
    expect(reads).toBe(2);
  });

  it("answers at once in the last quarter of an answer's age, and reads the next meanwhile (outside test QA114-F2)", async () => {
    let t = 0;
    let reads = 0;
    let release: () => void = () => undefined;
    const stats = cachedStats(
      () => {
        reads += 1;
        const n = reads;
        return new Promise((resolve) => (release = () => resolve(figures(n))));
      },
      1000,
      () => t,
    );
    const first = stats();
    release();
    expect((await first).queueDepth).toBe(1);
    t = 800;
    expect((await stats()).queueDepth).toBe(1); // at once, while the next read runs
    expect(reads).toBe(2);
    expect((await stats()).queueDepth).toBe(1); // the read in flight is not started again
    expect(reads).toBe(2);
    release();
    await Promise.resolve();
    t = 1100; // past the first answer's age: the one read at 800 serves, no wait
    let waited = true;
    const next = stats().then((s) => {
      waited = false;
      return s;
    });
    await Promise.resolve();
    expect(waited).toBe(false);
    expect((await next).queueDepth).toBe(2);
    expect(reads).toBe(2);
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
