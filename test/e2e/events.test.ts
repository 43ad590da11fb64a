/**
 * Events over the admin API (`POST /admin/api/sessions/:waId/events`) on both backends: what the
 * bot's own systems tell a session is stored like a message, applied once in order under the
 * session's baton, and its prompt is sent; bad input is refused with a clear 4xx and stores
 * nothing.
 */
import { describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { eventsSpec } from '../support/event-flow.ts';
import { harnessOn } from '../support/harness-on.ts';
import { button, PHONE_ID, text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const T0 = 1_750_000_000;

const shop = defineFlow(eventsSpec);

describe.each(HARNESS_BACKENDS)('events over the admin API, %s backend', (_name, available, setup) => {
  // The users write with fixed 2025 timestamps and an event is stamped with today's clock: a
  // ten-year session TTL keeps their sessions alive across the gap.
  const h = harnessOn(available, setup, { BATON_SESSION_TTL: '3650d' }, { flows: [shop] });
  const post = (user: string, body: unknown, query = '') =>
    h.admin(`/sessions/${user}/events${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const sentTo = (user: string) =>
    h.graph.sent.filter((c) => c.body.to === `+${user}`).map((c) => c.body.biz_opaque_callback_data);
  const atMenu = async (user: string) => {
    expect((await h.post(webhook([text(user, 'hi', T0)]))).status).toBe(200);
    await h.settled(user, 1);
    expect((await h.post(webhook([text(user, 'Ana', T0 + 1)]))).status).toBe(200);
    await h.settled(user, 2);
  };

  it.skipIf(!available)(
    'moves the session to the step, sends its prompt once, however often it is posted',
    async () => {
      const user = '15550713001';
      await atMenu(user);
      // The same event posted three times at once (a retrying caller): applied once.
      const answers = await Promise.all(
        [1, 2, 3].map(() =>
          post(user, { name: 'order_shipped', id: 'ship-ORD-7', payload: { order: 'ORD-7' } }),
        ),
      );
      expect(answers.map((r) => r.status)).toEqual([202, 202, 202]);
      const bodies = (await Promise.all(answers.map((r) => r.json()))) as Array<{
        id: string;
        duplicate: boolean;
      }>;
      expect(bodies.filter((b) => !b.duplicate)).toHaveLength(1);
      const ids = new Set(bodies.map((b) => b.id));
      expect(ids.size).toBe(1);
      const [id] = [...ids];
      expect(id).toMatch(/^ev:ship-ORD-7~[\w-]{12}$/);
      const s = await h.settled(user, 3);
      expect(s).toMatchObject({ current_step: 'tracking', data: { name: 'Ana', order: 'ORD-7' } });
      await h.graph.waitFor((c) => c.body.biz_opaque_callback_data === 'baton:shop:tracking:3');
      expect((await h.transitions(user)).at(-1)).toMatchObject({
        kind: 'advance',
        from_step: 'menu',
        to_step: 'tracking',
        message_ids: [id],
      });
      // The conversation shows it, said to be no user's.
      const { messages } = (await (await h.admin(`/sessions/${user}/messages`)).json()) as {
        messages: Array<{ direction: string; type: string; text?: string; payload?: unknown }>;
      };
      expect(messages.filter((m) => m.type === 'event')).toEqual([
        expect.objectContaining({ direction: 'in', text: 'order_shipped', payload: { order: 'ORD-7' } }),
      ]);
      // Posted again later: still the one event.
      const again = await post(user, {
        name: 'order_shipped',
        id: 'ship-ORD-7',
        payload: { order: 'ORD-7' },
      });
      expect(await again.json()).toEqual({ id, duplicate: true, held: false });
      await new Promise((r) => setTimeout(r, 300));
      expect(sentTo(user)).toEqual(['baton:shop:ask_name:1', 'baton:shop:menu:2', 'baton:shop:tracking:3']);
      expect((await h.session(user))!.metadata.version).toBe(3);
      // Another user's event with the same id is theirs: applied, not taken for a duplicate.
      const other = '15550713005';
      await atMenu(other);
      const theirs = await post(other, {
        name: 'order_shipped',
        id: 'ship-ORD-7',
        payload: { order: 'ORD-7' },
      });
      expect(await theirs.json()).toMatchObject({ duplicate: false });
      expect(await h.settled(other, 3)).toMatchObject({ current_step: 'tracking' });
    },
  );

  it.skipIf(!available)('starts a session for a user who never wrote, on the channel named', async () => {
    const user = '15550713002';
    expect((await post(user, { name: 'order_shipped', payload: { order: 'ORD-8' } })).status).toBe(404);
    const r = await post(
      user,
      { name: 'order_shipped', payload: { order: 'ORD-8' } },
      `?channel=${PHONE_ID}`,
    );
    expect(r.status).toBe(202);
    expect(await h.settled(user, 1)).toMatchObject({ current_step: 'tracking', data: { order: 'ORD-8' } });
    const sent = await h.graph.waitFor((c) => c.body.to === `+${user}`);
    expect(sent.body.biz_opaque_callback_data).toBe('baton:shop:tracking:1');
    expect(sent.phoneNumberId).toBe(PHONE_ID);
  });

  it.skipIf(!available)('is held while an agent has the session: nothing sent, the step kept', async () => {
    const user = '15550713003';
    await atMenu(user);
    const take = await h.admin(`/sessions/${user}/agent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: 'ana' }),
    });
    expect(take.status).toBe(200);
    const posted = await post(user, { name: 'order_shipped', payload: { order: 'ORD-9' } });
    expect(posted.status).toBe(202);
    // The poster is told it will not be applied (outside test QA97-F7).
    expect(await posted.json()).toMatchObject({ duplicate: false, held: true });
    await h.until(async () => (await h.transitions(user)).at(-1)?.kind === 'held');
    expect(await h.session(user)).toMatchObject({ current_step: 'menu', data: { name: 'Ana' } });
    expect(sentTo(user)).toEqual(['baton:shop:ask_name:1', 'baton:shop:menu:2']);
  });

  it.skipIf(!available)(
    'an event the flow fails on is dead-lettered without telling the user, who wrote nothing (outside test QA97-F2)',
    async () => {
      const user = '15550713009';
      await atMenu(user);
      // `wrong_way` goes to a step its `to` does not name.
      expect((await post(user, { name: 'wrong_way', id: 'ww-1' })).status).toBe(202);
      await h.until(async () => {
        const dead = (await (await h.admin('/dead-letters')).json()) as {
          dead_letters: Array<{ reason: string; ref: string }>;
        };
        return dead.dead_letters.find((d) => d.ref.startsWith('ev:ww-1'));
      });
      // Then the user writes: answered as ever, and no "could not handle your last message" before.
      expect((await h.post(webhook([button(user, 'human', 'A person', T0 + 2)]))).status).toBe(200);
      await h.until(async () => (await h.session(user))?.metadata.needs_agent === true || undefined);
      await h.graph.waitFor((c) => c.body.to === `+${user}` && /person/i.test(JSON.stringify(c.body)));
      expect(
        h.graph.sent.filter((c) => c.body.to === `+${user}` && /went wrong/i.test(JSON.stringify(c.body))),
      ).toEqual([]);
    },
  );

  it.skipIf(!available)(
    "hands `on` the payload as the flow's schema reads it, stored as posted (outside test QA101-F1)",
    async () => {
      const user = '15550713006';
      await atMenu(user);
      // A shop that sends the amount as text: the schema coerces it, `on` formats a number.
      const r = await post(user, { name: 'refunded', payload: { order: 'ORD-9', amount: '30' } });
      expect(r.status).toBe(202);
      expect(await h.settled(user, 3)).toMatchObject({
        current_step: 'tracking',
        data: { order: 'ORD-9', status: 'refunded 30.00' },
      });
      const sent = await h.graph.waitFor(
        (c) => c.body.to === `+${user}` && c.body.biz_opaque_callback_data === 'baton:shop:tracking:3',
      );
      expect(JSON.stringify(sent.body)).toContain('Order ORD-9 is refunded 30.00.');
      const { messages } = (await (await h.admin(`/sessions/${user}/messages`)).json()) as {
        messages: Array<{ type: string; payload?: unknown }>;
      };
      expect(messages.filter((m) => m.type === 'event')).toEqual([
        expect.objectContaining({ payload: { order: 'ORD-9', amount: '30' } }),
      ]);
    },
  );

  it.skipIf(!available)('refuses bad input with a clear 4xx and stores nothing', async () => {
    const user = '15550713004';
    await atMenu(user);
    const refused = async (body: unknown, status: number, code: string, words: RegExp) => {
      const r = await post(user, body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(status);
      const j = (await r.json()) as { code: string; error: string };
      expect(j.code).toBe(code);
      expect(j.error).toMatch(words);
    };
    await refused(
      { name: 'order_lost' },
      400,
      'BATON_ERR_UNKNOWN_EVENT',
      /flow shop has no event "order_lost"/,
    );
    await refused({ name: 'OrderShipped' }, 400, 'BATON_ERR_BAD_REQUEST', /lower_snake_case/);
    await refused(
      { name: 'order_shipped', payload: { order: 'x' } },
      400,
      'BATON_ERR_BAD_REQUEST',
      /refuses that payload: order/,
    );
    // No payload at all: said so, the whole payload named as such (outside test B16).
    await refused(
      { name: 'order_shipped' },
      400,
      'BATON_ERR_BAD_REQUEST',
      /event "order_shipped" of flow shop needs a payload: \(payload\): /,
    );
    await refused(
      { name: 'order_shipped', payload: { order: 'ORD-1' }, extra: 1 },
      400,
      'BATON_ERR_BAD_REQUEST',
      /extra/,
    );
    let deep: unknown = 'x';
    for (let i = 0; i < 40; i += 1) deep = [deep];
    await refused(
      { name: 'order_shipped', payload: deep },
      400,
      'BATON_ERR_BAD_REQUEST',
      /nested at most 32 deep/,
    );
    await refused(
      { name: 'order_shipped', payload: 'y'.repeat(20_000) },
      400,
      'BATON_ERR_BAD_REQUEST',
      /at most 16 KiB/,
    );
    await refused({ name: 'order_shipped', id: 'has space' }, 400, 'BATON_ERR_BAD_REQUEST', /no spaces/);
    const big = await post(user, { name: 'order_shipped', payload: 'z'.repeat(100_000) });
    expect(big.status).toBe(413);
    // This route's limit, not the webhooks' (outside test QA42-F7).
    expect(await big.json()).toMatchObject({
      code: 'BATON_ERR_BODY_TOO_LARGE',
      error: 'Body is larger than 64 KiB',
    });
    const unauthenticated = await fetch(`${h.url}/admin/api/sessions/${user}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'order_shipped', payload: { order: 'ORD-1' } }),
    });
    expect(unauthenticated.status).toBe(401);
    await new Promise((r) => setTimeout(r, 200));
    expect((await h.transitions(user)).map((t) => t.kind)).toEqual(['advance', 'advance']);
    expect((await h.session(user))!.metadata.version).toBe(2);
  });
});
