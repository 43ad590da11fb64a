/** A flow with one effect (`look`) and a record of it to run, for runEffect's tests. */
import { defineFlow, effect } from '../../src/flow/define.ts';
import type { OutboundRecord } from '../../src/model/session.ts';

/** A record of flow `fx`'s `look` effect, as a holder finds it. */
export function effectRecord(status: 'pending' | 'sending', attempts: number): OutboundRecord {
  return {
    id: 'c:u:1',
    channel: 'c',
    user: 'u',
    seq: 1,
    flow: 'fx',
    step: 'looking',
    version: 2,
    to: 'u',
    body: { type: 'text', text: '' },
    callbackData: 'baton:fx:looking:2',
    isPrompt: false,
    effect: { id: 'c:u:1', name: 'look', input: { q: 1 }, data: {} },
    status,
    attempts,
    createdAt: 0,
  } as unknown as OutboundRecord;
}

/** A flow whose lookup answers as `answer` says, counting its calls. */
export function lookupFlow(answer: () => unknown) {
  const calls = { n: 0 };
  const flow = defineFlow({
    id: 'fx',
    effects: {
      look: effect({
        attempts: 3,
        backoffMs: 1,
        run: async (_input: { q: number }) => {
          calls.n += 1;
          return answer();
        },
      }),
    },
    start: 'ask',
    steps: {
      ask: { say: 'n?', to: ['looking'], on: (i, c) => (i.type === 'text' ? c.goto('looking') : c.retry()) },
      looking: {
        say: 'looking',
        to: ['ask'],
        effect: {
          use: 'look',
          input: () => ({ q: 1 }),
          onResult: (_r, c) => c.goto('ask'),
          onFailure: (_f, c) => c.goto('ask'),
        },
      },
    },
  });
  return { flow, calls };
}
