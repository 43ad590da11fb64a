/**
 * `linkedSignal`: AbortSignal.any without Node 20's hold on a long-lived source (every signal
 * `any` made from a worker's stop signal stayed reachable: 10 MB of heap per 200,000 sends).
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { linkedSignal } from '../../src/linked-signal.ts';

describe('linkedSignal', () => {
  it('aborts when any source does, with its reason; at once when one already has', () => {
    const a = new AbortController();
    const b = new AbortController();
    const link = linkedSignal([a.signal, undefined, b.signal]);
    expect(link.signal.aborted).toBe(false);
    b.abort('stopping');
    expect(link.signal.aborted).toBe(true);
    expect(link.signal.reason).toBe('stopping');
    expect(linkedSignal([a.signal, b.signal]).signal.aborted).toBe(true);
  });

  it('lets go of a long-lived source once disposed', () => {
    const worker = new AbortController();
    for (let i = 0; i < 1000; i++) linkedSignal([worker.signal]).dispose();
    expect(getEventListeners(worker.signal, 'abort')).toHaveLength(0);
    const kept = linkedSignal([worker.signal]);
    expect(getEventListeners(worker.signal, 'abort')).toHaveLength(1);
    kept.dispose();
    worker.abort();
    expect(kept.signal.aborted).toBe(false);
  });
});
