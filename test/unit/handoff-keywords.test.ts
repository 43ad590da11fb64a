/**
 * A flow's `handoffKeywords`: a text that hands the user to a person from any step, steps of
 * choices included, where a typed text never reaches `on` (outside test QA7-F2: "human" at a list
 * step was a retry, three times, then a hand-off for too many invalid answers).
 */
import { describe, expect, it } from 'vitest';
import { defineFlow, type FlowSpec } from '../../src/flow/define.ts';
import { transition } from '../../src/flow/transition.ts';
import { messages, transitionEnv } from '../support/batch-input.ts';
import { testFlow } from '../../src/index.ts';

type Step = 'ask_name' | 'pick';
const spec: FlowSpec<Step, { name?: string; service?: string }> = {
  id: 'bikes',
  start: 'ask_name',
  handoffKeywords: ['human', 'Talk to a person '],
  steps: {
    ask_name: {
      say: 'Your name?',
      accepts: 'text',
      to: ['pick'],
      on: (i, c) => (i.type === 'text' ? c.goto('pick', { name: i.text }) : c.retry()),
    },
    pick: {
      say: 'Which service?',
      choices: [
        { id: 'flat', title: 'Flat tyre' },
        { id: 'brakes', title: 'Brakes' },
      ],
      to: ['ask_name'],
      on: (i, c) => c.goto('ask_name', { service: i.type === 'choice' ? i.id : '' }),
    },
  },
};

describe('handoffKeywords', () => {
  it('hand off at a step of choices, any case, trimmed, with the keyword as the reason', async () => {
    const t = testFlow(defineFlow(spec));
    await t.send('hi');
    await t.send('Sam');
    expect(t.step).toBe('pick');
    const out = await t.send('  HUMAN ');
    expect(out.map((r) => r.text)).toEqual([expect.stringMatching(/member of our team/)]);
    expect(t.records.at(-1)).toMatchObject({ kind: 'escalated', from_step: 'pick', to_step: 'pick' });
    expect(t.state).toMatchObject({
      needsAgent: true,
      retryCount: 0,
      handoffReason: 'asked for a person ("HUMAN")',
    });
    // From then on the user's messages are held, keywords included.
    expect(await t.send('human')).toEqual([]);
    expect(t.records.at(-1)).toMatchObject({ kind: 'held' });
  });

  it('match with runs of white space inside them as one space, reset keywords too (outside test QA48)', async () => {
    const t = testFlow(defineFlow(spec));
    await t.send('hi');
    await t.send('Sam');
    expect(t.step).toBe('pick');
    await t.send('Start \t Over');
    expect(t.records.at(-1)).toMatchObject({ kind: 'reset', to_step: 'ask_name' });
    await t.send('Sam');
    await t.send('start\u0085over');
    expect(t.records.at(-1)).toMatchObject({ kind: 'reset', to_step: 'ask_name' });
    await t.send('Sam');
    await t.send('talk  to\na person');
    expect(t.records.at(-1)).toMatchObject({ kind: 'escalated', from_step: 'pick' });
  });

  it('end a burst of texts at a text step: the texts before it are the answer, then the hand-off', async () => {
    const t = testFlow(defineFlow(spec));
    await t.send('hi');
    const out = await t.send('Sam', 'Smith', 'talk to a person');
    expect(t.records.slice(-2).map((r) => [r.kind, r.to_step])).toEqual([
      ['advance', 'pick'],
      ['escalated', 'pick'],
    ]);
    expect(t.data.name).toBe('Sam Smith');
    // The prompt of the step the burst left is not sent: only the hand-off notice.
    expect(out.map((r) => r.text)).toEqual([expect.stringMatching(/member of our team/)]);
  });

  it("are none by default, and a new session's first message is no keyword", async () => {
    const plain = testFlow(defineFlow({ ...spec, handoffKeywords: undefined }));
    await plain.send('hi');
    await plain.send('human');
    expect(plain.data.name).toBe('human');
    const t = testFlow(defineFlow(spec));
    await t.send('human');
    expect(t.state).toMatchObject({ step: 'ask_name', needsAgent: false });
  });

  it('give way to a choice picked by its title or number on a gateway without buttons (outside test QA9-F3)', () => {
    const flow = defineFlow({
      ...spec,
      handoffKeywords: ['brakes', '1', 'human'],
    });
    const env = transitionEnv('wasender');
    const msg = messages('wasender', 'wasender');
    let ts = 100;
    const said = (body: string) => msg({ type: 'text', body }, (ts += 1));
    const s1 = transition(flow, null, [said('hi')], env).snapshot;
    const atPick = transition(flow, s1, [said('Sam')], env).snapshot;
    for (const typed of ['Brakes', '1']) {
      const r = transition(flow, atPick, [said(typed)], env);
      expect(
        r.records.map((x) => x.kind),
        typed,
      ).toEqual(['advance']);
      expect(r.snapshot.needsAgent).toBe(false);
    }
    expect(transition(flow, atPick, [said('human')], env).snapshot.needsAgent).toBe(true);
  });

  it('are checked when the flow loads', () => {
    expect(() => defineFlow({ ...spec, handoffKeywords: ['Restart'] })).toThrow(
      /"restart" is both a reset and a hand-off keyword/,
    );
    expect(() => defineFlow({ ...spec, handoffKeywords: [' '] })).toThrow(
      /handoffKeywords: a keyword must be a text/,
    );
  });
});
