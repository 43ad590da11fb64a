/**
 * A reply that went out while the store refused its record (Redis away for a few seconds) is not
 * sent again by this process: it keeps the record and writes it in the background, and a turn
 * that finds the reply still unsent records it instead of sending it (outside test L2: 15 of 600
 * users prompted twice after a 5 s Redis outage, with no crash anywhere). The store is a real
 * SQLite one whose writes of send records are refused while `away` is set.
 */
import { describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { OutboundPatch } from '../../src/backends/types.ts';
import { StorageUnavailableError } from '../../src/errors.ts';
import { testEngine } from '../support/engine.ts';

const TTL = 300;

class RecordsRefused extends EmbeddedBackend {
  away = false;
  refused = 0;
  override async updateOutbound(id: string, patch: OutboundPatch): Promise<void> {
    if (this.away && patch.status === 'sent') {
      this.refused += 1;
      throw new StorageUnavailableError('outbound', new Error('Connection is closed (injected)'));
    }
    return super.updateOutbound(id, patch);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A store whose records of sends are refused from the moment the gateway accepts the first reply
 * (the store goes away just then), an engine on it, and 'hi' from `user` run through it: the
 * reply went out and its record was refused.
 */
async function sentWhileAway(user: string, lockTtlMs: number, sent: string[] = []) {
  const backend = new RecordsRefused({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
  await backend.init();
  const engine = testEngine(backend, {
    lockTtlMs,
    send: async (m) => {
      sent.push(m.callbackData);
      backend.away = true;
      return { providerMessageId: `wamid.${m.id}` };
    },
  });
  const key = { channel: 'c', user };
  await backend.ingest({
    messages: [
      { id: `w-${user}`, provider: 'cloud-api', ...key, timestamp: 1, content: { type: 'text', body: 'hi' } },
    ],
    statuses: [],
  });
  await engine.runSession(key);
  return { backend, engine, key };
}

describe('a sent reply whose record the store refused', () => {
  it('is recorded later, never sent again, while this process lives', async () => {
    const sent: string[] = [];
    const { backend, engine, key } = await sentWhileAway('u', TTL, sent);
    expect(sent).toEqual(['baton:order:ask_name:1']);
    const [rec] = await backend.unsent(key);
    expect(rec?.status).not.toBe('sent');
    expect(backend.refused).toBeGreaterThan(0);

    // The next turn of this process (its own retry, or a worker loop) finds the reply unsent while
    // the store still refuses its record: it tries the record, not the send.
    await sleep(TTL + 50);
    await engine.runSession(key);
    expect(sent).toHaveLength(1);

    // The store is back: the record lands (in the background, or from the next turn), and the
    // reply is never sent a second time.
    backend.away = false;
    await engine.runSession(key);
    const deadline = Date.now() + 3000;
    while ((await backend.unsent(key)).length > 0 && Date.now() < deadline) await sleep(50);
    expect(await backend.unsent(key)).toEqual([]);
    const [out] = await backend.outbound(key);
    expect(out).toMatchObject({ status: 'sent', providerMessageId: `wamid.${rec!.id}` });
    await sleep(2 * TTL);
    expect(sent).toEqual(['baton:order:ask_name:1']);
    await engine.stop();
    await backend.close();
  });

  it('is recorded by the background retry alone once the store is back', async () => {
    // No turn of its own retries it within the test (a minute's lease).
    const { backend, engine, key } = await sentWhileAway('v', 60_000);
    expect(await backend.unsent(key)).toHaveLength(1);
    await sleep(300);
    const refusedWhileAway = backend.refused;
    expect(refusedWhileAway).toBeGreaterThan(1); // tried again meanwhile
    backend.away = false;
    const deadline = Date.now() + 2000;
    while ((await backend.unsent(key)).length > 0 && Date.now() < deadline) await sleep(25);
    expect(await backend.unsent(key)).toEqual([]);
    await engine.stop();
    await backend.close();
  });

  it('is still recorded when the engine stops while the store is away (a deploy during an outage)', async () => {
    const { backend, engine, key } = await sentWhileAway('w', 60_000);
    expect(await backend.unsent(key)).toHaveLength(1);
    // SIGTERM now; the store comes back 400 ms later. Before, the stop tried each record once,
    // gave up at once, and the next holder sent those replies again (outside test C1).
    setTimeout(() => (backend.away = false), 400);
    await engine.stop();
    expect(await backend.unsent(key)).toEqual([]);
    expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent' });
    await backend.close();
  });
});
