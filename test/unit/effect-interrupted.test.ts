/**
 * An effect attempt that a holder began and never ended (its worker killed mid-call: the record
 * still says `sending`) is made again without counting as the API's failure, up to twice the
 * effect's attempts in all; an attempt that failed is recorded as ended (`pending`), and counts.
 * Counted as failures, three workers killed during a slow lookup that answered 200 each time told
 * the user it had failed (outside test QA17-F1).
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/types.ts';
import { runEffect } from '../../src/engine/effects.ts';
import { effectResultId } from '../../src/flow/transition.ts';
import { EffectError } from '../../src/flow/define.ts';
import type { InboundMessage } from '../../src/model/message.ts';
import type { OutboundRecord } from '../../src/model/session.ts';
import { effectRecord, lookupFlow } from '../support/effect-fixtures.ts';

/** A store that records what the runner writes. */
function recordingBackend() {
  const results: InboundMessage[] = [];
  const patches: Array<Record<string, unknown>> = [];
  const backend = {
    ingest: async (b: { messages: InboundMessage[] }) => {
      results.push(...b.messages);
      return { accepted: b.messages.length, duplicates: 0, statuses: 0 };
    },
    updateOutbound: async (_id: string, patch: Record<string, unknown>) => {
      patches.push(patch);
    },
  } as unknown as Backend;
  return { backend, results, patches };
}

async function run(rec: OutboundRecord, answer: () => unknown) {
  const { flow, calls } = lookupFlow(answer);
  const store = recordingBackend();
  const outcome = await runEffect(rec, {
    backend: store.backend,
    flows: new Map([[flow.id, flow]]),
    logger: pino({ level: 'silent' }),
    now: Date.now,
    signal: new AbortController().signal,
  });
  const content = store.results[0]?.content as { ok?: boolean; attempts?: number } | undefined;
  return { outcome, calls: calls.n, result: content, patches: store.patches };
}

describe('an effect attempt cut short', () => {
  it('three attempts cut short (the record says sending): a fourth is made, and its 200 applied', async () => {
    const r = await run(effectRecord('sending', 3), () => ({ status: 'processing' }));
    expect(r.outcome).toBe('done');
    expect(r.calls).toBe(1);
    expect(r.result).toMatchObject({ ok: true, attempts: 4 });
  });

  it('three failed attempts (the record says pending): none more, the effect fails', async () => {
    const r = await run(effectRecord('pending', 3), () => ({ status: 'processing' }));
    expect(r.calls).toBe(0);
    expect(r.result).toMatchObject({ ok: false, attempts: 3 });
  });

  it('cut short at every attempt: twice the attempts in all, then it fails', async () => {
    const r = await run(effectRecord('sending', 6), () => ({ status: 'processing' }));
    expect(r.calls).toBe(0);
    expect(r.result).toMatchObject({ ok: false });
  });

  it('a failed attempt is recorded as ended before the backoff; a cut one counts once more only', async () => {
    // Two failed, one cut short: one more attempt (the 4th), which fails: no 5th.
    const r = await run(effectRecord('sending', 3), () => {
      throw new EffectError('shop down', { retryable: true });
    });
    expect(r.calls).toBe(1);
    expect(r.result).toMatchObject({ ok: false, attempts: 4 });
    // From a fresh record: each failure but the last is recorded `pending` with its error.
    const fresh = await run(effectRecord('pending', 0), () => {
      throw new EffectError('shop down', { retryable: true });
    });
    expect(fresh.calls).toBe(3);
    expect(fresh.patches.map((p) => p.status)).toEqual([
      'sending',
      'pending',
      'sending',
      'pending',
      'sending',
      'failed',
    ]);
  });
});

describe('an effect whose result an attempt cut short had stored, the session gone on since', () => {
  /** The record says `sending`; the store holds `stored` as the effect's result already. */
  async function afterCrash(stored: InboundMessage | undefined) {
    const { flow, calls } = lookupFlow(() => ({ status: 'never asked' }));
    const patches: Array<Record<string, unknown>> = [];
    const backend = {
      ingest: async () => ({ accepted: 0, duplicates: 1, statuses: 0 }),
      inbound: async () => (stored === undefined ? [] : [stored]),
      updateOutbound: async (_id: string, patch: Record<string, unknown>) => {
        patches.push(patch);
      },
    } as unknown as Backend;
    const abandoned = new AbortController();
    abandoned.abort(); // the stored result was applied: the session left the visit
    const outcome = await runEffect(effectRecord('sending', 1), {
      backend,
      flows: new Map([[flow.id, flow]]),
      logger: pino({ level: 'silent' }),
      now: Date.now,
      signal: new AbortController().signal,
      abandoned: abandoned.signal,
    });
    return { outcome, calls: calls.n, patches };
  }
  const result = (content: Record<string, unknown>): InboundMessage =>
    ({
      id: effectResultId('c:u:1'),
      provider: 'cloud-api',
      channel: 'c',
      user: 'u',
      timestamp: 1,
      content: { type: 'effect_result', effectId: 'c:u:1', name: 'look', attempts: 1, ...content },
    }) as InboundMessage;

  it('records it as that result says: sent, not failed "not tried again" (QA135-F1)', async () => {
    const r = await afterCrash(result({ ok: true, value: { status: 'shipped' } }));
    expect(r.calls).toBe(0);
    expect(r.patches.at(-1)).toMatchObject({ status: 'sent' });
    expect(r.patches.at(-1)).not.toHaveProperty('lastError');
  });

  it("a stored failure stays a failure, with the failure's own reason", async () => {
    const r = await afterCrash(result({ ok: false, error: 'shop said 404' }));
    expect(r.patches.at(-1)).toMatchObject({ status: 'failed', lastError: 'shop said 404' });
  });

  it('a result not found among the newest messages: failed, as before', async () => {
    const r = await afterCrash(undefined);
    expect(r.patches.at(-1)).toMatchObject({ status: 'failed' });
    expect(String(r.patches.at(-1)?.lastError)).toContain('not tried again');
  });
});
