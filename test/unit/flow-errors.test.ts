import { testEngine } from '../support/engine.ts';
import { describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { defineFlow } from '../../src/flow/define.ts';
import { testFlow } from '../../src/testing/test-flow.ts';

const buggy = defineFlow({
  id: 'buggy',
  start: 'ask',
  steps: {
    ask: {
      say: 'Say something',
      accepts: 'text',
      to: ['done'],
      on: (input, c) => {
        if (input.type === 'text' && input.text === 'boom') throw new Error('flow bug');
        if (input.type === 'text' && input.text === 'jump') return c.goto('nowhere' as never);
        return c.goto('done');
      },
    },
    done: { say: 'Done', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
  },
});

describe('flow code that fails', () => {
  it.each([
    ['boom', 'BATON_ERR_FLOW_HANDLER'],
    ['jump', 'BATON_ERR_FLOW_UNDECLARED_TRANSITION'],
  ])('dead-letters the batch (%s) with its reason and leaves the state as it was', async (body, code) => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: string[] = [];
    const engine = testEngine(backend, {
      flows: [buggy],
      send: async (m) => (sent.push(m.callbackData), { providerMessageId: m.id }),
    });
    const key = { channel: 'c', user: 'u' };
    const msg = (id: string, text: string, ts: number) => ({
      id,
      provider: 'cloud-api' as const,
      ...key,
      timestamp: ts,
      content: { type: 'text' as const, body: text },
    });
    await backend.ingest({ messages: [msg('w1', 'hi', 1)], statuses: [] });
    await engine.runSession(key);
    await backend.ingest({ messages: [msg('w2', body, 2)], statuses: [] });
    await engine.runSession(key);
    const s = (await backend.load(key))!;
    expect(s).toMatchObject({ step: 'ask', version: 1 });
    expect((await backend.stats()).queueDepth).toBe(0);
    const [letter] = await backend.listDeadLetters(10);
    expect(letter).toMatchObject({ kind: 'inbound', ref: 'w2' });
    expect(letter!.reason).toContain(code);
    expect(sent).toEqual(['baton:buggy:ask:1', 'baton:buggy:ask:1:w2']);
    // Replayed after a fix (here: the same message, now processed again and failing again,
    // which shows it went back to the mailbox).
    expect(await backend.replayDeadLetter(letter!.id)).toBe(true);
    expect((await backend.stats()).queueDepth).toBe(1);
    // Failing again, it is a dead letter again, and the user gets no second notice (it would
    // repeat the first one's biz_opaque_callback_data).
    await engine.runSession(key);
    expect((await backend.stats()).queueDepth).toBe(0);
    expect(await backend.listDeadLetters(10)).toMatchObject([{ kind: 'inbound', ref: 'w2' }]);
    expect(sent).toEqual(['baton:buggy:ask:1', 'baton:buggy:ask:1:w2']);
    await backend.close();
  });
});

describe('an error in code that builds a reply', () => {
  it('names the step whose code failed, and the step the batch began at', async () => {
    const words = defineFlow({
      id: 'words_bug',
      start: 'a',
      words: { field: 'lang', default: 'en', catalogs: { en: { hi: 'Hello' } } },
      steps: {
        a: { say: 'start', accepts: 'any', to: ['b'], on: (_i, c) => c.goto('b') },
        b: { say: (_d, { t }) => t('nope'), accepts: 'any', to: ['a'], on: (_i, c) => c.goto('a') },
      },
    });
    const t = testFlow(words);
    await t.send('hi');
    await expect(t.send('go')).rejects.toThrow(
      /^flow words_bug, step b: say: .*t\("nope"\): no such text.* \(the batch began at a\)$/,
    );
  });
});
