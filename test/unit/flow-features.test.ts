/**
 * The authoring features of issue 6, through `testFlow` (the pure transition, in memory):
 * effects and waiting, hand-off, several messages per step, step-scoped and computed choices,
 * the first message, retry messages and per-step limits, languages, and the one error boundary.
 */
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { FlowDefinitionError, FlowRuntimeError } from '../../src/errors.ts';
import { defineFlow, effect, EffectError, type Outcome } from '../../src/flow/define.ts';
import { clip, replyProblems, testFlow, WHATSAPP_LIMITS } from '../../src/index.ts';
import { orderFlow } from '../../src/bots/order.ts';

const found = {
  found: true as const,
  order: {
    number: 'ORD-12345',
    status: 'in transit',
    map_url: 'https://maps.example/x',
    events: [{ at: '2026-11-29', text: 'Left the warehouse' }],
  },
};
const shop = () => testFlow(orderStatusFlow({ apiUrl: 'http://shop.invalid' }));

describe('order_status through testFlow', () => {
  it('reads the language from the first text, whole words only', async () => {
    for (const [first, lang] of [
      ['Hola!', 'es'],
      ['buenas tardes', 'es'],
      ['mi PEDIDO', 'es'],
      ['pedidos', 'en'],
      ['hello', 'en'],
    ] as const) {
      const t = shop();
      await t.send(first);
      expect(t.data.lang, first).toBe(lang);
      expect(t.step).toBe('ask_order');
    }
  });

  it("each conversation's effects have ids of their own; a given user's are the same every run (outside test QA41-F2)", async () => {
    const started = async (user?: string): Promise<string> => {
      const t = testFlow(
        orderStatusFlow({ apiUrl: 'http://shop.invalid' }),
        user === undefined ? {} : { user },
      );
      await t.send('ORD-12345');
      return t.pendingEffects[0]!.id;
    };
    const [a, b] = [await started(), await started()];
    expect(a).toMatch(/^fx_\d+_/);
    expect(a).not.toBe(b);
    expect(await started('15557654321')).toBe(await started('15557654321'));
  });

  it('an order number typed first starts the lookup; the result shows the status and the list', async () => {
    const t = shop();
    const looking = await t.send('  ord-12345 ');
    expect(t.step).toBe('looking_up');
    expect(t.data).toEqual({ lang: 'en', order: 'ORD-12345' });
    expect(looking.map((r) => r.text)).toEqual(['Looking up ORD-12345…']);
    expect(t.pendingEffects).toMatchObject([{ name: 'lookup', input: { order: 'ORD-12345' } }]);
    const shown = await t.resolve('lookup', found);
    expect(t.step).toBe('show_status');
    expect(shown.map((r) => r.body.type)).toEqual(['text', 'list']);
    expect(shown[1]!.callbackData).toBe(`${shown[0]!.callbackData}#2`);
    expect(t.records.at(-1)).toMatchObject({
      kind: 'advance',
      from_step: 'looking_up',
      to_step: 'show_status',
    });
    expect(t.records.at(-1)!.message_ids[0]).toMatch(/^fx:fx_1_/);
  });

  it('404 says so and asks again; a failure offers retry_lookup, which starts a new effect', async () => {
    const t = shop();
    await t.send('ORD-99999');
    const again = await t.resolve('lookup', { found: false });
    expect(t.step).toBe('ask_order');
    expect(again.map((r) => r.text)).toEqual([
      'We could not find order ORD-99999.',
      'Hi! Which order would you like to check? Send its number, like ORD-12345.',
    ]);
    await t.send('ORD-12345');
    const first = t.pendingEffects[0]!.id;
    // An Error's message is the failure's, as a string is (outside test QA4-L6).
    await t.fail('lookup', new Error('the shop answered 503'));
    expect(t.step).toBe('lookup_failed');
    await t.tap('retry_lookup');
    expect(t.pendingEffects[0]!.id).not.toBe(first);
  });

  it('a long history from the shop is clipped to what the tracking message with buttons can hold', async () => {
    const t = shop();
    await t.send('ORD-12345');
    const events = Array.from({ length: 80 }, (_, i) => ({ at: '2026-11-29', text: `Scan ${i} at a depot` }));
    await t.resolve('lookup', { ...found, order: { ...found.order, events } });
    const out = await t.tap('track');
    expect(t.step).toBe('tracking');
    const withButtons = out.at(-1)!;
    expect(withButtons.body.type).toBe('buttons');
    expect(withButtons.text).toMatch(/Scan 0 at a depot[\s\S]*…$/);
    for (const r of out) expect(replyProblems(r.body)).toEqual([]);
  });

  it('a map that is no http(s) link is left out; the events still go, and the list speaks Spanish', async () => {
    const t = shop();
    await t.send('hola');
    await t.send('ORD-12345');
    const shown = await t.resolve('lookup', {
      ...found,
      order: { ...found.order, map_url: 'javascript:alert(1)' },
    });
    const list = shown.at(-1)!.body;
    expect(list.type).toBe('list');
    if (list.type === 'list') {
      expect(list.button).toBe('Opciones');
      expect(list.sections.map((x) => x.title)).toEqual([undefined]);
    }
    const out = await t.tap('track');
    expect(t.step).toBe('tracking');
    expect(out.map((r) => r.body.type)).toEqual(['buttons']);
    expect(out[0]!.text).toContain('Left the warehouse');
  });

  it("a map link with a space or a '|' is sent percent-encoded, as Meta's schema asks (outside tests QA73-F1, QA74-F4)", async () => {
    const t = shop();
    await t.send('ORD-12345');
    const map = 'https://maps.example/static map.png?markers=color:red|label:A|40.7,-74.0&q={x}^%41';
    await t.resolve('lookup', { ...found, order: { ...found.order, map_url: map } });
    const out = await t.tap('track');
    expect(out.map((r) => r.body.type)).toEqual(['image', 'buttons']);
    expect(out[0]!.body).toMatchObject({
      type: 'image',
      link: 'https://maps.example/static%20map.png?markers=color:red%7Clabel:A%7C40.7,-74.0&q=%7Bx%7D%5E%41',
    });
    for (const r of out) expect(replyProblems(r.body)).toEqual([]);
  });

  it('an agent cannot hand a session back at lookup_failed before it has an order number', async () => {
    const f = orderStatusFlow({ apiUrl: 'http://shop.invalid' });
    expect(f.steps.get('lookup_failed')!.needs).toEqual(['order']);
    // Its retry_lookup would otherwise look up an empty order number.
    for (const step of ['looking_up', 'show_status', 'tracking', 'confirm_cancel', 'cancelling'])
      expect(f.steps.get(step)!.needs, step).toContain('order');
  });

  it('messages wait for the result, then are applied after it, in order', async () => {
    const t = shop();
    await t.send('ORD-12345');
    expect(await t.send('hello?')).toEqual([]);
    expect(await t.send('anyone?')).toEqual([]);
    expect(t.waiting).toBe(2);
    const out = await t.resolve('lookup', found);
    expect(t.waiting).toBe(0);
    expect(t.records.slice(-3).map((r) => r.kind)).toEqual(['advance', 'retry', 'retry']);
    // At a step of choices each text is an input of its own (joined only at a step that takes text).
    expect(t.records.slice(-2).map((r) => r.message_ids.length)).toEqual([1, 1]);
    // The result's status and list go (nobody had seen them); the retries repeat the list word
    // for word: it is asked once, by the result's own copy.
    expect(out.map((r) => r.body.type)).toEqual(['text', 'list']);
    expect(out[1]!.version).toBe(t.state!.version - 2);
  });

  it('a reset never waits; the result then belongs to a visit the session left: recorded, not applied', async () => {
    const t = shop();
    await t.send('hola, ORD-12345?');
    await t.send('ORD-12345');
    expect(t.step).toBe('looking_up');
    await t.send('hello?', 'reset');
    expect(t.step).toBe('ask_order');
    expect(t.records.slice(-2).map((r) => r.kind)).toEqual(['retry', 'reset']);
    const version = t.state!.version;
    expect(await t.resolve('lookup', found)).toEqual([]);
    expect(t.state!.version).toBe(version);
    expect(t.records.at(-1)).toMatchObject({ kind: 'stale_input', to_step: 'ask_order' });
  });

  it('invalid numbers get a retry that shows the format, in the session language; the 4th hands off', async () => {
    const t = shop();
    await t.send('hola');
    for (let i = 1; i <= 3; i += 1) {
      const r = await t.send(`nope ${i}`);
      expect(r.map((x) => x.text)).toEqual([
        'Eso no parece un número de pedido. Es ORD- y 5 cifras, por ejemplo ORD-12345.',
      ]);
      expect(t.state!.retryCount).toBe(i);
    }
    const handoff = await t.send('nope 4');
    expect(t.state!.needsAgent).toBe(true);
    expect(t.records.at(-1)!.kind).toBe('escalated');
    expect(handoff[0]!.text).toMatch(/una persona de nuestro equipo/);
    await t.send('reset');
    expect(t.records.at(-1)!.kind).toBe('held');
  });

  it('an effect step with no effect awaited (handed back there by an agent) starts its effect on input', async () => {
    const t = shop();
    await t.send('ORD-12345');
    const atStep = { ...t.state!, awaiting: undefined, version: t.state!.version };
    const { transition } = await import('../../src/flow/transition.ts');
    const r = transition(
      orderStatusFlow({ apiUrl: 'http://shop.invalid' }),
      JSON.parse(JSON.stringify(atStep)) as typeof atStep,
      [
        {
          id: 'wamid.x',
          provider: 'cloud-api',
          channel: atStep.channel,
          user: atStep.user,
          timestamp: atStep.lastInteraction! + 1,
          seq: 99,
          storedAt: 0,
          content: { type: 'text', body: 'hello?' },
        },
      ],
      { key: atStep, nowMs: 0, worker: 'w', fence: 1, sessionTtlSec: 86_400, maxRetries: 3 },
    );
    expect(r.records.map((x) => x.kind)).toEqual(['advance']);
    expect(r.started.map((x) => x.name)).toEqual(['lookup']);
    expect(r.snapshot.awaiting?.id).toBe(r.started[0]!.id);
  });

  it('hands off on request from a choice step', async () => {
    const t = shop();
    await t.send('ORD-12345');
    await t.resolve('lookup', found);
    await t.tap('human');
    expect(t.state).toMatchObject({
      needsAgent: true,
      handoffReason: 'asked for a human',
      step: 'show_status',
    });
  });

  it('the same choice id in two steps; an old button is stale; at done any other input starts over', async () => {
    const t = shop();
    await t.send('ORD-12345');
    await t.resolve('lookup', found);
    const list = t.replies.at(-1)!;
    await t.tap('track');
    expect(t.step).toBe('tracking');
    expect(t.replies.slice(-2).map((r) => r.body.type)).toEqual(['image', 'buttons']);
    await t.tap('another', list); // the list's `another`, from an earlier visit: stale
    expect(t.step).toBe('tracking');
    expect(t.replies.at(-1)!.text).toMatch(/earlier question/);
    await t.tap('another'); // this step's own `another`
    expect(t.step).toBe('ask_order');
    expect(t.data).toEqual({ lang: 'en' });
  });

  it('cancel: cancel_yes starts the effect; a second tap waits and is then stale; done starts over', async () => {
    const t = shop();
    await t.send('ORD-12345');
    await t.resolve('lookup', found);
    await t.tap('cancel_order');
    const confirm = t.replies.at(-1)!;
    await t.tap('cancel_yes', confirm);
    await t.tap('cancel_yes', confirm);
    expect(t.pendingEffects.map((e) => e.name)).toEqual(['cancel']);
    expect(t.waiting).toBe(1);
    await t.resolve('cancel', { cancelled: true });
    expect(t.step).toBe('done');
    expect(t.records.at(-1)!.kind).toBe('stale_input');
    expect(t.pendingEffects).toEqual([]);
    await t.send('buenas');
    expect(t.step).toBe('ask_order');
    expect(t.data).toEqual({ lang: 'es' });
  });

  it('a session begun with a photo takes its language from its first text, a new order after done too (QA122-F2, QA128-F1)', async () => {
    const photo = { type: 'media', mediaType: 'image', mediaId: 'm1' } as const;
    const t = shop();
    await t.send(photo);
    expect(t.data).toEqual({});
    expect(t.replies.at(-1)!.text).toMatch(/^Hi!/);
    await t.send('hola');
    expect(t.data).toEqual({ lang: 'es' });
    expect(t.records.at(-1)!.kind).toBe('advance');
    expect(t.replies.at(-1)!.text).toMatch(/^¡Hola!/);
    await t.send('hello');
    expect(t.data).toEqual({ lang: 'es' });
    expect(t.records.at(-1)!.kind).toBe('retry');
    // A Spanish order ends; the next one begins with a photo, then "hello": English.
    await t.send('ORD-12345');
    await t.resolve('lookup', found);
    await t.tap('cancel_order');
    await t.tap('cancel_yes');
    await t.resolve('cancel', { cancelled: true });
    expect(t.step).toBe('done');
    await t.send(photo);
    expect(t.step).toBe('ask_order');
    expect(t.data).toEqual({});
    await t.send('hello');
    expect(t.data).toEqual({ lang: 'en' });
    // A reset keyword keeps the language the user wrote in.
    await t.send('hola');
    await t.send('reset');
    await t.send(photo);
    expect(t.data).toEqual({ lang: 'en' });
  });

  it('runEffects runs the flow’s own effect functions', async () => {
    let calls = 0;
    const f = defineFlow({
      id: 'fx',
      effects: {
        add: effect({
          run: async (i: { a: number }, { attempt }) => {
            calls += 1;
            if (attempt < 2) throw new Error('flaky');
            return { sum: i.a + 1 };
          },
        }),
        never: effect({
          run: async () => {
            throw new EffectError('no', { retryable: false });
          },
        }),
      },
      start: 'ask',
      steps: {
        ask: { say: 'n?', to: ['adding'], on: (i, c) => (i.type === 'text' ? c.goto('adding') : c.retry()) },
        adding: {
          say: 'adding',
          to: ['ask', 'broken'],
          effect: {
            use: 'add',
            input: () => ({ a: 41 }),
            onResult: (r, c) => c.goto('broken', {}, `sum ${r.sum}`),
            onFailure: (_f, c) => c.goto('ask'),
          },
        },
        broken: {
          say: 'breaking',
          to: ['ask'],
          effect: {
            use: 'never',
            onResult: (_r, c) => c.goto('ask'),
            onFailure: (f, c) => c.goto('ask', {}, `failed after ${f.attempts}: ${f.error}`),
          },
        },
      },
    });
    const t = testFlow(f, { effects: 'auto' });
    await t.send('hi');
    const out = await t.send('go');
    expect(calls).toBe(2);
    expect(out.map((r) => r.text)).toEqual(['adding', 'sum 42', 'breaking', 'failed after 1: no', 'n?']);
    expect(t.step).toBe('ask');
  });

  it("effects: 'auto' hands run its input as the engine does: as JSON (outside test B19)", async () => {
    const probe = effect({
      attempts: 1,
      run: async (input: { when: Date }) => ({ got: `${typeof input.when} ${input.when instanceof Date}` }),
    });
    const f = defineFlow({
      id: 'json_input',
      effects: { probe },
      start: 'a',
      steps: {
        a: { say: 'go?', accepts: 'any', to: ['w'], on: (_i, c) => c.goto('w') },
        w: {
          say: 'working',
          to: ['a'],
          effect: {
            use: 'probe',
            // @ts-expect-error: refused when compiled (QA101-F8); from JavaScript it reaches run as JSON
            input: () => ({ when: new Date('2026-12-03T09:00:00Z') }),
            onResult: (r, c) => c.goto('a', {}, `run saw: ${r.got}`),
            onFailure: (_f, c) => c.goto('a'),
          },
        },
      },
    });
    const t = testFlow(f, { effects: 'auto' });
    await t.send('hi');
    expect((await t.send('go')).map((r) => r.text)).toContain('run saw: string false');
  });

  it("effects: 'auto' times each attempt out at the effect's timeoutMs, as the engine does (outside test A10)", async () => {
    let calls = 0;
    const f = defineFlow({
      id: 'hang',
      effects: {
        quote: effect({
          attempts: 2,
          timeoutMs: 50,
          backoffMs: 1,
          run: () => {
            calls += 1;
            return new Promise<{ price: number }>(() => undefined); // an API that never answers
          },
        }),
      },
      start: 'ask',
      steps: {
        ask: { say: 'address?', to: ['quoting'], on: (_i, c) => c.goto('quoting') },
        quoting: {
          say: 'quoting',
          to: ['ask'],
          effect: {
            use: 'quote',
            onResult: (r, c) => c.goto('ask', {}, `price ${r.price}`),
            onFailure: (f, c) => c.goto('ask', {}, `failed after ${f.attempts}: ${f.error}`),
          },
        },
      },
    });
    const t = testFlow(f, { effects: 'auto' });
    await t.send('hi');
    const out = await t.send('Hang st');
    expect(calls).toBe(2);
    expect(out.map((r) => r.text)).toContain('failed after 2: timed out after 50 ms');
    expect(t.step).toBe('ask');
  });

  it('the reference bot quotes a long name and address clipped, stores them whole, and every prompt fits', async () => {
    const t = testFlow(orderFlow);
    await t.send('hi');
    const name = `Ana ${'A'.repeat(1100)}`;
    const [product] = await t.send(name);
    expect(t.step).toBe('choose_product');
    expect(t.data.customer_name).toBe(name);
    expect(product!.text).toMatch(/^Thanks, Ana A+…\. Which product/);
    expect(replyProblems(product!.body)).toEqual([]);
    await t.tap('sku_551a');
    const address = `1 Long Road ${'x'.repeat(3000)}`;
    const [confirm] = await t.send(address);
    expect(t.step).toBe('confirm_order');
    expect(t.data.shipping_address).toBe(address);
    expect(replyProblems(confirm!.body)).toEqual([]);
    expect(confirm!.text.length).toBeLessThanOrEqual(WHATSAPP_LIMITS.interactiveBody);
  });

  it('clip cuts at a code point and marks the cut', () => {
    expect(clip('short', 10)).toBe('short');
    expect(clip('abcdefghij', 5)).toBe('abcd…');
    expect(clip('😀😀😀😀', 3)).toBe('😀😀…');
    expect(clip('word   and more', 8)).toBe('word…');
    // Whole characters as the user sees them (outside test B22): a family emoji (5 code points),
    // a flag (2), never split; nothing at all fits in 0.
    expect(clip('ab👨‍👩‍👧 cd', 6)).toBe('ab…');
    expect(clip('ab👨‍👩‍👧 cd', 8)).toBe('ab👨‍👩‍👧…');
    expect(clip('🇪🇸🇪🇸🇪🇸', 4)).toBe('🇪🇸…');
    expect(clip('abc', 0)).toBe('');
  });

  it('clip reads a bounded head of a huge value, with the same result (outside test QA30-F1)', () => {
    // V8's segmenter costs the whole string per step: a name joined from a thousand long texts
    // (2 MB) took seconds per prompt, and a starved worker lost its lease over it.
    const segment = vi.spyOn(Intl.Segmenter.prototype, 'segment');
    try {
      for (const head of ['Ana ', '👨‍👩‍👧'.repeat(30), '🇪🇸'.repeat(40), 'e\u0301'.repeat(50)]) {
        const huge = head + 'y'.repeat(2_000_000);
        expect(clip(huge, 60)).toBe(clip(huge.slice(0, 1000), 60));
      }
      expect(Math.max(...segment.mock.calls.map(([s]) => s.length))).toBeLessThanOrEqual(2 * 60 + 64);
    } finally {
      segment.mockRestore();
    }
  });

  it('the reference bot still behaves as before through testFlow', async () => {
    const t = testFlow(orderFlow);
    expect((await t.send('hi')).map((r) => r.callbackData)).toEqual(['baton:order:ask_name:1']);
    await t.send('Jane', 'Smith');
    expect(t.data).toEqual({ customer_name: 'Jane Smith' });
    expect(t.step).toBe('choose_product');
  });

  it('takes no invisible name or address: a zero-width space alone is a retry (outside test QA42-F9)', async () => {
    const t = testFlow(orderFlow);
    await t.send('hi');
    expect((await t.send('\u200b')).map((r) => r.callbackData)).toEqual(['baton:order:ask_name:2']);
    expect(t.step).toBe('ask_name');
    expect(t.state!.retryCount).toBe(1);
    await t.send('Ana\u200d');
    expect(t.data).toEqual({ customer_name: 'Ana\u200d' });
    await t.tap('sku_551a');
    await t.send(' \u2060\ufeff ');
    expect(t.step).toBe('collect_shipping_address');
  });
});

