/**
 * An effect attempt starts only while the baton is fresh (renewed within its TTL by this
 * process's clock). A worker paused past its TTL (SIGSTOP) woke up before it learned that its
 * lease was gone and made one more attempt than the effect allows, after those of the holder that
 * took over (an outside test: 4 requests to the shop with one Idempotency-Key).
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/types.ts';
import { runEffect } from '../../src/engine/effects.ts';
import { effectRecord, lookupFlow } from '../support/effect-fixtures.ts';

describe('runEffect and a stale baton', () => {
  it('starts no attempt when the baton is not fresh', async () => {
    const { flow, calls } = lookupFlow(() => ({ ok: true }));
    const touched: string[] = [];
    const backend = new Proxy({} as Backend, {
      get: (_t, name) => () => {
        touched.push(String(name));
        return Promise.resolve(name === 'ingest' ? { accepted: 1, duplicates: 0, statuses: 0 } : undefined);
      },
    });
    const rec = effectRecord('pending', 1);
    const deps = {
      backend,
      flows: new Map([[flow.id, flow]]),
      logger: pino({ level: 'silent' }),
      now: Date.now,
      signal: new AbortController().signal,
    };
    expect(await runEffect(rec, { ...deps, fresh: () => false })).toBe('left');
    expect(calls.n).toBe(0);
    expect(touched).toEqual([]);
    // Fresh: the attempt is made.
    await runEffect(rec, { ...deps, fresh: () => true });
    expect(calls.n).toBe(1);
  });
});
