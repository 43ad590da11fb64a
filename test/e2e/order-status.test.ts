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
import { button, image, PHONE_ID, text, webhook } from '../support/payloads.ts';

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
    const sentTo = () => h.graph.sent.filter((c) => c.body.to === `+${u}`);
    expect((await h.post(webhook([text(u, 'Hola, quiero saber de mi pedido', T0)]))).status).toBe(200);
    await h.settled(u, 1);
    expect((await h.post(webhook([text(u, 'ord-12345', T0 + 1)]))).status).toBe(200);
    await h.until(async () => (await h.session(u))?.current_step === 'show_status');
    const list = await h.graph.waitFor((c) => c.body.to === `+${u}` && c.body.type === 'interactive');
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
    // Why it waits, for the agent: the reason the flow gave (outside test A5).
    expect(s.metadata.handoff_reason).toBe('asked for a human');
    const inbox = (await (await h.admin(`/inbox?channel=${PHONE_ID}`)).json()) as {
      sessions: Array<{ wa_id: string; metadata: { handoff_reason?: string } }>;
    };
    expect(inbox.sessions.map((x) => x.wa_id)).toContain(u);
    expect(inbox.sessions.find((x) => x.wa_id === u)?.metadata.handoff_reason).toBe('asked for a human');
    const cookie = await h.dashboardCookie();
    for (const path of ['/admin/inbox', `/admin/session?wa_id=${u}&channel=${PHONE_ID}`]) {
      const page = await (await fetch(`${h.url}${path}`, { headers: { cookie } })).text();
      expect(page).toContain('asked for a human');
    }
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

  it('what users really send: a number with other words in one burst, a message while the cancel runs, a reset in Spanish, an agent who would hand back at "done"', async () => {
    const textsTo = (u: string): string[] =>
      h.graph.sent
        .filter((c) => c.body.to === `+${u}`)
        .map((c) =>
          typeof c.body.text === 'object'
            ? (c.body.text.body ?? '')
            : (c.body.interactive?.body?.text ?? String(c.body.type)),
        );
    const at = (u: string, step: string) => h.until(async () => (await h.session(u))?.current_step === step);
    shop.orders.set('ORD-20003', shopOrder('ORD-20003'));
    shop.orders.set('ORD-20005', shopOrder('ORD-20005'));
    shop.orders.set('ORD-50002', shopOrder('ORD-50002'));

    // SPEC 5b: a first text that is itself an order number is looked up, and what the user sent
    // after it in the same burst waits for the lookup, then is applied at the step it led to
    // (outside test QA67-F1: "ORD-20003" + "thanks" was one input, "ORD-20003 thanks", and the
    // user was asked for the number just sent).
    const a = '15550008101';
    await h.post(webhook([text(a, 'ORD-20003', T0), text(a, 'thanks', T0)]));
    const shown = await h.settled(a, 3);
    expect(shown.current_step).toBe('show_status');
    expect(shown.metadata.retry_count).toBe(1); // "thanks" at the status list: asked what next
    expect(shop.callsTo('GET /orders/ORD-20003')).toHaveLength(1);
    // The language is the first text's: "hello" then "hola" is English ("hello hola" was Spanish).
    const l = '15550008108';
    await h.post(webhook([text(l, 'hello', T0), text(l, 'hola', T0)]));
    expect((await h.settled(l, 2)).data).toEqual({ lang: 'en' });
    // A session begun with a photo takes its language from the first text all the same (outside
    // test QA122-F2: a photo, then "hola", was English for good), asked again in it.
    const p = '15550008109';
    await h.post(webhook([image(p, T0)]));
    await h.settled(p, 1);
    expect((await h.session(p))?.data).toEqual({});
    await h.post(webhook([text(p, 'hola', T0 + 1)]));
    const greeted = await h.settled(p, 2);
    expect(greeted).toMatchObject({ current_step: 'ask_order', data: { lang: 'es' } });
    expect(greeted.metadata.retry_count).toBe(0);
    await h.until(async () => textsTo(p).length === 2);
    expect(textsTo(p)[1]).toMatch(/^¡Hola! ¿Qué pedido/);
    await h.post(webhook([text(p, 'hello', T0 + 2)]));
    expect((await h.settled(p, 3)).metadata.retry_count).toBe(1);
    expect((await h.session(p))?.data).toEqual({ lang: 'es' });
    // The text must be the number once trimmed (any case); one that only mentions it is no answer
    // (outside test QA39-F1). Each text is an input of its own at ask_order: "it is" is a retry,
    // and the number after it is looked up.
    const b = '15550008102';
    await h.post(webhook([text(b, 'hi', T0)]));
    await at(b, 'ask_order');
    await h.post(webhook([text(b, 'it is', T0 + 1), text(b, 'ord-20005', T0 + 1)]));
    await at(b, 'show_status');
    expect((await h.session(b))?.data).toMatchObject({ order: 'ORD-20005' });
    // The number alone, in any case and with spaces around it, is looked up, upper case.
    const b2 = '15550008107';
    await h.post(webhook([text(b2, 'hi', T0)]));
    await at(b2, 'ask_order');
    await h.post(webhook([text(b2, '  ord-20003 ', T0 + 2)]));
    await at(b2, 'show_status');
    expect((await h.session(b2))?.data).toMatchObject({ order: 'ORD-20003' });

    // A number glued to more of a reference is not that number: asked again.
    const g = '15550008106';
    await h.post(webhook([text(g, 'hi', T0)]));
    await at(g, 'ask_order');
    await h.post(webhook([text(g, 'ORD-20003-6', T0 + 1)]));
    expect((await h.settled(g, 2)).metadata.retry_count).toBe(1);

    // A message while the cancel is in flight waits for it; the user is still told it is done.
    const c = '15550008103';
    await h.post(webhook([text(c, 'ORD-50002', T0)]));
    await at(c, 'show_status');
    await h.post(webhook([button(c, 'cancel_order', 'Cancel it', T0 + 1)]));
    await at(c, 'confirm_cancel');
    const release = shop.hold('POST /orders/ORD-50002/cancel');
    await h.post(webhook([button(c, 'cancel_yes', 'Yes', T0 + 2)]));
    await shop.waitForCalls('POST /orders/ORD-50002/cancel', 1);
    await h.post(webhook([text(c, 'ok thanks', T0 + 3)]));
    release();
    await h.settled(c, 6);
    const told = textsTo(c);
    const cancelled = told.indexOf('Order ORD-50002 is cancelled. Send any message to check another order.');
    expect(cancelled).toBeGreaterThan(-1);
    expect(told.slice(cancelled + 1)).toEqual([
      'Hi! Which order would you like to check? Send its number, like ORD-12345.',
    ]);

    // A reset keeps the language the user greeted in.
    const d = '15550008104';
    await h.post(webhook([text(d, 'hola', T0)]));
    await at(d, 'ask_order');
    await h.post(webhook([text(d, 'reset', T0 + 1)]));
    await h.settled(d, 2);
    expect((await h.session(d))?.data).toEqual({ lang: 'es' });
    expect(textsTo(d).at(-1)).toMatch(/^¡Hola!/);

    // "done" says an order was cancelled: an agent cannot hand a session back there.
    const e = '15550008105';
    await h.post(webhook([text(e, 'hi', T0)]));
    await at(e, 'ask_order');
    const take = await h.admin(`/sessions/${e}/agent?channel=${PHONE_ID}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: 'Ana' }),
    });
    expect(take.status).toBe(200);
    const back = await h.admin(`/sessions/${e}/agent?channel=${PHONE_ID}`, {
      method: 'DELETE',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ step: 'done' }),
    });
    expect(back.status).toBe(400);
    expect(textsTo(e).some((t) => /is cancelled/.test(t))).toBe(false);
  });
});
