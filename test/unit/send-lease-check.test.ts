/**
 * The engine hands each send its lease check (`SendOptions.mayStart`), asked by the sender at the
 * last moment before the request is written: a lease lost while the send waited for a connection
 * leaves the reply unsent, its claim given back, for the next holder to send once (outside test
 * QA57-F1: a starved worker sent a name prompt after the newer holder's confirmation).
 * `test/providers/send-may-start.test.ts` checks that the HTTP senders ask it at that moment.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SendError } from '../../src/errors.ts';
import { storeWithHi, testEngine } from '../support/engine.ts';

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

describe('a send waiting for its connection when the lease is lost', () => {
  it('is not made; the next holder sends the reply once', async () => {
    const { backend, key } = await storeWithHi();
    stops.push(() => backend.close());
    const checks: boolean[] = [];
    const sent: string[] = [];
    const engine = testEngine(backend, {
      lockTtlMs: 600,
      send: async (m, o) => {
        if (checks.length === 0) {
          // The connection takes a while; an agent clears the lock meanwhile, and the holder
          // learns of it at its next renewal (a third of the TTL).
          await backend.clearLease(key);
          await new Promise((r) => setTimeout(r, 500));
        }
        const may = o?.mayStart?.() ?? true;
        checks.push(may);
        if (!may) throw new SendError('not started', { retryable: true, httpStatus: 0 });
        sent.push(m.callbackData);
        return { providerMessageId: `wamid.${m.id}` };
      },
    });
    stops.push(() => engine.stop());
    await engine.runSession(key);
    expect(checks).toEqual([false]);
    expect(sent).toEqual([]);
    const [reply] = await backend.outbound(key);
    expect(reply).toMatchObject({ status: 'pending', claims: 0 });

    const until = Date.now() + 10_000;
    while (sent.length === 0 && Date.now() < until) {
      await engine.runSession(key);
      if (sent.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(sent).toEqual(['baton:order:ask_name:1']);
    expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent' });
  }, 20_000);
});
