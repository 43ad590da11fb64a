/**
 * Many sends in flight at once are ordinary (a slow Graph API, a burst of new users): Node must
 * not warn of a leak for them. Each send listens to the engine's stop signal, which had Node's
 * default of 10 listeners: "MaxListenersExceededWarning: Possible EventTarget memory leak
 * detected. 11 abort listeners added to [AbortSignal]" (outside tests QA42-F8, QA44).
 */
import { expect, it } from 'vitest';
import { startHarness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

it('no leak warning with 30 sends in flight', async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  const h = await startHarness();
  try {
    h.graph.failNext(30, {
      status: 200,
      delayMs: 400,
      body: { messaging_product: 'whatsapp', messages: [{ id: 'wamid.slow' }] },
    });
    const ts = Math.floor(Date.now() / 1000);
    const users = Array.from({ length: 30 }, (_, i) => `155508800${String(i).padStart(2, '0')}`);
    await Promise.all(
      users.map(async (u) => expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200)),
    );
    await h.until(() => h.graph.sent.length >= 30, 15_000);
    for (const u of users) await h.settled(u, 1);
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  } finally {
    process.off('warning', onWarning);
    await h.close();
  }
});
