import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { FlowRuntimeError } from '../../src/errors.ts';
import { defineFlow } from '../../src/flow/define.ts';
import { adminReset, transition, type ResolvedMessage } from '../../src/flow/transition.ts';
import type { MessageContent } from '../../src/model/message.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';

const key = { channel: 'ch', user: 'u1' };
const env = { key, nowMs: 1_000_000, worker: 'w', fence: 7, sessionTtlSec: 86_400, maxRetries: 3 };
const flow = orderFlow;
let seq = 0;

function msg(
  content: MessageContent,
  timestamp: number,
  extra: Partial<ResolvedMessage> = {},
): ResolvedMessage {
  seq += 1;
  return {
    id: `m${seq}`,
    provider: 'cloud-api',
    channel: 'ch',
    user: 'u1',
    timestamp,
    seq,
    storedAt: 0,
    content,
    ...extra,
  };
}
const txt = (body: string, ts: number) => msg({ type: 'text', body }, ts);
const tap = (id: string, ts: number, extra: Partial<ResolvedMessage> = {}) =>
  msg({ type: 'choice', source: 'button_reply', id, title: id }, ts, extra);

function run(prev: SessionSnapshot | null, ...batch: ResolvedMessage[]) {
  return transition(flow, prev, batch, env);
}

