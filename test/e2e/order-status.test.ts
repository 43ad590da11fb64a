/**
 * The order-status example (SPEC 5b) end to end over HTTP, embedded: signed webhooks in, real
 * Cloud API sends out to a fake Graph, the shop's API played by a real local HTTP server. Checks
 * what the user receives (the status list; the map as an image, then the events with buttons,
 * tagged `#2`), the language, and that a hand-off lands the session in the agents' inbox.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook } from '../support/payloads.ts';

let h: Harness;
let shop: FakeShop;
beforeAll(async () => {
  shop = await startFakeShop();
  shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
  h = await startHarness({}, { flows: [orderStatusFlow({ apiUrl: shop.url, backoffMs: 20 })] });
});
afterAll(async () => {
  await h?.close();
  await shop?.close();
});

const T0 = 1_750_000_000;

describe('order_status over HTTP (embedded)', () => {
  it('a Spanish conversation: lookup, status list, tracking with the map as an image, hand-off to the inbox', async () => {
    const u = '15550008001';
    const sentTo = () => h.graph.sent.filter((c) => c.body.to === u);
    expect((await h.post(webhook([text(u, 'Hola, quiero saber de mi pedido', T0)]))).status).toBe(200);
    await h.settled(u, 1);
    expect((await h.post(webhook([text(u, 'ord-12345', T0 + 1)]))).status).toBe(200);
    await h.until(async () => (await h.session(u))?.current_step === 'show_status');
    const list = await h.graph.waitFor((c) => c.body.to === u && c.body.type === 'interactive');
    expect(list.body.interactive?.type).toBe('list');
    expect(list.body.interactive?.action?.sections?.flatMap((s) => s.rows.map((r) => r.id))).toEqual([
      'track',
      'cancel_order',
      'another',
      'human',
    ]);
    const texts = sentTo().map((c) => (typeof c.body.text === 'object' ? c.body.text.body : c.body.text));
    expect(texts).toContain('Buscando ORD-12345…');
    expect(texts.some((t) => t?.startsWith('Pedido ORD-12345: in transit.'))).toBe(true);
    expect(shop.callsTo('GET /orders/ORD-12345')[0]!.key).toMatch(/^fx_/);

    const before = sentTo().length;
    await h.post(webhook([button(u, 'track', 'Seguirlo', T0 + 2, list.providerMessageId)]));
    await h.until(() => sentTo().length >= before + 2);
    const [map, events] = sentTo().slice(before);
    expect(map!.body.type).toBe('image');
    expect(map!.body.image).toMatchObject({ link: 'https://maps.example/track/ORD-12345' });
    expect(events!.body.interactive?.type).toBe('button');
    expect(events!.body.biz_opaque_callback_data).toBe(`${map!.body.biz_opaque_callback_data}#2`);

    await h.post(webhook([button(u, 'human', 'Hablar con alguien', T0 + 3, events!.providerMessageId)]));
    const s = await h.until(async () => {
      const x = await h.session(u);
      return x?.metadata.needs_agent ? x : undefined;
    });
    expect(s.current_step).toBe('tracking');
    const inbox = (await (await h.admin(`/inbox?channel=${PHONE_ID}`)).json()) as {
      sessions: Array<{ wa_id: string }>;
    };
    expect(inbox.sessions.map((x) => x.wa_id)).toContain(u);
    // The agent's view of the conversation holds messages only: the lookup effect and its
    // result are not among them.
    const convo = (await (await h.admin(`/sessions/${u}/messages?channel=${PHONE_ID}&limit=100`)).json()) as {
      messages: Array<{ direction: string; type: string; text?: string }>;
    };
    expect(convo.messages.length).toBeGreaterThan(4);
    expect(convo.messages.filter((m) => m.type === 'effect_result' || /effect/.test(m.text ?? ''))).toEqual(
      [],
    );
    expect(convo.messages.filter((m) => m.direction === 'in').map((m) => m.type)).toEqual([
      'text',
      'text',
      'button_reply',
      'button_reply',
    ]);
    const callbacks = sentTo().map((c) => c.body.biz_opaque_callback_data);
    expect(new Set(callbacks).size).toBe(callbacks.length);
  });
});
