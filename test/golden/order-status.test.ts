/**
 * Golden histories of the order-status example (SPEC 5b): recorded runs through `transition()`,
 * effect results included, committed as JSON and replayed on every test run from the stored
 * snapshots. A change that would read a stored session differently (an effect awaited, messages
 * waiting, a result for a left visit), or send other replies, fails here. Record anew (only on
 * purpose) with `UPDATE_GOLDEN=1 npx vitest run test/golden`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import {
  effectResultId,
  transition,
  type EffectStart,
  type ResolvedMessage,
  type TransitionEnv,
} from '../../src/flow/transition.ts';
import type { MessageContent } from '../../src/model/message.ts';
import type { SessionSnapshot, TransitionRecord } from '../../src/model/session.ts';

const flow = orderStatusFlow({ apiUrl: 'http://shop.invalid' });
const key = { channel: '106540352242922', user: '15550009876' };
const T = 1_750_000_000;

interface Step {
  batch: ResolvedMessage[];
  env: Omit<TransitionEnv, 'key'>;
  records: TransitionRecord[];
  replies: string[];
  consumed: string[];
  started: EffectStart[];
  snapshot: SessionSnapshot;
}

/** One input of a scenario: user messages (one batch), or the result of the oldest started effect. */
type Input =
  | { user: Array<{ ts: number; content: MessageContent; context?: { step: string; version: number } }> }
  | { result: { ok: true; value: unknown } | { ok: false; error: string } };

const say = (ts: number, body: string) => ({ ts, content: { type: 'text' as const, body } });
const tap = (ts: number, id: string, context?: { step: string; version: number }) => ({
  ts,
  content: { type: 'choice' as const, source: 'button_reply' as const, id, title: id },
  ...(context ? { context } : {}),
});
const found = {
  found: true,
  order: { number: 'ORD-12345', status: 'in transit', map_url: 'https://maps.example/1', events: [] },
};

const SCENARIOS: Record<string, Input[]> = {
  'order-status-lookup-and-cancel': [
    { user: [say(T, 'hola')] },
    { user: [say(T + 1, 'ORD-12345')] },
    { user: [say(T + 2, '¿sigue ahí?')] }, // waits for the lookup
    { result: { ok: true, value: found } },
    { user: [tap(T + 3, 'cancel_order', { step: 'show_status', version: 4 })] },
    { user: [tap(T + 4, 'cancel_yes', { step: 'confirm_cancel', version: 5 })] },
    { user: [tap(T + 5, 'cancel_yes', { step: 'confirm_cancel', version: 5 })] }, // double tap: waits
    { result: { ok: true, value: { cancelled: true } } },
  ],
  'order-status-reset-during-lookup': [
    { user: [say(T, 'ORD-12345')] },
    { user: [say(T + 1, 'hello?'), say(T + 2, 'reset')] },
    { result: { ok: false, error: 'the shop answered 503' } }, // for a left visit
    { user: [say(T + 3, 'ORD-99999')] },
    { result: { ok: true, value: { found: false } } },
  ],
};

const file = (name: string) => join(import.meta.dirname, `${name}.json`);

function record(name: string): Step[] {
  let snapshot: SessionSnapshot | null = null;
  let mailbox: ResolvedMessage[] = [];
  const started: EffectStart[] = [];
  let seq = 0;
  return SCENARIOS[name]!.map((input, i) => {
    const env = {
      nowMs: 1_750_000_100_000 + i * 1000,
      worker: 'golden',
      fence: 10 + i,
      sessionTtlSec: 86_400,
      maxRetries: 3,
    };
    const message = (id: string, ts: number, content: MessageContent, extra = {}): ResolvedMessage => ({
      id,
      provider: 'cloud-api',
      channel: key.channel,
      user: key.user,
      waId: key.user,
      timestamp: ts,
      seq: (seq += 1),
      storedAt: env.nowMs,
      content,
      ...extra,
    });
    if ('user' in input) {
      for (const u of input.user) {
        mailbox.push(
          message(`wamid.S${seq + 1}`, u.ts, u.content, u.context ? { contextPrompt: u.context } : {}),
        );
      }
    } else {
      const fx = started.shift()!;
      mailbox.push(
        message(effectResultId(fx.id), T, {
          type: 'effect_result',
          effectId: fx.id,
          name: fx.name,
          attempts: 1,
          ...input.result,
        }),
      );
    }
    const batch = mailbox;
    const r = transition(flow, snapshot, batch, { ...env, key });
    snapshot = r.snapshot;
    mailbox = batch.filter((m) => !r.consumed.includes(m.id));
    started.push(...r.started);
    return {
      batch,
      env,
      records: r.records,
      replies: r.effects.map(
        (e) => `${e.step}:${e.version}:${e.isPrompt ? 'prompt' : 'notice'}:${e.body.type}`,
      ),
      consumed: r.consumed,
      started: r.started,
      snapshot: r.snapshot,
    };
  });
}

describe('golden histories of the order-status example', () => {
  for (const name of Object.keys(SCENARIOS)) {
    it(`${name} replays exactly as recorded`, () => {
      if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file(name))) {
        if (process.env.CI === 'true') throw new Error(`golden history ${name}.json is missing`);
        writeFileSync(
          file(name),
          JSON.stringify({ flow: flow.id, flowVersion: flow.version, steps: record(name) }, null, 2) + '\n',
        );
      }
      const golden = JSON.parse(readFileSync(file(name), 'utf8')) as { flowVersion: number; steps: Step[] };
      expect(golden.flowVersion).toBe(flow.version);
      golden.steps.forEach((step, i) => {
        // Each step resumes from the stored JSON, as a worker reading the store would.
        const prev = i === 0 ? null : golden.steps[i - 1]!.snapshot;
        const r = transition(flow, prev, step.batch, { ...step.env, key });
        expect(r.records, `${name} step ${i} records`).toEqual(step.records);
        expect(
          r.effects.map((e) => `${e.step}:${e.version}:${e.isPrompt ? 'prompt' : 'notice'}:${e.body.type}`),
        ).toEqual(step.replies);
        expect(r.consumed).toEqual(step.consumed);
        expect(JSON.parse(JSON.stringify(r.started))).toEqual(step.started);
        expect(JSON.parse(JSON.stringify(r.snapshot)), `${name} step ${i} snapshot`).toEqual(step.snapshot);
      });
    });
  }

  it('the recorded histories show what SPEC 5b pins', () => {
    const a = JSON.parse(readFileSync(file('order-status-lookup-and-cancel'), 'utf8')) as { steps: Step[] };
    expect(a.steps[2]!.consumed).toEqual([]); // a message during the lookup waits
    expect(a.steps[3]!.records.map((r) => r.kind)).toEqual(['advance', 'retry']); // then comes after it
    expect(a.steps[6]!.consumed).toEqual([]); // the double tap waits for the cancel
    expect(a.steps.flatMap((s) => s.started).map((s) => s.name)).toEqual(['lookup', 'cancel']);
    expect(a.steps[7]!.records.map((r) => r.kind)).toEqual(['advance', 'stale_input']);
    const b = JSON.parse(readFileSync(file('order-status-reset-during-lookup'), 'utf8')) as { steps: Step[] };
    expect(b.steps[1]!.records.map((r) => r.kind)).toEqual(['retry', 'reset']);
    expect(b.steps[2]!.records).toMatchObject([{ kind: 'stale_input', to_step: 'ask_order' }]);
    expect(b.steps[2]!.replies).toEqual([]);
  });
});
