/**
 * A gateway refusing sends does not hold a session's effects back (outside test QA13-F1): while
 * the reply before it waits out its backoff, an effect the user's message started (the shop's
 * order lookup) runs, its result is applied, and its replies queue behind the unsent one. Before,
 * the effect ran only once every reply before it was out: in QA's run the lookup was made 49 s
 * after the shop was up, the user's answer a minute late.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

describe.each(HARNESS_BACKENDS)(
  'an effect while the gateway refuses sends, %s backend',
  (_name, available, setup) => {
    let shop: FakeShop;
    beforeAll(async () => {
      shop = await startFakeShop();
      shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
    });
    afterAll(async () => {
      await shop?.close();
    });
    // Backoffs of 4, 8, 16 s...: far longer than the lookup may wait.
    const h = harnessOn(available, setup, {}, () => ({
      flows: [orderStatusFlow({ apiUrl: shop.url, backoffMs: 20 })],
      engine: { sendBackoffMs: 4000, maxSendAttempts: 8 },
    }));
    const now = () => Math.floor(Date.now() / 1000);
    const textsTo = (user: string) =>
      h.graph.sent
        .filter((c) => c.body.to === user)
        .map((c) => (typeof c.body.text === 'object' ? c.body.text.body : c.body.type));

    it.skipIf(!available)(
      'runs the lookup while the reply before it waits out its backoff; the replies go in order once the gateway takes them',
      async () => {
        const user = '15550721101';
        // Graph answers 503 to this user's next three sends.
        h.graph.failNext(3, { status: 503, to: user });
        expect((await h.post(webhook([text(user, 'ORD-12345', now())]))).status).toBe(200);
        await h.until(() => h.graph.requests.some((c) => c.body.to === user));
        // The shop is asked at once, not after the backoff (4 s, then 8 s, then 16 s).
        await h.until(() => shop.callsTo('GET /orders/ORD-12345').length > 0, 3_000);
        expect(textsTo(user)).toEqual([]);
        // Its result is applied with nothing sent yet: the state goes on.
        await h.until(async () => (await h.session(user))?.current_step === 'show_status', 3_000);
        expect(await h.session(user)).toMatchObject({ data: { order: 'ORD-12345' } });
        expect(textsTo(user)).toEqual([]);
        // Once Graph takes them: "Looking up" first, then what the lookup found, each once.
        await h.until(() => textsTo(user).length >= 3, 40_000);
        const texts = textsTo(user);
        expect(texts[0]).toBe('Looking up ORD-12345…');
        expect(texts.slice(1).some((t) => t?.startsWith('Order ORD-12345'))).toBe(true);
        const callbacks = h.graph.sent
          .filter((c) => c.body.to === user)
          .map((c) => c.body.biz_opaque_callback_data);
        expect(new Set(callbacks).size).toBe(callbacks.length);
        expect(shop.callsTo('GET /orders/ORD-12345')).toHaveLength(1);
      },
      60_000,
    );
  },
);
