/**
 * The flow's code reads the data as its schema does (outside test B4): a `.default()` is set, a
 * key the schema does not have is not kept, and a transform (which would run again on its own
 * output at every change) is refused at load.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineFlow } from '../../src/flow/define.ts';
import { testFlow } from '../../src/testing/test-flow.ts';

const Data = z.object({ name: z.string().optional(), n: z.number().default(7) });

const probe = defineFlow({
  id: 'probe',
  data: Data,
  start: 'a',
  steps: {
    a: {
      say: (d) => `n=${d.n}`,
      accepts: 'text',
      to: ['b'],
      on: (i, c) => {
        // A non-literal object with a key the schema does not have.
        const set = { name: i.type === 'text' ? i.text : '', extra: 'kept?' };
        return c.goto('b', set);
      },
    },
    b: {
      say: (d) => `hi ${d.name ?? ''} n+1=${d.n + 1}`,
      accepts: 'any',
      to: ['a'],
      on: (_i, c) => c.goto('a'),
    },
  },
});

describe('session data as the schema reads it', () => {
  it('has its defaults from the first prompt on, and drops keys the schema does not have', async () => {
    const t = testFlow(probe);
    expect((await t.send('hi')).map((r) => r.text)).toEqual(['n=7']);
    expect((await t.send('Bob')).map((r) => r.text)).toEqual(['hi Bob n+1=8']);
    expect(t.data).toEqual({ name: 'Bob', n: 7 });
  });

  it('refuses a data schema that transforms, naming the keys', () => {
    expect(() =>
      defineFlow({
        id: 'tx',
        data: z.object({
          up: z
            .string()
            .transform((s) => s.toUpperCase())
            .optional(),
          ok: z.string().optional(),
        }),
        start: 'a',
        steps: { a: { say: 'x', accepts: 'any', to: ['a'], on: (_i, c) => c.goto('a') } },
      }),
    ).toThrow(/flow "tx": data "up": a data schema describes the data as stored.*keep the data plain/);
  });
});
