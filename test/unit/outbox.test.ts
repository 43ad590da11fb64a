import { testEngine } from '../support/engine.ts';
import { describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { OutboundPatch } from '../../src/backends/types.ts';
import { SendError } from '../../src/errors.ts';
import type { OutboundRecord } from '../../src/model/session.ts';

class FlakyStore extends EmbeddedBackend {
  refuseSentRecords = 0;
  override async updateOutbound(id: string, patch: OutboundPatch): Promise<void> {
    if (patch.status === 'sent' && this.refuseSentRecords > 0) {
      this.refuseSentRecords -= 1;
      throw new Error('store unavailable');
    }
    return super.updateOutbound(id, patch);
  }
}

function engineFor(
  backend: EmbeddedBackend,
  send: (m: OutboundRecord) => Promise<{ providerMessageId: string }>,
) {
  return testEngine(backend, { send, sendBackoffMs: 1, maxSendAttempts: 3 });
}

const hi = {
  id: 'w1',
  provider: 'cloud-api' as const,
  channel: 'c',
  user: 'u',
  timestamp: 100,
  content: { type: 'text' as const, body: 'hi' },
};
const key = { channel: 'c', user: 'u' };

/** A store that refuses the first `refusals` records of a send, an engine whose sends all succeed, and 'hi' stored. */
async function flakyTurn(refusals: number) {
  const backend = new FlakyStore({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
  await backend.init();
  backend.refuseSentRecords = refusals;
  const sends: string[] = [];
  const engine = engineFor(backend, async (m) => {
    sends.push(m.id);
    return { providerMessageId: `wamid.${sends.length}` };
  });
  await backend.ingest({ messages: [hi], statuses: [] });
  return { backend, engine, sends };
}

describe('outbox', () => {
  // An earlier Baton let an agent hand a group's session back to the bot; its prompt, stored,
  // was then sent to the whole group by the next build (outside test QA132-F4).
  it('never sends a reply to a shared chat: it is failed, with the reason', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sends: string[] = [];
    const engine = engineFor(backend, async (m) => {
      sends.push(m.id);
      return { providerMessageId: `wamid.${sends.length}` };
    });
    const group = { channel: 'wasender:s1', user: '120363040000000777@g.us' };
    await backend.ingest({ messages: [{ ...hi, ...group, provider: 'wasender' as const }], statuses: [] });
    await engine.runSession(group);
    expect(sends).toEqual([]);
    const [prompt] = await backend.outbound(group);
    expect(prompt).toMatchObject({
      status: 'failed',
      lastError: 'not sent: 120363040000000777@g.us is a shared chat, where Baton answers nothing',
    });
    await engine.stop();
    await backend.close();
  });

  it('never sends again because recording a send failed: this process records it later', async () => {
    // Refused with the end of the turn, and once more when the turn's clean-up tries again.
    const { backend, engine, sends } = await flakyTurn(2);
    await engine.runSession(key);
    expect(sends).toHaveLength(1);
    expect((await backend.unsent(key)).map((o) => o.id)).toEqual([sends[0]]);
    await engine.runSession(key); // this process's next turn records it instead of sending it
    expect(sends).toHaveLength(1);
    expect(await backend.unsent(key)).toEqual([]);
    expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent', providerMessageId: 'wamid.1' });
    await engine.stop();
    await backend.close();
  });

  it('a send whose record its process never wrote (it stopped, or crashed) is repeated once by the next holder', async () => {
    const { backend, sends } = await flakyTurn(Number.POSITIVE_INFINITY);
    const engine = testEngine(backend, {
      send: async (m) => (sends.push(m.id), { providerMessageId: 'wamid.1' }),
      recordOnStopMs: 300,
    });
    await engine.runSession(key);
    await engine.stop(); // the record still refused after 300 ms of tries: given up
    backend.refuseSentRecords = 0;
    const next = engineFor(backend, async (m) => (sends.push(m.id), { providerMessageId: 'wamid.2' }));
    await next.runSession(key);
    expect(sends).toEqual([sends[0], sends[0]]);
    expect(await backend.unsent(key)).toEqual([]);
    await next.stop();
    await backend.close();
  });

  it('a record refused with the end of the turn is tried once more before the baton goes: no repeat', async () => {
    const { backend, engine, sends } = await flakyTurn(1);
    await engine.runSession(key);
    expect(sends).toHaveLength(1);
    expect(await backend.unsent(key)).toEqual([]);
    expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent', providerMessageId: 'wamid.1' });
    expect((await backend.stats()).locksHeld).toBe(0);
    await engine.runSession(key);
    expect(sends).toHaveLength(1);
    await backend.close();
  });

  it('a reply still throttled after the turn’s attempts stays unsent for a later turn, then is dead-lettered when a day old', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    let calls = 0;
    // The engine's clock runs with the real one (the store stamps messages with it), a day ahead
    // once the test says so.
    let ahead = 0;
    const refuse = async (): Promise<never> => {
      calls += 1;
      throw new SendError('Graph error 130429: rate limit hit', {
        retryable: true,
        httpStatus: 400,
        providerCode: 130429,
      });
    };
    const engine = testEngine(backend, {
      send: refuse,
      sendBackoffMs: 1,
      maxSendAttempts: 3,
      now: () => Date.now() + ahead,
    });
    await backend.ingest({ messages: [hi], statuses: [] });
    await engine.runSession(key);
    expect(calls).toBe(3);
    // Not dead-lettered: still pending, for the next turn.
    expect((await backend.unsent(key)).map((o) => o.status)).toEqual(['pending']);
    expect(await backend.listDeadLetters(10)).toEqual([]);
    // A day later, still refused: now it is dead-lettered with the gateway's error.
    ahead = 24 * 60 * 60 * 1000 + 1;
    await engine.runSession(key);
    const [out] = await backend.outbound(key);
    expect(out).toMatchObject({ status: 'failed' });
    const [letter] = await backend.listDeadLetters(10);
    expect(letter).toMatchObject({ kind: 'outbound', ref: out!.id });
    expect(letter!.reason).toContain('130429');
    await backend.close();
  });

  it('a throttled reply goes out once the throttling ends, in order with the next one', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    let refusing = true;
    const sent: string[] = [];
    const engine = engineFor(backend, async (m) => {
      if (refusing) throw new SendError('HTTP 503', { retryable: true, httpStatus: 503 });
      sent.push(m.callbackData);
      return { providerMessageId: `wamid.${m.id}` };
    });
    await backend.ingest({ messages: [hi], statuses: [] });
    await engine.runSession(key);
    await backend.ingest({
      messages: [{ ...hi, id: 'w2', timestamp: 101, content: { type: 'text', body: 'Jane' } }],
      statuses: [],
    });
    await engine.runSession(key);
    expect(sent).toEqual([]);
    refusing = false;
    await engine.runSession(key);
    expect(sent).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);
    expect(await backend.listDeadLetters(10)).toEqual([]);
    await backend.close();
  });

  it('sends without an answer are counted across turns: the second one ends it, in a later turn too', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const answers = ['timeout', 'throttled', 'throttled', 'timeout', 'ok'];
    let calls = 0;
    const engine = engineFor(backend, async (m) => {
      const a = answers[calls++];
      if (a === 'timeout')
        throw new SendError('timed out', { retryable: true, httpStatus: 0, unknownOutcome: true });
      if (a === 'throttled') throw new SendError('HTTP 429', { retryable: true, httpStatus: 429 });
      return { providerMessageId: `wamid.${m.id}` };
    });
    await backend.ingest({ messages: [hi], statuses: [] });
    await engine.runSession(key); // no answer, then throttled twice: left for a later turn
    expect(calls).toBe(3);
    expect((await backend.unsent(key)).map((o) => o.status)).toEqual(['pending']);
    await engine.runSession(key); // no answer again: that is the second, so not sent a third time
    expect(calls).toBe(4);
    const [letter] = await backend.listDeadLetters(10);
    expect(letter!.reason).toContain('two attempts may have reached the user');
    await backend.close();
  });

  it('a send that gets no answer is sent once more, never a third time', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    let calls = 0;
    const engine = engineFor(backend, async () => {
      calls += 1;
      throw new SendError('Graph API failed: timed out after 30000 ms', {
        retryable: true,
        httpStatus: 0,
        unknownOutcome: true,
      });
    });
    await backend.ingest({ messages: [hi], statuses: [] });
    await engine.runSession(key);
    expect(calls).toBe(2);
    const [out] = await backend.outbound(key);
    expect(out).toMatchObject({ status: 'failed' });
    const [letter] = await backend.listDeadLetters(10);
    expect(letter!.reason).toContain('two attempts may have reached the user');
    await backend.close();
  });
});

describe('graceful shutdown', () => {
  it('stops waiting out a send backoff, releases the baton and leaves the reply unsent for later', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    let attempted!: () => void;
    const firstAttempt = new Promise<void>((r) => (attempted = r));
    const engine = engineFor(backend, async () => {
      attempted();
      throw new SendError('HTTP 429', { retryable: true, httpStatus: 429, retryAfterMs: 60_000 });
    });
    engine.start(2);
    await backend.ingest({ messages: [hi], statuses: [] });
    await firstAttempt;
    await engine.stop(); // would hang for the 60 s Retry-After if shutdown waited it out
    expect((await backend.unsent(key)).map((o) => o.status)).toEqual(['pending']);
    expect((await backend.stats()).locksHeld).toBe(0);
    expect((await backend.load(key))!.version).toBe(1);
    await backend.close();
  }, 10_000);
});
