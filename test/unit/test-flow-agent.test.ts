/**
 * `testFlow`'s agent side (outside test A6): a bot author tests a hand-off to a person and the
 * handback without a server, through the same pure functions the admin API's routes commit.
 */
import { describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { testFlow } from '../../src/index.ts';

const shop = () => testFlow(orderStatusFlow({ apiUrl: 'http://shop.invalid' }));

/** A user who looked an order up and tapped `human`: waiting for an agent nobody sent yet. */
async function askedForAPerson(): Promise<ReturnType<typeof shop>> {
  const t = shop();
  await t.send('hi');
  await t.send('ORD-12345');
  await t.resolve('lookup', {
    found: true,
    order: { number: 'ORD-12345', status: 'in transit', events: [{ at: '2026-11-29', text: 'Left' }] },
  });
  await t.tap('human');
  expect(t.state!.needsAgent).toBe(true);
  return t;
}

describe('testFlow with an agent', () => {
  it('takes a session, holds the user, writes, and hands back with data at a step that needs it', async () => {
    const t = shop();
    await t.send('hi');
    expect(t.take('ana')).toEqual([]);
    expect(t.state).toMatchObject({ needsAgent: true, agent: { name: 'ana' }, version: 2 });
    expect(t.records.at(-1)).toMatchObject({ kind: 'escalated', worker: 'agent:ana' });
    // With an agent, the bot answers nothing.
    expect(await t.send('ORD-12345?')).toEqual([]);
    expect(t.step).toBe('ask_order');
    const [said] = t.agentSays('Let me check that order for you.');
    // Numbered after the bot's prompt, as the outbox numbers it.
    expect(said).toMatchObject({
      text: 'Let me check that order for you.',
      isPrompt: false,
      callbackData: 'baton:order_status:ask_order:2:agent-2',
    });
    // Refused as the API refuses it: the step needs the order.
    await expect(t.handback('looking_up')).rejects.toMatchObject({ code: 'BATON_ERR_STEP_NEEDS_DATA' });
    // @ts-expect-error: "nope" is not a data key (refused when it compiles, and when it runs)
    await expect(t.handback('looking_up', { nope: 1 })).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
    });
    // Held to what ask_order stores: a number as typed reached the shop's URL (QA34-F5).
    await expect(t.handback('looking_up', { order: ' ord-00123 ' })).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message: expect.stringContaining('order'),
    });
    // Lists and objects are refused as the API's body schema refuses them (outside test QA41-F1).
    const found = { number: 'ORD-12345', status: 'shipped', events: [] };
    await expect(t.handback('show_status', { order: 'ORD-12345', found })).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message:
        'data.found must be a string, a number, a boolean or null (lists and objects are not set by hand)',
    });
    // And everything else the API's body schema refuses, in its words (one schema for both).
    await expect(t.handback('looking_up', { order: 'ORD-12345', 'a-b': 1 } as never)).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message:
        'data.a-b is not an identifier of at most 64 characters (a letter or _, then letters, digits or _)',
    });
    await expect(t.handback('looking_up', { order: 'x'.repeat(4097) })).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message: 'data.order must be at most 4,096 characters',
    });
    await expect(t.handback('looking_up', { order: Infinity } as never)).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message: expect.stringMatching(/^data\.order /),
    });
    const back = await t.handback('looking_up', { order: 'ORD-12345' });
    expect(back.map((r) => r.text)).toEqual(['Looking up ORD-12345…']);
    expect(t.state).toMatchObject({ needsAgent: false, step: 'looking_up', data: { order: 'ORD-12345' } });
    expect(t.state!.agent).toBeUndefined();
    expect(t.records.at(-1)).toMatchObject({ kind: 'handback', worker: 'agent:ana', to_step: 'looking_up' });
    expect(t.pendingEffects).toMatchObject([{ name: 'lookup', input: { order: 'ORD-12345' } }]);
  });

  it('says what the API says: writing before taking, a second agent, a step closed to handbacks', async () => {
    const t = shop();
    expect(() => t.take()).toThrow(/first message/);
    await t.send('hi');
    expect(() => t.agentSays('hello')).toThrow(expect.objectContaining({ code: 'BATON_ERR_NOT_WITH_AGENT' }));
    t.take('ana');
    expect(() => t.take('bo')).toThrow(expect.objectContaining({ code: 'BATON_ERR_TAKEN_BY_OTHER' }));
    await expect(t.handback('cancelling', { order: 'ORD-1' })).rejects.toMatchObject({
      code: 'BATON_ERR_STEP_NOT_FOR_HANDBACK',
    });
    await t.handback('ask_order');
    expect(t.step).toBe('ask_order');
    await expect(t.handback('ask_order')).rejects.toMatchObject({ code: 'BATON_ERR_NOT_WITH_AGENT' });
  });

  it('a session an agent works on does not expire under them; one nobody took does (outside test D3)', async () => {
    const HOUR = 3_600_000;
    const t = shop();
    await t.send('hi');
    t.take('ana');
    t.advance(20 * HOUR);
    t.agentSays('Still checking, sorry for the wait.');
    t.advance(20 * HOUR); // 40 h after the user's message, 20 h after the agent's
    expect(await t.send('any news?')).toEqual([]);
    expect(t.records.map((r) => r.kind)).not.toContain('expired');
    expect(t.records.at(-1)).toMatchObject({ kind: 'held' });
    expect(t.state).toMatchObject({ needsAgent: true, agent: { name: 'ana' } });
    await t.handback('ask_order');
    t.advance(23 * HOUR); // 63 h after the user's last message, 23 h after the handback
    await t.send('ORD-12345');
    expect(t.step).toBe('looking_up');

    // Waiting for an agent nobody sent: the user's next message after the TTL starts afresh.
    const u = await askedForAPerson();
    u.advance(25 * HOUR);
    await u.send('hello?');
    expect(u.records.map((r) => r.kind)).toContain('expired');
    expect(u.state!.needsAgent).toBe(false);
  });

  it('an agent who writes to a waiting session nobody took takes it, as the engine does (QA63-F3)', async () => {
    const t = await askedForAPerson();
    expect(t.state!.agent).toBeUndefined();
    const [said] = t.agentSays('Hi, Ana here.', 'ana');
    expect(said).toMatchObject({ text: 'Hi, Ana here.', isPrompt: false });
    expect(t.state).toMatchObject({ needsAgent: true, agent: { name: 'ana' } });
    expect(t.records.at(-1)).toMatchObject({ kind: 'agent_message', worker: 'agent:ana' });
    // A colleague is asked first, as the API asks ("confirm"); unnamed, the holder writes.
    expect(() => t.agentSays('Bo here.', 'bo')).toThrow(
      expect.objectContaining({ code: 'BATON_ERR_TAKEN_BY_OTHER' }),
    );
    t.agentSays('Bo here, taking over.', 'bo', { confirm: true });
    expect(t.records.at(-1)).toMatchObject({ kind: 'agent_message', worker: 'agent:bo' });
    expect(t.state!.agent).toMatchObject({ name: 'ana' });
    t.agentSays('Still Ana.');
    expect(t.records.at(-1)).toMatchObject({ worker: 'agent:ana' });
    // Unnamed, on a session nobody took: written, and nobody takes it.
    const u = await askedForAPerson();
    u.agentSays('Someone will be with you shortly.');
    expect(u.state!.agent).toBeUndefined();
    expect(u.records.at(-1)).toMatchObject({ kind: 'agent_message', worker: 'agent:unknown' });
  });

  it('a hand-back at the status with another order number shows and cancels the order looked up, not the new one (outside test QA73-F2)', async () => {
    const t = await askedForAPerson();
    t.take('ana');
    const back = await t.handback('show_status', { order: 'ORD-01299' });
    expect(back.map((r) => r.text).join('\n')).toContain('ORD-12345');
    expect(back.map((r) => r.text).join('\n')).not.toContain('ORD-01299');
    const confirm = await t.tap('cancel_order');
    expect(confirm.at(-1)!.text).toContain('ORD-12345');
    expect(confirm.at(-1)!.text).not.toContain('ORD-01299');
    await t.tap('cancel_yes');
    // The cancel reaches the shop for the order the user saw and confirmed.
    expect(t.pendingEffects).toMatchObject([{ name: 'cancel', input: { order: 'ORD-12345' } }]);
    // Handed back where the bot looks the order up, the new number is what it asks the shop for.
    const u = await askedForAPerson();
    u.take('ana');
    await u.handback('looking_up', { order: 'ORD-01299' });
    expect(u.pendingEffects).toMatchObject([{ name: 'lookup', input: { order: 'ORD-01299' } }]);
  });

  it("a flow's own hand-off waits for an agent, who takes it without a new version", async () => {
    const t = await askedForAPerson();
    const version = t.state!.version;
    t.take('ana');
    expect(t.state).toMatchObject({ version, agent: { name: 'ana', version } });
    expect((await t.handback('show_status')).at(-1)!.isPrompt).toBe(true);
    expect(t.step).toBe('show_status');
  });
});