describe('transition (pure)', () => {
  it('starts a new session at the start step with version 1 and one prompt', () => {
    const r = run(null, txt('hi', 100));
    expect(r.snapshot).toMatchObject({ step: 'ask_name', version: 1, visitVersion: 1, lastInteraction: 100 });
    expect(r.records).toEqual([
      {
        version: 1,
        from_step: null,
        to_step: 'ask_name',
        kind: 'advance',
        message_ids: [r.records[0]!.message_ids[0]],
        at: new Date(1_000_000).toISOString(),
        worker: 'w',
        fencing_token: 7,
      },
    ]);
    expect(r.effects.map((e) => [e.step, e.version, e.isPrompt])).toEqual([['ask_name', 1, true]]);
  });

  it("learns the ids the user's newest message names: a user id first sent, a phone number first seen", () => {
    const byPhone = run(null, msg({ type: 'text', body: 'hi' }, 100, { waId: 'u1' })).snapshot;
    expect(byPhone).toMatchObject({ waId: 'u1' });
    expect(byPhone.userId).toBeUndefined();
    const withId = run(byPhone, msg({ type: 'text', body: 'Ana' }, 101, { userId: 'US.9' })).snapshot;
    expect(withId).toMatchObject({ waId: 'u1', userId: 'US.9', data: { customer_name: 'Ana' } });
    const byId = run(null, msg({ type: 'text', body: 'hi' }, 100, { userId: 'US.9' })).snapshot;
    expect(
      run(byId, msg({ type: 'text', body: 'Ana' }, 101, { waId: '1555', userId: 'US.9' })).snapshot,
    ).toMatchObject({ waId: '1555', userId: 'US.9' });
    // An older message (late) teaches nothing.
    expect(run(withId, msg({ type: 'text', body: 'x' }, 50, { waId: '1999' })).snapshot.waId).toBe('u1');
  });

  it('sorts by timestamp then arrival, and applies a whole order burst with only the last prompt', () => {
    const start = run(null, txt('hi', 100)).snapshot;
    const a = txt('Jane', 101);
    const b = tap('sku_550e', 102);
    const c = txt('Addr 1', 103);
    const d = tap('confirm', 104);
    const r = run(start, d, b, c, a);
    expect(r.snapshot).toMatchObject({
      step: 'completed',
      version: 5,
      data: { customer_name: 'Jane', product_id: 'sku_550e', shipping_address: 'Addr 1' },
    });
    expect(r.effects.map((e) => e.step)).toEqual(['completed']);
    expect(r.records.map((x) => x.version)).toEqual([2, 3, 4, 5]);
  });

  it('joins consecutive texts into one input that counts once', () => {
    const start = run(null, txt('hi', 100)).snapshot;
    const r = run(start, txt(' Jane ', 101), txt('Smith', 101));
    expect(r.snapshot.data).toEqual({ customer_name: 'Jane Smith' });
    expect(r.records).toHaveLength(1);
    expect(r.records[0]!.message_ids).toHaveLength(2);
  });

  it('joins texts only at a text step: at the product buttons, four texts are three retries and a hand-off (outside test S2)', () => {
    const start = run(null, txt('hi', 100)).snapshot;
    const atProduct = run(start, txt('Jane', 101)).snapshot;
    expect(atProduct.step).toBe('choose_product');
    const r = run(atProduct, txt('what?', 102), txt('hello', 102), txt('?', 103), txt('shoes', 103));
    expect(r.records.map((x) => [x.kind, x.message_ids.length])).toEqual([
      ['retry', 1],
      ['retry', 1],
      ['retry', 1],
      ['escalated', 1],
    ]);
    expect(r.snapshot).toMatchObject({ needsAgent: true, version: atProduct.version + 4 });
  });

  it('a text of blanks is no name and no address: a retry, not "Thanks, ."', () => {
    const start = run(null, txt('hi', 100)).snapshot;
    const r = run(start, txt('   ', 101), txt('\n', 101));
    expect(r.records.map((x) => x.kind)).toEqual(['retry']);
    expect(r.snapshot.step).toBe('ask_name');
    expect(r.snapshot.data).toEqual({});
    const at = run(run(start, txt('Jo', 102)).snapshot, tap('sku_550e', 103)).snapshot;
    expect(run(at, txt(' ', 104)).snapshot.step).toBe('collect_shipping_address');
  });

  it('keeps line breaks inside one text (an address) while joining parts by one space', () => {
    const s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101), tap('sku_550e', 102)).snapshot;
    const r = run(s, txt('1 Main St\nSpringfield ', 103), txt(' Apt 4', 103));
    expect(r.snapshot.data).toMatchObject({ shipping_address: '1 Main St\nSpringfield Apt 4' });
  });

  it('records late messages without applying them; equal timestamps are not late', () => {
    const s1 = run(null, txt('hi', 100)).snapshot;
    const r = run(s1, txt('old', 99), txt('Jane', 100));
    expect(r.records.map((x) => x.kind)).toEqual(['late', 'advance']);
    expect(r.snapshot.data).toEqual({ customer_name: 'Jane' });
  });

  it('treats a tap on another step’s button as stale: no version change, a notice', () => {
    const s1 = run(null, txt('hi', 100)).snapshot;
    const r = run(s1, tap('confirm', 101));
    expect(r.records.map((x) => [x.kind, x.version])).toEqual([['stale_input', 1]]);
    expect(r.snapshot.version).toBe(1);
    expect(r.effects).toHaveLength(1);
    expect(r.effects[0]).toMatchObject({ isPrompt: false, inReplyTo: r.records[0]!.message_ids[0] });
  });

  it('judges context.id against the current visit, and ignores unknown ones', () => {
    const s2 = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot; // choose_product, visit 2
    const earlier = run(s2, tap('sku_550e', 102, { contextPrompt: { step: 'choose_product', version: 1 } }));
    expect(earlier.records[0]!.kind).toBe('stale_input');
    const current = run(s2, tap('sku_550e', 102, { contextPrompt: { step: 'choose_product', version: 2 } }));
    expect(current.records[0]!.kind).toBe('advance');
    const unknown = run(s2, tap('sku_550e', 102, { contextPrompt: null }));
    expect(unknown.records[0]!.kind).toBe('advance');
  });

  it('retries up to the limit, then escalates and holds', () => {
    let s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot;
    for (let i = 1; i <= 3; i += 1) {
      const r = run(s, txt('nope', 101 + i));
      expect(r.records[0]).toMatchObject({ kind: 'retry', version: 2 + i });
      expect(r.effects).toHaveLength(1);
      s = r.snapshot;
      expect(s.retryCount).toBe(i);
    }
    const e = run(s, txt('still no', 110));
    expect(e.records[0]).toMatchObject({ kind: 'escalated', version: 6 });
    expect(e.snapshot.needsAgent).toBe(true);
    const held = run(e.snapshot, txt('reset', 111), msg({ type: 'reaction', messageId: 'x' }, 112));
    expect(held.records.map((x) => x.kind)).toEqual(['held', 'held']);
    expect(held.effects).toEqual([]);
    expect(held.snapshot.version).toBe(6);
  });

  it('asks a step again once for several invalid inputs in one batch: the last retry asks it (SPEC 1.6)', () => {
    const atProduct = run(run(null, txt('hi', 100)).snapshot, txt('Mo', 101)).snapshot;
    const r = run(atProduct, tap('bogus1', 102), tap('bogus2', 102), txt('a text', 102));
    expect(r.records.map((x) => [x.kind, x.version])).toEqual([
      ['retry', 3],
      ['retry', 4],
      ['retry', 5],
    ]);
    expect(r.effects.filter((e) => e !== null).map((e) => [e.step, e.version, e.isPrompt])).toEqual([
      ['choose_product', 5, true],
    ]);
    // Entering a step and retrying it in one batch: the retry repeats the step's prompt word for
    // word, so it is asked once, by the last retry (outside test QA3-1: "Jane" and a photo).
    const r2 = run(run(null, txt('hi', 100)).snapshot, txt('Mo', 101), tap('bogus', 102), tap('nope', 102));
    expect(r2.effects.filter((e) => e !== null).map((e) => [e.step, e.version])).toEqual([
      ['choose_product', 4],
    ]);
    const photo = msg({ type: 'media', mediaType: 'image', mediaId: 'p1' }, 102);
    const r3 = run(run(null, txt('hi', 100)).snapshot, txt('Jane', 101), photo);
    expect(r3.records.map((x) => [x.kind, x.version])).toEqual([
      ['advance', 2],
      ['retry', 3],
    ]);
    expect(r3.effects.filter((e) => e !== null).map((e) => [e.step, e.version, e.isPrompt])).toEqual([
      ['choose_product', 3, true],
    ]);
  });

  it("keeps a visit's prompt that says more than the retry repeats, then asks again once", () => {
    const pick = defineFlow({
      id: 'pick',
      start: 'ask',
      steps: {
        ask: { say: 'Your name?', accepts: 'text', to: ['choose'], on: (_i, c) => c.goto('choose') },
        choose: {
          say: 'Pick a colour: red or blue',
          accepts: 'any',
          to: [],
          on: (_i, c) => c.retry('Red or blue, please'),
        },
      },
    });
    const started = transition(pick, null, [txt('hi', 100)], env).snapshot;
    const photo = msg({ type: 'media', mediaType: 'image', mediaId: 'p2' }, 102);
    const r = transition(pick, started, [txt('Mo', 101), photo], env);
    expect(r.records.map((x) => x.kind)).toEqual(['advance', 'retry']);
    const texts = r.effects
      .filter((e) => e !== null)
      .map((e) => [e.version, (e.body as { text?: string }).text]);
    expect(texts).toEqual([
      [2, 'Pick a colour: red or blue'],
      [3, 'Red or blue, please'],
    ]);
  });

  it('expires an idle session and starts it afresh with two records', () => {
    const s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot;
    const r = run(s, txt('back', 101 + 86_401));
    expect(r.records.map((x) => [x.kind, x.from_step, x.to_step, x.version])).toEqual([
      ['expired', 'choose_product', null, 3],
      ['advance', null, 'ask_name', 4],
    ]);
    expect(r.snapshot.data).toEqual({});
  });

  it('an expired session is a new one: the router picks its flow (SPEC 5; outside test A9)', () => {
    const clinic = defineFlow({
      id: 'clinic',
      start: 'ask_day',
      steps: { ask_day: { say: 'Which day?', to: [], on: (_i, c) => c.retry() } },
    });
    const s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot;
    const routed = {
      ...env,
      route: (m: ResolvedMessage) => (m.content.type === 'text' ? clinic : undefined),
    };
    const r = transition(flow, s, [txt('clinic please', 101 + 86_401)], routed);
    expect(r.records.map((x) => [x.kind, x.from_step, x.to_step, x.version])).toEqual([
      ['expired', 'choose_product', null, 3],
      ['advance', null, 'ask_day', 4],
    ]);
    expect(r.snapshot).toMatchObject({ flow: 'clinic', step: 'ask_day', data: {} });
    expect(r.effects.map((e) => e.body)).toEqual([{ type: 'text', text: 'Which day?' }]);
    // Not expired: the session keeps its flow whatever the router would say.
    const kept = transition(flow, s, [txt('clinic please', 102)], routed);
    expect(kept.snapshot.flow).toBe(flow.id);
  });

  it('records reactions, edits, revokes, system and unsupported as ignored, with no reply', () => {
    const s = run(null, txt('hi', 100)).snapshot;
    const r = run(
      s,
      msg({ type: 'reaction', messageId: 'x', emoji: '👍' }, 101),
      msg({ type: 'edit' }, 101),
      msg({ type: 'revoke' }, 101),
      msg({ type: 'system', body: 'changed' }, 101),
      msg({ type: 'unsupported', originalType: 'poll' }, 101),
    );
    expect(r.records.map((x) => x.kind)).toEqual(['ignored', 'ignored', 'ignored', 'ignored', 'ignored']);
    expect(r.effects).toEqual([]);
    expect(r.snapshot.version).toBe(1);
  });

  it('at completed, an old button is stale and anything else starts a new order with data cleared', () => {
    let s = run(null, txt('hi', 100)).snapshot;
    s = run(s, txt('Jo', 101), tap('sku_550e', 102), txt('A', 103), tap('confirm', 104)).snapshot;
    expect(s.step).toBe('completed');
    expect(run(s, tap('sku_550e', 105)).records[0]!.kind).toBe('stale_input');
    const r = run(s, txt('again', 105));
    expect(r.snapshot).toMatchObject({ step: 'ask_name', data: {} });
    expect(r.records[0]).toMatchObject({ kind: 'advance', from_step: 'completed' });
  });

  it('at completed or cancelled, a burst is a new order whose first text starts it and the rest answer it (outside test QA36-F1)', () => {
    let s = run(null, txt('hi', 100)).snapshot;
    s = run(s, txt('Jo', 101), tap('sku_550e', 102), txt('A', 103), tap('confirm', 104)).snapshot;
    expect(s.step).toBe('completed');
    // Three texts of one second (equal timestamps are not late): a new order, then one name.
    const again = txt('hi again', 110);
    const r = run(s, again, txt('Mary', 111), txt('Ann', 111));
    expect(r.snapshot).toMatchObject({
      step: 'choose_product',
      data: { customer_name: 'Mary Ann' },
      lastInteraction: 111,
    });
    expect(r.records.map((x) => [x.kind, x.from_step, x.to_step, x.message_ids.length])).toEqual([
      ['advance', 'completed', 'ask_name', 1],
      ['advance', 'ask_name', 'choose_product', 2],
    ]);
    expect(r.records[0]!.message_ids).toEqual([again.id]);
    expect(r.effects.map((e) => e.step)).toEqual(['choose_product']);
    // Cancelled: new order, name, then the product's button, each applied in turn.
    let c = run(null, txt('hi', 200)).snapshot;
    c = run(c, txt('Jo', 201), tap('sku_550e', 202), txt('A', 203), tap('cancel', 204)).snapshot;
    expect(c.step).toBe('cancelled');
    const n = run(c, txt('new one', 210), txt('Mary', 211), tap('sku_777b', 212));
    expect(n.snapshot).toMatchObject({
      step: 'collect_shipping_address',
      data: { customer_name: 'Mary', product_id: 'sku_777b' },
    });
    expect(n.records.map((x) => x.kind)).toEqual(['advance', 'advance', 'advance']);
    expect(n.effects.map((e) => e.step)).toEqual(['collect_shipping_address']);
    // A single text is a new order as before.
    expect(run(s, txt('again', 110)).snapshot).toMatchObject({ step: 'ask_name', data: {} });
  });

  it('maps a typed number or title to a choice only for gateways without buttons', () => {
    const s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot;
    expect(run(s, txt('2', 102)).records[0]!.kind).toBe('retry');
    const ws = (body: string) => msg({ type: 'text', body }, 102, { provider: 'wasender' });
    expect(run(s, ws('2')).snapshot.data).toMatchObject({ product_id: 'sku_551a' });
    expect(run(s, ws(' day pack ')).snapshot.data).toMatchObject({ product_id: 'sku_777b' });
    expect(run(s, ws('9')).records[0]!.kind).toBe('retry');
    // As the list writes them: "3. Day Pack" (outside test QA35-F7).
    expect(run(s, ws('3.')).snapshot.data).toMatchObject({ product_id: 'sku_777b' });
    expect(run(s, ws(' 1) ')).snapshot.data).toMatchObject({ product_id: 'sku_550e' });
    expect(run(s, ws('3..')).records[0]!.kind).toBe('retry');
  });

  it('admin reset clears everything, sets no step, sends nothing', () => {
    const s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot;
    const r = adminReset({ ...s, needsAgent: true, retryCount: 2 }, env);
    expect(r.snapshot).toMatchObject({ step: null, data: {}, needsAgent: false, retryCount: 0, version: 3 });
    expect(r.records[0]).toMatchObject({ kind: 'admin_reset', from_step: 'choose_product', to_step: null });
    expect(r.effects).toEqual([]);
  });

  it('refuses a transition the step did not declare', () => {
    const bad = defineFlow({
      id: 'bad',
      start: 'a',
      steps: {
        // @ts-expect-error: a step its `to` does not name does not compile (QA92-F1); plain JavaScript meets the check at run time
        a: { say: 'a', accepts: 'text', to: ['b'], on: (_i, c) => c.goto('c') },
        b: { say: 'b', accepts: 'text', to: ['c'], on: (_i, c) => c.retry() },
        c: { say: 'c', accepts: 'text', to: [], on: (_i, c) => c.retry() },
      },
    });
    const s = transition(bad, null, [txt('hi', 1)], env).snapshot;
    expect(() => transition(bad, s, [txt('x', 2)], env)).toThrow(FlowRuntimeError);
  });

  it('survives a JSON round trip of its snapshot and resumes identically', () => {
    const s = run(run(null, txt('hi', 100)).snapshot, txt('Jo', 101)).snapshot;
    const copy = JSON.parse(JSON.stringify(s)) as SessionSnapshot;
    expect(copy).toEqual(s);
    const m = tap('sku_551a', 102);
    expect(run(copy, m).snapshot).toEqual(run(s, m).snapshot);
  });
});
