/**
 * SPEC 5b: a reset keyword never waits for an effect. When the user's "reset" and the effect's
 * result reach one batch (the reset still in its buffer window when the shop answered), the
 * reset is applied first if it arrived first, and the result is recorded, not applied: the user
 * was sent the old order's status and menu (outside test QA99-F1).
 */
import { describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { transition, type ResolvedMessage } from '../../src/flow/transition.ts';
import type { MessageContent } from '../../src/model/message.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';
import { testFlow } from '../../src/index.ts';

const flow = orderStatusFlow({ apiUrl: 'http://shop.invalid' });
const found = {
  found: true as const,
  order: { number: 'ORD-12345', status: 'in transit', events: [{ at: '2026-11-29', text: 'Packed' }] },
};

/** A session at `looking_up`, its lookup awaited, as testFlow leaves it. */
async function lookingUp(): Promise<SessionSnapshot> {
  const t = testFlow(flow);
  await t.send('ORD-12345');
  expect(t.step).toBe('looking_up');
  return t.state!;
}

function message(s: SessionSnapshot, seq: number, content: MessageContent): ResolvedMessage {
  return {
    id: content.type === 'effect_result' ? `fx:${content.effectId}` : `wamid.${seq}`,
    provider: 'cloud-api',
    channel: s.channel,
    user: s.user,
    timestamp: (s.lastInteraction ?? 0) + 1,
    seq,
    storedAt: 0,
    content,
  };
}

function batch(s: SessionSnapshot, order: 'reset first' | 'result first', before: string[] = []) {
  const result: MessageContent = {
    type: 'effect_result',
    effectId: s.awaiting!.id,
    name: s.awaiting!.name,
    ok: true,
    value: found,
    attempts: 1,
  };
  const texts = before.map((body, i) => message(s, 10 + i, { type: 'text', body }));
  const reset = message(s, order === 'reset first' ? 20 : 22, { type: 'text', body: 'reset' });
  const answered = message(s, 21, result);
  return transition(flow, s, [...texts, answered, reset], {
    key: { channel: s.channel, user: s.user },
    nowMs: 1_750_000_000_000,
    worker: 'w',
    fence: 9,
    sessionTtlSec: 86_400,
    maxRetries: 3,
  });
}

describe('a reset and the awaited result in one batch', () => {
  it('the reset arrived first: applied first, the result recorded and not applied, nothing sent for it', async () => {
    const s = await lookingUp();
    const r = batch(s, 'reset first', ['hello?']);
    expect(r.records.map((x) => [x.kind, x.from_step, x.to_step])).toEqual([
      ['retry', 'looking_up', 'looking_up'],
      ['reset', 'looking_up', 'ask_order'],
      ['stale_input', 'ask_order', 'ask_order'],
    ]);
    expect(r.snapshot.step).toBe('ask_order');
    expect(r.snapshot.awaiting).toBeUndefined();
    // Only the ask prompt: no status, no menu of the old order.
    expect(r.effects.map((e) => e.body.type)).toEqual(['text']);
    expect(r.effects.map((e) => e.step)).toEqual(['ask_order']);
    expect(r.consumed).toHaveLength(3);
  });

  it('the result arrived first: applied, then the reset', async () => {
    const s = await lookingUp();
    const r = batch(s, 'result first');
    expect(r.records.map((x) => [x.kind, x.to_step])).toEqual([
      ['advance', 'show_status'],
      ['reset', 'ask_order'],
    ]);
    expect(r.snapshot.step).toBe('ask_order');
  });
});
