/**
 * What flow code and effects throw or return that is no Error or no JSON: said as it is, and not
 * retried where every attempt would fail the same (outside test QA103-F4, F10).
 */
import { describe, expect, it } from 'vitest';
import { thrownText } from '../../src/errors.ts';
import { defineFlow, effect, testFlow } from '../../src/index.ts';

function probing(run: () => Promise<unknown>) {
  let calls = 0;
  const flow = defineFlow({
    id: 'probe',
    effects: {
      call: effect({
        attempts: 3,
        backoffMs: 1,
        run: async () => {
          calls += 1;
          return run();
        },
      }),
    },
    start: 'a',
    steps: {
      a: { say: 'go?', accepts: 'any', to: ['w'], on: (_i, c) => c.goto('w') },
      w: {
        say: 'working',
        to: ['a'],
        effect: {
          use: 'call',
          input: () => null,
          onResult: (_r, c) => c.goto('a', {}, 'done'),
          onFailure: (f, c) => c.goto('a', {}, `failed after ${f.attempts}: ${f.error}`),
        },
      },
    },
  });
  return { flow, calls: () => calls };
}

describe('values that are no Error, results that are no JSON', () => {
  it('a result JSON cannot hold fails at once, not retried', async () => {
    for (const [value, why] of [
      [{ n: 10n }, /BigInt/],
      [
        (() => {
          const loop: Record<string, unknown> = {};
          loop.self = loop;
          return loop;
        })(),
        /circular/i,
      ],
    ] as const) {
      const p = probing(async () => value);
      const t = testFlow(p.flow, { effects: 'auto' });
      await t.send('hi');
      const said = (await t.send('go')).map((r) => r.text ?? '').find((x) => x.startsWith('failed'));
      expect(said).toMatch(/^failed after 1: the result is not JSON: /);
      expect(said).toMatch(why);
      expect(p.calls()).toBe(1);
    }
  });

  it('t.resolve takes a value as the engine stores it: too large or no JSON goes to onFailure (outside test QA103-F2)', async () => {
    const t = testFlow(probing(async () => null).flow);
    await t.send('hi');
    await t.send('go');
    const big = await t.resolve('call', { blob: 'x'.repeat(300_000) });
    expect(big.map((r) => r.text)).toContain(
      'failed after 1: the result is 300011 characters of JSON, over the 262144 a result may hold',
    );
    await t.send('go');
    const odd = await t.resolve('call', { n: 1n });
    expect(odd.map((r) => r.text).find((x) => x?.startsWith('failed'))).toMatch(/not JSON: .*BigInt/);
    await t.send('go');
    expect((await t.resolve('call', { ok: true })).map((r) => r.text)).toContain('done');
  });

  it('a result the flow fails on hands the session to an agent, as the engine does (outside test QA103-F12)', async () => {
    const flow = defineFlow({
      id: 'slots',
      effects: { fetch: effect({ run: async (_: null) => [{ id: 's1' }] }) },
      start: 'a',
      steps: {
        a: { say: 'book?', accepts: 'any', to: ['w'], on: (_i, c) => c.goto('w') },
        w: {
          say: 'looking',
          to: ['pick', 'a'],
          effect: {
            use: 'fetch',
            input: () => null,
            onResult: (r, c) => c.goto('pick', { slots: r.map((x) => x.id) }),
            onFailure: (_f, c) => c.goto('a'),
          },
        },
        pick: {
          say: 'Which slot?',
          choices: (d) => ((d.slots as string[] | undefined) ?? []).map((id) => ({ id, title: id })),
          to: ['a'],
          on: (_i, c) => c.goto('a'),
        },
      },
    });
    const t = testFlow(flow);
    await t.send('hi');
    await t.send('go');
    // Two slots with one id: the next prompt is refused, the result can never be applied.
    await expect(t.resolve('fetch', [{ id: 's1' }, { id: 's1' }])).rejects.toThrow(/repeats/);
    expect(t.state).toMatchObject({ step: 'w', needsAgent: true });
    expect(t.state?.awaiting).toBeUndefined();
    expect(t.state?.handoffReason).toMatch(
      /^the flow failed on the result of effect fetch: BATON_ERR_FLOW_REPLY$/,
    );
    expect(t.records.at(-1)?.kind).toBe('escalated');
    // The user's next message is held for the agent, not failed again.
    expect(await t.send('hello?')).toEqual([]);
    expect(t.records.at(-1)?.kind).toBe('held');
  });

  it("an effect's thrown object reaches onFailure as its JSON", async () => {
    const p = probing(async () => {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- what the test is about
      throw { code: 42 };
    });
    const t = testFlow(p.flow, { effects: 'auto' });
    await t.send('hi');
    expect((await t.send('go')).map((r) => r.text)).toContain('failed after 3: {"code":42}');
  });

  it('a handler that throws an object is named with its JSON', async () => {
    const flow = defineFlow({
      id: 'ot',
      start: 'a',
      steps: {
        a: {
          say: 'x',
          accepts: 'any',
          to: [],
          on: () => {
            // eslint-disable-next-line @typescript-eslint/only-throw-error -- what the test is about
            throw { weird: true };
          },
        },
      },
    });
    const t = testFlow(flow);
    await t.send('hi');
    await expect(t.send('again')).rejects.toThrow('{"weird":true}');
  });

  it('thrownText: Errors and primitives as String() says, objects as JSON, long ones cut', () => {
    expect(thrownText(new TypeError('bad'))).toBe('TypeError: bad');
    expect(thrownText('text')).toBe('text');
    expect(thrownText(undefined)).toBe('undefined');
    expect(thrownText({ a: [1, 'b'] })).toBe('{"a":[1,"b"]}');
    expect(thrownText({})).toBe('[object Object]');
    expect(thrownText({ long: 'x'.repeat(1000) })).toHaveLength(500);
  });
});