describe('computed choices and effect errors', () => {
  it('choices computed from data: offered, accepted by id, scoped to the step', async () => {
    const f = defineFlow({
      id: 'pick',
      data: z.object({ options: z.array(z.string()).optional(), picked: z.string().optional() }),
      start: 'ask',
      steps: {
        ask: {
          say: 'Which sizes?',
          to: ['pick'],
          on: (i, c) => c.goto('pick', { options: i.type === 'text' ? i.text.split(' ') : [] }),
        },
        pick: {
          say: 'Pick one',
          choices: (d) => (d.options ?? []).map((o) => ({ id: `size_${o}`, title: o })),
          to: ['ask'],
          on: (i, c) => (i.type === 'choice' ? c.goto('ask', { picked: i.id }) : c.retry()),
        },
      },
    });
    const t = testFlow(f);
    await t.send('hi');
    const [prompt] = await t.send('S M L XL');
    expect(prompt!.body).toMatchObject({ type: 'list' });
    await t.tap('size_XL');
    expect(t.data.picked).toBe('size_XL');
  });

  it('recognises an EffectError thrown by another copy of Baton (a flows module loaded from source)', () => {
    const copy = Object.assign(new Error('no'), { name: 'EffectError', retryable: false });
    expect(EffectError.is(copy)).toBe(true);
    expect(EffectError.is(new Error('no'))).toBe(false);
    expect(EffectError.is(new EffectError('x', { retryable: true }))).toBe(true);
  });
});

