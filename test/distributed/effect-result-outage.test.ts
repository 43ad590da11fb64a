/**
 * The shop answers an effect while Redis is away: the answer is kept and stored once Redis is
 * back, and applied; it does not use up the effect's attempts. Before, storing the result failed,
 * the turn failed with it, and the next turn called the shop again: three 200s from the shop, and
 * the user was told the cancel had failed (outside test QA17-F1).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.ts';
import { DATABASE_URL, describeServices, dropIsolation, isolation } from '../support/services.ts';

const ROUTE = 'GET /orders/ORD-12345';

describeServices('an effect answered while Redis is away', () => {
  let shop: FakeShop;
  let redis: PrivateRedis;
  let h: Harness;
  const iso = isolation();
  beforeAll(async () => {
    shop = await startFakeShop();
    shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
    redis = await startPrivateRedis();
    h = await startHarness(
      {
        REDIS_URL: redis.url,
        DATABASE_URL,
        BATON_REDIS_PREFIX: iso.prefix.replace(/-/g, '_'),
        BATON_PG_SCHEMA: iso.schema,
        BATON_BUFFER_MS: '0',
      },
      { flows: [orderStatusFlow({ apiUrl: shop.url, attempts: 3, backoffMs: 200 })] },
    );
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await redis?.stop();
    await shop?.close();
    await dropIsolation(null, iso.schema);
  });

  it('is stored once Redis is back and applied: one call to the shop, no failure', async () => {
    const user = '15550741001';
    const release = shop.hold(ROUTE);
    expect((await h.post(webhook([text(user, 'ORD-12345', Math.floor(Date.now() / 1000))]))).status).toBe(
      200,
    );
    await shop.waitForCalls(ROUTE, 1, 10_000);
    // Redis goes while the shop thinks; the shop answers 200 while it is away.
    await redis.kill();
    release();
    await new Promise((r) => setTimeout(r, 1_500));
    await redis.restart();
    await h.until(async () => (await h.session(user))?.current_step === 'show_status', 20_000);
    expect(shop.callsTo(ROUTE)).toHaveLength(1);
    const steps = (await h.transitions(user)).map((r) => r.to_step);
    expect(steps).not.toContain('lookup_failed');
  }, 60_000);
});
