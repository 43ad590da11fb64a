/**
 * SPEC 1.1, 1.2, 1.4: Redis can come back with data older than PostgreSQL's: a failover to a
 * replica that lagged, or a snapshot (RDB) reloaded after a crash. The session's keys are then
 * those of an earlier moment, fences included, and the webhook redelivered by Meta finds no
 * dedupe marker. Going on from Redis's state forked the session in PostgreSQL (an outside test
 * saw version 4 written twice, a completed order thrown back to its confirmation). The next
 * holder sees the earlier lifetime's fences, finds PostgreSQL ahead, and reloads the session
 * from there; a message PostgreSQL consumed already is not applied again.
 *
 * The rollback is made on the machine's Redis: the session's keys are DUMPed at one moment and
 * RESTOREd later, with the fences marked as granted by another Redis lifetime (a restart).
 *
 * A reply's `sent` status reaches PostgreSQL up to a second after the send (deferred-copies.ts):
 * a rollback within that second loses the record of the send, and SPEC 1.6 then allows that one
 * send to repeat. These tests are about forks and inputs applied twice, so each rollback comes
 * once the replies sent before it are recorded in PostgreSQL (a lagging replica loses the latest
 * writes; the ones here are older).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS, pgQuery, REDIS_URL, servicesUp } from '../support/services.ts';

const distributed = HARNESS_BACKENDS.find(([name]) => name === 'distributed')!;

describe.skipIf(!servicesUp)('a Redis that comes back older than PostgreSQL', () => {
  let h: Harness;
  let redis: Redis;
  let prefix = '';
  let schema = '';
  let drop: () => Promise<void> = async () => undefined;
  beforeAll(async () => {
    const s = distributed[2]();
    drop = s.drop;
    prefix = s.env.BATON_REDIS_PREFIX!;
    schema = s.env.BATON_PG_SCHEMA!;
    // As with a Redis that persists every write (AOF): no intake log to recognise a redelivery.
    h = await startHarness({ ...s.env, BATON_INTAKE_LOG: 'off' });
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await h?.close();
    redis?.disconnect();
    await drop();
  });

  /** Resolves once every reply to `user` is recorded in PostgreSQL as sent (or beyond). */
  async function sendsRecorded(user: string): Promise<void> {
    await h.until(async () => {
      const open = await pgQuery<{ n: string }>(
        schema,
        "SELECT count(*) AS n FROM outbound WHERE channel = $1 AND user_id = $2 AND status IN ('pending', 'sending')",
        [PHONE_ID, user],
      );
      return open[0]?.n === '0' ? true : undefined;
    });
  }

  /** Every key of one session (they share its hash tag). */
  async function sessionKeys(user: string): Promise<string[]> {
    return redis.keys(`${prefix}:{${PHONE_ID}:${user}}:*`);
  }

  it('reloads the session from PostgreSQL: no fork, nothing applied twice, the user goes on', async () => {
    const user = '15550801001';
    const ts = 1_750_000_000;
    expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.post(webhook([text(user, 'Jane', ts + 1)]))).status).toBe(200);
    await h.settled(user, 2);
    // The moment the replica (or snapshot) has.
    const keys = await sessionKeys(user);
    expect(keys.length).toBeGreaterThan(3);
    const dumps = await Promise.all(keys.map(async (k) => [k, await redis.dumpBuffer(k)] as const));
    const tap = webhook([button(user, 'sku_550e', 'Trail Shoe', ts + 2)]);
    expect((await h.post(tap)).status).toBe(200);
    await h.settled(user, 3);
    await h.graph.waitFor(
      (c) => c.body.biz_opaque_callback_data === 'baton:order:collect_shipping_address:3',
    );
    await sendsRecorded(user);

    // Redis comes back older: the session as it was at version 2, under a new lifetime.
    await redis.del(...(await sessionKeys(user)));
    for (const [k, dump] of dumps) if (dump !== null) await redis.restore(k, 0, dump);
    const fence = keys.find((k) => k.endsWith(':fence'))!;
    await redis.hset(fence, 'epoch', 'an-earlier-redis-lifetime');

    // Meta redelivers the tap (its dedupe marker went with the rollback), then the user goes on.
    expect((await h.post(tap)).status).toBe(200);
    await h.until(async () => ((await h.baton.backend.stats()).queueDepth === 0 ? true : undefined));
    expect((await h.post(webhook([text(user, '1 Main St', ts + 3)]))).status).toBe(200);
    const s = await h.settled(user, 4);
    expect(s.current_step).toBe('confirm_order');
    expect(s.data).toEqual({ customer_name: 'Jane', product_id: 'sku_550e', shipping_address: '1 Main St' });
    const records = await h.transitions(user);
    expect(records.map((r) => [r.version, r.kind, r.to_step])).toEqual([
      [1, 'advance', 'ask_name'],
      [2, 'advance', 'choose_product'],
      [3, 'advance', 'collect_shipping_address'],
      [4, 'advance', 'confirm_order'],
    ]);
    const prompts = h.graph.sent
      .filter((c) => c.body.to === `+${user}`)
      .map((c) => c.body.biz_opaque_callback_data);
    expect(prompts).toEqual([
      'baton:order:ask_name:1',
      'baton:order:choose_product:2',
      'baton:order:collect_shipping_address:3',
      'baton:order:confirm_order:4',
    ]);
  }, 60_000);

  /** Puts the dumped keys back in place of the session's keys now, under another Redis lifetime. */
  async function rollBack(
    user: string,
    dumps: ReadonlyArray<readonly [string, Buffer | null]>,
  ): Promise<void> {
    const now = await sessionKeys(user);
    if (now.length > 0) await redis.del(...now);
    for (const [k, dump] of dumps) if (dump !== null) await redis.restore(k, 0, dump);
    const fence = dumps.map(([k]) => k).find((k) => k.endsWith(':fence'));
    if (fence !== undefined) await redis.hset(fence, 'epoch', 'an-earlier-redis-lifetime');
  }

  async function dumpSession(user: string): Promise<Array<readonly [string, Buffer | null]>> {
    return Promise.all((await sessionKeys(user)).map(async (k) => [k, await redis.dumpBuffer(k)] as const));
  }

  const sentTo = (user: string): Array<string | undefined> =>
    h.graph.sent.filter((c) => c.body.to === `+${user}`).map((c) => c.body.biz_opaque_callback_data);

  /** Walks `user` to the address step; resolves with the product tap's webhook. */
  async function atAddress(user: string, ts: number): Promise<unknown> {
    expect((await h.post(webhook([text(user, 'hi', ts)]))).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.post(webhook([text(user, 'Jane', ts + 1)]))).status).toBe(200);
    await h.settled(user, 2);
    const tap = webhook([button(user, 'sku_550e', 'Trail Shoe', ts + 2)]);
    expect((await h.post(tap)).status).toBe(200);
    await h.settled(user, 3);
    await h.graph.waitFor(
      (c) =>
        c.body.biz_opaque_callback_data === 'baton:order:collect_shipping_address:3' &&
        c.body.to === `+${user}`,
    );
    return tap;
  }

  it('one whose lost commits kept the version (a stale tap) is behind too: the tap is not recorded twice', async () => {
    const user = '15550801002';
    const ts = 1_750_000_100;
    await atAddress(user, ts);
    const dumps = await dumpSession(user);
    // An old product button: a stale-input notice, version unchanged.
    const stale = webhook([button(user, 'sku_551a', 'Rain Jacket', ts + 3)]);
    expect((await h.post(stale)).status).toBe(200);
    await h.until(async () => ((await h.transitions(user)).length === 4 ? true : undefined));
    await h.until(async () => (sentTo(user).length === 4 ? true : undefined));
    const before = await h.transitions(user);
    expect(before.at(-1)).toMatchObject({ kind: 'stale_input', version: 3 });
    await sendsRecorded(user);

    await rollBack(user, dumps);
    expect((await h.post(stale)).status).toBe(200);
    await h.until(async () => ((await h.baton.backend.stats()).queueDepth === 0 ? true : undefined));
    expect((await h.post(webhook([text(user, '1 Main St', ts + 4)]))).status).toBe(200);
    await h.settled(user, 4);
    expect((await h.transitions(user)).map((r) => [r.version, r.kind])).toEqual([
      [1, 'advance'],
      [2, 'advance'],
      [3, 'advance'],
      [3, 'stale_input'],
      [4, 'advance'],
    ]);
    await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:confirm_order:4');
    expect(sentTo(user).filter((d) => d?.startsWith('baton:order:collect_shipping_address:3:'))).toHaveLength(
      1,
    );
  }, 60_000);

  it('one that lost the session but kept a message PostgreSQL consumed does not apply it again', async () => {
    const user = '15550801003';
    const ts = 1_750_000_200;
    const tap = await atAddress(user, ts);
    const sends = sentTo(user).length;
    await sendsRecorded(user);
    // Redis comes back without this session at all; Meta redelivers the product tap.
    await redis.del(...(await sessionKeys(user)));
    expect((await h.post(tap)).status).toBe(200);
    await h.until(async () => ((await h.baton.backend.stats()).queueDepth === 0 ? true : undefined));
    expect((await h.post(webhook([text(user, '1 Main St', ts + 4)]))).status).toBe(200);
    await h.settled(user, 4);
    expect((await h.transitions(user)).map((r) => [r.version, r.kind])).toEqual([
      [1, 'advance'],
      [2, 'advance'],
      [3, 'advance'],
      [4, 'advance'],
    ]);
    await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:confirm_order:4');
    expect(sentTo(user)).toHaveLength(sends + 1);
  }, 60_000);
});
