/**
 * A gateway refusing sends does not hold a session's effects back (outside test QA13-F1): while
 * the reply before it waits out its backoff, an effect the user's message started (the shop's
 * order lookup) runs, its result is applied, and its replies queue behind the unsent one. Before,
 * the effect ran only once every reply before it was out: in QA's run the lookup was made 49 s
 * after the shop was up, the user's answer a minute late. A reset sent meanwhile applies at once,
 * and the gateway is not asked again before its backoff is over (outside test QA14).
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
    // Backoffs of 4, 8, 16 s...: far longer than the lookup may wait. A buffer window of 1.5 s:
    // an effect's result is stored before the window of the message that started it is over
    // (a release then would bring the session back before the backoff is: outside test QA15).
    const h = harnessOn(available, setup, { BATON_BUFFER_MS: '1500' }, () => ({
      flows: [orderStatusFlow({ apiUrl: shop.url, backoffMs: 20 })],
      engine: { sendBackoffMs: 4000, maxSendAttempts: 8 },
    }));
    const now = () => Math.floor(Date.now() / 1000);
    const textsTo = (user: string) =>
      h.graph.sent
        .filter((c) => c.body.to === `+${user}`)
        .map((c) => (typeof c.body.text === 'object' ? c.body.text.body : c.body.type));

    it.skipIf(!available)(
      'runs the lookup while the reply before it waits out its backoff; the replies go in order once the gateway takes them',
      async () => {
        const user = '15550721101';
        // Graph answers 503 to this user's next two sends.
        h.graph.failNext(2, { status: 503, to: user });
        expect((await h.post(webhook([text(user, 'ORD-12345', now())]))).status).toBe(200);
        await h.until(() => h.graph.requests.some((c) => c.body.to === `+${user}`));
        // The shop is asked at once, not after the backoff (4 s, then 8 s).
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
          .filter((c) => c.body.to === `+${user}`)
          .map((c) => c.body.biz_opaque_callback_data);
        expect(new Set(callbacks).size).toBe(callbacks.length);
        expect(shop.callsTo('GET /orders/ORD-12345')).toHaveLength(1);
        // The result cut the wait short for itself, not for the gateway: the second attempt came
        // when the backoff was over (outside test QA14-F2: a 429's Retry-After was cut to 0.6 s).
        const [first, second] = h.graph.requests.filter((c) => c.body.to === `+${user}`);
        expect(second!.at - first!.at).toBeGreaterThanOrEqual(3_900);
      },
      60_000,
    );

    it.skipIf(!available)(
      'a reset sent while the lookup runs beside the backoff applies at once; the lookup is not tried again (outside test QA14-F1)',
      async () => {
        const user = '15550721102';
        shop.orders.set('ORD-12346', shopOrder('ORD-12346'));
        // The shop holds the lookup, then fails it (a retryable 503: without the reset, tried
        // again 20 ms later); Graph answers 503 to this user's next two sends.
        shop.script('GET /orders/ORD-12346', { status: 503 });
        const release = shop.hold('GET /orders/ORD-12346');
        h.graph.failNext(2, { status: 503, to: user });
        try {
          expect((await h.post(webhook([text(user, 'ORD-12346', now())]))).status).toBe(200);
          await shop.waitForCalls('GET /orders/ORD-12346', 1, 3_000);
          const posted = Date.now();
          expect((await h.post(webhook([text(user, 'start over', now())]))).status).toBe(200);
          // Applied within moments, while the lookup is still held and the reply still unsent.
          await h.until(async () => (await h.session(user))?.current_step === 'ask_order', 5_000);
          expect(Date.now() - posted).toBeLessThan(5_000);
          expect(textsTo(user)).toEqual([]);
        } finally {
          release();
        }
        // Its result is recorded, not applied; once Graph takes them, the user gets "Looking up"
        // and the question the reset asks, nothing about the order they left.
        await h.until(() => textsTo(user).length >= 2, 40_000);
        await new Promise((r) => setTimeout(r, 500));
        const texts = textsTo(user);
        expect(texts[0]).toBe('Looking up ORD-12346…');
        expect(texts.some((t) => t?.startsWith('Order ORD-12346'))).toBe(false);
        expect(await h.session(user)).toMatchObject({ current_step: 'ask_order' });
        // No attempt after the reset: the one in flight was the only one.
        expect(shop.callsTo('GET /orders/ORD-12346')).toHaveLength(1);
      },
      60_000,
    );
  },
);
