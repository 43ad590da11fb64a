/**
 * An agent takes a session from the bot while the workers are behind (a backlog of other users):
 * what the user wrote just before the take is still the bot's to apply first. The take gives the
 * baton back for it and waits up to the lock TTL and a second; the session now goes to the front
 * of the ready queue (Backend.releaseLease's `first`), where before it took its place behind the
 * backlog, and the answer was recorded `held`, never applied (outside test QA114-F1: backlogs of
 * 7-33 s, the take waited its 6 s in vain). Both stores, the reference bot, two worker slots.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/types.ts';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { SessionKey } from '../../src/model/message.ts';
import { newKey, text } from '../distributed/fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from '../distributed/harness.ts';
import { testEngine } from '../support/engine.ts';
import { servicesUp } from '../support/services.ts';

const BACKLOG = 120;
const SEND_MS = 60;
const LOCK_TTL_MS = 1000;

const stores: Array<[string, boolean, () => Promise<Backend>]> = [
  [
    'embedded',
    true,
    async () => {
      const b = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
      await b.init();
      afterThisTest(() => b.close());
      return b;
    },
  ],
  ['distributed', servicesUp, async () => (await makeBackend({ bufferMs: 0 })).backend],
];

describe.each(stores)('a take during a backlog, %s store', (_name, available, make) => {
  useCleanup();

  it.skipIf(!available)('applies what the user wrote before the take, then escalates', async () => {
    const backend = await make();
    const engine = testEngine(backend, {
      lockTtlMs: LOCK_TTL_MS,
      send: async (m) => {
        await new Promise((r) => setTimeout(r, SEND_MS));
        return { providerMessageId: `wamid.${m.id}` };
      },
    });
    afterThisTest(() => engine.stop());
    const t0 = Math.floor(Date.now() / 1000) - 60;
    const user: SessionKey = newKey();
    await backend.ingest({ messages: [text(user, 'hi', t0)], statuses: [] });
    await engine.runSession(user); // at ask_name
    // The backlog: BACKLOG users' first messages, two slots, each turn at least SEND_MS (several
    // seconds in all, past the take's wait of LOCK_TTL_MS + 1 s).
    const others = Array.from({ length: BACKLOG }, () => newKey());
    await backend.ingest({ messages: others.map((k) => text(k, 'hi', t0)), statuses: [] });
    engine.start(2);
    await new Promise((r) => setTimeout(r, 100));
    await backend.ingest({ messages: [text(user, 'Jane', t0 + 1)], statuses: [] });
    const taken = await engine.takeSession(user, 'Ana', true);
    expect(taken).toMatchObject({ needsAgent: true, data: { customer_name: 'Jane' } });
    const kinds = (await backend.transitions(user)).map((r) => r.kind);
    expect(kinds).toEqual(['advance', 'advance', 'escalated']);
    // The backlog was still there when the take was done: the test proves what it means to.
    const served = (await Promise.all(others.map((k) => backend.load(k)))).filter((s) => s !== null);
    expect(served.length).toBeLessThan(BACKLOG / 2);
  });
});