describe('testFlow names what it cannot do (outside test QA92-F4)', () => {
  it('a tap of a typo of an offered choice is an error naming the one meant; a far-off id is sent', async () => {
    const t = shop();
    await t.send('hi');
    await t.send('ORD-12345');
    await t.resolve('lookup', {
      found: true,
      order: { number: 'ORD-12345', status: 'in transit', events: [] },
    });
    const typo = t.tap('cancel_ordr');
    await expect(typo).rejects.toMatchObject({ code: 'BATON_ERR_TEST_USAGE' });
    await expect(typo).rejects.toThrow(
      /tap\("cancel_ordr"\): no prompt offered it; did you mean "cancel_order"\?/,
    );
    // Nothing was sent for it.
    expect(t.records.at(-1)!.kind).not.toBe('retry');
    // An id far from every offered one is the test's own business: sent as it is.
    await t.tap('something_else_entirely');
    expect(t.records.at(-1)!.message_ids).toHaveLength(1);
  });

  it('resolve and fail of an effect not pending are errors with a code, naming the one meant', async () => {
    const t = shop();
    await t.send('hi');
    await t.send('ORD-12345');
    // The effect's id as its run gets it, to check an idempotency key against.
    expect(t.pendingEffects[0]!.effectId).toBe(t.pendingEffects[0]!.id);
    await expect(t.resolve('lookpu' as 'lookup', { found: false })).rejects.toMatchObject({
      code: 'BATON_ERR_TEST_USAGE',
      message: 'no pending effect "lookpu" (did you mean "lookup"?) (pending: lookup)',
    });
    await expect(t.fail('cancel')).rejects.toThrow('no pending effect "cancel" (pending: lookup)');
  });
});
