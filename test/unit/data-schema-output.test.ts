/**
 * The flow's code reads the data as its schema does (outside test B4): a `.default()` is set, a
 * key the schema does not have is not kept, and a transform (which would run again on its own
 * output at every change) is refused at load.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { defineFlow, type FlowData } from '../../src/flow/define.ts';
import { testEngine } from '../support/engine.ts';
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

describe('a stored session the data schema no longer takes', () => {
  const v = (data: z.ZodType<FlowData>) =>
    defineFlow({
      id: 'clinic',
      data,
      start: 'a',
      steps: {
        a: { say: 'service?', accepts: 'text', to: ['b'], on: (i, c) => c.goto('b', { service: 'dental' }) },
        b: { say: 'booked', accepts: 'any', to: ['a'], on: (_i, c) => c.goto('a') },
      },
    });
  const key = { channel: 'c', user: 'u' };
  const msg = (id: string, ts: number) => ({
    id,
    provider: 'cloud-api' as const,
    ...key,
    timestamp: ts,
    content: { type: 'text' as const, body: 'x' },
  });

  it('restarts, and the worker says why in a warning (outside test B20)', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const v1 = v(z.object({ service: z.enum(['dental', 'eyes']).optional() }));
    const first = testEngine(backend, { flows: [v1] });
    for (const [id, ts] of [
      ['w1', 1],
      ['w2', 2],
    ] as const) {
      await backend.ingest({ messages: [msg(id, ts)], statuses: [] });
      await first.runSession(key);
    }
    expect((await backend.load(key))!.data).toEqual({ service: 'dental' });

    // A deploy renames the value: the next batch restarts the session, and says so.
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const v2 = v(z.object({ service: z.enum(['dentistry', 'eyes']).optional() }));
    const second = testEngine(backend, { flows: [v2], logger });
    await backend.ingest({ messages: [msg('w3', 3)], statuses: [] });
    await second.runSession(key);
    const s = (await backend.load(key))!;
    expect(s.step).toBe('a');
    expect(s.data).toEqual({});
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: expect.stringMatching(
          /^session restarted: its stored data no longer fits the flow's data schema \(service: /,
        ),
        flow: 'clinic',
        step: 'b',
        // The field and what the schema wanted, never the value (outside test QA138-F6).
        issues: expect.stringMatching(/^service: /),
      }),
    );
    expect(JSON.stringify(lines)).not.toContain('"dental"');
    await backend.close();
  });
});
