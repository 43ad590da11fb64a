/**
 * SPEC 3: status webhooks update the outbound record they name, and the two gateways are kept
 * apart. A WASender webhook (authenticated by a shared secret that a third party holds) naming a
 * Cloud API reply's `wamid` changes nothing; the Cloud API's own status for it does. Both
 * stores (the distributed one looks such a record up in PostgreSQL when Redis does not have it
 * in the status's session).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { PHONE_ID, statusWebhook, text, webhook } from '../support/payloads.ts';
import { bothStores } from '../support/stores.ts';

const SECRET = 'wasender-secret';
const modes = bothStores();

describe.each(modes)('status webhooks stay with their gateway (%s)', (_mode, env) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ ...env(), WASENDER_WEBHOOK_SECRET: SECRET, WASENDER_API_KEY: 'ws-key' });
  });
  afterAll(async () => {
    await h?.close();
  });

  const statusOf = async (u: string): Promise<string | undefined> => {
    const r = await h.admin(`/sessions/${u}/messages?channel=${PHONE_ID}`);
    const body = (await r.json()) as { messages: Array<{ direction: string; status?: string }> };
    return body.messages.find((m) => m.direction === 'out')?.status;
  };

  it("a WASender status naming a Cloud API reply's id leaves it alone", async () => {
    const ts = Math.floor(Date.now() / 1000);
    const u = '15557780001';
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    const sent = await h.graph.waitFor((c) => c.body.to === u);
    const wamid = sent.providerMessageId!;
    await h.until(async () => (await statusOf(u)) === 'sent');

    for (const [status, name] of [
      [0, 'failed'],
      [4, 'read'],
    ] as const) {
      const forged = await fetch(`${h.url}/webhooks/wasender`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-webhook-signature': SECRET },
        body: JSON.stringify({
          event: 'messages.update',
          sessionId: 'evil',
          timestamp: Date.now(),
          data: { update: { status }, key: { remoteJid: `${u}@s.whatsapp.net`, id: wamid, fromMe: true } },
        }),
      });
      expect(forged.status, name).toBe(200);
    }
    expect(await statusOf(u)).toBe('sent');
    // Meta's own status for it, after the forged ones: applied.
    expect((await h.post(statusWebhook(wamid, 'delivered', u, ts + 1))).status).toBe(200);
    await h.until(async () => (await statusOf(u)) === 'delivered');
  });
});

describe.each(bothStores())('a reply Graph keeps refusing (%s)', (_mode, env) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(env());
  });
  afterAll(async () => {
    await h?.close();
  });

  it('shows as tried, with Graph’s error, while it waits; then as sent', async () => {
    const u = '15557780002';
    h.graph.failNext(1000, { status: 400, graphCode: 130429, message: 'Rate limit hit' });
    expect((await h.post(webhook([text(u, 'hi', Math.floor(Date.now() / 1000))]))).status).toBe(200);
    const outbound = async () => {
      const r = await h.admin(`/sessions/${u}/outbound?channel=${PHONE_ID}`);
      if (r.status !== 200) return undefined;
      return (
        (await r.json()) as { outbound: Array<{ status: string; attempts: number; last_error?: string }> }
      ).outbound[0];
    };
    const refused = await h.until(async () => {
      const o = await outbound();
      return o !== undefined && o.attempts >= 2 ? o : undefined;
    });
    expect(refused.status).toBe('pending');
    expect(refused.last_error).toMatch(/Rate limit hit|130429/);
    h.graph.reset();
    await h.until(async () => (await outbound())?.status === 'sent', 30_000);
  });
});
