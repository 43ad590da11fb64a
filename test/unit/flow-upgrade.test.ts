/**
 * Snapshots that know their version (issue 7, point 8): data stored by an earlier flow version
 * goes through the flow's `migrate`; a session at a step the flow no longer has continues at the
 * step `moved` names (recorded), or is held for an agent (recorded), never silently restarted;
 * a snapshot in a format this Baton cannot read is never misread (the batch is dead-lettered).
 */
import pino from 'pino';
import { testEngine } from '../support/engine.ts';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { FlowDefinitionError } from '../../src/errors.ts';
import { defineFlow, effect, type Flow, type FlowData } from '../../src/flow/define.ts';
import { transition, type ResolvedMessage } from '../../src/flow/transition.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';

const key = { channel: 'ch', user: 'u1' };
const env = { key, nowMs: 1_000_000, worker: 'w', fence: 3, sessionTtlSec: 86_400, maxRetries: 3 };

let seq = 0;
function txt(body: string, ts: number): ResolvedMessage {
  seq += 1;
  return {
    id: `m${seq}`,
    provider: 'cloud-api',
    ...key,
    timestamp: ts,
    seq,
    storedAt: 0,
    content: { type: 'text', body },
  };
}

/** Version 1 asked for a `name` at `ask_name`, then a city at `ask_city`. */
function storedV1(step: string, data: FlowData): SessionSnapshot {
  return {
    ...key,
    format: 1,
    flow: 'signup',
    flowVersion: 1,
    step,
    data,
    version: 4,
    visitVersion: 4,
    lastInteraction: 100,
    lastMessageId: 'm0',
    retryCount: 0,
    needsAgent: false,
    createdAt: 0,
    outboundSeq: 4,
  };
}

interface LogLine {
  level: number;
  msg: string;
  step?: string;
  flow?: string;
  stored?: number;
}

/**
 * Stores `stored` in a real embedded store, lets an engine serving `flow` run the session on one
 * message, and returns what it logged at warn and above, and the session it left.
 */
async function engineRun(
  flow: Flow,
  stored: SessionSnapshot,
): Promise<{ warned: LogLine[]; after: SessionSnapshot }> {
  const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3650 * 86400 });
  await backend.init();
  try {
    const warned: LogLine[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => warned.push(JSON.parse(l) as LogLine) });
    const lease = (await backend.acquireLease(key, 'earlier-baton', 5000))!;
    await backend.commit(lease, {
      expectedVersion: 0,
      snapshot: { ...stored, version: 1 },
      records: [],
      outbound: [],
      consumed: [],
      deadLetters: [],
    });
    await backend.releaseLease(lease);
    await backend.ingest({ messages: [txt('Porto', 101)], statuses: [] });
    await testEngine(backend, { flows: [flow], logger }).runSession(key);
    return { warned, after: (await backend.load(key))! };
  } finally {
    await backend.close();
  }
}

/** Version 2 stores `first` and `last` and renamed `ask_city` to `ask_town`. */
const v2 = defineFlow({
  id: 'signup',
  version: 2,
  start: 'ask_first',
  migrate: (data, from) => {
    if (from >= 2) return data;
    const [first = '', ...rest] = (typeof data.name === 'string' ? data.name : '').split(' ');
    const { name: _name, ...others } = data;
    return { ...others, first, last: rest.join(' ') };
  },
  moved: { ask_name: 'ask_first', ask_city: 'ask_town' },
  steps: {
    ask_first: {
      say: 'First name?',
      accepts: 'text',
      to: ['ask_town'],
      on: (i, c) => (i.type === 'text' ? c.goto('ask_town', { first: i.text }) : c.retry()),
    },
    ask_town: {
      say: 'Town?',
      accepts: 'text',
      to: ['done'],
      on: (i, c) => (i.type === 'text' ? c.goto('done', { town: i.text }) : c.retry()),
    },
    done: { say: 'Done', accepts: 'any', to: ['ask_first'], on: (_i, c) => c.restart('ask_first') },
  },
});

