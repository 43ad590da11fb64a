import { testEngine } from '../support/engine.ts';
import { describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { defineFlow, type Translate } from '../../src/flow/define.ts';
import { testFlow } from '../../src/testing/test-flow.ts';
import { serializeError } from '../../src/app.ts';
import { FlowRuntimeError, thrownAt } from '../../src/errors.ts';

/** A user's text as the store keeps it. */
const textMsg = (user: string, id: string, body: string, ts: number) => ({
  id,
  provider: 'cloud-api' as const,
  channel: 'c',
  user,
  timestamp: ts,
  content: { type: 'text' as const, body },
});

const buggy = defineFlow({
  id: 'buggy',
  start: 'ask',
  steps: {
    ask: {
      say: 'Say something',
      accepts: 'text',
      to: ['done'],
      on: (input, c) => {
        if (input.type === 'text' && input.text === 'boom') throw new Error('flow bug');
        if (input.type === 'text' && input.text === 'jump') return c.goto('nowhere' as never);
        return c.goto('done');
      },
    },
    done: { say: 'Done', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
  },
});

describe('flow code that fails', () => {
  it('tells a goto to a step the flow has not from one to a step "to" does not declare (outside test QA22-F9)', async () => {
    const t = testFlow(buggy);
    await t.send('hi');
    await expect(t.send('jump')).rejects.toThrow(
      /step ask: went to "nowhere", which is no step of flow buggy$/,
    );
    const undeclared = defineFlow({
      id: 'undeclared',
      start: 'a',
      steps: {
        // @ts-expect-error: a step its `to` does not name does not compile (QA92-F1); plain JavaScript meets the check at run time
        a: { say: 'A', accepts: 'text', to: ['c'], on: (_i, c) => c.goto('b') },
        c: { say: 'C', accepts: 'any', to: ['b'], on: (_i, c) => c.goto('b') },
        b: { say: 'B', accepts: 'any', to: ['a'], on: (_i, c) => c.goto('a') },
      },
    });
    const u = testFlow(undeclared);
    await u.send('hi');
    await expect(u.send('go')).rejects.toThrow(
      /step a: went to "b", which it does not declare in "to" \(add "b" to its "to"\)$/,
    );
  });

  it.each([
    ['boom', 'BATON_ERR_FLOW_HANDLER'],
    ['jump', 'BATON_ERR_FLOW_UNDECLARED_TRANSITION'],
  ])('dead-letters the batch (%s) with its reason and leaves the state as it was', async (body, code) => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: string[] = [];
    const engine = testEngine(backend, {
      flows: [buggy],
      send: async (m) => (sent.push(m.callbackData), { providerMessageId: m.id }),
    });
    const key = { channel: 'c', user: 'u' };
    const msg = (id: string, text: string, ts: number) => textMsg(key.user, id, text, ts);
    await backend.ingest({ messages: [msg('w1', 'hi', 1)], statuses: [] });
    await engine.runSession(key);
    await backend.ingest({ messages: [msg('w2', body, 2)], statuses: [] });
    await engine.runSession(key);
    const s = (await backend.load(key))!;
    expect(s).toMatchObject({ step: 'ask', version: 1 });
    expect((await backend.stats()).queueDepth).toBe(0);
    const [letter] = await backend.listDeadLetters(10);
    expect(letter).toMatchObject({ kind: 'inbound', ref: 'w2' });
    expect(letter!.reason).toContain(code);
    expect(sent).toEqual(['baton:buggy:ask:1', 'baton:buggy:ask:1:w2']);
    // Replayed after a fix (here: the same message, now processed again and failing again,
    // which shows it went back to the mailbox).
    expect(await backend.replayDeadLetter(letter!.id)).toBe(true);
    expect((await backend.stats()).queueDepth).toBe(1);
    // Failing again, it is a dead letter again, and the user gets no second notice (it would
    // repeat the first one's biz_opaque_callback_data).
    await engine.runSession(key);
    expect((await backend.stats()).queueDepth).toBe(0);
    expect(await backend.listDeadLetters(10)).toMatchObject([{ kind: 'inbound', ref: 'w2' }]);
    expect(sent).toEqual(['baton:buggy:ask:1', 'baton:buggy:ask:1:w2']);
    await backend.close();
  });
});

describe('an error in code that builds a reply', () => {
  it('names the step whose code failed, and the step the batch began at', async () => {
    const words = defineFlow({
      id: 'words_bug',
      start: 'a',
      words: { field: 'lang', default: 'en', catalogs: { en: { hi: 'Hello' } } },
      steps: {
        a: { say: 'start', accepts: 'any', to: ['b'], on: (_i, c) => c.goto('b') },
        // @ts-expect-error -- a key no catalog has fails to compile; this test is about plain JavaScript
        b: { say: (_d, { t }) => t('nope'), accepts: 'any', to: ['a'], on: (_i, c) => c.goto('a') },
      },
    });
    const t = testFlow(words);
    await t.send('hi');
    await expect(t.send('go')).rejects.toThrow(
      /^flow words_bug, step b: say: .*t\("nope"\): no such text.* \(the batch began at a\)$/,
    );
  });
});

describe('words (outside test B9)', () => {
  const catalogs = {
    en: { hi: 'Hello {name}', sorry: 'Sorry, try again later.' },
    es: { hi: 'Hola {name}', sorry: 'Lo sentimos, inténtalo más tarde.' },
  };

  it('a placeholder with no value is an error naming it, not "{name}" sent to the user', async () => {
    const flow = defineFlow({
      id: 'words_vars',
      start: 'a',
      words: { field: 'lang', default: 'en', catalogs },
      steps: {
        a: { say: 'start', accepts: 'any', to: ['b'], on: (_i, c) => c.goto('b') },
        b: {
          say: (_d, { t }) => t('hi', { nmae: 'Ann' }),
          accepts: 'any',
          to: ['a'],
          on: (_i, c) => c.goto('a'),
        },
      },
    });
    const t = testFlow(flow);
    await t.send('hi');
    await expect(t.send('go')).rejects.toThrow(/t\("hi"\): no value for \{name\} \(given: nmae\)/);
  });

  it('every language must name the same placeholders as the default one', () => {
    expect(() =>
      defineFlow({
        id: 'words_mismatch',
        start: 'a',
        words: {
          field: 'lang',
          default: 'en',
          catalogs: { en: { hi: 'Hello {name}' }, es: { hi: 'Hola {nombre}' } },
        },
        steps: { a: { say: 'start', accepts: 'any', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow(/words: "es\.hi" has placeholders \{nombre\}, "en\.hi" has \{name\}/);
  });

  it('the error notice may be translated; one that throws falls back to the default text', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: string[] = [];
    const flow = (error: (d: { lang?: string }, c: { t: Translate }) => string) =>
      defineFlow({
        id: 'words_notice',
        start: 'a',
        words: { field: 'lang', default: 'en', catalogs },
        notices: { error },
        steps: {
          a: {
            say: 'start',
            accepts: 'any',
            to: [],
            first: (_i, c) => c.retry(),
            on: () => {
              throw new Error('flow bug');
            },
          },
        },
      });
    const msg = (user: string, id: string, ts: number) => textMsg(user, id, 'x', ts);
    const run = async (f: ReturnType<typeof flow>, user: string) => {
      const engine = testEngine(backend, {
        flows: [f],
        send: async (m) => (
          sent.push(m.body.type === 'text' ? m.body.text : m.body.type),
          { providerMessageId: m.id }
        ),
      });
      await backend.ingest({ messages: [msg(user, `${user}-1`, 1)], statuses: [] });
      await engine.runSession({ channel: 'c', user });
      await backend.ingest({ messages: [msg(user, `${user}-2`, 2)], statuses: [] });
      await engine.runSession({ channel: 'c', user });
    };
    await run(
      flow((_d, { t }) => t('sorry')),
      'u1',
    );
    await run(
      flow(() => {
        throw new Error('the notice is broken too');
      }),
      'u2',
    );
    expect(sent).toEqual([
      'start',
      'Sorry, try again later.',
      'start',
      'Sorry, something went wrong on our side and we could not handle your last message. Please try again in a moment.',
    ]);
    await backend.close();
  });
});

describe('flow code slower than the lease (outside test S1)', () => {
  it('is dead-lettered after two runs whose commits were refused, not taken again forever', async () => {
    const TTL = 300;
    let slowRuns = 0;
    const slow = defineFlow({
      id: 'slow',
      start: 'ask',
      steps: {
        ask: {
          say: 'Say something',
          accepts: 'text',
          to: ['done'],
          on: (input, c) => {
            if (input.type === 'text' && input.text === 'slow') {
              slowRuns += 1;
              // Synchronous, so no renewal can run meanwhile; and slow in CPU time, not only in wall
              // time: on a machine busy with other suites the process may get little of 400 ms,
              // and a batch whose lease lapsed while its process was starved is taken again, not
              // counted as slow code (CI ran it 5 times).
              const until = Date.now() + TTL + 100;
              const cpu = process.cpuUsage();
              const spent = (): number => {
                const u = process.cpuUsage(cpu);
                return (u.user + u.system) / 1000;
              };
              while (Date.now() < until || spent() < TTL + 100);
            }
            return c.goto('done');
          },
        },
        done: { say: 'Done', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
      },
    });
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: string[] = [];
    const engine = testEngine(backend, {
      flows: [slow],
      lockTtlMs: TTL,
      send: async (m) => (sent.push(m.callbackData), { providerMessageId: m.id }),
    });
    const key = { channel: 'c', user: 'u' };
    const msg = (id: string, text: string, ts: number) => textMsg(key.user, id, text, ts);
    await backend.ingest({ messages: [msg('w1', 'hi', 1)], statuses: [] });
    await engine.runSession(key);
    await backend.ingest({ messages: [msg('w2', 'slow', 2)], statuses: [] });
    for (let i = 0; i < 5 && (await backend.stats()).queueDepth > 0; i += 1) {
      await engine.runSession(key);
      await new Promise((r) => setTimeout(r, TTL + 50)); // the lease the refused commit left runs out
    }
    expect(slowRuns).toBe(2);
    expect((await backend.stats()).queueDepth).toBe(0);
    expect(await backend.load(key)).toMatchObject({ step: 'ask', version: 1 });
    const [letter] = await backend.listDeadLetters(10);
    expect(letter).toMatchObject({ kind: 'inbound', ref: 'w2' });
    expect(letter!.reason).toMatch(
      /BATON_ERR_FLOW_SLOW.*so long that the lease \(BATON_LOCK_TTL_MS=300\) lapsed, 2 times/,
    );
    // The user is told once; the next message is handled as usual.
    expect(sent).toEqual(['baton:slow:ask:1', 'baton:slow:ask:1:w2']);
    await backend.ingest({ messages: [msg('w3', 'fast', 3)], statuses: [] });
    await engine.runSession(key);
    expect(await backend.load(key)).toMatchObject({ step: 'done', version: 2 });
    await engine.stop();
    await backend.close();
  });

  it('is taken again, never dead-lettered, when the lease lapsed because the process was starved', async () => {
    const TTL = 300;
    // The thread blocked without using the CPU, as a process descheduled by CPU hogs is: the flow
    // code itself is quick, the lease lapses all the same (outside test QA30-F1).
    const starve = (ms: number): void => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    };
    let starved = 0;
    const flow = defineFlow({
      id: 'starved',
      start: 'ask',
      steps: {
        ask: {
          say: 'Say something',
          accepts: 'text',
          to: ['done'],
          on: (_input, c) => {
            if (starved < 3) {
              starved += 1;
              starve(TTL + 100);
            }
            return c.goto('done');
          },
        },
        done: { say: 'Done', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
      },
    });
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
    await backend.init();
    const sent: string[] = [];
    const engine = testEngine(backend, {
      flows: [flow],
      lockTtlMs: TTL,
      send: async (m) => (sent.push(m.callbackData), { providerMessageId: m.id }),
    });
    const key = { channel: 'c', user: 'u' };
    await backend.ingest({ messages: [textMsg(key.user, 'w1', 'hi', 1)], statuses: [] });
    await engine.runSession(key);
    await backend.ingest({ messages: [textMsg(key.user, 'w2', 'Jane', 2)], statuses: [] });
    for (let i = 0; i < 8 && (await backend.stats()).queueDepth > 0; i += 1) {
      await engine.runSession(key);
      await new Promise((r) => setTimeout(r, TTL + 50));
    }
    expect(starved).toBe(3);
    expect(await backend.listDeadLetters(10)).toEqual([]);
    expect(await backend.load(key)).toMatchObject({ step: 'done', version: 2 });
    expect(sent).toEqual(['baton:starved:ask:1', 'baton:starved:done:2']);
    await engine.stop();
    await backend.close();
  });
});

describe('notices and prompts', () => {
  it("names the step a notice's missing text was needed at (outside test A8)", async () => {
    const f = defineFlow({
      id: 'w',
      start: 'a',
      words: { field: 'lang', default: 'en', catalogs: { en: { hi: 'hi' } } },
      // @ts-expect-error -- as plain JavaScript would: a key no catalog has
      notices: { handoff: (_d, c) => c.t('handoff') },
      steps: { a: { say: 'hi', accepts: 'any', to: [], on: (_i, c) => c.handoff('x') } },
    });
    const t = testFlow(f);
    await t.send('x');
    const err = (await t.send('y').catch((e: unknown) => e)) as FlowRuntimeError;
    expect(err.message).toBe('flow w, step a: notice: t("handoff"): no such text');
  });

  it('refuses at load a step that waits for an answer without a prompt (outside test A3)', () => {
    expect(() =>
      defineFlow({
        id: 'q',
        start: 'a',
        steps: {
          a: { say: 'a', to: ['b'], on: (_i, c) => c.goto('b', {}, 'asked by a') },
          b: { choices: [{ id: 'x', title: 'X' }], to: [], on: (_i, c) => c.retry() },
        },
      }),
    ).toThrow('flow "q": step "b": waits for the user\'s answer but has no prompt: give it "say"');
    // Nor with an empty list of messages (outside test QA103-F1: it failed at each visit).
    expect(() =>
      defineFlow({
        id: 'q',
        start: 'a',
        steps: { a: { say: [], accepts: 'any', to: [], on: (_i, c) => c.retry() } },
      }),
    ).toThrow('flow "q": step "a": waits for the user\'s answer but has no prompt: give it "say"');
  });
});

describe('logged errors', () => {
  it("say a handler's error once: its message already names the cause (outside test A7)", () => {
    const cause = new Error('kaboom in my handler');
    const err = new FlowRuntimeError('BATON_ERR_FLOW_HANDLER', 'bad', 'a', `on: ${String(cause)}`, cause);
    expect(serializeError(err).message).toBe('flow bad, step a: on: Error: kaboom in my handler');
    // An error that does not say its cause keeps pino's way: the cause appended.
    expect(serializeError(new Error('outer', { cause: new Error('inner') })).message).toBe('outer: inner');
  });
});

describe('where flow code threw', () => {
  // A throwing step was named by flow, step and phase; the line was only in the server's log
  // (outside test QA131-F2).
  it("names the author's file, line and column, not Baton's", async () => {
    const explode = (): never => {
      throw new Error('cannot handle boom');
    };
    const flow = defineFlow({
      id: 'thrower',
      start: 'a',
      steps: { a: { say: 'hi', accepts: 'any', to: ['a'], on: () => explode() } },
    });
    const t = testFlow(flow);
    await t.send('hi');
    await expect(t.send('boom')).rejects.toThrow(
      /^flow thrower, step a: on: Error: cannot handle boom \(at test\/unit\/flow-errors\.test\.ts:\d+:\d+\)$/,
    );
    // Something thrown without a stack has no place to name.
    expect(thrownAt('boom')).toBe('');
    expect(thrownAt(new Error('made here'))).toMatch(/^ \(at test\/unit\/flow-errors\.test\.ts:/);
  });
});