describe('the error boundary', () => {
  const flowWith = (on: (text: string) => Outcome<'b'>) =>
    defineFlow({
      id: 'b',
      start: 'a',
      steps: {
        a: { say: 'a', to: ['b'], on: (i) => on(i.type === 'text' ? i.text : '') },
        b: {
          say: 'b',
          choices: [{ id: 'x', title: 'x' }],
          to: ['a'],
          on: (_i, c) => c.goto('a'),
        },
      },
    });

  it('a handler returning a Promise is a clear flow error naming flow and step', async () => {
    const t = testFlow(flowWith(() => Promise.resolve({ kind: 'retry' }) as unknown as Outcome<'b'>));
    await t.send('hi');
    const err = await t.send('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlowRuntimeError);
    expect((err as FlowRuntimeError).message).toMatch(/flow b, step a: on returned a Promise/);
    expect((err as FlowRuntimeError).session).toMatch(/^test-channel:/);
  });

  it('a say that gives nothing at a step that waits for an answer is BATON_ERR_FLOW_REPLY, not silence (outside test QA97-F3)', async () => {
    const catalog: Record<string, string> = { greet: 'Hello! Your name?' };
    for (const say of [() => catalog['greeting'] as string, () => [], () => null as unknown as string]) {
      const f = defineFlow({
        id: 'quiet',
        start: 'a',
        steps: {
          a: { say, accepts: 'text', to: ['b'], on: (_i, c) => c.goto('b') },
          b: { say: 'b', choices: [{ id: 'y', title: 'Yes' }], to: [], on: (_i, c) => c.retry() },
        },
      });
      const err = (await testFlow(f)
        .send('hi')
        .catch((e: unknown) => e)) as FlowRuntimeError;
      expect(err.code).toBe('BATON_ERR_FLOW_REPLY');
      expect(err.message).toMatch(
        /flow quiet, step a: its say returned (undefined|null|no message): a step that waits/,
      );
    }
    // An effect's step, which waits for no answer, may say nothing.
    const fx = defineFlow({
      id: 'quiet_fx',
      effects: { e: effect({ run: async () => 1 }) },
      start: 'a',
      steps: {
        a: { say: 'a', accepts: 'text', to: ['working'], on: (_i, c) => c.goto('working') },
        working: {
          say: () => [],
          to: ['a'],
          effect: { use: 'e', onResult: (_r, c) => c.goto('a'), onFailure: (_f, c) => c.goto('a') },
        },
      },
    });
    const t = testFlow(fx);
    await t.send('hi');
    expect((await t.send('go')).map((r) => r.step)).toEqual([]);
    expect(t.step).toBe('working');
  });

  it('a dynamic reply over WhatsApp limits is BATON_ERR_FLOW_REPLY, naming flow and step', async () => {
    const f = defineFlow({
      id: 'r',
      start: 'a',
      steps: {
        a: { say: 'a', to: ['b'], on: (i, c) => c.goto('b', { title: i.type === 'text' ? i.text : '' }) },
        b: {
          say: 'pick',
          choices: (d) => [{ id: 'x', title: String(d.title) }],
          to: ['a'],
          on: (_i, c) => c.goto('a'),
        },
      },
    });
    const t = testFlow(f);
    await t.send('hi');
    const err = (await t.send('a title far longer than twenty').catch((e: unknown) => e)) as FlowRuntimeError;
    expect(err.code).toBe('BATON_ERR_FLOW_REPLY');
    expect(err.message).toMatch(/flow r, step b: .*title/);
  });

  it('a message given to c.goto over WhatsApp limits is BATON_ERR_FLOW_REPLY, not sent (outside test A1)', async () => {
    const f = defineFlow({
      id: 'g',
      start: 'a',
      steps: {
        a: {
          say: 'a',
          accepts: 'any',
          to: ['b'],
          on: (i, c) => c.goto('b', {}, i.type === 'text' ? i.text : ''),
        },
        b: {
          say: 'b',
          accepts: 'any',
          to: ['a'],
          on: (_i, c) => c.goto('a', {}, ['fine', 'y'.repeat(5000)]),
        },
      },
    });
    const t = testFlow(f);
    await t.send('hi');
    const long = (await t.send('x'.repeat(4097)).catch((e: unknown) => e)) as FlowRuntimeError;
    expect(long).toBeInstanceOf(FlowRuntimeError);
    expect(long.code).toBe('BATON_ERR_FLOW_REPLY');
    expect(long.message).toBe(
      'flow g, step a: the message it gives c.goto: text is 4097 characters; WhatsApp allows 4096',
    );
    expect(t.step).toBe('a');
    // Within the limit it goes out; the second of two messages is named by its place.
    const t2 = testFlow(f);
    await t2.send('hi');
    expect((await t2.send('x'.repeat(4096))).map((r) => r.text?.length)).toEqual([4096, 1]);
    const second = (await t2.send('go').catch((e: unknown) => e)) as FlowRuntimeError;
    expect(second.message).toMatch(/^flow g, step b: the message 2 it gives c.goto: text is 5000 characters/);
  });

  it('refuses at load: static replies over limits, an effect step with on, an unknown effect, a catalog missing a key', () => {
    expect(() =>
      defineFlow({
        id: 'l',
        start: 'a',
        steps: { a: { say: 'x'.repeat(4097), to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/flow "l": step "a": .*4,?096/);
    expect(() =>
      defineFlow({
        id: 'l',
        effects: { e: effect({ run: async () => 1 }) },
        start: 'a',
        steps: {
          a: {
            to: [],
            on: (_i, c) => c.retry(),
            effect: { use: 'e', onResult: (_r, c) => c.handoff('r'), onFailure: (_f, c) => c.handoff('f') },
          },
        },
      }),
    ).toThrow(FlowDefinitionError);
    expect(() =>
      defineFlow({
        id: 'l',
        start: 'a',
        steps: {
          a: {
            to: [],
            effect: {
              use: 'nope',
              onResult: () => ({ kind: 'retry' }),
              onFailure: () => ({ kind: 'retry' }),
            } as never,
          },
        },
      }),
    ).toThrow(/uses effect "nope"/);
    expect(() =>
      defineFlow({
        id: 'l',
        // @ts-expect-error -- as plain JavaScript would: a catalog without a key the others have
        words: { field: 'lang', default: 'en', catalogs: { en: { hi: 'Hi' }, es: {} } },
        start: 'a',
        steps: { a: { say: 'x', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/catalog "es" has no "hi"/);
  });

  it('a per-step retry limit and a retry message', async () => {
    const f = defineFlow({
      id: 'm',
      start: 'a',
      steps: {
        a: {
          say: 'a?',
          maxRetries: 1,
          to: [],
          on: (i, c) => c.retry(`not "${i.type === 'text' ? i.text : ''}"`),
        },
      },
    });
    const t = testFlow(f);
    await t.send('hi');
    expect((await t.send('x')).map((r) => r.text)).toEqual(['not "x"']);
    await t.send('y');
    expect(t.records.at(-1)!.kind).toBe('escalated');
  });

  it("data a step sets that the flow schema refuses is flow code's error, naming the keys; nothing is committed", async () => {
    const f = defineFlow({
      id: 'd',
      data: z.object({ name: z.string().optional(), price: z.number().optional() }),
      start: 'a',
      steps: {
        a: {
          say: 'a?',
          to: ['b'],
          on: (i, c) =>
            c.goto('b', { name: 'Kim', price: (i.type === 'text' ? i.text : '') as unknown as number }),
        },
        b: { say: 'b', to: [], on: (_i, c) => c.retry() },
      },
    });
    const t = testFlow(f);
    await t.send('hi');
    const err = (await t.send('16.50').catch((e: unknown) => e)) as FlowRuntimeError;
    expect(err).toBeInstanceOf(FlowRuntimeError);
    expect(err.code).toBe('BATON_ERR_FLOW_DATA');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/^flow d, step a: set data its data schema refuses: price: /);
    expect(t.state).toMatchObject({ step: 'a', data: {} });
  });

  it('stored data that fails the flow schema restarts the session, never misread', async () => {
    const f = defineFlow({
      id: 's',
      data: z.object({ n: z.number().optional() }),
      start: 'a',
      steps: { a: { say: 'a?', to: ['a'], on: (i, c) => c.goto('a', { n: i.type === 'text' ? 1 : 0 }) } },
    });
    const t = testFlow(f);
    await t.send('hi');
    await t.send('one');
    expect(t.data).toEqual({ n: 1 });
    const bad = { ...t.state!, data: { n: 'one' } };
    const { transition } = await import('../../src/flow/transition.ts');
    const r = transition(f, bad, [], {
      key: { channel: bad.channel, user: bad.user },
      nowMs: 0,
      worker: 'w',
      fence: 1,
      sessionTtlSec: 86_400,
      maxRetries: 3,
    });
    expect(r.records.map((x) => x.kind)).toEqual(['reset']);
    expect(r.snapshot).toMatchObject({ step: null, data: {} });
  });
});
