/**
 * Events (the flow's `events`): what the bot's own systems tell a session, applied in order with
 * the user's messages by the same pure transition, through `testFlow`.
 */
import { describe, expect, it } from 'vitest';
import { FlowDefinitionError } from '../../src/errors.ts';
import { defineFlow, type FlowSpec } from '../../src/flow/define.ts';
import { testFlow } from '../../src/index.ts';
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

  it('are ignored when `on` returns nothing or the flow has no such event, and held with an agent', async () => {
    const t = shop();
    await t.send('hi');
    expect(await t.event('order_shipped', { order: 'ORD-7' })).toEqual([]);
    expect(t.records.at(-1)).toMatchObject({ kind: 'ignored', to_step: 'ask_name' });
    expect(await t.event('no_such_event')).toEqual([]);
    expect(t.records.at(-1)).toMatchObject({ kind: 'ignored' });
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
});
