/**
 * Golden histories: recorded runs of the reference bot, committed as JSON and replayed through
 * `transition()` on every test run. A change that would read a stored snapshot differently,
 * or take a live session somewhere else, fails here. Record anew (only on purpose) with
 * `UPDATE_GOLDEN=1 npx vitest run test/golden`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { transition, type ResolvedMessage, type TransitionEnv } from '../../src/flow/transition.ts';
import type { MessageContent } from '../../src/model/message.ts';
import type { SessionSnapshot, TransitionRecord } from '../../src/model/session.ts';

interface Step {
  batch: ResolvedMessage[];
  env: Omit<TransitionEnv, 'key'>;
  records: TransitionRecord[];
  replies: string[];
  snapshot: SessionSnapshot;
}
interface History {
  flow: string;
  flowVersion: number;
  steps: Step[];
}

const key = { channel: '106540352242922', user: '15550001234' };
let seq = 0;
function m(ts: number, content: MessageContent, extra: Partial<ResolvedMessage> = {}): ResolvedMessage {
  seq += 1;
  return {
    id: `wamid.G${seq}`,
    provider: 'cloud-api',
    channel: key.channel,
    user: key.user,
    waId: key.user,
    timestamp: ts,
    seq,
    storedAt: 1_750_000_000_000 + seq,
    content,
    ...extra,
  };
}
const text = (ts: number, body: string) => m(ts, { type: 'text', body });
const tap = (ts: number, id: string, extra: Partial<ResolvedMessage> = {}) =>
  m(ts, { type: 'choice', source: 'button_reply', id, title: id }, extra);

const T = 1_750_000_000;
/** The scenarios, as batches. */
const SCENARIOS: Record<string, ResolvedMessage[][]> = {
  'order-happy-path': [
    [text(T, 'hi')],
    [text(T + 1, 'Jane'), text(T + 2, 'Smith')],
    [tap(T + 3, 'sku_550e', { contextPrompt: { step: 'choose_product', version: 2 } })],
    [text(T + 4, '1 Main St\nSpringfield')],
    [tap(T + 5, 'confirm', { contextPrompt: { step: 'confirm_order', version: 4 } })],
    [text(T + 6, 'again')],
  ],
  'order-faults': [
    [text(T, 'hi'), text(T + 1, 'Bo')],
    [tap(T + 2, 'confirm'), m(T + 2, { type: 'reaction', messageId: 'x', emoji: '👍' }), text(T + 1, 'late')],
    [m(T + 3, { type: 'media', mediaType: 'image', mediaId: 'i1' }), text(T + 4, '??')],
    [text(T + 5, 'nope'), m(T + 6, { type: 'location', latitude: 1, longitude: 2 })],
    [text(T + 7, 'reset')],
    [text(T + 8, 'Cy'), tap(T + 9, 'sku_777b'), text(T + 10, 'Addr'), tap(T + 11, 'cancel')],
    [text(T + 12 + 86_401, 'back after a day')],
  ],
};

const file = (name: string) => join(import.meta.dirname, `${name}.json`);

function record(name: string): History {
  let snapshot: SessionSnapshot | null = null;
  const steps: Step[] = SCENARIOS[name]!.map((batch, i) => {
    const env = {
      nowMs: 1_750_000_100_000 + i * 1000,
      worker: 'golden',
      fence: 10 + i,
      sessionTtlSec: 86_400,
      maxRetries: 3,
    };
    const r = transition(orderFlow, snapshot, batch, { ...env, key });
    snapshot = r.snapshot;
    return {
      batch,
      env,
      records: r.records,
      replies: r.effects.map((e) => `${e.step}:${e.version}:${e.isPrompt ? 'prompt' : 'notice'}`),
      snapshot: r.snapshot,
    };
  });
  return { flow: orderFlow.id, flowVersion: orderFlow.version, steps };
}

describe('golden histories of the order flow', () => {
  for (const name of Object.keys(SCENARIOS)) {
    it(`${name} replays exactly as recorded`, () => {
      if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file(name))) {
        if (process.env.CI === 'true') throw new Error(`golden history ${name}.json is missing`);
        writeFileSync(file(name), JSON.stringify(record(name), null, 2) + '\n');
      }
      const golden = JSON.parse(readFileSync(file(name), 'utf8')) as History;
      expect(golden.flowVersion).toBe(orderFlow.version);
      let snapshot: SessionSnapshot | null = null;
      golden.steps.forEach((step, i) => {
        // Each step resumes from the stored JSON, as a worker reading PostgreSQL would.
        const prev: SessionSnapshot | null = i === 0 ? null : golden.steps[i - 1]!.snapshot;
        expect(prev).toEqual(snapshot === null ? null : JSON.parse(JSON.stringify(snapshot)));
        const r = transition(orderFlow, prev, step.batch, { ...step.env, key });
        expect(r.records, `${name} step ${i} records`).toEqual(step.records);
        expect(r.effects.map((e) => `${e.step}:${e.version}:${e.isPrompt ? 'prompt' : 'notice'}`)).toEqual(
          step.replies,
        );
        expect(r.snapshot, `${name} step ${i} snapshot`).toEqual(step.snapshot);
        snapshot = r.snapshot;
      });
    });
  }
});
