/**
 * SPEC 5b over HTTP, embedded, with the default 500 ms buffer window: a user writes "reset" while
 * the shop is looking an order up, and the shop answers while the reset is still in its window.
 * The reset never waits: it is applied first, the lookup's result is recorded and not applied, and
 * the old order's status and menu are never sent (outside test QA99-F1: they were, 7 of 7 times
 * at a 280 ms lead).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';

let h: Harness;
let shop: FakeShop;
beforeAll(async () => {
  shop = await startFakeShop();
  shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
  h = await startHarness(
    { BATON_BUFFER_MS: '500' },
    { flows: [orderStatusFlow({ apiUrl: shop.url, backoffMs: 20 })] },
  );
});
afterAll(async () => {
  await h?.close();
  await shop?.close();
});

const T0 = 1_750_000_000;

/** User `u` sends an order number; its lookup reaches the shop, which holds it until released. */
async function lookupHeld(u: string): Promise<() => void> {
  const release = shop.hold('GET /orders/ORD-12345');
  const calls = shop.callsTo('GET /orders/ORD-12345').length;
  expect((await h.post(webhook([text(u, 'ORD-12345', T0)]))).status).toBe(200);
  await shop.waitForCalls('GET /orders/ORD-12345', calls + 1);
  expect((await h.session(u))?.current_step).toBe('looking_up');
  return release;
}

describe('a reset while the lookup runs (embedded, 500 ms window)', () => {
  it('the shop answering inside the reset’s window: the reset first, the result not applied, no status sent', async () => {
    const u = '15550009001';
    const release = await lookupHeld(u);
    expect((await h.post(webhook([text(u, 'reset', T0 + 1)]))).status).toBe(200);
    // The shop answers well inside the reset's 500 ms window.
    await new Promise((r) => setTimeout(r, 100));
    release();
    const records = await h.until(async () => {
      const t = await h.transitions(u);
      return t.some((r) => r.kind === 'stale_input') ? t : undefined;
    });
    expect(records.map((r) => [r.kind, r.to_step])).toEqual([
      // A first text that is itself an order number is used as at ask_order.
      ['advance', 'looking_up'],
      ['reset', 'ask_order'],
      ['stale_input', 'ask_order'],
    ]);
    expect((await h.session(u))?.current_step).toBe('ask_order');
    // Nothing of the old order reached the user: no status text, no menu.
    await new Promise((r) => setTimeout(r, 300));
    const sent = h.graph.sent.filter((c) => c.body.to === `+${u}`);
    expect(sent.some((c) => c.body.type === 'interactive')).toBe(false);
    const texts = sent.map((c) => (typeof c.body.text === 'object' ? c.body.text.body : c.body.text));
    expect(texts.some((t) => t?.includes('in transit'))).toBe(false);
  });
});

describe("an agent's reset while the lookup runs (embedded)", () => {
  it('the reset goes first: the result is recorded, not applied, and the old status is not sent', async () => {
    const u = '15550009002';
    const release = await lookupHeld(u);
    // The agent's reset waits for the baton, which the lookup in flight holds.
    const reset = h.admin(`/sessions/${u}/reset?channel=${PHONE_ID}`, { method: 'POST' });
    await new Promise((r) => setTimeout(r, 200));
    release();
    expect((await reset).status).toBe(200);
    const records = await h.until(async () => {
      const t = await h.transitions(u);
      return t.some((r) => r.message_ids[0]?.startsWith('fx:')) ? t : undefined;
    });
    expect(records.map((r) => [r.kind, r.to_step])).toEqual([
      ['advance', 'looking_up'],
      ['admin_reset', null],
      ['stale_input', null],
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const sent = h.graph.sent.filter((c) => c.body.to === `+${u}`);
    expect(sent.some((c) => c.body.type === 'interactive')).toBe(false);
  });
});

describe("an agent's act on a session the bot serves, while the lookup runs (embedded)", () => {
  /**
   * Sends `act` while the lookup's attempt holds the baton (the shop answers in 3 s) and checks
   * it is answered before then: a refusal that needs no baton does not wait for it.
   */
  async function answeredAtOnce(u: string, act: () => Promise<Response>): Promise<Response> {
    const release = await lookupHeld(u);
    let released = false;
    const later = setTimeout(() => {
      released = true;
      release();
    }, 3_000);
    const r = await act();
    expect(released).toBe(false);
    clearTimeout(later);
    release();
    await h.until(async () => ((await h.session(u))?.current_step === 'show_status' ? true : undefined));
    return r;
  }

  it('a message: 409 at once, without waiting for the baton the lookup holds', async () => {
    const u = '15550009003';
    const r = await answeredAtOnce(u, () =>
      h.admin(`/sessions/${u}/agent/messages?channel=${PHONE_ID}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'Hello from support' }),
      }),
    );
    expect(r.status).toBe(409);
    expect(((await r.json()) as { code: string }).code).toBe('BATON_ERR_NOT_WITH_AGENT');
  });

  it('a hand-back: 409 at once, or 400 first for a step the flow has not, as under the baton', async () => {
    const handback = (u: string, step: string) => () =>
      h.admin(`/sessions/${u}/agent?channel=${PHONE_ID}`, {
        method: 'DELETE',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ step }),
      });
    const u = '15550009004';
    const r = await answeredAtOnce(u, handback(u, 'ask_order'));
    expect(r.status).toBe(409);
    expect(((await r.json()) as { code: string }).code).toBe('BATON_ERR_NOT_WITH_AGENT');
    const v = '15550009005';
    const unknown = await answeredAtOnce(v, handback(v, 'nowhere'));
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { code: string }).code).toBe('BATON_ERR_UNKNOWN_STEP');
  });
});