/** Version 3 dropped `ask_town` with no rule for it. */
const v3 = defineFlow({
  id: 'signup',
  version: 3,
  start: 'ask_first',
  steps: {
    ask_first: { say: 'First name?', accepts: 'text', to: ['done'], on: (_i, c) => c.goto('done') },
    done: { say: 'Done', accepts: 'any', to: ['ask_first'], on: (_i, c) => c.restart('ask_first') },
  },
});

describe('a session stored by an earlier version of its flow', () => {
  it("migrates its data with the flow's rule, then moves it off a removed step, recorded", () => {
    const r = transition(v2, storedV1('ask_city', { name: 'Ana Maria Lima' }), [txt('Lisboa', 101)], env);
    expect(r.snapshot).toMatchObject({
      step: 'done',
      flowVersion: 2,
      version: 6,
      data: { first: 'Ana', last: 'Maria Lima', town: 'Lisboa' },
    });
    expect(r.snapshot.data).not.toHaveProperty('name');
    expect(r.records.map((x) => [x.kind, x.from_step, x.to_step, x.message_ids.length])).toEqual([
      ['advance', 'ask_city', 'ask_town', 0],
      ['advance', 'ask_town', 'done', 1],
    ]);
    // The moved-to step's prompt was answered in the same batch: only the last prompt goes.
    expect(r.effects.map((e) => e.step)).toEqual(['done']);
  });

  it('moved off a renamed step whose effect is running, awaits that same effect: no second call (outside test QA65-F1)', () => {
    const price = effect({
      run: async (input: { size: string }) => ({ total: input.size === 'L' ? 12 : 9 }),
    });
    const renamed = defineFlow({
      id: 'pizza',
      version: 2,
      effects: { price },
      moved: { pricing: 'quoting' },
      start: 'quoting',
      steps: {
        quoting: {
          say: 'Working out your price…',
          to: ['confirm'],
          effect: {
            use: 'price',
            input: () => ({ size: 'L' }),
            onResult: (r, c) => c.goto('confirm', { total: r.total }),
            onFailure: (_f, c) => c.handoff('pricing failed'),
          },
        },
        confirm: {
          say: (d) => `That is ${String(d.total)}.`,
          accepts: 'any',
          to: ['quoting'],
          on: (_i, c) => c.restart('quoting'),
        },
      },
    });
    const running = { id: 'fx_4_ab', name: 'price', step: 'pricing', version: 4 };
    const stored: SessionSnapshot = { ...storedV1('pricing', {}), flow: 'pizza', awaiting: running };
    seq += 1;
    const result: ResolvedMessage = {
      id: `fx:${running.id}`,
      provider: 'cloud-api',
      ...key,
      timestamp: 101,
      seq,
      storedAt: 0,
      content: {
        type: 'effect_result',
        effectId: running.id,
        name: 'price',
        ok: true,
        value: { total: 12 },
        attempts: 2,
      },
    };
    const r = transition(renamed, stored, [result], env);
    // The running call's result is the one applied; none is started again, its prompt not resent.
    expect(r.started).toEqual([]);
    expect(r.records.map((x) => [x.kind, x.from_step, x.to_step])).toEqual([
      ['advance', 'pricing', 'quoting'],
      ['advance', 'quoting', 'confirm'],
    ]);
    expect(r.snapshot).toMatchObject({ step: 'confirm', data: { total: 12 }, flowVersion: 2 });
    expect(r.effects.map((e) => e.body)).toEqual([{ type: 'text', text: 'That is 12.' }]);

    // Moved to a step with another effect (or none), the session leaves the running one: a new visit.
    const other = transition(
      v2,
      { ...storedV1('ask_city', {}), awaiting: { ...running, step: 'ask_city' } },
      [txt('Lisboa', 101)],
      env,
    );
    expect(other.snapshot.awaiting).toBeUndefined();
  });

  it('holds a session at a removed step with no rule for an agent, never restarting it', () => {
    const stored = { ...storedV1('ask_town', { first: 'Ana', last: 'Lima' }), flowVersion: 2 };
    const r = transition(v3, stored, [txt('Porto', 101)], env);
    expect(r.snapshot).toMatchObject({ needsAgent: true, version: 5, data: { first: 'Ana', last: 'Lima' } });
    expect(r.records.map((x) => x.kind)).toEqual(['escalated', 'held']);
    expect(r.effects).toHaveLength(1); // the hand-off notice
    expect(r.effects[0]!.isPrompt).toBe(false);
  });

  it('logs a warning naming the step when it hands such a session to an agent (outside test A4)', async () => {
    const stored = { ...storedV1('ask_town', { first: 'Ana', last: 'Lima' }), flowVersion: 2 };
    const { warned, after } = await engineRun(v3, stored);
    expect(after.needsAgent).toBe(true);
    expect(warned.filter((l) => l.level === 40 && l.step === 'ask_town').map((l) => l.msg)).toEqual([
      'a session at step "ask_town", which flow signup no longer has, was handed to an agent: give the flow "moved" to say where such sessions go on',
    ]);
  });

  it('holds a session of a flow not served for an agent, its data never read by the flow that is (outside test QA58-F1)', async () => {
    // A `billing` session at `ask_name`; the process serves `signup` only. Before, signup took
    // the answer as its own (data, step and flow switched without a word).
    const billing = { ...storedV1('ask_name', { holder: 'Ana' }), flow: 'billing', flowVersion: 1 };
    const r = transition(v2, billing, [txt('Mallory', 101)], env);
    expect(r.snapshot).toMatchObject({
      flow: 'billing',
      flowVersion: 1,
      step: 'ask_name',
      needsAgent: true,
      version: 5,
      data: { holder: 'Ana' },
      handoffReason: 'flow billing of this session is not served (BATON_FLOWS); signup is',
    });
    expect(r.records.map((x) => x.kind)).toEqual(['escalated', 'held']);
    // Later messages are held too; it stays billing's.
    const later = transition(v2, r.snapshot, [txt('hello?', 102)], env);
    expect(later.snapshot).toMatchObject({ flow: 'billing', step: 'ask_name', version: 5 });
    expect(later.records.map((x) => x.kind)).toEqual(['held']);

    // The engine's warning names the flow to serve, not a step to move.
    const { warned, after } = await engineRun(v2, billing);
    expect(after).toMatchObject({ flow: 'billing', needsAgent: true });
    expect(warned.filter((l) => l.level === 40 && l.flow === 'billing').map((l) => l.msg)).toEqual([
      "a session of flow billing, which this process does not serve, was handed to an agent: add the flow to BATON_FLOWS (every worker's)",
    ]);
  });

  it('holds a session written by a newer version of its flow for an agent, as it stands (outside test QA65-F2)', async () => {
    // A rolling deploy's older worker (or a rollback): version 2 serves, the session is version
    // 3's, its town a number. Before, the older schema refused the data and the session was wiped.
    const older = defineFlow({
      id: 'signup',
      version: 2,
      data: z.object({ first: z.string().optional(), town: z.string().optional() }),
      start: 'ask_first',
      steps: {
        ask_first: { say: 'First name?', accepts: 'text', to: ['done'], on: (_i, c) => c.goto('done') },
        done: { say: 'Done', accepts: 'any', to: ['ask_first'], on: (_i, c) => c.restart('ask_first') },
      },
    });
    const newer = { ...storedV1('ask_first', { first: 'Ana', town: 7 }), flowVersion: 3 };
    const r = transition(older, newer, [txt('Porto', 101)], env);
    expect(r.snapshot).toMatchObject({
      flow: 'signup',
      flowVersion: 3,
      step: 'ask_first',
      needsAgent: true,
      data: { first: 'Ana', town: 7 },
      handoffReason: 'written by version 3 of flow signup; this process serves version 2',
    });
    expect(r.records.map((x) => x.kind)).toEqual(['escalated', 'held']);
    // The engine's warning says to run the newest flow everywhere, not to move a step.
    const { warned, after } = await engineRun(older, newer);
    expect(after).toMatchObject({ flowVersion: 3, needsAgent: true, data: { town: 7 } });
    expect(warned.filter((l) => l.level === 40 && l.stored === 3).map((l) => l.msg)).toEqual([
      "a session written by version 3 of flow signup, newer than this process's version 2, was handed to an agent: run the newest flow (in distributed mode, on every worker)",
    ]);
  });

  it('restarts a session whose data no longer fits, and that is all: not also handed to an agent for a removed step (outside test QA65-F3)', () => {
    const typed = defineFlow({
      id: 'signup',
      version: 3,
      data: z.object({ first: z.string().optional(), ticket: z.number().optional() }),
      start: 'ask_first',
      steps: {
        ask_first: { say: 'First name?', accepts: 'text', to: ['done'], on: (_i, c) => c.goto('done') },
        done: { say: 'Done', accepts: 'any', to: ['ask_first'], on: (_i, c) => c.restart('ask_first') },
      },
    });
    const stored = { ...storedV1('describe', { first: 'Ana', ticket: 'T-777' }), flowVersion: 2 };
    const r = transition(typed, stored, [txt('hello', 101)], env);
    expect(r.records.map((x) => x.kind)).toEqual(['reset', 'advance']);
    expect(r.snapshot).toMatchObject({ needsAgent: false, step: 'ask_first', data: {} });
    // No hand-off notice before the fresh start's prompt.
    expect(r.effects.map((e) => e.isPrompt)).toEqual([true]);
  });

  it('refuses a moved rule that names a current step or an unknown one, when the flow loads', () => {
    const base = {
      id: 'x',
      start: 'a' as const,
      steps: {
        a: { say: 'A', accepts: 'any' as const, to: [] as never[], on: () => ({ kind: 'retry' as const }) },
      },
    };
    expect(() => defineFlow({ ...base, moved: { a: 'a' } })).toThrow(FlowDefinitionError);
    expect(() => defineFlow({ ...base, moved: { gone: 'nope' as 'a' } })).toThrow(/unknown step "nope"/);
  });
});

