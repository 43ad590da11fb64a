/**
 * Which texts of one batch are one input (`joinTexts`): at a step that accepts text, a name typed
 * in pieces is one name (SPEC 5); at a step that accepts anything, each text is an input of its own
 * (outside test QA67-F1: an order number and a "thanks" after it were one input that was no number);
 * a step may choose either way.
 */
import { describe, expect, it } from 'vitest';
import { FlowDefinitionError } from '../../src/errors.ts';
import { defineFlow } from '../../src/flow/define.ts';
import { testFlow } from '../../src/testing/test-flow.ts';

function flow(at: { accepts?: 'text' | 'any'; joinTexts?: boolean }) {
  return defineFlow({
    id: 'notes',
    start: 'ask',
    steps: {
      ask: {
        say: 'Tell me',
        ...at,
        to: ['done'],
        first: (i, c) =>
          i.type === 'text' && i.text.startsWith('note') ? c.goto('done', { note: i.text }) : c.goto('ask'),
        on: (i, c) => (i.type === 'text' ? c.goto('done', { note: i.text }) : c.retry()),
      },
      done: {
        say: (d) => `Noted: ${String(d.note)}`,
        accepts: 'any',
        to: ['ask'],
        on: (_i, c) => c.restart('ask'),
      },
    },
  });
}

describe('joinTexts', () => {
  it('joins a burst at a step that accepts text, by default', async () => {
    const t = testFlow(flow({}));
    await t.send('hi');
    await t.send('12 Main St', 'Springfield');
    expect(t.data).toEqual({ note: '12 Main St Springfield' });
  });

  it('takes each text on its own at a step that accepts anything, by default, first message included', async () => {
    const t = testFlow(flow({ accepts: 'any' }));
    // The first text is the first message alone; the text after it answers the step it led to.
    await t.send('note one', 'thanks');
    expect(t.step).toBe('ask');
    expect(t.data).toEqual({});
    expect(t.records.map((r) => [r.kind, r.from_step, r.to_step])).toEqual([
      ['advance', null, 'done'],
      ['advance', 'done', 'ask'],
    ]);
    await t.send('12 Main St', 'Springfield');
    expect(t.data).toEqual({});
    expect(t.step).toBe('ask');
  });

  it('follows the step where it says: joined at a step that accepts anything, apart at a text step', async () => {
    const joined = testFlow(flow({ accepts: 'any', joinTexts: true }));
    await joined.send('note one', 'thanks');
    expect(joined.data).toEqual({ note: 'note one thanks' });
    const apart = testFlow(flow({ joinTexts: false }));
    await apart.send('hi');
    await apart.send('12 Main St', 'Springfield');
    expect(apart.step).toBe('ask');
    expect(apart.records.map((r) => r.kind)).toEqual(['advance', 'advance', 'advance']);
  });

  it('refuses joinTexts on a step of choices', () => {
    expect(() =>
      defineFlow({
        id: 'c',
        start: 'pick',
        steps: {
          pick: {
            say: 'Pick',
            choices: [{ id: 'a', title: 'A' }],
            joinTexts: true,
            to: ['pick'],
            on: (_i, c) => c.retry(),
          },
        },
      }),
    ).toThrow(FlowDefinitionError);
  });
});
