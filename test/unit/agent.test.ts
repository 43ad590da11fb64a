import { describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { orderFlow } from '../../src/bots/order.ts';
import { z } from 'zod';
import { BatonError } from '../../src/errors.ts';
import { defineFlow } from '../../src/flow/define.ts';
import { image } from '../../src/flow/replies.ts';
import { agentMessage, agentOf, handback, takeSession } from '../../src/flow/agent.ts';
import { transition, type ResolvedMessage } from '../../src/flow/transition.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';

const key = { channel: 'ch', user: 'u1' };
const env = { key, nowMs: 2_000_000, worker: 'agent:Ana', fence: 9, sessionTtlSec: 86_400, maxRetries: 0 };
let seq = 0;
const txt = (body: string, ts: number): ResolvedMessage => {
  seq += 1;
  return {
    id: `m${seq}`,
    provider: 'cloud-api',
    channel: 'ch',
    user: 'u1',
    waId: 'u1',
    timestamp: ts,
    seq,
    storedAt: 0,
    content: { type: 'text', body },
  };
};

/** The BatonError `fn` throws; fails the test if it returns instead. */
function refusal(fn: () => unknown): BatonError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BatonError);
    return e as BatonError;
  }
  throw new Error('not refused');
}

/** A session escalated at choose_product (max retries 0). */
function escalated(): SessionSnapshot {
  let s = transition(orderFlow, null, [txt('hi', 100)], env).snapshot;
  s = transition(orderFlow, s, [txt('Jane', 101)], env).snapshot;
  s = transition(orderFlow, s, [txt('what?', 102)], env).snapshot;
  expect(s).toMatchObject({ step: 'choose_product', needsAgent: true, version: 3 });
  return s;
}

