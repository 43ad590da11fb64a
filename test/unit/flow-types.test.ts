// Compile-time checks of the flow DSL: `npm test` runs `tsc --noEmit` over this file, so each
// `@ts-expect-error` fails the build if the line it marks ever type-checks.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { defineFlow, type Flow, type StepInput } from '../../src/index.ts';

describe('flow DSL types', () => {
  it('infers step ids from the steps object and checks every reference to them', () => {
    const flow = defineFlow({
      id: 'typed',
      start: 'first',
      steps: {
        first: {
          say: 'one',
          accepts: 'text',
          to: ['second'],
          on: (input, c) => {
            expectTypeOf(input).toEqualTypeOf<StepInput>();
            // @ts-expect-error: "nowhere" is not a step of this flow
            if (input.type === 'other') return c.goto('nowhere');
            return c.goto('second');
          },
        },
        second: { say: 'two', accepts: 'any', to: ['first'], on: (_i, c) => c.restart('first') },
      },
    });
    expectTypeOf(flow).toExtend<Flow>();
    expect(flow.start).toBe('first');

    expect(() =>
      defineFlow({
        id: 'typed_bad',
        // @ts-expect-error: the start step must be one of the steps
        start: 'missing',
        steps: { only: { say: 'x', accepts: 'text', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/start step "missing"/);
  });
});
