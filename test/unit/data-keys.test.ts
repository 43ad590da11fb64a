/**
 * The data keys a flow names beside its handlers (`keepOnReset`, a step's `needs`, the language's
 * `words.field`) must be keys of a closed zod data schema: a key it lacks is never stored, so a
 * misspelling kept nothing on a reset, refused every hand-back or read no language. TypeScript
 * refuses it; from JavaScript it loaded silently (outside test QA101-F7).
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineFlow, type FlowSpec } from '../../src/index.ts';

// Written as JavaScript would: no compiler checks the keys.
const spec = (data: unknown, extra: Record<string, unknown>, needs?: unknown): FlowSpec<string> =>
  ({
    id: 'bikes',
    data,
    start: 'ask',
    steps: {
      ask: {
        say: 'Your name?',
        to: ['done'],
        on: (i: { type: string; text?: string }, c: { goto(s: string, d: object): unknown }) =>
          c.goto('done', { name: i.text }),
      },
      done: {
        say: 'Thanks',
        accepts: 'any',
        to: [],
        ...(needs === undefined ? {} : { needs }),
        on: (_i: unknown, c: { startOver(): unknown }) => c.startOver(),
      },
    },
    ...extra,
  }) as unknown as FlowSpec<string>;

const data = z.object({ name: z.string().optional(), lang: z.string().optional() });
const words = { default: 'en', catalogs: { en: {} } };

describe('data keys named outside the handlers', () => {
  it('refuses one the data schema lacks, with the key it is near', () => {
    expect(() => defineFlow(spec(data, { keepOnReset: ['nmae'] }))).toThrow(
      /keepOnReset: "nmae" is no key of the data schema \(did you mean "name"\?\)/,
    );
    expect(() => defineFlow(spec(data, {}, ['name', 'adress']))).toThrow(
      /step "done": needs: "adress" is no key of the data schema$/,
    );
    expect(() => defineFlow(spec(data, { words: { ...words, field: 'language' } }))).toThrow(
      /words.field: "language" is no key of the data schema/,
    );
    // A strict object keeps no other key either.
    expect(() => defineFlow(spec(data.strict(), { keepOnReset: ['nmae'] }))).toThrow(/no key of the data/);
  });

  it("takes the schema's keys, and any key where the schema keeps others or is not zod", () => {
    expect(() =>
      defineFlow(spec(data, { keepOnReset: ['name'], words: { ...words, field: 'lang' } }, ['name'])),
    ).not.toThrow();
    // Passed through: the key may be stored without the schema naming it.
    expect(() => defineFlow(spec(data.passthrough(), { keepOnReset: ['nmae'] }))).not.toThrow();
    expect(() => defineFlow(spec(z.looseObject({}), {}, ['anything']))).not.toThrow();
    // No schema, or one Baton cannot read: nothing to check against.
    expect(() => defineFlow(spec(undefined, { keepOnReset: ['nmae'] }))).not.toThrow();
    const custom = { safeParse: (v: unknown) => ({ success: true as const, data: v }) };
    expect(() => defineFlow(spec(custom, { keepOnReset: ['nmae'] }))).not.toThrow();
  });
});
