/**
 * An event's `on` gets its payload as the event's schema reads it (coerced, trimmed, defaulted),
 * as its type says; it got the JSON as posted, which the route had only checked (outside test
 * QA101-F1). `testFlow`'s `t.event` refuses what the route refuses (QA101-F2). A data schema
 * with a type JSON does not keep (a date) is refused at load (QA101-F9).
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineFlow, testFlow } from '../../src/index.ts';

const flow = defineFlow({
  id: 'bikes',
  data: z.object({
    ticket: z.string().optional(),
    price: z.number().optional(),
    note: z.string().optional(),
  }),
  events: {
    repair_ready: {
      to: ['ready'],
      payload: z.object({ ticket: z.string().trim().toUpperCase(), price: z.coerce.number() }),
      on: (p, c) => c.goto('ready', { ticket: p.ticket, price: p.price }),
    },
    shop_note: {
      to: [],
      payload: z.object({ note: z.string().default('') }),
      on: (p, c) => (p.note.length > 10 ? c.handoff(p.note) : undefined),
    },
  },
  start: 'ask',
  steps: {
    ask: { say: 'Your bike?', accepts: 'text', to: ['ready'], on: (_i, c) => c.retry() },
    ready: {
      say: (d) => `Ticket ${d.ticket ?? '?'} is ready: ${String(d.price)} EUR.`,
      accepts: 'any',
      to: [],
      on: (_i, c) => c.startOver(),
    },
  },
});

describe("an event's payload, as its schema reads it", () => {
  it('coerced and trimmed before on sees it', async () => {
    const t = testFlow(flow);
    await t.send('hi');
    // What a scheduler posts: a price as text, a ticket padded and in lower case.
    const out = await t.event('repair_ready', { ticket: ' r-1002 ', price: '30.00' } as never);
    expect(t.step).toBe('ready');
    expect(t.data).toMatchObject({ ticket: 'R-1002', price: 30 });
    expect(out.map((r) => r.text)).toEqual(['Ticket R-1002 is ready: 30 EUR.']);
  });

  it('with its defaults', async () => {
    const t = testFlow(flow);
    await t.send('hi');
    await t.event('shop_note', {} as never);
    expect(t.records.at(-1)!.kind).toBe('ignored');
  });

  it('testFlow refuses what the route refuses: a payload the schema refuses, an unknown event', async () => {
    const t = testFlow(flow);
    await t.send('hi');
    await expect(t.event('repair_ready', { ticket: 'R-1', price: 'thirty' } as never)).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message: expect.stringMatching(/event "repair_ready" of flow bikes refuses that payload: price/),
    });
    await expect(t.event('repair_ready')).rejects.toMatchObject({
      code: 'BATON_ERR_BAD_REQUEST',
      message: expect.stringMatching(/needs a payload/),
    });
    await expect(t.event('repair_lost' as never)).rejects.toMatchObject({ code: 'BATON_ERR_UNKNOWN_EVENT' });
    // Nothing was applied.
    expect(t.step).toBe('ask');
  });
});

describe('a data schema with a type JSON does not keep', () => {
  it('is refused at load, naming the key', () => {
    expect(() =>
      defineFlow({
        id: 'dates',
        data: z.object({ day: z.date().optional(), tags: z.set(z.string()).optional() }),
        start: 'a',
        steps: { a: { say: 'a', accepts: 'text', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/data "day" \(date\), "tags" \(set\): the data is stored as JSON/);
  });
});
