/**
 * A user who adopts a WhatsApp username may from then on reach the business without a phone
 * number: Meta sends `from_user_id` (the business-scoped user id) and omits `from` and `wa_id`.
 * Such a message belongs to the session of the phone number that user id last came with, not to
 * a new session that asks the user's name again (outside finding S3). A message with a phone
 * number keeps SPEC's key, the number. Both stores, real HTTP; on the distributed one, also after
 * Redis has lost the binding (PostgreSQL's sessions answer).
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { envelopeWith } from '../support/payloads.ts';
import { HARNESS_BACKENDS, REDIS_URL } from '../support/services.ts';
import { harnessOn } from '../support/harness-on.ts';

const TS = 1_750_000_000;

/** Deletes the user id's binding from Redis, as a Redis that lost it would have. */
async function forgetBinding(userId: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    const bindings = await redis.keys(`*:useralias:*:${userId}`);
    expect(bindings).toHaveLength(1);
    await redis.del(...bindings);
  } finally {
    redis.disconnect();
  }
}

/** A text from a user named by phone number and user id, or (no phone) by the user id alone. */
function textFrom(ids: { waId?: string; userId: string }, id: string, body: string, ts: number): unknown {
  const contact = ids.waId === undefined ? { user_id: ids.userId } : { wa_id: ids.waId, user_id: ids.userId };
  const message = {
    ...(ids.waId === undefined ? {} : { from: ids.waId }),
    from_user_id: ids.userId,
    id,
    timestamp: String(ts),
    type: 'text',
    text: { body },
  };
  return envelopeWith({ contacts: [{ profile: { name: 'Kim' }, ...contact }], messages: [message] });
}

