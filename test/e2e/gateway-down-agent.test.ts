/**
 * An agent takes a session whose shop call runs beside a send backoff: the gateway refuses the
 * reply before it ("Looking up…"), so the lookup was started while that reply waits, and the shop
 * answered 5xx, so the lookup waits out its own backoff too. The take answers at once and the
 * lookup makes no further attempt: the session is the agent's, as when the lookup is awaited after
 * the sends (test/admin/agent-effects.test.ts). Without the hand-over, the worker kept the baton
 * through the send's backoff and the agent's take was refused as busy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import type { SessionView } from '../../src/model/session.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { takeSession } from '../support/agent-calls.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const ROUTE = 'GET /orders/ORD-12345';

describe.each(HARNESS_BACKENDS)(
  'an agent takes while an effect runs beside a send backoff, %s backend',
  (_name, available, setup) => {
    let shop: FakeShop;
    beforeAll(async () => {
      shop = await startFakeShop();
      shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
    });
    afterAll(async () => {
      await shop?.close();
    });
    // Send backoffs of 8 s, then 16 s; the lookup's of 3 s, then 6 s. A buffer window of 1.5 s,
    // as in gateway-down-effects.test.ts.
    const h = harnessOn(available, setup, { BATON_BUFFER_MS: '1500', BATON_LOCK_TTL_MS: '3000' }, () => ({
      flows: [orderStatusFlow({ apiUrl: shop.url, attempts: 3, backoffMs: 3000 })],
      engine: { sendBackoffMs: 8000, maxSendAttempts: 8 },
    }));

    it.skipIf(!available)(
      'the take answers at once; the lookup makes no attempt after it; the session stays with the agent',
      async () => {
        const user = '15550721201';
        h.graph.failNext(2, { status: 503, to: user });
        shop.script(ROUTE, { status: 503 }, { status: 503 });
        expect((await h.post(webhook([text(user, 'ORD-12345', 1_750_000_000)]))).status).toBe(200);
        await h.until(() => h.graph.requests.some((c) => c.body.to === `+${user}`));
        // The lookup runs beside the send's backoff, and fails its first attempt.
        await shop.waitForCalls(ROUTE, 1, 3_000);
        await new Promise((r) => setTimeout(r, 200));

        const started = Date.now();
        const took = await takeSession(h, user);
        expect(took.status).toBe(200);
        expect(Date.now() - started).toBeLessThan(2_500);

        // Longer than the lookup's backoffs (3 s, then 6 s): no attempt after the take.
        await new Promise((r) => setTimeout(r, 9_500));
        expect(shop.callsTo(ROUTE)).toHaveLength(1);
        const s = (await (await h.admin(`/sessions/${user}`)).json()) as SessionView;
        expect(s.metadata).toMatchObject({ needs_agent: true, agent: 'Ana' });
        expect(s.current_step).toBe('looking_up');
        // What the lookup came to is recorded, never applied: no step after the lookup.
        const kinds = (await h.transitions(user)).map((r) => r.kind);
        expect(kinds).not.toContain('retry');
        expect(
          (await h.transitions(user)).filter((r) => r.from_step === 'looking_up' && r.kind === 'advance'),
        ).toEqual([]);
      },
      40_000,
    );
  },
);