describe('agent operations (pure)', () => {
  it('take keeps the version of a session waiting for an agent and records nothing', () => {
    const s = escalated();
    const r = takeSession(s, 'Ana', env);
    expect(r.records).toEqual([]);
    expect(r.outbound).toEqual([]);
    expect(r.snapshot).toMatchObject({ version: 3, needsAgent: true, agent: { name: 'Ana', version: 3 } });
    expect(agentOf(r.snapshot)).toBe('Ana');
  });

  it('take escalates a session the bot is serving: version + 1, one escalated record', () => {
    const s = transition(orderFlow, null, [txt('hi', 100)], env).snapshot;
    const r = takeSession(s, 'Bo', env);
    expect(r.snapshot).toMatchObject({ version: 2, needsAgent: true, step: 'ask_name' });
    expect(r.records).toEqual([
      {
        version: 2,
        from_step: 'ask_name',
        to_step: 'ask_name',
        kind: 'escalated',
        message_ids: [],
        at: new Date(2_000_000).toISOString(),
        worker: 'agent:Ana',
        fencing_token: 9,
      },
    ]);
  });

  it('an agent message is one outbox text, version unchanged, callback data agent-<n>', () => {
    const s = takeSession(escalated(), 'Ana', env).snapshot;
    const r = agentMessage(s, orderFlow, 'Hello', env);
    expect(r.snapshot.version).toBe(3);
    expect(r.snapshot.outboundSeq).toBe(s.outboundSeq + 1);
    expect(r.records).toMatchObject([{ kind: 'agent_message', version: 3, message_ids: [] }]);
    const o = r.outbound[0]!;
    expect(o).toMatchObject({
      id: `ch:u1:${s.outboundSeq + 1}`,
      seq: s.outboundSeq + 1,
      to: 'u1',
      body: { type: 'text', text: 'Hello' },
      isPrompt: false,
      status: 'pending',
      step: 'choose_product',
      version: 3,
    });
    expect(o.callbackData).toBe(`baton:order:choose_product:3:agent-${s.outboundSeq + 1}`);
    const again = agentMessage(r.snapshot, orderFlow, 'Still there?', env).outbound[0]!;
    expect(again.callbackData).not.toBe(o.callbackData);
    // The claim still counts: an agent message changes no version.
    expect(agentOf(r.snapshot)).toBe('Ana');
  });

  it('a session another agent has is taken from them only explicitly; the same agent takes it again freely', () => {
    const s = takeSession(escalated(), 'Ana', env).snapshot;
    expect(refusal(() => takeSession(s, 'Bob', env))).toMatchObject({
      code: 'BATON_ERR_TAKEN_BY_OTHER',
      statusCode: 409,
    });
    expect(agentOf(takeSession(s, 'Ana', env).snapshot)).toBe('Ana');
    expect(agentOf(takeSession(s, 'Bob', env, true).snapshot)).toBe('Bob');
  });

  it('refuses an agent message or a handback when the bot is serving the session', () => {
    const s = transition(orderFlow, null, [txt('hi', 100)], env).snapshot;
    expect(() => agentMessage(s, orderFlow, 'x', env)).toThrow(BatonError);
    expect(refusal(() => handback(s, orderFlow, 'ask_name', env))).toMatchObject({
      code: 'BATON_ERR_NOT_WITH_AGENT',
    });
  });

  it('a handback through a newer version of the flow upgrades the stored data first, as a batch would (outside test QA70-F1)', () => {
    // Version 1 kept the items as one text; version 2 keeps a list, and its step reads it.
    const shop = (version: number) =>
      defineFlow({
        id: 'shop',
        version,
        data: z.object({
          customer: z.string().optional(),
          basket: z.array(z.string()).default([]),
          gift: z.boolean().default(false),
        }),
        migrate: (d, from) =>
          from < 2
            ? { customer: d.name, basket: String(d.items).split(',') }
            : (d as Record<string, unknown>),
        start: 'show_basket',
        steps: {
          show_basket: {
            say: (d) => `${d.basket.length} items for ${d.customer ?? 'you'}`,
            accepts: 'any',
            needs: ['customer'],
            to: ['show_basket'],
            on: (_i, c) => c.retry(),
          },
        },
      });
    const v2 = shop(2);
    const stored: SessionSnapshot = {
      ...escalated(),
      flow: 'shop',
      flowVersion: 1,
      step: 'show_basket',
      data: { name: 'Bob', items: 'a,b' },
    };
    const r = handback(stored, v2, 'show_basket', env);
    expect(r.snapshot).toMatchObject({
      flowVersion: 2,
      needsAgent: false,
      data: { customer: 'Bob', basket: ['a', 'b'], gift: false },
    });
    expect(r.effects.map((e) => e.body)).toContainEqual({ type: 'text', text: '2 items for Bob' });
    // Data that does not fit the schema once upgraded is refused, naming what.
    const refused = refusal(() =>
      handback({ ...stored, data: { name: 7, items: 'a' } }, v2, 'show_basket', env),
    );
    expect(refused).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });
    expect(refused.message).toContain('stored by version 1 and upgraded');
    // A migrate that returns nothing is refused, the session untouched (outside test QA71-H2).
    const broken = { ...v2, migrate: () => undefined as unknown as Record<string, unknown> };
    expect(() => handback(stored, broken, 'show_basket', env)).toThrow(
      "flow shop's migrate from version 1 returned undefined, not the session's data",
    );
  });

  it("a handback through a process whose flow is older than the session's, or not the session's, is refused (outside test QA68-F3)", () => {
    // An admin API served by an old process during a rolling deploy stamped the session with its
    // own version: old workers then ran it, and the newer flow migrated its data a second time.
    const newer: SessionSnapshot = { ...escalated(), flowVersion: orderFlow.version + 1 };
    const other: SessionSnapshot = { ...escalated(), flow: 'billing' };
    for (const [s, why] of [
      [
        newer,
        `the session was written by version ${orderFlow.version + 1} of flow order; this process serves version ${orderFlow.version}: hand it back through a process running the newer flow`,
      ],
      [
        other,
        "the session is flow billing's, which this process does not serve (BATON_FLOWS): hand it back through a process that serves it",
      ],
    ] as const) {
      expect(refusal(() => handback(s, orderFlow, 'ask_name', env))).toMatchObject({
        code: 'BATON_ERR_FLOW_NOT_SERVED_HERE',
        statusCode: 409,
        message: why,
      });
    }
    // The same version is handed back.
    expect(handback(escalated(), orderFlow, 'ask_name', env).snapshot.step).toBe('ask_name');
  });

  it('a handback to an unknown step is refused with BATON_ERR_UNKNOWN_STEP', () => {
    expect(refusal(() => handback(escalated(), orderFlow, 'nowhere', env))).toMatchObject({
      code: 'BATON_ERR_UNKNOWN_STEP',
      statusCode: 400,
    });
  });

  it('a handback to a step the flow closes to it (order-status `cancelling`: entering it cancels) is refused', () => {
    const flow = orderStatusFlow({ apiUrl: 'http://127.0.0.1:9' });
    const taken: SessionSnapshot = {
      ...takeSession(escalated(), 'Ana', env).snapshot,
      flow: flow.id,
      step: 'show_status',
      data: { lang: 'en', order: 'ORD-12345' },
    };
    expect(refusal(() => handback(taken, flow, 'cancelling', env))).toMatchObject({
      code: 'BATON_ERR_STEP_NOT_FOR_HANDBACK',
      statusCode: 400,
    });
    // Its neighbours stay open: a new lookup, or the status list.
    expect(handback(taken, flow, 'ask_order', env).snapshot.step).toBe('ask_order');
  });

  it("the reference bot's outcomes are closed to a handback: an agent cannot confirm or cancel an order for the user", () => {
    const taken = takeSession(escalated(), 'Ana', env).snapshot;
    for (const step of ['completed', 'cancelled']) {
      expect(refusal(() => handback(taken, orderFlow, step, env))).toMatchObject({
        code: 'BATON_ERR_STEP_NOT_FOR_HANDBACK',
      });
    }
    expect(handback(taken, orderFlow, 'ask_name', env).snapshot.step).toBe('ask_name');
  });

  it('a handback to a step whose needs the session lacks is refused with BATON_ERR_STEP_NEEDS_DATA', () => {
    const taken = takeSession(escalated(), 'Ana', env).snapshot;
    for (const step of ['collect_shipping_address', 'confirm_order']) {
      const refused = refusal(() => handback(taken, orderFlow, step, env));
      expect(refused).toMatchObject({ code: 'BATON_ERR_STEP_NEEDS_DATA', statusCode: 409 });
      expect(refused.message).toContain('product_id');
    }
    // Given the product (here by the user, before the hand-off), the step is open.
    const withProduct = { ...taken, data: { ...taken.data, product_id: 'sku_550e' } };
    expect(handback(withProduct, orderFlow, 'collect_shipping_address', env).snapshot.step).toBe(
      'collect_shipping_address',
    );
  });

  it('a needed key that is a list or an object is named as one a step sets, not one to set by hand (outside test QA103-F8)', () => {
    const clinic = defineFlow({
      id: 'clinic',
      data: z.object({
        slots: z.array(z.string()).optional(),
        patient: z.object({ name: z.string() }).optional(),
        name: z.string().optional(),
        lang: z.enum(['en', 'pt']).optional(),
      }),
      start: 'ask_name',
      steps: {
        ask_name: {
          say: 'Name?',
          accepts: 'text',
          to: ['pick', 'confirm', 'hello'],
          on: (_i, c) => c.goto('pick'),
        },
        pick: { say: 'Pick one', needs: ['slots', 'name'], accepts: 'any', to: [], on: (_i, c) => c.retry() },
        confirm: { say: 'Sure?', needs: ['patient'], accepts: 'any', to: [], on: (_i, c) => c.retry() },
        hello: { say: 'Hi', needs: ['name', 'lang'], accepts: 'any', to: [], on: (_i, c) => c.retry() },
      },
    });
    const taken: SessionSnapshot = {
      ...takeSession(escalated(), 'Ana', env).snapshot,
      flow: 'clinic',
      step: 'ask_name',
      data: {},
    };
    const said = (step: string): string => refusal(() => handback(taken, clinic, step, env)).message;
    expect(said('pick')).toBe(
      `step "pick" needs slots, name, which the session does not have; slots is set by a step (no string, number or boolean): no handback's "data" sets it; hand it back at a step open now: ask_name`,
    );
    expect(said('confirm')).toMatch(/needs patient, .*; patient is set by a step/);
    // An enum takes a flat value (not the probe's): the agent may set it.
    expect(said('hello')).toBe(
      `step "hello" needs name, lang, which the session does not have; set it with the handback's "data" (strings, numbers, booleans), or hand it back at a step open now: ask_name`,
    );
    expect(handback(taken, clinic, 'hello', env, { name: 'Jo', lang: 'pt' }).snapshot.step).toBe('hello');
  });

  it("a handback whose data makes the step's prompt unsendable is the agent's 400, naming why (outside test QA74-F7)", () => {
    const media = defineFlow({
      id: 'media',
      version: 1,
      data: z.object({ link: z.string().optional() }),
      start: 'show',
      steps: {
        show: {
          say: (d) => (d.link ? image(d.link) : 'no picture'),
          accepts: 'any',
          to: ['show'],
          on: (_i, c) => c.retry(),
        },
      },
    });
    const taken: SessionSnapshot = {
      ...takeSession(escalated(), 'Ana', env).snapshot,
      flow: 'media',
      step: 'show',
      data: {},
    };
    const refused = refusal(() => handback(taken, media, 'show', env, { link: 'https://x.example/a b.png' }));
    expect(refused).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', statusCode: 400 });
    expect(refused.message).toMatch(
      /^step "show"'s prompt, with the data given, breaks a WhatsApp limit: .*percent-encode/,
    );
    expect(handback(taken, media, 'show', env, { link: 'https://x.example/a%20b.png' }).snapshot.step).toBe(
      'show',
    );
  });

  it('a handback may set the data the step needs (what the agent settled with the user), checked by the schema', () => {
    const taken = takeSession(escalated(), 'Ana', env).snapshot;
    const r = handback(taken, orderFlow, 'collect_shipping_address', env, { product_id: 'sku_550e' });
    expect(r.snapshot).toMatchObject({
      step: 'collect_shipping_address',
      data: { ...taken.data, product_id: 'sku_550e' },
      needsAgent: false,
    });
    expect(r.records.map((x) => x.kind)).toEqual(['handback']);
    const refused = (set: Record<string, unknown>): BatonError =>
      refusal(() => handback(taken, orderFlow, 'collect_shipping_address', env, set));
    expect(refused({ product_id: 42 })).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });
    expect(refused({ product_id: 42 }).message).toMatch(/refuses that data: product_id: /);
    // Only a product of the catalogue (outside tests X11, D4: "sku_nope" was confirmed as an order).
    expect(refused({ product_id: 'sku_nope' }).message).toMatch(/refuses that data: product_id: /);
    expect(refused({ product_id: 'sku_550e', colour: 'red' }).message).toMatch(/data has no colour/);
    expect(refused({ customer_name: 'Jo' })).toMatchObject({ code: 'BATON_ERR_STEP_NEEDS_DATA' });
  });

  it('handback: version + 1, needs_agent and retries cleared, data kept, the step prompt once', () => {
    const taken = takeSession(escalated(), 'Ana', env).snapshot;
    const withProduct = { ...taken, data: { ...taken.data, product_id: 'sku_550e' } };
    const r = handback({ ...withProduct, retryCount: 2 }, orderFlow, 'collect_shipping_address', env);
    expect(r.snapshot).toMatchObject({
      step: 'collect_shipping_address',
      version: 4,
      visitVersion: 4,
      needsAgent: false,
      retryCount: 0,
      data: { customer_name: 'Jane', product_id: 'sku_550e' },
    });
    expect(r.snapshot.agent).toBeUndefined();
    expect(agentOf(r.snapshot)).toBeNull();
    expect(r.records).toMatchObject([
      { kind: 'handback', version: 4, from_step: 'choose_product', to_step: 'collect_shipping_address' },
    ]);
    // The prompt, once, for the new visit (the engine numbers it and writes its callback data).
    expect(r.effects).toHaveLength(1);
    expect(r.effects[0]).toMatchObject({ isPrompt: true, step: 'collect_shipping_address', version: 4 });
    expect(r.started).toEqual([]);
    // The bot resumes from there.
    const next = transition(orderFlow, r.snapshot, [txt('1 Main St', 103)], env);
    expect(next.snapshot).toMatchObject({ step: 'confirm_order', version: 5 });
  });
});
