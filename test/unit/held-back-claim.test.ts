/**
 * A reply another holder claimed and left (its worker gone) is held back before the next holder
 * claims it, while the state behind it is not durable yet (`Backend.sendable`, distributed with
 * the intake log on): a holder frozen in that check must not leave a claim no attempt used.
 * Outside test QA93-F2: after a Redis pause, the commit's claim could not be given back; the next
 * holder claimed (2), was held back, and froze before giving its claim back; the one after it
 * claimed a third time and dead-lettered a reply nobody had sent as "may have reached the user
 * twice".
 */
import { afterEach, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { SessionKey } from '../../src/model/message.ts';
import { batch, outbound } from '../distributed/fixtures.ts';
import { testEngine } from '../support/engine.ts';

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

it('takes no claim while the check that the state is durable waits, and sends the reply once after it', async () => {
  const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600, pacing: false });
  await backend.init();
  stops.push(() => backend.close());
  const key: SessionKey = { channel: 'c', user: '15550009009' };
  // A holder of a worker now gone committed the name prompt, with its claim, and sent nothing.
  const gone = (await backend.acquireLease(key, 'gone-worker:1', 5000))!;
  const reply = { ...outbound(key, 1, 0), claimedBy: 'gone-worker:1' };
  await backend.commit(gone, batch(key, 0, 1, { outbound: [reply] }));
  await backend.releaseLease(gone);
  expect((await backend.outbound(key))[0]).toMatchObject({ status: 'pending', claims: 1 });

  // The state behind it is not durable yet, and the check takes a while.
  let durable: (ok: boolean) => void = () => undefined;
  let asked = 0;
  (backend as EmbeddedBackend & { sendable: () => Promise<boolean> }).sendable = () => {
    asked += 1;
    return asked === 1 ? new Promise<boolean>((r) => (durable = r)) : Promise.resolve(true);
  };
  const sent: string[] = [];
  const engine = testEngine(backend, {
    send: async (m) => {
      sent.push(m.callbackData);
      return { providerMessageId: `wamid.${m.id}` };
    },
  });
  stops.push(() => engine.stop());
  const turn = engine.runSession(key);
  const until = Date.now() + 10_000;
  while (asked === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  expect(asked).toBe(1);
  // Frozen here, this holder leaves the count as it found it.
  expect((await backend.outbound(key))[0]).toMatchObject({ status: 'pending', claims: 1 });
  durable(true);
  await turn;
  expect(sent).toEqual(['baton:order:ask_name:1']);
  expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent', claims: 2 });
});