describe('a snapshot in a format this Baton cannot read', () => {
  it('is never misread: the batch is dead-lettered with BATON_ERR_SNAPSHOT_FORMAT, the snapshot kept', async () => {
    const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3650 * 86400 });
    await backend.init();
    const engine = testEngine(backend, { flows: [v2] });
    const first = txt('Ana', 100);
    await backend.ingest({ messages: [first], statuses: [] });
    await engine.runSession(key);
    const s = (await backend.load(key))!;
    expect(s).toMatchObject({ step: 'ask_first', version: 1 });

    // A newer Baton wrote this session in format 2.
    const lease = (await backend.acquireLease(key, 'newer-baton', 5000))!;
    await backend.commit(lease, {
      expectedVersion: 1,
      snapshot: { ...s, format: 2 as 1, version: 2 },
      records: [],
      outbound: [],
      consumed: [],
      deadLetters: [],
    });
    await backend.releaseLease(lease);

    const next = txt('Lima', 101);
    await backend.ingest({ messages: [next], statuses: [] });
    await engine.runSession(key);
    const [letter] = await backend.listDeadLetters(10);
    expect(letter).toMatchObject({ kind: 'inbound', ref: next.id });
    expect(letter!.reason).toMatch(/BATON_ERR_SNAPSHOT_FORMAT.*format 2; this Baton reads format 1/);
    expect(await backend.load(key)).toMatchObject({ format: 2, version: 2, step: 'ask_first' });
    await backend.close();
  });
});
