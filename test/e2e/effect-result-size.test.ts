/**
 * An effect's result is stored with the session's input and read with its batch: one far larger
 * than a result needs to be (an outside test's shop answered 20 MB) slowed every user of the
 * process and bloated the store. Over 256 KiB of JSON, the result is a failure (not retried,
 * its reason recorded), and the flow's `onFailure` handles it; a result just under the limit is
 * applied as usual. Both stores.
 */
import { describe, expect, it } from 'vitest';
import { MAX_RESULT_CHARS } from '../../src/engine/effects.ts';
import { defineFlow, effect } from '../../src/flow/define.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

let runs = 0;
const reportFlow = defineFlow({
  id: 'report',
  start: 'ask',
  effects: {
    fetch: effect({
      attempts: 3,
      backoffMs: 10,
      run: async (input: { size: number }) => {
        runs += 1;
        return { body: 'x'.repeat(input.size) };
      },
    }),
  },
  steps: {
    ask: {
      say: 'Size?',
      accepts: 'text',
      to: ['wait'],
      on: (i, c) => (i.type === 'text' ? c.goto('wait', { size: Number(i.text) }) : c.retry()),
    },
    wait: {
      say: 'Fetching…',
      to: ['ask'],
      effect: {
        use: 'fetch',
        input: (d) => ({ size: Number(d.size) }),
        onResult: (r, c) => c.goto('ask', {}, `got ${r.body.length}`),
        onFailure: (f, c) => c.goto('ask', {}, `failed after ${f.attempts}: ${f.error}`),
      },
    },
  },
});

describe.each(HARNESS_BACKENDS)(
  'an effect result too large to store, on the %s backend',
  (_n, available, setup) => {
    const h = harnessOn(available, setup, {}, { flows: [reportFlow] });

    it.skipIf(!available)(
      'fails at once, with its reason; one just under the limit is applied',
      async () => {
        const T = 1_750_000_000;
        const small = MAX_RESULT_CHARS - 100;
        const cases: Array<[string, number, RegExp]> = [
          ['15550820001', small, new RegExp(`^got ${small}$`)],
          [
            '15550820002',
            MAX_RESULT_CHARS + 1,
            /^failed after 1: the result is \d+ characters of JSON, over the 262144/,
          ],
        ];
        for (const [user, size, said] of cases) {
          runs = 0;
          expect((await h.post(webhook([text(user, 'hi', T)])))?.status).toBe(200);
          await h.until(async () => (await h.session(user))?.current_step === 'ask');
          expect((await h.post(webhook([text(user, String(size), T + 1)]))).status).toBe(200);
          const call = await h.graph.waitFor(
            (c) =>
              c.body.to === `+${user}` &&
              said.test(String((c.body.text as { body?: string } | undefined)?.body)),
            15_000,
          );
          expect(call).toBeDefined();
          expect(runs).toBe(1);
        }
      },
      40_000,
    );
  },
);
