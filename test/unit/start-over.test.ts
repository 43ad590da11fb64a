/**
 * `c.startOver()`: the flow's own reset. The data goes, but for what the flow's `keepOnReset`
 * names, as after a reset keyword (outside test QA7: a user who picked Spanish was asked in
 * English again after the flow started over); the input is then the start step's first input.
 */
import { describe, expect, it } from 'vitest';
import { defineFlow, type FlowSpec } from '../../src/flow/define.ts';
import { testFlow } from '../../src/index.ts';

type Step = 'lang' | 'ask_name' | 'done';
type Data = { lang?: string; name?: string; greeting?: string };

const spec = (first: boolean): FlowSpec<Step, Data> => ({
  id: 'langs',
  start: 'lang',
  keepOnReset: ['lang'],
  steps: {
    lang: {
      say: 'English or Español?',
      accepts: 'text',
      to: ['ask_name', 'lang'],
      on: (i, c) => (i.type === 'text' ? c.goto('ask_name', { lang: i.text }) : c.retry()),
      // With a `first`: a language chosen before is kept and the question is skipped.
      ...(first
        ? {
            first: (i, c) =>
              c.data.lang !== undefined
                ? c.goto('ask_name', { greeting: i.type === 'text' ? i.text : '' })
                : c.goto('lang'),
          }
        : {}),
    },
    ask_name: {
      say: (d) => (d.lang === 'es' ? '¿Tu nombre?' : 'Your name?'),
      accepts: 'text',
      to: ['done'],
      on: (i, c) => (i.type === 'text' ? c.goto('done', { name: i.text }) : c.retry()),
    },
    done: {
      say: (d) => `Bye ${d.name ?? ''}`,
      accepts: 'text',
      to: [],
      on: (_i, c) => c.startOver(),
    },
  },
});

describe('c.startOver()', () => {
  it('keeps what keepOnReset names and clears the rest', async () => {
    const t = testFlow(defineFlow(spec(false)));
    await t.send('hi');
    await t.send('es');
    await t.send('Ana');
    expect(t.step).toBe('done');
    expect(t.data).toEqual({ lang: 'es', name: 'Ana' });
    const out = await t.send('again');
    expect(t.step).toBe('lang');
    expect(t.data).toEqual({ lang: 'es' });
    expect(out.map((r) => r.text)).toEqual(['English or Español?']);
  });

  it("gives the start step's `first` the data kept", async () => {
    const t = testFlow(defineFlow(spec(true)));
    await t.send('hi');
    expect(t.step).toBe('lang');
    await t.send('es');
    await t.send('Ana');
    const out = await t.send('hola');
    expect(t.step).toBe('ask_name');
    expect(t.data).toEqual({ lang: 'es', greeting: 'hola' });
    expect(out.map((r) => r.text)).toEqual(['¿Tu nombre?']);
  });
});
