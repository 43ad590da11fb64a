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
import { defineFlow, effect } from '../../src/flow/define.ts';
import type { OutboundRecord } from '../../src/model/session.ts';

describe('runEffect and a stale baton', () => {
  it('starts no attempt when the baton is not fresh', async () => {
    let calls = 0;
    const flow = defineFlow({
      id: 'fx',
      effects: {
        look: effect({
          run: async (_input: { q: number }) => {
            calls += 1;
            return { ok: true };
          },
        }),
      },
      start: 'ask',
      steps: {
        ask: {
          say: 'n?',
          to: ['looking'],
          on: (i, c) => (i.type === 'text' ? c.goto('looking') : c.retry()),
        },
        looking: {
          say: 'looking',
          to: ['ask'],
          effect: {
            use: 'look',
            input: () => ({ q: 1 }),
            onResult: (_r, c) => c.goto('ask'),
            onFailure: (_f, c) => c.goto('ask'),
          },
        },
      },
    });
    const touched: string[] = [];
    const backend = new Proxy({} as Backend, {
      get: (_t, name) => () => {
        touched.push(String(name));
        return Promise.resolve();
      },
    });
    const rec = {
      id: 'c:u:1',
      channel: 'c',
      user: 'u',
      seq: 1,
      flow: 'fx',
      step: 'looking',
      version: 2,
      to: 'u',
      body: { type: 'text', text: '' },
      callbackData: 'baton:fx:looking:2',
      isPrompt: false,
      effect: { id: 'c:u:1', name: 'look', input: {}, data: {} },
      status: 'pending',
      attempts: 1,
      createdAt: 0,
    } as unknown as OutboundRecord;
    const deps = {
      backend,
      flows: new Map([[flow.id, flow]]),
      logger: pino({ level: 'silent' }),
      now: Date.now,
      signal: new AbortController().signal,
    };
    expect(await runEffect(rec, { ...deps, fresh: () => false })).toBe('left');
    expect(calls).toBe(0);
    expect(touched).toEqual([]);
    // Fresh: the attempt is made.
    await runEffect(rec, { ...deps, fresh: () => true });
    expect(calls).toBe(1);
  });
});
