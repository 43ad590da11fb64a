/**
 * One bad clock cannot silence a user, and no timestamp can break a route (SPEC 1.5): a
 * timestamp more than 5 minutes ahead of the message's storage time is replaced by the
 * storage time; an admin reset keeps it; absurd values (9e15, negative,
 * NaN strings) never make a route answer 500 nor a session unreadable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { adminReset, transition } from '../../src/flow/transition.ts';
import { trustedTimestamp } from '../../src/model/message.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { PHONE_ID, text, webhook, type Msg } from '../support/payloads.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

const nowSec = (): number => Math.floor(Date.now() / 1000);
const TEN_YEARS = 10 * 365 * 24 * 3600;

describe('a clock far ahead', () => {
  it('a message stamped ten years ahead does not make the next ones late', async () => {
    const u = '15553330001';
    expect((await h.post(webhook([text(u, 'hi', nowSec() + TEN_YEARS)]))).status).toBe(200);
    await h.settled(u, 1);
    const s1 = (await h.session(u))!;
    // The storage time stood in for the future stamp.
    expect(Date.parse(s1.metadata.last_interaction!)).toBeLessThanOrEqual(Date.now() + 1000);
    expect((await h.post(webhook([text(u, 'Ada', nowSec())]))).status).toBe(200);
    const s2 = await h.settled(u, 2);
    expect(s2.current_step).toBe('choose_product');
    expect(s2.data.customer_name).toBe('Ada');
    expect((await h.transitions(u)).map((t) => t.kind)).not.toContain('late');
    // The conversation says the stamp was not trusted, rather than show it (outside test QA117-F3).
    const r = await h.admin(`/sessions/${u}/messages?channel=${PHONE_ID}`);
    const { messages } = (await r.json()) as { messages: Array<Record<string, unknown>> };
    expect(messages[0]).toMatchObject({ direction: 'in', text: 'hi', clock_ahead: true });
    expect(messages[0]).not.toHaveProperty('sent_at');
    expect(messages.find((m) => m.text === 'Ada')).toHaveProperty('sent_at');
    expect(messages.find((m) => m.text === 'Ada')).not.toHaveProperty('clock_ahead');
  });

  it('a far-ahead stamp after a trusted one a little ahead is applied, not late (outside test QA49-F1)', () => {
    const key = { channel: 'ch', user: 'u2' };
    const env = { key, nowMs: 1_000_000, worker: 'w', fence: 1, sessionTtlSec: 86_400, maxRetries: 3 };
    const t = 1_750_000_000;
    const msg = (id: string, timestamp: number, storedSec: number, body: string) =>
      trustedTimestamp({
        ...key,
        id,
        provider: 'cloud-api' as const,
        timestamp,
        seq: 1,
        storedAt: storedSec * 1000,
        content: { type: 'text' as const, body },
      });
    // A phone 10 s fast: trusted (within 5 minutes of its storage time).
    const first = transition(orderFlow, null, [msg('m1', t + 10, t, 'hi')], env).snapshot;
    expect(first.lastInteraction).toBe(t + 10);
    // Then a clock a day ahead: its storage time (2 s later, still before t + 10) stands in.
    const name = msg('m2', t + 86_400, t + 2, 'Ada');
    expect(name).toMatchObject({ timestamp: t + 2, clockAhead: true });
    const next = transition(orderFlow, first, [name], env);
    expect(next.records.map((r) => [r.kind, r.to_step])).toEqual([['advance', 'choose_product']]);
    expect(next.snapshot).toMatchObject({
      data: { customer_name: 'Ada' },
      lastInteraction: t + 10,
      lastMessageId: 'm2',
    });
    // A message whose own stamp is trusted and older than the newest processed is late as before.
    const late = transition(orderFlow, next.snapshot, [msg('m3', t + 5, t + 3, 'Bob')], env);
    expect(late.records.map((r) => r.kind)).toEqual(['late']);
  });

  it('a stamp less than 5 minutes ahead is trusted', async () => {
    const u = '15553330002';
    const ahead = nowSec() + 120;
    expect((await h.post(webhook([text(u, 'hi', ahead)]))).status).toBe(200);
    const s = await h.settled(u, 1);
    expect(Date.parse(s.metadata.last_interaction!) / 1000).toBe(ahead);
  });
});

describe('absurd timestamps', () => {
  const cases: Array<[string, unknown]> = [
    ['9e15 (number)', 9e15],
    ['9e15 (string)', '9000000000000000'],
    ['1e300', 1e300],
    ['negative', -5],
    ['"NaN"', 'NaN'],
    ['"abc"', 'abc'],
    ['empty', ''],
    ['missing', undefined],
  ];
  it.each(cases)('%s: every route answers without 500 and the session reads', async (_name, ts) => {
    const u = `1555444${String(cases.findIndex(([n]) => n === _name)).padStart(4, '0')}`;
    expect((await h.post(webhook([text(u, 'hi', nowSec() - 5)]))).status).toBe(200);
    await h.settled(u, 1);
    const m: Msg = text(u, 'Ada', 0);
    if (ts === undefined) delete (m as Partial<Msg>).timestamp;
    else (m as Record<string, unknown>).timestamp = ts;
    const r = await h.post(webhook([m]));
    expect(r.status).toBe(200);
    // Recorded one way or another (applied, or `ignored` when the stamp is unreadable).
    await h.until(async () => (await h.transitions(u)).some((t) => t.message_ids.includes(m.id)));
    for (const path of [
      `/sessions/${u}?channel=${PHONE_ID}`,
      `/sessions/${u}/transitions?channel=${PHONE_ID}`,
      `/sessions/${u}/messages?channel=${PHONE_ID}`,
      `/sessions/${u}/outbound?channel=${PHONE_ID}`,
      `/inbox`,
      `/sessions?limit=100`,
      `/stats`,
    ]) {
      const res = await h.admin(path);
      expect(res.status, path).toBe(200);
    }
    const s = (await h.session(u))!;
    expect(['ask_name', 'choose_product']).toContain(s.current_step);
    const last = Date.parse(s.metadata.last_interaction!);
    expect(Number.isFinite(last)).toBe(true);
    expect(last).toBeLessThanOrEqual(Date.now() + 1000);
  });
});

describe('admin reset', () => {
  it('keeps last_interaction: a message older than the newest one processed is late after it too', async () => {
    const u = '15553330003';
    const t = nowSec();
    expect((await h.post(webhook([text(u, 'hi', t)]))).status).toBe(200);
    await h.settled(u, 1);
    const reset = await h.admin(`/sessions/${u}/reset?channel=${PHONE_ID}`, { method: 'POST' });
    expect(reset.status).toBe(200);
    const after = (await reset.json()) as { current_step: unknown; metadata: { last_interaction: unknown } };
    expect(after.current_step).toBe(null);
    expect(after.metadata.last_interaction).toBe(new Date(t * 1000).toISOString().replace('.000Z', 'Z'));
    // Delayed in transit: stamped a minute before the "hi" that was processed.
    expect((await h.post(webhook([text(u, 'hello again', t - 60)]))).status).toBe(200);
    await h.until(async () => ((await h.transitions(u)).length === 3 ? true : undefined));
    expect((await h.transitions(u)).map((r) => [r.kind, r.version])).toEqual([
      ['advance', 1],
      ['admin_reset', 2],
      ['late', 2],
    ]);
    // The user's next message starts the flow as in a new session (SPEC 4), nothing expired.
    expect((await h.post(webhook([text(u, 'back', t)]))).status).toBe(200);
    const s = await h.settled(u, 3);
    expect(s.current_step).toBe('ask_name');
    expect((await h.transitions(u)).map((r) => r.kind)).toEqual([
      'advance',
      'admin_reset',
      'late',
      'advance',
    ]);
  });

  it('a reset session written to after longer than BATON_SESSION_TTL starts afresh, no expired record', () => {
    const key = { channel: 'ch', user: 'u1' };
    const env = { key, nowMs: 1_000_000, worker: 'w', fence: 1, sessionTtlSec: 86_400, maxRetries: 3 };
    const msg = (id: string, timestamp: number, body: string) => ({
      ...key,
      id,
      provider: 'cloud-api' as const,
      timestamp,
      seq: 1,
      storedAt: 0,
      content: { type: 'text' as const, body },
    });
    const first = transition(orderFlow, null, [msg('m1', 1_750_000_000, 'hi')], env);
    const reset = adminReset(first.snapshot, env).snapshot;
    expect(reset.lastInteraction).toBe(1_750_000_000);
    const later = transition(orderFlow, reset, [msg('m2', 1_750_000_000 + 3 * 86_400, 'hello')], env);
    expect(later.records.map((r) => [r.kind, r.from_step, r.to_step])).toEqual([
      ['advance', null, 'ask_name'],
    ]);
  });
});
