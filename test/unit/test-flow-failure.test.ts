/**
 * `testFlow` after an input the flow fails on (outside test QA138-F8): every later `send` or `tap`
 * threw the first error again, where a running Baton dead-letters the batch and goes on.
 */
import { describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { testFlow } from '../../src/index.ts';

describe('testFlow after an input the flow fails on (outside test QA138-F8)', () => {
  it('drops it, as the engine dead-letters it: the next input goes on from the same step', async () => {
    const f = defineFlow({
      id: 'x',
      start: 'a',
      steps: {
        a: {
          say: 'Pick',
          choices: [
            { id: 'p', title: 'P' },
            { id: 'q', title: 'Q' },
          ],
          to: ['b'],
          on: (i, c) =>
            i.type === 'choice' && i.id === 'q' ? c.goto('b', {}, 'g'.repeat(5000)) : c.goto('b'),
        },
        b: { say: 'Done', to: [], accepts: 'any', on: (_i, c) => c.startOver() },
      },
    });
    const t = testFlow(f);
    await t.send('hi');
    await expect(t.tap('q')).rejects.toThrow(/text is 5000 characters|5,000/);
    expect(t.step).toBe('a');
    const next = await t.tap('p');
    expect(t.step).toBe('b');
    expect(next.map((r) => r.text)).toEqual(['Done']);
  });
});
