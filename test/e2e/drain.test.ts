/**
 * A stop with `BATON_DRAIN_MS` (outside test QA45-F2): `/readyz` answers 503 at once while
 * webhooks are still answered, each answer closing its connection, so a load balancer takes the
 * process out before its port closes; without it, keep-alive connections met a closed port.
 */
import { expect, it } from 'vitest';
import { startHarness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

it('keeps serving, not ready, for BATON_DRAIN_MS before it closes', async () => {
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
    await stopping;
    await expect(fetch(`${h.url}/readyz`)).rejects.toThrow();
  } finally {
    await stopping?.catch(() => undefined);
    await h.close().catch(() => undefined);
  }
});
