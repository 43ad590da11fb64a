import { describe, expect, it } from 'vitest';
import { sleep, within } from '../../src/sleep.ts';

describe('within', () => {
  it('gives what the promise gives when it answers in time', async () => {
    await expect(within(1_000, Promise.resolve(7), null)).resolves.toBe(7);
  });

  it('gives the fallback when the promise has not answered in time, and leaves no timer', async () => {
    const never = new Promise<number>(() => undefined);
    const started = Date.now();
    await expect(within(30, never, 'late')).resolves.toBe('late');
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
  });

  it('passes a rejection on', async () => {
    await expect(within(1_000, Promise.reject(new Error('down')), null)).rejects.toThrow('down');
  });

  it('clears its timer once the promise answered (the process may exit at once)', async () => {
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    await within(60_000, sleep(1), null);
    const after = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    expect(after).toBe(before);
  });
});
