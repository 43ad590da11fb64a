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
