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
        expect(asked.filter((c) => c.body.to === waId || c.body.to === `+${waId}`)).toHaveLength(1);
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

    it.skipIf(!available || name !== 'distributed')(
      'finds the session through PostgreSQL when Redis has lost the binding',
      async () => {
        const [waId, userId] = ['15550802021', 'US.13491208655300000004'];
        expect((await h.post(textFrom({ waId, userId }, 'wamid.ALONE.8', 'hi', TS))).status).toBe(200);
        await h.settled(waId, 1);
        const redis = new Redis(REDIS_URL);
        try {
          const bindings = await redis.keys(`*:useralias:*:${userId}`);
          expect(bindings).toHaveLength(1);
          await redis.del(...bindings);
        } finally {
          redis.disconnect();
        }
        expect((await h.post(textFrom({ userId }, 'wamid.ALONE.9', 'Jo Park', TS + 5))).status).toBe(200);
        expect(await h.settled(waId, 2)).toMatchObject({ data: { customer_name: 'Jo Park' } });
        expect(await h.baton.backend.findSessions(userId)).toHaveLength(1);
      },
      30_000,
    );
  },
);
