/**
 * `c.retry(message)` in the start step's `first`: the new session is sent the start step's
 * prompt with the message as its text, as a retry's prompt is, and no retry is counted (the user
 * was not asked anything yet). The message was dropped (outside test QA97-F5).
 */
import { describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { testFlow } from '../../src/index.ts';

const flow = defineFlow({
  id: 'first_retry',
  start: 'ask',
  steps: {
    ask: {
      say: (_d, c) =>
        c.retry ? `${c.retry.message ?? 'Again:'} (try ${c.retry.count})` : 'Your order number?',
      accepts: 'text',
      to: ['done'],
      first: (i, c) =>
        i.type !== 'text'
          ? c.retry('Hi! Please type your order number.')
          : /^\d+$/.test(i.text)
            ? c.goto('done')
            : c.retry(),
      on: (i, c) => (i.type === 'text' && /^\d+$/.test(i.text) ? c.goto('done') : c.retry()),
    },
    done: { say: 'Thanks', accepts: 'any', to: [], on: (_i, c) => c.startOver() },
  },
});

describe("c.retry in the start step's first", () => {
  it("sends the start step's prompt with the message, counting no retry", async () => {
    const t = testFlow(flow);
    const out = await t.send({ type: 'media', mediaType: 'image', mediaId: 'media-1' });
    expect(t.step).toBe('ask');
    expect(t.state?.retryCount).toBe(0);
    expect(out.map((r) => r.text)).toEqual(['Hi! Please type your order number.']);
    // The user's next invalid input is the first retry.
    const again = await t.send('no idea');
    expect(again.map((r) => r.text)).toEqual(['Again: (try 1)']);
  });

  it('without a message, sends the prompt as on entry', async () => {
    const t = testFlow(flow);
    const out = await t.send('hello');
    expect(t.step).toBe('ask');
    expect(out.map((r) => r.text)).toEqual(['Your order number?']);
  });
});