describe.each(HARNESS_BACKENDS)(
  'a user id without its phone number on the %s backend',
  (name, available, setup) => {
    const h = harnessOn(available, setup);

    it.skipIf(!available)(
      'goes on in the phone number’s session: the answer is taken, the name not asked again',
      async () => {
        const [waId, userId] = ['15550802001', 'US.13491208655300000001'];
        expect((await h.post(textFrom({ waId, userId }, 'wamid.ALONE.1', 'hi', TS))).status).toBe(200);
        await h.settled(waId, 1);
        await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:ask_name:1');

        // The user adopts a username: from now on, no phone number.
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.2', 'Jane Doe', TS + 5))).status).toBe(200);
        const s = await h.settled(waId, 2);
        expect(s).toMatchObject({ wa_id: waId, data: { customer_name: 'Jane Doe' } });
        await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:order:choose_product:2');
        expect(await h.baton.backend.findSessions(userId)).toHaveLength(1);
        // The name was asked once, and every reply went to the number the session knows.
        const asked = h.graph.requests.filter(
          (c) => c.body.biz_opaque_callback_data === 'baton:order:ask_name:1',
        );
        expect(asked.filter((c) => c.body.to === `+${waId}`)).toHaveLength(1);
        expect(h.graph.requests.filter((c) => c.body.to === userId)).toHaveLength(0);
      },
      30_000,
    );

    it.skipIf(!available)(
      'a user id never seen with a phone number keys its own session (SPEC), and keeps it',
      async () => {
        const userId = 'US.13491208655300000002';
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.3', 'hi', TS))).status).toBe(200);
        await h.settled(userId, 1);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.4', 'Kim Lee', TS + 5))).status).toBe(200);
        const s = await h.settled(userId, 2);
        expect(s).toMatchObject({ data: { customer_name: 'Kim Lee' } });
        expect(await h.baton.backend.findSessions(userId)).toHaveLength(1);
      },
      30_000,
    );

    it.skipIf(!available)(
      'follows the number the user id came with last: a new number keys a new session (SPEC), and the id alone goes there',
      async () => {
        const [oldNumber, newNumber, userId] = ['15550802011', '15550802012', 'US.13491208655300000003'];
        expect((await h.post(textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.5', 'hi', TS))).status).toBe(
          200,
        );
        await h.settled(oldNumber, 1);
        expect(
          (await h.post(textFrom({ waId: newNumber, userId }, 'wamid.ALONE.6', 'hi', TS + 5))).status,
        ).toBe(200);
        await h.settled(newNumber, 1);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.7', 'Ana Ruiz', TS + 10))).status).toBe(200);
        expect(await h.settled(newNumber, 2)).toMatchObject({ data: { customer_name: 'Ana Ruiz' } });
        expect(await h.session(oldNumber)).toMatchObject({ metadata: { version: 1 }, data: {} });
      },
      30_000,
    );

    it.skipIf(!available)(
      'a redelivered message named by user id alone is a duplicate, though its user id came with a number since (outside QA)',
      async () => {
        const [waId, userId] = ['15550802031', 'US.13491208655300000005'];
        const first = textFrom({ userId }, 'wamid.ALONE.10', 'hi', TS);
        expect((await h.post(first)).status).toBe(200);
        await h.settled(userId, 1);
        // The user now writes with a number (SPEC: a session of its own), in the same second.
        expect((await h.post(textFrom({ waId, userId }, 'wamid.ALONE.11', 'hello', TS))).status).toBe(200);
        await h.settled(waId, 1);
        // Meta delivers the first webhook again.
        const again = await h.post(first);
        expect(await again.json()).toEqual({ received: 0, duplicates: 1 });
        await new Promise((r) => setTimeout(r, 300));
        expect(await h.session(waId)).toMatchObject({ metadata: { version: 1 }, data: {} });
        expect(await h.session(userId)).toMatchObject({ metadata: { version: 1 }, data: {} });
      },
      30_000,
    );

    it.skipIf(!available)(
      'an old number’s message, redelivered or late, does not take the user id back to it (outside QA)',
      async () => {
        const [oldNumber, newNumber, userId] = ['15550802041', '15550802042', 'US.13491208655300000006'];
        const fromOld = textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.12', 'hi', TS);
        expect((await h.post(fromOld)).status).toBe(200);
        await h.settled(oldNumber, 1);
        expect(
          (await h.post(textFrom({ waId: newNumber, userId }, 'wamid.ALONE.13', 'hi', TS + 5))).status,
        ).toBe(200);
        await h.settled(newNumber, 1);
        // The old number's first webhook again, and a message of it that comes late.
        expect(await (await h.post(fromOld)).json()).toEqual({ received: 0, duplicates: 1 });
        expect(
          (await h.post(textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.14', 'Old Name', TS + 1))).status,
        ).toBe(200);
        await h.settled(oldNumber, 2);
        // The user id alone still goes to the new number's session.
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.15', 'Ana Ruiz', TS + 10))).status).toBe(200);
        expect(await h.settled(newNumber, 2)).toMatchObject({ data: { customer_name: 'Ana Ruiz' } });
        // The admin API finds, by the user id, the session the user wrote to last.
        expect(await (await h.admin(`/sessions/${userId}`)).json()).toMatchObject({ wa_id: newNumber });
      },
      30_000,
    );

    it.skipIf(!available || name !== 'distributed')(
      'without the Redis binding, the number’s session the user wrote to last wins over one an agent touched since (outside QA)',
      async () => {
        const [oldNumber, newNumber, userId] = ['15550802051', '15550802052', 'US.13491208655300000007'];
        expect((await h.post(textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.16', 'hi', TS))).status).toBe(
          200,
        );
        await h.settled(oldNumber, 1);
        expect(
          (await h.post(textFrom({ waId: newNumber, userId }, 'wamid.ALONE.17', 'hi', TS + 5))).status,
        ).toBe(200);
        await h.settled(newNumber, 1);
        // An agent resets the old session: it is the one PostgreSQL updated last.
        expect((await h.admin(`/sessions/${oldNumber}/reset`, { method: 'POST' })).status).toBe(200);
        await forgetBinding(userId);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.18', 'Jo Park', TS + 10))).status).toBe(200);
        expect(await h.settled(newNumber, 2)).toMatchObject({ data: { customer_name: 'Jo Park' } });
      },
      30_000,
    );

    it.skipIf(!available).each([
      ['the number and then the user id alone', false, '15550802061', 'US.13491208655300000008'],
      ['the user id alone and then the number', true, '15550802091', 'US.13491208655300000011'],
    ])(
      'one webhook with %s: one session',
      async (_order, aloneFirst, waId, userId) => {
        // The first message starts the conversation, the second answers its question.
        const withNumber = { from: waId };
        const alone = {};
        const [first, second] = aloneFirst ? [alone, withNumber] : [withNumber, alone];
        const message = (m: { from?: string }, i: number): Record<string, unknown> => ({
          ...(m.from === undefined ? {} : { from: m.from }),
          from_user_id: userId,
          id: `wamid.ONE.${userId}.${i}`,
          timestamp: String(TS + i),
          type: 'text',
          text: { body: i === 0 ? 'hi' : 'Lee Chan' },
        });
        const body = envelopeWith({
          contacts: [
            { profile: { name: 'Kim' }, wa_id: waId },
            { profile: { name: 'Kim' }, user_id: userId },
          ],
          messages: [message(first, 0), message(second, 1)],
        });
        expect(await (await h.post(body)).json()).toEqual({ received: 2, duplicates: 0 });
        expect(await h.settled(waId, 2)).toMatchObject({ data: { customer_name: 'Lee Chan' } });
        expect(await h.baton.backend.findSessions(userId)).toHaveLength(1);
      },
      30_000,
    );

    it.skipIf(!available)(
      'a user id that wrote alone first, then with a number: its messages go on in the number’s session',
      async () => {
        const [waId, userId] = ['15550802071', 'US.13491208655300000009'];
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.21', 'hi', TS))).status).toBe(200);
        await h.settled(userId, 1);
        expect((await h.post(textFrom({ waId, userId }, 'wamid.ALONE.22', 'hi', TS + 5))).status).toBe(200);
        await h.settled(waId, 1);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.23', 'Mo Diaz', TS + 10))).status).toBe(200);
        expect(await h.settled(waId, 2)).toMatchObject({ data: { customer_name: 'Mo Diaz' } });
        // The session keyed on the user id stays what the id names (the console links it so);
        // the number's session is found by the number.
        expect(await (await h.admin(`/sessions/${userId}`)).json()).toMatchObject({ wa_id: userId });
      },
      30_000,
    );

    it.skipIf(!available)(
      'a number change within one second moves the user id too',
      async () => {
        const [oldNumber, newNumber, userId] = ['15550802081', '15550802082', 'US.13491208655300000010'];
        expect((await h.post(textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.24', 'hi', TS))).status).toBe(
          200,
        );
        await h.settled(oldNumber, 1);
        expect((await h.post(textFrom({ waId: newNumber, userId }, 'wamid.ALONE.25', 'hi', TS))).status).toBe(
          200,
        );
        await h.settled(newNumber, 1);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.26', 'Al Roy', TS + 1))).status).toBe(200);
        expect(await h.settled(newNumber, 2)).toMatchObject({ data: { customer_name: 'Al Roy' } });
      },
      30_000,
    );

    it.skipIf(!available || name !== 'distributed')(
      'a binding PostgreSQL answered for is moved only by a later message (outside QA)',
      async () => {
        const [oldNumber, newNumber, userId] = ['15550802101', '15550802102', 'US.13491208655300000012'];
        expect((await h.post(textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.29', 'hi', TS))).status).toBe(
          200,
        );
        await h.settled(oldNumber, 1);
        expect(
          (await h.post(textFrom({ waId: newNumber, userId }, 'wamid.ALONE.30', 'hi', TS + 50))).status,
        ).toBe(200);
        await h.settled(newNumber, 1);
        await forgetBinding(userId);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.31', 'Jo Park', TS + 60))).status).toBe(200);
        await h.settled(newNumber, 2);
        // A late message from the old number, sent before the change.
        expect(
          (await h.post(textFrom({ waId: oldNumber, userId }, 'wamid.ALONE.32', 'x', TS + 20))).status,
        ).toBe(200);
        await h.settled(oldNumber, 2);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.33', 'sku_550e', TS + 70))).status).toBe(200);
        expect((await h.settled(newNumber, 3)).metadata.version).toBe(3);
      },
      30_000,
    );

    it.skipIf(!available || name !== 'distributed')(
      'finds the session through PostgreSQL when Redis has lost the binding',
      async () => {
        const [waId, userId] = ['15550802021', 'US.13491208655300000004'];
        expect((await h.post(textFrom({ waId, userId }, 'wamid.ALONE.8', 'hi', TS))).status).toBe(200);
        await h.settled(waId, 1);
        await forgetBinding(userId);
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.9', 'Jo Park', TS + 5))).status).toBe(200);
        expect(await h.settled(waId, 2)).toMatchObject({ data: { customer_name: 'Jo Park' } });
        expect(await h.baton.backend.findSessions(userId)).toHaveLength(1);
      },
      30_000,
    );
  },
);
