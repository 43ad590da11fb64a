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

interface OutboundView {
  status: string;
  attempts: number;
  last_error?: string;
}

/** A user's outbound records as the admin API lists them ([] before the session exists). */
async function outboundOf(h: Harness, u: string): Promise<OutboundView[]> {
  const r = await h.admin(`/sessions/${u}/outbound?channel=${PHONE_ID}`);
  return r.status === 200 ? ((await r.json()) as { outbound: OutboundView[] }).outbound : [];
}

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
    const sent = await h.graph.waitFor((c) => c.body.to === `+${u}`);
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
    const outbound = async (): Promise<OutboundView | undefined> => (await outboundOf(h, u))[0];
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

describe.each(bothStores())('an agent’s reset while a reply is throttled (%s)', (_mode, env) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(env());
  });
  afterAll(async () => {
    await h?.close();
  });

  it('sends nothing: the reply of the conversation it ends is cancelled, not sent after it', async () => {
    const u = '15557780003';
    const ts = Math.floor(Date.now() / 1000);
    h.graph.failNext(1000, { status: 429 });
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    const outbound = (): Promise<OutboundView[]> => outboundOf(h, u);
    await h.until(async () => ((await outbound())[0]?.attempts ?? 0) >= 1);
    const reset = await h.admin(`/sessions/${u}/reset?channel=${PHONE_ID}`, { method: 'POST' });
    expect(reset.status).toBe(200);
    h.graph.reset();
    const [cancelled] = await outbound();
    expect(cancelled).toMatchObject({ status: 'failed', last_error: expect.stringMatching(/^cancelled/) });
    // The user's next message starts afresh; only its prompt reaches them.
    expect((await h.post(webhook([text(u, 'hello', ts + 1)]))).status).toBe(200);
    await h.settled(u, 3);
    await h.graph.waitFor((c) => c.body.to === `+${u}`);
    expect(
      h.graph.sent.filter((c) => c.body.to === `+${u}`).map((c) => c.body.biz_opaque_callback_data),
    ).toEqual(['baton:order:ask_name:3']);
  });
});
