/**
 * Flow code that gives a batch what JSON cannot store (outside test QA138-F1): a BigInt or a
 * circular object in the data, in a message, in an effect's input. It failed only in the store's
 * commit, tried again and again: the session stuck for good, no dead letter, no notice, an admin
 * reset refused. Now it is the flow's error where it is made: the batch dead-lettered naming flow
 * and step, the error notice sent, the session where it was and free for the next message.
 */
import { describe, expect, it } from 'vitest';
import { defineFlow, effect } from '../../src/flow/define.ts';
import type { SessionView } from '../../src/model/session.ts';
import { harnessOn } from '../support/harness-on.ts';
import { text, webhook } from '../support/payloads.ts';
import { HARNESS_BACKENDS } from '../support/services.ts';

const circular = (): Record<string, unknown> => {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o;
};

const flow = defineFlow({
  id: 'unstorable',
  start: 'ask',
  effects: { book: effect({ run: async () => ({ ok: true }) }) },
  steps: {
    ask: {
      say: 'Name?',
      accepts: 'text',
      to: ['done', 'booking'],
      on: (i, c) => {
        const t = i.type === 'text' ? i.text.trim() : '';
        if (t === 'bigint') return c.goto('done', { n: 10n as unknown as number });
        if (t === 'circ') return c.goto('done', { o: circular() as unknown as string });
        if (t === 'say')
          return c.goto('done', {}, { type: 'text', text: 'x', extra: 10n } as unknown as string);
        if (t === 'book') return c.goto('booking', { name: t });
        return c.goto('done', { name: t });
      },
    },
    booking: {
      say: 'Booking…',
      to: ['done'],
      effect: {
        use: 'book',
        input: () => ({ reason: 10n }),
        onResult: (_r, c) => c.goto('done'),
        onFailure: (_f, c) => c.goto('done'),
      },
    },
    done: { say: 'Done.', to: [], accepts: 'any', on: (_i, c) => c.startOver() },
  },
});

describe.each(HARNESS_BACKENDS)(
  'flow code giving what JSON cannot store, on the %s backend',
  (_n, available, setup) => {
    const h = harnessOn(available, setup, {}, { flows: [flow] });

    it.skipIf(!available)(
      'is dead-lettered naming flow and step, the user told; the session takes the next message',
      async () => {
        for (const [i, word] of ['bigint', 'circ', 'say', 'book'].entries()) {
          const user = `1555083100${i}`;
          const T = 1_750_000_000 + i * 100;
          expect((await h.post(webhook([text(user, 'hi', T)]))).status).toBe(200);
          await h.until(async () => (await h.session(user))?.current_step === 'ask');
          expect((await h.post(webhook([text(user, word, T + 1)]))).status).toBe(200);
          const letter = await h.until(async () => {
            const dead = (await (await h.admin('/dead-letters')).json()) as {
              dead_letters: Array<{ user: string; reason: string }>;
            };
            return dead.dead_letters.find((d) => d.user === user);
          }, 15_000);
          expect(letter.reason, word).toMatch(/BATON_ERR_FLOW_DATA/);
          expect(letter.reason, word).toMatch(/unstorable/);
          expect(letter.reason, word).toMatch(
            word === 'book' ? /effect book.*JSON/ : /cannot be stored as JSON/,
          );
          await h.graph.waitFor(
            (c) => c.body.to === `+${user}` && /went wrong/i.test(JSON.stringify(c.body)),
          );
          // Nothing of it was committed; the next message goes on from the step it was at.
          const s = (await (await h.admin(`/sessions/${user}`)).json()) as SessionView;
          expect(s.current_step, word).toBe('ask');
          expect((await h.post(webhook([text(user, 'Ana', T + 2)]))).status).toBe(200);
          await h.until(async () => (await h.session(user))?.current_step === 'done', 15_000);
          expect((await h.session(user))?.data).toEqual({ name: 'Ana' });
        }
        const stats = (await (await h.admin('/stats')).json()) as { queue_depth: number };
        expect(stats.queue_depth).toBe(0);
      },
      60_000,
    );
  },
);
