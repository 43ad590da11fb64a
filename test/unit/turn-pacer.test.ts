import { setMaxListeners } from 'node:events';
/**
 * The embedded backend hands due sessions to the engine in doses (`turn-pacer.ts`): with many
 * sessions due at once, only a few are claimed before the event loop reaches its check phase,
 * where the group commit that answers webhooks runs; the rest follow in later doses, none lost.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { TurnPacerOptions } from '../../src/backends/embedded/turn-pacer.ts';
import type { SessionKey } from '../../src/model/message.ts';
import { parseCloudApiWebhook } from '../../src/providers/index.ts';
import { text, webhook } from '../support/payloads.ts';

const DUE = 40;
const backends: EmbeddedBackend[] = [];
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
});

async function backlog(pacing: TurnPacerOptions | false): Promise<EmbeddedBackend> {
  const b = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3650 * 86400, pacing });
  backends.push(b);
  await b.init();
  const users = Array.from({ length: DUE }, (_, i) => `1555007${String(i).padStart(4, '0')}`);
  await b.ingest(parseCloudApiWebhook(webhook(users.map((u) => text(u, 'hi', 1_750_000_000)))));
  return b;
}

/** `DUE` engine loops ask at once: how many got a session before a check-phase callback ran, and all they got. */
async function claim(b: EmbeddedBackend): Promise<{ beforeCheck: number; keys: SessionKey[] }> {
  const abort = new AbortController();
  // DUE loops wait on it at once, as an engine's loops wait on its one signal (which lifts the
  // limit too): Node warned of a leak past 10 listeners in the suite's output.
  setMaxListeners(0, abort.signal);
  const keys: SessionKey[] = [];
  let beforeCheck = -1;
  setImmediate(() => (beforeCheck = keys.length));
  await Promise.all(
    Array.from({ length: DUE }, async () => {
      const k = await b.nextReady(abort.signal);
      if (k) keys.push(k);
    }),
  );
  // All handed out before the callback ran at all: all of them came before the check phase.
  return { beforeCheck: beforeCheck === -1 ? keys.length : beforeCheck, keys };
}

describe('due sessions claimed in doses', () => {
  it('hands out at most one dose before the event loop reaches its check phase, then the rest', async () => {
    const { beforeCheck, keys } = await claim(await backlog({ claims: 4 }));
    expect(beforeCheck).toBe(4);
    expect(new Set(keys.map((k) => k.user)).size).toBe(DUE);
  });

  it('(control) unpaced, every due session is handed out at once', async () => {
    const { beforeCheck, keys } = await claim(await backlog(false));
    expect(beforeCheck).toBe(DUE);
    expect(keys).toHaveLength(DUE);
  });

  it('a claim waiting for its dose gives up when the engine stops', async () => {
    const b = await backlog({ claims: 1 });
    const abort = new AbortController();
    const first = b.nextReady(abort.signal);
    const second = b.nextReady(abort.signal);
    expect(await first).not.toBeNull();
    abort.abort();
    expect(await second).toBeNull();
  });
});
