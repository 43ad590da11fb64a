/**
 * A stop with `BATON_DRAIN_MS` (outside test QA45-F2): `/readyz` answers 503 at once while
 * webhooks are still answered, each answer closing its connection, so a load balancer takes the
 * process out before its port closes; without it, keep-alive connections met a closed port.
 */
import { expect, it } from 'vitest';
import { startHarness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

it('keeps serving, not ready, for BATON_DRAIN_MS before it closes, its workers taking no new session', async () => {
  const h = await startHarness({ BATON_DRAIN_MS: '1500' });
  const u = '15550770001';
  let stopping: Promise<void> | undefined;
  try {
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
    stopping = h.baton.stop();
    const ready = await fetch(`${h.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ok: false, draining: true });
    const r = await h.post(webhook([text(u, 'hi', Math.floor(Date.now() / 1000))]));
    expect(r.status).toBe(200);
    expect(r.headers.get('connection')).toBe('close');
    // Stored, and left for the next process: a stopping worker takes no new session, drain or
    // not (outside test QA62-F1: one taken during the drain had its send cut at the stop's
    // grace, and the next holder sent that prompt again).
    await new Promise((done) => setTimeout(done, 500));
    expect(await h.session(u)).toBeNull();
    await stopping;
    await expect(fetch(`${h.url}/readyz`)).rejects.toThrow();
  } finally {
    await stopping?.catch(() => undefined);
    await h.close().catch(() => undefined);
  }
});
