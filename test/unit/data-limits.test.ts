/**
 * A session's data is read and written with every batch: a handler that set 5 MB was taken
 * (outside test QA138-F2), where an effect's result may hold 256 KiB. Data over MAX_DATA_CHARS of
 * JSON is the flow's error where it is set, as data its schema refuses is; and so is what JSON
 * cannot store (QA138-F1).
 */
import { describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { MAX_DATA_CHARS } from '../../src/flow/transition.ts';
import { testFlow } from '../../src/index.ts';

const flow = defineFlow({
  id: 'big',
  start: 'a',
  steps: {
    a: {
      say: 'Size?',
      accepts: 'text',
      to: ['b'],
      on: (i, c) => {
        const n = Number(i.type === 'text' ? i.text : 0);
        return Number.isFinite(n)
          ? c.goto('b', { blob: 'x'.repeat(n) })
          : c.goto('b', { n: 1n as unknown as string });
      },
    },
    b: { say: 'Done', to: [], accepts: 'any', on: (_i, c) => c.startOver() },
  },
});

describe("a session's data", () => {
  it('up to the limit is kept; over it, or not JSON, is BATON_ERR_FLOW_DATA where it is set', async () => {
    const t = testFlow(flow);
    await t.send('hi');
    await expect(t.send(String(MAX_DATA_CHARS))).rejects.toMatchObject({
      code: 'BATON_ERR_FLOW_DATA',
      message: expect.stringMatching(/its data is \d+ characters of JSON, over the 1048576/),
    });
    expect(t.step).toBe('a');
    await expect(t.send('not a number')).rejects.toThrow(/its data cannot be stored as JSON: .*BigInt/);
    await t.send(String(MAX_DATA_CHARS - 100));
    expect(t.step).toBe('b');
  });
});
