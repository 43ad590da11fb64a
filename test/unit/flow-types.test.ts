// Compile-time checks of the flow DSL: `npm test` runs `tsc --noEmit` over this file, so each
// `@ts-expect-error` fails the build if the line it marks ever type-checks.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { z } from 'zod';
import {
  defineFlow,
  effect,
  testFlow,
  type DataOf,
  type FlowData,
  type FlowSpec,
  type Flow,
  type Outcome,
  type ResultContext,
  type StepSpec,
  type StepIdOf,
  type StepInput,
  type Translate,
} from '../../src/index.ts';

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

describe('flow DSL types: each step goes only where its `to` says (outside test QA92-F1)', () => {
  it('a goto or restart to a real step missing from the step’s `to` does not compile', () => {
    const lookup = effect({ run: async () => ({ ok: true }) });
    const flow = defineFlow({
      id: 'typed_to',
      effects: { lookup },
      start: 'ask',
      steps: {
        ask: {
          say: 'Name?',
          accepts: 'text',
          to: ['confirm'],
          // The start step's `first` may also stay where it is.
          first: (_i, c) => c.goto('ask'),
          on: (input, c) => {
            // @ts-expect-error: "done" is a step, but not one `ask` may go to
            if (input.type === 'other') return c.goto('done');
            // @ts-expect-error: nor may it restart there
            if (input.type === 'choice') return c.restart('done');
            return c.goto('confirm');
          },
        },
        confirm: {
          to: ['done', 'ask'],
          effect: {
            use: 'lookup',
            onResult: (r, c) => (r.ok ? c.goto('done') : c.restart('ask')),
            // @ts-expect-error: `confirm` does not go to itself
            onFailure: (_f, c) => c.goto('confirm'),
          },
        },
        done: {
          say: 'Done.',
          accepts: 'any',
          to: [],
          on: (_i, c) => {
            // @ts-expect-error: a step whose `to` is empty goes nowhere
            if (c.data.x === 1) return c.goto('ask');
            return c.startOver();
          },
        },
      },
    });
    expectTypeOf<StepIdOf<typeof flow>>().toEqualTypeOf<'ask' | 'confirm' | 'done'>();
    expect(flow.start).toBe('ask');
    // A name in a `to` that is no step is refused where it is written.
    expect(() =>
      defineFlow({
        id: 'typed_to_bad',
        start: 'a',
        // @ts-expect-error: "b" is no step of this flow
        steps: { a: { say: 'x', accepts: 'text', to: ['b'], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/goes to unknown step "b"/);
  });

  it('a helper typed for one target serves every step that may go there; a step typed apart fits any flow (outside test QA97-F4, F8)', () => {
    const sorry = (c: ResultContext<'failed'>): Outcome<'failed'> => c.goto('failed', {}, 'Sorry!');
    // Declared apart, typed without effects: fits a flow with effects too.
    const failed: StepSpec<'ask' | 'booking' | 'failed'> = {
      say: 'It did not work.',
      accepts: 'any',
      to: ['ask'],
      on: (_i, c) => c.restart('ask'),
    };
    const flow = defineFlow({
      id: 'typed_helper',
      effects: { book: effect({ run: async () => ({ ok: true }) }) },
      start: 'ask',
      steps: {
        ask: {
          say: 'When?',
          accepts: 'text',
          to: ['booking', 'failed'],
          on: (i, c) => (i.type === 'text' ? c.goto('booking') : sorry(c)),
        },
        booking: {
          to: ['ask', 'failed'],
          effect: {
            use: 'book',
            onResult: (r, c) => (r.ok ? c.goto('ask') : sorry(c)),
            onFailure: (_f, c) => sorry(c),
          },
        },
        failed,
      },
    });
    expect(flow.steps.size).toBe(3);
  });

  it('a flow built at run time is typed `FlowSpec<string>`: any step, checked at load', () => {
    const targets: string[] = ['b'];
    const spec: FlowSpec<string> = {
      id: 'typed_loose',
      start: 'a',
      steps: {
        a: { say: 'x', accepts: 'text', to: targets, on: (_i, c) => c.goto('b') },
        b: { say: 'y', accepts: 'any', to: [], on: (_i, c) => c.startOver() },
      },
    };
    const flow = defineFlow(spec);
    expectTypeOf<StepIdOf<typeof flow>>().toEqualTypeOf<string>();
    expect(flow.start).toBe('a');
  });
});

describe('flow DSL types: data, effects, helpers', () => {
  it('keeps the data shape declared once by a schema: typos do not compile', () => {
    const flow = defineFlow({
      id: 'typed_data',
      data: z.object({ name: z.string().optional(), age: z.number().optional() }),
      start: 'ask',
      steps: {
        ask: {
          say: (d) => {
            expectTypeOf(d.name).toEqualTypeOf<string | undefined>();
            // @ts-expect-error: "nmae" is not a data key
            void d.nmae;
            return 'Name?';
          },
          accepts: 'text',
          to: ['done'],
          on: (input, c) => {
            expectTypeOf(c.data.age).toEqualTypeOf<number | undefined>();
            // @ts-expect-error: "nmae" is not a data key
            if (input.type === 'other') return c.goto('done', { nmae: 'x' });
            // @ts-expect-error: age is a number
            if (input.type === 'choice') return c.goto('done', { age: 'old' });
            return c.goto('done', { name: input.type === 'text' ? input.text : '' });
          },
        },
        done: { say: 'Thanks', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
      },
    });
    expectTypeOf<StepIdOf<typeof flow>>().toEqualTypeOf<'ask' | 'done'>();
    expectTypeOf<DataOf<typeof flow>['name']>().toEqualTypeOf<string | undefined>();
    expectTypeOf(testFlow(flow).data.age).toEqualTypeOf<number | undefined>();
  });

  it("keeps the schema's data shape with a migrate, written as the docs write it (outside test QA65-F4)", () => {
    const flow = defineFlow({
      id: 'clinic',
      version: 2,
      data: z.object({ name: z.string().optional(), slot: z.string().optional() }),
      moved: { booked: 'confirmed' },
      migrate: (data, fromVersion) => (fromVersion < 2 ? { ...data, slot: data.time } : data),
      start: 'ask_name',
      steps: {
        ask_name: {
          say: 'Name?',
          accepts: 'text',
          to: ['confirmed'],
          on: (input, c) => {
            // @ts-expect-error: "nmae" is not a data key
            if (input.type === 'other') return c.goto('confirmed', { nmae: 'x' });
            return c.goto('confirmed', { name: input.type === 'text' ? input.text : '' });
          },
        },
        confirmed: {
          say: (d) => {
            expectTypeOf(d.name).toEqualTypeOf<string | undefined>();
            return `Booked ${d.name ?? ''} at ${d.slot ?? ''}`;
          },
          accepts: 'any',
          to: ['ask_name'],
          on: (_i, c) => c.restart('ask_name'),
        },
      },
    });
    expectTypeOf<DataOf<typeof flow>['slot']>().toEqualTypeOf<string | undefined>();
    expect(flow.version).toBe(2);
  });

  it('types an effect result for its handler, and refuses undeclared effects and wrong inputs', () => {
    const lookup = effect({ run: async (input: { order: string }) => ({ found: input.order !== '' }) });
    defineFlow({
      id: 'typed_fx',
      data: z.object({ order: z.string().optional() }),
      effects: { lookup },
      start: 'ask',
      steps: {
        ask: { say: 'Order?', accepts: 'text', to: ['looking'], on: (_i, c) => c.goto('looking') },
        looking: {
          to: ['ask'],
          effect: {
            use: 'lookup',
            input: (d) => ({ order: d.order ?? '' }),
            onResult: (r, c) => {
              expectTypeOf(r).toEqualTypeOf<{ found: boolean }>();
              // @ts-expect-error: "nope" is not a step
              if (!r.found) return c.goto('nope');
              return c.goto('ask');
            },
            onFailure: (f, c) => {
              expectTypeOf(f.attempts).toEqualTypeOf<number>();
              // No input to refuse: no retry, no start over (outside test QA92-F3: `c.retry()` compiled).
              expectTypeOf(c).not.toHaveProperty('retry');
              expectTypeOf(c).not.toHaveProperty('startOver');
              return c.handoff(f.error);
            },
          },
        },
      },
    });
    expect(() =>
      defineFlow({
        id: 'typed_fx_bad',
        effects: { lookup },
        start: 'ask',
        steps: {
          ask: {
            to: [],
            effect: {
              // @ts-expect-error: the flow declares no effect "cancel"
              use: 'cancel',
              onResult: () => ({ kind: 'retry' as const }),
              onFailure: () => ({ kind: 'retry' as const }),
            },
          },
        },
      }),
    ).toThrow(/uses effect "cancel"/);
    // Effect and event names are lower_snake_case: a camelCase one fails to compile, saying so,
    // as it fails at load (outside test QA58-F6: it compiled, then was refused at start).
    expect(() =>
      defineFlow({
        id: 'typed_fx_camel',
        // @ts-expect-error: effect names are lower_snake_case
        effects: { lookUp: lookup },
        start: 'ask',
        steps: { ask: { say: 'x', accepts: 'text', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/effect "lookUp": name must be lower_snake_case/);
    expect(() =>
      defineFlow({
        id: 'typed_event_camel',
        start: 'ask',
        // @ts-expect-error: event names are lower_snake_case
        events: { orderShipped: { to: [], on: () => undefined } },
        steps: { ask: { say: 'x', accepts: 'text', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/orderShipped.*lower_snake_case/);
    // Without `input` the effect gets the session's data: only where the data is such an input
    // (outside test QA92-F2: the data went to `run` unchecked).
    defineFlow({
      id: 'typed_fx_no_input',
      effects: { lookup },
      start: 'ask',
      steps: {
        ask: {
          to: ['ask'],
          // @ts-expect-error: the data is no { order: string }: `input` is required
          effect: { use: 'lookup', onResult: (_r, c) => c.goto('ask'), onFailure: (_f, c) => c.goto('ask') },
        },
      },
    });
    defineFlow({
      id: 'typed_fx_data_input',
      data: z.object({ order: z.string() }),
      effects: { lookup },
      start: 'ask',
      steps: {
        ask: {
          to: ['ask'],
          effect: { use: 'lookup', onResult: (_r, c) => c.goto('ask'), onFailure: (_f, c) => c.goto('ask') },
        },
      },
    });
    defineFlow({
      id: 'typed_fx_input',
      effects: { lookup },
      start: 'ask',
      steps: {
        ask: {
          to: ['ask'],
          effect: {
            use: 'lookup',
            // @ts-expect-error: lookup takes { order: string }
            input: () => ({ number: 1 }),
            onResult: (_r, c) => c.goto('ask'),
            onFailure: (_f, c) => c.goto('ask'),
          },
        },
      },
    });
  });

  it('a handler that returns a Promise does not compile', () => {
    defineFlow({
      id: 'typed_async',
      start: 'ask',
      steps: {
        ask: {
          say: 'x',
          accepts: 'text',
          to: [],
          // @ts-expect-error: handlers are synchronous; start an effect instead
          on: async (_i, c) => c.retry(),
        },
      },
    });
  });
  it('keepOnReset and needs do not decide the data type (outside test B6: `{ lang: any }` leaked)', () => {
    const _noSchema = defineFlow({
      id: 'no_schema',
      start: 'a',
      keepOnReset: ['lang'],
      steps: {
        a: {
          // Without a schema the data is FlowData: lang is unknown, not any.
          say: (d) => {
            expectTypeOf(d.lang).toBeUnknown();
            return 'Hi';
          },
          accepts: 'text',
          needs: ['lang'],
          to: ['b'],
          on: (_i, c) => c.goto('b', { lang: 'en' }),
        },
        b: { say: 'b', accepts: 'any', to: ['a'], on: (_i, c) => c.goto('a', { n: 1 }) },
      },
    });
    expectTypeOf<DataOf<typeof _noSchema>>().toEqualTypeOf<FlowData>();
  });

  it('types an event payload from its schema (outside test B5: it was unknown, or a hand-written type)', () => {
    const flow = defineFlow({
      id: 'typed_events',
      data: z.object({ order: z.string().optional(), total: z.number().optional() }),
      events: {
        order_shipped: {
          to: ['tracking'],
          payload: z.object({ order: z.string(), carrier: z.string().default('post') }),
          on: (p, c) => {
            expectTypeOf(p).toEqualTypeOf<{ order: string; carrier: string }>();
            // @ts-expect-error: "orderId" is not in the payload's schema
            if (p.orderId) return undefined;
            return c.goto('tracking', { order: p.order });
          },
        },
        payment_cleared: {
          to: ['ask'],
          payload: z.object({ amount: z.number() }),
          on(p, c) {
            // @ts-expect-error: a number is not a string field of the data
            if (p.amount < 0) return c.goto('ask', { order: p.amount });
            return c.goto('ask', { total: p.amount });
          },
        },
        nudge: {
          to: ['ask'],
          // No schema: the payload is unknown until the handler checks it.
          on: (p, c) => {
            expectTypeOf(p).toBeUnknown();
            // The session may be at any step; the event goes only where its own `to` says.
            expectTypeOf(c.step).toEqualTypeOf<'ask' | 'tracking' | null>();
            // @ts-expect-error: "tracking" is a step, but not in this event's `to` (outside test QA97-F2)
            if (c.step === 'ask') return c.goto('tracking');
            // @ts-expect-error: nor may it restart there
            if (c.step === null) return c.restart('tracking');
            return c.goto('ask');
          },
        },
        closed: {
          // An event that leads nowhere may leave the session as it is, or hand it off.
          to: [],
          on: (_p, c) => {
            // @ts-expect-error: an event without targets goes to no step
            if (c.step === 'ask') return c.goto('ask');
            return c.step === null ? undefined : c.handoff('account closed');
          },
        },
      },
      start: 'ask',
      steps: {
        ask: { say: 'Order?', accepts: 'text', to: ['tracking'], on: (_i, c) => c.goto('tracking') },
        tracking: { say: 'Tracking', accepts: 'any', to: ['ask'], on: (_i, c) => c.goto('ask') },
      },
    });
    expect([...flow.events.keys()]).toEqual(['order_shipped', 'payment_cleared', 'nudge', 'closed']);

    // testFlow knows the same names and types (outside test B14: every name was a plain string).
    const t = testFlow(flow);
    expectTypeOf(t.step).toEqualTypeOf<'ask' | 'tracking' | null>();
    expectTypeOf<Parameters<typeof t.event<'order_shipped'>>[1]>().toEqualTypeOf<
      { order: string; carrier: string } | undefined
    >();
    // Compiled, never run: each call is refused by the types.
    const _refused = (): void => {
      // @ts-expect-error: the flow has no event "order_lost"
      void t.event('order_lost');
      // @ts-expect-error: the payload's order is a string
      void t.event('order_shipped', { order: 7, carrier: 'post' });
      // @ts-expect-error: "nowhere" is not a step
      void t.handback('nowhere');
      // @ts-expect-error: "nope" is not a data key
      void t.handback('ask', { nope: 1 });
    };
  });

  it('types testFlow effect answers by the flow’s effects (outside test B14)', () => {
    const lookup = effect({ run: async (order: string) => ({ found: order.length > 3 }) });
    const flow = defineFlow({
      id: 'typed_answers',
      effects: { lookup },
      start: 'ask',
      steps: {
        ask: {
          to: ['ask'],
          effect: {
            use: 'lookup',
            input: () => 'ORD-1',
            onResult: (_r, c) => c.goto('ask'),
            onFailure: (_f, c) => c.goto('ask'),
          },
        },
      },
    });
    const t = testFlow(flow);
    expectTypeOf<Parameters<typeof t.resolve<'lookup'>>[1]>().toEqualTypeOf<{ found: boolean }>();
    const _refused = (): void => {
      // @ts-expect-error: the flow has no effect "charge"
      void t.resolve('charge', {});
      // @ts-expect-error: lookup's result has no "total"
      void t.resolve('lookup', { total: 1 });
      // @ts-expect-error: the flow has no effect "charge"
      void t.fail('charge');
    };
  });

  it('types the order-status example’s effects in testFlow (outside test QA70-F4)', () => {
    const t = testFlow(orderStatusFlow({ apiUrl: 'http://shop.invalid' }));
    const _refused = (): void => {
      // @ts-expect-error: the flow has no effect "lookpu"
      void t.resolve('lookpu', {});
    };
  });

  it('types an effect result as onResult gets it, after JSON (outside test B7: a Date was typed as a Date)', () => {
    const schedule = effect({
      run: async (_day: string) => ({
        at: new Date(0),
        slots: [1, 2],
        note: undefined as string | undefined,
        f: () => 1,
      }),
    });
    const flow = defineFlow({
      id: 'typed_json',
      effects: { schedule },
      start: 'ask',
      steps: {
        ask: {
          to: ['ask'],
          effect: {
            use: 'schedule',
            input: () => 'mon',
            onResult: (r, c) => {
              expectTypeOf(r.at).toEqualTypeOf<string>();
              expectTypeOf(r.slots).toEqualTypeOf<number[]>();
              // @ts-expect-error: a function does not survive JSON
              void r.f;
              // @ts-expect-error: a Date came back as its ISO string
              const _ms: number = r.at;
              return c.goto('ask');
            },
            onFailure: (_f, c) => c.goto('ask'),
          },
        },
      },
    });
    const _t = testFlow(flow);
    expectTypeOf<Parameters<typeof _t.resolve<'schedule'>>[1]['at']>().toEqualTypeOf<string>();
  });

  it('refuses an effect input JSON does not keep, as run would get it back (outside test QA101-F8, F4)', () => {
    const book = effect({ run: async (input: { at: Date; party: number }) => input.at.getTime() });
    const tag = effect({ run: async (input: { ids: Set<string> }) => input.ids.size });
    const plain = effect({
      run: async (input: {
        order: string;
        note: string | undefined;
        lines: { sku: string; qty?: number }[];
      }) => input.lines.length,
    });
    const count = effect({ run: async (_: string) => ({ seen: new Set(['a']), by: new Map([['a', 1]]) }) });
    defineFlow({
      id: 'typed_fx_json_input',
      effects: { book, tag, plain, count },
      start: 'a',
      steps: {
        a: {
          to: ['b'],
          effect: {
            use: 'book',
            // @ts-expect-error: run would get the Date back as its ISO string
            input: () => ({ at: new Date(0), party: 2 }),
            onResult: (_r, c) => c.goto('b'),
            onFailure: (_f, c) => c.goto('b'),
          },
        },
        b: {
          to: ['c'],
          effect: {
            use: 'tag',
            // @ts-expect-error: run would get the Set back as {}
            input: () => ({ ids: new Set(['x']) }),
            onResult: (_r, c) => c.goto('c'),
            onFailure: (_f, c) => c.goto('c'),
          },
        },
        c: {
          to: ['d'],
          effect: {
            use: 'plain',
            // Strings, numbers, arrays, plain objects, fields that may be undefined: JSON keeps them.
            input: () => ({ order: 'ORD-1', note: undefined, lines: [{ sku: 'a' }] }),
            onResult: (_r, c) => c.goto('d'),
            onFailure: (_f, c) => c.goto('d'),
          },
        },
        d: {
          to: ['d'],
          effect: {
            use: 'count',
            input: () => 'x',
            onResult: (r, c) => {
              // JSON writes a Set and a Map as {}: no size, no entries.
              expectTypeOf(r.seen).toEqualTypeOf<Record<string, never>>();
              expectTypeOf(r.by).toEqualTypeOf<Record<string, never>>();
              return c.goto('d');
            },
            onFailure: (_f, c) => c.goto('d'),
          },
        },
      },
    });
  });

  it('types a field that may be undefined as optional, and a void result as null (outside test QA86-F1, F2)', () => {
    const lookup = effect({
      run: async (_id: string) => ({ eta: undefined as string | undefined, n: 1, tags: ['a', undefined] }),
    });
    const notify = effect({ run: async (_id: string): Promise<void> => undefined });
    const flow = defineFlow({
      id: 'typed_optional',
      effects: { lookup, notify },
      start: 'a',
      steps: {
        a: {
          to: ['b'],
          effect: {
            use: 'lookup',
            input: () => 'x',
            onResult: (r, c) => {
              expectTypeOf(r).toEqualTypeOf<{ n: number; tags: Array<string | null>; eta?: string }>();
              // @ts-expect-error: JSON dropped it when run left it undefined
              void r.eta.toUpperCase();
              return c.goto('b', r.eta === undefined ? {} : { eta: r.eta });
            },
            onFailure: (_f, c) => c.goto('b'),
          },
        },
        b: {
          to: ['b'],
          effect: {
            use: 'notify',
            input: () => 'x',
            onResult: (r, c) => {
              expectTypeOf(r).toEqualTypeOf<null>();
              return c.goto('b');
            },
            onFailure: (_f, c) => c.goto('b'),
          },
        },
      },
    });
    const t = testFlow(flow);
    // What the engine hands onResult at run time: a missing field, and null for nothing.
    const _resolve = (): void => {
      void t.resolve('lookup', { n: 1, tags: [] });
      void t.resolve('notify', null);
    };
  });
});

describe('flow DSL types: catalog keys (outside test QA103-F6)', () => {
  const en = { hi: 'Hello {name}', pick: 'Pick one', yes: 'Yes', sorry: 'Sorry', shipped: 'Shipped' };
  const es = { hi: 'Hola {name}', pick: 'Elige', yes: 'Sí', sorry: 'Perdón', shipped: 'Enviado' };
  const lookup = effect({ run: async (_i: unknown) => ({ ok: true }) });

  it('t takes only keys the catalogs have, in every place a flow calls it', () => {
    // A helper typed with the exported `Translate` takes any flow's t.
    const greet = (t: Translate, name: string): string => t('hi', { name });
    const keyed = (t: Translate<keyof typeof en>): string => t('pick');
    const flow = defineFlow({
      id: 'worded',
      data: z.object({ lang: z.string().optional(), name: z.string().optional() }),
      words: { field: 'lang', default: 'en', catalogs: { en, es } },
      effects: { lookup },
      events: { shipped: { to: ['a'], on: (_p, c) => c.goto('a', {}, c.t('shipped')) } },
      notices: { error: (_d, c) => c.t('sorry') },
      start: 'a',
      steps: {
        a: {
          say: (d, { t }) => [greet(t, d.name ?? ''), keyed(t)],
          choices: [{ id: 'yes', title: (_d, { t }) => t('yes') }],
          to: ['b'],
          on: (_i, c) => c.goto('b', {}, c.t('yes')),
        },
        b: {
          to: ['a'],
          effect: {
            use: 'lookup',
            onResult: (_r, c) => c.goto('a', {}, c.t('pick')),
            onFailure: (_f, c) => c.goto('a', {}, c.t('sorry')),
          },
        },
      },
    });
    expect(flow.id).toBe('worded');
    const _misspelt = (): void => {
      defineFlow({
        id: 'misspelt',
        words: { field: 'lang', default: 'en', catalogs: { en, es } },
        effects: { lookup },
        // @ts-expect-error: no catalog has "shiped"
        events: { shipped: { to: ['a'], on: (_p, c) => c.goto('a', {}, c.t('shiped')) } },
        // @ts-expect-error: no catalog has "sory"
        notices: { error: (_d, c) => c.t('sory') },
        start: 'a',
        steps: {
          a: {
            // @ts-expect-error: no catalog has "hello"
            say: (_d, { t }) => t('hello'),
            // @ts-expect-error: no catalog has "yess"
            choices: [{ id: 'yes', title: (_d, { t }) => t('yess') }],
            to: ['b'],
            // @ts-expect-error: no catalog has "pik"
            on: (_i, c) => c.goto('b', {}, c.t('pik')),
          },
          b: {
            to: ['a'],
            effect: {
              use: 'lookup',
              // @ts-expect-error: no catalog has "pik"
              onResult: (_r, c) => c.goto('a', {}, c.t('pik')),
              onFailure: (_f, c) => c.goto('a', {}, c.t('sorry')),
            },
          },
        },
      });
    };
  });

  it('a catalog that lacks a key another has does not compile; a flow without catalogs, or with catalogs typed by string, takes any key', () => {
    const _lacking = (): void => {
      defineFlow({
        id: 'lacking',
        words: {
          field: 'lang',
          default: 'en',
          // @ts-expect-error: "es" has no "yes"
          catalogs: { en: { hi: 'Hi', yes: 'Yes' }, es: { hi: 'Hola' } },
        },
        start: 'a',
        steps: { a: { say: (_d, { t }) => t('hi'), to: [] } },
      });
    };
    const loose: Record<string, Record<string, string>> = { en: { hi: 'Hi' } };
    const _free = [
      defineFlow({
        id: 'loose',
        words: { field: 'lang', default: 'en', catalogs: loose },
        start: 'a',
        steps: {
          a: { say: (_d, { t }) => t('anything'), to: [], accepts: 'any', on: (_i, c) => c.startOver() },
        },
      }),
      defineFlow({
        id: 'none',
        start: 'a',
        steps: {
          a: { say: (_d, { t }) => t('anything'), to: [], accepts: 'any', on: (_i, c) => c.startOver() },
        },
      }),
    ];
    expectTypeOf<Parameters<Translate>[0]>().toEqualTypeOf<string>();
  });
});
