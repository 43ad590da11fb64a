/**
 * Events (the flow's `events`): what the bot's own systems tell a session, applied in order with
 * the user's messages by the same pure transition, through `testFlow`.
 */
import { describe, expect, it } from 'vitest';
import { FlowDefinitionError } from '../../src/errors.ts';
import { defineFlow, type FlowSpec } from '../../src/flow/define.ts';
import { transition } from '../../src/flow/transition.ts';
import { testFlow } from '../../src/index.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';
import { messages, transitionEnv } from '../support/batch-input.ts';
import { eventsSpec, type Data, type Step } from '../support/event-flow.ts';

const shop = () => testFlow(defineFlow(eventsSpec));
const HOUR = 3_600_000;

describe('flow events', () => {
  it('go to a step its `to` declares, with the prompt, from where the session is', async () => {
    const t = shop();
    await t.send('hi');
    await t.send('Ana');
    expect(t.step).toBe('menu');
    const replies = await t.event('order_shipped', { order: 'ORD-7' });
    expect(replies.map((r) => r.text)).toEqual(['Order ORD-7 is shipped.']);
    expect(replies[0]).toMatchObject({ isPrompt: true, callbackData: 'baton:shop:tracking:3' });
    expect(t.data).toEqual({ name: 'Ana', order: 'ORD-7', status: 'shipped' });
    expect(t.records.at(-1)).toMatchObject({ kind: 'advance', from_step: 'menu', to_step: 'tracking' });
    expect(t.records.at(-1)!.message_ids[0]).toMatch(/^ev:/);
    // The user answers the event's prompt as any other.
    await t.tap('ok');
    expect(t.step).toBe('menu');
  });

  it('are ignored when `on` returns nothing, and held with an agent; an event the flow has not is refused, as the route refuses it', async () => {
    const t = shop();
    await t.send('hi');
    expect(await t.event('order_shipped', { order: 'ORD-7' })).toEqual([]);
    expect(t.records.at(-1)).toMatchObject({ kind: 'ignored', to_step: 'ask_name' });
    await expect(t.event('no_such_event')).rejects.toMatchObject({ code: 'BATON_ERR_UNKNOWN_EVENT' });
    expect(t.state!.version).toBe(1);
    await t.send('Ana');
    t.take('bo');
    expect(await t.event('order_shipped', { order: 'ORD-7' })).toEqual([]);
    expect(t.records.at(-1)).toMatchObject({ kind: 'held', to_step: 'menu' });
    expect(t.data.order).toBeUndefined();
  });

  it('hand off as a step does, and are refused a step they do not declare or an outcome they may not have', async () => {
    const t = shop();
    await t.send('hi');
    await t.send('Ana');
    const [notice] = await t.event('fraud_flag');
    expect(notice!.text).toMatch(/member of our team/);
    expect(t.state).toMatchObject({ needsAgent: true, handoffReason: 'fraud check' });

    const u = shop();
    await u.send('hi');
    await u.send('Ana');
    await expect(u.event('wrong_way')).rejects.toMatchObject({
      code: 'BATON_ERR_FLOW_UNDECLARED_TRANSITION',
      message: expect.stringContaining('event "wrong_way" went to "menu"'),
    });
    await expect(shop().event('retrying')).rejects.toMatchObject({ code: 'BATON_ERR_FLOW_HANDLER' });
  });

  it('start a session for a user who never wrote, at the step they lead to', async () => {
    const t = shop();
    await t.event('quiet');
    expect(t.state).toMatchObject({ step: 'shipped_only', version: 1, lastInteraction: null });
    expect(t.replies.map((r) => r.text)).toEqual(['Shipped.']);
    await t.send('ok');
    expect(t.step).toBe('menu');
  });

  it('keep an idle session alive, and expire one idle for longer than the TTL first', async () => {
    const t = shop();
    await t.send('hi');
    await t.send('Ana');
    t.advance(23 * HOUR);
    await t.event('order_shipped', { order: 'ORD-7' });
    t.advance(23 * HOUR); // 46 h after the user's last message, 23 h after the event
    await t.tap('ok');
    expect(t.records.map((r) => r.kind)).not.toContain('expired');
    expect(t.step).toBe('menu');
    expect(t.data.name).toBe('Ana');

    t.advance(25 * HOUR);
    await t.event('order_shipped', { order: 'ORD-8' });
    expect(t.records.slice(-2).map((r) => r.kind)).toEqual(['expired', 'advance']);
    expect(t.data).toEqual({ order: 'ORD-8', status: 'shipped' });
  });

  it('are checked when the flow loads', () => {
    const load = (events: FlowSpec<Step, Data>['events']) => () => defineFlow({ ...eventsSpec, events });
    expect(load({ Bad: { to: [], on: () => undefined } })).toThrow(
      /event "Bad": name must be lower_snake_case/,
    );
    expect(load({ x: { to: ['nowhere' as Step], on: () => undefined } })).toThrow(
      /event "x": goes to unknown step "nowhere"/,
    );
    expect(load({ x: { to: [] } as never })).toThrow(FlowDefinitionError);
    // Without the events that reach them, tracking and shipped_only are unreachable.
    expect(load({})).toThrow(/step "(tracking|shipped_only)" is unreachable/);
  });

  describe("in one batch with the user's messages written before they could see it", () => {
    const flow = defineFlow(eventsSpec);
    const env = transitionEnv();
    const msg = messages();
    const text = (body: string, ts: number) => msg({ type: 'text', body }, ts);
    const shipped = (ts: number) =>
      msg({ type: 'event', name: 'order_shipped', payload: { order: 'ORD-7' } }, ts);
    const atMenu = (): SessionSnapshot => {
      const s1 = transition(flow, null, [text('hi', 100)], env).snapshot;
      return transition(flow, s1, [text('Ana', 101)], env).snapshot;
    };
    const texts = (r: ReturnType<typeof transition>) =>
      r.effects.map((e) => ('text' in e.body ? e.body.text : e.body.type));

    it("send the event's prompt when the batch leaves its step (outside test QA7-F1)", () => {
      // "ok" taps the tracking prompt's button before the user saw the news: the news still goes.
      const r = transition(
        flow,
        atMenu(),
        [shipped(102), msg({ type: 'choice', source: 'button_reply', id: 'ok', title: 'OK' }, 102)],
        env,
      );
      expect(r.records.map((x) => [x.kind, x.to_step])).toEqual([
        ['advance', 'tracking'],
        ['advance', 'menu'],
      ]);
      expect(texts(r)).toEqual(['Order ORD-7 is shipped.', 'Hi Ana, what now?']);
    });

    it("ask the event's prompt once when the input after it is a retry that repeats it", () => {
      const r = transition(flow, atMenu(), [shipped(102), text('thanks', 102)], env);
      expect(r.records.map((x) => x.kind)).toEqual(['advance', 'retry']);
      expect(texts(r)).toEqual(['Order ORD-7 is shipped.']);
      // The event's own copy stands (its visit's version), the retry's is not sent.
      expect(r.effects[0]!.version).toBe(r.records[0]!.version);
    });

    it("send the event's prompt when the retries after it escalate, or a reset follows (outside test QA9-F1)", () => {
      const escalated = transition(
        flow,
        atMenu(),
        [shipped(102), text('a', 102), text('b', 102), text('c', 102), text('d', 102)],
        env,
      );
      expect(escalated.records.map((x) => x.kind)).toEqual([
        'advance',
        'retry',
        'retry',
        'retry',
        'escalated',
      ]);
      expect(texts(escalated)).toEqual([
        'Order ORD-7 is shipped.',
        expect.stringMatching(/member of our team/),
      ]);
      const reset = transition(flow, atMenu(), [shipped(102), text('thanks', 102), text('reset', 102)], env);
      expect(reset.records.map((x) => x.kind)).toEqual(['advance', 'retry', 'reset']);
      expect(texts(reset)).toEqual(['Order ORD-7 is shipped.', 'Your name?']);
    });
  });
});
