import { testEngine, type TestEngineOptions } from '../support/engine.ts';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { IntakeGate } from '../../src/engine/intake-gate.ts';
import type { InboundMessage } from '../../src/model/message.ts';

/** Stores a text of user `u` on channel `c`, letting the fake clock run the intake's timers. */
function storeText(backend: EmbeddedBackend) {
  return async (id: string, body: string, ts: number): Promise<void> => {
    const m: InboundMessage = {
      id,
      provider: 'cloud-api',
      channel: 'c',
      user: 'u',
      timestamp: ts,
      content: { type: 'text', body },
    };
    const p = backend.ingest({ messages: [m], statuses: [] });
    await vi.advanceTimersByTimeAsync(0);
    await p;
  };
}

/** An in-memory store and an engine over it, both with a 500 ms window; `sent` lists replies' callback data. */
async function bufferedEngine(o: Partial<TestEngineOptions> = {}) {
  const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 500, dedupeTtlSec: 3600 });
  await backend.init();
  const sent: string[] = [];
  const engine = testEngine(backend, {
    bufferMs: 500,
    send: async (m) => (sent.push(m.callbackData), { providerMessageId: `o${m.id}` }),
    ...o,
  });
  return { backend, engine, sent };
}

// The buffer window on a fake clock: no sleeps, every instant chosen by the test.
describe('buffer window (fake clock)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('batches what is stored within BATON_BUFFER_MS of the first message, and no more', async () => {
    const { backend, engine, sent } = await bufferedEngine();
    engine.start(2);
    let n = 0;
    const storeWith = storeText(backend);
    const store = (body: string, ts: number): Promise<void> => storeWith(`w${(n += 1)}`, body, ts);
    const key = { channel: 'c', user: 'u' };

    await store('hi', 100); // t = 0: opens the window, due at 500
    await vi.advanceTimersByTimeAsync(1000);
    expect((await backend.load(key))?.version).toBe(1);

    await store('Jane', 101); // t = 1000: window until 1500
    await vi.advanceTimersByTimeAsync(300);
    await store('Smith', 102); // t = 1300: inside it
    await vi.advanceTimersByTimeAsync(199); // t = 1499: not due yet
    expect((await backend.load(key))?.version).toBe(1);
    await vi.advanceTimersByTimeAsync(1); // t = 1500: due
    await vi.advanceTimersByTimeAsync(10);
    const s = (await backend.load(key))!;
    expect(s.version).toBe(2);
    expect(s.data).toEqual({ customer_name: 'Jane Smith' });

    await store('12 Road', 103); // product step: a text is a retry
    await vi.advanceTimersByTimeAsync(499);
    await store('late in window?', 104); // stored at +499: same batch (a retry of its own)
    await vi.advanceTimersByTimeAsync(1);
    await vi.advanceTimersByTimeAsync(10);
    // Both retries in one commit: the first one's prompt is not sent (the second asks again).
    expect((await backend.load(key))!.version).toBe(4);
    await store('next', 105); // after the window closed: a batch of its own
    await vi.advanceTimersByTimeAsync(510);
    expect((await backend.load(key))!.version).toBe(5);
    expect(sent).toEqual([
      'baton:order:ask_name:1',
      'baton:order:choose_product:2',
      'baton:order:choose_product:4',
      'baton:order:choose_product:5',
    ]);
    await engine.stop();
    await backend.close();
  });

  it('takes the messages in hand sent before what it holds, however late it runs: none recorded late', async () => {
    // A busy intake stores a burst's first text after its window closed, before the batch runs:
    // left for the next batch it would be older than what the batch applied, so `late`, and the
    // name would lose its first half (outside tests under CPU load: 0.7 s, then 2.2 s apart).
    const { backend, engine, sent } = await bufferedEngine();
    const key = { channel: 'c', user: 'u' };
    const store = storeText(backend);
    const run = async (): Promise<void> => {
      const p = engine.runSession(key);
      await vi.advanceTimersByTimeAsync(50);
      await p;
    };
    await store('w1', 'hi', 100);
    await vi.advanceTimersByTimeAsync(500);
    await run();
    expect((await backend.load(key))?.version).toBe(1);

    await store('w2', 'Lovelace', 102); // the window opens: until +500
    await vi.advanceTimersByTimeAsync(700);
    await store('w3', 'Ada', 101); // sent first, stored 700 ms later
    await vi.advanceTimersByTimeAsync(1_400);
    await store('w3b', 'Byron', 101); // stored 2,100 ms after the window opened
    await vi.advanceTimersByTimeAsync(100);
    await run(); // the worker comes late, all three are stored

    const s = (await backend.load(key))!;
    expect(s.data).toEqual({ customer_name: 'Ada Byron Lovelace' });
    expect(s.version).toBe(2);
    const records = await backend.transitions(key);
    expect(records.map((r) => [r.version, r.kind, [...r.message_ids].sort()])).toEqual([
      [1, 'advance', ['w1']],
      [2, 'advance', ['w2', 'w3', 'w3b']],
    ]);
    expect(sent).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
    // One stored after the batch ran, sent before what it applied, is late (SPEC 1.5).
    await store('w3c', 'Countess', 101);
    await vi.advanceTimersByTimeAsync(500);
    await run();
    expect((await backend.transitions(key)).at(-1)).toMatchObject({
      version: 2,
      kind: 'late',
      message_ids: ['w3c'],
    });

    // One sent after the batch's newest stays for a batch of its own, as before.
    await store('w4', 'sku?', 103);
    await vi.advanceTimersByTimeAsync(700);
    await store('w5', 'later', 104);
    await vi.advanceTimersByTimeAsync(100);
    await run();
    expect((await backend.transitions(key)).filter((r) => r.version === 3).map((r) => r.message_ids)).toEqual(
      [['w4']],
    );
    await engine.stop();
    await backend.close();
  });

  it('stretches the window again when a separate ingress, stalled while the batch waited for it, tells its delay', async () => {
    // The ingress's side as a worker sees it: the first wait ends when the ingress runs again,
    // 200 ms later, and says how late its event loop ran; its webhooks were stamped that late.
    let lag = 0;
    let stalled = false;
    const waits: number[] = [];
    const intake: IntakeGate = {
      drained: async (t) => {
        waits.push(t);
        if (!stalled) return false;
        stalled = false;
        await new Promise((r) => setTimeout(r, 200));
        lag = 300;
        return true;
      },
      lagMs: () => lag,
    };
    const { backend, engine } = await bufferedEngine({ intake });
    engine.start(2);
    const key = { channel: 'c', user: 'u' };
    const store = storeText(backend);
    await store('w1', 'hi', 100);
    await vi.advanceTimersByTimeAsync(1500);
    expect((await backend.load(key))?.version).toBe(1);
    waits.length = 0;

    stalled = true;
    const start = Date.now();
    await store('w2', 'Ada', 101); // the window: 500 ms
    await vi.advanceTimersByTimeAsync(650);
    // Sent in the same burst, stamped late by the stalled ingress (and a second later by
    // WhatsApp's clock, so no straggler rule takes it).
    await store('w3', 'Lovelace', 102);
    await vi.advanceTimersByTimeAsync(250);
    expect(waits).toEqual([start + 500, start + 800]);
    const s = (await backend.load(key))!;
    expect(s.data).toEqual({ customer_name: 'Ada Lovelace' });
    expect(s.version).toBe(2);
    await engine.stop();
    await backend.close();
  });

  it("stretches the window by the process's event-loop delay: a burst a busy machine spread out is one batch", async () => {
    const { backend, engine } = await bufferedEngine({ loopLagMs: () => 300 });
    engine.start(2);
    const key = { channel: 'c', user: 'u' };
    const store = storeText(backend);
    await store('w1', 'hi', 100);
    await vi.advanceTimersByTimeAsync(900);
    expect((await backend.load(key))?.version).toBe(1);

    await store('w2', 'Ada', 101); // the window: 500 ms, stretched by 300
    await vi.advanceTimersByTimeAsync(700);
    await store('w3', 'Lovelace', 102); // past 500 ms, within the stretch
    await vi.advanceTimersByTimeAsync(99);
    expect((await backend.load(key))?.version).toBe(1); // the batch waits out the stretch
    await vi.advanceTimersByTimeAsync(50);
    const s = (await backend.load(key))!;
    expect(s.data).toEqual({ customer_name: 'Ada Lovelace' });
    expect(s.version).toBe(2);
    await engine.stop();
    await backend.close();
  });
});
