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

const greeting = defineFlow({
  id: 'first_retry_greeting',
  start: 'ask',
  steps: {
    ask: {
      say: ['Welcome to the bike shop!', 'Your order number?'],
      accepts: 'text',
      to: [],
      first: (i, c) => (i.type === 'text' ? c.goto('ask') : c.retry('Please type your order number.')),
      on: (_i, c) => c.retry('Only the number, please.'),
    },
  },
});

describe("c.retry in the start step's first", () => {
  it('keeps the messages before the question: the new user saw none of them (outside test QA101-F6)', async () => {
    const t = testFlow(greeting);
    const out = await t.send({ type: 'media', mediaType: 'image', mediaId: 'media-2' });
    expect(out.map((r) => r.text)).toEqual(['Welcome to the bike shop!', 'Please type your order number.']);
    // A retry later asks again without the greeting.
    const again = await t.send('hm');
    expect(again.map((r) => r.text)).toEqual(['Only the number, please.']);
  });

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
