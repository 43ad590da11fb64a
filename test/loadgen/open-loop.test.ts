/**
 * The open-loop generator (`loadgen/open-loop.ts`, the bench's `rate` scenario) against a real
 * embedded Baton: it offers the rate asked, whatever Baton answers, every webhook is a new
 * user's first message that Baton stores and answers with the order flow's first prompt, and
 * the report adds up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOpenLoop } from '../../loadgen/index.ts';
import { startLoadTarget, type LoadTarget } from '../support/load-target.ts';

let t: LoadTarget;

beforeAll(async () => {
  t = await startLoadTarget('open-loop', { BATON_BUFFER_MS: '0' });
});

afterAll(async () => {
  await t?.close();
});

describe('open-loop load', () => {
  it('offers 100 webhooks/s for 1 s: all stored, every new user answered, figures consistent', async () => {
    const r = await runOpenLoop({
      url: t.url,
      secret: t.secret,
      sink: t.sink,
      ratePerSec: 100,
      durationMs: 1000,
      keepSamples: true,
    });
    expect(r.offered).toBe(100);
    expect(r.acked).toBe(100);
    expect(r.failed).toBe(0);
    expect(r.answered).toBe(100);
    expect(r.ack.count).toBe(100);
    expect(r.reply.count).toBe(100);
    // On schedule: the last webhook leaves about a second after the first.
    expect(r.windowMs).toBeGreaterThan(900);
    expect(r.samples!.sentMs).toHaveLength(100);
    expect(r.samples!.ackMs.every((ms) => ms >= 0)).toBe(true);
    expect(new Set(t.sink.calls.map((c) => c.to)).size).toBe(100);
  });
});
