/**
 * After a stall the engine lets the webhooks that came meanwhile be read before it closes a
 * window (Engine.readSockets): until a few event-loop turns in a row begin none, for at most as
 * long as the loop was late, up to the window (outside test QA137-F1). Real timers: it counts
 * event-loop turns.
 */
import { describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { IntakeGate } from '../../src/engine/intake-gate.ts';
import { testEngine } from '../support/engine.ts';

const key = { channel: 'c', user: 'u' };

/** Runs one batch through an engine whose loop was `lagMs` late, with `begun` as its intake's count. */
async function batchWith(lagMs: number, begun: () => number): Promise<void> {
  const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 100, dedupeTtlSec: 3600 });
  await backend.init();
  const intake: IntakeGate = { drained: async () => false, lagMs: () => 0, begun };
  const engine = testEngine(backend, {
    bufferMs: 100,
    intake,
    loopLagMs: () => lagMs,
    send: async (m) => ({ providerMessageId: `o${m.id}` }),
  });
  engine.start(1);
  try {
    await backend.ingest({
      messages: [
        { id: 'w1', provider: 'cloud-api', ...key, timestamp: 100, content: { type: 'text', body: 'hi' } },
      ],
      statuses: [],
    });
    const deadline = Date.now() + 5_000;
    while ((await backend.load(key))?.version !== 1) {
      if (Date.now() > deadline) throw new Error('the batch never ran');
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await engine.stop();
    await backend.close();
  }
}

describe('reading the sockets after a stall', () => {
  it('waits for turns that begin no webhook, a few in a row', async () => {
    let calls = 0;
    let count = 0;
    // Webhooks begin in the first ten turns it looks at, then none.
    await batchWith(300, () => {
      calls += 1;
      if (calls <= 20) count += 1;
      return count;
    });
    expect(calls).toBeGreaterThanOrEqual(20 + 2 * 3);
  });

  // Outside test QA140-F1: a backlog of 250 webhooks was read over 300 ms, and three turns that
  // read none came while a hundred were still unread.
  it('waits out gaps of a few turns between webhooks: quiet for some milliseconds too', async () => {
    let first = 0;
    let last = 0;
    // A webhook begins every 10 ms for 60 ms, with many empty turns between.
    await batchWith(300, () => {
      const now = performance.now();
      if (first === 0) first = now;
      last = now;
      return Math.min(6, Math.floor((now - first) / 10));
    });
    expect(last - first).toBeGreaterThanOrEqual(60);
  });

  it('steady traffic on a starved machine: for at most as long as the loop was late', async () => {
    let calls = 0;
    // Every turn begins a webhook, and takes 10 ms: never quiet.
    await batchWith(150, () => {
      calls += 1;
      const until = performance.now() + 5;
      while (performance.now() < until) {
        // a slow turn
      }
      return calls;
    });
    // 100 ms (the window, less than the lag) of 10 ms turns, not a hundred turns.
    expect(calls).toBeLessThan(60);
    expect(calls).toBeGreaterThan(5);
  });

  it('on time: one turn', async () => {
    let calls = 0;
    await batchWith(20, () => (calls += 1));
    expect(calls).toBe(2);
  });
});
