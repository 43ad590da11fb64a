/**
 * One bad clock cannot silence a user, and no timestamp can break a route (SPEC 1.5): a
 * timestamp more than 5 minutes ahead of the message's storage time is replaced by the
 * storage time; an admin reset clears the ordering watermark; absurd values (9e15, negative,
 * NaN strings) never make a route answer 500 nor a session unreadable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { adminReset, transition } from '../../src/flow/transition.ts';
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
  it('clears the ordering watermark: the next message is applied, not late', async () => {
    const u = '15553330003';
    const t = nowSec();
    expect((await h.post(webhook([text(u, 'hi', t)]))).status).toBe(200);
    await h.settled(u, 1);
    const reset = await h.admin(`/sessions/${u}/reset?channel=${PHONE_ID}`, { method: 'POST' });
    expect(reset.status).toBe(200);
    expect(
      ((await reset.json()) as { metadata: { last_interaction: unknown } }).metadata.last_interaction,
    ).toBe(null);
    // Sent by a phone whose clock is a minute behind the one that said "hi".
    expect((await h.post(webhook([text(u, 'hello again', t - 60)]))).status).toBe(200);
    const s = await h.settled(u, 3);
    expect(s.current_step).toBe('ask_name');
    const kinds = (await h.transitions(u)).map((r) => r.kind);
    expect(kinds).toEqual(['advance', 'admin_reset', 'advance']);
  });

  it('adminReset (pure) sets last_interaction to null', () => {
    const key = { channel: 'ch', user: 'u1' };
    const env = { key, nowMs: 1_000_000, worker: 'w', fence: 1, sessionTtlSec: 86_400, maxRetries: 3 };
    const hi = {
      ...key,
      id: 'm1',
      provider: 'cloud-api' as const,
      timestamp: 4_000_000_000,
      seq: 1,
      storedAt: 0,
      content: { type: 'text' as const, body: 'hi' },
    };
    const first = transition(orderFlow, null, [hi], env);
    expect(first.snapshot.lastInteraction).toBe(4_000_000_000);
    expect(adminReset(first.snapshot, env).snapshot.lastInteraction).toBeNull();
  });
});
