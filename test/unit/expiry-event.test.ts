/**
 * A retention purge's expiry event (`backends/retention.ts`), as the flow core applies it: a
 * session idle past `BATON_SESSION_TTL` expires (recorded `expired`, a new version, no step, no
 * data), the event is recorded `ignored`, and no flow code runs and nothing is sent, whatever
 * flow or version wrote the session (outside test QA74: a `migrate` that threw sent the user an
 * apology, and a session of a flow no longer served was handed to an agent, its user told a
 * person would answer). Beside a user's message the batch is the user's.
 */
import { describe, expect, it } from 'vitest';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { expiryEvent, purgeHorizons } from '../../src/backends/retention.ts';
import { orderFlow } from '../../src/bots/order.ts';
import type { Flow } from '../../src/flow/define.ts';
import { transition, type ResolvedMessage, type TransitionEnv } from '../../src/flow/transition.ts';
import type { SessionSnapshot } from '../../src/model/session.ts';

const key = { channel: 'ch', user: 'u1' };
const TTL = 3600;
const T = 1_750_000_000;
const env = (nowSec: number): TransitionEnv => ({
  key,
  nowMs: nowSec * 1000,
  worker: 'w1',
  fence: 3,
  sessionTtlSec: TTL,
  maxRetries: 3,
});
let seq = 0;
const stored = (m: Omit<ResolvedMessage, 'seq' | 'storedAt'>): ResolvedMessage => {
  seq += 1;
  return { ...m, seq, storedAt: m.timestamp * 1000 };
};
const txt = (body: string, ts: number): ResolvedMessage =>
  stored({
    id: `m${seq + 1}`,
    provider: 'cloud-api',
    ...key,
    waId: 'u1',
    timestamp: ts,
    content: { type: 'text', body },
  });
const expiry = (prev: SessionSnapshot, nowSec: number): ResolvedMessage =>
  stored(expiryEvent({ ...key, version: prev.version }, nowSec * 1000));

/** A session at choose_product, named Ada, last active at T + 1. */
function atProduct(): SessionSnapshot {
  let s = transition(orderFlow, null, [txt('hi', T)], env(T)).snapshot;
  s = transition(orderFlow, s, [txt('Ada', T + 1)], env(T + 1)).snapshot;
  expect(s).toMatchObject({ step: 'choose_product', version: 2, data: { customer_name: 'Ada' } });
  return s;
}

describe('the purge expiry event', () => {
  it('expires an idle session: recorded expired then ignored, a new version, no step, no data, nothing sent', () => {
    const prev = atProduct();
    const now = T + 1 + TTL + 5;
    const r = transition(orderFlow, prev, [expiry(prev, now)], env(now));
    expect(r.records.map((x) => [x.kind, x.version, x.from_step, x.to_step])).toEqual([
      ['expired', 3, 'choose_product', null],
      ['ignored', 3, null, null],
    ]);
    expect(r.snapshot).toMatchObject({ step: null, data: {}, version: 3, needsAgent: false, retryCount: 0 });
    expect(r.effects).toEqual([]);
    expect(r.started).toEqual([]);
    expect(r.consumed).toHaveLength(1);
  });

  it('runs no flow code: a migrate that throws, or a flow this process does not serve, changes nothing of it', () => {
    const prev = atProduct();
    const now = T + 1 + TTL + 5;
    const broken: Flow = {
      ...orderFlow,
      version: orderFlow.version + 1,
      migrate: () => {
        throw new Error('cannot read it');
      },
    };
    const other = orderStatusFlow({ apiUrl: 'http://shop.invalid' }) as unknown as Flow;
    for (const flow of [broken, other]) {
      const r = transition(flow, prev, [expiry(prev, now)], env(now));
      expect(r.records.map((x) => x.kind)).toEqual(['expired', 'ignored']);
      expect(r.snapshot).toMatchObject({ step: null, data: {}, needsAgent: false, flow: 'order' });
      expect(r.snapshot.flowVersion).toBe(prev.flowVersion);
      expect(r.effects).toEqual([]);
    }
  });

  it('a session held for an agent expires too, and leaves the inbox', () => {
    let prev = atProduct();
    for (let i = 0; i < 4; i++)
      prev = transition(orderFlow, prev, [txt('?', T + 2 + i)], env(T + 2 + i)).snapshot;
    expect(prev.needsAgent).toBe(true);
    const now = T + 5 + TTL + 5;
    const r = transition(orderFlow, prev, [expiry(prev, now)], env(now));
    expect(r.records.map((x) => x.kind)).toEqual(['expired', 'ignored']);
    expect(r.snapshot).toMatchObject({ step: null, needsAgent: false });
    expect(r.effects).toEqual([]);
  });

  it('a session in use, or awaiting an effect, is only ignored', () => {
    const prev = atProduct();
    const soon = T + 1 + TTL - 5;
    const r = transition(orderFlow, prev, [expiry(prev, soon)], env(soon));
    expect(r.records.map((x) => x.kind)).toEqual(['ignored']);
    expect(r.snapshot).toEqual(prev);
    const shop = orderStatusFlow({ apiUrl: 'http://shop.invalid' }) as unknown as Flow;
    const looking = transition(shop, null, [txt('ORD-12345', T)], env(T)).snapshot;
    expect(looking.awaiting).toBeDefined();
    const late = T + TTL + 5;
    const w = transition(shop, looking, [expiry(looking, late)], env(late));
    expect(w.records.map((x) => x.kind)).toEqual(['ignored']);
    expect(w.snapshot.step).toBe('looking_up');
  });

  it("beside a user's message the batch is the user's: the message expires the session itself, the event is ignored", () => {
    const prev = atProduct();
    const now = T + 1 + TTL + 5;
    const r = transition(orderFlow, prev, [txt('hello', now - 1), expiry(prev, now)], env(now));
    expect(r.records.map((x) => x.kind)).toEqual(['expired', 'advance', 'ignored']);
    expect(r.snapshot).toMatchObject({ step: 'ask_name', version: 4 });
    expect(r.effects).toHaveLength(1); // the name prompt, for the user's message
  });

  it('a session whose last message came stamped from the future (trusted, up to 5 minutes) is due only once the event expires it (outside test QA74-F5)', () => {
    // "hi" stored (written) at T, stamped T + 290: a clock 290 s ahead.
    const prev = transition(
      orderFlow,
      null,
      [{ ...txt('hi', T + 290), storedAt: T * 1000 }],
      env(T),
    ).snapshot;
    const written = T * 1000;
    const opts = { sessionTtlSec: 60, messageRetentionSec: 60 };
    // The first moment a purge finds it due (written before its cut-off), the event expires it.
    let now = T;
    while (!(written < purgeHorizons(now * 1000, 86_400, opts).sessions!)) now += 1;
    const r = transition(orderFlow, prev, [expiry(prev, now)], { ...env(now), sessionTtlSec: 60 });
    expect(r.records.map((x) => x.kind)).toEqual(['expired', 'ignored']);
  });
});
